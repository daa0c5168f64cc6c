//! `--api`: the file source against the Kubernetes source, in one run. For each mesh size N and
//! client count K, each source in turn gets a fresh in-process control plane with nothing in it
//! and K synced clients, then
//!
//! * *create*: the whole mesh is written — the manifest files into the watched directory, or
//!   the objects through the API server (`kube_mesh`) — timed from the first write to every
//!   client having ACKed the first snapshot holding all N workloads;
//! * *change*: pod 0's `version` label is changed `runs` times (file rewrite, or a merge patch),
//!   each timed from the write to every client's ACK.
//!
//! Per N, two references come first: the same objects written to a fresh API server with no
//! control plane running (what the API server alone costs), and one publish of the Kubernetes
//! source timed step by step (`kube_costs`).
//!
//! The API server is a real one (`scripts/kube.sh up`, through the tests crate's harness), a
//! fresh one per measurement, stopped at its end, also on error (the harness's `Drop`; if the
//! process is killed, `kube.sh`'s watchdog). The file source is measured while no API server
//! runs.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::apiserver::ApiServer;
use super::bench::ms;
use super::clients::Fleet;
use super::inproc::{Change, InProcess, Ingest, LIMIT};
use super::kube_costs::{self, Publish};
use super::kube_mesh::{self, ApiMesh, Cpu};
use super::manifests;

/// Longest the whole mesh may take to be written and reach every client.
pub(crate) const CREATE_LIMIT: Duration = Duration::from_secs(600);

pub(crate) struct Options {
    pub(crate) runs: usize,
    pub(crate) workloads: Vec<usize>,
    pub(crate) clients: Vec<usize>,
    /// API requests in flight while the mesh is created.
    pub(crate) concurrency: usize,
}

/// One source, one (N, K).
pub(crate) struct Side {
    /// `kube.sh up` (API server, etcd, CRDs); none for the file source.
    pub(crate) setup: Option<Duration>,
    pub(crate) ingest: Ingest,
    /// CPU seconds spent during the creation (the API server's processes only on the API side).
    pub(crate) cpu: Cpu,
    pub(crate) changes: Vec<Change>,
}

/// Both sources for one (N, K).
pub(crate) struct Pair {
    pub(crate) clients: usize,
    pub(crate) file: Side,
    pub(crate) api: Side,
}

/// The mesh written to an API server with no control plane running.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Alone {
    pub(crate) written: Duration,
    pub(crate) cpu: Cpu,
}

/// Everything for one mesh size.
pub(crate) struct SizeResult {
    pub(crate) workloads: usize,
    pub(crate) publish: Publish,
    pub(crate) alone: Alone,
    pub(crate) pairs: Vec<Pair>,
}

pub(crate) async fn run(opts: &Options) -> Result<Vec<SizeResult>> {
    let mut out = Vec::new();
    for &n in &opts.workloads {
        eprintln!("== {n} workloads: one Kubernetes-source publish, step by step");
        let publish = kube_costs::publish(&ApiMesh::new(n)?, n)?;
        eprintln!(
            "   store apply (parse) {:.1} ms, objects() {:.1} ms, pods_on_nodes {:.1} ms, translate {:.1} ms",
            ms(publish.apply),
            ms(publish.objects),
            ms(publish.pods_on_nodes),
            ms(publish.translate)
        );
        eprintln!("== {n} workloads: API writes alone, no control plane");
        let alone = writes_alone(n, opts.concurrency).await?;
        eprintln!(
            "   written {:.1} ms; CPU s: API server {:.1}, etcd {:.1}, bench {:.1}",
            ms(alone.written),
            alone.cpu.apiserver,
            alone.cpu.etcd,
            alone.cpu.bench
        );
        let mut size = SizeResult {
            workloads: n,
            publish,
            alone,
            pairs: Vec::new(),
        };
        for &k in &opts.clients {
            eprintln!("== {n} workloads, {k} client(s): file source");
            let file = file_side(n, k, opts.runs).await?;
            report("file", &file);
            eprintln!("== {n} workloads, {k} client(s): Kubernetes API source");
            let api = api_side(n, k, opts).await?;
            report("API", &api);
            size.pairs.push(Pair {
                clients: k,
                file,
                api,
            });
        }
        out.push(size);
    }
    Ok(out)
}

/// Starts a fresh API server (bounded by `kube.sh`'s own limits) and stops it when `measure` is
/// done, also on error; returns how long the start took.
async fn with_api_server<T>(
    measure: impl AsyncFnOnce(&ApiServer) -> Result<T>,
) -> Result<(Duration, T)> {
    let started = Instant::now();
    let server = tokio::task::spawn_blocking(|| ApiServer::start("xds-bench")).await??;
    let setup = started.elapsed();
    let measured = measure(&server).await;
    // `down` waits for the processes to exit: off the async workers. Dropping the server (on a
    // panic) does the same.
    let stopped = tokio::task::spawn_blocking(move || {
        let mut server = server;
        server.stop()
    })
    .await?;
    let measured = measured?;
    stopped?;
    Ok((setup, measured))
}

/// The mesh created on a fresh API server that nothing watches: the API server's share.
async fn writes_alone(n: usize, concurrency: usize) -> Result<Alone> {
    let mesh = ApiMesh::new(n)?;
    let (_, (written, cpu)) = with_api_server(async |server: &ApiServer| {
        let client = control_plane::kube_source::client(Some(server.kubeconfig())).await?;
        let before = Cpu::read(server.dir())?;
        let start = Instant::now();
        tokio::time::timeout(CREATE_LIMIT, mesh.create(client, concurrency))
            .await
            .context("the writes did not finish in time")??;
        let written = start.elapsed();
        Ok((written, Cpu::read(server.dir())?.since(before)))
    })
    .await?;
    Ok(Alone { written, cpu })
}

fn report(source: &str, side: &Side) {
    let i = &side.ingest;
    eprintln!(
        "   {source}: written {:.1} ms, published {:.1} ms, all ACKed {:.1} ms ({} generations, {} seen, translate {:.1} ms); CPU s: API server {:.1}, etcd {:.1}, bench {:.1}",
        ms(i.written),
        ms(i.published),
        ms(i.acked),
        i.generations,
        i.seen,
        i.translate_ms,
        side.cpu.apiserver,
        side.cpu.etcd,
        side.cpu.bench
    );
    for c in &side.changes {
        eprintln!(
            "   {source} change: published {:.1} ms (translate {:.1} ms), all ACKed {:.1} ms",
            ms(c.published),
            c.translate_ms,
            ms(c.acked)
        );
    }
}

/// The manifest directory: empty at start, then the whole mesh written at once.
async fn file_side(n: usize, k: usize, runs: usize) -> Result<Side> {
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let cp = InProcess::start(dir).await?;
    let cpu = || {
        Ok(Cpu {
            bench: kube_mesh::cpu_seconds("self")?,
            ..Cpu::default()
        })
    };
    let create = async { manifests::write_mesh(dir, n) };
    let change = |revision| async move { manifests::set_revision(dir, revision) };
    measure(cp, n, k, runs, cpu, create, change).await
}

/// A fresh API server: empty at start, then the mesh created through it.
async fn api_side(n: usize, k: usize, opts: &Options) -> Result<Side> {
    // The objects are built before anything is timed.
    let mesh = ApiMesh::new(n)?;
    let (setup, mut side) = with_api_server(async |server: &ApiServer| {
        let cp = InProcess::start_kube(server.kubeconfig()).await?;
        let client = match control_plane::kube_source::client(Some(server.kubeconfig())).await {
            Ok(c) => c,
            Err(e) => {
                cp.stop().await;
                return Err(e.into());
            }
        };
        let cpu = || Cpu::read(server.dir());
        let create = mesh.create(client.clone(), opts.concurrency);
        let change = |revision| kube_mesh::set_revision(&client, revision);
        measure(cp, n, k, opts.runs, cpu, create, change).await
    })
    .await?;
    side.setup = Some(setup);
    Ok(side)
}

/// K clients synced on `cp` while it holds nothing; the mesh written by `create` (the CPU of
/// that, from `cpu`); then `runs` changes, each made by `change(revision)`. Stops `cp`.
async fn measure<F: Future<Output = Result<()>>>(
    cp: InProcess,
    n: usize,
    k: usize,
    runs: usize,
    cpu: impl Fn() -> Result<Cpu>,
    create: impl Future<Output = Result<()>>,
    change: impl Fn(u32) -> F,
) -> Result<Side> {
    let measured = async {
        let fleet = Fleet::start(cp.cp.grpc_addr, k, 0)?;
        let result = async {
            fleet.synced(LIMIT).await?;
            let before = cpu()?;
            let ingest = cp.ingest(k, n as u64, CREATE_LIMIT, create).await?;
            let cpu = cpu()?.since(before);
            holding(&cp, &fleet).await?;
            let mut changes = Vec::new();
            for revision in 1..=runs {
                changes.push(cp.change_by(k, change(revision as u32)).await?);
            }
            Ok(Side {
                setup: None,
                ingest,
                cpu,
                changes,
            })
        }
        .await;
        fleet.stop().await;
        result
    }
    .await;
    cp.stop().await;
    measured
}

/// Every client holds what the control plane serves (the API server adds its own `kubernetes`
/// Service, so the count comes from the snapshot), and both policies.
async fn holding(cp: &InProcess, fleet: &Fleet) -> Result<()> {
    let addresses = cp
        .cp
        .source
        .ztunnel_snapshot()
        .resources(xds::type_url::ADDRESS)
        .map_or(0, |m| m.len());
    fleet.holding(addresses, manifests::POLICIES, LIMIT).await
}
