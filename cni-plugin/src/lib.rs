//! The chained CNI plugin (`istio-cni`) and the node agent (`cni-agent`) of the ambient mesh.
//!
//! **Owns:** deciding which pods are enrolled; installing the plugin binary and our CNI conf entry; the in-pod
//! redirect rules (native nftables + fwmark policy routing, spec §8) and the node-side probe SNAT; handing pods
//! to ztunnel over ZDS (spec §7) and recording their redirection state in `<run-dir>/pods.json`.
//! **Does not own:** the pod network itself (the primary CNI, e.g. bridge + host-local), the proxying (ztunnel),
//! pod lifecycle (the runtime / meshctl), or pod metadata (the pod source: the Kubernetes API via [`k8s`], or
//! meshctl's pod dir via [`pods`]).
//!
//! ```text
//! runtime ──CNI ADD──▶ istio-cni ──POST /cmdadd (pluginevent.sock)──▶ cni-agent ──nft/ip in pod netns
//!                        (plugin)                                          │
//!                                                   ztunnel ◀──ZDS add + netns fd (SEQPACKET)──┘
//! pod dir (poll) or API server (watch) ──▶ cni-agent informer: enroll late-labelled pods, un-enroll
//!                                          relabelled/deleted ones; Kubernetes: redirection annotation
//! ```
//!
//! Map: decisions are pure and table-tested — [`enrollment`], [`conflist`], [`rules`], [`zds::routing`],
//! [`zds::wire`], [`agent::informer`]; the I/O around them — [`plugin`], [`installer`], [`redirect`],
//! [`netns`] (+ [`netns::find`]), [`zds::socket`], [`zds::server`], [`agent`]. [`pods`] is the pod-source seam and
//! its pod-dir implementation, [`k8s`] the Kubernetes one (its doc lists the agent's RBAC), [`event`] the
//! plugin ⇄ agent protocol.
//!
//! `cni-agent` flags (each also an env var): see [`agent::AgentConfig`].

pub mod agent;
pub mod conflist;
pub mod enrollment;
pub mod event;
pub mod installer;
pub mod k8s;
pub mod netns;
pub mod plugin;
pub mod pods;
pub mod redirect;
pub mod rules;
pub mod zds;
