//! Waypoint benchmark: HTTP/1.1 keep-alive requests/s and p50/p99 latency (wrk, 50
//! connections, 2 threads) straight to a backend, through Envoy and through our waypoint, both
//! configured by our control plane from the same manifests with an equivalent route and both
//! proxying plain HTTP on loopback; plus each proxy's CPU time per request and resident memory.
//! See `benches/README.md`.
//!
//! Needs wrk in `PATH`, Envoy from `scripts/install-deps.sh` and release builds of
//! `control-plane` and `waypoint` next to this binary. Bounded: `--runs` rounds (1-20) of one
//! `--duration` wrk run (1-60 s) per target, interleaved; every start-up wait has a 60 s limit;
//! all child processes are killed at the end, also on error and ctrl-c. Loopback only
//! (127.0.0.1-3). The hidden `backend` subcommand is the backend, run as a child process.

mod backend;
mod bench;
mod http;
mod manifests;
mod peers;
mod procstat;
mod report;
mod wrk;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use benches::cmd;
use benches::machine::{cpu_model, loadavg};
use clap::{Parser, Subcommand};

use crate::report::Target;

#[derive(Parser)]
#[command(
    name = "waypoint-bench",
    about = "HTTP/1.1 through our waypoint vs Envoy vs direct (wrk), with CPU and memory"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Rounds over the targets; medians are reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=20))]
    runs: u16,
    /// Seconds of each wrk run.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=60))]
    duration: u32,
    /// Seconds of the untimed wrk warm-up of each target before the first round (0: none).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=30))]
    warmup: u32,
    /// wrk connections.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    connections: u32,
    /// wrk threads.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=16))]
    threads: u32,
    /// Targets, in the order each round runs them.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Target::Direct, Target::Envoy, Target::Waypoint])]
    targets: Vec<Target>,
    /// Envoy's `--concurrency` (worker threads).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    envoy_concurrency: u32,
    /// Print JSON (every run and the medians) instead of markdown tables.
    #[arg(long)]
    json: bool,
    /// The control-plane binary [default: control-plane next to this binary].
    #[arg(long, env = "CONTROL_PLANE_BIN")]
    control_plane: Option<PathBuf>,
    /// The waypoint binary [default: waypoint next to this binary].
    #[arg(long, env = "WAYPOINT_BIN")]
    waypoint: Option<PathBuf>,
    /// The Envoy binary [default: .peers/venv/bin/envoy in the workspace].
    #[arg(long, env = "ENVOY_BIN")]
    envoy: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// (internal) The backend: HTTP/1.1 on LISTEN, one thread; prints `listening <addr>`.
    #[command(hide = true)]
    Backend {
        #[arg(long)]
        listen: SocketAddr,
    },
}

fn next_to_me(name: &str) -> Result<PathBuf> {
    Ok(std::env::current_exe()?
        .parent()
        .context("own directory")?
        .join(name))
}

fn envoy_version(envoy: &Path) -> String {
    std::process::Command::new(envoy)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            // "<path>  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL"
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            let (_, v) = text.split_once("version:")?;
            Some(v.split('/').nth(1)?.to_owned())
        })
        .unwrap_or_else(|| "?".into())
}

fn options(cli: Cli) -> Result<bench::Options> {
    if cmd::which("wrk").is_none() {
        bail!("wrk is not in PATH: run scripts/install-deps.sh (as root), or apt-get install wrk");
    }
    let mut targets = Vec::new();
    for t in cli.targets {
        if !targets.contains(&t) {
            targets.push(t);
        }
    }
    let wants = |t| targets.contains(&t);
    let build = "cargo build --release -p control-plane -p waypoint -p benches";
    let placeholder = PathBuf::new();
    let control_plane = if wants(Target::Envoy) || wants(Target::Waypoint) {
        let p = cli
            .control_plane
            .map_or_else(|| next_to_me("control-plane"), Ok)?;
        peers::require(p, "control-plane", build)?
    } else {
        placeholder.clone()
    };
    let waypoint = if wants(Target::Waypoint) {
        let p = cli.waypoint.map_or_else(|| next_to_me("waypoint"), Ok)?;
        peers::require(p, "waypoint", build)?
    } else {
        placeholder.clone()
    };
    let envoy = if wants(Target::Envoy) {
        let default = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.peers/venv/bin/envoy");
        let p = cli.envoy.unwrap_or(default);
        peers::require(
            p,
            "Envoy",
            "run scripts/install-deps.sh (as root) from the workspace root",
        )?
    } else {
        placeholder
    };
    Ok(bench::Options {
        runs: usize::from(cli.runs),
        load: wrk::Load {
            threads: cli.threads,
            connections: cli.connections,
            seconds: cli.duration,
        },
        warmup_seconds: cli.warmup,
        targets,
        control_plane,
        waypoint,
        envoy,
        envoy_concurrency: cli.envoy_concurrency,
    })
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Some(Cmd::Backend { listen }) = cli.command {
        return backend::serve(listen);
    }
    let json = cli.json;
    let opts = options(cli)?;
    cmd::handle_signals("waypoint-bench: stopping (child processes are killed next)")?;
    let load_before = loadavg();
    let results = bench::run(&opts)?;
    for t in &results.targets {
        if !t.log_lines.is_empty() {
            let n = t.log_lines.len();
            eprintln!(
                "{} logged {n} line(s) at warn or above; the last ones:",
                t.target.label()
            );
            for l in &t.log_lines[n.saturating_sub(10)..] {
                eprintln!("  {l}");
            }
        }
    }
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let envoy = if opts.targets.contains(&Target::Envoy) {
        envoy_version(&opts.envoy)
    } else {
        "-".into()
    };
    let l = opts.load;
    if json {
        let mut j = report::json(&results);
        j["machine"] = serde_json::json!({
            "nproc": nproc, "cpu": cpu_model(), "kernel": kernel.trim(),
            "loadavg_before": load_before, "loadavg_after": loadavg(),
        });
        j["options"] = serde_json::json!({
            "runs": opts.runs, "duration_s": l.seconds, "warmup_s": opts.warmup_seconds,
            "connections": l.connections, "threads": l.threads,
            "envoy_concurrency": opts.envoy_concurrency, "envoy_version": envoy,
        });
        println!("{}", serde_json::to_string_pretty(&j)?);
        return Ok(());
    }
    println!(
        "\n# waypoint-bench: {} run(s) of wrk -t{} -c{} -d{}s per target; Envoy {envoy} --concurrency {}; {nproc} CPUs ({}), kernel {}; load average before {load_before}, after {}\n",
        opts.runs,
        l.threads,
        l.connections,
        l.seconds,
        opts.envoy_concurrency,
        cpu_model(),
        kernel.trim(),
        loadavg()
    );
    print!("{}", report::markdown(&results));
    Ok(())
}
