//! Pure decisions of the ADS server: no I/O, no clocks, no locks.
//!
//! Owns: what a client is subscribed to ([`Subscription`]), what to send it given a snapshot and what it
//! already has ([`sotw::decide`], [`delta::decide`]), the order of types in a push ([`order`]), and how a
//! request answers an earlier response ([`AckLedger`]), and which endpoints Envoy needs again after a
//! cluster changes ([`warming`]). Does not own: nonces, protos on the wire, streams, metrics or the debug
//! dump (see the sibling session and stream modules).

mod acks;
pub(crate) mod delta;
pub(crate) mod order;
pub(crate) mod sotw;
mod subscription;
pub(crate) mod warming;

pub(crate) use acks::{AckLedger, Reply};
pub(crate) use subscription::{Subscription, WILDCARD};
