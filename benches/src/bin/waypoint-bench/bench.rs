//! One bench invocation: bring up the backend, the control plane and both proxies, check that
//! each routes (with the route's header), read idle memory, warm every target up, then
//! `--runs` rounds of wrk over the targets in turn (direct, Envoy, waypoint, direct, …) with the
//! CPU time of the proxy and the backend around each, and memory again at the end. Every
//! process is a [`Proc`] guard, so all of them are killed on return, error or ctrl-c.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::backend::{STATS_PATH, Stats};
use crate::cmd::{self, Proc};
use crate::http;
use crate::manifests::{self, ENVOY, OURS};
use crate::peers;
use crate::procstat::{self, Sampler};
use crate::report::{Results, RunResult, Target, TargetResults};
use crate::wrk::{self, Load};

#[derive(Debug)]
pub(crate) struct Options {
    pub(crate) runs: usize,
    pub(crate) load: Load,
    pub(crate) warmup_seconds: u32,
    pub(crate) targets: Vec<Target>,
    pub(crate) control_plane: PathBuf,
    pub(crate) waypoint: PathBuf,
    pub(crate) envoy: PathBuf,
    pub(crate) envoy_concurrency: u32,
}

/// Where a target is reached, with which Host, and the proxy process in between (if any).
struct Endpoint {
    target: Target,
    addr: SocketAddr,
    host: String,
    proxy: Option<Proc>,
}

/// How long memory is left to settle before an "idle" reading.
const SETTLE: Duration = Duration::from_secs(2);

pub(crate) fn run(opts: &Options) -> Result<Results> {
    let scratch = tempfile::Builder::new()
        .prefix("waypoint-bench-")
        .tempdir()?;
    let dir = scratch.path();
    let (mut backend, backend_addr) = peers::backend(dir)?;
    eprintln!("backend on {backend_addr}");
    let service_port = peers::common_free_port(&["127.0.0.2", "127.0.0.3"])?;
    let proxied = opts.targets.iter().any(|t| *t != Target::Direct);
    let mut cp = None;
    if proxied {
        let mdir = dir.join("manifests");
        std::fs::create_dir_all(&mdir)?;
        let text = manifests::mesh(backend_addr.port(), service_port);
        std::fs::write(mdir.join("bench.yaml"), text)?;
        let c = peers::control_plane(&opts.control_plane, &mdir, dir)?;
        eprintln!("control plane: grpc {}, admin {}", c.grpc, c.admin);
        cp = Some(c);
    }
    let mut endpoints = Vec::new();
    let mut results = Vec::new();
    let mut nodes = Vec::new();
    for target in opts.targets.iter().copied() {
        let (mut e, node) = start(opts, target, cp.as_ref(), backend_addr, service_port, dir)?;
        nodes.extend(node);
        let applied = route_check(&mut e, &mut backend)?;
        results.push(TargetResults {
            target,
            route_applied: applied,
            ..TargetResults::default()
        });
        endpoints.push(e);
    }
    if let Some(c) = &cp {
        c.check_clients(&nodes)?;
    }
    cmd::sleep(SETTLE)?;
    for (e, r) in endpoints.iter().zip(results.iter_mut()) {
        r.rss_idle_kib = proxy_memory(e)?.map(|(rss, _)| rss);
    }
    warm_up(opts, &endpoints, dir)?;
    let tps = procstat::ticks_per_sec(dir);
    for run in 0..opts.runs {
        for (e, r) in endpoints.iter_mut().zip(results.iter_mut()) {
            let tag = format!("run{run}-{}", e.target.key());
            let m = measure(opts.load, e, (&backend, backend_addr), tps, dir, &tag)?;
            let (n, label) = (opts.runs, e.target.label());
            eprintln!("run {}/{n} {label}: {}", run + 1, m.summary());
            r.runs.push(m);
            backend.alive()?;
            if let Some(p) = e.proxy.as_mut() {
                p.alive()?;
            }
        }
    }
    if let Some(c) = cp.as_mut() {
        c.proc.alive()?;
    }
    cmd::sleep(SETTLE)?;
    for (e, r) in endpoints.iter().zip(results.iter_mut()) {
        if let Some((rss, hwm)) = proxy_memory(e)? {
            r.rss_after_kib = Some(rss);
            r.rss_hwm_kib = Some(hwm);
        }
        if let Some(p) = &e.proxy {
            r.log_lines = log_lines(&p.log);
        }
    }
    Ok(Results {
        targets: results,
        service_port,
    })
}

/// Starts `target`'s proxy (none for direct); its endpoint and xDS node id.
fn start(
    opts: &Options,
    target: Target,
    cp: Option<&peers::ControlPlane>,
    backend_addr: SocketAddr,
    service_port: u16,
    dir: &Path,
) -> Result<(Endpoint, Option<String>)> {
    let (wp, proc) = match target {
        Target::Direct => {
            let e = Endpoint {
                target,
                addr: backend_addr,
                host: "backend".to_owned(),
                proxy: None,
            };
            return Ok((e, None));
        }
        Target::Envoy => {
            let grpc = cp.context("control plane")?.grpc;
            let concurrency = opts.envoy_concurrency;
            let p = peers::envoy(&opts.envoy, &ENVOY, grpc, concurrency, dir)?;
            (ENVOY, p)
        }
        Target::Waypoint => {
            let grpc = cp.context("control plane")?.grpc;
            (OURS, peers::waypoint(&opts.waypoint, &OURS, grpc, dir)?)
        }
    };
    let e = Endpoint {
        target,
        addr: SocketAddr::new(IpAddr::V4(wp.address), service_port),
        host: wp.host(),
        proxy: Some(proc),
    };
    Ok((e, Some(wp.node_id())))
}

/// Waits until `e` answers; whether the route's header reached the backend (`None` direct).
fn route_check(e: &mut Endpoint, backend: &mut Proc) -> Result<Option<bool>> {
    let proc = e.proxy.as_mut().unwrap_or(backend);
    let applied = peers::route_check(proc, e.addr, &e.host)?;
    let label = e.target.label();
    eprintln!("{label} serves on {} (Host: {})", e.addr, e.host);
    if e.target == Target::Direct {
        return Ok(None);
    }
    if !applied {
        eprintln!(
            "WARNING: {label} answered, but the backend did not see `{}: 1`: the route's header filter was not applied",
            crate::backend::ROUTE_HEADER
        );
    }
    Ok(Some(applied))
}

/// One untimed wrk run of `--warmup` seconds per target.
fn warm_up(opts: &Options, endpoints: &[Endpoint], dir: &Path) -> Result<()> {
    if opts.warmup_seconds == 0 {
        return Ok(());
    }
    let warm = Load {
        seconds: opts.warmup_seconds,
        ..opts.load
    };
    for e in endpoints {
        eprintln!("warm-up: {} for {} s", e.target.label(), warm.seconds);
        let tag = format!("warmup-{}", e.target.key());
        wrk::run(warm, e.addr, &e.host, dir, &tag)?;
    }
    Ok(())
}

fn proxy_memory(e: &Endpoint) -> Result<Option<(u64, u64)>> {
    e.proxy
        .as_ref()
        .map(|p| procstat::memory_kib(p.pid()))
        .transpose()
}

/// The non-empty lines a proxy logged (Envoy at `-l warn`, the waypoint at `RUST_LOG=warn`).
fn log_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// `(CPU ticks, context switches)` of `pid`.
fn usage(pid: u32) -> Result<(u64, u64)> {
    Ok((procstat::cpu_ticks(pid)?, procstat::context_switches(pid)?))
}

/// The backend's counters, asked directly. Each call is one connection, one request and one
/// read of its own, which [`measure`] takes off (its ~60 head bytes are left in: noise).
fn backend_stats(addr: SocketAddr) -> Result<Stats> {
    let r = http::get(addr, "backend", STATS_PATH)?;
    Stats::parse(&r.body).with_context(|| format!("bad {STATS_PATH} answer: {:?}", r.body))
}

/// One wrk run against `e`, with CPU time of the proxy and the backend around it, the
/// backend's counters, and the proxy's highest `VmRSS` during it.
fn measure(
    load: Load,
    e: &Endpoint,
    (backend, backend_addr): (&Proc, SocketAddr),
    ticks_per_sec: f64,
    scratch: &Path,
    tag: &str,
) -> Result<RunResult> {
    let proxy_pid = e.proxy.as_ref().map(Proc::pid);
    let stats_before = backend_stats(backend_addr)?;
    let backend_before = procstat::cpu_ticks(backend.pid())?;
    let proxy_before = proxy_pid.map(usage).transpose()?;
    let sampler = proxy_pid.map(Sampler::start);
    let started = Instant::now();
    let report = wrk::run(load, e.addr, &e.host, scratch, tag);
    let wall = started.elapsed().as_secs_f64();
    let rss_peak_kib = sampler.map(Sampler::stop);
    let report = report?;
    let backend_after = procstat::cpu_ticks(backend.pid())?;
    let proxy_after = proxy_pid.map(usage).transpose()?;
    let proxy = proxy_before
        .zip(proxy_after)
        .map(|((t0, s0), (t1, s1))| (t1.saturating_sub(t0), s1.saturating_sub(s0)));
    let stats_after = backend_stats(backend_addr)?;
    let mut seen = stats_after.since(stats_before);
    seen.accepted = seen.accepted.saturating_sub(1);
    seen.requests = seen.requests.saturating_sub(1);
    seen.reads = seen.reads.saturating_sub(1);
    let per_1k = |ticks: u64| {
        let ms = ticks as f64 * 1000.0 / ticks_per_sec;
        ms / (report.requests.max(1) as f64 / 1000.0)
    };
    let requests = report.requests.max(1) as f64;
    Ok(RunResult {
        proxy_cpu_ms_per_1k: proxy.map(|(ticks, _)| per_1k(ticks)),
        proxy_cores: proxy.map(|(ticks, _)| ticks as f64 / ticks_per_sec / wall),
        proxy_switches_per_request: proxy.map(|(_, switches)| switches as f64 / requests),
        backend_cpu_ms_per_1k: per_1k(backend_after.saturating_sub(backend_before)),
        proxy_rss_peak_kib: rss_peak_kib,
        backend: seen,
        proxy_upstream_connections: match (proxy_pid, backend_addr) {
            (Some(pid), SocketAddr::V4(b)) => Some(procstat::connections_to(pid, b)?),
            _ => None,
        },
        wrk: report,
    })
}
