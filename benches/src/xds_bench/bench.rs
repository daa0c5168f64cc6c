//! The measurement plan for one mesh size: the in-process control plane (push, initial sync
//! and change → ACK for each client count, the local-config baseline), then the real binary as
//! a child process (memory with the most clients). Every wait is bounded by [`LIMIT`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use xds::type_url;

use super::baseline::{self, FileRound};
use super::child::Child;
use super::clients::Fleet;
use super::inproc::{Change, InProcess, LIMIT};
use super::manifests;
use super::push::{self, Push};

pub(crate) struct Options {
    pub(crate) runs: usize,
    pub(crate) workloads: Vec<usize>,
    pub(crate) clients: Vec<usize>,
    pub(crate) control_plane: PathBuf,
}

/// Control-plane memory over one child run, in KiB.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Memory {
    /// After the first translation, no client connected.
    pub(crate) idle_rss: u64,
    /// After every client synced.
    pub(crate) synced_rss: u64,
    /// The peak (`VmHWM`) by then.
    pub(crate) peak: u64,
    /// 2 s after every client disconnected (and the server listed none).
    pub(crate) after_rss: u64,
    /// After the same number of new clients synced again.
    pub(crate) second_rss: u64,
    /// The first initial sync against the child, for comparison with the in-process one.
    pub(crate) sync: Duration,
}

/// Everything measured for one mesh size.
pub(crate) struct SizeResult {
    pub(crate) workloads: usize,
    pub(crate) addresses: usize,
    pub(crate) first_translate_ms: f64,
    /// One sample of the control plane's load, step by step: read, parse, translate.
    pub(crate) breakdown: [Duration; 3],
    pub(crate) pushes: Vec<Push>,
    pub(crate) sync: BTreeMap<usize, Vec<Duration>>,
    pub(crate) changes: BTreeMap<usize, Vec<Change>>,
    pub(crate) files: Vec<FileRound>,
    pub(crate) memory_clients: usize,
    pub(crate) memory: Vec<Memory>,
}

/// One mesh size being measured: its directory, the fresh node ids and pod 0's revision.
struct Size<'a> {
    opts: &'a Options,
    dir: tempfile::TempDir,
    addresses: usize,
    next_id: usize,
    revision: u32,
}

impl Size<'_> {
    /// `n` node ids never used before.
    fn ids(&mut self, n: usize) -> usize {
        self.next_id += n;
        self.next_id - n
    }
}

pub(crate) async fn run(opts: &Options) -> Result<Vec<SizeResult>> {
    let mut out = Vec::new();
    for &n in &opts.workloads {
        let dir = tempfile::tempdir()?;
        manifests::write_mesh(dir.path(), n)?;
        let mut size = Size {
            opts,
            dir,
            addresses: n + manifests::SERVICES,
            next_id: 0,
            revision: 0,
        };
        let mut result = SizeResult {
            workloads: n,
            addresses: size.addresses,
            first_translate_ms: 0.0,
            breakdown: breakdown(size.dir.path())?,
            pushes: Vec::new(),
            sync: BTreeMap::new(),
            changes: BTreeMap::new(),
            files: Vec::new(),
            memory_clients: opts.clients.iter().copied().max().unwrap_or(1),
            memory: Vec::new(),
        };
        eprintln!("== {n} workloads: in-process control plane");
        in_process(&mut size, &mut result).await?;
        eprintln!(
            "== {n} workloads: control-plane binary, {} clients",
            result.memory_clients
        );
        for _ in 0..opts.runs {
            let m = child_memory(&mut size, result.memory_clients).await?;
            eprintln!(
                "   RSS KiB: idle {}, synced {}, peak {}, after disconnect {}, second sync {}; sync {:.1} ms",
                m.idle_rss,
                m.synced_rss,
                m.peak,
                m.after_rss,
                m.second_rss,
                ms(m.sync)
            );
            result.memory.push(m);
        }
        out.push(result);
    }
    Ok(out)
}

async fn in_process(size: &mut Size<'_>, result: &mut SizeResult) -> Result<()> {
    let cp = InProcess::start(size.dir.path()).await?;
    result.first_translate_ms = cp.translate_ms();
    let addr = cp.cp.grpc_addr;
    // One untimed push first: the first stream pays for lazily built state.
    push::full_push(addr, size.ids(1), LIMIT).await?;
    for _ in 0..size.opts.runs {
        let p = push::full_push(addr, size.ids(1), LIMIT).await?;
        if p.resources != size.addresses {
            bail!(
                "a full push carried {} of {} addresses",
                p.resources,
                size.addresses
            );
        }
        eprintln!("   push: {:.1} ms, {} bytes", ms(p.time), p.bytes);
        result.pushes.push(p);
    }
    for &k in &size.opts.clients.clone() {
        for _ in 0..size.opts.runs {
            let fleet_start = Instant::now();
            let fleet = Fleet::start(addr, k, size.ids(k))?;
            let sync = fleet.synced(LIMIT).await?.duration_since(fleet_start);
            check_held(&fleet, k, size.addresses)?;
            size.revision += 1;
            let change = cp.change(size.dir.path(), size.revision, k).await?;
            fleet.stop().await;
            eprintln!(
                "   K={k}: sync {:.1} ms; change: published {:.1} ms (translate {:.1} ms), all ACKed {:.1} ms",
                ms(sync),
                ms(change.published),
                change.translate_ms,
                ms(change.acked)
            );
            result.sync.entry(k).or_default().push(sync);
            result.changes.entry(k).or_default().push(change);
        }
    }
    let config = baseline::local_config(&cp.cp.source.ztunnel_snapshot())?;
    let file = size.dir.path().join("local-config.json.out");
    for _ in 0..size.opts.runs {
        result.files.push(baseline::round(&config, &file)?);
    }
    std::fs::remove_file(&file)?;
    cp.stop().await;
    Ok(())
}

/// What `control_plane::watcher::load` does, timed step by step.
fn breakdown(dir: &Path) -> Result<[Duration; 3]> {
    let start = Instant::now();
    let files = control_plane::manifest::read_path(dir)?;
    let read = start.elapsed();
    let start = Instant::now();
    let objects = control_plane::manifest::parse_files(&files)?;
    let parse = start.elapsed();
    let start = Instant::now();
    let options = control_plane::translate::Options::default();
    let t = control_plane::translate::translate(&objects, &options)?;
    let translate = start.elapsed();
    drop(t);
    Ok([read, parse, translate])
}

/// Every client holds every Address and policy, and none NACKed.
fn check_held(fleet: &Fleet, k: usize, addresses: usize) -> Result<()> {
    for i in 0..k {
        let (held, nacks) = fleet.held(i, type_url::ADDRESS)?;
        let (policies, _) = fleet.held(i, type_url::AUTHORIZATION)?;
        if held != addresses || policies != manifests::POLICIES || nacks != 0 {
            bail!(
                "client {i} holds {held} of {addresses} addresses and {policies} of {} policies, {nacks} NACKs",
                manifests::POLICIES
            );
        }
    }
    Ok(())
}

/// A fresh child: idle, `k` clients synced, disconnected, `k` new clients synced.
async fn child_memory(size: &mut Size<'_>, k: usize) -> Result<Memory> {
    let child = Child::start(&size.opts.control_plane, size.dir.path(), LIMIT)?;
    child.ready(LIMIT)?;
    let (idle_rss, _) = child.memory_kib()?;
    let start = Instant::now();
    let fleet = Fleet::start(child.grpc, k, size.ids(k))?;
    let sync = fleet.synced(LIMIT).await?.duration_since(start);
    check_held(&fleet, k, size.addresses)?;
    let (synced_rss, peak) = child.memory_kib()?;
    fleet.stop().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let connected = child.connected_clients()?;
    if connected != 0 {
        bail!("the control plane still lists {connected} clients 2 s after they left");
    }
    let (after_rss, _) = child.memory_kib()?;
    let fleet = Fleet::start(child.grpc, k, size.ids(k))?;
    fleet.synced(LIMIT).await?;
    let (second_rss, _) = child.memory_kib()?;
    fleet.stop().await;
    Ok(Memory {
        idle_rss,
        synced_rss,
        peak,
        after_rss,
        second_rss,
        sync,
    })
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
