//! xDS / control plane benchmark: how long a manifest change takes to reach node tunnels, and
//! what a full push costs. In one process it starts the control plane in-process over a
//! generated manifest directory of N pods, connects K delta ADS clients (`xds::client`, each
//! decoding and converting every `Address` like ztunnel's boundary) and measures, per N:
//! the full push to a raw stream (time, bytes), the initial sync of K clients, and rename → all
//! K ACKed for a one-label change (with the control plane's own translate time). The baseline
//! in the same run is the same configuration as ztunnel's local config file (write + load).
//! Memory comes from the real `control-plane` binary run as a child process with the most
//! clients. See `benches/README.md`.
//!
//! `--api` runs instead a comparison of the file source with the Kubernetes source (a real
//! kube-apiserver from `scripts/kube.sh`): the whole mesh created → all clients ACKed, and one
//! changed pod → all ACKed, for both sources in the same run.
//!
//! Bounded: `--runs` (1-50) repetitions of each measurement, mesh sizes up to 50,000 pods,
//! client counts up to 200; every wait has a 120 s limit (600 s for creating a whole mesh).
//! Loopback only.

/// The tests crate's API server harness (`scripts/kube.sh up`/`down`, down on drop), compiled in
/// by path as cni-plugin's end-to-end tests do: a dependency on the tests crate would build the
/// whole local mesh.
#[path = "../../../tests/src/kube.rs"]
#[allow(dead_code, unreachable_pub)]
mod apiserver;
#[path = "../xds_bench/baseline.rs"]
mod baseline;
#[path = "../xds_bench/bench.rs"]
mod bench;
#[path = "../xds_bench/child.rs"]
mod child;
#[path = "../xds_bench/clients.rs"]
mod clients;
#[path = "../xds_bench/inproc.rs"]
mod inproc;
#[path = "../xds_bench/kube_costs.rs"]
mod kube_costs;
#[path = "../xds_bench/kube_mesh.rs"]
mod kube_mesh;
#[path = "../xds_bench/manifests.rs"]
mod manifests;
#[path = "../xds_bench/push.rs"]
mod push;
#[path = "../xds_bench/report.rs"]
mod report;
#[path = "../xds_bench/sources.rs"]
mod sources;
#[path = "../xds_bench/sources_report.rs"]
mod sources_report;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "xds-bench",
    about = "control plane → node tunnel xDS: push, sync, change → ACK, memory"
)]
struct Cli {
    /// Repetitions of each measurement; medians are reported.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=50))]
    runs: u16,
    /// Mesh sizes (pods), comma-separated [default: 1000,10000; with --api: 10000].
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<usize>,
    /// Client counts, comma-separated; memory is measured with the largest.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 50])]
    clients: Vec<usize>,
    /// Smoke run: 1 run, 500 workloads, 1 and 5 clients (overrides the three options above).
    #[arg(long)]
    quick: bool,
    /// Instead of the default run: the file source against the Kubernetes API source (a real
    /// API server from `scripts/kube.sh up`), whole mesh created → ACK and change → ACK.
    #[arg(long)]
    api: bool,
    /// With --api: API requests in flight while the mesh is created.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=256))]
    concurrency: u16,
    /// The control-plane binary [default: control-plane next to this binary].
    #[arg(long, env = "CONTROL_PLANE_BIN")]
    control_plane: Option<PathBuf>,
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let (runs, workloads, clients) = if cli.quick {
        (1, vec![500], vec![1, 5])
    } else if cli.workloads.is_empty() {
        let default = if cli.api {
            vec![10_000]
        } else {
            vec![1_000, 10_000]
        };
        (usize::from(cli.runs), default, cli.clients.clone())
    } else {
        (
            usize::from(cli.runs),
            cli.workloads.clone(),
            cli.clients.clone(),
        )
    };
    if workloads.iter().any(|n| !(1..=50_000).contains(n)) {
        bail!("--workloads: each size must be 1-50000");
    }
    if clients.iter().any(|k| !(1..=200).contains(k)) {
        bail!("--clients: each count must be 1-200");
    }
    if cli.api {
        return api(sources::Options {
            runs,
            workloads,
            clients,
            concurrency: usize::from(cli.concurrency),
        });
    }
    let control_plane = match cli.control_plane {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .context("own directory")?
            .join("control-plane"),
    };
    if !control_plane.is_file() {
        bail!(
            "{} not found: build it with `cargo build --release -p control-plane`, or pass --control-plane",
            control_plane.display()
        );
    }
    let opts = bench::Options {
        runs,
        workloads,
        clients,
        control_plane,
    };
    let load_before = loadavg();
    let results = runtime()?.block_on(bench::run(&opts))?;
    println!(
        "\n# xds-bench: {} run(s), {} workloads, {} clients; {} CPUs; load average before {load_before}, after {}\n",
        opts.runs,
        fmt_list(&opts.workloads),
        fmt_list(&opts.clients),
        nproc(),
        loadavg()
    );
    print!("{}", report::markdown(&results, &opts.clients));
    Ok(())
}

/// `--api`: the file source against the Kubernetes source.
fn api(opts: sources::Options) -> Result<()> {
    let load_before = loadavg();
    let sizes = runtime()?.block_on(sources::run(&opts))?;
    println!(
        "\n# xds-bench --api: {} change run(s), {} workloads, {} clients, {} API requests in flight; {} CPUs; load average before {load_before}, after {}\n",
        opts.runs,
        fmt_list(&opts.workloads),
        fmt_list(&opts.clients),
        opts.concurrency,
        nproc(),
        loadavg()
    );
    print!("{}", sources_report::markdown(&sizes));
    Ok(())
}

/// The runtime both modes run on (two workers).
fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn nproc() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

fn fmt_list(v: &[usize]) -> String {
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
