//! `ztunnel`: reads the environment (spec §13), sets up logging and the runtime, and runs
//! [`ztunnel::app::run`].

use ztunnel::config::Config;

fn main() -> std::process::ExitCode {
    let logging = match ztunnel::telemetry::logging::init_from_env() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ztunnel: logging: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "invalid configuration");
            return std::process::ExitCode::from(2);
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
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(ztunnel::app::run(config, logging)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "ztunnel failed");
            std::process::ExitCode::FAILURE
        }
    }
}
