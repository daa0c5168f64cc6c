//! Which tunnel connection gets which message, and what each connection may be sent in its current phase
//! (pure; the connection tasks in [`super::server`] follow these decisions).

/// Connections are numbered in accept order; a larger id is newer.
pub type ConnId = u64;

/// The agent's live messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Live {
    Add,
    Del,
}

/// `add` goes only to the newest connection (a rolling upgrade's new tunnel); `del` to all of them, so a pod
/// leaves every tunnel that may still hold it.
pub fn targets(msg: Live, conns: &[ConnId]) -> Vec<ConnId> {
    match msg {
        Live::Add => conns.iter().max().copied().into_iter().collect(),
        Live::Del => {
            let mut all = conns.to_vec();
            all.sort_unstable();
            all
        }
    }
}

/// A connection's protocol phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Connected; the tunnel's Hello is due.
    AwaitHello,
    /// Hello received; replaying the cache (`add`/`keep`), then `snapshot_sent`.
    Replaying,
    /// Snapshot sent: only `add` and `del`.
    Live,
}

/// Message kinds the agent sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outgoing {
    Add,
    Keep,
    Del,
    SnapshotSent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot send {msg:?} in phase {phase:?}")]
pub struct PhaseError {
    pub phase: Phase,
    pub msg: Outgoing,
}

impl Phase {
    /// The Hello arrived.
    pub fn on_hello(self) -> Result<Self, PhaseError> {
        match self {
            Self::AwaitHello => Ok(Self::Replaying),
            phase => Err(PhaseError {
                phase,
                msg: Outgoing::SnapshotSent,
            }),
        }
    }

    /// The phase after sending `msg`, or an error when the protocol forbids it (`keep` after the snapshot or a
    /// second snapshot are fatal for the tunnel).
    pub fn send(self, msg: Outgoing) -> Result<Self, PhaseError> {
        use Outgoing::*;
        match (self, msg) {
            (Self::Replaying, Add | Keep | Del) => Ok(Self::Replaying),
            (Self::Replaying, SnapshotSent) => Ok(Self::Live),
            (Self::Live, Add | Del) => Ok(Self::Live),
            (phase, msg) => Err(PhaseError { phase, msg }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn add_to_newest_del_to_all() {
        assert_eq!(targets(Live::Add, &[]), Vec::<ConnId>::new());
        assert_eq!(targets(Live::Add, &[3, 7, 5]), [7]);
        assert_eq!(targets(Live::Del, &[3, 7, 5]), [3, 5, 7]);
        assert_eq!(targets(Live::Del, &[]), Vec::<ConnId>::new());
    }

    #[test]
    fn phases() {
        use Outgoing::*;
        let p = Phase::AwaitHello;
        assert!(p.send(Add).is_err());
        let p = p.on_hello().unwrap();
        assert_eq!(p.send(Keep), Ok(Phase::Replaying));
        assert_eq!(p.send(Add), Ok(Phase::Replaying));
        let live = p.send(SnapshotSent).unwrap();
        assert_eq!(live, Phase::Live);
        assert!(live.send(Keep).is_err());
        assert!(live.send(SnapshotSent).is_err());
        assert_eq!(live.send(Del), Ok(Phase::Live));
        assert!(live.on_hello().is_err());
    }
}
