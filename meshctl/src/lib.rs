//! The local mesh: a whole cluster on one Linux machine, with no Kubernetes and no containers.
//!
//! Nodes are network namespaces joined by an underlay bridge that lives in its own namespace; pods are network
//! namespaces attached to their node through the node's CNI chain (the real `bridge` + `host-local` plugins, run
//! the way libcni runs them); each container is a process inside its pod's namespace, supervised by the mesh
//! daemon; Services get an address from the service CIDR and each node translates it to the selected pods.
//! The host's root namespace, its routes and its firewall are never touched.
//!
//! Used by the `meshctl` CLI and by the end-to-end tests. Module map:
//! - `manifest` (parse + per-object rules) → `plan` (pure cross-object decisions) → `daemon` (converge);
//! - `topology` (underlay, nodes), `cni` (chain driver), `pods`, `supervisor`, `services` (Service NAT),
//!   `waypoints` (what a waypoint pod gets at start: binary, control-plane address, its own CA token);
//! - `client` (the CLI side of each command), `control` (CLI ↔ daemon), `status`/`report`, `demo`, `probe`;
//! - `netns`, `cmd`, `paths`, `error`: plumbing.

pub mod client;
pub mod cluster;
pub mod cmd;
pub mod cni;
pub mod control;
pub mod control_plane;
pub mod daemon;
pub mod demo;
pub mod error;
pub mod kube_mirror;
pub mod local_rules;
pub mod netns;
pub mod node_agents;
pub mod paths;
pub mod plan;
pub mod pods;
pub mod probe;
pub mod report;
pub mod services;
pub mod status;
pub mod supervisor;
pub mod topology;
pub mod waypoints;

/// Manifests are shared with the control plane, which reads the same files.
pub use ::control_plane::manifest;
pub use error::Error;
