//! Table tests of the outbound decision. One fixed mesh ([`world`]): one Service per rule,
//! the client `client-1` in namespace `app` (region r1, zone z1, node node-a). Every table case
//! runs with 20 seeds and must give the same answer each time; the load-balancing spread is
//! tested separately.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;
use crate::model::{
    HealthStatus, LoadBalancer, LoadBalancerHealthPolicy, LoadBalancerMode, LoadBalancerScope,
    Locality, NamespacedHostname,
};

// ----- fixtures -----

/// `"ns/name"` → the Service key `ns/name.ns.svc.cluster.local`.
fn key(short: &str) -> NamespacedHostname {
    let (ns, name) = short.split_once('/').unwrap();
    NamespacedHostname::new(ns, format!("{name}.{ns}.svc.cluster.local"))
}

/// An HBONE pod on the default network with capacity 1.
fn pod(uid: &str, ns: &str, sa: &str, ips: &[&str]) -> Workload {
    Workload {
        uid: uid.into(),
        name: uid.into(),
        namespace: ns.into(),
        workload_ips: ips.iter().map(|ip| ip.parse().unwrap()).collect(),
        protocol: Protocol::Hbone,
        trust_domain: "cluster.local".into(),
        service_account: sa.into(),
        cluster_id: "Kubernetes".into(),
        capacity: 1,
        ..Workload::default()
    }
}

/// `w` as an endpoint of `svc` with its own port map.
fn serves(mut w: Workload, svc: &str, ports: &[(u16, u16)]) -> Workload {
    w.services.insert(key(svc), ports.iter().copied().collect());
    w
}

fn at(mut w: Workload, region: &str, zone: &str, node: &str) -> Workload {
    w.locality = Locality {
        region: region.into(),
        zone: zone.into(),
        subzone: String::new(),
    };
    w.node = node.into();
    w
}

fn with_capacity(mut w: Workload, capacity: u32) -> Workload {
    w.capacity = capacity;
    w
}

fn unhealthy(mut w: Workload) -> Workload {
    w.status = HealthStatus::Unhealthy;
    w
}

fn service(short: &str, vips: &[&str], ports: &[(u16, u16)]) -> Service {
    let k = key(short);
    Service {
        name: short.split_once('/').unwrap().1.into(),
        namespace: k.namespace,
        hostname: k.hostname,
        vips: vips
            .iter()
            .map(|v| format!("/{v}").parse().unwrap())
            .collect(),
        ports: ports.iter().copied().collect::<BTreeMap<_, _>>(),
        ..Service::default()
    }
}

fn lb(mut s: Service, mode: LoadBalancerMode, prefs: &[LoadBalancerScope]) -> Service {
    let health_policy = s
        .load_balancer
        .as_ref()
        .map(|l| l.health_policy)
        .unwrap_or_default();
    s.load_balancer = Some(LoadBalancer {
        routing_preferences: prefs.to_vec(),
        mode,
        health_policy,
    });
    s
}

/// A waypoint written as in local config: `"ns/hostname"` or `"network/ip"`.
fn waypoint(dest: &str) -> Option<GatewayAddress> {
    Some(GatewayAddress {
        destination: dest.parse().unwrap(),
        hbone_mtls_port: 15008,
    })
}

fn tweak<T>(mut x: T, set: impl FnOnce(&mut T)) -> T {
    set(&mut x);
    x
}

const BAD_SA: &str = "Bad SA!";

fn world() -> Snapshot {
    use LoadBalancerMode::{Failover, Passthrough, Strict};
    use LoadBalancerScope::{Node, Region, Zone};
    let p80 = &[(80, 8080)][..];
    let client = at(
        pod("client-1", "app", "client", &["10.0.0.1"]),
        "r1",
        "z1",
        "node-a",
    );
    let wp1 = serves(
        pod("wp-1", "app", "waypoint", &["10.0.50.1"]),
        "app/waypoint",
        &[(15008, 15008)],
    );
    let mut wp2 = pod("wp-2", "app", "waypoint2", &["10.0.51.1"]);
    wp2.hostname = "wp2.app.pod".into();
    let mut legacy = serves(
        pod("legacy-1", "app", "legacy", &["10.0.13.1"]),
        "app/legacy",
        &[],
    );
    legacy.protocol = Protocol::Tcp;
    let mut remote = serves(
        pod("remote-1", "app", "remote", &["10.0.14.1"]),
        "app/remote",
        &[],
    );
    remote.network = "net2".into();
    let mut dns = serves(pod("dns-1", "app", "dns", &[]), "app/dns", &[]);
    dns.hostname = "vm.example".into();
    let workloads = vec![
        client,
        pod("stranger-1", "other", "default", &["10.0.0.2"]),
        serves(pod("one-1", "app", "one", &["10.0.1.1"]), "app/one", p80),
        serves(
            pod("shared-aaa", "aaa", "shared", &["10.0.9.1"]),
            "aaa/shared",
            &[],
        ),
        serves(
            pod("shared-app", "app", "shared", &["10.0.9.2"]),
            "app/shared",
            &[],
        ),
        serves(
            pod("mapped-1", "app", "mapped", &["10.0.2.1"]),
            "app/mapped",
            &[(80, 9090)],
        ),
        serves(
            pod("unmapped-1", "app", "unmapped", &["10.0.3.1"]),
            "app/unmapped",
            &[],
        ),
        serves(pod("skip-a", "app", "skip", &["10.0.4.1"]), "app/skip", p80),
        serves(pod("skip-b", "app", "skip", &["10.0.4.2"]), "app/skip", &[]),
        serves(
            pod("health-ok", "app", "health", &["10.0.5.1"]),
            "app/health",
            &[],
        ),
        unhealthy(serves(
            pod("health-bad", "app", "health", &["10.0.5.2"]),
            "app/health",
            &[],
        )),
        unhealthy(serves(
            pod("allowall-1", "app", "allowall", &["10.0.6.1"]),
            "app/allowall",
            &[],
        )),
        serves(pod("pt-1", "app", "pt", &["10.0.8.1"]), "app/pt", &[]),
        wp1,
        wp2,
        serves(
            pod("wph-1", "app", "wph", &["10.0.10.1"]),
            "app/wp-host",
            &[],
        ),
        serves(
            pod("wpv-1", "app", "wpv", &["10.0.11.1"]),
            "app/wp-vip",
            &[],
        ),
        tweak(pod("wwp-1", "app", "wwp", &["10.0.12.1"]), |w| {
            w.waypoint = waypoint("app/waypoint.app.svc.cluster.local");
        }),
        legacy,
        remote,
        dns,
        serves(pod("bad-1", "app", BAD_SA, &["10.0.16.1"]), "app/bad", &[]),
        serves(
            pod("ds-1", "app", "ds", &["10.0.17.1", "fd00::17:1"]),
            "app/ds",
            &[],
        ),
        at(
            serves(
                pod("strict-near", "app", "s", &["10.0.18.1"]),
                "app/strict",
                &[],
            ),
            "r1",
            "z1",
            "node-b",
        ),
        at(
            serves(
                pod("strict-far", "app", "s", &["10.0.18.2"]),
                "app/strict",
                &[],
            ),
            "r1",
            "z2",
            "node-a",
        ),
        at(
            serves(
                pod("strict-none", "app", "s", &["10.0.23.1"]),
                "app/strict-none",
                &[],
            ),
            "r2",
            "z1",
            "node-a",
        ),
        at(
            serves(
                pod("fo-zone", "app", "f", &["10.0.19.1"]),
                "app/failover",
                &[],
            ),
            "r1",
            "z1",
            "node-b",
        ),
        at(
            serves(
                pod("fo-region", "app", "f", &["10.0.19.2"]),
                "app/failover",
                &[],
            ),
            "r1",
            "z2",
            "node-a",
        ),
        at(
            serves(
                pod("fo-far", "app", "f", &["10.0.19.3"]),
                "app/failover",
                &[],
            ),
            "r2",
            "z1",
            "node-a",
        ),
        at(
            serves(
                pod("fo2-region", "app", "f", &["10.0.24.1"]),
                "app/failover2",
                &[],
            ),
            "r1",
            "z2",
            "node-a",
        ),
        at(
            serves(
                pod("fo2-far", "app", "f", &["10.0.24.2"]),
                "app/failover2",
                &[],
            ),
            "r2",
            "z1",
            "node-a",
        ),
        with_capacity(
            at(
                serves(
                    pod("fod-zone", "app", "f", &["10.0.25.1"]),
                    "app/fo-drained",
                    &[],
                ),
                "r1",
                "z1",
                "",
            ),
            0,
        ),
        at(
            serves(
                pod("fod-region", "app", "f", &["10.0.25.2"]),
                "app/fo-drained",
                &[],
            ),
            "r1",
            "z2",
            "",
        ),
        with_capacity(
            serves(
                pod("drained-0", "app", "d", &["10.0.26.1"]),
                "app/drained",
                &[],
            ),
            0,
        ),
        serves(
            pod("drained-1", "app", "d", &["10.0.26.2"]),
            "app/drained",
            &[],
        ),
        with_capacity(
            serves(
                pod("all-drained-0", "app", "d", &["10.0.27.1"]),
                "app/all-drained",
                &[],
            ),
            0,
        ),
        serves(
            pod("spread-a", "app", "spread", &["10.0.20.1"]),
            "app/spread",
            &[],
        ),
        serves(
            pod("spread-b", "app", "spread", &["10.0.20.2"]),
            "app/spread",
            &[],
        ),
        with_capacity(
            serves(pod("w-1", "app", "w", &["10.0.28.1"]), "app/weighted", &[]),
            1,
        ),
        with_capacity(
            serves(pod("w-9", "app", "w", &["10.0.28.9"]), "app/weighted", &[]),
            9,
        ),
    ];
    let mut one = service("app/one", &["10.96.0.1"], p80);
    one.subject_alt_names = vec![
        "spiffe://cluster.local/ns/app/sa/one-alt".into(),
        "not-a-spiffe-id".into(),
        "spiffe://cluster.local/ns/app/sa/one".into(),
    ];
    let mut wp_svc = service("app/waypoint", &["10.96.50.1"], &[(15008, 15008)]);
    wp_svc.subject_alt_names = vec!["spiffe://cluster.local/ns/app/sa/wp-alt".into()];
    let mut allow_all = service("app/allowall", &["10.96.0.6"], p80);
    allow_all.load_balancer = Some(LoadBalancer {
        health_policy: LoadBalancerHealthPolicy::AllowAll,
        ..LoadBalancer::default()
    });
    let wp = |s: Service, dest: &str| tweak(s, |s| s.waypoint = waypoint(dest));
    let services = vec![
        one,
        service("aaa/shared", &["10.96.0.9"], p80),
        service("app/shared", &["10.96.0.9"], p80),
        service("app/mapped", &["10.96.0.2"], p80),
        service("app/unmapped", &["10.96.0.3"], &[(80, 8080), (81, 0)]),
        service("app/skip", &["10.96.0.4"], &[(80, 0)]),
        service("app/health", &["10.96.0.5"], p80),
        allow_all,
        service("app/empty", &["10.96.0.7"], p80),
        lb(service("app/pt", &["10.96.0.8"], p80), Passthrough, &[]),
        wp_svc,
        wp(
            service("app/wp-host", &["10.96.0.10"], p80),
            "app/waypoint.app.svc.cluster.local",
        ),
        wp(service("app/wp-vip", &["10.96.0.11"], p80), "/10.96.50.1"),
        wp(service("app/wp-ip", &["10.96.0.12"], p80), "/10.0.50.1"),
        wp(
            service("app/wp-pod", &["10.96.0.21"], p80),
            "app/wp2.app.pod",
        ),
        wp(
            service("app/wp-gone", &["10.96.0.22"], p80),
            "app/nope.app.svc.cluster.local",
        ),
        service("app/legacy", &["10.96.0.13"], p80),
        service("app/remote", &["10.96.0.14"], p80),
        service("app/dns", &["10.96.0.15"], p80),
        service("app/bad", &["10.96.0.16"], p80),
        service("app/ds", &["10.96.0.17", "fd00:96::17"], p80),
        lb(
            service("app/strict", &["10.96.0.18"], p80),
            Strict,
            &[Region, Zone],
        ),
        lb(
            service("app/strict-none", &["10.96.0.23"], p80),
            Strict,
            &[Region, Zone],
        ),
        lb(
            service("app/failover", &["10.96.0.19"], p80),
            Failover,
            &[Region, Zone, Node],
        ),
        lb(
            service("app/failover2", &["10.96.0.24"], p80),
            Failover,
            &[Region, Zone, Node],
        ),
        lb(
            service("app/fo-drained", &["10.96.0.25"], p80),
            Failover,
            &[Region, Zone],
        ),
        service("app/drained", &["10.96.0.26"], p80),
        service("app/all-drained", &["10.96.0.27"], p80),
        service("app/spread", &["10.96.0.20"], p80),
        service("app/weighted", &["10.96.0.28"], p80),
    ];
    Snapshot::build(workloads, services, vec![], 1)
}

// ----- rendering -----

/// A plan in one line: `hbone <hbone_addr> <authority> [ns/sa,…]` or `tcp <addr>`, then
/// `wl=<uid>`, `svc=<ns>/<name>`, `waypoint`, `passthrough` where they apply.
fn render(p: &Plan) -> String {
    let mut s = match &p.upstream {
        Upstream::Hbone {
            hbone_addr,
            authority,
            identities,
        } => {
            let ids: Vec<_> = identities
                .iter()
                .map(|i| format!("{}/{}", i.namespace(), i.service_account()))
                .collect();
            format!("hbone {hbone_addr} {authority} [{}]", ids.join(","))
        }
        Upstream::Tcp { addr } => format!("tcp {addr}"),
    };
    if let Some(w) = &p.dst_workload {
        s += &format!(" wl={}", w.uid);
    }
    if let Some(svc) = &p.service {
        s += &format!(" svc={}/{}", svc.namespace, svc.name);
    }
    if p.via_waypoint {
        s += " waypoint";
    }
    if p.passthrough {
        s += " passthrough";
    }
    s
}

fn run(snap: &Snapshot, source: &Workload, dst: &str, seed: u64) -> Result<String, DecideError> {
    let dst: SocketAddr = dst.parse().unwrap();
    decide(snap, source, dst, "", &mut StdRng::seed_from_u64(seed)).map(|p| render(&p))
}

fn no_healthy(short: &str) -> DecideError {
    DecideError::NoHealthyUpstream {
        service: key(short).to_string(),
    }
}

// ----- the table -----

#[test]
fn decisions() {
    let bad_identity = Identity::new("cluster.local", "app", BAD_SA)
        .unwrap_err()
        .to_string();
    #[rustfmt::skip]
    let cases: Vec<(&str, &str, &str, Result<&str, DecideError>)> = vec![
        // (case, source uid, destination, expected)
        ("reserved loopback v4", "client-1", "127.0.0.1:15001",
            Err(DecideError::ReservedLoopback("127.0.0.1:15001".parse().unwrap()))),
        ("reserved loopback v6", "client-1", "[::1]:15008",
            Err(DecideError::ReservedLoopback("[::1]:15008".parse().unwrap()))),
        ("loopback, other port: passthrough", "client-1", "127.0.0.1:8080",
            Ok("tcp 127.0.0.1:8080 passthrough")),
        ("unknown destination: passthrough", "client-1", "192.168.1.1:443",
            Ok("tcp 192.168.1.1:443 passthrough")),
        ("workload IP: HBONE on the original port", "client-1", "10.0.1.1:1234",
            Ok("hbone 10.0.1.1:15008 10.0.1.1:1234 [app/one] wl=one-1")),
        ("service VIP: endpoint, service target port, SPIFFE SANs added once", "client-1", "10.96.0.1:80",
            Ok("hbone 10.0.1.1:15008 10.0.1.1:8080 [app/one,app/one-alt] wl=one-1 svc=app/one")),
        ("shared VIP: the client's namespace wins", "client-1", "10.96.0.9:80",
            Ok("hbone 10.0.9.2:15008 10.0.9.2:8080 [app/shared] wl=shared-app svc=app/shared")),
        ("shared VIP: other namespace gets the first by key", "stranger-1", "10.96.0.9:80",
            Ok("hbone 10.0.9.1:15008 10.0.9.1:8080 [aaa/shared] wl=shared-aaa svc=aaa/shared")),
        ("endpoint port map beats service target port", "client-1", "10.96.0.2:80",
            Ok("hbone 10.0.2.1:15008 10.0.2.1:9090 [app/mapped] wl=mapped-1 svc=app/mapped")),
        ("service target port when the endpoint has no map", "client-1", "10.96.0.3:80",
            Ok("hbone 10.0.3.1:15008 10.0.3.1:8080 [app/unmapped] wl=unmapped-1 svc=app/unmapped")),
        ("no mapping anywhere: no upstream", "client-1", "10.96.0.3:81", Err(no_healthy("app/unmapped"))),
        ("endpoint without mapping skipped", "client-1", "10.96.0.4:80",
            Ok("hbone 10.0.4.1:15008 10.0.4.1:8080 [app/skip] wl=skip-a svc=app/skip")),
        ("unhealthy endpoint excluded", "client-1", "10.96.0.5:80",
            Ok("hbone 10.0.5.1:15008 10.0.5.1:8080 [app/health] wl=health-ok svc=app/health")),
        ("unhealthy endpoint allowed by ALLOW_ALL", "client-1", "10.96.0.6:80",
            Ok("hbone 10.0.6.1:15008 10.0.6.1:8080 [app/allowall] wl=allowall-1 svc=app/allowall")),
        ("no endpoints", "client-1", "10.96.0.7:80", Err(no_healthy("app/empty"))),
        ("passthrough service", "client-1", "10.96.0.8:80", Ok("tcp 10.96.0.8:80 svc=app/pt passthrough")),
        ("service waypoint by hostname", "client-1", "10.96.0.10:80",
            Ok("hbone 10.0.50.1:15008 10.96.0.10:80 [app/waypoint,app/wp-alt] wl=wp-1 svc=app/wp-host waypoint")),
        ("service waypoint by VIP", "client-1", "10.96.0.11:80",
            Ok("hbone 10.0.50.1:15008 10.96.0.11:80 [app/waypoint,app/wp-alt] wl=wp-1 svc=app/wp-vip waypoint")),
        ("service waypoint by workload IP", "client-1", "10.96.0.12:80",
            Ok("hbone 10.0.50.1:15008 10.96.0.12:80 [app/waypoint] wl=wp-1 svc=app/wp-ip waypoint")),
        ("service waypoint by workload hostname", "client-1", "10.96.0.21:80",
            Ok("hbone 10.0.51.1:15008 10.96.0.21:80 [app/waypoint2] wl=wp-2 svc=app/wp-pod waypoint")),
        ("source is the service's waypoint: direct", "wp-1", "10.96.0.10:80",
            Ok("hbone 10.0.10.1:15008 10.0.10.1:8080 [app/wph] wl=wph-1 svc=app/wp-host")),
        ("unresolvable waypoint", "client-1", "10.96.0.22:80", Err(DecideError::WaypointUnresolved {
            waypoint: "app/nope.app.svc.cluster.local".into(),
            owner: "app/wp-gone.app.svc.cluster.local".into(),
        })),
        ("workload waypoint", "client-1", "10.0.12.1:80",
            Ok("hbone 10.0.50.1:15008 10.0.12.1:80 [app/waypoint,app/wp-alt] wl=wp-1 waypoint")),
        ("source is the workload's waypoint: direct", "wp-1", "10.0.12.1:80",
            Ok("hbone 10.0.12.1:15008 10.0.12.1:80 [app/wwp] wl=wwp-1")),
        ("TCP workload by IP", "client-1", "10.0.13.1:80", Ok("tcp 10.0.13.1:80 wl=legacy-1")),
        ("TCP workload behind a service", "client-1", "10.96.0.13:80",
            Ok("tcp 10.0.13.1:8080 wl=legacy-1 svc=app/legacy")),
        ("endpoint on a remote network", "client-1", "10.96.0.14:80",
            Err(DecideError::RemoteNetwork { uid: "remote-1".into(), network: "net2".into() })),
        ("remote-network workload IP is not ours: passthrough", "client-1", "10.0.14.1:80",
            Ok("tcp 10.0.14.1:80 passthrough")),
        ("hostname-only endpoint", "client-1", "10.96.0.15:80",
            Err(DecideError::NoAddress { uid: "dns-1".into() })),
        ("invalid endpoint identity", "client-1", "10.96.0.16:80",
            Err(DecideError::BadWorkload { uid: "bad-1".into(), reason: bad_identity.clone() })),
        ("dual stack, v6 VIP: v6 endpoint IP", "client-1", "[fd00:96::17]:80",
            Ok("hbone [fd00::17:1]:15008 [fd00::17:1]:8080 [app/ds] wl=ds-1 svc=app/ds")),
        ("dual stack, v4 VIP: v4 endpoint IP", "client-1", "10.96.0.17:80",
            Ok("hbone 10.0.17.1:15008 10.0.17.1:8080 [app/ds] wl=ds-1 svc=app/ds")),
        ("dual stack workload, v6 destination kept", "client-1", "[fd00::17:1]:443",
            Ok("hbone [fd00::17:1]:15008 [fd00::17:1]:443 [app/ds] wl=ds-1")),
        ("STRICT keeps endpoints matching every scope", "client-1", "10.96.0.18:80",
            Ok("hbone 10.0.18.1:15008 10.0.18.1:8080 [app/s] wl=strict-near svc=app/strict")),
        ("STRICT with no match: no upstream", "client-1", "10.96.0.23:80", Err(no_healthy("app/strict-none"))),
        ("FAILOVER picks the longest matching prefix", "client-1", "10.96.0.19:80",
            Ok("hbone 10.0.19.1:15008 10.0.19.1:8080 [app/f] wl=fo-zone svc=app/failover")),
        ("FAILOVER falls back to the region", "client-1", "10.96.0.24:80",
            Ok("hbone 10.0.24.1:15008 10.0.24.1:8080 [app/f] wl=fo2-region svc=app/failover2")),
        ("FAILOVER skips a drained best rank", "client-1", "10.96.0.25:80",
            Ok("hbone 10.0.25.2:15008 10.0.25.2:8080 [app/f] wl=fod-region svc=app/fo-drained")),
        ("capacity 0 is never picked", "client-1", "10.96.0.26:80",
            Ok("hbone 10.0.26.2:15008 10.0.26.2:8080 [app/d] wl=drained-1 svc=app/drained")),
        ("all endpoints drained: no upstream", "client-1", "10.96.0.27:80", Err(no_healthy("app/all-drained"))),
    ];
    let snap = world();
    for (name, source, dst, want) in cases {
        let source = snap.workload(source).unwrap();
        for seed in 0..20 {
            let got = run(&snap, source, dst, seed);
            assert_eq!(
                got.as_deref().map_err(Clone::clone),
                want.clone(),
                "{name} (seed {seed})"
            );
        }
    }
}

// ----- load balancing -----

/// How often each endpoint uid is picked over `n` decisions from one seeded generator.
fn picks(dst: &str, n: usize) -> BTreeMap<String, usize> {
    let snap = world();
    let source = snap.workload("client-1").unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        let plan = decide(&snap, source, dst.parse().unwrap(), "", &mut rng).unwrap();
        *counts
            .entry(plan.dst_workload.unwrap().uid.clone())
            .or_default() += 1;
    }
    counts
}

#[test]
fn service_traffic_spreads_over_endpoints() {
    let counts = picks("10.96.0.20:80", 200);
    assert_eq!(
        counts.keys().collect::<Vec<_>>(),
        ["spread-a", "spread-b"],
        "{counts:?}"
    );
    assert!(counts.values().all(|n| *n >= 60), "{counts:?}");
}

#[test]
fn capacity_weights_the_pick() {
    let counts = picks("10.96.0.28:80", 2000);
    let (light, heavy) = (counts["w-1"], counts["w-9"]);
    assert_eq!(light + heavy, 2000);
    // Expected 200 / 1800; allow a wide margin.
    assert!((100..=300).contains(&light), "{counts:?}");
}

// ----- "is the waypoint" -----

/// The source counts as the waypoint with the same identity and an IP in common, even under
/// another uid; the same identity alone is not enough.
#[test]
fn waypoint_identity_needs_a_shared_ip() {
    let snap = world();
    let wp = snap.workload("wp-1").unwrap();
    let dst = "10.0.12.1:80";

    let same_ip = Workload {
        uid: "wp-1-restarted".into(),
        ..(**wp).clone()
    };
    assert_eq!(
        run(&snap, &same_ip, dst, 0).unwrap(),
        "hbone 10.0.12.1:15008 10.0.12.1:80 [app/wwp] wl=wwp-1"
    );

    let other_ip = Workload {
        uid: "wp-elsewhere".into(),
        workload_ips: vec!["10.0.99.1".parse().unwrap()],
        ..(**wp).clone()
    };
    assert_eq!(
        run(&snap, &other_ip, dst, 0).unwrap(),
        "hbone 10.0.50.1:15008 10.0.12.1:80 [app/waypoint,app/wp-alt] wl=wp-1 waypoint"
    );
}
