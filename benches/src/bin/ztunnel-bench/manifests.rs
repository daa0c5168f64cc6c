//! The bench's manifests: 2 nodes; namespaces `meshed` (ambient) and `plain` (not captured),
//! each with a server pod pinned to node2 (`iperf3 -s` and the 64-byte echo server) and an idle
//! client pod pinned to node1.

use std::path::Path;

use anyhow::{Context, Result};

pub(crate) const IPERF_PORT: u16 = 5201;
pub(crate) const ECHO_PORT: u16 = 7000;
pub(crate) const SERVER_NODE: &str = "node2";
pub(crate) const CLIENT_NODE: &str = "node1";
pub(crate) const SERVER: &str = "server";
pub(crate) const CLIENT: &str = "client";

/// Namespace name → whether it is labelled for the ambient mesh.
pub(crate) const NAMESPACES: [(&str, bool); 2] = [("plain", false), ("meshed", true)];

fn cluster() -> String {
    "apiVersion: meshctl.dev/v1alpha1\nkind: Cluster\nmetadata: {name: ztunnel-bench}\nspec: {nodes: 2}\n"
        .to_owned()
}

fn namespace(ns: &str, ambient: bool) -> String {
    let labels = if ambient {
        "\n  labels: {istio.io/dataplane-mode: ambient}"
    } else {
        ""
    };
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}{labels}\n---\n\
         apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {SERVER}, namespace: {ns}}}\n---\n\
         apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {CLIENT}, namespace: {ns}}}\n"
    )
}

fn pods(ns: &str, bench_bin: &Path) -> String {
    let bin = bench_bin.display();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {SERVER}, namespace: {ns}, labels: {{app: {SERVER}}}}}\n\
         spec:\n  nodeName: {SERVER_NODE}\n  serviceAccountName: {SERVER}\n  containers:\n\
         \x20   - name: iperf3\n      command: [\"iperf3\", \"-s\", \"-p\", \"{IPERF_PORT}\"]\n\
         \x20     ports: [{{containerPort: {IPERF_PORT}}}]\n\
         \x20   - name: echo\n      command: [\"{bin}\", \"echo-server\", \"--port\", \"{ECHO_PORT}\"]\n\
         \x20     ports: [{{containerPort: {ECHO_PORT}}}]\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {{name: {CLIENT}, namespace: {ns}, labels: {{app: {CLIENT}}}}}\n\
         spec:\n  nodeName: {CLIENT_NODE}\n  serviceAccountName: {CLIENT}\n  containers:\n\
         \x20   - name: main\n      command: [\"sleep\", \"infinity\"]\n"
    )
}

/// Writes one file per document group into `dir` (read by `meshctl up -f dir` in name order).
pub(crate) fn write(dir: &Path, bench_bin: &Path) -> Result<()> {
    let mut files = vec![("00-cluster.yaml".to_owned(), cluster())];
    for (i, (ns, ambient)) in NAMESPACES.iter().enumerate() {
        files.push((format!("1{i}-{ns}.yaml"), namespace(ns, *ambient)));
        files.push((format!("2{i}-{ns}-pods.yaml"), pods(ns, bench_bin)));
    }
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}
