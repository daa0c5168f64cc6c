//! Our waypoint connected to real istiod (`tests::istiod::Istiod`) on a real API server, as istiod's waypoint of
//! namespace `shop`, and the inventory of what it NACKs: the test records, for every resource istiod sends it, whether
//! our waypoint ACKs or NACKs it and why, and fails unless that is exactly the inventory kept in
//! `docs/istiod-waypoint-nacks.md` (so the document stays true; `ISTIOD_WAYPOINT_NACKS_WRITE=1` rewrites its table,
//! keeping the "to accept it" column).
//!
//! What istiod needs to treat a client as the waypoint of a Gateway (read from istiod's source, `pilot/pkg/model`,
//! `pilot/pkg/serviceregistry/ambient`, `pilot/pkg/networking/core/waypoint.go`):
//! - the node id's type is `waypoint` (`waypoint~<ip>~<id>~<ns>.svc.cluster.local`), which our waypoint sends;
//! - `<id>` is `<pod>.<ns>`: istiod finds the Pod by that key (finding it by IP is off by default,
//!   `ENABLE_PROXY_FIND_POD_BY_IP`) and takes the proxy's labels and service targets from it. Our waypoint puts the
//!   Gateway's name there (our control plane reads the Gateway from it), so the Pod here is named after the Gateway;
//! - the Pod carries `gateway.networking.k8s.io/gateway-name` and `gateway.istio.io/managed:
//!   istio.io-mesh-controller`, and a Service selecting it (the waypoint Service istiod's deployment controller would
//!   make; there is no controller-manager, so the test makes it and its EndpointSlice) gives the proxy its
//!   `WaypointKey` (namespace, service hostname, ClusterIP);
//! - the Gateway's `status.addresses` name that Service (istiod ignores a waypoint Gateway without addresses until
//!   its deployment is ready; with no kubelet the test writes the status);
//! - over TLS (15012), the caller's token (audience `istio-ca`) must be of the metadata's `NAMESPACE` and
//!   `SERVICE_ACCOUNT`, which our waypoint sends.
//!
//! Then services labelled `istio.io/use-waypoint: waypoint`, an HTTPRoute on one of them and an AuthorizationPolicy
//! targeting the Gateway give istiod L7 config to send.
//!
//! The waypoint binary runs as a process (no HBONE listener, admin/stats/readiness on free 127.0.0.1 ports); what it
//! rejected is read from its log (one `xDS resource rejected` line per resource, with the reason) and its
//! `/config_dump` (`xds.acked`, `xds.last_nack`); what istiod sent, from istiod's `/debug/config_dump` of our
//! connection. No root needed. Needs `scripts/kube.sh build`, `scripts/istiod.sh build` and `cargo build -p waypoint`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tests::istiod::Istiod;
use tests::kube::ApiServer;
use tests::peers::{Proc, TempDir, free_port, http_get, waypoint_bin, workspace_root};

const NS: &str = "shop";
const GATEWAY: &str = "waypoint";
/// The waypoint's pod: named after the Gateway (see the module comment).
const WAYPOINT_POD: &str = "waypoint";
const WAYPOINT_IP: &str = "10.244.1.10";
const DOC: &str = "docs/istiod-waypoint-nacks.md";
const BEGIN: &str = "<!-- inventory:begin -->";
const END: &str = "<!-- inventory:end -->";

const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

/// The namespace, the waypoint (Gateway, ServiceAccount, Pod, Service) and two services that use it, with their pods.
fn manifests() -> String {
    format!(
        r#"
apiVersion: v1
kind: Namespace
metadata:
  name: {NS}
  labels:
    istio.io/dataplane-mode: ambient
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: default, namespace: {NS}}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: {GATEWAY}, namespace: {NS}}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: httpbin, namespace: {NS}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: {GATEWAY}
  namespace: {NS}
  labels:
    istio.io/waypoint-for: service
spec:
  gatewayClassName: istio-waypoint
  listeners:
  - name: mesh
    port: 15008
    protocol: HBONE
---
apiVersion: v1
kind: Service
metadata:
  name: {GATEWAY}
  namespace: {NS}
  labels:
    gateway.istio.io/managed: istio.io-mesh-controller
    gateway.networking.k8s.io/gateway-name: {GATEWAY}
spec:
  selector:
    gateway.networking.k8s.io/gateway-name: {GATEWAY}
  ports:
  - name: status-port
    port: 15021
    appProtocol: tcp
  - name: mesh
    port: 15008
    appProtocol: all
---
apiVersion: v1
kind: Pod
metadata:
  name: {WAYPOINT_POD}
  namespace: {NS}
  labels:
    gateway.networking.k8s.io/gateway-name: {GATEWAY}
    gateway.istio.io/managed: istio.io-mesh-controller
    service.istio.io/canonical-name: {GATEWAY}
    service.istio.io/canonical-revision: latest
spec:
  serviceAccountName: {GATEWAY}
  containers:
  - name: istio-proxy
    image: meshctl.dev/waypoint
---
apiVersion: v1
kind: Pod
metadata:
  name: httpbin-0
  namespace: {NS}
  labels: {{app: httpbin, version: v1}}
  annotations:
    ambient.istio.io/redirection: enabled
spec:
  serviceAccountName: httpbin
  containers:
  - name: httpbin
    image: meshctl.dev/httpbin
---
apiVersion: v1
kind: Pod
metadata:
  name: httpbin-v2-0
  namespace: {NS}
  labels: {{app: httpbin, version: v2}}
  annotations:
    ambient.istio.io/redirection: enabled
spec:
  serviceAccountName: httpbin
  containers:
  - name: httpbin
    image: meshctl.dev/httpbin
---
apiVersion: v1
kind: Service
metadata:
  name: httpbin
  namespace: {NS}
  labels:
    istio.io/use-waypoint: {GATEWAY}
spec:
  selector: {{app: httpbin}}
  ports:
  - name: http
    port: 8000
    targetPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: httpbin-v2
  namespace: {NS}
  labels:
    istio.io/use-waypoint: {GATEWAY}
spec:
  selector: {{app: httpbin, version: v2}}
  ports:
  - name: http
    port: 8000
    targetPort: 8080
"#
    )
}

/// What there is no controller-manager to make: EndpointSlices of the three Services.
fn endpoint_slices() -> String {
    let slice = |service: &str, pods: &[(&str, &str)], ports: &str| {
        let endpoints: String = pods
            .iter()
            .map(|(pod, ip)| {
                format!(
                    "\n  - addresses: [\"{ip}\"]\n    conditions: {{ready: true}}\n    targetRef: {{kind: Pod, name: {pod}, namespace: {NS}}}"
                )
            })
            .collect();
        format!(
            r#"
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {service}-manual
  namespace: {NS}
  labels:
    kubernetes.io/service-name: {service}
    endpointslice.kubernetes.io/managed-by: istiod-waypoint-test
addressType: IPv4
endpoints:{endpoints}
ports: {ports}
"#
        )
    };
    [
        slice(
            GATEWAY,
            &[(WAYPOINT_POD, WAYPOINT_IP)],
            "[{name: status-port, port: 15021, protocol: TCP}, {name: mesh, port: 15008, protocol: TCP}]",
        ),
        slice(
            "httpbin",
            &[("httpbin-0", "10.244.1.20"), ("httpbin-v2-0", "10.244.1.21")],
            "[{name: http, port: 8080, protocol: TCP}]",
        ),
        slice(
            "httpbin-v2",
            &[("httpbin-v2-0", "10.244.1.21")],
            "[{name: http, port: 8080, protocol: TCP}]",
        ),
    ]
    .join("---")
}

/// L7 config for the waypoint: a GAMMA HTTPRoute on `httpbin` (path match to v2, header change, timeout, a weighted
/// split) and an AuthorizationPolicy on the Gateway.
fn l7_config() -> String {
    format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: httpbin
  namespace: {NS}
spec:
  parentRefs:
  - group: ""
    kind: Service
    name: httpbin
    port: 8000
  rules:
  - matches:
    - path: {{type: PathPrefix, value: /v2}}
    backendRefs:
    - name: httpbin-v2
      port: 8000
  - filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        add:
        - name: x-routed-by
          value: waypoint
    timeouts:
      request: 5s
    backendRefs:
    - name: httpbin
      port: 8000
      weight: 90
    - name: httpbin-v2
      port: 8000
      weight: 10
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: httpbin-get-only
  namespace: {NS}
spec:
  targetRefs:
  - group: gateway.networking.k8s.io
    kind: Gateway
    name: {GATEWAY}
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/{NS}/sa/sleep"]
    to:
    - operation:
        methods: ["GET"]
"#
    )
}

/// Our waypoint as a process, as istiod's waypoint of `shop/waypoint`.
struct Waypoint {
    proc: Proc,
    admin_port: u16,
}

impl Waypoint {
    fn start(istiod: &Istiod, dir: &TempDir, token_file: &Path) -> Waypoint {
        let admin_port = free_port();
        let root = istiod.root_cert_file();
        let mut cmd = Command::new(waypoint_bin());
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info,xds=debug")
            .env(
                "XDS_ADDRESS",
                format!("https://{}", istiod.xds_tls_address()),
            )
            .env("XDS_ROOT_CA", root)
            .env("ALT_XDS_HOSTNAME", "istiod.istio-system.svc")
            .env("CA_ROOT_CA", root)
            .env("ALT_CA_HOSTNAME", "istiod.istio-system.svc")
            .env("AUTH_TOKEN", token_file)
            .env("POD_NAMESPACE", NS)
            .env("POD_NAME", WAYPOINT_POD)
            .env("GATEWAY_NAME", GATEWAY)
            .env("SERVICE_ACCOUNT", GATEWAY)
            .env("INSTANCE_IP", WAYPOINT_IP)
            .env("CLUSTER_ID", "Kubernetes")
            .env("HBONE_ADDR", "off")
            .env("ADMIN_ADDR", format!("127.0.0.1:{admin_port}"))
            .env("STATS_ADDR", format!("127.0.0.1:{}", free_port()))
            .env("READINESS_ADDR", format!("127.0.0.1:{}", free_port()));
        Waypoint {
            proc: Proc::spawn("waypoint", cmd, dir.path()),
            admin_port,
        }
    }

    fn dump(&self) -> Option<Value> {
        let (code, body) =
            http_get(self.admin_port, "/config_dump", Duration::from_secs(5)).ok()?;
        (code == 200).then(|| serde_json::from_str(&body).ok())?
    }
}

/// istiod's `/debug/<path>` as JSON.
fn istiod_debug(istiod: &Istiod, path: &str) -> Option<Value> {
    let (code, body) = http_get(istiod.http_port(), path, Duration::from_secs(10)).ok()?;
    (code == 200).then(|| serde_json::from_str(&body).ok())?
}

/// The short name of a type URL, as the document's table spells it.
fn short(type_url: &str) -> &'static str {
    match type_url {
        LISTENER => "LDS",
        ROUTE => "RDS",
        CLUSTER => "CDS",
        ENDPOINT => "EDS",
        _ => "other",
    }
}

/// The resources istiod holds for our connection, by the table's xDS name: resource name → what it is (a short
/// description of the parts that matter to our waypoint), from istiod's config dump (protojson, camelCase).
fn istiod_sent(dump: &Value) -> BTreeMap<&'static str, BTreeMap<String, String>> {
    let mut out: BTreeMap<&'static str, BTreeMap<String, String>> = BTreeMap::new();
    for config in dump["configs"].as_array().into_iter().flatten() {
        let kind = config["@type"].as_str().unwrap_or_default();
        let (type_url, list, inner): (&str, &str, &str) = match kind {
            k if k.ends_with("ListenersConfigDump") => (LISTENER, "dynamicListeners", "listener"),
            k if k.ends_with("ClustersConfigDump") => (CLUSTER, "dynamicActiveClusters", "cluster"),
            k if k.ends_with("RoutesConfigDump") => (ROUTE, "dynamicRouteConfigs", "routeConfig"),
            k if k.ends_with("EndpointsConfigDump") => {
                (ENDPOINT, "dynamicEndpointConfigs", "endpointConfig")
            }
            _ => continue,
        };
        let set = out.entry(short(type_url)).or_default();
        for item in config[list].as_array().into_iter().flatten() {
            let body = if item[inner].is_object() {
                &item[inner]
            } else {
                &item["activeState"][inner]
            };
            let name = body["name"]
                .as_str()
                .or_else(|| body["clusterName"].as_str());
            if let Some(name) = name {
                set.insert(name.to_string(), describe(type_url, body));
            }
        }
    }
    out
}

/// What a resource of istiod's is, in a few words: a listener's address and network filters, a cluster's discovery
/// type and transport socket, a load assignment's endpoint address kind.
fn describe(type_url: &str, r: &Value) -> String {
    let strip = |s: &str| {
        s.trim_start_matches("envoy.filters.network.")
            .trim_start_matches("envoy.transport_sockets.")
            .to_string()
    };
    match type_url {
        LISTENER => {
            let addr = if r["internalListener"].is_object() {
                "internal listener".to_string()
            } else {
                let a = &r["address"]["socketAddress"];
                format!(
                    "{}:{}",
                    a["address"].as_str().unwrap_or("?"),
                    a["portValue"]
                )
            };
            let mut filters: Vec<String> = Vec::new();
            let mut http_filters: Vec<String> = Vec::new();
            let chains = r["filterChains"].as_array().cloned().unwrap_or_default();
            for chain in &chains {
                for f in chain["filters"].as_array().into_iter().flatten() {
                    let name = strip(f["name"].as_str().unwrap_or("?"));
                    if !filters.contains(&name) {
                        filters.push(name);
                    }
                    for h in f["typedConfig"]["httpFilters"]
                        .as_array()
                        .into_iter()
                        .flatten()
                    {
                        let name = h["name"]
                            .as_str()
                            .unwrap_or("?")
                            .trim_start_matches("envoy.filters.http.")
                            .to_string();
                        if !http_filters.contains(&name) {
                            http_filters.push(name);
                        }
                    }
                }
            }
            let http = if http_filters.is_empty() {
                String::new()
            } else {
                format!(" (HTTP filters: {})", http_filters.join(", "))
            };
            let tls = if chains.iter().any(|c| c["transportSocket"].is_object()) {
                ", TLS"
            } else {
                ""
            };
            let matcher = if r["filterChainMatcher"].is_object() {
                ", filter_chain_matcher"
            } else {
                ""
            };
            format!(
                "{addr}, {} chain(s){tls}{matcher}: {}{http}",
                chains.len(),
                filters.join(", ")
            )
        }
        CLUSTER => {
            let ty = r["type"].as_str().unwrap_or("EDS");
            let ts = r["transportSocket"]["name"].as_str().unwrap_or("plain");
            let target = r["loadAssignment"]["endpoints"][0]["lbEndpoints"][0]["endpoint"]["address"]
                ["envoyInternalAddress"]["serverListenerName"]
                .as_str()
                .map(|l| format!(" → internal listener {l}"))
                .unwrap_or_default();
            format!("{ty}, transport socket {ts}{target}")
        }
        ENDPOINT => {
            let eps: Vec<&Value> = r["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|l| l["lbEndpoints"].as_array().into_iter().flatten())
                .collect();
            let kinds: BTreeSet<String> = eps
                .iter()
                .map(|e| {
                    let a = &e["endpoint"]["address"];
                    if let Some(l) = a["envoyInternalAddress"]["serverListenerName"].as_str() {
                        format!("envoy_internal_address → {l}")
                    } else {
                        "socket address".to_string()
                    }
                })
                .collect();
            format!(
                "{} endpoint(s): {}",
                eps.len(),
                kinds.into_iter().collect::<Vec<_>>().join(", ")
            )
        }
        _ => {
            let n = r["virtualHosts"].as_array().map_or(0, Vec::len);
            format!("{n} virtual host(s)")
        }
    }
}

/// `(kind, name) → reason` of every `xDS resource rejected` line of the waypoint's log.
fn rejections(log: &str) -> BTreeMap<(String, String), String> {
    let mut out = BTreeMap::new();
    for line in log.lines() {
        let Some((_, rest)) = line.split_once("xDS resource rejected kind=") else {
            continue;
        };
        let Some((kind, rest)) = rest.split_once(" name=") else {
            continue;
        };
        let Some((name, reason)) = rest.split_once(" reason=") else {
            continue;
        };
        let short = match kind {
            "Listener" => "LDS",
            "Route" => "RDS",
            "Cluster" => "CDS",
            "Endpoint" => "EDS",
            other => other,
        };
        out.insert(
            (short.to_string(), name.to_string()),
            reason.trim().to_string(),
        );
    }
    out
}

/// One row of the inventory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Row {
    /// `LDS`, `RDS`, `CDS`, `EDS`.
    xds: String,
    name: String,
    /// What istiod sends ([`describe`]).
    sent: String,
    /// `ACK` or `NACK`.
    verdict: String,
    /// The NACK's reason for this resource, empty when accepted.
    reason: String,
}

/// Escapes a table cell's pipes.
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// Splits a table row on its unescaped pipes, unescaping the cells and dropping code backticks.
fn split_row(line: &str) -> Vec<String> {
    let mut cells = Vec::new();
    let mut cur = String::new();
    let mut chars = line.trim().trim_start_matches('|').chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cur.push('|');
                chars.next();
            }
            '|' => {
                cells.push(cur.trim().trim_matches('`').to_string());
                cur.clear();
            }
            _ => cur.push(c),
        }
    }
    cells
}

/// The rows of the document's machine-readable table (between [`BEGIN`] and [`END`]), each with its "to accept it"
/// text, and the text before and after the table.
fn doc_rows(doc: &str) -> (Vec<(Row, String)>, String, String) {
    let (head, rest) = doc
        .split_once(BEGIN)
        .unwrap_or_else(|| panic!("{DOC} has no {BEGIN}"));
    let (table, tail) = rest
        .split_once(END)
        .unwrap_or_else(|| panic!("{DOC} has no {END}"));
    let rows = table
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let c = split_row(l);
            assert!(c.len() >= 6, "{DOC}: bad row {l:?}");
            let row = Row {
                xds: c[0].clone(),
                name: c[1].clone(),
                sent: c[2].clone(),
                verdict: c[3].clone(),
                reason: c[4].clone(),
            };
            (row, c[5].clone())
        })
        .collect();
    (rows, head.to_string(), tail.to_string())
}

/// The table, with the "to accept it" texts of `accept` (by xDS and name; `TODO` for a new NACK).
fn render(rows: &[Row], accept: &BTreeMap<(String, String), String>) -> String {
    let mut s = String::from(
        "| xDS | resource | what istiod sends | our waypoint | reason (its NACK's `error_detail`) | to accept it |\n\
         |---|---|---|---|---|---|\n",
    );
    for r in rows {
        let todo = match accept.get(&(r.xds.clone(), r.name.clone())) {
            Some(t) if !(r.verdict == "NACK" && t == "—") => t.clone(),
            _ if r.verdict == "ACK" => "—".into(),
            _ => "TODO".into(),
        };
        let reason = if r.reason.is_empty() {
            String::new()
        } else {
            format!("`{}`", cell(&r.reason))
        };
        s.push_str(&format!(
            "| `{}` | `{}` | {} | {} | {} | {} |\n",
            r.xds,
            cell(&r.name),
            cell(&r.sent),
            r.verdict,
            reason,
            cell(&todo)
        ));
    }
    s
}

/// Replaces what differs between runs (ClusterIPs the API server allocates) in a reason.
fn normalize(reason: &str, cluster_ips: &BTreeMap<String, String>) -> String {
    let mut r = reason.to_string();
    for (ip, service) in cluster_ips {
        r = r.replace(ip, &format!("<{service} ClusterIP>"));
    }
    r
}

#[test]
fn istiod_waypoint_nack_inventory() {
    let started = Instant::now();
    let api = ApiServer::start("istiod_waypoint").unwrap();
    let istiod = Istiod::start(&api).unwrap_or_else(|e| panic!("{e:#}\n{}", api.log_tails()));
    let dir = TempDir::new("istiod-waypoint");

    api.apply(&manifests())
        .unwrap_or_else(|e| panic!("{e:#}\n{}", istiod.log_tail(40)));
    api.apply(&endpoint_slices()).unwrap();
    for (pod, ip) in [
        (WAYPOINT_POD, WAYPOINT_IP),
        ("httpbin-0", "10.244.1.20"),
        ("httpbin-v2-0", "10.244.1.21"),
    ] {
        api.set_pod_status(NS, pod, ip, true).unwrap();
    }
    // The address istiod's gateway controller would write once the waypoint's deployment is ready.
    let patch = serde_json::json!({"status": {"addresses": [
        {"type": "Hostname", "value": format!("{GATEWAY}.{NS}.svc.cluster.local")}
    ]}});
    api.kubectl(&[
        "patch",
        "gateway",
        GATEWAY,
        "-n",
        NS,
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch.to_string(),
    ])
    .unwrap();
    api.apply(&l7_config()).unwrap();
    let cluster_ips: BTreeMap<String, String> = ["waypoint", "httpbin", "httpbin-v2"]
        .iter()
        .map(|s| {
            let svc = api.get_json(&["service", s, "-n", NS]).unwrap();
            (
                svc["spec"]["clusterIP"].as_str().unwrap().to_string(),
                s.to_string(),
            )
        })
        .collect();

    let token = api
        .create_token(NS, GATEWAY, "istio-ca", Some(WAYPOINT_POD))
        .unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, token).unwrap();
    // Let istiod see the objects before the waypoint connects (it pushes again on changes anyway).
    std::thread::sleep(Duration::from_secs(2));
    let mut waypoint = Waypoint::start(&istiod, &dir, &token_file);

    // Wait until our waypoint answered listeners and clusters (and the endpoints they name), nothing changed for
    // 3 s, and istiod's config for it has the clusters of the two services that use the waypoint (so it took the
    // Gateway, its Service and pod, and the services' labels into account).
    let sent_now = || {
        istiod_debug(
            &istiod,
            &format!("/debug/config_dump?proxyID={WAYPOINT_POD}.{NS}&include_eds=true"),
        )
        .map(|d| istiod_sent(&d))
        .unwrap_or_default()
    };
    let complete = |sent: &BTreeMap<&'static str, BTreeMap<String, String>>| {
        sent.get("CDS").is_some_and(|c| {
            c.contains_key("inbound-vip|8000|http|httpbin.shop.svc.cluster.local")
                && c.contains_key("inbound-vip|8000|http|httpbin-v2.shop.svc.cluster.local")
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last: Option<(Value, Instant)> = None;
    let (dump, sent) = loop {
        assert!(
            waypoint.proc.is_running(),
            "the waypoint exited:\n{}",
            waypoint.proc.stderr()
        );
        if let Some(d) = waypoint.dump() {
            let xds = d["xds"].clone();
            let answered = |t: &str| {
                xds["acked"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|v| v == t))
                    || xds["last_nack"].get(t).is_some()
            };
            let key = serde_json::json!([xds["acked"], xds["last_nack"], xds["held"]]);
            if answered(LISTENER) && answered(CLUSTER) {
                match &last {
                    Some((k, since)) if *k == key => {
                        if since.elapsed() > Duration::from_secs(3) {
                            let sent = sent_now();
                            if complete(&sent) {
                                break (d, sent);
                            }
                            last = None;
                        }
                    }
                    _ => last = Some((key, Instant::now())),
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "istiod did not configure the waypoint within 60 s; our dump: {:#}\nistiod's: {:#?}\n\
             ---- waypoint ----\n{}\n{}",
            waypoint.dump().unwrap_or_default(),
            sent_now(),
            waypoint.proc.stderr(),
            istiod.log_tail(60)
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let log = waypoint.proc.stderr();
    eprintln!("---- our waypoint's config dump ----\n{dump:#}");
    eprintln!("---- our waypoint's log ----\n{log}");
    eprintln!("---- what istiod holds for our waypoint ----");
    for (xds, names) in &sent {
        for (name, what) in names {
            eprintln!("{xds} {name}: {what}");
        }
    }

    // istiod took us for the waypoint of shop/waypoint, and received our NACKs with the error_detail we sent: its
    // /debug/syncz has, per type, the last NACK's message, which is our config dump's `last_nack`.
    let syncz = istiod_debug(&istiod, "/debug/syncz").unwrap_or_default();
    let ours = syncz
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["proxy"] == format!("{WAYPOINT_POD}.{NS}").as_str())
        .unwrap_or_else(|| panic!("istiod's /debug/syncz has no {WAYPOINT_POD}.{NS}: {syncz:#}"));
    assert_eq!(ours["proxy_type"], "waypoint", "{ours:#}");
    for t in [LISTENER, ROUTE, CLUSTER, ENDPOINT] {
        assert_eq!(
            ours["resources"][t]["lastError"].as_str(),
            dump["xds"]["last_nack"][t].as_str(),
            "istiod's last NACK of {t} for our waypoint is not the one our waypoint reports: {ours:#}"
        );
    }

    let rejected = rejections(&log);
    let mut rows: Vec<Row> = Vec::new();
    for (xds, names) in &sent {
        for (name, what) in names {
            let reason = rejected.get(&(xds.to_string(), name.clone()));
            rows.push(Row {
                xds: xds.to_string(),
                name: name.clone(),
                sent: what.clone(),
                verdict: if reason.is_some() { "NACK" } else { "ACK" }.into(),
                reason: reason
                    .map(|r| normalize(r, &cluster_ips))
                    .unwrap_or_default(),
            });
        }
    }
    // A rejection of something istiod's dump does not list still counts.
    for ((xds, name), reason) in &rejected {
        if !sent.get(xds.as_str()).is_some_and(|s| s.contains_key(name)) {
            rows.push(Row {
                xds: xds.clone(),
                name: name.clone(),
                sent: "(not in istiod's dump)".into(),
                verdict: "NACK".into(),
                reason: normalize(reason, &cluster_ips),
            });
        }
    }
    rows.sort();
    rows.dedup();

    let doc_path: PathBuf = workspace_root().join(DOC);
    let doc = std::fs::read_to_string(&doc_path).unwrap_or_default();
    let (documented, head, tail) = if doc.contains(BEGIN) {
        doc_rows(&doc)
    } else {
        (Vec::new(), String::new(), String::new())
    };
    let accept: BTreeMap<(String, String), String> = documented
        .iter()
        .map(|(r, a)| ((r.xds.clone(), r.name.clone()), a.clone()))
        .collect();
    let table = render(&rows, &accept);
    let documented: Vec<Row> = documented.into_iter().map(|(r, _)| r).collect();
    if std::env::var_os("ISTIOD_WAYPOINT_NACKS_WRITE").is_some() {
        if let Some(parent) = doc_path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&doc_path, format!("{head}{BEGIN}\n{table}{END}{tail}")).unwrap();
        eprintln!("wrote {}", doc_path.display());
    } else {
        let only_doc: Vec<&Row> = documented.iter().filter(|r| !rows.contains(r)).collect();
        let only_seen: Vec<&Row> = rows.iter().filter(|r| !documented.contains(r)).collect();
        assert!(
            only_doc.is_empty() && only_seen.is_empty() && documented.len() == rows.len(),
            "what our waypoint ACKs and NACKs of istiod's config differs from {DOC}\n\
             documented, not observed: {only_doc:#?}\nobserved, not documented: {only_seen:#?}\n\
             the observed table (ISTIOD_WAYPOINT_NACKS_WRITE=1 rewrites it):\n{table}"
        );
    }
    eprintln!("inventory checked in {:.1?}", started.elapsed());
}
