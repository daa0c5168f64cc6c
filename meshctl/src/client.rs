//! The CLI side of each `meshctl` command: read and check manifests before anything is created, start or reach
//! the mesh daemon, and clean up even when the daemon is gone.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cluster::ClusterConfig;
use crate::control::{self, Request, Response};
use crate::error::Error;
use crate::manifest::{self, ClusterSpec, ManifestError, Object};
use crate::paths::MeshPaths;
use crate::status::StatusReport;
use crate::{netns, plan, topology};

/// `meshctl up`: returns the daemon's summary once every pod runs.
pub fn up(
    paths: &MeshPaths,
    path: &Path,
    nodes: Option<u32>,
    kubeconfig: Option<&Path>,
    timeout: Duration,
) -> Result<String, Error> {
    if let Some(pid) = daemon_alive(paths) {
        return Err(Error::Mesh {
            mesh: paths.name.clone(),
            detail: format!(
                "is already up (daemon pid {pid}); run `meshctl down` first (or pick another name with --mesh)"
            ),
        });
    }
    let files = manifest::read_path(path)?;
    let objects = manifest::parse_files(&files)?;
    let cluster = cluster_config(&objects, nodes)?;
    plan::build(&cluster, &[], &objects, &plan::Existing::default())?;
    if paths.root.exists() || !netns::list_with_prefix(&paths.netns_prefix()).is_empty() {
        eprintln!(
            "meshctl: removing what a previous mesh {:?} left behind",
            paths.name
        );
        for e in topology::teardown(paths, Duration::from_secs(2)) {
            eprintln!("meshctl: {e}");
        }
    }
    spawn_daemon(paths, kubeconfig)?;
    let request = Request::Up {
        cluster,
        files,
        timeout_secs: timeout.as_secs(),
    };
    answer(paths, control::call(paths, &request)?)
}

/// The pid of the mesh's daemon if one is alive: its socket accepts, or the pid it recorded still runs meshctl.
pub fn daemon_alive(paths: &MeshPaths) -> Option<i32> {
    let recorded = std::fs::read_to_string(paths.state_file())
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("daemonPid")?.as_i64())
        .and_then(|p| i32::try_from(p).ok())
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("meshctl"))
        });
    if std::os::unix::net::UnixStream::connect(paths.control_socket()).is_ok() {
        return Some(recorded.unwrap_or(-1));
    }
    recorded
}

/// The cluster from the (at most one) `Cluster` document and `--nodes`.
fn cluster_config(
    objects: &[manifest::ManifestObject],
    nodes: Option<u32>,
) -> Result<ClusterConfig, Error> {
    let mut specs = objects
        .iter()
        .filter(|o| matches!(o.object, Object::Cluster(_)));
    let spec = match specs.next() {
        Some(first) => {
            if let Some(second) = specs.next() {
                return Err(ManifestError::at(
                    second,
                    "kind",
                    format!("a second Cluster document (first in {})", first.source),
                )
                .into());
            }
            match &first.object {
                Object::Cluster(c) => c.spec.clone(),
                _ => ClusterSpec::default(),
            }
        }
        None => ClusterSpec::default(),
    };
    Ok(ClusterConfig::from_spec(&spec, nodes)?)
}

fn spawn_daemon(paths: &MeshPaths, kubeconfig: Option<&Path>) -> Result<(), Error> {
    std::fs::create_dir_all(&paths.root).map_err(|e| Error::file(&paths.root, e))?;
    let log_path = paths.daemon_log();
    let log = std::fs::File::create(&log_path).map_err(|e| Error::file(&log_path, e))?;
    let log2 = log.try_clone().map_err(|e| Error::file(&log_path, e))?;
    let exe = std::env::current_exe().map_err(|e| Error::file(Path::new("/proc/self/exe"), e))?;
    let base = paths.root.parent().unwrap_or(Path::new("/"));
    let mut cmd = Command::new(exe);
    cmd.args(["--mesh", &paths.name, "--state-dir"])
        .arg(base)
        .arg("daemon")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2));
    if let Some(k) = kubeconfig {
        let k = std::fs::canonicalize(k).map_err(|e| Error::file(k, e))?;
        cmd.env(crate::daemon::KUBECONFIG_ENV, k);
    } else {
        cmd.env_remove(crate::daemon::KUBECONFIG_ENV);
    }
    // SAFETY: setsid(2) is async-signal-safe; the daemon leaves the CLI's session so it outlives the CLI.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().map_err(|e| Error::Mesh {
        mesh: paths.name.clone(),
        detail: format!("cannot start the daemon: {e}"),
    })?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if paths.control_socket().exists() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(Error::Mesh {
                mesh: paths.name.clone(),
                detail: format!("the daemon exited ({status}): {log}"),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(Error::Mesh {
        mesh: paths.name.clone(),
        detail: "the daemon did not open its control socket within 10s".into(),
    })
}

fn answer(paths: &MeshPaths, response: Response) -> Result<String, Error> {
    match response {
        Response::Done { message } => Ok(message),
        Response::Failed { message } => Err(Error::Mesh {
            mesh: paths.name.clone(),
            detail: message,
        }),
        Response::Status { report } => Ok(report.render()),
    }
}

/// `meshctl apply`: checks the manifests here first, then lets the daemon apply them.
pub fn apply(paths: &MeshPaths, path: &Path, timeout: Duration) -> Result<String, Error> {
    let files = manifest::read_path(path)?;
    manifest::parse_files(&files)?;
    answer(
        paths,
        control::call(
            paths,
            &Request::Apply {
                files,
                timeout_secs: timeout.as_secs(),
            },
        )?,
    )
}

/// `meshctl status`.
pub fn status(paths: &MeshPaths) -> Result<StatusReport, Error> {
    match control::call(paths, &Request::Status) {
        Ok(Response::Status { report }) => Ok(*report),
        Ok(other) => Err(Error::Mesh {
            mesh: paths.name.clone(),
            detail: answer(paths, other).unwrap_or_default(),
        }),
        Err(e) if paths.root.exists() => Err(Error::Mesh {
            mesh: paths.name.clone(),
            detail: format!("{e}; its daemon is gone: `meshctl down` removes what is left"),
        }),
        Err(_) => Err(Error::Mesh {
            mesh: paths.name.clone(),
            detail: "is not up".into(),
        }),
    }
}

/// `meshctl down`: asks the daemon, or removes everything itself when the daemon is gone; then checks that no
/// namespace of the mesh is left.
pub fn down(paths: &MeshPaths) -> Result<String, Error> {
    let message = match control::call(paths, &Request::Down) {
        Ok(response) => answer(paths, response)?,
        Err(_) => {
            let errors = topology::teardown(paths, Duration::from_secs(5));
            if let Some(e) = errors.into_iter().next() {
                return Err(e);
            }
            format!("mesh {} removed", paths.name)
        }
    };
    let left = netns::list_with_prefix(&paths.netns_prefix());
    if !left.is_empty() || paths.root.exists() {
        return Err(Error::Mesh {
            mesh: paths.name.clone(),
            detail: format!(
                "still present after down: namespaces {left:?}, state dir exists: {}",
                paths.root.exists()
            ),
        });
    }
    Ok(message)
}

/// `meshctl exec NAMESPACE/POD -- CMD…` or `meshctl exec node/NODE -- CMD…`: replaces this process with CMD
/// inside that network namespace, so stdio and the exit code pass through. Returns only on error.
pub fn exec(paths: &MeshPaths, target: &str, argv: &[String]) -> Error {
    let Some((scope, name)) = target.split_once('/') else {
        return Error::Usage(format!("{target:?}: use NAMESPACE/POD or node/NODE"));
    };
    let ns = if scope == "node" {
        paths.node_netns(name)
    } else {
        paths.pod_netns(scope, name)
    };
    if !netns::exists(&ns) {
        let what = if scope == "node" { "node" } else { "pod" };
        return Error::Mesh {
            mesh: paths.name.clone(),
            detail: format!("no {what} {target:?} (no network namespace {ns})"),
        };
    }
    let Some((program, args)) = argv.split_first() else {
        return Error::Usage("exec needs a command after --".into());
    };
    if let Err(e) = netns::enter_current_thread(&ns) {
        return e;
    }
    let err = Command::new(program).args(args).exec();
    Error::Command {
        command: program.clone(),
        detail: err.to_string(),
    }
}
