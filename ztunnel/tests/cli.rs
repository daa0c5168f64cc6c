//! The built `ztunnel` binary's command line: `--help` lists every environment variable of the config table,
//! `--version` and `version` (Istio's `version.BuildInfo{...}`) answer without any configuration, and anything
//! else is a usage error (exit 2).

#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};

use ztunnel::config::vars;
use ztunnel::version::BuildInfo;

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the binary with `args` in an environment holding only `env`.
fn ztunnel(args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_ztunnel"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn help_lists_every_environment_variable() {
    for flag in ["--help", "-h"] {
        let r = ztunnel(&[flag], &[]);
        assert_eq!(r.code, Some(0), "{flag}: {}", r.stderr);
        assert!(r.stdout.contains("Usage: ztunnel"), "{}", r.stdout);
        assert!(r.stdout.contains("version"), "{}", r.stdout);
        for v in vars::ALL {
            let line = r
                .stdout
                .lines()
                .find(|l| l.split_whitespace().next() == Some(&v.shown()))
                .unwrap_or_else(|| panic!("{flag} does not list {}:\n{}", v.name, r.stdout));
            assert!(line.contains(v.meaning), "{line}");
        }
    }
}

#[test]
fn version_flag_prints_the_crate_version() {
    for flag in ["--version", "-V"] {
        let r = ztunnel(&[flag], &[]);
        assert_eq!(r.code, Some(0), "{flag}: {}", r.stderr);
        assert_eq!(r.stdout, format!("ztunnel {}\n", env!("CARGO_PKG_VERSION")));
    }
}

#[test]
fn version_command_prints_istio_build_info() {
    let r = ztunnel(&["version"], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.stdout.trim_end(), BuildInfo::new(None).to_string());
    assert!(
        r.stdout.starts_with(&format!(
            "version.BuildInfo{{Version:\"{}\", GitRevision:\"",
            env!("CARGO_PKG_VERSION")
        )),
        "{}",
        r.stdout
    );
    for field in [
        "RustVersion:",
        "BuildProfile:",
        "BuildStatus:",
        "GitTag:",
        "IstioVersion:\"unknown\"",
    ] {
        assert!(r.stdout.contains(field), "{field} missing: {}", r.stdout);
    }
    let r = ztunnel(&["version"], &[("ISTIO_META_ISTIO_VERSION", "1.28.0")]);
    assert!(r.stdout.contains("IstioVersion:\"1.28.0\""), "{}", r.stdout);
}

#[test]
fn unknown_arguments_are_usage_errors() {
    for args in [&["--frob"][..], &["frob"], &["version", "extra"]] {
        let r = ztunnel(args, &[]);
        assert_eq!(r.code, Some(2), "{args:?}: {}", r.stdout);
        assert!(r.stderr.contains("error:"), "{args:?}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "{args:?}: {}", r.stdout);
    }
}

#[test]
fn without_configuration_it_says_what_is_missing() {
    let r = ztunnel(&[], &[]);
    assert_eq!(r.code, Some(2));
    let out = r.stdout + &r.stderr;
    assert!(out.contains("XDS_ADDRESS"), "{out}");
}

/// Istio's ztunnel chart runs `ztunnel proxy ztunnel`: that is the proxy; another mode is a usage error.
#[test]
fn istios_chart_arguments_run_the_proxy() {
    // Without XDS_ADDRESS/LOCAL_XDS_PATH the proxy stops at its configuration (logged on stdout, as
    // upstream's), which shows the proxy was chosen.
    let r = ztunnel(&["proxy", "ztunnel"], &[]);
    assert!(
        r.stdout.contains("starting") && r.stdout.contains("invalid configuration"),
        "{}",
        r.stdout
    );
    let r = ztunnel(&["proxy", "dedicated"], &[]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr.contains("invalid value 'dedicated'"),
        "{}",
        r.stderr
    );
}
