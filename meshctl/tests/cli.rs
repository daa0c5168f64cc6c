//! The built `meshctl` binary answers `--help` and `--version` without a mesh.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};

/// Runs the binary with `args` and an empty environment: (exit code, stdout).
fn meshctl(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_meshctl"))
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn help_and_version() {
    for flag in ["--help", "-h"] {
        let (code, stdout) = meshctl(&[flag]);
        assert_eq!(code, Some(0), "{flag}");
        assert!(stdout.contains("Usage: meshctl"), "{stdout}");
        for command in ["up", "exec", "status", "down"] {
            assert!(stdout.contains(command), "{command}: {stdout}");
        }
    }
    for flag in ["--version", "-V"] {
        let (code, stdout) = meshctl(&[flag]);
        assert_eq!(code, Some(0), "{flag}");
        assert_eq!(stdout, format!("meshctl {}\n", env!("CARGO_PKG_VERSION")));
    }
    assert_eq!(meshctl(&["--frob"]).0, Some(2));
}
