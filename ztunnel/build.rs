//! Captures what `ztunnel version` reports about the build (see `src/version.rs`): the git revision, tag and tree
//! status of the checkout, the compiler's version and the cargo profile. Outside a git checkout (or without git)
//! the git fields are "unknown".
//!
//! The script re-runs when HEAD moves (checkout, commit: `HEAD`, the branch's ref, `packed-refs`), when the index
//! changes (staging) and when this package's sources change, so the status reflects the tree of the last build of
//! the crate. An edit elsewhere in the workspace that is neither staged nor committed is not seen until one of
//! those happens.

use std::path::Path;
use std::process::Command;

fn main() {
    let revision = git(&["rev-parse", "HEAD"]);
    let modified = revision.is_some()
        && git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    let (status, revision) = match revision {
        None => ("unknown", "unknown".to_owned()),
        Some(r) if modified => ("Modified", format!("{r}-dirty")),
        Some(r) => ("Clean", r),
    };
    let tag = git(&["describe", "--tags", "--always"]).unwrap_or_else(|| "unknown".into());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rust_version = output(Command::new(rustc).arg("--version"))
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_owned))
        .unwrap_or_else(|| "unknown".into());
    let profile = std::env::var("PROFILE").unwrap_or_else(|_| "unknown".into());

    println!("cargo:rustc-env=ZTUNNEL_BUILD_GIT_REVISION={revision}");
    println!("cargo:rustc-env=ZTUNNEL_BUILD_STATUS={status}");
    println!("cargo:rustc-env=ZTUNNEL_BUILD_GIT_TAG={tag}");
    println!("cargo:rustc-env=ZTUNNEL_BUILD_RUST_VERSION={rust_version}");
    println!("cargo:rustc-env=ZTUNNEL_BUILD_PROFILE={profile}");

    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src");
    let mut watched = vec![
        "HEAD".to_owned(),
        "index".to_owned(),
        "packed-refs".to_owned(),
    ];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for name in watched {
        // `--git-path` resolves worktrees and a relocated git dir; only existing files are watched (cargo re-runs
        // the script every build for a missing one).
        if let Some(path) = git(&["rev-parse", "--git-path", &name])
            && Path::new(&path).exists()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

/// Trimmed stdout of `git args` in the package directory, if git ran and succeeded. Without optional locks, so
/// `git status` does not refresh the index, which would make this script re-run on every build.
fn git(args: &[&str]) -> Option<String> {
    output(Command::new("git").arg("--no-optional-locks").args(args))
}

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
