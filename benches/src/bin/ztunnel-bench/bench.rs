//! The measurement sequence: bring the mesh up, check which pods are captured, record ztunnel's
//! idle RSS, then per repetition run iperf3 and the RR test direct and through ztunnel in
//! alternating order, sampling ztunnel's RSS during the meshed iperf3 run.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::iperf::{self, Throughput};
use crate::manifests::{self, CLIENT, ECHO_PORT, IPERF_PORT, NAMESPACES, SERVER};
use crate::mesh::Mesh;
use crate::report::{PathResults, Results};
use crate::rr::{self, Latency};
use crate::{cmd, rss};

#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) runs: usize,
    pub(crate) seconds: u32,
    pub(crate) round_trips: usize,
    pub(crate) meshctl: PathBuf,
}

const NODES: [&str; 2] = [manifests::CLIENT_NODE, manifests::SERVER_NODE];
const SETTLE: Duration = Duration::from_secs(3);

/// One byte path: client pod → server pod IP, in a namespace that is or is not captured.
#[derive(Debug, Clone)]
struct Path {
    label: &'static str,
    client: String,
    server_ip: String,
    meshed: bool,
}

/// Checks placement and capture of the bench's pods; returns the direct and the meshed path.
fn paths(mesh: &Mesh) -> Result<[Path; 2]> {
    let mut out = Vec::new();
    for (ns, ambient) in NAMESPACES {
        let server = mesh.pod(ns, SERVER)?;
        let client = mesh.pod(ns, CLIENT)?;
        if server.node == client.node {
            bail!("{ns}: client and server share {}", server.node);
        }
        if server.enrolled != ambient || client.enrolled != ambient {
            bail!(
                "{ns}: pods enrolled (server {}, client {}), expected {ambient}",
                server.enrolled,
                client.enrolled
            );
        }
        out.push(Path {
            label: if ambient { "ztunnel" } else { "direct" },
            client: format!("{ns}/{CLIENT}"),
            server_ip: server.ip.to_string(),
            meshed: ambient,
        });
    }
    out.try_into()
        .map_err(|_| anyhow::anyhow!("expected two namespaces"))
}

/// Sum of `istio_tcp_received_bytes_total` over all series of `node`'s ztunnel.
fn ztunnel_bytes(mesh: &Mesh, node: &str) -> Result<f64> {
    let target = format!("node/{node}");
    let argv = [
        "curl",
        "-sS",
        "--max-time",
        "5",
        "http://127.0.0.1:15020/metrics",
    ];
    let text = mesh.exec(&target, &argv, Duration::from_secs(10))?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("istio_tcp_received_bytes_total"))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum())
}

fn iperf(mesh: &Mesh, path: &Path, seconds: u32) -> Result<Throughput> {
    let (t, port) = (seconds.to_string(), IPERF_PORT.to_string());
    let argv = [
        "iperf3",
        "-c",
        &path.server_ip,
        "-p",
        &port,
        "-t",
        &t,
        "-P",
        "1",
        "-J",
    ];
    let limit = Duration::from_secs(u64::from(seconds) + 30);
    iperf::parse(&mesh.exec(&path.client, &argv, limit)?)
}

fn latency(mesh: &Mesh, bin: &str, path: &Path, round_trips: usize) -> Result<Latency> {
    let addr = format!("{}:{ECHO_PORT}", path.server_ip);
    let n = round_trips.to_string();
    let argv = [bin, "rr-client", &addr, "--count", &n];
    rr::parse(&mesh.exec(&path.client, &argv, Duration::from_secs(120))?)
}

/// iperf3 on `path`; on the meshed path also samples ztunnel RSS and checks that node2's
/// ztunnel counted the bytes (on the direct path, that it did not).
fn iperf_run(mesh: &Mesh, path: &Path, o: &Options, pids: &[u32], r: &mut Results) -> Result<()> {
    let before = ztunnel_bytes(mesh, manifests::SERVER_NODE).ok();
    let sampler = path.meshed.then(|| rss::Sampler::start(pids.to_vec()));
    let result = iperf(mesh, path, o.seconds);
    let peak = sampler.map(rss::Sampler::stop);
    let t = result?;
    let after = ztunnel_bytes(mesh, manifests::SERVER_NODE).ok();
    let counted = match (before, after) {
        (Some(b), Some(a)) => (a - b) / t.bytes_per_sec.max(1.0) / f64::from(o.seconds),
        _ => f64::NAN,
    };
    eprintln!(
        "  iperf3 {:<8} {:>8.0} MiB/s  retransmits {:>5}  bytes seen by node2 ztunnel: {:.0} % of the stream{}",
        path.label,
        t.mib_per_sec(),
        t.retransmits,
        counted * 100.0,
        peak.as_ref()
            .map(|p| format!("  peak RSS KiB {p:?}"))
            .unwrap_or_default()
    );
    if path.meshed != (counted > 0.5) && !counted.is_nan() {
        eprintln!(
            "  WARNING: {} path: node2 ztunnel counted {:.0} % of the bytes",
            path.label,
            counted * 100.0
        );
    }
    let results = if path.meshed {
        &mut r.meshed
    } else {
        &mut r.direct
    };
    results.throughput.push(t);
    if let Some(p) = peak {
        r.rss_load_kib.push(p);
    }
    Ok(())
}

pub(crate) fn run(o: &Options) -> Result<Results> {
    let bin = std::env::current_exe().context("own path")?;
    let bin = bin.to_str().context("own path is not UTF-8")?.to_owned();
    let mut mesh = Mesh::new(o.meshctl.clone())?;
    let dir = mesh.scratch().join("manifests");
    std::fs::create_dir(&dir)?;
    manifests::write(&dir, std::path::Path::new(&bin))?;
    eprintln!(
        "ztunnel-bench: meshctl --mesh {} up -f {}",
        mesh.name(),
        dir.display()
    );
    mesh.up(&dir)?;
    let [direct, meshed] = paths(&mesh)?;
    let pids = NODES
        .iter()
        .map(|n| rss::ztunnel_pid(&mesh.node_netns(n), mesh.scratch()))
        .collect::<Result<Vec<u32>>>()?;
    std::thread::sleep(SETTLE);
    let rss_now = || {
        pids.iter()
            .map(|p| rss::rss_kib(*p))
            .collect::<Result<Vec<u64>>>()
    };
    let mut r = Results {
        nodes: NODES.iter().map(|n| n.to_string()).collect(),
        rss_idle_kib: rss_now()?,
        ..Results::default()
    };
    eprintln!("  ztunnel pids {pids:?}, idle RSS KiB {:?}", r.rss_idle_kib);
    // Warm-up, not counted: certificates, the HBONE connection, page cache for the binaries.
    for p in [&direct, &meshed] {
        latency(&mesh, &bin, p, 1000)?;
    }
    for rep in 0..o.runs {
        eprintln!("run {}/{}", rep + 1, o.runs);
        let order = if rep % 2 == 0 {
            [&direct, &meshed]
        } else {
            [&meshed, &direct]
        };
        for p in order {
            cmd::check()?;
            iperf_run(&mesh, p, o, &pids, &mut r)?;
        }
        for p in order {
            cmd::check()?;
            let l = latency(&mesh, &bin, p, o.round_trips)?;
            eprintln!(
                "  rr     {:<8} p50 {:>7.1} µs  p99 {:>7.1} µs",
                p.label, l.p50_us, l.p99_us
            );
            let results: &mut PathResults = if p.meshed {
                &mut r.meshed
            } else {
                &mut r.direct
            };
            results.latency.push(l);
        }
    }
    std::thread::sleep(SETTLE);
    r.rss_after_kib = rss_now()?;
    Ok(r)
}
