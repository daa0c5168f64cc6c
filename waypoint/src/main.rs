//! `waypoint`: reads its environment (see `config.rs`) and runs until SIGTERM. Configured by
//! environment variables only; the command line takes `--help` and `--version`.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use waypoint::config::{Config, vars};

#[derive(Parser)]
#[command(
    name = "waypoint",
    version,
    about = "The waypoint of the ambient mesh: per-namespace L7 proxy (HBONE in, HTTP routing and policy, HBONE out)",
    after_help = format!(
        "Configuration (environment variables; empty counts as unset):\n{}",
        vars::help(vars::ALL)
    )
)]
struct Cli {}

fn main() -> ExitCode {
    // Usage errors exit 2; --help and --version exit 0.
    let Cli {} = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env(vars::RUST_LOG.name)
                .unwrap_or_else(|_| EnvFilter::new(vars::RUST_LOG.default)),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = match Config::from_env(|k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("waypoint: {e} (see waypoint --help)");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("waypoint: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(waypoint::app::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("waypoint: {e:#}");
            ExitCode::FAILURE
        }
    }
}
