//! The node tunnel's settings, read once from the environment (spec §13) in one place.
//!
//! Owns names, defaults and parsing of every env var we honour ([`vars`] is the table of them,
//! which `--help` prints); everything else receives a typed [`Config`]. Does not read files (the
//! local config and the CA root are loaded by their owners).

mod threads;
pub mod vars;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    #[error("set only one of LOCAL_XDS_PATH and LOCAL_XDS")]
    BothLocalSources,
    #[error("no configuration source: set XDS_ADDRESS, LOCAL_XDS_PATH or LOCAL_XDS")]
    NoConfigSource,
    #[error("no certificate source: set CA_ADDRESS or FAKE_CA=true")]
    NoCertificateSource,
    #[error(
        "INPOD_ENABLED=false: only in-pod redirection is supported (pods handed over on INPOD_UDS)"
    )]
    InPodDisabled,
}

/// How pods are served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyMode {
    /// One tunnel per node; pods arrive over ZDS (`INPOD_UDS`).
    Shared,
}

/// Where the workload configuration comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// `LOCAL_XDS_PATH`: a YAML file, re-read when it changes.
    File(PathBuf),
    /// `LOCAL_XDS`: inline YAML.
    Inline(String),
    /// `XDS_ADDRESS`: delta ADS (spec §4).
    Xds(XdsSource),
}

/// The xDS server and how to present ourselves to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdsSource {
    /// `XDS_ADDRESS` (`http://` = plaintext, allowed for loopback).
    pub address: String,
    /// `XDS_ROOT_CA` (default `/var/run/secrets/istio/root-cert.pem`).
    pub root_cert: Option<PathBuf>,
    /// `ALT_XDS_HOSTNAME`: the name to verify instead of the address's host.
    pub alt_hostname: Option<String>,
    /// `AUTH_TOKEN`: sent as `authorization: Bearer …`.
    pub token_file: Option<PathBuf>,
    /// `XDS_HEADER_<name>`.
    pub headers: Vec<(String, String)>,
    /// `INSTANCE_IP`, `POD_NAME`, `POD_NAMESPACE`: the node id's parts.
    pub instance_ip: String,
    pub pod_name: String,
    pub pod_namespace: String,
    /// `ISTIO_META_<name>` (prefix stripped): node metadata.
    pub metadata: Vec<(String, String)>,
}

/// Where certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaSource {
    /// The Istio CA API at `CA_ADDRESS` (`http://` = plaintext, allowed for loopback).
    Remote {
        address: String,
        root_cert: Option<PathBuf>,
        alt_hostname: Option<String>,
        token_file: Option<PathBuf>,
        headers: Vec<(String, String)>,
    },
    /// `FAKE_CA=true`: a self-signed root generated at start-up (one node only; tests).
    Fake,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub proxy_mode: ProxyMode,
    pub config_source: ConfigSource,
    pub ca: CaSource,
    pub cluster_id: String,
    pub trust_domain: String,
    pub network: String,
    pub node_name: String,
    /// `SERVICE_ACCOUNT`: this ztunnel's own (informational; the CA reads it from the token).
    pub service_account: String,
    pub secret_ttl: Duration,
    pub inpod_uds: PathBuf,
    pub inpod_port_reuse: bool,
    pub packet_mark: u32,
    pub enable_orig_src: Option<bool>,
    pub pool_max_streams_per_connection: usize,
    pub pool_unused_release_timeout: Duration,
    pub termination_deadline: Duration,
    pub admin_addr: SocketAddr,
    pub stats_addr: SocketAddr,
    pub readiness_addr: SocketAddr,
    pub worker_threads: usize,
    pub enable_response_baggage: bool,
    pub tls12_enabled: bool,
}

type Env = HashMap<String, String>;

/// The value of `var`; empty counts as unset. Every read goes through an [`EnvVar`] of the table.
fn get(env: &Env, var: EnvVar) -> Option<&str> {
    env.get(var.name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

fn parse<T: std::str::FromStr>(env: &Env, var: EnvVar, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match get(env, var) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|e: T::Err| ConfigError::Invalid {
            var: var.name,
            value: v.to_owned(),
            reason: e.to_string(),
        }),
    }
}

fn duration(env: &Env, var: EnvVar, default: Duration) -> Result<Duration, ConfigError> {
    let Some(v) = get(env, var) else {
        return Ok(default);
    };
    parse_duration(v).ok_or_else(|| ConfigError::Invalid {
        var: var.name,
        value: v.to_owned(),
        reason: "expected a duration like 5s, 300ms, 2m or a number of seconds".into(),
    })
}

/// `5s`, `300ms`, `2m`, `1h`, or bare seconds.
fn parse_duration(v: &str) -> Option<Duration> {
    let split = v
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(secs).ok()
}

/// `(<name>, value)` of every `<prefix><name>` variable, sorted.
fn prefixed(env: &Env, prefix: EnvVar) -> Vec<(String, String)> {
    debug_assert!(prefix.is_prefix(), "{} is not a prefix", prefix.name);
    let mut v: Vec<(String, String)> = env
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(prefix.name)?.to_owned(), v.clone())))
        .collect();
    v.sort();
    v
}

/// A gRPC server address as an URI: `host:port` (what Istio's charts set, e.g.
/// `istiod.istio-system.svc:15012`) means TLS, as in upstream ztunnel; `http://` and `https://` are kept.
fn grpc_uri(address: &str) -> String {
    if address.contains("://") {
        address.to_owned()
    } else {
        format!("https://{address}")
    }
}

/// `AUTH_TOKEN`, or its default (the projected token Istio's charts mount) when that file exists.
fn token_file(env: &Env) -> Option<PathBuf> {
    match get(env, AUTH_TOKEN) {
        Some(path) => Some(path.into()),
        None => Some(PathBuf::from(AUTH_TOKEN.default)).filter(|p| p.exists()),
    }
}

fn xds_source(env: &Env, address: &str) -> XdsSource {
    XdsSource {
        address: grpc_uri(address),
        root_cert: get(env, XDS_ROOT_CA).map(PathBuf::from),
        alt_hostname: get(env, ALT_XDS_HOSTNAME).map(str::to_owned),
        token_file: token_file(env),
        headers: prefixed(env, XDS_HEADER),
        instance_ip: get(env, INSTANCE_IP)
            .unwrap_or(INSTANCE_IP.default)
            .to_owned(),
        pod_name: get(env, POD_NAME).unwrap_or(POD_NAME.default).to_owned(),
        pod_namespace: get(env, POD_NAMESPACE)
            .unwrap_or(POD_NAMESPACE.default)
            .to_owned(),
        metadata: prefixed(env, ISTIO_META),
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_map(&std::env::vars().collect())
    }

    /// Reads settings from `env` (tests pass a map).
    pub fn from_map(env: &Env) -> Result<Self, ConfigError> {
        if !parse(env, INPOD_ENABLED, true)? {
            return Err(ConfigError::InPodDisabled);
        }
        let config_source = match (get(env, LOCAL_XDS_PATH), get(env, LOCAL_XDS)) {
            (Some(_), Some(_)) => return Err(ConfigError::BothLocalSources),
            (Some(p), None) => ConfigSource::File(p.into()),
            (None, Some(y)) => ConfigSource::Inline(y.to_owned()),
            (None, None) => match get(env, XDS_ADDRESS) {
                Some(address) => ConfigSource::Xds(xds_source(env, address)),
                None => return Err(ConfigError::NoConfigSource),
            },
        };
        let ca = if parse(env, FAKE_CA, false)? {
            CaSource::Fake
        } else if let Some(address) = get(env, CA_ADDRESS) {
            let headers = prefixed(env, CA_HEADER);
            CaSource::Remote {
                address: grpc_uri(address),
                root_cert: get(env, CA_ROOT_CA).map(PathBuf::from),
                alt_hostname: get(env, ALT_CA_HOSTNAME).map(str::to_owned),
                token_file: token_file(env),
                headers,
            }
        } else {
            return Err(ConfigError::NoCertificateSource);
        };
        let grace = get(env, TERMINATION_GRACE_PERIOD_SECONDS)
            .and_then(|v| v.parse::<u64>().ok())
            .map(|s| Duration::from_secs(s.saturating_sub(1).max(1)));
        let cluster_id = get(env, CLUSTER_ID)
            .or_else(|| get(env, ISTIO_META_CLUSTER_ID))
            .unwrap_or(CLUSTER_ID.default)
            .to_owned();
        Ok(Config {
            proxy_mode: ProxyMode::Shared,
            config_source,
            ca,
            cluster_id,
            trust_domain: get(env, TRUST_DOMAIN)
                .unwrap_or(TRUST_DOMAIN.default)
                .to_owned(),
            network: get(env, NETWORK).unwrap_or_default().to_owned(),
            node_name: get(env, NODE_NAME).unwrap_or_default().to_owned(),
            service_account: get(env, SERVICE_ACCOUNT).unwrap_or_default().to_owned(),
            secret_ttl: duration(env, SECRET_TTL, Duration::from_secs(24 * 3600))?,
            inpod_uds: get(env, INPOD_UDS).unwrap_or(INPOD_UDS.default).into(),
            inpod_port_reuse: parse(env, INPOD_PORT_REUSE, true)?,
            packet_mark: parse(env, PACKET_MARK, 0x539)?,
            enable_orig_src: get(env, ENABLE_ORIG_SRC)
                .map(|_| parse(env, ENABLE_ORIG_SRC, true))
                .transpose()?,
            pool_max_streams_per_connection: parse(env, POOL_MAX_STREAMS_PER_CONNECTION, 100)?,
            pool_unused_release_timeout: duration(
                env,
                POOL_UNUSED_RELEASE_TIMEOUT,
                Duration::from_secs(300),
            )?,
            termination_deadline: match get(env, CONNECTION_TERMINATION_DEADLINE) {
                Some(_) => duration(env, CONNECTION_TERMINATION_DEADLINE, Duration::ZERO)?,
                None => grace.unwrap_or(Duration::from_secs(5)),
            },
            admin_addr: parse(env, ADMIN_ADDR, SocketAddr::from(([127, 0, 0, 1], 15000)))?,
            stats_addr: parse(env, STATS_ADDR, SocketAddr::from(([0, 0, 0, 0], 15020)))?,
            readiness_addr: parse(env, READINESS_ADDR, SocketAddr::from(([0, 0, 0, 0], 15021)))?,
            worker_threads: threads::worker_threads(env)?,
            enable_response_baggage: parse(env, ENABLE_RESPONSE_BAGGAGE, true)?,
            tls12_enabled: parse(env, TLS12_ENABLED, false)?,
        })
    }

    /// Effective settings for `/config_dump` (`config`), without secrets.
    pub fn dump(&self) -> serde_json::Value {
        serde_json::json!({
            "proxyMode": "Shared",
            "configSource": match &self.config_source {
                ConfigSource::File(p) => format!("file:{}", p.display()),
                ConfigSource::Inline(_) => "inline".to_owned(),
                ConfigSource::Xds(x) => format!("xds:{}", x.address),
            },
            "caAddress": match &self.ca {
                CaSource::Remote { address, .. } => address.clone(),
                CaSource::Fake => "fake".to_owned(),
            },
            "clusterId": self.cluster_id,
            "trustDomain": self.trust_domain,
            "network": self.network,
            "nodeName": self.node_name,
            "serviceAccount": self.service_account,
            "secretTtl": self.secret_ttl.as_secs(),
            "inpodUds": self.inpod_uds,
            "inpodPortReuse": self.inpod_port_reuse,
            "packetMark": self.packet_mark,
            "poolMaxStreamsPerConnection": self.pool_max_streams_per_connection,
            "poolUnusedReleaseTimeout": self.pool_unused_release_timeout.as_secs(),
            "terminationDeadline": self.termination_deadline.as_secs_f64(),
            "adminAddr": self.admin_addr,
            "statsAddr": self.stats_addr,
            "readinessAddr": self.readiness_addr,
            "workerThreads": self.worker_threads,
            "enableResponseBaggage": self.enable_response_baggage,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_and_overrides() {
        let c =
            Config::from_map(&env(&[("LOCAL_XDS_PATH", "/x.yaml"), ("FAKE_CA", "true")])).unwrap();
        assert_eq!(c.packet_mark, 0x539);
        assert_eq!(c.termination_deadline, Duration::from_secs(5));
        assert_eq!(c.trust_domain, "cluster.local");
        assert_eq!(c.cluster_id, "Kubernetes");
        let c = Config::from_map(&env(&[
            ("LOCAL_XDS", "{}"),
            ("CA_ADDRESS", "http://127.0.0.1:15012"),
            ("CA_HEADER_X_A", "b"),
            ("TERMINATION_GRACE_PERIOD_SECONDS", "30"),
            ("ZTUNNEL_WORKER_THREADS", "1"),
            ("POOL_UNUSED_RELEASE_TIMEOUT", "2m"),
        ]))
        .unwrap();
        assert_eq!(c.termination_deadline, Duration::from_secs(29));
        assert_eq!(c.worker_threads, 1);
        assert_eq!(c.pool_unused_release_timeout, Duration::from_secs(120));
        assert!(
            matches!(c.ca, CaSource::Remote { ref headers, .. } if headers == &[("X_A".to_owned(), "b".to_owned())])
        );
    }

    #[test]
    fn errors_name_the_variable() {
        let e = Config::from_map(&env(&[("LOCAL_XDS", "{}"), ("FAKE_CA", "yes")])).unwrap_err();
        assert!(e.to_string().contains("FAKE_CA"), "{e}");
        let e =
            Config::from_map(&env(&[("LOCAL_XDS", "{}"), ("LOCAL_XDS_PATH", "/a")])).unwrap_err();
        assert!(matches!(e, ConfigError::BothLocalSources));
        let e = Config::from_map(&env(&[("LOCAL_XDS", "{}")])).unwrap_err();
        assert!(matches!(e, ConfigError::NoCertificateSource));
        let e = Config::from_map(&env(&[
            ("LOCAL_XDS", "{}"),
            ("FAKE_CA", "true"),
            ("SECRET_TTL", "3 days"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("SECRET_TTL"), "{e}");
    }

    /// What Istio's ztunnel chart sets: scheme-less addresses (TLS), in-pod on, its service account.
    #[test]
    fn istios_chart_settings() {
        let c = Config::from_map(&env(&[
            ("XDS_ADDRESS", "istiod.istio-system.svc:15012"),
            ("CA_ADDRESS", "istiod.istio-system.svc:15012"),
            ("INPOD_ENABLED", "true"),
            ("SERVICE_ACCOUNT", "ztunnel"),
            ("AUTH_TOKEN", "/run/token"),
        ]))
        .unwrap();
        let ConfigSource::Xds(x) = &c.config_source else {
            panic!("{:?}", c.config_source)
        };
        assert_eq!(x.address, "https://istiod.istio-system.svc:15012");
        assert_eq!(
            x.token_file.as_deref(),
            Some(std::path::Path::new("/run/token"))
        );
        assert!(
            matches!(&c.ca, CaSource::Remote { address, .. } if address == "https://istiod.istio-system.svc:15012")
        );
        assert_eq!(c.service_account, "ztunnel");
        let plain = Config::from_map(&env(&[
            ("XDS_ADDRESS", "http://127.0.0.1:15010"),
            ("FAKE_CA", "true"),
        ]))
        .unwrap();
        assert!(
            matches!(&plain.config_source, ConfigSource::Xds(x) if x.address == "http://127.0.0.1:15010")
        );
        let e = Config::from_map(&env(&[
            ("LOCAL_XDS", "{}"),
            ("FAKE_CA", "true"),
            ("INPOD_ENABLED", "false"),
        ]))
        .unwrap_err();
        assert!(matches!(e, ConfigError::InPodDisabled), "{e}");
    }

    /// Without AUTH_TOKEN the projected token path is used only when the file is there.
    #[test]
    fn the_default_token_only_when_it_exists() {
        let expected = Some(PathBuf::from(AUTH_TOKEN.default)).filter(|p| p.exists());
        assert_eq!(token_file(&env(&[])), expected);
    }
}
