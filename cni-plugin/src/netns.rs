//! Running a tool (`nft`, `ip`) inside another network namespace, given its path (`/run/netns/x` or
//! `/proc/<pid>/ns/net`), with its stdin fed from a script; [`find`] locates a running pod's namespace.

pub mod find;

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Errors running a tool.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("netns {netns}: {source}")]
    Netns {
        netns: PathBuf,
        source: std::io::Error,
    },
    #[error("{program} {args}: {source}")]
    Spawn {
        program: String,
        args: String,
        source: std::io::Error,
    },
    #[error("{program} {args} failed ({status}): {stderr}")]
    Failed {
        program: String,
        args: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
}

impl ExecError {
    /// The namespace does not exist (any more).
    pub fn is_netns_gone(&self) -> bool {
        matches!(self, Self::Netns { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Runs `program args` with `stdin` inside `netns` (or in the current namespace when `None`); returns stdout.
pub fn run(
    netns: Option<&Path>,
    program: &str,
    args: &[&str],
    stdin: &str,
) -> Result<String, ExecError> {
    let ns_file = match netns {
        Some(p) => Some(File::open(p).map_err(|source| ExecError::Netns {
            netns: p.into(),
            source,
        })?),
        None => None,
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(f) = &ns_file {
        let fd = f.as_raw_fd();
        // SAFETY: between fork and exec only async-signal-safe calls are allowed; setns(2) is a plain system call
        // on a descriptor the parent keeps open (`ns_file`) until `spawn` returned.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }
    let spawn_err = |source| ExecError::Spawn {
        program: program.into(),
        args: args.join(" "),
        source,
    };
    let mut child = cmd.spawn().map_err(spawn_err)?;
    drop(ns_file);
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.as_bytes()).map_err(spawn_err)?;
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    if !out.status.success() {
        return Err(ExecError::Failed {
            program: program.into(),
            args: args.join(" "),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
