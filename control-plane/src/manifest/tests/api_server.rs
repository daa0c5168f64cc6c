//! Objects exactly as the API server returns them: server-set metadata, `managedFields`, `status`, defaulted
//! and unknown fields. Every kind parses, and serializes back to a document that reads as the same object.

use super::super::*;

fn api(json: &str) -> ManifestObject {
    let objects = parse_files(&[ManifestFile {
        name: "api.json".into(),
        text: json.into(),
    }])
    .unwrap();
    let [object] = objects.try_into().unwrap();
    let text = serde_json::to_string(&object.object).unwrap();
    assert_eq!(
        serde_json::from_str::<Object>(&text).unwrap(),
        object.object,
        "{text}"
    );
    object
}

const META: &str = r#""metadata":{"name":"x","namespace":"shop","uid":"0b6c2a4e","resourceVersion":"4711",
  "generation":3,"creationTimestamp":"2026-12-07T10:00:00Z","annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{}"},
  "managedFields":[{"manager":"kubectl","operation":"Apply","apiVersion":"v1","time":"2026-12-07T10:00:00Z","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{}}}]}"#;

/// A Pod exactly as the API server returns it: image only, server-set metadata, `managedFields`, env from a
/// Secret, status with IPs and conditions, and fields we do not know.
#[test]
fn pods_are_accepted_as_the_api_server_returns_them() {
    let json = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web-7d9f8b6c5-x2k4p","namespace":"shop",
      "uid":"0b6c2a4e-1f0d-4c55-9a35-7c8d7ab3f1e2","resourceVersion":"4711","creationTimestamp":"2026-12-07T10:00:00Z",
      "generateName":"web-7d9f8b6c5-","labels":{"app":"web","pod-template-hash":"7d9f8b6c5"},
      "ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web-7d9f8b6c5","uid":"u","controller":true,"blockOwnerDeletion":true}],
      "managedFields":[{"manager":"kube-controller-manager","operation":"Update","apiVersion":"v1","time":"2026-12-07T10:00:00Z","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{}}}]},
      "spec":{"containers":[{"name":"web","image":"nginx:1.27","ports":[{"name":"http","containerPort":80,"protocol":"TCP"}],
        "env":[{"name":"PASSWORD","valueFrom":{"secretKeyRef":{"name":"s","key":"k"}}}],
        "resources":{},"terminationMessagePath":"/dev/termination-log","imagePullPolicy":"IfNotPresent"}],
        "restartPolicy":"Always","terminationGracePeriodSeconds":30,"dnsPolicy":"ClusterFirst","serviceAccountName":"web",
        "serviceAccount":"web","nodeName":"node-a","securityContext":{},"schedulerName":"default-scheduler",
        "tolerations":[{"key":"node.kubernetes.io/not-ready","operator":"Exists","effect":"NoExecute","tolerationSeconds":300}],
        "priority":0,"enableServiceLinks":true,"preemptionPolicy":"PreemptLowerPriority"},
      "status":{"phase":"Running","conditions":[{"type":"Ready","status":"True","lastProbeTime":null}],
        "hostIP":"172.18.0.2","podIP":"10.244.1.7","podIPs":[{"ip":"10.244.1.7"}],"qosClass":"BestEffort"}}"#;
    let Object::Pod(pod) = &api(json).object else {
        panic!("not a pod")
    };
    assert!(pod.pod_spec().containers[0].command.is_none());
    assert_eq!(pod.pod_spec().node_name.as_deref(), Some("node-a"));
    assert_eq!(pod.pod_ip(), Some("10.244.1.7".parse().unwrap()));
    assert!(pod.is_ready());
}

#[test]
fn istio_kinds_are_accepted_as_the_api_server_returns_them() {
    let status = r#""status":{"conditions":[{"type":"WaypointAccepted","status":"True","reason":"Accepted"}],"observedGeneration":"3","validationMessages":[]}"#;
    let ap = api(&format!(
        r#"{{"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy",{META},
        "spec":{{"action":"DENY","provider":{{"name":"ext"}},"rules":[{{"from":[{{"source":{{"namespaces":["a"]}}}}],"to":[{{"operation":{{"ports":["80"]}}}}]}}]}},{status}}}"#
    ));
    let Object::AuthorizationPolicy(ap) = &ap.object else {
        panic!()
    };
    assert_eq!(ap.spec.action, security::AuthzAction::Deny);
    assert_eq!(ap.spec.rules[0].from[0].source.namespaces, ["a"]);
    let pa = api(&format!(
        r#"{{"apiVersion":"security.istio.io/v1","kind":"PeerAuthentication",{META},
        "spec":{{"mtls":{{"mode":"STRICT"}},"portLevelMtls":{{"8080":{{"mode":"DISABLE"}}}}}},{status}}}"#
    ));
    let Object::PeerAuthentication(pa) = &pa.object else {
        panic!()
    };
    // JSON map keys are strings: the port still reads as a number.
    let relaxed = &pa.spec.port_level_mtls[&security::PortKey(8080)];
    assert_eq!(relaxed.mode, security::MtlsMode::Disable);
    let dr = api(&format!(
        r#"{{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule",{META},
        "spec":{{"host":"reviews","exportTo":["."],"subsets":[{{"name":"v1","labels":{{"version":"v1"}}}}],
          "trafficPolicy":{{"tls":{{"mode":"ISTIO_MUTUAL"}},"loadBalancer":{{"simple":"RANDOM"}}}}}},{status}}}"#
    ));
    let Object::DestinationRule(dr) = &dr.object else {
        panic!()
    };
    assert_eq!(dr.spec.host, "reviews");
    // An AuthorizationPolicy without a spec (allow nothing) is one the API server can return.
    let empty = api(&format!(
        r#"{{"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy",{META}}}"#
    ));
    assert_eq!(empty.object.key().to_string(), "AuthorizationPolicy shop/x");
}

#[test]
fn gateway_api_kinds_are_accepted_as_the_api_server_returns_them() {
    let gw = api(&format!(
        r#"{{"apiVersion":"gateway.networking.k8s.io/v1","kind":"Gateway",{META},
        "spec":{{"gatewayClassName":"istio-waypoint","listeners":[{{"name":"mesh","port":15008,"protocol":"HBONE",
          "allowedRoutes":{{"namespaces":{{"from":"Same"}}}}}}]}},
        "status":{{"addresses":[{{"type":"IPAddress","value":"10.96.0.20"}}],"conditions":[{{"type":"Programmed",
          "status":"True","reason":"Programmed","message":"","lastTransitionTime":"2026-12-07T10:00:00Z","observedGeneration":3}}],
          "listeners":[{{"name":"mesh","attachedRoutes":0,"supportedKinds":[],"conditions":[]}}]}}}}"#
    ));
    let Object::Gateway(g) = &gw.object else {
        panic!()
    };
    assert!(g.is_waypoint());
    let route = api(&format!(
        r#"{{"apiVersion":"gateway.networking.k8s.io/v1","kind":"HTTPRoute",{META},
        "spec":{{"parentRefs":[{{"group":"","kind":"Service","name":"reviews","port":9080}}],
          "rules":[{{"matches":[{{"path":{{"type":"PathPrefix","value":"/"}}}}],
            "backendRefs":[{{"group":"","kind":"Service","name":"reviews-v1","port":9080,"weight":1}}]}}]}},
        "status":{{"parents":[{{"parentRef":{{"kind":"Service","name":"reviews"}},"controllerName":"istio.io/mesh-controller",
          "conditions":[{{"type":"Accepted","status":"True","reason":"Accepted"}}]}}]}}}}"#
    ));
    assert!(matches!(route.object, Object::HttpRoute(_)));
    let grpc = api(&format!(
        r#"{{"apiVersion":"gateway.networking.k8s.io/v1","kind":"GRPCRoute",{META},
        "spec":{{"parentRefs":[{{"kind":"Service","name":"echo"}}],"rules":[{{"backendRefs":[{{"name":"echo","port":50051}}]}}]}},
        "status":{{"parents":[]}}}}"#
    ));
    assert!(matches!(grpc.object, Object::GrpcRoute(_)));
}

#[test]
fn core_kinds_are_accepted_as_the_api_server_returns_them() {
    let svc = api(&format!(
        r#"{{"apiVersion":"v1","kind":"Service",{META},
        "spec":{{"clusterIP":"10.96.0.10","clusterIPs":["10.96.0.10"],"type":"ClusterIP","sessionAffinity":"None",
          "ipFamilies":["IPv4"],"ipFamilyPolicy":"SingleStack","internalTrafficPolicy":"Cluster",
          "selector":{{"app":"web"}},"ports":[{{"name":"http","port":80,"targetPort":"http","protocol":"TCP"}}]}},
        "status":{{"loadBalancer":{{}}}}}}"#
    ));
    let Object::Service(s) = &svc.object else {
        panic!()
    };
    assert_eq!(s.cluster_ip(), Some("10.96.0.10"));
    assert_eq!(s.ports()[0].number(), 80);
    let ns = api(&format!(
        r#"{{"apiVersion":"v1","kind":"Namespace",{META},"spec":{{"finalizers":["kubernetes"]}},"status":{{"phase":"Active"}}}}"#
    ));
    assert_eq!(ns.object.key().to_string(), "Namespace x", "cluster-scoped");
    let sa = api(&format!(
        r#"{{"apiVersion":"v1","kind":"ServiceAccount",{META},"secrets":[]}}"#
    ));
    assert!(matches!(sa.object, Object::ServiceAccount(_)));
}
