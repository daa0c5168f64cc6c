#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use prost::Message;
use proto::istio::workload::{Address, TunnelProtocol, address};

use super::*;
use ::control_plane::translate::Translation;

use crate::cluster::ClusterConfig;
use crate::manifest::{self, ManifestFile};
use crate::plan::{self, Existing};

fn mesh_paths(dir: &Path) -> MeshPaths {
    let paths = MeshPaths::new("t", Some(dir.to_path_buf())).unwrap();
    std::fs::create_dir_all(super::dir(&paths)).unwrap();
    paths
}

fn read_tokens(paths: &MeshPaths) -> BTreeMap<String, TokenSubject> {
    serde_json::from_str(&std::fs::read_to_string(tokens_file(paths)).unwrap()).unwrap()
}

fn waypoint_pod() -> DesiredPod {
    let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: waypoint, namespace: demo}\nspec: {gatewayClassName: istio-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}\n";
    let objects = manifest::parse_files(&[ManifestFile {
        name: "m.yaml".into(),
        text: text.into(),
    }])
    .unwrap();
    let cluster = ClusterConfig::from_spec(&Default::default(), Some(1)).unwrap();
    let (_, plan) = plan::build(&cluster, &[], &objects, &Existing::default()).unwrap();
    plan.pods.into_values().next().unwrap()
}

#[test]
fn a_pod_token_is_private_listed_as_its_service_account_and_withdrawn() {
    let dir = tempfile::tempdir().unwrap();
    let paths = mesh_paths(dir.path());
    let node = TokenSubject::Node("node1".into());
    let mut cp = ControlPlane::detached([("node-token".to_string(), node.clone())].into());
    let pod = waypoint_pod();

    let path = cp.issue_pod_token(&paths, &pod).unwrap();
    assert_eq!(path, pod_token_path(&paths, "demo", &pod.name));
    assert_eq!(
        path,
        paths.pod_dir("demo", &pod.name).join("istio-token"),
        "under the pod's directory"
    );
    let token = std::fs::read_to_string(&path).unwrap();
    assert_eq!(token.len(), 64);
    for file in [&path, &tokens_file(&paths)] {
        let mode = std::fs::metadata(file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", file.display());
    }
    let tokens = read_tokens(&paths);
    assert_eq!(tokens["node-token"], node, "node tokens stay");
    assert_eq!(
        tokens[&token],
        TokenSubject::ServiceAccount {
            service_account: "demo/waypoint".into()
        }
    );

    // Issued again (a replaced pod): the old token is gone.
    let again = std::fs::read_to_string(cp.issue_pod_token(&paths, &pod).unwrap()).unwrap();
    assert_ne!(again, token);
    let tokens = read_tokens(&paths);
    assert!(!tokens.contains_key(&token));
    assert_eq!(tokens.len(), 2);

    cp.revoke_pod_token(&paths, &pod.key());
    assert_eq!(
        read_tokens(&paths),
        [("node-token".to_string(), node)].into()
    );
    assert!(!path.exists());
    // Pods without a token: nothing happens.
    cp.revoke_pod_token(&paths, &("demo".into(), "other".into()));
}

#[test]
fn pods_reach_the_control_plane_at_their_node_gateway() {
    let cluster = ClusterConfig::from_spec(&Default::default(), None).unwrap();
    assert_eq!(pod_address(&cluster.nodes[0]), "http://10.244.0.1:15012");
    assert_eq!(pod_address(&cluster.nodes[1]), "http://10.244.1.1:15012");
}

fn example(name: &str) -> (ClusterConfig, Vec<ManifestObject>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name);
    let objects = manifest::parse_files(&manifest::read_path(&dir).unwrap()).unwrap();
    let spec = objects
        .iter()
        .find_map(|o| match &o.object {
            Object::Cluster(c) => Some(c.spec.clone()),
            _ => None,
        })
        .unwrap_or_default();
    (ClusterConfig::from_spec(&spec, None).unwrap(), objects)
}

/// Every planned pod as running, addressed on its node in name order as host-local would.
fn running(cluster: &ClusterConfig, plan: &Plan) -> BTreeMap<Name, RunningPod> {
    let mut next: BTreeMap<&str, u32> = BTreeMap::new();
    plan.pods
        .values()
        .map(|d| {
            let n = next.entry(d.node.as_str()).or_insert(1);
            *n += 1;
            let gw = cluster.node(&d.node).unwrap().gateway();
            let pod = RunningPod {
                desired: d.clone(),
                uid: format!("uid-{}", d.name),
                container_id: d.name.clone(),
                netns: format!("t.pod.{}.{}", d.namespace, d.name),
                ip: Ipv4Addr::from(u32::from(gw) + *n - 1),
            };
            (d.key(), pod)
        })
        .collect()
}

fn decode(t: &Translation, name: &str) -> address::Type {
    let r = t
        .ztunnel
        .get("type.googleapis.com/istio.workload.Address", name)
        .unwrap_or_else(|| panic!("no Address {name}"));
    Address::decode(r.body.value.as_slice())
        .unwrap()
        .r#type
        .unwrap()
}

#[test]
fn the_waypoint_example_translates_with_the_planned_waypoint() {
    let (cluster, incoming) = example("waypoint");
    let (objects, plan) = plan::build(&cluster, &[], &incoming, &Existing::default()).unwrap();
    validate(&objects, &cluster.trust_domain).unwrap();
    // What the control plane reads once every pod runs.
    let pods = running(&cluster, &plan);
    let text: String = documents(&objects, &plan, &pods)
        .iter()
        .map(|d| format!("---\n{d}\n"))
        .collect();
    let published = manifest::parse_files(&[ManifestFile {
        name: "mesh.yaml".into(),
        text,
    }])
    .unwrap();
    let t = ::control_plane::translate::translate(&published, &Default::default()).unwrap();

    // The waypoint's Service is the planned one, published with the planned address.
    let vip = plan.services[&("demo".to_string(), "waypoint".to_string())]
        .cluster_ip
        .unwrap();
    let listed = published.iter().find_map(|o| match &o.object {
        Object::Service(s) if s.metadata.name.as_deref() == Some("waypoint") => s.spec.clone(),
        _ => None,
    });
    assert_eq!(listed.unwrap().cluster_ip, Some(vip.to_string()));
    let address::Type::Service(svc) = decode(&t, "demo/waypoint.demo.svc.cluster.local") else {
        panic!("not a Service");
    };
    assert_eq!(svc.addresses[0].address, vip.octets().to_vec());
    assert_eq!(svc.ports[0].service_port, 15008);
    assert_eq!(svc.ports[0].target_port, 15008);
    // Every backend Service goes through it.
    for name in ["backend", "backend-v1", "backend-v2"] {
        let address::Type::Service(svc) =
            decode(&t, &format!("demo/{name}.demo.svc.cluster.local"))
        else {
            panic!("not a Service");
        };
        let wp = svc.waypoint.unwrap();
        assert_eq!(wp.hbone_mtls_port, 15008, "{name}");
    }
    // Its pod speaks HBONE itself, as its own service account.
    let pod = plan.pods.values().find(|p| p.waypoint.is_some()).unwrap();
    let address::Type::Workload(w) = decode(&t, &format!("Kubernetes//Pod/demo/{}", pod.name))
    else {
        panic!("not a Workload");
    };
    assert!(w.native_tunnel);
    assert_eq!(w.tunnel_protocol, TunnelProtocol::Hbone as i32);
    assert_eq!(w.service_account, "waypoint");
    assert!(w.waypoint.is_none());
    // And the waypoint's own snapshot has the backends' port, its route and its policy.
    let wp = &t.waypoints[&("demo".to_string(), "waypoint".to_string())];
    let listener = "type.googleapis.com/envoy.config.listener.v3.Listener";
    let route = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
    assert!(wp.get(listener, "0.0.0.0_80").is_some());
    assert!(wp.get(route, "80").is_some());
    assert!(t.summary.waypoints == 1, "{}", t.summary);
}
