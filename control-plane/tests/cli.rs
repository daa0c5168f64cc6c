//! The built `control-plane` binary answers `--help` and `--version` without any configuration.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};

/// Runs the binary with `args` and an empty environment: (exit code, stdout).
fn control_plane(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_control-plane"))
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
        let (code, stdout) = control_plane(&[flag]);
        assert_eq!(code, Some(0), "{flag}");
        assert!(stdout.contains("Usage: control-plane"), "{stdout}");
        assert!(stdout.contains("serve"), "{stdout}");
    }
    let (code, stdout) = control_plane(&["serve", "--help"]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("--ca-dir"), "{stdout}");
    for flag in ["--version", "-V"] {
        let (code, stdout) = control_plane(&[flag]);
        assert_eq!(code, Some(0), "{flag}");
        assert_eq!(
            stdout,
            format!("control-plane {}\n", env!("CARGO_PKG_VERSION"))
        );
    }
    assert_eq!(control_plane(&["--frob"]).0, Some(2));
}
