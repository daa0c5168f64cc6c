//! HBONE building blocks shared by the node tunnel and the waypoint.
//!
//! Owns: the SPIFFE [`identity::Identity`], the Istio CA client and signer ([`ca`]), the
//! per-identity certificate manager ([`cert_manager`]), the rustls configurations ([`tls`]),
//! HBONE header parsing ([`headers`]), the HBONE server ([`server`]), the pooled HBONE
//! client ([`client`]) and the accept loops' back-off ([`accept`]); and two things both the tunnel and the
//! waypoint need: environment-variable tables ([`env_vars`]) and metrics exposition ([`exposition`]). Depends on nothing in the workspace but `proto`.
//!
//! Does not own: traffic decisions (authorization, target resolution, which identities a hop
//! expects) — callers pass those in — nor any node-daemon configuration.
//!
//! HTTP/2 is driven with `h2` directly rather than through hyper: HBONE is one CONNECT stream
//! per proxied TCP connection, and we need exact control of SETTINGS (windows, frame size,
//! stream limits), of the peer's MAX_CONCURRENT_STREAMS for pooling, of PING keepalive and
//! GOAWAY drain, and of END_STREAM as TCP half-close. hyper would hide most of those.

pub mod accept;
pub mod ca;
pub mod cert_manager;
pub mod client;
pub mod env_vars;
pub mod exposition;
pub mod h2_settings;
pub mod headers;
pub mod identity;
pub mod server;
pub mod stream;
#[cfg(feature = "test-util")]
pub mod test_util;
pub mod tls;

pub use identity::{Identity, IdentityError};
