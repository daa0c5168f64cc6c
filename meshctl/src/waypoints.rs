//! Waypoint pods at run time: what the mesh supplies when one starts and takes back when it goes.
//! Their shape (one pod per Gateway of class `istio-waypoint`, its labels, service account,
//! environment from the pod's own facts, and its Service) is the plan's (`plan/waypoints.rs`).
//!
//! At start, the pod's `waypoint` container runs the `waypoint` binary (next to `meshctl`, or in
//! `$MESHCTL_BIN_DIR`) with, besides the plan's `POD_NAME`, `POD_NAMESPACE`, `SERVICE_ACCOUNT`,
//! `INSTANCE_IP`, `GATEWAY_NAME`, `TRUST_DOMAIN` and `CLUSTER_ID`:
//! * `XDS_ADDRESS` = `CA_ADDRESS` = `http://<node's pod gateway>:15012`, the control plane's
//!   forwarder in the node netns (`control_plane` explains the path);
//! * `AUTH_TOKEN` = the path of the pod's own CA token, `pods/<ns>/<pod>/istio-token`, which
//!   authenticates it as its service account only;
//! * `RUST_LOG` = `$MESHCTL_COMPONENT_LOG`, else `info`.
//!
//! Its log is `pods/<ns>/<pod>/waypoint.log` under the mesh's state directory.

use crate::cluster::ClusterConfig;
use crate::control_plane::{self, ControlPlane};
use crate::error::Error;
use crate::node_agents::Binaries;
use crate::paths::MeshPaths;
use crate::plan::{self, DesiredPod, Name, Plan};
use crate::pods::Launch;
use crate::status::WaypointStatus;

/// What `pod` gets at start if it is a waypoint's (its token is issued here); `None` otherwise.
pub fn launch(
    paths: &MeshPaths,
    cluster: &ClusterConfig,
    bins: &Binaries,
    control_plane: Option<&mut ControlPlane>,
    pod: &DesiredPod,
) -> Result<Option<Launch>, Error> {
    if pod.waypoint.is_none() {
        return Ok(None);
    }
    let fail = |detail: String| Error::Pod {
        pod: format!("{}/{}", pod.namespace, pod.name),
        detail,
    };
    let binary = bins.require_waypoint()?.to_path_buf();
    let node = cluster
        .node(&pod.node)
        .ok_or_else(|| fail(format!("node {:?} not found", pod.node)))?;
    let control_plane =
        control_plane.ok_or_else(|| fail("the control plane is not running".into()))?;
    let token = control_plane.issue_pod_token(paths, pod)?;
    let address = control_plane::pod_address(node);
    let rust_log = std::env::var("MESHCTL_COMPONENT_LOG").unwrap_or_else(|_| "info".into());
    Ok(Some(Launch {
        container: plan::WAYPOINT_CONTAINER.into(),
        binary,
        env: vec![
            ("XDS_ADDRESS".into(), address.clone()),
            ("CA_ADDRESS".into(), address),
            ("AUTH_TOKEN".into(), token.display().to_string()),
            ("RUST_LOG".into(), rust_log),
        ],
    }))
}

/// Takes back what [`launch`] gave a pod that is gone (its CA token); nothing for other pods.
pub fn stopped(paths: &MeshPaths, control_plane: Option<&mut ControlPlane>, pod: &Name) {
    if let Some(cp) = control_plane {
        cp.revoke_pod_token(paths, pod);
    }
}

/// Whether the plan runs any waypoint pod (so the `waypoint` binary is needed).
pub fn any(plan: &Plan) -> bool {
    plan.pods.values().any(|p| p.waypoint.is_some())
}

/// One entry per waypoint of the plan, with its Service's address.
pub fn statuses(plan: &Plan) -> Vec<WaypointStatus> {
    let gateways: std::collections::BTreeSet<Name> = plan
        .pods
        .values()
        .filter_map(|p| Some((p.namespace.clone(), p.waypoint.clone()?)))
        .collect();
    gateways
        .into_iter()
        .map(|key| WaypointStatus {
            ip: plan.services.get(&key).and_then(|s| s.cluster_ip),
            namespace: key.0,
            name: key.1,
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::manifest::{ManifestFile, parse_files};
    use crate::plan::Existing;
    use crate::pods::RunningPod;

    fn bins(dir: &Path) -> Binaries {
        let waypoint = dir.join("waypoint");
        std::fs::write(&waypoint, "").unwrap();
        Binaries {
            ztunnel: PathBuf::new(),
            cni_agent: PathBuf::new(),
            istio_cni: PathBuf::new(),
            control_plane: PathBuf::new(),
            waypoint,
        }
    }

    fn plan(cluster: &ClusterConfig) -> Plan {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: wp, namespace: demo}\nspec: {gatewayClassName: istio-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: app, namespace: demo}\nspec: {nodeName: node1, containers: [{name: c, command: [sleep]}]}\n";
        let objects = parse_files(&[ManifestFile {
            name: "m.yaml".into(),
            text: text.into(),
        }])
        .unwrap();
        plan::build(cluster, &[], &objects, &Existing::default())
            .unwrap()
            .1
    }

    #[test]
    fn a_waypoint_starts_with_its_binary_control_plane_address_and_token() {
        let dir = tempfile::tempdir().unwrap();
        let paths = MeshPaths::new("t", Some(dir.path().to_path_buf())).unwrap();
        std::fs::create_dir_all(control_plane::dir(&paths)).unwrap();
        let cluster = ClusterConfig::from_spec(&Default::default(), None).unwrap();
        let plan = plan(&cluster);
        let bins = bins(dir.path());
        let mut cp = ControlPlane::detached(BTreeMap::new());
        let app = &plan.pods[&("demo".to_string(), "app".to_string())];
        assert_eq!(
            launch(&paths, &cluster, &bins, Some(&mut cp), app).unwrap(),
            None
        );
        let pod = plan.pods.values().find(|p| p.waypoint.is_some()).unwrap();
        let node = cluster.node(&pod.node).unwrap();
        let l = launch(&paths, &cluster, &bins, Some(&mut cp), pod)
            .unwrap()
            .unwrap();
        let token = control_plane::pod_token_path(&paths, "demo", &pod.name);
        assert!(token.is_file());

        // What the process gets.
        let running = RunningPod {
            desired: pod.clone(),
            uid: "u".into(),
            container_id: "c".into(),
            netns: "t.pod.demo.wp".into(),
            ip: "10.244.1.7".parse().unwrap(),
        };
        let dir_of_pod = paths.pod_dir("demo", &pod.name);
        let [c] = crate::pods::container_specs(&running, Some(node.ip), &dir_of_pod, Some(&l))
            .try_into()
            .unwrap();
        assert_eq!(c.argv, [bins.waypoint.display().to_string()]);
        assert_eq!(c.log, dir_of_pod.join("waypoint.log"));
        let env: BTreeMap<String, String> = c.env.into_iter().collect();
        let address = format!("http://{}:15012", node.gateway());
        for (k, v) in [
            ("XDS_ADDRESS", address.as_str()),
            ("CA_ADDRESS", &address),
            ("AUTH_TOKEN", &token.display().to_string()),
            ("POD_NAME", &pod.name),
            ("POD_NAMESPACE", "demo"),
            ("SERVICE_ACCOUNT", "wp"),
            ("INSTANCE_IP", "10.244.1.7"),
            ("GATEWAY_NAME", "wp"),
            ("TRUST_DOMAIN", "cluster.local"),
            ("CLUSTER_ID", "Kubernetes"),
        ] {
            assert_eq!(env.get(k).map(String::as_str), Some(v), "{k}");
        }
        assert!(env.contains_key("RUST_LOG"));

        stopped(&paths, Some(&mut cp), &pod.key());
        assert!(!token.exists());
        assert!(any(&plan));
        let st = statuses(&plan);
        assert_eq!(st.len(), 1);
        assert_eq!(
            (st[0].namespace.as_str(), st[0].name.as_str()),
            ("demo", "wp")
        );
        assert_eq!(
            st[0].ip,
            plan.services[&("demo".into(), "wp".into())].cluster_ip
        );
    }

    #[test]
    fn a_missing_waypoint_binary_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = bins(dir.path());
        b.waypoint = dir.path().join("nope");
        let err = b.require_waypoint().unwrap_err().to_string();
        assert!(err.contains("nope") && err.contains("cargo build"), "{err}");
    }
}
