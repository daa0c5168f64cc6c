//! The ZDS protocol rules of one connection, without I/O (spec §7): what each request means
//! given what came before. `keep` or a second snapshot after `snapshot_sent` are fatal; before
//! the snapshot a `del` only forgets the uid; after it, pods not named are torn down.

use std::collections::HashSet;

use proto::istio::workload::zds::{WorkloadInfo, WorkloadRequest, workload_request::Payload};

/// A decoded request, validated against the fd count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Add { uid: String, info: WorkloadInfo },
    Keep { uid: String },
    Del { uid: String },
    SnapshotSent,
}

/// What the manager must do for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start (or keep, if identical) the pod's proxies.
    Add { uid: String, info: WorkloadInfo },
    /// Nothing to do now; the uid survives the snapshot.
    Keep,
    /// Stop the pod's proxies.
    Del { uid: String },
    /// Snapshot complete: stop every held pod not in this set.
    Reconcile { keep: HashSet<String> },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("request carries no payload")]
    Empty,
    #[error("add for {uid:?} without workload_info")]
    MissingInfo { uid: String },
    #[error("{what} with an empty uid")]
    EmptyUid { what: &'static str },
    #[error("{what} must carry exactly {want} fd(s), got {got}")]
    Fds {
        what: &'static str,
        want: usize,
        got: usize,
    },
    #[error("{what} after snapshot_sent")]
    AfterSnapshot { what: &'static str },
}

impl ProtocolError {
    /// Fatal errors end the connection; the others are NACKed.
    pub fn is_fatal(&self) -> bool {
        matches!(self, ProtocolError::AfterSnapshot { .. })
    }
}

/// Checks a request's shape and its fd count.
pub fn validate(req: WorkloadRequest, fds: usize) -> Result<Request, ProtocolError> {
    let check_fds = |what, want| {
        if fds == want {
            Ok(())
        } else {
            Err(ProtocolError::Fds {
                what,
                want,
                got: fds,
            })
        }
    };
    let non_empty = |what, uid: String| {
        if uid.is_empty() {
            Err(ProtocolError::EmptyUid { what })
        } else {
            Ok(uid)
        }
    };
    match req.payload.ok_or(ProtocolError::Empty)? {
        Payload::Add(a) => {
            check_fds("add", 1)?;
            let uid = non_empty("add", a.uid)?;
            let info = a
                .workload_info
                .ok_or_else(|| ProtocolError::MissingInfo { uid: uid.clone() })?;
            Ok(Request::Add { uid, info })
        }
        Payload::Keep(k) => {
            check_fds("keep", 0)?;
            Ok(Request::Keep {
                uid: non_empty("keep", k.uid)?,
            })
        }
        Payload::Del(d) => {
            check_fds("del", 0)?;
            Ok(Request::Del {
                uid: non_empty("del", d.uid)?,
            })
        }
        Payload::SnapshotSent(_) => {
            check_fds("snapshot_sent", 0)?;
            Ok(Request::SnapshotSent)
        }
    }
}

/// Per-connection protocol state.
#[derive(Debug, Default)]
pub struct Session {
    snapshot_done: bool,
    named: HashSet<String>,
}

impl Session {
    pub fn snapshot_done(&self) -> bool {
        self.snapshot_done
    }

    /// The action for `req`.
    pub fn on_request(&mut self, req: Request) -> Result<Action, ProtocolError> {
        match req {
            Request::Add { uid, info } => {
                if !self.snapshot_done {
                    self.named.insert(uid.clone());
                }
                Ok(Action::Add { uid, info })
            }
            Request::Keep { uid } => {
                if self.snapshot_done {
                    return Err(ProtocolError::AfterSnapshot { what: "keep" });
                }
                self.named.insert(uid);
                Ok(Action::Keep)
            }
            Request::Del { uid } => {
                if self.snapshot_done {
                    Ok(Action::Del { uid })
                } else {
                    self.named.remove(&uid);
                    Ok(Action::Keep)
                }
            }
            Request::SnapshotSent => {
                if self.snapshot_done {
                    return Err(ProtocolError::AfterSnapshot {
                        what: "snapshot_sent",
                    });
                }
                self.snapshot_done = true;
                Ok(Action::Reconcile {
                    keep: std::mem::take(&mut self.named),
                })
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proto::istio::workload::zds::{AddWorkload, DelWorkload, KeepWorkload, SnapshotSent};

    fn info() -> WorkloadInfo {
        WorkloadInfo {
            name: "p".into(),
            namespace: "ns".into(),
            service_account: "sa".into(),
        }
    }
    fn req(p: Payload) -> WorkloadRequest {
        WorkloadRequest { payload: Some(p) }
    }
    fn add(uid: &str) -> WorkloadRequest {
        req(Payload::Add(AddWorkload {
            uid: uid.into(),
            workload_info: Some(info()),
        }))
    }

    #[test]
    fn validation_table() {
        assert!(validate(add("a"), 1).is_ok());
        assert_eq!(
            validate(add("a"), 0),
            Err(ProtocolError::Fds {
                what: "add",
                want: 1,
                got: 0
            })
        );
        assert_eq!(
            validate(add("a"), 2),
            Err(ProtocolError::Fds {
                what: "add",
                want: 1,
                got: 2
            })
        );
        let no_info = req(Payload::Add(AddWorkload {
            uid: "a".into(),
            workload_info: None,
        }));
        assert!(matches!(
            validate(no_info, 1),
            Err(ProtocolError::MissingInfo { .. })
        ));
        let del = req(Payload::Del(DelWorkload { uid: "a".into() }));
        assert!(matches!(validate(del, 1), Err(ProtocolError::Fds { .. })));
        assert_eq!(
            validate(WorkloadRequest { payload: None }, 0),
            Err(ProtocolError::Empty)
        );
        assert!(matches!(
            validate(add(""), 1),
            Err(ProtocolError::EmptyUid { .. })
        ));
    }

    #[test]
    fn snapshot_sequence() {
        let mut s = Session::default();
        s.on_request(validate(add("a"), 1).unwrap()).unwrap();
        s.on_request(validate(add("b"), 1).unwrap()).unwrap();
        let keep = req(Payload::Keep(KeepWorkload { uid: "c".into() }));
        assert_eq!(
            s.on_request(validate(keep.clone(), 0).unwrap()),
            Ok(Action::Keep)
        );
        let del_b = req(Payload::Del(DelWorkload { uid: "b".into() }));
        assert_eq!(
            s.on_request(validate(del_b.clone(), 0).unwrap()),
            Ok(Action::Keep)
        );
        let snap = req(Payload::SnapshotSent(SnapshotSent {}));
        let Action::Reconcile { keep: kept } =
            s.on_request(validate(snap.clone(), 0).unwrap()).unwrap()
        else {
            panic!("expected reconcile")
        };
        assert_eq!(kept, HashSet::from(["a".to_owned(), "c".to_owned()]));
        assert_eq!(
            s.on_request(validate(del_b, 0).unwrap()),
            Ok(Action::Del { uid: "b".into() })
        );
        let e = s.on_request(validate(keep, 0).unwrap()).unwrap_err();
        assert!(e.is_fatal());
        assert!(
            s.on_request(validate(snap, 0).unwrap())
                .unwrap_err()
                .is_fatal()
        );
    }
}
