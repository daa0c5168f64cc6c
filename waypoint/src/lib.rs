//! The waypoint: a per-namespace L7 proxy. HBONE in (15008, mutual TLS, one CONNECT per client
//! connection), HTTP routing and policy from Envoy xDS resources, HBONE out to the chosen
//! endpoint's node tunnel under the waypoint's own identity.
//!
//! `model` is the typed configuration and the pure decisions over it (route selection, actions,
//! RBAC, load balancing); `pipeline` runs one request through its phases; the rest moves bytes
//! (`inbound` HBONE, `plain` sockets, `downstream` per connection, `upstream` pools) or serves
//! operators (`admin`, `config_dump`, `telemetry`).

pub mod admin;
pub mod app;
pub mod body;
pub mod ca;
pub mod cluster_stats;
pub mod config;
pub mod config_dump;
pub mod downstream;
pub mod inbound;
pub mod io;
pub mod model;
pub mod pipeline;
pub mod plain;
pub mod runtime;
pub mod state;
pub mod telemetry;
pub mod upstream;
pub mod xds_source;
