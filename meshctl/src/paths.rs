//! Where a mesh keeps its state on the machine, and the names of its network namespaces.
//!
//! A mesh is named (`--mesh`, default `mesh`); its state lives in `<base>/<name>/` (base: `$MESHCTL_STATE_DIR` or
//! `/run/meshctl`) and each of its network namespaces is named `<name>.…`, so meshes never collide and everything
//! of one mesh can be found by that prefix.

use std::path::PathBuf;

use crate::error::Error;

pub const DEFAULT_BASE: &str = "/run/meshctl";
pub const DEFAULT_MESH: &str = "mesh";

#[derive(Debug, Clone)]
pub struct MeshPaths {
    pub name: String,
    pub root: PathBuf,
}

impl MeshPaths {
    /// Mesh names are 1-24 characters of `[a-z0-9-]` (no dot: the dot separates the netns name parts).
    pub fn new(name: &str, base: Option<PathBuf>) -> Result<Self, Error> {
        let ok = !name.is_empty()
            && name.len() <= 24
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            return Err(Error::Usage(format!(
                "mesh name {name:?}: use 1-24 characters of a-z, 0-9 and '-'"
            )));
        }
        let base = base
            .or_else(|| std::env::var_os("MESHCTL_STATE_DIR").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_BASE));
        Ok(MeshPaths {
            name: name.to_string(),
            root: base.join(name),
        })
    }

    pub fn state_file(&self) -> PathBuf {
        self.root.join("state.json")
    }
    pub fn control_socket(&self) -> PathBuf {
        self.root.join("control.sock")
    }
    pub fn daemon_log(&self) -> PathBuf {
        self.root.join("daemon.log")
    }
    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.root.join("nodes").join(node)
    }
    pub fn cni_conf_dir(&self, node: &str) -> PathBuf {
        self.node_dir(node).join("net.d")
    }
    pub fn cni_cache_dir(&self, node: &str) -> PathBuf {
        self.node_dir(node).join("cni-cache")
    }
    pub fn ipam_dir(&self, node: &str) -> PathBuf {
        self.node_dir(node).join("ipam")
    }
    pub fn pod_dir(&self, ns: &str, pod: &str) -> PathBuf {
        self.root.join("pods").join(ns).join(pod)
    }

    /// The prefix of every network namespace of this mesh.
    pub fn netns_prefix(&self) -> String {
        format!("{}.", self.name)
    }
    pub fn underlay_netns(&self) -> String {
        format!("{}.underlay", self.name)
    }
    pub fn node_netns(&self, node: &str) -> String {
        format!("{}.node.{node}", self.name)
    }
    pub fn pod_netns(&self, ns: &str, pod: &str) -> String {
        format!("{}.pod.{ns}.{pod}", self.name)
    }
}
