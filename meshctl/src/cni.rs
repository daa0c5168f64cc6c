//! Drives a CNI chain the way a container runtime does through libcni: load the node's primary configuration
//! (the lexically first `.conf`/`.conflist`), ADD each plugin in order feeding it the previous result as
//! `prevResult`, cache the final result, DEL in reverse order with the cached result, CHECK with it.
//!
//! Plugins run inside the node's network namespace (the node is their "host"), as a kubelet's runtime would.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::Error;

/// Where the runtime finds plugins: ours first (once installed), then Debian's.
pub const SYSTEM_CNI_BIN: &str = "/usr/lib/cni";

/// A network configuration list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkList {
    pub file: PathBuf,
    pub cni_version: String,
    pub name: String,
    pub plugins: Vec<Value>,
}

/// What the runtime knows of one attachment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuntimeConf {
    pub container_id: String,
    pub netns: PathBuf,
    pub ifname: String,
    pub args: Vec<(String, String)>,
    /// `CNI_PATH`: directories searched for plugin binaries.
    pub cni_path: Vec<PathBuf>,
    /// The network namespace the plugins run in (the node's).
    pub exec_netns: String,
}

/// What is cached after ADD, keyed by network, container and interface (as libcni's `results/` entries).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CacheEntry {
    kind: String,
    container_id: String,
    if_name: String,
    network_name: String,
    config: NetworkList,
    cni_args: Vec<(String, String)>,
    result: Value,
}

/// Loads the lexically first `.conf`, `.conflist` or `.json` of `dir`. A single-plugin `.conf` becomes a list.
pub fn load_primary(dir: &Path) -> Result<NetworkList, Error> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::file(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x == "conf" || x == "conflist" || x == "json")
        })
        .collect();
    files.sort();
    let file = files
        .into_iter()
        .next()
        .ok_or_else(|| Error::file(dir, "no CNI configuration found"))?;
    let text = std::fs::read_to_string(&file).map_err(|e| Error::file(&file, e))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| Error::file(&file, e))?;
    let text_of = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
    let name = text_of(&value, "name").ok_or_else(|| Error::file(&file, "no `name`"))?;
    let cni_version = text_of(&value, "cniVersion").unwrap_or_else(|| "1.0.0".into());
    let plugins = match value.get("plugins") {
        Some(Value::Array(list)) => list.clone(),
        Some(_) => return Err(Error::file(&file, "`plugins` is not a list")),
        None => vec![value.clone()],
    };
    if plugins.is_empty()
        || plugins
            .iter()
            .any(|p| p.get("type").and_then(Value::as_str).is_none())
    {
        return Err(Error::file(&file, "every plugin needs a `type`"));
    }
    Ok(NetworkList {
        file,
        cni_version,
        name,
        plugins,
    })
}

/// ADD the whole chain; returns the final result, which is also cached.
pub fn add(list: &NetworkList, rt: &RuntimeConf, cache_dir: &Path) -> Result<Value, Error> {
    let mut prev: Option<Value> = None;
    for plugin in &list.plugins {
        let conf = plugin_config(list, plugin, prev.as_ref());
        let out = exec_plugin("ADD", plugin, &conf, rt)?;
        prev = Some(out.ok_or_else(|| cni_err(plugin, "ADD", rt, "printed no result"))?);
    }
    let result = prev.unwrap_or(Value::Null);
    let entry = CacheEntry {
        kind: "cniCacheV1".into(),
        container_id: rt.container_id.clone(),
        if_name: rt.ifname.clone(),
        network_name: list.name.clone(),
        config: list.clone(),
        cni_args: rt.args.clone(),
        result: result.clone(),
    };
    let path = cache_path(cache_dir, &list.name, rt);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::file(parent, e))?;
    }
    let text = serde_json::to_string(&entry).unwrap_or_default();
    std::fs::write(&path, text).map_err(|e| Error::file(&path, e))?;
    Ok(result)
}

/// CHECK the chain against the cached result.
pub fn check(network: &str, rt: &RuntimeConf, cache_dir: &Path) -> Result<(), Error> {
    let entry = read_cache(cache_dir, network, rt)?.ok_or_else(|| {
        Error::file(
            &cache_path(cache_dir, network, rt),
            "no cached result to CHECK against",
        )
    })?;
    for plugin in &entry.config.plugins {
        let conf = plugin_config(&entry.config, plugin, Some(&entry.result));
        exec_plugin("CHECK", plugin, &conf, rt)?;
    }
    Ok(())
}

/// DEL the chain in reverse order with the cached configuration and result (or `fallback` when nothing is cached),
/// then drop the cache entry. Every plugin is asked even if one fails; the first error is returned.
pub fn del(
    network: &str,
    fallback: Option<&NetworkList>,
    rt: &RuntimeConf,
    cache_dir: &Path,
) -> Result<(), Error> {
    let cached = read_cache(cache_dir, network, rt)?;
    let (list, prev) = match (&cached, fallback) {
        (Some(e), _) => (&e.config, Some(&e.result)),
        (None, Some(list)) => (list, None),
        (None, None) => return Ok(()),
    };
    let mut first_err = None;
    for plugin in list.plugins.iter().rev() {
        let conf = plugin_config(list, plugin, prev);
        if let Err(e) = exec_plugin("DEL", plugin, &conf, rt) {
            first_err.get_or_insert(e);
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    let path = cache_path(cache_dir, network, rt);
    if path.exists() {
        std::fs::remove_file(&path).map_err(|e| Error::file(&path, e))?;
    }
    Ok(())
}

/// Sets up `lo` in the pod, as runtimes do beside the pod network, with the `loopback` plugin.
pub fn loopback(rt: &RuntimeConf, command: &str) -> Result<(), Error> {
    let plugin = json!({"type": "loopback"});
    let conf = json!({"cniVersion": "1.0.0", "name": "cni-loopback", "type": "loopback"});
    let lo = RuntimeConf {
        ifname: "lo".into(),
        ..rt.clone()
    };
    exec_plugin(command, &plugin, &conf, &lo).map(|_| ())
}

/// The first IPv4 address of a CNI result.
pub fn result_ipv4(result: &Value) -> Option<Ipv4Addr> {
    result.get("ips")?.as_array()?.iter().find_map(|ip| {
        let addr = ip.get("address")?.as_str()?;
        addr.split('/').next()?.parse().ok()
    })
}

/// The configuration one plugin sees: its own object plus the list's `name` and `cniVersion`, and `prevResult`.
fn plugin_config(list: &NetworkList, plugin: &Value, prev: Option<&Value>) -> Value {
    let mut conf = plugin.clone();
    if let Some(obj) = conf.as_object_mut() {
        obj.insert("name".into(), json!(list.name));
        obj.insert("cniVersion".into(), json!(list.cni_version));
        match prev {
            Some(p) => obj.insert("prevResult".into(), p.clone()),
            None => obj.remove("prevResult"),
        };
    }
    conf
}

fn exec_plugin(
    command: &str,
    plugin: &Value,
    conf: &Value,
    rt: &RuntimeConf,
) -> Result<Option<Value>, Error> {
    let ty = plugin
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let binary = rt
        .cni_path
        .iter()
        .map(|d| d.join(ty))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            cni_err(
                plugin,
                command,
                rt,
                &format!("plugin binary {ty:?} not found in CNI_PATH"),
            )
        })?;
    let args: Vec<String> = rt.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let cni_path: Vec<String> = rt
        .cni_path
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let mut cmd = Command::new(&binary);
    cmd.env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", &rt.container_id)
        .env("CNI_NETNS", &rt.netns)
        .env("CNI_IFNAME", &rt.ifname)
        .env("CNI_ARGS", args.join(";"))
        .env("CNI_PATH", cni_path.join(":"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let guard = crate::netns::enter_on_exec(&mut cmd, &rt.exec_netns)?;
    let mut child = cmd
        .spawn()
        .map_err(|e| cni_err(plugin, command, rt, &e.to_string()))?;
    drop(guard);
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        stdin
            .write_all(conf.to_string().as_bytes())
            .map_err(|e| cni_err(plugin, command, rt, &e.to_string()))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| cni_err(plugin, command, rt, &e.to_string()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // Errors are JSON on stdout; stderr is only a fallback, as in libcni.
        let detail = serde_json::from_str::<Value>(&stdout)
            .ok()
            .map(|v| {
                let field = |k: &str| v.get(k).map(|x| x.to_string()).unwrap_or_default();
                format!(
                    "code {}: {} {}",
                    field("code"),
                    field("msg"),
                    field("details")
                )
            })
            .unwrap_or_else(|| {
                format!(
                    "{}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                )
            });
        return Err(cni_err(plugin, command, rt, &detail));
    }
    if stdout.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(&stdout)
        .map(Some)
        .map_err(|e| cni_err(plugin, command, rt, &format!("bad result: {e}")))
}

fn cni_err(plugin: &Value, command: &str, rt: &RuntimeConf, detail: &str) -> Error {
    Error::Cni {
        plugin: plugin
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string(),
        command: command.into(),
        container: rt.container_id.clone(),
        detail: detail.into(),
    }
}

fn cache_path(cache_dir: &Path, network: &str, rt: &RuntimeConf) -> PathBuf {
    cache_dir
        .join("results")
        .join(format!("{network}-{}-{}", rt.container_id, rt.ifname))
}

fn read_cache(
    cache_dir: &Path,
    network: &str,
    rt: &RuntimeConf,
) -> Result<Option<CacheEntry>, Error> {
    let path = cache_path(cache_dir, network, rt);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::file(&path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::file(&path, e)),
    }
}

/// `CNI_ARGS` as Kubernetes runtimes pass them.
pub fn k8s_args(
    namespace: &str,
    pod: &str,
    container_id: &str,
    uid: &str,
) -> Vec<(String, String)> {
    BTreeMap::from([
        ("IgnoreUnknown", "1"),
        ("K8S_POD_NAMESPACE", namespace),
        ("K8S_POD_NAME", pod),
        ("K8S_POD_INFRA_CONTAINER_ID", container_id),
        ("K8S_POD_UID", uid),
    ])
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}
