//! In-pod mode (spec §7): pods arrive from the node agent over ZDS with their netns fd; for
//! each, the tunnel opens its listeners inside the pod's netns and dials from there.
//!
//! Owns the ZDS client ([`zds`]) and its protocol rules ([`session`]), the pod lifecycle
//! ([`manager`]), netns switching ([`netns`]) and pod socket creation ([`socket`]). The
//! proxies that run on those sockets are [`crate::proxy`]'s.

pub mod manager;
pub mod netns;
pub mod session;
pub mod socket;
pub mod zds;
