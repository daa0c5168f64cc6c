#![allow(clippy::unwrap_used)]

use serde_json::json;

use super::*;
use crate::kube_source::store::Change;

fn settings() -> Settings {
    Settings {
        image: "waypoint:dev".into(),
        xds_address: "https://control-plane.istio-system.svc:15012".into(),
        trust_domain: "cluster.local".into(),
        root_cert_pem: "ROOT".into(),
    }
}

fn apply(store: &mut Store, kind: &'static str, object: Value) {
    store.apply(Change::Apply { kind, object });
}

fn gateway() -> Value {
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "waypoint", "namespace": "shop", "uid": "gw-uid", "generation": 3, "resourceVersion": "1"},
        "spec": {"gatewayClassName": "istio-waypoint",
                 "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]}})
}

fn service(name: &str, ip: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "shop", "uid": format!("{name}-uid"), "resourceVersion": "1"},
        "spec": {"clusterIP": ip, "ports": [{"name": "mesh", "port": 15008}]}})
}

#[test]
fn a_waypoint_gateway_gets_its_account_deployment_service_and_root_cert_owned_by_it() {
    let mut store = Store::default();
    apply(&mut store, "Gateway", gateway());
    let d = desired(&store, &settings());
    let kinds: Vec<&str> = d
        .objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["ServiceAccount", "Deployment", "Service", "ConfigMap"]
    );
    for o in &d.objects[..3] {
        assert_eq!(o["metadata"]["ownerReferences"][0]["uid"], "gw-uid", "{o}");
        assert_eq!(o["metadata"]["ownerReferences"][0]["kind"], "Gateway");
        assert_eq!(o["metadata"]["labels"][MANAGED_LABEL], MANAGED_VALUE);
    }
    let pod = &d.objects[1]["spec"]["template"];
    assert_eq!(pod["metadata"]["labels"][GATEWAY_NAME_LABEL], "waypoint");
    assert_eq!(pod["spec"]["serviceAccountName"], "waypoint");
    let env = pod["spec"]["containers"][0]["env"].as_array().unwrap();
    let var = |n: &str| env.iter().find(|e| e["name"] == n).cloned().unwrap();
    assert_eq!(
        var("XDS_ADDRESS")["value"],
        "https://control-plane.istio-system.svc:15012"
    );
    assert_eq!(
        var("INSTANCE_IP")["valueFrom"]["fieldRef"]["fieldPath"],
        "status.podIP"
    );
    assert_eq!(
        pod["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]["audience"],
        "istio-ca"
    );
    assert_eq!(d.objects[3]["data"]["root-cert.pem"], "ROOT");
}

#[test]
fn every_namespace_but_the_system_ones_gets_the_root_cert() {
    let mut store = Store::default();
    for ns in ["istio-system", "shop", "kube-system", "kube-public"] {
        let uid = format!("{ns}-uid");
        apply(
            &mut store,
            "Namespace",
            json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "uid": uid, "resourceVersion": "1"}}),
        );
    }
    let d = desired(&store, &settings());
    let maps: Vec<(&str, &str)> = d
        .objects
        .iter()
        .filter(|o| o["kind"] == "ConfigMap")
        .map(|o| {
            assert_eq!(o["data"]["root-cert.pem"], "ROOT");
            (
                o["metadata"]["namespace"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        maps,
        [
            ("istio-system", ROOT_CERT_CONFIGMAP),
            ("shop", ROOT_CERT_CONFIGMAP)
        ]
    );
}

#[test]
fn the_gateway_is_programmed_once_its_service_has_an_address() {
    let mut store = Store::default();
    apply(&mut store, "Gateway", gateway());
    let status = &desired(&store, &settings()).statuses[0];
    assert_eq!(status.0.to_string(), "Gateway shop/waypoint");
    assert_eq!(status.2["conditions"][0]["type"], "Accepted");
    assert_eq!(status.2["conditions"][1]["status"], "False");
    assert_eq!(status.2["conditions"][1]["observedGeneration"], 3);
    assert_eq!(status.2["addresses"], json!([]));
    apply(&mut store, "Service", service("waypoint", "10.96.0.20"));
    let status = &desired(&store, &settings()).statuses[0];
    assert_eq!(status.2["conditions"][1]["status"], "True");
    assert_eq!(
        status.2["addresses"],
        json!([{"type": "IPAddress", "value": "10.96.0.20"}])
    );
    assert_eq!(status.2["listeners"][0]["name"], "mesh");
}

#[test]
fn routes_are_accepted_by_existing_parents_and_name_missing_backends() {
    let mut store = Store::default();
    apply(&mut store, "Service", service("reviews", "10.96.0.30"));
    apply(
        &mut store,
        "HTTPRoute",
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "r", "namespace": "shop", "uid": "r-uid", "generation": 2, "resourceVersion": "1"},
            "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "reviews", "port": 9080},
                                    {"group": "", "kind": "Service", "name": "nope"}],
                     "rules": [{"backendRefs": [{"name": "reviews", "port": 9080}, {"name": "gone", "port": 80}]}]}}),
    );
    let d = desired(&store, &settings());
    assert!(d.objects.is_empty());
    let (key, api, status) = &d.statuses[0];
    assert_eq!(key.to_string(), "HTTPRoute shop/r");
    assert_eq!(api, "gateway.networking.k8s.io/v1");
    let parents = status["parents"].as_array().unwrap();
    assert_eq!(parents[0]["controllerName"], CONTROLLER_NAME);
    assert_eq!(parents[0]["parentRef"]["name"], "reviews");
    assert_eq!(parents[0]["conditions"][0]["status"], "True");
    assert_eq!(parents[1]["conditions"][0]["reason"], "NoMatchingParent");
    assert_eq!(parents[0]["conditions"][1]["reason"], "BackendNotFound");
    assert!(
        parents[0]["conditions"][1]["message"]
            .as_str()
            .unwrap()
            .contains("shop/gone")
    );
}
