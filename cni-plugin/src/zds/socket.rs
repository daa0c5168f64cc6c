//! `AF_UNIX` `SOCK_SEQPACKET` sockets on tokio (`AsyncFd`), with one optional fd per message in `SCM_RIGHTS`.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::sys::socket::{
    self, AddressFamily, Backlog, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag,
    SockType, UnixAddr,
};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Largest datagram we read (the protocol's 1 KiB limit).
pub const RECV_BUFFER: usize = 1024;

/// A listening socket.
pub struct SeqPacketListener {
    fd: AsyncFd<OwnedFd>,
}

impl SeqPacketListener {
    /// Binds `path` (creating the parent directory and removing a stale socket file) and listens.
    pub fn bind(path: &Path) -> io::Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let fd = socket::socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        socket::bind(fd.as_raw_fd(), &UnixAddr::new(path)?)?;
        socket::listen(&fd, Backlog::new(128)?)?;
        Ok(Self { fd: register(fd)? })
    }

    pub async fn accept(&self) -> io::Result<SeqPacket> {
        loop {
            let mut guard = self.fd.readable().await?;
            let res = guard.try_io(|inner| {
                socket::accept4(
                    inner.get_ref().as_raw_fd(),
                    SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
                )
                .map_err(io::Error::from)
            });
            match res {
                Ok(Ok(raw)) => {
                    // SAFETY: accept4 returned a new descriptor that nothing else owns.
                    let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                    return SeqPacket::new(owned);
                }
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }
}

/// What one `recv` got.
#[derive(Debug)]
pub struct Received {
    pub data: Vec<u8>,
    /// Descriptors that came with it (the tunnel never sends any; they are closed on drop).
    pub fds: Vec<OwnedFd>,
    /// The datagram or its control data did not fit.
    pub truncated: bool,
}

/// A connected socket.
pub struct SeqPacket {
    fd: AsyncFd<OwnedFd>,
}

impl SeqPacket {
    pub fn new(fd: OwnedFd) -> io::Result<Self> {
        Ok(Self { fd: register(fd)? })
    }

    /// Sends one message, with `fd` in `SCM_RIGHTS` when given.
    pub async fn send(&self, data: &[u8], fd: Option<RawFd>) -> io::Result<()> {
        let fds: Vec<RawFd> = fd.into_iter().collect();
        loop {
            let mut guard = self.fd.ready(Interest::WRITABLE).await?;
            let res = guard.try_io(|inner| {
                let iov = [IoSlice::new(data)];
                let cmsgs: Vec<ControlMessage> = if fds.is_empty() {
                    Vec::new()
                } else {
                    vec![ControlMessage::ScmRights(&fds)]
                };
                socket::sendmsg::<()>(
                    inner.get_ref().as_raw_fd(),
                    &iov,
                    &cmsgs,
                    MsgFlags::MSG_NOSIGNAL,
                    None,
                )
                .map_err(io::Error::from)
            });
            match res {
                Ok(Ok(n)) if n == data.len() => return Ok(()),
                Ok(Ok(n)) => {
                    return Err(io::Error::other(format!(
                        "short send: {n} of {} bytes",
                        data.len()
                    )));
                }
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    /// Receives one message. An empty message with no descriptors means the peer closed. Cancel-safe.
    pub async fn recv(&self) -> io::Result<Received> {
        loop {
            let mut guard = self.fd.ready(Interest::READABLE).await?;
            let res = guard.try_io(|inner| recv_now(inner.get_ref().as_raw_fd()));
            match res {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }
}

/// Registers an owned socket with the reactor.
fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: `OwnedFd` is a valid open descriptor that the `AsyncFd` owns from now on; its `as_raw_fd` always
    // returns that same descriptor until it is dropped together with the `AsyncFd`.
    unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)
}

fn recv_now(fd: RawFd) -> io::Result<Received> {
    let mut buf = vec![0u8; RECV_BUFFER];
    let mut cmsg = nix::cmsg_space!([RawFd; 4]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = socket::recvmsg::<()>(fd, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)?;
    let truncated = msg
        .flags
        .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
    let mut fds = Vec::new();
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::ScmRights(raw) = c {
                for r in raw {
                    // SAFETY: the kernel installed these descriptors in our table for this message; we own them.
                    fds.push(unsafe { OwnedFd::from_raw_fd(r) });
                }
            }
        }
    }
    let n = msg.bytes;
    buf.truncate(n);
    Ok(Received {
        data: buf,
        fds,
        truncated,
    })
}
