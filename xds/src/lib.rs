//! xDS over gRPC: an aggregated discovery server for any set of type URLs (state of the world and
//! delta) and an ADS client, both per the Envoy xDS protocol.
//!
//! Owns the protocol: subscriptions, versions, nonces, ACK/NACK, push order. Does not own what the
//! resources mean: servers are handed [`Snapshot`]s by a [`SnapshotSource`], clients hand decoded
//! resources to typed handlers.

pub mod client;
pub mod resource;
pub mod server;
pub mod source;

pub use resource::{Resource, Snapshot, type_url};
pub use server::{AckEvent, AdsServer, ServeError, serve};
pub use source::{SharedSnapshot, SnapshotSource};

/// The Envoy protos this crate speaks, re-exported so users need not name `envoy-types` themselves.
pub use envoy_types::pb;
