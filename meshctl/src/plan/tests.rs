#![allow(clippy::unwrap_used)]

use super::*;
use crate::manifest::{ClusterSpec, ManifestFile, Protocol, parse_files};

fn objs(text: &str) -> Vec<ManifestObject> {
    parse_files(&[ManifestFile {
        name: "m.yaml".into(),
        text: text.into(),
    }])
    .unwrap()
}

fn cluster(mask: u8) -> ClusterConfig {
    ClusterConfig::from_spec(
        &ClusterSpec {
            node_cidr_mask_size: Some(mask),
            ..Default::default()
        },
        Some(2),
    )
    .unwrap()
}

fn pod(name: &str, extra: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: {name}}}}}\nspec:\n  {extra}\n  containers: [{{name: c, command: [sleep, '1'], ports: [{{name: web, containerPort: 8080}}]}}]\n"
    )
}

const DEPLOY: &str = "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 3\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: c, command: [x], ports: [{name: http, containerPort: 80}]}]}\n";

fn err_of(c: &ClusterConfig, text: &str) -> ManifestError {
    build(c, &[], &objs(text), &Existing::default()).unwrap_err()
}

#[test]
fn deployments_expand_and_spread() {
    let (_, plan) = build(&cluster(24), &[], &objs(DEPLOY), &Existing::default()).unwrap();
    assert_eq!(plan.pods.len(), 3);
    let nodes: Vec<&str> = plan.pods.values().map(|p| p.node.as_str()).collect();
    assert_eq!(nodes.iter().filter(|n| **n == "node1").count(), 2);
    assert_eq!(nodes.iter().filter(|n| **n == "node2").count(), 1);
    let p = plan.pods.values().next().unwrap();
    assert!(
        p.name.starts_with("web-") && p.name.ends_with("-0"),
        "{}",
        p.name
    );
    assert_eq!(p.owner.as_deref(), Some("Deployment default/web"));
    assert_eq!(p.labels["pod-template-hash"].len(), 10);
}

#[test]
fn services_get_addresses_in_order_and_keep_them() {
    let text = format!(
        "{DEPLOY}---\napiVersion: v1\nkind: Service\nmetadata: {{name: a}}\nspec: {{selector: {{app: web}}, ports: [{{port: 80, targetPort: http}}]}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: b}}\nspec: {{selector: {{app: web}}, ports: [{{port: 81}}]}}\n"
    );
    let c = cluster(24);
    let (objects, plan) = build(&c, &[], &objs(&text), &Existing::default()).unwrap();
    let ip = |p: &Plan, n: &str| {
        p.services[&("default".to_string(), n.to_string())]
            .cluster_ip
            .unwrap()
            .to_string()
    };
    assert_eq!(ip(&plan, "a"), "10.96.0.10");
    assert_eq!(ip(&plan, "b"), "10.96.0.11");
    // Re-planned with `a` holding .20, `a` keeps it.
    let existing = Existing {
        service_ips: [(
            ("default".to_string(), "a".to_string()),
            Some("10.96.0.20".parse().unwrap()),
        )]
        .into(),
        ..Default::default()
    };
    let (_, again) = build(&c, &objects, &[], &existing).unwrap();
    assert_eq!(ip(&again, "a"), "10.96.0.20");
}

#[test]
fn cross_object_errors_name_object_and_field() {
    let c = cluster(24);
    let cases: Vec<(String, &str, &str)> = vec![
        (format!("{}{}", pod("p", ""), pod("p", "")), "metadata.name", "duplicate"),
        (pod("p", "nodeName: node9"), "spec.nodeName", "node \"node9\" not found"),
        (pod("p", "serviceAccountName: ghost"), "spec.serviceAccountName", "default/ghost not found"),
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: nowhere}\nspec: {containers: [{name: c, command: [x]}]}\n".into(), "metadata.namespace", "not found"),
        (format!("{}---\napiVersion: v1\nkind: Service\nmetadata: {{name: s}}\nspec: {{selector: {{app: none}}, ports: [{{port: 80}}]}}\n", pod("p", "")), "spec.selector", "selects no pods"),
        (format!("{}---\napiVersion: v1\nkind: Service\nmetadata: {{name: s}}\nspec: {{selector: {{app: p}}, ports: [{{port: 80, targetPort: grpc}}]}}\n", pod("p", "")), "spec.ports[0].targetPort", "no selected pod"),
        (format!("{}---\napiVersion: v1\nkind: Service\nmetadata: {{name: s}}\nspec: {{clusterIP: 10.1.2.3, selector: {{app: p}}, ports: [{{port: 80}}]}}\n", pod("p", "")), "spec.clusterIP", "not in the service CIDR"),
        (format!("{}{}", pod("p", ""), DEPLOY.replace("name: web}", "name: p}").replace("replicas: 3", "replicas: 1")), "metadata.name", "already taken"),
    ];
    for (text, field, msg) in cases {
        let mut text = text;
        if field == "metadata.name" && msg == "already taken" {
            // A pod named like a Deployment's pod: take the generated name and declare it.
            let (_, plan) = build(
                &c,
                &[],
                &objs(&text.replace(&pod("p", ""), "")),
                &Existing::default(),
            )
            .unwrap();
            let taken = plan.pods.keys().next().unwrap().1.clone();
            text = text.replace(
                "metadata: {name: p, labels: {app: p}}",
                &format!("metadata: {{name: {taken}}}"),
            );
        }
        let err = err_of(&c, &text);
        assert_eq!(err.field.as_deref(), Some(field), "{err}");
        assert!(err.to_string().contains(msg), "{err}");
    }
}

#[test]
fn pod_cidr_exhaustion_is_found_before_anything_runs() {
    // /30 per node: one pod address each.
    let c = cluster(30);
    assert!(
        build(
            &c,
            &[],
            &objs(&format!("{}{}", pod("a", ""), pod("b", ""))),
            &Existing::default()
        )
        .is_ok()
    );
    let err = err_of(
        &c,
        &format!("{}{}{}", pod("a", ""), pod("b", ""), pod("c", "")),
    );
    assert_eq!(err.field.as_deref(), Some("spec.nodeName"));
    assert!(err.to_string().contains("exhausted"), "{err}");
    let err = err_of(
        &c,
        &format!(
            "{}{}",
            pod("a", "nodeName: node1"),
            pod("b", "nodeName: node1")
        ),
    );
    assert!(
        err.to_string()
            .contains("pod CIDR 10.244.0.0/30 of node node1 is exhausted"),
        "{err}"
    );
}

#[test]
fn a_changed_pod_gets_a_new_revision_and_an_unchanged_one_stays_put() {
    let c = cluster(24);
    let (objects, plan) = build(&c, &[], &objs(&pod("p", "")), &Existing::default()).unwrap();
    let key = ("default".to_string(), "p".to_string());
    let first = plan.pods[&key].clone();
    let existing = Existing {
        pods: [(key.clone(), ("node2".to_string(), first.revision.clone()))].into(),
        ..Default::default()
    };
    let (_, same) = build(&c, &objects, &objs(&pod("p", "")), &existing).unwrap();
    assert_eq!(
        same.pods[&key].node, "node2",
        "an unchanged running pod keeps its node"
    );
    let (_, changed) = build(
        &c,
        &objects,
        &objs(&pod("p", "restartPolicy: Never")),
        &existing,
    )
    .unwrap();
    assert_ne!(changed.pods[&key].revision, first.revision);
}

#[test]
fn target_ports_resolve_by_number_name_or_default() {
    let (_, plan) = build(
        &cluster(24),
        &[],
        &objs(&pod("p", "")),
        &Existing::default(),
    )
    .unwrap();
    let spec = &plan.pods.values().next().unwrap().spec;
    let sp = |t: Option<IntOrString>| ServicePort {
        port: 80,
        target_port: t,
        ..ServicePort::default()
    };
    assert_eq!(target_port(&sp(None), spec), Some(80));
    assert_eq!(
        target_port(&sp(Some(IntOrString::Int(9090))), spec),
        Some(9090)
    );
    assert_eq!(
        target_port(&sp(Some(IntOrString::String("web".into()))), spec),
        Some(8080)
    );
    assert_eq!(
        target_port(&sp(Some(IntOrString::String("nope".into()))), spec),
        None
    );
}

const GATEWAY: &str = "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: waypoint}\nspec: {gatewayClassName: istio-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}\n";

fn service(name: &str, selector: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {{selector: {{{selector}}}, ports: [{{port: 80}}]}}\n"
    )
}

fn key(name: &str) -> Name {
    ("default".to_string(), name.to_string())
}

#[test]
fn a_waypoint_gateway_becomes_a_pod_a_service_account_and_a_service() {
    let other_class = GATEWAY
        .replace("name: waypoint}", "name: ingress}")
        .replace("istio-waypoint", "istio");
    let text = format!("{DEPLOY}{}{GATEWAY}{other_class}", service("a", "app: web"));
    let (_, plan) = build(&cluster(24), &[], &objs(&text), &Existing::default()).unwrap();
    let waypoints: Vec<&DesiredPod> = plan
        .pods
        .values()
        .filter(|p| p.waypoint.is_some())
        .collect();
    assert_eq!(waypoints.len(), 1, "one pod, and none for another class");
    let p = waypoints[0];
    assert_eq!(p.waypoint.as_deref(), Some("waypoint"));
    assert!(
        p.name.starts_with("waypoint-") && p.name.ends_with("-0") && p.name.len() == 21,
        "named like a one-replica Deployment's pod: {}",
        p.name
    );
    assert_eq!(p.owner.as_deref(), Some("Deployment default/waypoint"));
    assert_eq!(p.labels[GATEWAY_NAME_LABEL], "waypoint");
    assert_eq!(p.labels["istio.io/dataplane-mode"], "none");
    assert_eq!(p.spec.service_account(), "waypoint");
    assert!(plan.service_accounts.contains(&key("waypoint")));
    assert_eq!(p.spec.restart(), crate::manifest::RestartPolicy::Always);
    let [c] = p.spec.containers.as_slice() else {
        panic!("one container: {:?}", p.spec.containers)
    };
    assert_eq!(c.name, WAYPOINT_CONTAINER);
    assert_eq!(c.command.as_deref(), Some(&["waypoint".to_owned()][..]));
    let ports: Vec<(Option<&str>, u16)> = c
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.as_deref(), p.number()))
        .collect();
    assert_eq!(ports, [(Some("mesh"), 15008)]);
    let env: BTreeMap<&str, String> = c
        .env
        .iter()
        .flatten()
        .map(|e| {
            let v = match (&e.value, &e.value_from) {
                (Some(v), None) => v.clone(),
                (None, Some(f)) => format!(
                    "fieldRef {}",
                    f.field_ref.as_ref().map_or("", |r| r.field_path.as_str())
                ),
                other => panic!("{other:?}"),
            };
            (e.name.as_str(), v)
        })
        .collect();
    let want: BTreeMap<&str, String> = [
        ("POD_NAME", "fieldRef metadata.name"),
        ("POD_NAMESPACE", "fieldRef metadata.namespace"),
        ("SERVICE_ACCOUNT", "fieldRef spec.serviceAccountName"),
        ("INSTANCE_IP", "fieldRef status.podIP"),
        ("GATEWAY_NAME", "waypoint"),
        ("TRUST_DOMAIN", "cluster.local"),
        ("CLUSTER_ID", "Kubernetes"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_string()))
    .collect();
    assert_eq!(env, want);

    // Its Service: after the manifests' Services, 15008 → 15008, selecting its pod.
    assert_eq!(
        plan.services[&key("a")].cluster_ip.unwrap().to_string(),
        "10.96.0.10"
    );
    let svc = &plan.services[&key("waypoint")];
    assert_eq!(svc.cluster_ip.unwrap().to_string(), "10.96.0.11");
    let selector = svc.selector.as_ref().unwrap();
    assert_eq!(
        selector,
        &BTreeMap::from([(GATEWAY_NAME_LABEL.to_string(), "waypoint".to_string())])
    );
    assert!(selects(selector, &p.labels));
    let [port] = svc.ports.as_slice() else {
        panic!("{:?}", svc.ports)
    };
    assert_eq!(
        (port.number(), port.target_port.clone(), port.proto()),
        (15008, Some(IntOrString::Int(15008)), Protocol::Tcp)
    );
    assert!(!plan.services.contains_key(&key("ingress")));
}

#[test]
fn a_waypoint_keeps_its_pod_and_address_and_yields_to_a_listed_service() {
    let c = cluster(24);
    let (objects, plan) = build(&c, &[], &objs(GATEWAY), &Existing::default()).unwrap();
    let (pod_key, pod) = plan.pods.iter().next().unwrap();
    let existing = Existing {
        pods: [(pod_key.clone(), ("node2".to_string(), pod.revision.clone()))].into(),
        service_ips: [(key("waypoint"), Some("10.96.0.42".parse().unwrap()))].into(),
    };
    // Re-planned with another Service applied: same pod, same node, same address.
    let other = service("b", &format!("{GATEWAY_NAME_LABEL}: waypoint"));
    let (_, again) = build(&c, &objects, &objs(&other), &existing).unwrap();
    assert_eq!(again.pods[pod_key].revision, pod.revision);
    assert_eq!(again.pods[pod_key].node, "node2");
    assert_eq!(
        again.services[&key("waypoint")]
            .cluster_ip
            .unwrap()
            .to_string(),
        "10.96.0.42"
    );
    // A Service of the Gateway's name in the manifests is used as it is.
    let listed = service("waypoint", &format!("{GATEWAY_NAME_LABEL}: waypoint"));
    let (_, own) = build(
        &c,
        &[],
        &objs(&format!("{GATEWAY}{listed}")),
        &Existing::default(),
    )
    .unwrap();
    assert_eq!(own.services[&key("waypoint")].ports[0].port, 80);
}
