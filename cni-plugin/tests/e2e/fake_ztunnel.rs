//! A fake ztunnel ZDS client: connects (SEQPACKET), says Hello, acks (or NACKs) every request, and records
//! what it got, checking that `add` carries exactly one fd (and which netns it is) and nothing else does.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sys::socket::{
    self, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType, UnixAddr,
};
use prost::Message;
use proto::istio::workload::zds::{
    Ack, WorkloadRequest, WorkloadResponse, ZdsHello, workload_request::Payload,
    workload_response::Payload as RespPayload,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// uid, namespace/name, netns inode of the fd.
    Add {
        uid: String,
        pod: String,
        netns_ino: u64,
    },
    Keep {
        uid: String,
    },
    Del {
        uid: String,
    },
    Snapshot,
    /// A protocol violation seen by the fake (wrong fd count, undecodable message).
    Bad(String),
    Closed,
}

pub(crate) struct FakeZtunnel {
    fd: Arc<OwnedFd>,
    pub(crate) events: Arc<Mutex<Vec<Event>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeZtunnel {
    /// Connects and says Hello. `nack` makes it reject every `add`.
    pub(crate) fn connect(path: &Path, nack: bool) -> Self {
        let fd = socket::socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        socket::connect(fd.as_raw_fd(), &UnixAddr::new(path).unwrap()).unwrap();
        let tv = nix::sys::time::TimeVal::new(0, 100_000);
        socket::setsockopt(&fd, socket::sockopt::ReceiveTimeout, &tv).unwrap();
        let hello = ZdsHello { version: 1 }.encode_to_vec();
        socket::send(fd.as_raw_fd(), &hello, MsgFlags::MSG_NOSIGNAL).unwrap();
        let fd = Arc::new(fd);
        let events = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (fd, events, stop) = (fd.clone(), events.clone(), stop.clone());
            std::thread::spawn(move || serve(fd.as_raw_fd(), &events, &stop, nack))
        };
        Self {
            fd,
            events,
            stop,
            thread: Some(thread),
        }
    }

    pub(crate) fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    /// Waits until `pred` holds for the events (≤ `timeout`), returning them.
    pub(crate) fn wait(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[Event]) -> bool,
    ) -> Vec<Event> {
        super::harness::wait_for(what, timeout, || {
            let ev = self.events();
            pred(&ev).then_some(ev)
        })
    }

    /// Disconnects (as a ztunnel exit would).
    pub(crate) fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = socket::shutdown(self.fd.as_raw_fd(), socket::Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for FakeZtunnel {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn serve(fd: RawFd, events: &Mutex<Vec<Event>>, stop: &AtomicBool, nack: bool) {
    let push = |e| events.lock().unwrap().push(e);
    while !stop.load(Ordering::SeqCst) {
        let mut buf = vec![0u8; 1024];
        let mut cmsg = nix::cmsg_space!([RawFd; 4]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = match socket::recvmsg::<()>(fd, &mut iov, Some(&mut cmsg), MsgFlags::empty()) {
            Ok(m) => m,
            Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                push(Event::Bad(format!("recv: {e}")));
                return;
            }
        };
        let n = msg.bytes;
        let mut fds: Vec<OwnedFd> = Vec::new();
        for c in msg.cmsgs().unwrap() {
            if let ControlMessageOwned::ScmRights(raw) = c {
                // SAFETY: the kernel gave us these descriptors with this message.
                fds.extend(raw.into_iter().map(|r| unsafe { OwnedFd::from_raw_fd(r) }));
            }
        }
        if n == 0 && fds.is_empty() {
            push(Event::Closed);
            return;
        }
        let req = match WorkloadRequest::decode(&buf[..n]) {
            Ok(r) => r,
            Err(e) => {
                push(Event::Bad(format!("decode: {e}")));
                continue;
            }
        };
        let mut error = String::new();
        let event = match req.payload {
            Some(Payload::Add(a)) => {
                if fds.len() != 1 {
                    push(Event::Bad(format!("add with {} fds", fds.len())));
                }
                if nack {
                    error = "fake ztunnel rejects adds".into();
                }
                let info = a.workload_info.unwrap_or_default();
                let ino = fds
                    .first()
                    .map(|f| nix::sys::stat::fstat(f).unwrap().st_ino)
                    .unwrap_or(0);
                Event::Add {
                    uid: a.uid,
                    pod: format!("{}/{}", info.namespace, info.name),
                    netns_ino: ino,
                }
            }
            Some(Payload::Keep(k)) => Event::Keep { uid: k.uid },
            Some(Payload::Del(d)) => Event::Del { uid: d.uid },
            Some(Payload::SnapshotSent(_)) => Event::Snapshot,
            None => Event::Bad("empty request".into()),
        };
        if !matches!(event, Event::Add { .. }) && !fds.is_empty() {
            push(Event::Bad(format!("{event:?} with {} fds", fds.len())));
        }
        push(event);
        let ack = WorkloadResponse {
            payload: Some(RespPayload::Ack(Ack { error })),
        }
        .encode_to_vec();
        let _ = socket::sendmsg::<()>(fd, &[IoSlice::new(&ack)], &[], MsgFlags::MSG_NOSIGNAL, None);
    }
}

/// The inode of a netns path (what the fd in `add` must match).
pub(crate) fn netns_ino(path: &Path) -> u64 {
    nix::sys::stat::stat(path).unwrap().st_ino
}
