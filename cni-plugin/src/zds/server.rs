//! The ZDS listener and its connections. Each accepted tunnel connection is one task: Hello, replay of the
//! agent's cache (one Ack each), `snapshot_sent`, then live `add`/`del` jobs from [`ZdsHandle`] while watching
//! the socket so a dead connection is noticed even when idle.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::istio::workload::zds::WorkloadRequest;
use tokio::sync::{mpsc, oneshot};

use super::routing::{self, ConnId, Live, Outgoing, Phase};
use super::socket::{SeqPacket, SeqPacketListener};
use super::wire::{self, Workload};

#[derive(Debug, thiserror::Error)]
pub enum ZdsError {
    #[error("no ztunnel connection")]
    NoConnection,
    #[error("ztunnel rejected {kind} for {uid}: {error}")]
    Nack {
        kind: &'static str,
        uid: String,
        error: String,
    },
    #[error("ztunnel did not ack {kind} within {timeout:?}")]
    AckTimeout {
        kind: &'static str,
        timeout: Duration,
    },
    #[error("ztunnel connection closed")]
    Closed,
    #[error("ztunnel connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("ztunnel protocol: {0}")]
    Protocol(String),
    #[error("netns {path}: {source}")]
    Netns {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Wire(#[from] wire::WireError),
}

/// One pod of the agent's cache, as replayed to a new connection.
#[derive(Debug, Clone)]
pub struct ReplayItem {
    pub workload: Workload,
    /// The pod netns; `None` (or unopenable) → `keep`.
    pub netns: Option<PathBuf>,
}

/// The agent's side of the replay: what to replay and how each pod's Ack went.
pub trait ReplaySource: Send + Sync + 'static {
    fn snapshot(&self) -> Vec<ReplayItem>;
    /// `Ok(())` = acked, `Err(reason)` = NACK.
    fn replayed(&self, uid: &str, result: Result<(), String>);
}

struct Job {
    req: WorkloadRequest,
    netns: Option<PathBuf>,
    reply: oneshot::Sender<Result<(), ZdsError>>,
}

#[derive(Default)]
struct Hub {
    conns: Mutex<BTreeMap<ConnId, mpsc::Sender<Job>>>,
}

/// What the rest of the agent uses to talk to the tunnels. Cheap to clone.
#[derive(Clone)]
pub struct ZdsHandle {
    hub: Arc<Hub>,
    ack_timeout: Duration,
}

impl ZdsHandle {
    pub fn new(ack_timeout: Duration) -> Self {
        Self {
            hub: Arc::default(),
            ack_timeout,
        }
    }

    /// Number of tunnels connected (Hello received).
    pub fn connected(&self) -> usize {
        self.hub.conns.lock().map(|c| c.len()).unwrap_or(0)
    }

    fn senders(&self, msg: Live) -> Vec<(ConnId, mpsc::Sender<Job>)> {
        let Ok(conns) = self.hub.conns.lock() else {
            return Vec::new();
        };
        let ids: Vec<ConnId> = conns.keys().copied().collect();
        routing::targets(msg, &ids)
            .into_iter()
            .filter_map(|id| conns.get(&id).map(|tx| (id, tx.clone())))
            .collect()
    }

    /// Sends `add` (with the netns fd) to the newest tunnel and waits for its Ack.
    pub async fn add(&self, workload: &Workload, netns: &Path) -> Result<(), ZdsError> {
        let (id, tx) = self
            .senders(Live::Add)
            .pop()
            .ok_or(ZdsError::NoConnection)?;
        tracing::debug!(conn = id, uid = %workload.uid, "zds add");
        self.submit(&tx, wire::add(workload), Some(netns.into()))
            .await
    }

    /// Sends `del` to every tunnel (in parallel); returns how many acked. Failures are logged (a tunnel also
    /// drops pods missing from its next snapshot).
    pub async fn del(&self, uid: &str) -> usize {
        let mut waiting = Vec::new();
        for (id, tx) in self.senders(Live::Del) {
            let (reply, rx) = oneshot::channel();
            let job = Job {
                req: wire::del(uid),
                netns: None,
                reply,
            };
            if tx.send(job).await.is_ok() {
                waiting.push((id, rx));
            }
        }
        let mut acked = 0;
        for (id, rx) in waiting {
            match tokio::time::timeout(self.ack_timeout * 2, rx).await {
                Ok(Ok(Ok(()))) => acked += 1,
                Ok(Ok(Err(e))) => tracing::warn!(conn = id, %uid, error = %e, "zds del failed"),
                _ => tracing::warn!(conn = id, %uid, "zds del: no answer"),
            }
        }
        acked
    }

    async fn submit(
        &self,
        tx: &mpsc::Sender<Job>,
        req: WorkloadRequest,
        netns: Option<PathBuf>,
    ) -> Result<(), ZdsError> {
        let kind = wire::kind(&req);
        let (reply, rx) = oneshot::channel();
        tx.send(Job { req, netns, reply })
            .await
            .map_err(|_| ZdsError::Closed)?;
        // The job may queue behind a replay; allow for one more Ack wait beyond ours.
        match tokio::time::timeout(self.ack_timeout * 2, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(ZdsError::Closed),
            Err(_) => Err(ZdsError::AckTimeout {
                kind,
                timeout: self.ack_timeout * 2,
            }),
        }
    }
}

/// The listening ZDS server.
pub struct ZdsServer {
    listener: SeqPacketListener,
    path: PathBuf,
}

impl ZdsServer {
    /// Binds the socket now, so start-up fails early.
    pub fn bind(path: &Path) -> Result<Self, ZdsError> {
        Ok(Self {
            listener: SeqPacketListener::bind(path)?,
            path: path.into(),
        })
    }

    /// Accepts tunnels forever; each gets its own task.
    pub async fn run(self, handle: ZdsHandle, source: Arc<dyn ReplaySource>) {
        tracing::info!(path = %self.path.display(), "zds server listening");
        let mut next_id: ConnId = 0;
        loop {
            match self.listener.accept().await {
                Ok(sock) => {
                    next_id += 1;
                    let id = next_id;
                    let handle = handle.clone();
                    let source = source.clone();
                    tokio::spawn(async move {
                        let r = serve(id, sock, &handle, source.as_ref()).await;
                        if let Ok(mut conns) = handle.hub.conns.lock() {
                            conns.remove(&id);
                        }
                        match r {
                            Ok(()) => tracing::info!(conn = id, "ztunnel disconnected"),
                            Err(e) => {
                                tracing::warn!(conn = id, error = %e, "ztunnel connection ended")
                            }
                        }
                    });
                }
                Err(e) => {
                    tracing::error!(error = %e, "zds accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

struct Conn {
    id: ConnId,
    sock: SeqPacket,
    phase: Phase,
    ack_timeout: Duration,
}

async fn serve(
    id: ConnId,
    sock: SeqPacket,
    handle: &ZdsHandle,
    source: &dyn ReplaySource,
) -> Result<(), ZdsError> {
    let mut conn = Conn {
        id,
        sock,
        phase: Phase::AwaitHello,
        ack_timeout: handle.ack_timeout,
    };
    let hello = tokio::time::timeout(conn.ack_timeout, conn.sock.recv())
        .await
        .map_err(|_| ZdsError::Protocol("no hello".into()))??;
    if hello.data.is_empty() && hello.fds.is_empty() {
        return Err(ZdsError::Closed);
    }
    wire::decode_hello(&hello.data)?;
    conn.phase = conn
        .phase
        .on_hello()
        .map_err(|e| ZdsError::Protocol(e.to_string()))?;
    let (tx, mut rx) = mpsc::channel::<Job>(256);
    if let Ok(mut conns) = handle.hub.conns.lock() {
        conns.insert(id, tx);
    }
    tracing::info!(conn = id, "ztunnel connected; replaying");
    // Replay, one pod at a time.
    let items = source.snapshot();
    let count = items.len();
    for item in items {
        let uid = item.workload.uid.clone();
        let r = match item.netns.as_deref().map(File::open) {
            Some(Ok(file)) => conn.request(&wire::add(&item.workload), Some(&file)).await,
            Some(Err(e)) => {
                tracing::warn!(conn = id, %uid, error = %e, "no netns handle; sending keep");
                conn.request(&wire::keep(&uid), None).await
            }
            None => conn.request(&wire::keep(&uid), None).await,
        };
        match r {
            Ok(()) => source.replayed(&uid, Ok(())),
            Err(ZdsError::Nack { error, .. }) => source.replayed(&uid, Err(error)),
            Err(e) => return Err(e),
        }
    }
    conn.request(&wire::snapshot_sent(), None).await?;
    tracing::info!(conn = id, pods = count, "snapshot sent");
    loop {
        tokio::select! {
            job = rx.recv() => {
                let Some(job) = job else { return Ok(()) };
                let file = match job.netns.as_deref().map(|p| (p, File::open(p))) {
                    Some((_, Ok(f))) => Some(f),
                    Some((p, Err(source))) => {
                        let _ = job.reply.send(Err(ZdsError::Netns { path: p.into(), source }));
                        continue;
                    }
                    None => None,
                };
                let r = conn.request(&job.req, file.as_ref()).await;
                let fatal = matches!(&r, Err(e) if !matches!(e, ZdsError::Nack { .. }));
                let reason = r.as_ref().err().map(|e| e.to_string());
                let _ = job.reply.send(r);
                if fatal {
                    return Err(ZdsError::Protocol(reason.unwrap_or_default()));
                }
            }
            got = conn.sock.recv() => {
                let got = got?;
                if got.data.is_empty() && got.fds.is_empty() {
                    return Ok(());
                }
                return Err(ZdsError::Protocol("unsolicited message from ztunnel".into()));
            }
        }
    }
}

impl Conn {
    /// Sends one request and waits for its Ack. A NACK is `Err(Nack)`; anything else is fatal for the
    /// connection (the two sides would be out of step).
    async fn request(&mut self, req: &WorkloadRequest, fd: Option<&File>) -> Result<(), ZdsError> {
        let kind = wire::kind(req);
        let out = match kind {
            "add" => Outgoing::Add,
            "keep" => Outgoing::Keep,
            "del" => Outgoing::Del,
            _ => Outgoing::SnapshotSent,
        };
        self.phase = self
            .phase
            .send(out)
            .map_err(|e| ZdsError::Protocol(e.to_string()))?;
        let buf = wire::encode(req)?;
        self.sock.send(&buf, fd.map(|f| f.as_raw_fd())).await?;
        let got = tokio::time::timeout(self.ack_timeout, self.sock.recv())
            .await
            .map_err(|_| ZdsError::AckTimeout {
                kind,
                timeout: self.ack_timeout,
            })??;
        if got.data.is_empty() && got.fds.is_empty() {
            return Err(ZdsError::Closed);
        }
        if got.truncated || !got.fds.is_empty() {
            return Err(ZdsError::Protocol("malformed ack".into()));
        }
        match wire::decode_ack(&got.data)? {
            None => {
                tracing::debug!(conn = self.id, kind, "acked");
                Ok(())
            }
            Some(error) => Err(ZdsError::Nack {
                kind,
                uid: uid_of(req),
                error,
            }),
        }
    }
}

fn uid_of(req: &WorkloadRequest) -> String {
    use proto::istio::workload::zds::workload_request::Payload;
    match &req.payload {
        Some(Payload::Add(a)) => a.uid.clone(),
        Some(Payload::Keep(k)) => k.uid.clone(),
        Some(Payload::Del(d)) => d.uid.clone(),
        _ => String::new(),
    }
}
