//! The node agent: parses its configuration, starts logging and the runtime, and runs [`cni_plugin::agent`].

use clap::Parser;
use cni_plugin::agent::{self, AgentConfig};

fn main() -> anyhow::Result<()> {
    let cfg = AgentConfig::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    if cfg.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(agent::run(cfg))?;
    Ok(())
}
