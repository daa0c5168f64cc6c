//! `meshctl demo`: brings up the quickstart, drives traffic from the client pod, prints who talked to whom and
//! how, and removes the mesh. Succeeds only if every request succeeded and every backend was reached.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::error::Error;
use crate::paths::MeshPaths;
use crate::probe::{self, Reply};
use crate::status::{PodStatus, StatusReport};

const REQUESTS_VIA_SERVICE: usize = 20;
const REQUESTS_PER_POD: usize = 5;
const TIMEOUT: Duration = Duration::from_secs(3);

/// One line of the report: a flow and what happened to it.
struct Flow {
    what: String,
    replies: Vec<Result<Reply, Error>>,
    /// Connections the destination tunnels accepted over mutual TLS from the client during it.
    mtls: u64,
}

/// Connections all ztunnels accepted over mutual TLS from `principal`, from their metrics.
fn mtls_connections(st: &StatusReport, principal: &str) -> u64 {
    let want = [
        "reporter=\"destination\"".to_string(),
        format!("source_principal=\"{principal}\""),
        "connection_security_policy=\"mutual_tls\"".to_string(),
    ];
    st.nodes
        .iter()
        .filter_map(|n| {
            probe::http_get_path(
                &n.netns,
                SocketAddr::from(([127, 0, 0, 1], 15020)),
                "/metrics",
                TIMEOUT,
            )
            .ok()
        })
        .flat_map(|r| {
            r.body
                .lines()
                .filter(|l| {
                    l.starts_with("istio_tcp_connections_opened_total{")
                        && want.iter().all(|w| l.contains(w.as_str()))
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .map(|v| v as u64)
                .collect::<Vec<_>>()
        })
        .sum()
}

pub fn run(paths: &MeshPaths, quickstart: &Path) -> Result<String, Error> {
    let summary = crate::client::up(paths, quickstart, None, None, Duration::from_secs(60))?;
    eprintln!("{summary}");
    let result = crate::client::status(paths).and_then(|st| drive(&st));
    let down = crate::client::down(paths);
    let report = result?;
    down?;
    Ok(report)
}

fn drive(st: &StatusReport) -> Result<String, Error> {
    let missing = |what: &str| Error::Mesh {
        mesh: st.mesh.clone(),
        detail: format!("the quickstart has no {what}"),
    };
    let client = st
        .pods
        .iter()
        .find(|p| p.name == "client")
        .ok_or_else(|| missing("pod named client"))?;
    let svc = st
        .services
        .iter()
        .find(|s| s.name == "backend")
        .ok_or_else(|| missing("Service named backend"))?;
    let vip = svc.cluster_ip.ok_or_else(|| missing("Service address"))?;
    let port = svc
        .ports
        .first()
        .ok_or_else(|| missing("Service port"))?
        .port;
    let before = mtls_connections(st, &client.identity);
    let mut flows = vec![Flow {
        mtls: 0,
        what: format!(
            "{} → Service {}/{} {vip}:{port}",
            who(client),
            svc.namespace,
            svc.name
        ),
        replies: (0..REQUESTS_VIA_SERVICE)
            .map(|_| probe::http_get(&client.netns, SocketAddr::from((vip, port)), TIMEOUT))
            .collect(),
    }];
    let mut last = mtls_connections(st, &client.identity);
    flows[0].mtls = last - before.min(last);
    for ep in &svc.endpoints {
        let Some(target) = ep.ports.first() else {
            continue;
        };
        let place = if ep.node == client.node {
            "same node"
        } else {
            "across nodes"
        };
        let replies = (0..REQUESTS_PER_POD)
            .map(|_| {
                probe::http_get(
                    &client.netns,
                    SocketAddr::from((ep.ip, target.target_port)),
                    TIMEOUT,
                )
            })
            .collect();
        let now = mtls_connections(st, &client.identity);
        flows.push(Flow {
            mtls: now - last.min(now),
            what: format!(
                "{} → pod {} {}:{} ({place})",
                who(client),
                ep.name,
                ep.ip,
                target.target_port
            ),
            replies,
        });
        last = now;
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "meshctl demo: mesh {:?}, {} nodes, {} pods\n",
        st.mesh,
        st.nodes.len(),
        st.pods.len()
    );
    let mut ok = true;
    let mut answered_by_service = BTreeMap::new();
    for (i, flow) in flows.iter().enumerate() {
        let good: Vec<&Reply> = flow
            .replies
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .filter(|r| r.status == 200)
            .collect();
        let lat: Vec<Duration> = good.iter().map(|r| r.latency).collect();
        let mut by: BTreeMap<String, usize> = BTreeMap::new();
        let mut saw = BTreeMap::new();
        for r in &good {
            let mut words = r.body.split_whitespace();
            let (pod, seen) = (words.next().unwrap_or("?"), words.nth(1).unwrap_or("?"));
            *by.entry(pod.to_string()).or_default() += 1;
            *saw.entry(seen.to_string()).or_insert(0usize) += 1;
        }
        if i == 0 {
            answered_by_service = by.clone();
        }
        let kept_source = saw.len() == 1 && saw.contains_key(&client.ip.to_string());
        ok &= good.len() == flow.replies.len() && kept_source;
        let _ = writeln!(out, "{}", flow.what);
        let answered: Vec<String> = by.iter().map(|(p, n)| format!("{p} ×{n}")).collect();
        let _ = writeln!(
            out,
            "  {}/{} answered, latency p50 {:.2} ms, p99 {:.2} ms; answered by {}",
            good.len(),
            flow.replies.len(),
            ms(probe::quantile(&lat, 0.5)),
            ms(probe::quantile(&lat, 0.99)),
            answered.join(", ")
        );
        let seen: Vec<&String> = saw.keys().collect();
        let encrypted = if !client.enrolled {
            "no (the client is not in the mesh)".to_string()
        } else if flow.mtls >= good.len() as u64 && !good.is_empty() {
            format!(
                "yes, HBONE mutual TLS ({} connections accepted by the destination ztunnels as {})",
                flow.mtls, client.identity
            )
        } else {
            ok = false;
            format!(
                "NOT CONFIRMED (destination ztunnels counted {} mTLS connections)",
                flow.mtls
            )
        };
        let _ = writeln!(
            out,
            "  source seen by the server: {seen:?} ({}); encrypted: {encrypted}",
            if kept_source {
                "the client pod's own address"
            } else {
                "NOT the client's address"
            }
        );
        for e in flow.replies.iter().filter_map(|r| r.as_ref().err()) {
            let _ = writeln!(out, "  error: {e}");
        }
    }
    let every_backend = svc
        .endpoints
        .iter()
        .all(|e| answered_by_service.contains_key(&e.name));
    if !every_backend {
        let _ = writeln!(
            out,
            "\nnot every backend answered through the Service: {answered_by_service:?}"
        );
    }
    ok &= every_backend && !svc.endpoints.is_empty();
    let _ = writeln!(
        out,
        "\nresult: {}",
        if ok { "all went right" } else { "FAILED" }
    );
    if ok {
        Ok(out)
    } else {
        Err(Error::Mesh {
            mesh: st.mesh.clone(),
            detail: format!("demo failed\n{out}"),
        })
    }
}

fn who(p: &PodStatus) -> String {
    format!("pod {}/{} ({}, {})", p.namespace, p.name, p.node, p.ip)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
