//! The built `istio-cni` and `cni-agent` binaries answer `--help` and `--version` without any configuration.
//! `istio-cni` does so only outside a CNI invocation: with `CNI_COMMAND` set its arguments are ignored and it
//! speaks the CNI protocol; without `CNI_COMMAND` and without arguments it is still a CNI plugin (code 4).

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::process::{Command, Stdio};

use cni_plugin::plugin::conf::SUPPORTED_VERSIONS;

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `bin` with `args`, an environment holding only `env`, and `stdin`.
fn run(bin: &str, args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Run {
    let mut child = Command::new(bin)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The binary may exit without reading stdin (help, version): a broken pipe is expected then.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

const PLUGIN: &str = env!("CARGO_BIN_EXE_istio-cni");
const AGENT: &str = env!("CARGO_BIN_EXE_cni-agent");

#[test]
fn plugin_help_and_version_outside_cni() {
    for flag in ["--help", "-h"] {
        let r = run(PLUGIN, &[flag], &[], b"");
        assert_eq!(r.code, Some(0), "{flag}: {}", r.stderr);
        assert!(r.stdout.contains("Usage: CNI_COMMAND="), "{}", r.stdout);
        assert!(r.stdout.contains("CNI_NETNS"), "{}", r.stdout);
        assert!(
            r.stdout.contains(&SUPPORTED_VERSIONS.join(", ")),
            "{}",
            r.stdout
        );
    }
    for flag in ["--version", "-V"] {
        let r = run(PLUGIN, &[flag], &[], b"");
        assert_eq!(r.code, Some(0), "{flag}: {}", r.stderr);
        assert_eq!(
            r.stdout,
            format!("istio-cni {}\n", env!("CARGO_PKG_VERSION"))
        );
    }
    let r = run(PLUGIN, &["--frob"], &[], b"");
    assert_eq!(r.code, Some(2), "{}", r.stdout);
    assert!(r.stderr.contains("error:"), "{}", r.stderr);
}

#[test]
fn plugin_keeps_the_cni_protocol() {
    // Under a runtime the arguments are ignored: VERSION answers in CNI JSON.
    let r = run(
        PLUGIN,
        &["--help"],
        &[("CNI_COMMAND", "VERSION")],
        br#"{"cniVersion":"1.0.0"}"#,
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["cniVersion"], "1.0.0");
    assert_eq!(
        v["supportedVersions"],
        serde_json::json!(SUPPORTED_VERSIONS)
    );
    // No CNI_COMMAND and no arguments: still a CNI error object, code 4.
    let r = run(PLUGIN, &[], &[], br#"{"cniVersion":"1.0.0"}"#);
    assert_eq!(r.code, Some(1));
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["code"], 4, "{v}");
}

#[test]
fn agent_help_and_version() {
    for flag in ["--help", "-h"] {
        let r = run(AGENT, &[flag], &[], b"");
        assert_eq!(r.code, Some(0), "{flag}: {}", r.stderr);
        assert!(r.stdout.contains("Usage: cni-agent"), "{}", r.stdout);
        assert!(r.stdout.contains("--node-name"), "{}", r.stdout);
    }
    for flag in ["--version", "-V"] {
        let r = run(AGENT, &[flag], &[], b"");
        assert_eq!(r.code, Some(0), "{flag}: {}", r.stderr);
        assert_eq!(
            r.stdout,
            format!("cni-agent {}\n", env!("CARGO_PKG_VERSION"))
        );
    }
    assert_eq!(run(AGENT, &["--frob"], &[], b"").code, Some(2));
}
