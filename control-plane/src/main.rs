//! `control-plane`: serves the mesh's xDS and CA from a manifest directory.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "control-plane",
    version,
    about = "The mesh control plane: manifests → xDS for node tunnels, waypoints, Envoy and proxyless gRPC; plus the Istio CA"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Watch a manifest directory and serve xDS (SotW and delta ADS) and the Istio CA.
    Serve(control_plane::serve::ServeArgs),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("control-plane: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => {
                let (tx, rx) = tokio::sync::watch::channel(false);
                tokio::spawn(async move {
                    use tokio::signal::unix::{SignalKind, signal};
                    if let (Ok(mut term), Ok(mut int)) = (
                        signal(SignalKind::terminate()),
                        signal(SignalKind::interrupt()),
                    ) {
                        tokio::select! {
                            _ = term.recv() => {}
                            _ = int.recv() => {}
                        }
                        tx.send_replace(true);
                    }
                });
                control_plane::serve::run(args, rx).await
            }
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("control-plane: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
