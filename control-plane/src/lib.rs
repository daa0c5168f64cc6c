//! The mesh control plane: the cluster (from the Kubernetes API server, or manifest files) → the xDS resources that configure node
//! tunnels (`istio.workload.Address`, `istio.security.Authorization`), waypoints and Envoy
//! (listeners, routes, clusters, endpoints) and proxyless gRPC clients; plus the Istio CA.

pub mod admin;
pub mod authz;
pub mod ca;
pub mod kube_source;
pub mod manifest;
pub mod serve;
pub mod source;
pub mod translate;
pub mod watcher;
