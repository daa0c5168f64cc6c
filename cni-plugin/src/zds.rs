//! ZDS (spec §7): the node agent's server side of the pod hand-over to ztunnel.
//!
//! ```text
//! ztunnel ──connect (SOCK_SEQPACKET)──▶ agent
//!         ──ZdsHello{V1}─────────────▶
//!         ◀──add+netns fd / keep ─────  one per enrolled pod, each waiting for its Ack (5 s)
//!         ◀──snapshot_sent───────────
//!         ◀──add (newest connection only) / del (all connections)
//! ```
//!
//! * [`wire`]: message building, encoding/decoding and the size limit (pure).
//! * [`routing`]: which connection gets which message, and the per-connection protocol phase (pure).
//! * [`socket`]: the SEQPACKET socket with SCM_RIGHTS on tokio's `AsyncFd`.
//! * [`server`]: the listener, the connection tasks and the handle the agent uses.

pub mod routing;
pub mod server;
pub mod socket;
pub mod wire;
