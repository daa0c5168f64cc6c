//! The node agent's configuration: every flag has an environment variable.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde_json::{Value, json};

use crate::conflist::PLUGIN_TYPE;
use crate::enrollment::EnrollmentPolicy;

/// Where the agent learns about pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodSourceConfig {
    /// `--pod-dir`.
    Dir(PathBuf),
    /// The API server: of `--kubeconfig`, or the default chain (in-cluster) when `None`.
    Kube { kubeconfig: Option<PathBuf> },
}

/// `cni-agent`: installs the istio-cni plugin, redirects enrolled pods' traffic to ztunnel and hands the pods
/// to ztunnel over ZDS.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "cni-agent",
    version,
    about = "The node agent of the ambient mesh: installs the istio-cni plugin, redirects enrolled pods' traffic \
             to ztunnel and hands the pods to ztunnel over ZDS"
)]
pub struct AgentConfig {
    /// CNI configuration directory whose primary (lexically first) file gets our entry.
    #[arg(long, env = "CNI_NET_DIR", default_value = "/etc/cni/net.d")]
    pub cni_conf_dir: PathBuf,
    /// Edit this file of the conf dir instead of the lexically first one.
    #[arg(long, env = "CNI_CONF_NAME")]
    pub cni_conf_name: Option<String>,
    /// Where the runtime looks for plugin binaries; `istio-cni` is copied there.
    #[arg(long, env = "CNI_BIN_DIR", default_value = "/opt/cni/bin")]
    pub cni_bin_dir: PathBuf,
    /// The built `istio-cni` binary to install.
    #[arg(long, env = "CNI_PLUGIN_BINARY")]
    pub plugin_binary: PathBuf,
    /// Agent run dir: `pluginevent.sock` and `pods.json`.
    #[arg(long, env = "CNI_AGENT_RUN_DIR", default_value = "/var/run/istio-cni")]
    pub run_dir: PathBuf,
    /// Pod source directory (`<namespace>.<name>.json` files; the local mesh). When set it wins over
    /// `--kubeconfig`; when neither is set the agent uses the Kubernetes in-cluster configuration.
    #[arg(long, env = "CNI_POD_DIR")]
    pub pod_dir: Option<PathBuf>,
    /// Watch this node's pods and all namespaces through the API server of this kubeconfig (a single path).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubernetes source: where bind-mounted pod network namespaces are looked for (netns finder).
    #[arg(long, env = "CNI_NETNS_DIR", default_value = "/run/netns")]
    pub netns_dir: PathBuf,
    /// Kubernetes source: the node's proc filesystem, scanned for pod network namespaces (`/host/proc` when the
    /// agent runs in a container with the host's `/proc` mounted there).
    #[arg(long, env = "CNI_HOST_PROC", default_value = "/proc")]
    pub host_proc: PathBuf,
    /// ZDS socket ztunnel connects to.
    #[arg(
        long,
        env = "ZTUNNEL_UDS_ADDRESS",
        default_value = "/var/run/ztunnel/ztunnel.sock"
    )]
    pub ztunnel_uds: PathBuf,
    /// This node's name (logs; pods of other nodes in the pod dir are ignored when their `node` is set).
    #[arg(long, env = "NODE_NAME")]
    pub node_name: String,
    /// The agent's own namespace: its pods are never enrolled.
    #[arg(long, env = "POD_NAMESPACE", default_value = "istio-system")]
    pub pod_namespace: String,
    /// Namespaces never enrolled (comma-separated).
    #[arg(
        long,
        env = "EXCLUDE_NAMESPACES",
        value_delimiter = ',',
        default_value = "kube-system"
    )]
    pub exclude_namespaces: Vec<String>,
    /// Enroll pods at all (`AMBIENT_ENABLED`).
    #[arg(long, env = "AMBIENT_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub ambient_enabled: bool,
    /// Capture DNS (UDP/TCP 53 → 15053) in enrolled pods. Off by default in this mesh.
    #[arg(long, env = "AMBIENT_DNS_CAPTURE", default_value_t = false, action = clap::ArgAction::Set)]
    pub dns_capture: bool,
    /// Install the IPv6 copy of the rules for pods with an IPv6 address.
    #[arg(long, env = "AMBIENT_IPV6", default_value_t = true, action = clap::ArgAction::Set)]
    pub ipv6: bool,
    /// Maintain the node-side probe SNAT table (`inet istio-ambient-host`) in the agent's netns.
    #[arg(long, env = "AMBIENT_HOST_PROBE_SNAT", default_value_t = true, action = clap::ArgAction::Set)]
    pub host_probe_snat: bool,
    /// Remove our CNI conf entry on SIGTERM. Default off: while the agent restarts, ADD of ambient pods keeps
    /// failing (code 11) instead of starting pods unmeshed.
    #[arg(long, env = "CNI_REMOVE_CONF_ON_SHUTDOWN", default_value_t = false, action = clap::ArgAction::Set)]
    pub remove_conf_on_shutdown: bool,
    /// How long to wait for each ztunnel Ack.
    #[arg(long, env = "ZDS_ACK_TIMEOUT_MS", default_value_t = 5000)]
    pub ack_timeout_ms: u64,
    /// Poll interval of the conf dir and binary (ms).
    #[arg(long, env = "CNI_CONF_POLL_MS", default_value_t = 50)]
    pub conf_poll_ms: u64,
    /// Poll interval of the pod dir (ms). (The Kubernetes source is event-driven, with a 5 s resync.)
    #[arg(long, env = "CNI_POD_POLL_MS", default_value_t = 200)]
    pub pod_poll_ms: u64,
    /// `plugin_log_level` written into the conf entry.
    #[arg(long, env = "CNI_PLUGIN_LOG_LEVEL", default_value = "info")]
    pub plugin_log_level: String,
    /// Log filter (tracing env-filter syntax).
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log: String,
    /// Log as JSON lines.
    #[arg(long, env = "LOG_FORMAT_JSON", default_value_t = false, action = clap::ArgAction::Set)]
    pub log_json: bool,
}

impl AgentConfig {
    pub fn ack_timeout(&self) -> Duration {
        Duration::from_millis(self.ack_timeout_ms)
    }

    pub fn policy(&self) -> EnrollmentPolicy {
        EnrollmentPolicy {
            ambient_enabled: self.ambient_enabled,
            exclude_namespaces: self.exclude_namespaces.clone(),
            agent_namespace: self.pod_namespace.clone(),
        }
    }

    /// `--pod-dir` wins over `--kubeconfig` (a `KUBECONFIG` in a developer's environment must not take the local
    /// mesh's agent to some cluster).
    pub fn pod_source(&self) -> PodSourceConfig {
        match (&self.pod_dir, &self.kubeconfig) {
            (Some(dir), _) => PodSourceConfig::Dir(dir.clone()),
            (None, kubeconfig) => PodSourceConfig::Kube {
                kubeconfig: kubeconfig.clone(),
            },
        }
    }

    pub fn pods_json(&self) -> PathBuf {
        self.run_dir.join("pods.json")
    }

    /// The entry inserted into the primary CNI configuration. `pod_dir` only with the pod-dir source: without it
    /// the plugin sends every pod (outside excluded namespaces) to the agent, which decides.
    pub fn conf_entry(&self) -> Value {
        let mut entry = json!({
            "type": PLUGIN_TYPE,
            "name": PLUGIN_TYPE,
            "cni_agent_run_dir": self.run_dir,
            "ambient_enabled": self.ambient_enabled,
            "exclude_namespaces": self.exclude_namespaces,
            "pod_namespace": self.pod_namespace,
            "native_nftables": true,
            "enable_ambient_detection_retry": true,
            "plugin_log_level": self.plugin_log_level,
        });
        if let PodSourceConfig::Dir(dir) = self.pod_source() {
            entry["pod_dir"] = json!(dir);
        }
        entry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> AgentConfig {
        let base = [
            "cni-agent",
            "--plugin-binary",
            "/bin/x",
            "--node-name",
            "n1",
        ];
        AgentConfig::parse_from(base.iter().chain(args))
    }

    #[test]
    fn pod_source_selection() {
        let dir = parse(&["--pod-dir", "/p", "--kubeconfig", "/k"]);
        assert_eq!(dir.pod_source(), PodSourceConfig::Dir("/p".into()));
        assert_eq!(dir.conf_entry()["pod_dir"], "/p");
        let kube = parse(&["--kubeconfig", "/k"]);
        assert_eq!(
            kube.pod_source(),
            PodSourceConfig::Kube {
                kubeconfig: Some("/k".into())
            }
        );
        assert!(kube.conf_entry().get("pod_dir").is_none());
        let in_cluster = AgentConfig {
            kubeconfig: None,
            ..kube
        };
        assert_eq!(
            in_cluster.pod_source(),
            PodSourceConfig::Kube { kubeconfig: None }
        );
        assert_eq!(in_cluster.netns_dir, PathBuf::from("/run/netns"));
        assert_eq!(in_cluster.host_proc, PathBuf::from("/proc"));
    }
}
