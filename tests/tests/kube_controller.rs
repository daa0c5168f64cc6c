//! The control plane's writers on a real API server: the waypoint controller (ServiceAccount, Deployment and
//! Service of an `istio-waypoint` Gateway, owned by it), Gateway and HTTPRoute status, and leader election
//! between two replicas (only the leader writes; killing it hands leadership over within the Lease's
//! duration). A real Envoy and our waypoint, both connected as that Gateway's waypoint, receive the
//! HTTPRoute's route over xDS. Loopback only; every wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../xds/tests/envoy/http.rs"]
#[allow(dead_code)]
mod http;
#[path = "../../xds/tests/envoy/process.rs"]
#[allow(dead_code)]
mod process;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tests::kube::ApiServer;
use tests::peers::{ControlPlaneProc, Proc, TempDir, free_port, http_get};

const LEASE: Duration = Duration::from_secs(4);

const CLUSTER: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: istio-system}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: reviews, namespace: shop}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: shop}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop, labels: {istio.io/use-waypoint: waypoint}}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Pod
metadata: {name: reviews-1, namespace: shop, labels: {app: reviews}}
spec:
  nodeName: node-a
  serviceAccountName: reviews
  containers: [{name: reviews, image: reviews:1, ports: [{containerPort: 9080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 9080}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /api}}]
    backendRefs: [{name: reviews, port: 9080}]
"#;

fn within<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> (T, Duration) {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return (v, start.elapsed());
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn holder(api: &ApiServer) -> Option<String> {
    let lease = api
        .get_json(&["lease", "control-plane-leader", "-n", "istio-system"])
        .ok()?;
    lease["spec"]["holderIdentity"].as_str().map(str::to_owned)
}

fn condition<'v>(conditions: &'v Value, kind: &str) -> Option<&'v Value> {
    conditions.as_array()?.iter().find(|c| c["type"] == kind)
}

fn route_accepted(api: &ApiServer, name: &str) -> Option<()> {
    let route = api.get_json(&["httproute", name, "-n", "shop"]).ok()?;
    let parent = &route["status"]["parents"][0];
    (parent["controllerName"] == "istio.io/mesh-controller"
        && condition(&parent["conditions"], "Accepted")?["status"] == "True"
        && condition(&parent["conditions"], "ResolvedRefs")?["status"] == "True")
        .then_some(())
}

#[test]
fn the_leader_makes_waypoints_writes_status_and_hands_over() {
    let api = ApiServer::start("kube_controller").unwrap();
    api.apply(CLUSTER).unwrap();
    api.set_pod_status("shop", "reviews-1", "10.244.0.9", true)
        .unwrap();
    let work = TempDir::new("kube_controller");
    let kubeconfig = api.kubeconfig();
    let lease = format!("{}s", LEASE.as_secs());
    let flags = ["--lease-duration", lease.as_str()];
    let (dir_a, dir_b) = (work.path().join("a"), work.path().join("b"));
    std::fs::create_dir_all(&dir_a).unwrap();
    std::fs::create_dir_all(&dir_b).unwrap();
    let mut a = ControlPlaneProc::start_kube(kubeconfig, &dir_a, &flags, &[("POD_NAME", "cp-a")]);
    let mut b = ControlPlaneProc::start_kube(kubeconfig, &dir_b, &flags, &[("POD_NAME", "cp-b")]);

    // One of them leads.
    let (leader, _) = within("a leader", Duration::from_secs(10), || holder(&api));
    assert!(leader == "cp-a" || leader == "cp-b", "{leader}");

    // The waypoint's ServiceAccount, Deployment and Service, owned by the Gateway.
    let gw_uid = api
        .get_json(&["gateway", "waypoint", "-n", "shop"])
        .unwrap()["metadata"]["uid"]
        .clone();
    for kind in ["serviceaccount", "deployment", "service"] {
        let (obj, _) = within(&format!("waypoint {kind}"), Duration::from_secs(10), || {
            api.get_json(&[kind, "waypoint", "-n", "shop"]).ok()
        });
        let owner = &obj["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "Gateway", "{kind}: {obj}");
        assert_eq!(owner["uid"], gw_uid, "{kind}");
    }
    let svc_ip = api
        .get_json(&["service", "waypoint", "-n", "shop"])
        .unwrap()["spec"]["clusterIP"]
        .clone();
    let deployment = api
        .get_json(&["deployment", "waypoint", "-n", "shop"])
        .unwrap();
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["labels"]["gateway.networking.k8s.io/gateway-name"],
        "waypoint"
    );

    // The Gateway is Programmed with the Service's address; the HTTPRoute is Accepted.
    within("Gateway programmed", Duration::from_secs(10), || {
        let gw = api.get_json(&["gateway", "waypoint", "-n", "shop"]).ok()?;
        let programmed = condition(&gw["status"]["conditions"], "Programmed")?;
        (programmed["status"] == "True" && gw["status"]["addresses"][0]["value"] == svc_ip)
            .then_some(())
    });
    within("HTTPRoute accepted", Duration::from_secs(10), || {
        route_accepted(&api, "reviews")
    });

    // Only the leader wrote.
    let (leading, following) = if leader == "cp-a" {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    let follower_log = following.proc.stderr();
    assert!(
        !follower_log.contains("controller: applied")
            && leading.proc.stderr().contains("controller: applied"),
        "only the leader applies objects; follower log:\n{follower_log}"
    );

    // A real Envoy and our waypoint, as the Gateway's waypoint, both get the HTTPRoute's route.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let grpc = std::net::SocketAddr::from(([127, 0, 0, 1], following.grpc_port));
    let envoy = rt.block_on(process::Envoy::start(
        "DELTA_GRPC",
        "waypoint~127.0.0.1~waypoint.shop~shop.svc.cluster.local",
        grpc,
    ));
    within("Envoy holds the route", Duration::from_secs(15), || {
        let out = Command::new("curl")
            .args([
                "-s",
                "-m",
                "3",
                &format!("http://{}/config_dump", envoy.admin),
            ])
            .output()
            .ok()?;
        let dump = String::from_utf8_lossy(&out.stdout);
        (dump.contains("reviews.shop.svc.cluster.local") && dump.contains("/api")).then_some(())
    });
    let token = api
        .create_token("shop", "waypoint", "istio-ca", None)
        .unwrap();
    std::fs::write(work.path().join("waypoint-token"), token).unwrap();
    let admin = free_port();
    let mut cmd = Command::new(tests::peers::waypoint_bin());
    cmd.envs([
        (
            "XDS_ADDRESS",
            format!("http://127.0.0.1:{}", following.grpc_port),
        ),
        ("GATEWAY_NAME", "waypoint".into()),
        ("POD_NAMESPACE", "shop".into()),
        ("INSTANCE_IP", "127.0.0.1".into()),
        (
            "AUTH_TOKEN",
            work.path().join("waypoint-token").display().to_string(),
        ),
        ("HBONE_ADDR", format!("127.0.0.1:{}", free_port())),
        ("ADMIN_ADDR", format!("127.0.0.1:{admin}")),
        ("STATS_ADDR", format!("127.0.0.1:{}", free_port())),
        ("READINESS_ADDR", format!("127.0.0.1:{}", free_port())),
    ]);
    let mut waypoint = Proc::spawn("waypoint", cmd, work.path());
    within(
        "our waypoint holds the route",
        Duration::from_secs(15),
        || {
            assert!(
                waypoint.is_running(),
                "the waypoint exited:\n{}",
                waypoint.stderr()
            );
            let (code, dump) = http_get(admin, "/config_dump", Duration::from_secs(3)).ok()?;
            (code == 200
                && dump.contains("reviews.shop.svc.cluster.local")
                && dump.contains("/api"))
            .then_some(())
        },
    );
    drop(envoy);

    // Kill the leader without letting it release the Lease: the other takes over once it expires.
    let killed = Instant::now();
    leading.proc.kill();
    let survivor = if leader == "cp-a" { "cp-b" } else { "cp-a" };
    let (_, took) = within("the other replica leads", LEASE * 3, || {
        (holder(&api).as_deref() == Some(survivor)).then_some(())
    });
    eprintln!(
        "leadership moved {:?} after the kill (lease {LEASE:?})",
        killed.elapsed().max(took)
    );
    assert!(
        killed.elapsed() <= LEASE + LEASE / 3 + Duration::from_secs(2),
        "leadership moved within the lease duration and one renew period: {:?}",
        killed.elapsed()
    );
    // The new leader writes: a new route gets its status.
    api.apply(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: reviews-v2, namespace: shop}\nspec:\n  parentRefs: [{group: \"\", kind: Service, name: reviews, port: 9080}]\n  rules: [{backendRefs: [{name: reviews, port: 9080}]}]\n",
    )
    .unwrap();
    within(
        "the new leader writes route status",
        Duration::from_secs(10),
        || route_accepted(&api, "reviews-v2"),
    );
}
