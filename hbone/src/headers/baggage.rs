//! W3C `baggage` as the tunnel uses it: `key=value` members describing a workload.

use super::HeaderError;

const MAX_LEN: usize = 8192;
const MAX_MEMBERS: usize = 64;

/// The workload description carried in `baggage` (spec §2.3). Empty fields are omitted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Baggage {
    /// `k8s.cluster.name`
    pub cluster_id: String,
    /// `k8s.namespace.name`
    pub namespace: String,
    /// `<type>` of `k8s.<type>.name`: deployment, cronjob, pod or job.
    pub workload_type: String,
    /// value of `k8s.<type>.name`
    pub workload_name: String,
    /// `service.name` (canonical name)
    pub service_name: String,
    /// `service.version` (canonical revision)
    pub service_version: String,
    /// `cloud.region`
    pub region: String,
    /// `cloud.availability_zone`
    pub zone: String,
}

const WORKLOAD_TYPES: [&str; 4] = ["deployment", "cronjob", "pod", "job"];

impl Baggage {
    /// Header value; members with empty values are left out.
    pub fn to_header(&self) -> String {
        let workload_key = format!("k8s.{}.name", self.workload_type);
        let members = [
            ("k8s.cluster.name", &self.cluster_id),
            ("k8s.namespace.name", &self.namespace),
            (workload_key.as_str(), &self.workload_name),
            ("service.name", &self.service_name),
            ("service.version", &self.service_version),
            ("cloud.region", &self.region),
            ("cloud.availability_zone", &self.zone),
        ];
        members
            .iter()
            .filter(|(k, v)| !v.is_empty() && !(k.starts_with("k8s..")))
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn valid_value(v: &str) -> bool {
    v.bytes()
        .all(|b| matches!(b, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e))
}

/// Parses `baggage`; unknown keys and member properties (`;…`) are ignored.
pub fn parse_baggage(value: &str) -> Result<Baggage, HeaderError> {
    if value.len() > MAX_LEN {
        return Err(HeaderError::Baggage("too long"));
    }
    let mut out = Baggage::default();
    for (n, member) in value.split(',').enumerate() {
        if n == MAX_MEMBERS {
            return Err(HeaderError::Baggage("too many members"));
        }
        let member = member
            .split(';')
            .next()
            .unwrap_or("")
            .trim_matches([' ', '\t']);
        if member.is_empty() {
            continue;
        }
        let (key, val) = member
            .split_once('=')
            .ok_or(HeaderError::Baggage("member without ="))?;
        let (key, val) = (key.trim_matches([' ', '\t']), val.trim_matches([' ', '\t']));
        if !valid_key(key) || !valid_value(val) {
            return Err(HeaderError::Baggage("invalid key or value"));
        }
        let val = val.to_owned();
        match key {
            "k8s.cluster.name" => out.cluster_id = val,
            "k8s.namespace.name" => out.namespace = val,
            "service.name" => out.service_name = val,
            "service.version" => out.service_version = val,
            "cloud.region" => out.region = val,
            "cloud.availability_zone" => out.zone = val,
            k => {
                let kind = k.strip_prefix("k8s.").and_then(|k| k.strip_suffix(".name"));
                if let Some(kind) = kind.filter(|t| WORKLOAD_TYPES.contains(t)) {
                    out.workload_type = kind.to_owned();
                    out.workload_name = val;
                }
            }
        }
    }
    Ok(out)
}
