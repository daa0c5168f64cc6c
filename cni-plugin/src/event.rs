//! The plugin → agent protocol over `<cni_agent_run_dir>/pluginevent.sock` (HTTP/1.1 over a unix socket).
//!
//! * `POST /cmdadd` with [`CmdAddRequest`]: enroll the pod; 200 once its rules are in place and ztunnel acked,
//!   anything else fails the CNI ADD (the body is a text reason).
//! * `GET /readyz`: 200 when the agent can serve ADD (a ztunnel is connected), 503 otherwise (CNI STATUS).

use serde::{Deserialize, Serialize};

/// The socket's file name in the agent's run dir.
pub const PLUGIN_EVENT_SOCKET: &str = "pluginevent.sock";
pub const PATH_CMDADD: &str = "/cmdadd";
pub const PATH_READYZ: &str = "/readyz";

/// Body of `POST /cmdadd` (field names as upstream istio-cni sends them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CmdAddRequest {
    #[serde(rename = "Netns")]
    pub netns: String,
    #[serde(rename = "PodName")]
    pub pod_name: String,
    #[serde(rename = "PodNamespace")]
    pub pod_namespace: String,
    #[serde(rename = "IPs", default)]
    pub ips: Vec<String>,
}
