//! CNI configuration editing (pure): where our plugin entry goes and what the edited file looks like.
//!
//! The primary configuration is the lexically first `.conf`, `.conflist` or `.json` of the conf dir (libcni's
//! choice; `.json` counts because the runtime reads it too). A single-plugin file becomes a `.conflist` with
//! `plugins: [original, istio-cni]` (the original file is removed); in a list every old `istio-cni` entry is
//! removed and ours is appended last. The I/O (atomic write, watching) is in [`crate::installer`].

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

/// Our plugin's `type` (and `name`).
pub const PLUGIN_TYPE: &str = "istio-cni";

/// Errors in the primary configuration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfListError {
    #[error("{file}: not a JSON object")]
    NotAnObject { file: PathBuf },
    #[error("{file}: `plugins` is not a list")]
    PluginsNotAList { file: PathBuf },
    #[error("{file}: a single-plugin configuration needs `type`")]
    NoType { file: PathBuf },
}

/// Is `name` a CNI configuration file name libcni would load?
pub fn is_conf_file(name: &str) -> bool {
    !name.starts_with('.')
        && [".conf", ".conflist", ".json"]
            .iter()
            .any(|ext| name.ends_with(ext) && name.len() > ext.len())
}

/// Picks the primary configuration among file names (lexically first), or the configured name.
pub fn primary<'a>(names: &'a [String], configured: Option<&str>) -> Option<&'a str> {
    if let Some(want) = configured {
        return names.iter().map(String::as_str).find(|n| *n == want);
    }
    names
        .iter()
        .map(String::as_str)
        .filter(|n| is_conf_file(n))
        .min()
}

/// What to write: the new file content and path, and the old path to remove (a `.conf` turned into a list).
#[derive(Debug, Clone, PartialEq)]
pub struct Edit {
    pub path: PathBuf,
    pub content: Value,
    pub remove: Option<PathBuf>,
}

/// The edit that makes `file` (content `value`) end with exactly our `entry`; `None` when it already does.
pub fn insert_entry(
    file: &Path,
    value: &Value,
    entry: &Value,
) -> Result<Option<Edit>, ConfListError> {
    let obj = value
        .as_object()
        .ok_or_else(|| ConfListError::NotAnObject { file: file.into() })?;
    match obj.get("plugins") {
        Some(Value::Array(plugins)) => {
            let mut kept: Vec<Value> = plugins.iter().filter(|p| !is_ours(p)).cloned().collect();
            kept.push(entry.clone());
            if kept == *plugins {
                return Ok(None);
            }
            let mut out = obj.clone();
            out.insert("plugins".into(), Value::Array(kept));
            Ok(Some(Edit {
                path: file.into(),
                content: Value::Object(out),
                remove: None,
            }))
        }
        Some(_) => Err(ConfListError::PluginsNotAList { file: file.into() }),
        None => {
            if obj.get("type").and_then(Value::as_str).is_none() {
                return Err(ConfListError::NoType { file: file.into() });
            }
            Ok(Some(Edit {
                path: file.with_extension("conflist"),
                content: single_to_list(obj, entry),
                remove: (file.extension().is_none_or(|e| e != "conflist")).then(|| file.into()),
            }))
        }
    }
}

/// The edit that removes every `istio-cni` entry from a list; `None` when there is none.
pub fn remove_entry(file: &Path, value: &Value) -> Option<Edit> {
    let plugins = value.get("plugins")?.as_array()?;
    if !plugins.iter().any(is_ours) {
        return None;
    }
    let mut out = value.as_object()?.clone();
    let kept: Vec<Value> = plugins.iter().filter(|p| !is_ours(p)).cloned().collect();
    out.insert("plugins".into(), Value::Array(kept));
    Some(Edit {
        path: file.into(),
        content: Value::Object(out),
        remove: None,
    })
}

/// Does the configuration list end with exactly `entry` (and hold no other `istio-cni`)?
pub fn has_entry(value: &Value, entry: &Value) -> bool {
    value
        .get("plugins")
        .and_then(Value::as_array)
        .is_some_and(|p| p.last() == Some(entry) && p.iter().filter(|x| is_ours(x)).count() == 1)
}

fn is_ours(plugin: &Value) -> bool {
    plugin.get("type").and_then(Value::as_str) == Some(PLUGIN_TYPE)
}

/// A single-plugin conf as a list: `cniVersion` and `name` move to the list, the rest stays in the plugin.
fn single_to_list(obj: &Map<String, Value>, entry: &Value) -> Value {
    let mut plugin = obj.clone();
    let version = plugin
        .remove("cniVersion")
        .unwrap_or_else(|| json!("1.0.0"));
    let name = plugin
        .remove("name")
        .unwrap_or_else(|| json!("k8s-pod-network"));
    json!({"cniVersion": version, "name": name, "plugins": [Value::Object(plugin), entry]})
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entry() -> Value {
        json!({"type": "istio-cni", "name": "istio-cni", "cni_agent_run_dir": "/run/x"})
    }

    #[test]
    fn picks_the_lexically_first_conf_file() {
        let names: Vec<String> = [
            "20-b.conf",
            "10-a.conflist",
            ".tmp.conf",
            "05-x.txt",
            "30.json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(primary(&names, None), Some("10-a.conflist"));
        assert_eq!(primary(&names, Some("20-b.conf")), Some("20-b.conf"));
        assert_eq!(primary(&names, Some("nope")), None);
        assert_eq!(primary(&[], None), None);
        assert!(!is_conf_file(".istio-cni.tmp"));
        assert!(!is_conf_file(".conf"));
    }

    #[test]
    fn appends_to_a_list_and_replaces_old_entries() {
        let list = json!({"cniVersion": "1.0.0", "name": "net", "plugins": [
            {"type": "istio-cni", "old": true}, {"type": "bridge"}, {"type": "portmap"}]});
        let edit = insert_entry(Path::new("/d/10.conflist"), &list, &entry())
            .unwrap()
            .unwrap();
        assert_eq!(edit.path, Path::new("/d/10.conflist"));
        assert_eq!(edit.remove, None);
        let types: Vec<&str> = edit.content["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["bridge", "portmap", "istio-cni"]);
        assert!(has_entry(&edit.content, &entry()));
        // Already right: nothing to do (so the watcher does not loop on its own writes).
        assert_eq!(
            insert_entry(&edit.path, &edit.content, &entry()).unwrap(),
            None
        );
        // Ours not last: moved.
        let not_last = json!({"plugins": [entry(), {"type": "bridge"}]});
        assert!(!has_entry(&not_last, &entry()));
        let e = insert_entry(Path::new("/d/a.conflist"), &not_last, &entry())
            .unwrap()
            .unwrap();
        assert_eq!(e.content["plugins"][1], entry());
        let removed = remove_entry(&edit.path, &edit.content).unwrap();
        assert_eq!(removed.content["plugins"].as_array().unwrap().len(), 2);
        assert_eq!(remove_entry(&removed.path, &removed.content), None);
    }

    #[test]
    fn turns_a_single_conf_into_a_list() {
        let single =
            json!({"cniVersion": "0.4.0", "name": "net", "type": "bridge", "bridge": "cni0"});
        let edit = insert_entry(Path::new("/d/10-net.conf"), &single, &entry())
            .unwrap()
            .unwrap();
        assert_eq!(edit.path, Path::new("/d/10-net.conflist"));
        assert_eq!(edit.remove.as_deref(), Some(Path::new("/d/10-net.conf")));
        assert_eq!(
            edit.content,
            json!({"cniVersion": "0.4.0", "name": "net",
                "plugins": [{"type": "bridge", "bridge": "cni0"}, entry()]})
        );
    }

    #[test]
    fn rejects_what_is_not_a_configuration() {
        let p = Path::new("/d/x.conf");
        assert!(insert_entry(p, &json!([1]), &entry()).is_err());
        assert!(insert_entry(p, &json!({"plugins": {}}), &entry()).is_err());
        assert!(insert_entry(p, &json!({"name": "x"}), &entry()).is_err());
    }
}
