//! `meshctl`: run a whole ambient mesh on one Linux machine, and look inside it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use meshctl::paths::{DEFAULT_MESH, MeshPaths};
use meshctl::{client, daemon, demo};

#[derive(Parser)]
#[command(
    name = "meshctl",
    version,
    about = "A whole ambient mesh on one Linux machine, in network namespaces"
)]
struct Cli {
    /// The mesh to act on; several meshes may run side by side.
    #[arg(long, global = true, env = "MESHCTL_MESH", default_value = DEFAULT_MESH)]
    mesh: String,
    /// Where meshes keep their state [default: $MESHCTL_STATE_DIR or /run/meshctl].
    #[arg(long, global = true)]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create the mesh from manifests; returns when every pod runs.
    Up {
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// Number of nodes (overrides the Cluster document; default 2).
        #[arg(long)]
        nodes: Option<u32>,
        /// Seconds to wait for the pods.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// Run the mesh on this Kubernetes API server: the mesh writes its nodes' pods (with status, as
        /// kubelets do) and its objects there, and the control plane reads the cluster from it.
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
    },
    /// Apply new or changed manifests to the running mesh.
    Apply {
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Run a command inside a pod's (NAMESPACE/POD) or a node's (node/NODE) network namespace.
    Exec {
        target: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Nodes, pods, services, waypoints and mesh components.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Remove the mesh: namespaces, links, rules, processes and state.
    Down,
    /// Bring up examples/quickstart, drive traffic, report, and remove it.
    Demo {
        #[arg(short = 'f', long = "filename", default_value = "examples/quickstart")]
        file: PathBuf,
    },
    /// The mesh daemon (started by `up`).
    #[command(hide = true)]
    Daemon,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json_logs = matches!(cli.command, Cmd::Daemon);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if json_logs { "info" } else { "warn" })
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json_logs {
        builder.json().init();
    } else {
        builder.init();
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meshctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!("the local mesh creates network namespaces and needs root (run with sudo)");
    }
    let paths = MeshPaths::new(&cli.mesh, cli.state_dir)?;
    match cli.command {
        Cmd::Up {
            file,
            nodes,
            timeout,
            kubeconfig,
        } => println!(
            "{}",
            client::up(
                &paths,
                &file,
                nodes,
                kubeconfig.as_deref(),
                Duration::from_secs(timeout)
            )?
        ),
        Cmd::Apply { file, timeout } => println!(
            "{}",
            client::apply(&paths, &file, Duration::from_secs(timeout))?
        ),
        Cmd::Exec { target, command } => return Err(client::exec(&paths, &target, &command).into()),
        Cmd::Status { json } => {
            let report = client::status(&paths)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.render());
            }
        }
        Cmd::Down => println!("{}", client::down(&paths)?),
        Cmd::Demo { file } => println!("{}", demo::run(&paths, &file)?),
        Cmd::Daemon => daemon::serve(paths)?,
    }
    Ok(())
}
