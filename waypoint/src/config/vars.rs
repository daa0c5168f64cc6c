//! Every environment variable the waypoint reads, with its default and meaning, in one table.
//!
//! [`super::Config::from_env`] and the logging set-up in `main` read the environment only through these entries,
//! and `waypoint --help` prints [`ALL`], so what the binary reads and what it documents cannot drift apart.

pub use hbone::env_vars::{EnvVar, help};

hbone::env_vars! {
    XDS_ADDRESS = "XDS_ADDRESS", "",
        "required: istiod's ADS server for listeners, routes, clusters and endpoints (http:// = plaintext)";
    XDS_ROOT_CA = "XDS_ROOT_CA", "/var/run/secrets/istio/root-cert.pem",
        "PEM roots that verify the xDS server";
    ALT_XDS_HOSTNAME = "ALT_XDS_HOSTNAME", "",
        "name to verify in the xDS server's certificate instead of the address's host";
    AUTH_TOKEN = "AUTH_TOKEN", "",
        "file whose content is sent as `authorization: Bearer ...` to xDS and the CA";
    FAKE_CA = "FAKE_CA", "false",
        "true: certificates from a self-signed root made at start-up (a lone waypoint; tests)";
    CA_ADDRESS = "CA_ADDRESS", "XDS_ADDRESS",
        "Istio CA that signs the waypoint's certificate";
    CA_ROOT_CA = "CA_ROOT_CA", "/var/run/secrets/istio/root-cert.pem",
        "PEM roots that verify the CA";
    ALT_CA_HOSTNAME = "ALT_CA_HOSTNAME", "",
        "name to verify in the CA's certificate instead of the address's host";
    POD_NAMESPACE = "POD_NAMESPACE", "",
        "required: the waypoint's namespace";
    GATEWAY_NAME = "GATEWAY_NAME", "",
        "required: the waypoint Gateway's name, part of the xDS node id";
    INSTANCE_IP = "INSTANCE_IP", "",
        "required: the waypoint's IP, part of the xDS node id";
    POD_NAME = "POD_NAME", "<GATEWAY_NAME>-0",
        "the waypoint's pod name";
    SERVICE_ACCOUNT = "SERVICE_ACCOUNT", "<GATEWAY_NAME>",
        "service account of the waypoint's SPIFFE identity";
    TRUST_DOMAIN = "TRUST_DOMAIN", "cluster.local",
        "SPIFFE trust domain of the mesh";
    CLUSTER_ID = "CLUSTER_ID", "Kubernetes",
        "the cluster this waypoint belongs to";
    HBONE_ADDR = "HBONE_ADDR", "0.0.0.0:15008",
        "where HBONE tunnels arrive; off: no HBONE listener";
    PLAIN_LISTENERS = "PLAIN_LISTENERS", "false",
        "true: also serve each LDS listener on its own address in plain HTTP, as Envoy would bind them";
    ADMIN_ADDR = "ADMIN_ADDR", "127.0.0.1:15000",
        "admin endpoint (config dump, quitquitquit)";
    STATS_ADDR = "STATS_ADDR", "0.0.0.0:15020",
        "Prometheus metrics endpoint";
    READINESS_ADDR = "READINESS_ADDR", "0.0.0.0:15021",
        "readiness endpoint (/healthz/ready)";
    TERMINATION_DRAIN_DURATION = "TERMINATION_DRAIN_DURATION", "5s",
        "how long connections may drain at shutdown, in seconds (5 or 5s)";
    RUST_LOG = "RUST_LOG", "info",
        "log filter (tracing EnvFilter directives, e.g. info,waypoint=debug)";
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::Config;

    const REQUIRED: &[(&str, &str)] = &[
        ("XDS_ADDRESS", "https://istiod.istio-system.svc:15012"),
        ("POD_NAMESPACE", "demo"),
        ("GATEWAY_NAME", "waypoint"),
        ("INSTANCE_IP", "10.244.0.7"),
    ];

    /// Entries whose documented default is not a value: derived from another variable, applied by the xDS and CA
    /// clients (root CAs), or read by `main` (`RUST_LOG`).
    const NOT_IN_CONFIG: &[EnvVar] = &[
        CA_ADDRESS,
        POD_NAME,
        SERVICE_ACCOUNT,
        XDS_ROOT_CA,
        CA_ROOT_CA,
        RUST_LOG,
    ];

    fn parsed(extra: Option<(&str, &str)>) -> String {
        let env: std::collections::HashMap<String, String> = REQUIRED
            .iter()
            .copied()
            .chain(extra)
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        format!("{:?}", Config::from_env(|k| env.get(k).cloned()))
    }

    #[test]
    fn documented_defaults_are_the_parsers() {
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
        // The derived defaults, spelled out.
        let c = Config::from_env(|k| {
            REQUIRED
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        })
        .unwrap();
        assert_eq!(c.pod_name, "waypoint-0");
        assert_eq!(c.service_account, "waypoint");
    }

    /// Every name the parser asks for is in the table: the parser is run with a recording environment.
    #[test]
    fn every_variable_read_is_in_the_table() {
        let read = std::cell::RefCell::new(Vec::new());
        let _ = Config::from_env(|k| {
            read.borrow_mut().push(k.to_owned());
            REQUIRED
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        })
        .unwrap();
        let read = read.into_inner();
        assert!(read.len() >= REQUIRED.len());
        for name in read {
            assert!(
                ALL.iter().any(|v| v.name == name),
                "the parser reads {name} but the table does not list it"
            );
        }
    }

    #[test]
    fn help_lists_each_variable_once_with_its_default() {
        let text = help(ALL);
        for v in ALL {
            assert_eq!(ALL.iter().filter(|w| w.name == v.name).count(), 1);
            let line = text
                .lines()
                .find(|l| l.split_whitespace().next() == Some(v.name))
                .unwrap();
            assert!(line.contains(v.meaning), "{line}");
            if !v.default.is_empty() {
                assert!(
                    line.ends_with(&format!("[default: {}]", v.default)),
                    "{line}"
                );
            }
        }
    }
}
