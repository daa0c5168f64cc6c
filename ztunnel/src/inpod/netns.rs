//! A pod's network namespace (the fd ZDS hands us) and running socket creation inside it.
//!
//! Sockets keep the netns they were created in, so a listener or an upstream socket is made by
//! switching the current thread into the pod netns, creating it, and switching back before any
//! `.await`. Owns that switch; does not own which sockets are made (see [`super::socket`]).

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;

use nix::sched::{CloneFlags, setns};
use nix::sys::stat::fstat;

/// An open pod netns. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Netns {
    fd: Arc<OwnedFd>,
    inode: u64,
    dev: u64,
}

impl PartialEq for Netns {
    /// Same namespace = same inode and device.
    fn eq(&self, other: &Self) -> bool {
        self.inode == other.inode && self.dev == other.dev
    }
}

impl Netns {
    /// Wraps a netns fd, remembering its inode and device (its identity across ZDS adds).
    pub fn from_fd(fd: OwnedFd) -> io::Result<Self> {
        let st = fstat(fd.as_fd()).map_err(io::Error::from)?;
        // Whether it really is a network namespace shows at the first `run`: setns with
        // CLONE_NEWNET refuses any other fd, and that error names the fd.
        Ok(Self {
            fd: Arc::new(fd),
            #[allow(
                clippy::unnecessary_cast,
                reason = "st_ino/st_dev widths differ by target"
            )]
            inode: st.st_ino as u64,
            #[allow(
                clippy::unnecessary_cast,
                reason = "st_ino/st_dev widths differ by target"
            )]
            dev: st.st_dev as u64,
        })
    }

    /// Opens `/proc/<pid>/ns/net` or a bind-mounted netns path.
    pub fn open(path: &std::path::Path) -> io::Result<Self> {
        Self::from_fd(File::open(path)?.into())
    }

    pub fn inode(&self) -> u64 {
        self.inode
    }

    /// Runs `f` on the current thread inside this netns and switches back. `f` must not block
    /// on anything but socket set-up.
    pub fn run<T>(&self, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        let original = File::open("/proc/thread-self/ns/net")?;
        setns(self.fd.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| {
            io::Error::other(format!(
                "entering pod netns (fd {}): {e}",
                self.fd.as_raw_fd()
            ))
        })?;
        let result = f();
        if let Err(e) = setns(original.as_fd(), CloneFlags::CLONE_NEWNET) {
            // The thread would keep serving other pods from the wrong namespace: unrecoverable.
            tracing::error!(error = %e, "cannot return to the tunnel's own netns; aborting");
            std::process::abort();
        }
        result
    }
}
