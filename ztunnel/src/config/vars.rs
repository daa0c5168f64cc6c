//! Every environment variable the node tunnel reads, with its default and meaning, in one table.
//!
//! The parser ([`super::Config::from_map`], the logging set-up and [`crate::version`]) reads the environment only
//! through these entries, and `ztunnel --help` prints [`ALL`], so what the binary reads and what it documents
//! cannot drift apart. Does not parse values (that is [`super`]'s job).

pub use hbone::env_vars::{EnvVar, help};

hbone::env_vars! {
    XDS_ADDRESS = "XDS_ADDRESS", "",
        "delta ADS server for workloads and policies: host:port or https:// (TLS), http:// (plaintext)";
    LOCAL_XDS_PATH = "LOCAL_XDS_PATH", "",
        "YAML file with the workloads and policies instead of xDS, re-read when it changes";
    LOCAL_XDS = "LOCAL_XDS", "",
        "the same YAML inline (set only one of XDS_ADDRESS, LOCAL_XDS_PATH, LOCAL_XDS)";
    XDS_ROOT_CA = "XDS_ROOT_CA", "/var/run/secrets/istio/root-cert.pem",
        "PEM roots that verify the xDS server";
    ALT_XDS_HOSTNAME = "ALT_XDS_HOSTNAME", "",
        "name to verify in the xDS server's certificate instead of the address's host";
    XDS_HEADER = "XDS_HEADER_", "",
        "extra gRPC metadata on the xDS stream";
    ISTIO_META = "ISTIO_META_", "",
        "node metadata sent to the xDS server";
    FAKE_CA = "FAKE_CA", "false",
        "true: certificates from a self-signed root made at start-up (one node only; tests)";
    CA_ADDRESS = "CA_ADDRESS", "",
        "Istio CA that signs workload certificates, as XDS_ADDRESS; required unless FAKE_CA=true";
    CA_ROOT_CA = "CA_ROOT_CA", "/var/run/secrets/istio/root-cert.pem",
        "PEM roots that verify the CA";
    ALT_CA_HOSTNAME = "ALT_CA_HOSTNAME", "",
        "name to verify in the CA's certificate instead of the address's host";
    CA_HEADER = "CA_HEADER_", "",
        "extra gRPC metadata on CA requests";
    AUTH_TOKEN = "AUTH_TOKEN", "/var/run/secrets/tokens/istio-token",
        "file whose content is sent as `authorization: Bearer ...` to xDS and the CA (default: if it exists)";
    SECRET_TTL = "SECRET_TTL", "24h",
        "requested workload certificate lifetime (5s, 300ms, 2m, 1h or seconds)";
    INSTANCE_IP = "INSTANCE_IP", "127.0.0.1",
        "this ztunnel's IP, part of its xDS node id";
    POD_NAME = "POD_NAME", "ztunnel",
        "this ztunnel's pod name, part of its xDS node id";
    POD_NAMESPACE = "POD_NAMESPACE", "istio-system",
        "this ztunnel's namespace, part of its xDS node id";
    CLUSTER_ID = "CLUSTER_ID", "Kubernetes",
        "the cluster this node belongs to";
    ISTIO_META_CLUSTER_ID = "ISTIO_META_CLUSTER_ID", "",
        "the cluster id when CLUSTER_ID is unset";
    TRUST_DOMAIN = "TRUST_DOMAIN", "cluster.local",
        "SPIFFE trust domain of the mesh";
    NETWORK = "NETWORK", "",
        "the network this node is on";
    NODE_NAME = "NODE_NAME", "",
        "the Kubernetes node this ztunnel serves";
    SERVICE_ACCOUNT = "SERVICE_ACCOUNT", "",
        "this ztunnel's own service account (shown in the config dump; the CA learns it from the token)";
    INPOD_ENABLED = "INPOD_ENABLED", "true",
        "pods are handed over on INPOD_UDS (the only mode: false is refused)";
    INPOD_UDS = "INPOD_UDS", "/var/run/ztunnel/ztunnel.sock",
        "ZDS socket on which the node agent hands over pods";
    INPOD_PORT_REUSE = "INPOD_PORT_REUSE", "true",
        "bind in-pod listeners with SO_REUSEPORT";
    PACKET_MARK = "PACKET_MARK", "1337",
        "socket mark on ztunnel's own traffic, so the redirect rules let it pass";
    ENABLE_ORIG_SRC = "ENABLE_ORIG_SRC", "true",
        "connect to inbound apps from the original client address";
    POOL_MAX_STREAMS_PER_CONNECTION = "POOL_MAX_STREAMS_PER_CONNECTION", "100",
        "HBONE streams per pooled HTTP/2 connection";
    POOL_UNUSED_RELEASE_TIMEOUT = "POOL_UNUSED_RELEASE_TIMEOUT", "5m",
        "how long an idle pooled HBONE connection is kept";
    CONNECTION_TERMINATION_DEADLINE = "CONNECTION_TERMINATION_DEADLINE",
        "TERMINATION_GRACE_PERIOD_SECONDS - 1s, else 5s",
        "how long connections may drain at shutdown before they are closed";
    TERMINATION_GRACE_PERIOD_SECONDS = "TERMINATION_GRACE_PERIOD_SECONDS", "",
        "the pod's grace period, in seconds";
    ADMIN_ADDR = "ADMIN_ADDR", "127.0.0.1:15000",
        "admin endpoint (config dump, logging, quitquitquit)";
    STATS_ADDR = "STATS_ADDR", "0.0.0.0:15020",
        "Prometheus metrics endpoint";
    READINESS_ADDR = "READINESS_ADDR", "0.0.0.0:15021",
        "readiness endpoint (/healthz/ready)";
    ZTUNNEL_WORKER_THREADS = "ZTUNNEL_WORKER_THREADS", "max(2, CPU request), at most the usable CPUs",
        "runtime worker threads: N, or N% of the usable CPUs";
    ZTUNNEL_RESOURCE_CPU_LIMIT = "ZTUNNEL_RESOURCE_CPU_LIMIT", "",
        "the container's CPU limit in whole CPUs (usable CPUs; 0 or unset: the machine's)";
    ZTUNNEL_CPU_LIMIT = "ZTUNNEL_CPU_LIMIT", "",
        "older name of ZTUNNEL_RESOURCE_CPU_LIMIT (Istio's chart sets it from limits.cpu)";
    ZTUNNEL_RESOURCE_CPU_REQUEST = "ZTUNNEL_RESOURCE_CPU_REQUEST", "",
        "the container's CPU request in whole CPUs: the default worker threads when above 2";
    ENABLE_RESPONSE_BAGGAGE = "ENABLE_RESPONSE_BAGGAGE", "true",
        "answer inbound HBONE with a baggage header of the destination workload's metadata";
    TLS12_ENABLED = "TLS12_ENABLED", "false",
        "accepted for Istio compatibility; no effect (HBONE is TLS 1.3 only)";
    ISTIO_VERSION = "ISTIO_META_ISTIO_VERSION", "unknown",
        "Istio version shown by `ztunnel version` (also sent as node metadata)";
    LOG_FORMAT = "LOG_FORMAT", "plain",
        "log line format: plain or json";
    RUST_LOG = "RUST_LOG", "info",
        "log filter (tracing EnvFilter directives, e.g. info,ztunnel::proxy=debug)";
    RUST_BACKTRACE = "RUST_BACKTRACE", "",
        "1: a panic prints a backtrace (read by the Rust runtime)";
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::telemetry::logging::{DEFAULT_FILTER, LogFormat};

    /// Entries whose documented default is not a value the parser puts in [`Config`] when the variable is unset:
    /// the root CA paths are applied by the xDS and CA clients, `ENABLE_ORIG_SRC` keeps "unset" apart from `true`
    /// (both mean on), two defaults are computed, and the rest are read by their owners (checked below).
    const NOT_IN_CONFIG: &[EnvVar] = &[
        XDS_ROOT_CA,
        CA_ROOT_CA,
        ENABLE_ORIG_SRC,
        CONNECTION_TERMINATION_DEADLINE,
        ZTUNNEL_WORKER_THREADS,
        ISTIO_VERSION,
        LOG_FORMAT,
        RUST_LOG,
        // Applied only when the file exists (checked in `config::tests`).
        AUTH_TOKEN,
    ];

    #[test]
    fn documented_defaults_are_the_parsers() {
        // Both remote sources, so every branch of the parser reads its variables.
        let base = [
            ("XDS_ADDRESS", "https://istiod.istio-system.svc:15012"),
            ("CA_ADDRESS", "https://istiod.istio-system.svc:15012"),
        ];
        let parsed = |extra: Option<(&str, &str)>| {
            let env = base
                .iter()
                .copied()
                .chain(extra)
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            format!("{:?}", Config::from_map(&env))
        };
        let unset = parsed(None);
        assert!(unset.starts_with("Ok("), "{unset}");
        for v in ALL
            .iter()
            .filter(|v| !v.default.is_empty() && !NOT_IN_CONFIG.contains(v))
        {
            assert_eq!(
                parsed(Some((v.name, v.default))),
                unset,
                "{}={} is documented as the default but parses to something else",
                v.name,
                v.default
            );
        }
        assert_eq!(RUST_LOG.default, DEFAULT_FILTER);
        assert_eq!(
            LogFormat::from_env_value(Some(LOG_FORMAT.default)).unwrap(),
            LogFormat::default()
        );
    }

    /// The parser reads through [`EnvVar`]s (its helpers take nothing else); this catches a raw name slipped in
    /// beside them: every variable-like string literal in the parser's source must be in the table.
    #[test]
    fn every_name_in_the_parser_is_in_the_table() {
        let source = include_str!("../config.rs");
        let parser = source.split("#[cfg(test)]").next().unwrap();
        let literals = parser.split('"').skip(1).step_by(2);
        for name in literals.filter(|l| {
            l.len() > 2
                && l.starts_with(|c: char| c.is_ascii_uppercase())
                && l.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        }) {
            assert!(
                ALL.iter().any(|v| v.name == name),
                "config.rs reads {name} but the table does not list it"
            );
        }
    }

    #[test]
    fn help_lists_each_variable_once_with_its_default() {
        let text = help(ALL);
        for v in ALL {
            assert_eq!(
                ALL.iter().filter(|w| w.name == v.name).count(),
                1,
                "{} listed twice",
                v.name
            );
            let shown = v.shown();
            let line = text
                .lines()
                .find(|l| l.split_whitespace().next() == Some(&shown))
                .unwrap();
            assert!(line.contains(v.meaning), "{line}");
            if !v.default.is_empty() {
                assert!(
                    line.ends_with(&format!("[default: {}]", v.default)),
                    "{line}"
                );
            }
        }
        assert!(text.contains("  XDS_HEADER_<name>  "), "{text}");
    }
}
