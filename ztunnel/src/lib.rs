//! The node tunnel.
pub mod admin;
pub mod app;
pub mod authz;
pub mod ca;
pub mod config;
pub mod config_dump;
pub mod config_source;
pub mod inpod;
pub mod local_config;
pub mod model;
pub mod proxy;
pub mod state;
pub mod telemetry;
pub mod version;
pub mod xds_source;
