//! The benchmark's mesh as a manifest directory: one ambient namespace, `SERVICES` Services,
//! two L4 AuthorizationPolicies and N pods with explicit `status.podIP`s (10.0.0.1 upward),
//! spread over `NODES` nodes. Pod 0 lives in its own file so a change rewrites a few hundred
//! bytes (the control plane re-reads and re-translates the whole directory either way). The same
//! YAML is what `kube_mesh` sends to an API server, so both sources get the same mesh.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{Context, Result};

/// The namespace every object lives in.
pub(crate) const NAMESPACE: &str = "bench";
/// Services; pod `i` is selected by Service `svc-{i % SERVICES}`.
pub(crate) const SERVICES: usize = 10;
/// Nodes the pods are spread over (`spec.nodeName`).
const NODES: usize = 50;
/// AuthorizationPolicies (both sent to node tunnels).
pub(crate) const POLICIES: usize = 2;
/// The file holding pod 0, the one whose label each change edits.
const CHANGED_FILE: &str = "20-pod-0.yaml";

pub(crate) fn pod_ip(i: usize) -> Ipv4Addr {
    // At most 16 M pods fit; the CLI allows far fewer.
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 1)) + i as u32)
}

/// One pod; `revision` is its `version` label (the workload's canonical revision). It carries an
/// `image` (which the API server requires) as well as a `command` (which the local mesh uses).
pub(crate) fn pod(i: usize, revision: u32) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: pod-{i}\n  namespace: {NAMESPACE}\n  labels:\n    app: svc-{svc}\n    version: v{revision}\nspec:\n  nodeName: node-{node}\n  serviceAccountName: sa-{svc}\n  containers:\n    - name: app\n      image: busybox:1.37\n      command: [\"sleep\", \"infinity\"]\n      ports:\n        - name: http\n          containerPort: 8080\nstatus:\n  podIP: {ip}\n",
        svc = i % SERVICES,
        node = i % NODES,
        ip = pod_ip(i),
    )
}

/// The namespace, the Services and the policies, as one multi-document YAML text.
pub(crate) fn cluster_objects() -> String {
    let mut s = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NAMESPACE}\n  labels:\n    istio.io/dataplane-mode: ambient\n"
    );
    for j in 0..SERVICES {
        let _ = write!(
            s,
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: svc-{j}\n  namespace: {NAMESPACE}\nspec:\n  selector:\n    app: svc-{j}\n  ports:\n    - name: http\n      port: 80\n      targetPort: http\n      appProtocol: http\n"
        );
    }
    let _ = write!(
        s,
        "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: allow-svc-0\n  namespace: {NAMESPACE}\nspec:\n  selector:\n    matchLabels:\n      app: svc-0\n  action: ALLOW\n  rules:\n    - from:\n        - source:\n            namespaces: [\"{NAMESPACE}\"]\n      to:\n        - operation:\n            ports: [\"8080\"]\n"
    );
    let _ = write!(
        s,
        "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: deny-legacy\n  namespace: {NAMESPACE}\nspec:\n  action: DENY\n  rules:\n    - from:\n        - source:\n            principals: [\"cluster.local/ns/legacy/sa/default\"]\n"
    );
    s
}

/// Writes `text` to `dir/name` through a temporary file and a rename, so the watcher never
/// reads half a file.
pub(crate) fn write_atomic(dir: &Path, name: &str, text: &str) -> Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join(name)).with_context(|| format!("renaming {}", tmp.display()))
}

/// Fills `dir` with the mesh of `pods` pods (pod 0 at revision 0).
pub(crate) fn write_mesh(dir: &Path, pods: usize) -> Result<()> {
    write_atomic(dir, "10-cluster.yaml", &cluster_objects())?;
    let mut rest = String::with_capacity(pods * 400);
    for i in 1..pods {
        if i > 1 {
            rest.push_str("---\n");
        }
        rest.push_str(&pod(i, 0));
    }
    write_atomic(dir, "30-pods.yaml", &rest)?;
    set_revision(dir, 0)
}

/// Rewrites pod 0 with `version: v{revision}` (one workload's Address changes).
pub(crate) fn set_revision(dir: &Path, revision: u32) -> Result<()> {
    write_atomic(dir, CHANGED_FILE, &pod(0, revision))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::unwrap_used)]
    fn the_mesh_parses_and_translates() {
        let dir = tempfile::tempdir().unwrap();
        write_mesh(dir.path(), 25).unwrap();
        let files = control_plane::manifest::read_path(dir.path()).unwrap();
        let objects = control_plane::manifest::parse_files(&files).unwrap();
        let t = control_plane::translate::translate(&objects, &Default::default()).unwrap();
        assert_eq!(t.summary.workloads, 25);
        assert_eq!(t.summary.services, SERVICES);
        assert_eq!(t.summary.authorizations, POLICIES);
        let addresses = t.ztunnel.resources(xds::type_url::ADDRESS).unwrap();
        let uid = format!("Kubernetes//Pod/{NAMESPACE}/pod-0");
        assert!(
            addresses.contains_key(&uid),
            "{:?}",
            addresses.keys().next()
        );
    }
}
