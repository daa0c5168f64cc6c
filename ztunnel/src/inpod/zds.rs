//! The ZDS client (spec §7): connects to the node agent's SOCK_SEQPACKET socket, says Hello,
//! receives one request per record (with the pod netns fd in SCM_RIGHTS on `add`), hands each
//! to the [`super::manager::WorkloadManager`], and answers every request with an Ack.
//! Reconnects with backoff (10 ms doubling to 15 s). Owns framing and fds; the protocol rules
//! are in [`super::session`].

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::socket::{
    AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType, UnixAddr, connect, recvmsg,
    sendmsg, socket,
};
use prost::Message;
use proto::istio::workload::zds::{
    Ack, Version, WorkloadRequest, WorkloadResponse, ZdsHello, workload_response,
};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;

use super::manager::WorkloadManager;
use super::netns::Netns;
use super::session::{Action, Session, validate};

/// Records are read into a buffer of this size; anything larger is an error (spec §7).
const MAX_MESSAGE: usize = 1024;
const BACKOFF_START: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum ZdsError {
    #[error("connecting to {path}: {source}")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("ZDS socket I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("ZDS message truncated (data or control over {MAX_MESSAGE} bytes)")]
    Truncated,
    #[error("undecodable ZDS request: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("protocol violation: {0}")]
    Protocol(#[from] super::session::ProtocolError),
    #[error("node agent closed the connection")]
    Closed,
}

struct Conn {
    fd: AsyncFd<OwnedFd>,
}

impl Conn {
    fn connect(path: &Path) -> Result<Self, ZdsError> {
        let err = |e: nix::Error| ZdsError::Connect {
            path: path.to_owned(),
            source: e.into(),
        };
        let fd = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(err)?;
        connect(fd.as_raw_fd(), &UnixAddr::new(path).map_err(err)?).map_err(err)?;
        nix::fcntl::fcntl(
            &fd,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .map_err(err)?;
        // SAFETY: `fd` is an open socket we own; the AsyncFd takes ownership of it, so it stays
        // valid (and is not closed by anyone else) for as long as it is registered.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)?;
        Ok(Self { fd })
    }

    async fn send(&self, msg: &impl Message) -> Result<(), ZdsError> {
        let bytes = msg.encode_to_vec();
        self.fd
            .async_io(Interest::WRITABLE, |fd| {
                sendmsg::<()>(
                    fd.as_raw_fd(),
                    &[IoSlice::new(&bytes)],
                    &[],
                    MsgFlags::MSG_NOSIGNAL,
                    None,
                )
                .map_err(std::io::Error::from)
            })
            .await?;
        Ok(())
    }

    /// One record and the fds that came with it.
    async fn recv(&self) -> Result<(Vec<u8>, Vec<OwnedFd>), ZdsError> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        let (len, fds, truncated) = self
            .fd
            .async_io(Interest::READABLE, |fd| {
                let mut cmsg = nix::cmsg_space!([RawFd; 4]);
                let mut iov = [IoSliceMut::new(&mut buf)];
                let msg = recvmsg::<()>(
                    fd.as_raw_fd(),
                    &mut iov,
                    Some(&mut cmsg),
                    MsgFlags::MSG_CMSG_CLOEXEC,
                )
                .map_err(std::io::Error::from)?;
                let mut fds = Vec::new();
                for c in msg.cmsgs().map_err(std::io::Error::from)? {
                    if let ControlMessageOwned::ScmRights(raw) = c {
                        // SAFETY: the kernel just installed these fds in our table for us; we
                        // take sole ownership of each exactly once.
                        fds.extend(raw.into_iter().map(|r| unsafe { OwnedFd::from_raw_fd(r) }));
                    }
                }
                let truncated = msg
                    .flags
                    .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
                Ok((msg.bytes, fds, truncated))
            })
            .await?;
        if truncated {
            return Err(ZdsError::Truncated);
        }
        if len == 0 && fds.is_empty() {
            return Err(ZdsError::Closed);
        }
        buf.truncate(len);
        Ok((buf, fds))
    }

    async fn ack(&self, error: Option<String>) -> Result<(), ZdsError> {
        self.send(&WorkloadResponse {
            payload: Some(workload_response::Payload::Ack(Ack {
                error: error.unwrap_or_default(),
            })),
        })
        .await
    }
}

/// Serves one connection until it ends.
async fn serve(path: &Path, manager: &Arc<WorkloadManager>) -> Result<(), ZdsError> {
    let conn = Conn::connect(path)?;
    conn.send(&ZdsHello {
        version: Version::V1 as i32,
    })
    .await?;
    tracing::info!(path = %path.display(), "connected to the node agent");
    let mut session = Session::default();
    loop {
        let (bytes, mut fds) = conn.recv().await?;
        let request = match WorkloadRequest::decode(bytes.as_slice()) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "undecodable ZDS request; NACK");
                conn.ack(Some(format!("decode: {e}"))).await?;
                continue;
            }
        };
        let request = match validate(request, fds.len()) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "invalid ZDS request; NACK");
                conn.ack(Some(e.to_string())).await?;
                continue;
            }
        };
        let action = match session.on_request(request) {
            Ok(a) => a,
            Err(e) => {
                conn.ack(Some(e.to_string())).await?;
                return Err(e.into());
            }
        };
        let result = match action {
            Action::Add { uid, info } => match fds.pop().map(Netns::from_fd) {
                Some(Ok(netns)) => manager.add(uid, info, netns).await,
                Some(Err(e)) => Err(format!("bad netns fd: {e}")),
                None => Err("add without netns fd".to_owned()),
            },
            Action::Keep => Ok(()),
            Action::Del { uid } => {
                manager.del(&uid).await;
                Ok(())
            }
            Action::Reconcile { keep } => {
                manager.reconcile(&keep).await;
                manager.mark_snapshot_received();
                Ok(())
            }
        };
        if let Err(e) = &result {
            tracing::warn!(error = %e, "ZDS request failed; NACK");
        }
        conn.ack(result.err()).await?;
    }
}

/// Keeps a connection to the node agent until `shutdown` fires.
pub async fn run(
    path: PathBuf,
    manager: Arc<WorkloadManager>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_START;
    loop {
        let started = tokio::time::Instant::now();
        tokio::select! {
            result = serve(&path, &manager) => {
                match result {
                    Err(ZdsError::Closed) => tracing::info!("node agent closed the ZDS connection; reconnecting"),
                    Err(ZdsError::Connect { ref source, .. }) if backoff < Duration::from_secs(1) => {
                        tracing::debug!(error = %source, "node agent not reachable yet")
                    }
                    Err(e) => tracing::warn!(error = %e, "ZDS connection ended"),
                    Ok(()) => {}
                }
            }
            _ = shutdown.wait_for(|s| *s) => return,
        }
        if started.elapsed() > Duration::from_secs(5) {
            backoff = BACKOFF_START;
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}
