//! The machine-level shape of a mesh: an underlay network namespace holding one L2 bridge, one network namespace
//! per node attached to it by a veth pair, routes between the nodes' pod CIDRs, and each node's CNI configuration.
//!
//! Nothing here touches the host's root namespace: every link is created directly inside the mesh's namespaces.
//! Pods are attached by `cni` (through the node's CNI chain), not here.

use std::time::Duration;

use serde_json::json;

use crate::cluster::{ClusterConfig, NodeConfig};
use crate::cmd;
use crate::error::Error;
use crate::netns;
use crate::paths::MeshPaths;

/// The underlay bridge's name inside the underlay namespace.
const UNDERLAY_BRIDGE: &str = "ul0";
/// The pod bridge the CNI `bridge` plugin creates inside each node.
pub const POD_BRIDGE: &str = "cni0";
/// The CNI network name of the pod network.
pub const NETWORK_NAME: &str = "meshnet";

/// Creates the underlay and every node. On error, removes what it made.
pub fn create(paths: &MeshPaths, cluster: &ClusterConfig) -> Result<(), Error> {
    let result = create_all(paths, cluster);
    if result.is_err() {
        teardown(paths, Duration::from_secs(1));
    }
    result
}

fn create_all(paths: &MeshPaths, cluster: &ClusterConfig) -> Result<(), Error> {
    let ul = paths.underlay_netns();
    netns::create(&ul)?;
    cmd::ip(&ul, &["link", "add", UNDERLAY_BRIDGE, "type", "bridge"])?;
    cmd::ip(&ul, &["link", "set", UNDERLAY_BRIDGE, "up"])?;
    for (i, node) in cluster.nodes.iter().enumerate() {
        create_node(paths, cluster, i, node)?;
    }
    Ok(())
}

fn create_node(
    paths: &MeshPaths,
    cluster: &ClusterConfig,
    index: usize,
    node: &NodeConfig,
) -> Result<(), Error> {
    let ns = paths.node_netns(&node.name);
    let ul = paths.underlay_netns();
    let port = format!("n{index}");
    netns::create(&ns)?;
    cmd::ip(
        &ns,
        &[
            "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns", &ul,
        ],
    )?;
    cmd::ip(
        &ul,
        &["link", "set", &port, "master", UNDERLAY_BRIDGE, "up"],
    )?;
    let addr = format!("{}/{}", node.ip, cluster.underlay_cidr.prefix_len());
    cmd::ip(&ns, &["addr", "add", &addr, "dev", "eth0"])?;
    cmd::ip(&ns, &["link", "set", "eth0", "up"])?;
    for other in cluster.nodes.iter().filter(|o| o.name != node.name) {
        cmd::ip(
            &ns,
            &[
                "route",
                "add",
                &other.pod_cidr.to_string(),
                "via",
                &other.ip.to_string(),
            ],
        )?;
    }
    // Forward between pods and the underlay; pass bridged pod traffic through netfilter so Service NAT is undone
    // for replies between pods of the same node (what kube-proxy relies on br_netfilter for).
    cmd::run(
        "sysctl",
        &["-q", "-w", "net.ipv4.ip_forward=1"],
        Some(&ns),
        None,
    )?;
    cmd::run(
        "sysctl",
        &["-q", "-w", "net.bridge.bridge-nf-call-iptables=1"],
        Some(&ns),
        None,
    )
    .map_err(|e| Error::Mesh {
        mesh: paths.name.clone(),
        detail: format!("{e} (is the br_netfilter kernel module loaded?)"),
    })?;
    write_cni_config(paths, node)
}

/// Writes the node's primary CNI configuration: `bridge` + `host-local`, as a cluster's primary CNI would.
fn write_cni_config(paths: &MeshPaths, node: &NodeConfig) -> Result<(), Error> {
    let dir = paths.cni_conf_dir(&node.name);
    std::fs::create_dir_all(&dir).map_err(|e| Error::file(&dir, e))?;
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": NETWORK_NAME,
        "plugins": [{
            "type": "bridge",
            "bridge": POD_BRIDGE,
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": node.pod_cidr.to_string(), "gateway": node.gateway().to_string()}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": paths.ipam_dir(&node.name).display().to_string(),
            }
        }]
    });
    let file = dir.join("10-meshnet.conflist");
    let text = serde_json::to_string_pretty(&conf).unwrap_or_default();
    std::fs::write(&file, text).map_err(|e| Error::file(&file, e))
}

/// Removes every network namespace of the mesh (pods, then nodes, then the underlay), killing the processes in
/// them, and the mesh's state directory. Safe to call on a half-made or already removed mesh.
pub fn teardown(paths: &MeshPaths, grace: Duration) -> Vec<Error> {
    let mut errors = Vec::new();
    let all = netns::list_with_prefix(&paths.netns_prefix());
    let rank = |n: &String| {
        if n.starts_with(&format!("{}pod.", paths.netns_prefix())) {
            0
        } else if n == &paths.underlay_netns() {
            2
        } else {
            1
        }
    };
    let mut ordered = all.clone();
    ordered.sort_by_key(rank);
    // Stop every process of the mesh at once so the grace periods overlap.
    let pids: Vec<_> = ordered.iter().flat_map(|n| netns::pids_in(n)).collect();
    netns::kill_all(&pids, grace);
    for name in &ordered {
        if let Err(e) = netns::delete(name, Duration::from_millis(500)) {
            errors.push(e);
        }
    }
    if paths.root.exists()
        && let Err(e) = std::fs::remove_dir_all(&paths.root)
    {
        errors.push(Error::file(&paths.root, e));
    }
    errors
}
