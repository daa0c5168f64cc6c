//! Runs a pod's containers as processes inside the pod's network namespace and reports their state, as a kubelet
//! would: restart policy with back-off, exit codes, logs in the pod's directory, graceful stop.
//!
//! One thread per container waits on its process. Each process leads its own session, so stopping a container
//! signals its whole process group.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::manifest::RestartPolicy;
use crate::plan::Name;

/// A container to run.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    pub name: String,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<PathBuf>,
    pub log: PathBuf,
}

/// A container's state, with Kubernetes' vocabulary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    tag = "state"
)]
pub enum ContainerState {
    Waiting { reason: String },
    Running { pid: i32 },
    Terminated { exit_code: i32, reason: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    pub name: String,
    #[serde(flatten)]
    pub state: ContainerState,
    pub restart_count: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_exit_code: Option<i32>,
}

/// A stop request that wakes back-off sleeps.
#[derive(Default)]
struct StopFlag {
    stopped: Mutex<bool>,
    cv: Condvar,
}

impl StopFlag {
    fn is_set(&self) -> bool {
        *lock(&self.stopped)
    }
    fn set(&self) {
        *lock(&self.stopped) = true;
        self.cv.notify_all();
    }
    /// Sleeps up to `d`; true if stopped meanwhile.
    fn sleep(&self, d: Duration) -> bool {
        let guard = lock(&self.stopped);
        let (guard, _) = self
            .cv
            .wait_timeout_while(guard, d, |s| !*s)
            .unwrap_or_else(|e| e.into_inner());
        *guard
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct PodEntry {
    statuses: Arc<Mutex<Vec<ContainerStatus>>>,
    stop: Arc<StopFlag>,
    threads: Vec<JoinHandle<()>>,
}

/// All supervised pods of a mesh.
#[derive(Default)]
pub struct Supervisor {
    pods: Mutex<BTreeMap<Name, PodEntry>>,
}

impl Supervisor {
    /// Starts the containers of a pod inside network namespace `netns`.
    pub fn start(
        &self,
        pod: Name,
        netns: String,
        policy: RestartPolicy,
        containers: Vec<ContainerSpec>,
    ) {
        let statuses = Arc::new(Mutex::new(
            containers
                .iter()
                .map(|c| ContainerStatus {
                    name: c.name.clone(),
                    state: ContainerState::Waiting {
                        reason: "ContainerCreating".into(),
                    },
                    restart_count: 0,
                    last_exit_code: None,
                })
                .collect(),
        ));
        let stop = Arc::new(StopFlag::default());
        let threads = containers
            .into_iter()
            .enumerate()
            .map(|(i, spec)| {
                let (statuses, stop, netns) = (statuses.clone(), stop.clone(), netns.clone());
                std::thread::spawn(move || run_container(i, spec, netns, policy, statuses, stop))
            })
            .collect();
        lock(&self.pods).insert(
            pod,
            PodEntry {
                statuses,
                stop,
                threads,
            },
        );
    }

    pub fn statuses(&self, pod: &Name) -> Option<Vec<ContainerStatus>> {
        lock(&self.pods).get(pod).map(|e| lock(&e.statuses).clone())
    }

    /// Stops pods: SIGTERM to each container's process group, SIGKILL after `grace`; returns when all exited.
    pub fn stop(&self, pods: &[Name], grace: Duration) {
        let entries: Vec<PodEntry> = {
            let mut map = lock(&self.pods);
            pods.iter().filter_map(|p| map.remove(p)).collect()
        };
        let pids = |e: &PodEntry| -> Vec<Pid> {
            lock(&e.statuses)
                .iter()
                .filter_map(|s| match s.state {
                    ContainerState::Running { pid } => Some(Pid::from_raw(pid)),
                    _ => None,
                })
                .collect()
        };
        for e in &entries {
            e.stop.set();
            for pid in pids(e) {
                let _ = nix::sys::signal::killpg(pid, Signal::SIGTERM);
            }
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && entries.iter().any(|e| !pids(e).is_empty()) {
            std::thread::sleep(Duration::from_millis(20));
        }
        for e in &entries {
            for pid in pids(e) {
                let _ = nix::sys::signal::killpg(pid, Signal::SIGKILL);
            }
        }
        for e in entries {
            for t in e.threads {
                let _ = t.join();
            }
        }
    }

    pub fn pods(&self) -> Vec<Name> {
        lock(&self.pods).keys().cloned().collect()
    }
}

fn run_container(
    index: usize,
    spec: ContainerSpec,
    netns: String,
    policy: RestartPolicy,
    statuses: Arc<Mutex<Vec<ContainerStatus>>>,
    stop: Arc<StopFlag>,
) {
    let set = |state: ContainerState| {
        if let Some(s) = lock(&statuses).get_mut(index) {
            s.state = state;
        }
    };
    let mut backoff = Duration::from_secs(1);
    loop {
        if stop.is_set() {
            return;
        }
        let (exit_code, reason) = match spawn(&spec, &netns) {
            Ok(mut child) => {
                set(ContainerState::Running {
                    pid: child.id() as i32,
                });
                match child.wait() {
                    Ok(st) => match (st.code(), st.signal()) {
                        (Some(0), _) => (0, "Completed".to_string()),
                        (Some(c), _) => (c, "Error".to_string()),
                        (None, Some(sig)) => (128 + sig, format!("Killed by signal {sig}")),
                        (None, None) => (128, "Error".to_string()),
                    },
                    Err(e) => (128, format!("wait failed: {e}")),
                }
            }
            Err(e) => (128, format!("StartError: {e}")),
        };
        tracing::info!(container = %spec.name, exit_code, reason = %reason, "container exited");
        set(ContainerState::Terminated { exit_code, reason });
        if let Some(s) = lock(&statuses).get_mut(index) {
            s.last_exit_code = Some(exit_code);
        }
        let restart = match policy {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => exit_code != 0,
            RestartPolicy::Never => false,
        };
        if !restart || stop.is_set() {
            return;
        }
        if let Some(s) = lock(&statuses).get_mut(index) {
            s.restart_count += 1;
            s.state = ContainerState::Waiting {
                reason: "CrashLoopBackOff".into(),
            };
        }
        if stop.sleep(backoff) {
            return;
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

fn spawn(spec: &ContainerSpec, netns: &str) -> Result<std::process::Child, String> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log)
        .map_err(|e| e.to_string())?;
    let log2 = log.try_clone().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(&spec.argv[0]);
    cmd.args(&spec.argv[1..])
        .env_clear()
        .envs(spec.env.iter().cloned());
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2));
    if let Some(dir) = &spec.working_dir {
        cmd.current_dir(dir);
    }
    // An empty netns name means the daemon's own (root) namespace.
    let guard = if netns.is_empty() {
        None
    } else {
        Some(crate::netns::enter_on_exec(&mut cmd, netns).map_err(|e| e.to_string())?)
    };
    // SAFETY: setsid(2) is async-signal-safe; it makes the container its own process group so it can be stopped
    // as a whole.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    let child = cmd.spawn().map_err(|e| format!("{}: {e}", spec.argv[0]));
    drop(guard);
    child
}

/// The pod phase from its containers: Running while any runs or will restart, Succeeded when all completed,
/// Failed when all stopped and one failed, Pending before the first start.
pub fn phase(statuses: &[ContainerStatus]) -> &'static str {
    let running = statuses
        .iter()
        .any(|s| matches!(s.state, ContainerState::Running { .. }));
    let restarting = statuses.iter().any(
        |s| matches!(&s.state, ContainerState::Waiting { reason } if reason == "CrashLoopBackOff"),
    );
    let pending = statuses.iter().any(
        |s| matches!(&s.state, ContainerState::Waiting { reason } if reason == "ContainerCreating"),
    );
    let failed = statuses
        .iter()
        .any(|s| matches!(s.state, ContainerState::Terminated { exit_code, .. } if exit_code != 0));
    if running || restarting {
        "Running"
    } else if pending {
        "Pending"
    } else if failed {
        "Failed"
    } else {
        "Succeeded"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(state: ContainerState) -> ContainerStatus {
        ContainerStatus {
            name: "c".into(),
            state,
            restart_count: 0,
            last_exit_code: None,
        }
    }

    #[test]
    fn phases_follow_containers() {
        let run = st(ContainerState::Running { pid: 1 });
        let ok = st(ContainerState::Terminated {
            exit_code: 0,
            reason: "Completed".into(),
        });
        let bad = st(ContainerState::Terminated {
            exit_code: 3,
            reason: "Error".into(),
        });
        let wait = st(ContainerState::Waiting {
            reason: "ContainerCreating".into(),
        });
        let crash = st(ContainerState::Waiting {
            reason: "CrashLoopBackOff".into(),
        });
        assert_eq!(phase(&[run.clone(), bad.clone()]), "Running");
        assert_eq!(phase(&[ok.clone(), bad]), "Failed");
        assert_eq!(phase(&[ok.clone(), ok]), "Succeeded");
        assert_eq!(phase(&[wait]), "Pending");
        assert_eq!(phase(&[crash]), "Running");
    }
}
