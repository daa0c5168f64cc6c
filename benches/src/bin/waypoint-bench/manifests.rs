//! The bench's mesh as manifests for `control-plane serve`: namespace `bench` (not ambient, so
//! the endpoints are plain TCP), one backend pod on 127.0.0.1, and per proxy under test a
//! waypoint Gateway with its own loopback address, a Service using it (both Services select the
//! same pod) and an identical HTTPRoute: one rule, `PathPrefix /`, a `RequestHeaderModifier`
//! adding `x-bench-route: 1`, back to the Service. The control plane translates both the same
//! way: a listener on `<gateway address>:<service port>`, RDS `"<port>"`, and cluster
//! `outbound|<port>||<service host>` over EDS.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use crate::backend::ROUTE_HEADER;

pub(crate) const NAMESPACE: &str = "bench";

/// One proxy's waypoint Gateway and the Service routed through it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Waypoint {
    pub(crate) gateway: &'static str,
    pub(crate) address: Ipv4Addr,
    pub(crate) service: &'static str,
    pub(crate) cluster_ip: Ipv4Addr,
}

impl Waypoint {
    /// The Host that selects the Service's virtual host.
    pub(crate) fn host(&self) -> String {
        format!("{}.{NAMESPACE}.svc.cluster.local", self.service)
    }

    /// istiod's node id for a pod of the Gateway at its address.
    pub(crate) fn node_id(&self) -> String {
        format!(
            "waypoint~{}~{}.{NAMESPACE}~{NAMESPACE}.svc.cluster.local",
            self.address, self.gateway
        )
    }
}

pub(crate) const ENVOY: Waypoint = Waypoint {
    gateway: "envoy-wp",
    address: Ipv4Addr::new(127, 0, 0, 2),
    service: "backend-envoy",
    cluster_ip: Ipv4Addr::new(10, 96, 0, 50),
};

pub(crate) const OURS: Waypoint = Waypoint {
    gateway: "our-wp",
    address: Ipv4Addr::new(127, 0, 0, 3),
    service: "backend-ours",
    cluster_ip: Ipv4Addr::new(10, 96, 0, 51),
};

/// The whole manifest file: the backend listens on 127.0.0.1:`backend_port`, the Services
/// (and so the waypoint listeners) use `service_port`.
pub(crate) fn mesh(backend_port: u16, service_port: u16) -> String {
    let mut s = format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: {NAMESPACE}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: backend-0, namespace: {NAMESPACE}, labels: {{app: backend}}}}
spec:
  nodeName: node-0
  containers: [{{name: app, command: ["waypoint-bench", "backend"], ports: [{{name: http, containerPort: {backend_port}}}]}}]
status:
  podIP: 127.0.0.1
  conditions: [{{type: Ready, status: "True"}}]
"#
    );
    for wp in [ENVOY, OURS] {
        let _ = write!(
            s,
            r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: {gw}, namespace: {NAMESPACE}}}
spec:
  gatewayClassName: istio-waypoint
  addresses: [{{type: IPAddress, value: {addr}}}]
  listeners: [{{name: mesh, port: 15008, protocol: HBONE}}]
---
apiVersion: v1
kind: Service
metadata: {{name: {svc}, namespace: {NAMESPACE}, labels: {{istio.io/use-waypoint: {gw}}}}}
spec:
  clusterIP: {vip}
  selector: {{app: backend}}
  ports: [{{name: http, port: {service_port}, targetPort: http, appProtocol: http}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {svc}, namespace: {NAMESPACE}}}
spec:
  parentRefs: [{{group: "", kind: Service, name: {svc}, port: {service_port}}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /}}}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        add: [{{name: {ROUTE_HEADER}, value: "1"}}]
    backendRefs: [{{name: {svc}, port: {service_port}}}]
"#,
            gw = wp.gateway,
            addr = wp.address,
            svc = wp.service,
            vip = wp.cluster_ip,
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::unwrap_used)]
    fn translates_to_one_listener_route_cluster_per_waypoint() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bench.yaml"), mesh(40001, 18080)).unwrap();
        let files = control_plane::manifest::read_path(dir.path()).unwrap();
        let objects = control_plane::manifest::parse_files(&files).unwrap();
        let t = control_plane::translate::translate(&objects, &Default::default()).unwrap();
        assert_eq!(t.summary.workloads, 1);
        assert_eq!(t.summary.waypoints, 2, "{}", t.summary);
        // Per waypoint: a listener, a route configuration, a cluster and its endpoints.
        assert_eq!(t.summary.waypoint_resources, 8, "{}", t.summary);
    }

    #[test]
    fn node_ids_name_the_gateways() {
        assert_eq!(
            OURS.node_id(),
            "waypoint~127.0.0.3~our-wp.bench~bench.svc.cluster.local"
        );
        assert_eq!(ENVOY.host(), "backend-envoy.bench.svc.cluster.local");
    }
}
