//! `ztunnel`: reads the environment (spec §13), sets up logging and the runtime, and runs
//! [`ztunnel::app::run`]. Configured by environment variables only, like Istio's ztunnel; the
//! command line takes `version` (what Istio's tooling calls), `--help` and `--version`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ztunnel::config::{Config, vars};
use ztunnel::version::BuildInfo;

#[derive(Parser)]
#[command(
    name = "ztunnel",
    version,
    about = "The node tunnel of the ambient mesh: per-node L4 data path (HBONE, in-pod capture, L4 authorization)",
    after_help = env_help()
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node tunnel (the default). Istio's chart runs `ztunnel proxy ztunnel`.
    Proxy {
        /// The proxy mode: `ztunnel` (a node's shared tunnel) is the only one.
        #[arg(value_parser = ["ztunnel"])]
        mode: Option<String>,
    },
    /// Print the build information, as Istio's ztunnel does.
    Version,
}

fn env_help() -> String {
    format!(
        "Configuration (environment variables; empty counts as unset):\n{}",
        vars::help(vars::ALL)
    )
}

fn main() -> ExitCode {
    // Usage errors exit 2; --help and --version exit 0.
    match Cli::parse().command {
        None | Some(Command::Proxy { .. }) => proxy(),
        Some(Command::Version) => {
            println!("{}", BuildInfo::from_env());
            ExitCode::SUCCESS
        }
    }
}

fn proxy() -> ExitCode {
    let logging = match ztunnel::telemetry::logging::init_from_env() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ztunnel: logging: {e}");
            return ExitCode::from(2);
        }
    };
    tracing::info!(version = %BuildInfo::from_env(), "starting");
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "invalid configuration (see ztunnel --help)");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.worker_threads)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "starting the runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(ztunnel::app::run(config, logging)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "ztunnel failed");
            ExitCode::FAILURE
        }
    }
}
