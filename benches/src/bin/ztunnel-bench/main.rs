//! ztunnel benchmark in the local mesh: one stream's iperf3 throughput and 64-byte
//! request/response latency (p50/p99) between pods on two nodes, direct (a namespace that is
//! not captured) and through ztunnel (an ambient namespace: client → node1 ztunnel → HBONE →
//! node2 ztunnel → server), in the same run, plus ztunnel's RSS idle and under load.
//! See `benches/README.md`.
//!
//! Needs root and release builds of meshctl, ztunnel and cni-plugin next to this binary (or
//! `MESHCTL_BIN`). Bounded: `--runs` repetitions (1-20) of a `--seconds` iperf3 run (1-60) and
//! `--round-trips` round trips (100-1,000,000) per path; the mesh is removed at the end, also
//! on error and ctrl-c. The `echo-server` and `rr-client` subcommands run inside the pods.

mod bench;
mod iperf;
mod manifests;
mod mesh;
mod report;
mod rr;
mod rss;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use benches::cmd;
use benches::machine::{cpu_model, loadavg};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ztunnel-bench",
    about = "ztunnel vs direct, in one local mesh run"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Repetitions of each measurement; medians are reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=20))]
    runs: u16,
    /// Length of each iperf3 run.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=60))]
    seconds: u32,
    /// Timed 64-byte round trips per RR run (plus 10 % untimed warm-up).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(100..=1_000_000))]
    round_trips: u32,
    /// The meshctl binary [default: meshctl next to this binary].
    #[arg(long, env = "MESHCTL_BIN")]
    meshctl: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// (in a server pod) Echo 64-byte messages on PORT.
    EchoServer {
        #[arg(long)]
        port: u16,
    },
    /// (in a client pod) Time COUNT 64-byte round trips to ADDR; prints JSON.
    RrClient {
        addr: SocketAddr,
        #[arg(long, value_parser = clap::value_parser!(u32).range(100..=1_000_000))]
        count: u32,
    },
}

/// Effective uid 0, from `/proc/self/status` (`Uid: real effective saved fs`).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Uid:"))?;
            Some(line.split_whitespace().nth(2)? == "0")
        })
        .unwrap_or(false)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Cmd::EchoServer { port }) => return rr::echo_server(port),
        Some(Cmd::RrClient { addr, count }) => return rr::rr_client(addr, count as usize),
        None => {}
    }
    if !is_root() {
        bail!("ztunnel-bench needs root (it creates network namespaces through meshctl)");
    }
    let meshctl = match cli.meshctl {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .context("own directory")?
            .join("meshctl"),
    };
    let opts = bench::Options {
        runs: usize::from(cli.runs),
        seconds: cli.seconds,
        round_trips: cli.round_trips as usize,
        meshctl,
    };
    cmd::handle_signals("ztunnel-bench: stopping (the mesh is removed next)")?;
    let load_before = loadavg();
    let results = bench::run(&opts)?;
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!(
        "\n# ztunnel-bench: {} run(s), iperf3 -t {} -P 1, {} x 64-byte round trips; {nproc} CPUs ({}), kernel {}; load average before {load_before}, after {}\n",
        opts.runs,
        opts.seconds,
        opts.round_trips,
        cpu_model(),
        kernel.trim(),
        loadavg()
    );
    print!("{}", report::markdown(&results));
    Ok(())
}
