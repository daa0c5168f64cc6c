//! The CNI environment (`CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`, `CNI_ARGS`, `CNI_PATH`),
//! validated per command as the spec requires (code 4 for anything missing or malformed).

use std::path::PathBuf;

use super::error::{CniError, code};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

impl Command {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ADD" => Self::Add,
            "DEL" => Self::Del,
            "CHECK" => Self::Check,
            "VERSION" => Self::Version,
            "STATUS" => Self::Status,
            "GC" => Self::Gc,
            _ => return None,
        })
    }
}

/// The Kubernetes arguments of `CNI_ARGS`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct K8sArgs {
    pub pod_name: String,
    pub pod_namespace: String,
    pub infra_container_id: String,
    pub pod_uid: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniEnv {
    pub command: Command,
    pub container_id: String,
    pub netns: Option<PathBuf>,
    pub ifname: String,
    pub args: K8sArgs,
    pub path: Vec<PathBuf>,
}

fn env_err(msg: &str, details: impl Into<String>) -> CniError {
    CniError::new(code::INVALID_ENV, msg, details)
}

/// Reads and validates the environment through `get` (so tests need not touch the process environment).
pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<CniEnv, CniError> {
    let get = |k: &str| get(k).filter(|v| !v.is_empty());
    let raw = get("CNI_COMMAND")
        .ok_or_else(|| env_err("required env variables [CNI_COMMAND] missing", ""))?;
    let command =
        Command::parse(&raw).ok_or_else(|| env_err("unknown CNI_COMMAND", raw.clone()))?;
    let needed: &[&str] = match command {
        Command::Add | Command::Check => &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
        Command::Del => &["CNI_CONTAINERID", "CNI_IFNAME"],
        Command::Gc => &["CNI_PATH"],
        Command::Version | Command::Status => &[],
    };
    let missing: Vec<&str> = needed
        .iter()
        .copied()
        .filter(|k| get(k).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(env_err(
            &format!("required env variables {missing:?} missing"),
            "",
        ));
    }
    let container_id = get("CNI_CONTAINERID").unwrap_or_default();
    if needed.contains(&"CNI_CONTAINERID") && !valid_container_id(&container_id) {
        return Err(env_err(
            "invalid characters in CNI_CONTAINERID",
            container_id,
        ));
    }
    let ifname = get("CNI_IFNAME").unwrap_or_default();
    if needed.contains(&"CNI_IFNAME") && !valid_ifname(&ifname) {
        return Err(env_err("invalid CNI_IFNAME", ifname));
    }
    let args = parse_args(&get("CNI_ARGS").unwrap_or_default())?;
    let path = get("CNI_PATH")
        .map(|p| {
            p.split(':')
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .collect()
        })
        .unwrap_or_default();
    Ok(CniEnv {
        command,
        container_id,
        netns: get("CNI_NETNS").map(PathBuf::from),
        ifname,
        args,
        path,
    })
}

/// Alphanumeric first, then alphanumerics and `_ . -` (as libcni's validation).
fn valid_container_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
}

/// `K=V;K=V`. Unknown keys are ignored (runtimes add `IgnoreUnknown=1` and others).
fn parse_args(raw: &str) -> Result<K8sArgs, CniError> {
    let mut out = K8sArgs::default();
    for pair in raw.split(';').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| env_err("malformed CNI_ARGS", pair.to_string()))?;
        match k {
            "K8S_POD_NAME" => out.pod_name = v.into(),
            "K8S_POD_NAMESPACE" => out.pod_namespace = v.into(),
            "K8S_POD_INFRA_CONTAINER_ID" => out.infra_container_id = v.into(),
            "K8S_POD_UID" => out.pod_uid = v.into(),
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<CniEnv, CniError> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        from_vars(|k| m.get(k).cloned())
    }

    #[test]
    fn validates_per_command() {
        let add = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc-1.2_3"),
            ("CNI_NETNS", "/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
            (
                "CNI_ARGS",
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=demo;K8S_POD_NAME=client;K8S_POD_UID=u",
            ),
            ("CNI_PATH", "/a:/b"),
        ];
        let e = env(&add).unwrap();
        assert_eq!(e.command, Command::Add);
        assert_eq!(e.args.pod_name, "client");
        assert_eq!(e.args.pod_namespace, "demo");
        assert_eq!(e.path.len(), 2);
        for drop in ["CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
            let v: Vec<_> = add.iter().copied().filter(|(k, _)| *k != drop).collect();
            assert_eq!(env(&v).unwrap_err().code, 4, "{drop}");
        }
        assert!(
            env(&[
                ("CNI_COMMAND", "DEL"),
                ("CNI_CONTAINERID", "a"),
                ("CNI_IFNAME", "eth0")
            ])
            .is_ok()
        );
        assert!(env(&[("CNI_COMMAND", "VERSION")]).is_ok());
        assert!(env(&[("CNI_COMMAND", "STATUS")]).is_ok());
        assert_eq!(env(&[("CNI_COMMAND", "GC")]).unwrap_err().code, 4);
        assert_eq!(env(&[("CNI_COMMAND", "FROB")]).unwrap_err().code, 4);
        let bad_id = [
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "a b"),
            ("CNI_IFNAME", "eth0"),
        ];
        assert_eq!(env(&bad_id).unwrap_err().code, 4);
        let bad_if = [
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "a"),
            ("CNI_IFNAME", "a/b"),
        ];
        assert_eq!(env(&bad_if).unwrap_err().code, 4);
        let bad_args = [("CNI_COMMAND", "VERSION"), ("CNI_ARGS", "novalue")];
        assert_eq!(env(&bad_args).unwrap_err().code, 4);
    }
}
