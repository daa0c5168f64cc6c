//! Running the system tools the local mesh drives (`ip`, `nft`, `sysctl`), with errors that say what failed.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::error::Error;

/// Runs `program args…`, optionally inside a network namespace and with `stdin`; returns stdout.
pub fn run(
    program: &str,
    args: &[&str],
    netns: Option<&str>,
    stdin: Option<&str>,
) -> Result<String, Error> {
    let mut cmd = Command::new(program);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let guard = match netns {
        Some(ns) => Some(crate::netns::enter_on_exec(&mut cmd, ns)?),
        None => None,
    };
    let shown = format!("{program} {}", args.join(" "));
    let mut child = cmd.spawn().map_err(|e| Error::Command {
        command: shown.clone(),
        detail: e.to_string(),
    })?;
    drop(guard);
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| Error::Command {
                command: shown.clone(),
                detail: e.to_string(),
            })?;
    }
    let out = child.wait_with_output().map_err(|e| Error::Command {
        command: shown.clone(),
        detail: e.to_string(),
    })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let where_ = netns
            .map(|n| format!(" (in netns {n})"))
            .unwrap_or_default();
        Err(Error::Command {
            command: format!("{shown}{where_}"),
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

/// `ip …` in a network namespace.
pub fn ip(netns: &str, args: &[&str]) -> Result<String, Error> {
    let mut full = vec!["-n", netns];
    full.extend_from_slice(args);
    run("ip", &full, None, None)
}
