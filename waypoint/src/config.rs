//! The waypoint's settings, read once from the environment in one place (names follow the
//! node tunnel's, spec §13; [`vars`] is the table of them, which `--help` prints). Everything
//! else receives a typed [`Config`].

pub mod vars;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use hbone::Identity;

pub use vars::EnvVar;
use vars::*;

/// Why the environment is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{var}={value:?}: {reason}")]
    Invalid {
        var: &'static str,
        value: String,
        reason: String,
    },
    #[error("{0} must be set")]
    Missing(&'static str),
}

/// Where certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaSource {
    /// The Istio CA API at `CA_ADDRESS` (default: `XDS_ADDRESS`).
    Remote {
        address: String,
        root_cert: Option<PathBuf>,
        alt_hostname: Option<String>,
    },
    /// `FAKE_CA=true`: a self-signed root made at start-up (a lone waypoint; tests and
    /// benchmarks that use plain listeners only).
    Fake,
}

/// Everything the waypoint reads from its environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// `XDS_ADDRESS` (`http://` = plaintext).
    pub xds_address: String,
    /// `XDS_ROOT_CA`, `ALT_XDS_HOSTNAME`.
    pub xds_root_cert: Option<PathBuf>,
    pub xds_alt_hostname: Option<String>,
    /// `AUTH_TOKEN`: a file whose content is sent as `authorization: Bearer …` (xDS and CA).
    pub token_file: Option<PathBuf>,
    pub ca: CaSource,
    /// `POD_NAME`, `POD_NAMESPACE`, `SERVICE_ACCOUNT`, `INSTANCE_IP`, `GATEWAY_NAME`.
    pub pod_name: String,
    pub pod_namespace: String,
    pub service_account: String,
    pub instance_ip: IpAddr,
    pub gateway_name: String,
    /// `TRUST_DOMAIN` (cluster.local), `CLUSTER_ID` (Kubernetes).
    pub trust_domain: String,
    pub cluster_id: String,
    /// `HBONE_ADDR` (0.0.0.0:15008): where tunnels arrive. `HBONE_ADDR=off` disables it.
    pub hbone_addr: Option<SocketAddr>,
    /// `ADMIN_ADDR` (127.0.0.1:15000), `STATS_ADDR` (0.0.0.0:15020),
    /// `READINESS_ADDR` (0.0.0.0:15021).
    pub admin_addr: SocketAddr,
    pub stats_addr: SocketAddr,
    pub readiness_addr: SocketAddr,
    /// `PLAIN_LISTENERS=true`: also serve each LDS listener on its own socket address, in plain
    /// HTTP (a waypoint reachable without HBONE, as Envoy would bind them).
    pub plain_listeners: bool,
    /// `TERMINATION_DRAIN_DURATION` (5 s).
    pub drain: Duration,
}

impl Config {
    /// The waypoint's SPIFFE identity.
    pub fn identity(&self) -> Result<Identity, ConfigError> {
        Identity::new(
            &self.trust_domain,
            &self.pod_namespace,
            &self.service_account,
        )
        .map_err(|e| ConfigError::Invalid {
            var: SERVICE_ACCOUNT.name,
            value: self.service_account.clone(),
            reason: e.to_string(),
        })
    }

    /// The node id istiod gives a waypoint: `waypoint~<ip>~<gateway>.<ns>~<ns>.svc.cluster.local`.
    pub fn node_id(&self) -> String {
        format!(
            "waypoint~{}~{}.{}~{}.svc.cluster.local",
            self.instance_ip, self.gateway_name, self.pod_namespace, self.pod_namespace
        )
    }

    /// Reads the configuration through `get` (the process environment in `main`). Every read
    /// goes through an [`EnvVar`] of the table; empty counts as unset.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let var = |k: EnvVar| get(k.name).filter(|v| !v.is_empty());
        let required = |k: EnvVar| var(k).ok_or(ConfigError::Missing(k.name));
        let addr = |k: EnvVar| -> Result<SocketAddr, ConfigError> {
            let v = var(k).unwrap_or_else(|| k.default.to_owned());
            v.parse()
                .map_err(|e: std::net::AddrParseError| ConfigError::Invalid {
                    var: k.name,
                    value: v,
                    reason: e.to_string(),
                })
        };
        let flag = |k: EnvVar| -> Result<bool, ConfigError> {
            match var(k).as_deref() {
                None | Some("false" | "0") => Ok(false),
                Some("true" | "1") => Ok(true),
                Some(v) => Err(ConfigError::Invalid {
                    var: k.name,
                    value: v.to_owned(),
                    reason: "expected true or false".into(),
                }),
            }
        };
        let xds_address = required(XDS_ADDRESS)?;
        let ca = if flag(FAKE_CA)? {
            CaSource::Fake
        } else {
            CaSource::Remote {
                address: var(CA_ADDRESS).unwrap_or_else(|| xds_address.clone()),
                root_cert: var(CA_ROOT_CA).map(PathBuf::from),
                alt_hostname: var(ALT_CA_HOSTNAME),
            }
        };
        let pod_namespace = required(POD_NAMESPACE)?;
        let gateway_name = required(GATEWAY_NAME)?;
        let ip = required(INSTANCE_IP)?;
        let instance_ip =
            ip.parse()
                .map_err(|e: std::net::AddrParseError| ConfigError::Invalid {
                    var: INSTANCE_IP.name,
                    value: ip.clone(),
                    reason: e.to_string(),
                })?;
        let hbone_addr = match var(HBONE_ADDR).as_deref() {
            Some("off") => None,
            _ => Some(addr(HBONE_ADDR)?),
        };
        let drain = match var(TERMINATION_DRAIN_DURATION) {
            None => Duration::from_secs(5),
            Some(v) => v
                .trim_end_matches('s')
                .parse::<u64>()
                .map(Duration::from_secs)
                .map_err(|e| ConfigError::Invalid {
                    var: TERMINATION_DRAIN_DURATION.name,
                    value: v.clone(),
                    reason: e.to_string(),
                })?,
        };
        let config = Config {
            xds_address,
            xds_root_cert: var(XDS_ROOT_CA).map(PathBuf::from),
            xds_alt_hostname: var(ALT_XDS_HOSTNAME),
            token_file: var(AUTH_TOKEN).map(PathBuf::from),
            ca,
            pod_name: var(POD_NAME).unwrap_or_else(|| format!("{gateway_name}-0")),
            service_account: var(SERVICE_ACCOUNT).unwrap_or_else(|| gateway_name.clone()),
            pod_namespace,
            instance_ip,
            gateway_name,
            trust_domain: var(TRUST_DOMAIN).unwrap_or_else(|| TRUST_DOMAIN.default.into()),
            cluster_id: var(CLUSTER_ID).unwrap_or_else(|| CLUSTER_ID.default.into()),
            hbone_addr,
            admin_addr: addr(ADMIN_ADDR)?,
            stats_addr: addr(STATS_ADDR)?,
            readiness_addr: addr(READINESS_ADDR)?,
            plain_listeners: flag(PLAIN_LISTENERS)?,
            drain,
        };
        config.identity()?;
        Ok(config)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const BASE: &[(&str, &str)] = &[
        ("XDS_ADDRESS", "http://10.244.0.1:15012"),
        ("POD_NAMESPACE", "demo"),
        ("GATEWAY_NAME", "waypoint"),
        ("INSTANCE_IP", "10.244.0.7"),
    ];

    #[test]
    fn defaults_follow_istio() {
        let c = Config::from_env(env(BASE)).unwrap();
        assert_eq!(
            c.node_id(),
            "waypoint~10.244.0.7~waypoint.demo~demo.svc.cluster.local"
        );
        assert_eq!(
            c.identity().unwrap().to_string(),
            "spiffe://cluster.local/ns/demo/sa/waypoint"
        );
        assert_eq!(c.hbone_addr, Some("0.0.0.0:15008".parse().unwrap()));
        assert_eq!(
            c.ca,
            CaSource::Remote {
                address: "http://10.244.0.1:15012".into(),
                root_cert: None,
                alt_hostname: None
            }
        );
        assert!(!c.plain_listeners);
    }

    #[test]
    fn bad_values_are_named() {
        let mut pairs = BASE.to_vec();
        pairs.push(("STATS_ADDR", "nope"));
        let e = Config::from_env(env(&pairs)).unwrap_err().to_string();
        assert!(e.starts_with("STATS_ADDR=\"nope\""), "{e}");
        let e = Config::from_env(env(&BASE[1..])).unwrap_err().to_string();
        assert_eq!(e, "XDS_ADDRESS must be set");
        let mut pairs = BASE.to_vec();
        pairs.push(("PLAIN_LISTENERS", "yes"));
        assert!(Config::from_env(env(&pairs)).is_err());
    }
}
