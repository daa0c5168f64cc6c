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
//! Bounded: `--runs` (1-50) repetitions of each measurement, mesh sizes up to 50,000 pods,
//! client counts up to 200; every wait has a 120 s limit. Loopback only.

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
#[path = "../xds_bench/manifests.rs"]
mod manifests;
#[path = "../xds_bench/push.rs"]
mod push;
#[path = "../xds_bench/report.rs"]
mod report;

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
    /// Mesh sizes (pods), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1_000, 10_000])]
    workloads: Vec<usize>,
    /// Client counts, comma-separated; memory is measured with the largest.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 50])]
    clients: Vec<usize>,
    /// Smoke run: 1 run, 500 workloads, 1 and 5 clients (overrides the three options above).
    #[arg(long)]
    quick: bool,
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
    } else {
        (usize::from(cli.runs), cli.workloads, cli.clients)
    };
    if workloads.iter().any(|n| !(1..=50_000).contains(n)) {
        bail!("--workloads: each size must be 1-50000");
    }
    if clients.iter().any(|k| !(1..=200).contains(k)) {
        bail!("--clients: each count must be 1-200");
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let load_before = loadavg();
    let results = runtime.block_on(bench::run(&opts))?;
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "\n# xds-bench: {} run(s), {} workloads, {} clients; {nproc} CPUs; load average before {load_before}, after {}\n",
        opts.runs,
        fmt_list(&opts.workloads),
        fmt_list(&opts.clients),
        loadavg()
    );
    print!("{}", report::markdown(&results, &opts.clients));
    Ok(())
}

fn fmt_list(v: &[usize]) -> String {
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
