//! The built `waypoint` binary's command line: `--help` lists every environment variable of the config table,
//! `--version` answers without any configuration, and anything else is a usage error (exit 2).

#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};

use waypoint::config::vars;

/// Runs the binary with `args` and an empty environment: (exit code, stdout, stderr).
fn waypoint(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_waypoint"))
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_lists_every_environment_variable() {
    for flag in ["--help", "-h"] {
        let (code, stdout, stderr) = waypoint(&[flag]);
        assert_eq!(code, Some(0), "{flag}: {stderr}");
        assert!(stdout.contains("Usage: waypoint"), "{stdout}");
        for v in vars::ALL {
            let line = stdout
                .lines()
                .find(|l| l.split_whitespace().next() == Some(v.name))
                .unwrap_or_else(|| panic!("{flag} does not list {}:\n{stdout}", v.name));
            assert!(line.contains(v.meaning), "{line}");
        }
    }
}

#[test]
fn version_flag_prints_the_crate_version() {
    for flag in ["--version", "-V"] {
        let (code, stdout, stderr) = waypoint(&[flag]);
        assert_eq!(code, Some(0), "{flag}: {stderr}");
        assert_eq!(stdout, format!("waypoint {}\n", env!("CARGO_PKG_VERSION")));
    }
}

#[test]
fn unknown_arguments_are_usage_errors() {
    for args in [&["--frob"][..], &["version"]] {
        let (code, stdout, stderr) = waypoint(args);
        assert_eq!(code, Some(2), "{args:?}: {stdout}");
        assert!(stderr.contains("error:"), "{args:?}: {stderr}");
    }
}

#[test]
fn without_configuration_it_says_what_is_missing() {
    let (code, _, stderr) = waypoint(&[]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("XDS_ADDRESS must be set"), "{stderr}");
}
