//! Named network namespaces (`/run/netns/<name>`, as `ip netns` keeps them): create, delete, list, find the
//! processes inside one, and run code or a program inside one.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::error::Error;

const NETNS_DIR: &str = "/run/netns";

pub fn path(name: &str) -> PathBuf {
    PathBuf::from(NETNS_DIR).join(name)
}

pub fn exists(name: &str) -> bool {
    path(name).exists()
}

pub fn create(name: &str) -> Result<(), Error> {
    crate::cmd::run("ip", &["netns", "add", name], None, None)?;
    crate::cmd::ip(name, &["link", "set", "lo", "up"])?;
    Ok(())
}

/// Kills every process inside, then removes the namespace. Succeeds when it is already gone.
pub fn delete(name: &str, grace: Duration) -> Result<(), Error> {
    if !exists(name) {
        return Ok(());
    }
    kill_all(&pids_in(name), grace);
    crate::cmd::run("ip", &["netns", "del", name], None, None).map(|_| ())
}

/// The names of the namespaces that start with `prefix`, sorted.
pub fn list_with_prefix(prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(NETNS_DIR)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Every process whose network namespace is `name` (what `ip netns pids` reports).
pub fn pids_in(name: &str) -> Vec<Pid> {
    let Ok(target) = std::fs::metadata(path(name)) else {
        return Vec::new();
    };
    let Ok(proc_dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    proc_dir
        .filter_map(|e| e.ok()?.file_name().into_string().ok()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net"))
                .is_ok_and(|m| m.ino() == target.ino() && m.dev() == target.dev())
        })
        .map(Pid::from_raw)
        .collect()
}

/// SIGTERM to each process, SIGKILL to those still alive after `grace`.
pub fn kill_all(pids: &[Pid], grace: Duration) {
    let me = Pid::this();
    let pids: Vec<Pid> = pids.iter().copied().filter(|p| *p != me).collect();
    for pid in &pids {
        let _ = nix::sys::signal::kill(*pid, Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    let alive = |p: &Pid| nix::sys::signal::kill(*p, None).is_ok() && !is_zombie(*p);
    while Instant::now() < deadline && pids.iter().any(alive) {
        std::thread::sleep(Duration::from_millis(20));
    }
    for pid in pids.iter().filter(|p| alive(p)) {
        let _ = nix::sys::signal::kill(*pid, Signal::SIGKILL);
    }
}

fn is_zombie(pid: Pid) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('Z')))
        .unwrap_or(true)
}

/// Runs `f` on a thread that has entered network namespace `name`. Sockets `f` creates belong to that namespace
/// and may be used from any thread afterwards.
pub fn run_in<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> Result<T, Error> {
    // The empty name is the caller's own namespace.
    if name.is_empty() {
        return Ok(f());
    }
    let file = File::open(path(name)).map_err(|e| Error::Netns {
        name: name.into(),
        detail: e.to_string(),
    })?;
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| Error::Netns {
                name: name.into(),
                detail: format!("setns: {e}"),
            })?;
            Ok(f())
        })
        .join()
        .map_err(|_| Error::Netns {
            name: name.into(),
            detail: "the thread running in it panicked".into(),
        })?
    })
}

/// Makes `cmd` enter namespace `name` between fork and exec. Keep the returned file until `spawn` returned.
pub fn enter_on_exec(cmd: &mut Command, name: &str) -> Result<File, Error> {
    let file = File::open(path(name)).map_err(|e| Error::Netns {
        name: name.into(),
        detail: e.to_string(),
    })?;
    let fd = file.as_raw_fd();
    // SAFETY: between fork and exec only async-signal-safe calls are allowed; setns(2) is a plain system call on
    // a descriptor that the parent keeps open until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    Ok(file)
}

/// Enters namespace `name` on the calling thread (for a process about to exec).
pub fn enter_current_thread(name: &str) -> Result<(), Error> {
    let file = File::open(path(name)).map_err(|e| Error::Netns {
        name: name.into(),
        detail: e.to_string(),
    })?;
    nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| Error::Netns {
        name: name.into(),
        detail: format!("setns: {e}"),
    })
}
