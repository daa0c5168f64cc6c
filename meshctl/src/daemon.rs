//! The mesh daemon: one process per running mesh that owns its pods' processes and answers the CLI.
//!
//! It turns each plan into reality (`converge`): pods are created before stale ones are removed, a failed
//! creation is rolled back, Service rules follow the pods, and `up` returns when every pod is running and ready
//! (or has finished). State is written to `state.json` after every change, for `status` when the daemon is gone.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cluster::ClusterConfig;
use crate::control::{Request, Response};
use crate::error::Error;
use crate::manifest::{self, ManifestFile, ManifestObject, PortExt};
use crate::paths::MeshPaths;
use crate::plan::{self, Existing, Name, Plan};
use crate::pods::{self, RunningPod};
use crate::services::{self, ServiceRule};
use crate::supervisor::{self, Supervisor};
use crate::{node_agents, report, topology, waypoints};

/// A running mesh.
pub struct Mesh {
    pub paths: MeshPaths,
    pub cluster: ClusterConfig,
    pub objects: Vec<ManifestObject>,
    pub plan: Plan,
    pub pods: BTreeMap<Name, RunningPod>,
    pub supervisor: Supervisor,
    /// The mesh CA (`None` only while coming up).
    pub control_plane: Option<crate::control_plane::ControlPlane>,
    pub bins: node_agents::Binaries,
    /// The API server the mesh runs on (`meshctl up --kubeconfig`), instead of a manifest directory.
    pub kube: Option<crate::kube_mirror::KubeMirror>,
}

/// The environment variable that carries `meshctl up --kubeconfig` to the daemon.
pub const KUBECONFIG_ENV: &str = "MESHCTL_KUBECONFIG";

/// Serves the control socket until the mesh is removed (or failed to come up).
pub fn serve(paths: MeshPaths) -> Result<(), Error> {
    std::fs::create_dir_all(&paths.root).map_err(|e| Error::file(&paths.root, e))?;
    let sock = paths.control_socket();
    let _ = std::fs::remove_file(&sock);
    // Bind (and listen) under a temporary name, then publish: the CLI waits for the socket file,
    // and a file that exists before listen() would refuse its first connection.
    let tmp = sock.with_extension("sock.tmp");
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp).map_err(|e| Error::file(&tmp, e))?;
    std::fs::rename(&tmp, &sock).map_err(|e| Error::file(&sock, e))?;
    let mut mesh: Option<Mesh> = None;
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let Some((request, stream)) = read_request(stream) else {
            continue;
        };
        tracing::info!(request = request_name(&request), "request");
        let (response, exit) = handle(&paths, &mut mesh, request);
        let mut stream = stream;
        if let Ok(mut line) = serde_json::to_string(&response) {
            line.push('\n');
            let _ = stream.write_all(line.as_bytes());
        }
        if exit {
            break;
        }
    }
    Ok(())
}

fn read_request(stream: UnixStream) -> Option<(Request, UnixStream)> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    match serde_json::from_str(&line) {
        Ok(r) => Some((r, stream)),
        Err(e) => {
            tracing::warn!(error = %e, "bad control request");
            None
        }
    }
}

fn request_name(r: &Request) -> &'static str {
    match r {
        Request::Up { .. } => "up",
        Request::Apply { .. } => "apply",
        Request::Status => "status",
        Request::Down => "down",
    }
}

fn handle(paths: &MeshPaths, mesh: &mut Option<Mesh>, request: Request) -> (Response, bool) {
    let failed = |e: Error| Response::Failed {
        message: e.to_string(),
    };
    match (request, mesh.as_mut()) {
        (Request::Up { .. }, Some(_)) => (
            Response::Failed {
                message: format!("mesh {} is already up", paths.name),
            },
            false,
        ),
        (
            Request::Up {
                cluster,
                files,
                timeout_secs,
            },
            None,
        ) => {
            match Mesh::up(
                paths.clone(),
                cluster,
                &files,
                Duration::from_secs(timeout_secs),
            ) {
                Ok(m) => {
                    let message = format!("mesh {} is up\n\n{}", paths.name, m.status().render());
                    *mesh = Some(m);
                    (Response::Done { message }, false)
                }
                Err(e) => (failed(e), true),
            }
        }
        (
            Request::Apply {
                files,
                timeout_secs,
            },
            Some(m),
        ) => match m.apply(&files, Duration::from_secs(timeout_secs)) {
            Ok(message) => (Response::Done { message }, false),
            Err(e) => (failed(e), false),
        },
        (Request::Status, Some(m)) => (
            Response::Status {
                report: Box::new(m.status()),
            },
            false,
        ),
        (Request::Down, Some(m)) => {
            let errors = m.down();
            if errors.is_empty() {
                (
                    Response::Done {
                        message: format!("mesh {} removed", paths.name),
                    },
                    true,
                )
            } else {
                let list: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                (
                    Response::Failed {
                        message: format!(
                            "mesh {} removed with errors:\n{}",
                            paths.name,
                            list.join("\n")
                        ),
                    },
                    true,
                )
            }
        }
        (Request::Down, None) => {
            let errors = topology::teardown(paths, pods::MAX_GRACE);
            (
                Response::Done {
                    message: format!("mesh {} removed ({} errors)", paths.name, errors.len()),
                },
                true,
            )
        }
        (_, None) => (
            Response::Failed {
                message: format!("mesh {} is not up", paths.name),
            },
            false,
        ),
    }
}

impl Mesh {
    /// Creates the mesh. On any error everything made so far is removed.
    pub fn up(
        paths: MeshPaths,
        cluster: ClusterConfig,
        files: &[ManifestFile],
        timeout: Duration,
    ) -> Result<Mesh, Error> {
        let incoming = manifest::parse_files(files)?;
        let (objects, plan) = plan::build(&cluster, &[], &incoming, &Existing::default())?;
        crate::control_plane::validate(&objects, &cluster.trust_domain)?;
        let bins = node_agents::Binaries::locate()?;
        if waypoints::any(&plan) {
            bins.require_waypoint()?;
        }
        let kube = match std::env::var_os(KUBECONFIG_ENV) {
            Some(k) => Some(crate::kube_mirror::KubeMirror::connect(
                std::path::Path::new(&k),
                &paths.name,
            )?),
            None => None,
        };
        topology::create(&paths, &cluster)?;
        let mut mesh = Mesh {
            paths,
            cluster,
            objects: Vec::new(),
            plan: Plan::default(),
            pods: BTreeMap::new(),
            supervisor: Supervisor::default(),
            control_plane: None,
            bins,
            kube,
        };
        let started = mesh.start_components(timeout);
        match started.and_then(|()| mesh.converge(objects, plan, timeout)) {
            Ok(_) => Ok(mesh),
            Err(e) => {
                mesh.down();
                Err(e)
            }
        }
    }

    /// The mesh CA, then ztunnel and the node agent on every node; returns once they are ready.
    fn start_components(&mut self, timeout: Duration) -> Result<(), Error> {
        self.control_plane = Some(crate::control_plane::start(
            &self.paths,
            &self.cluster.nodes,
            &self.cluster.trust_domain,
            &self.supervisor,
            &self.bins.control_plane,
            std::env::var_os(KUBECONFIG_ENV)
                .as_deref()
                .map(std::path::Path::new),
            timeout,
        )?);
        node_agents::start(&self.paths, &self.cluster, &self.supervisor, &self.bins)?;
        node_agents::wait_ready(&self.paths, &self.cluster, timeout)
    }

    /// Publishes the mesh to the control plane (which serves the node tunnels and the CA): to the API server
    /// when the mesh runs on one, else to the manifest directory.
    fn publish_workloads(&mut self) -> Result<(), Error> {
        match &mut self.kube {
            Some(kube) => kube.sync(crate::control_plane::api_documents(
                &self.objects,
                &self.plan,
                &self.pods,
            )),
            None => {
                crate::control_plane::publish(&self.paths, &self.objects, &self.plan, &self.pods)
            }
        }
    }

    /// Applies new or changed objects to the running mesh.
    pub fn apply(&mut self, files: &[ManifestFile], timeout: Duration) -> Result<String, Error> {
        let incoming = manifest::parse_files(files)?;
        let existing = Existing {
            pods: self
                .pods
                .iter()
                .map(|(k, p)| {
                    (
                        k.clone(),
                        (p.desired.node.clone(), p.desired.revision.clone()),
                    )
                })
                .collect(),
            service_ips: self
                .plan
                .services
                .iter()
                .map(|(k, s)| (k.clone(), s.cluster_ip))
                .collect(),
        };
        let (objects, plan) = plan::build(&self.cluster, &self.objects, &incoming, &existing)?;
        crate::control_plane::validate(&objects, &self.cluster.trust_domain)?;
        if waypoints::any(&plan) {
            self.bins.require_waypoint()?;
        }
        self.converge(objects, plan, timeout)
    }

    /// Makes the running pods and Service rules match `plan`; returns what changed.
    fn converge(
        &mut self,
        objects: Vec<ManifestObject>,
        plan: Plan,
        timeout: Duration,
    ) -> Result<String, Error> {
        let stale: Vec<Name> = self
            .pods
            .iter()
            .filter(|(k, p)| {
                plan.pods
                    .get(*k)
                    .is_none_or(|d| d.revision != p.desired.revision)
            })
            .map(|(k, _)| k.clone())
            .collect();
        // A changed pod keeps its name, so it must go before its replacement comes; the rest go afterwards.
        let (replaced, removed): (Vec<Name>, Vec<Name>) =
            stale.into_iter().partition(|k| plan.pods.contains_key(k));
        let mut changes = Vec::new();
        self.remove_pods(&replaced, &mut changes);
        let mut created = Vec::new();
        for (key, desired) in &plan.pods {
            if self.pods.contains_key(key) {
                continue;
            }
            let no_labels = BTreeMap::new();
            let ns_labels = plan
                .namespaces
                .get(&desired.namespace)
                .unwrap_or(&no_labels);
            let created_pod = waypoints::launch(
                &self.paths,
                &self.cluster,
                &self.bins,
                self.control_plane.as_mut(),
                desired,
            )
            .and_then(|launch| {
                pods::create(
                    &self.paths,
                    &self.cluster,
                    &self.supervisor,
                    desired,
                    ns_labels,
                    launch.as_ref(),
                )
            });
            match created_pod {
                Ok(pod) => {
                    changes.push(format!(
                        "pod {}/{} created on {} ({})",
                        key.0, key.1, pod.desired.node, pod.ip
                    ));
                    created.push(key.clone());
                    self.pods.insert(key.clone(), pod);
                }
                Err(e) => {
                    waypoints::stopped(&self.paths, self.control_plane.as_mut(), key);
                    let mut ignored = Vec::new();
                    self.remove_pods(&created, &mut ignored);
                    self.write_state();
                    return Err(e);
                }
            }
        }
        self.remove_pods(&removed, &mut changes);
        for key in plan
            .services
            .keys()
            .filter(|k| !self.plan.services.contains_key(*k))
        {
            changes.push(format!("service {}/{} created", key.0, key.1));
        }
        for o in &objects {
            if !matches!(
                o.object,
                manifest::Object::AuthorizationPolicy(_) | manifest::Object::PeerAuthentication(_)
            ) {
                continue;
            }
            match self
                .objects
                .iter()
                .find(|old| old.object.key() == o.object.key())
            {
                Some(old) if old.object == o.object => {}
                Some(_) => changes.push(format!("{} configured", o.object.display())),
                None => changes.push(format!("{} created", o.object.display())),
            }
        }
        self.objects = objects;
        self.plan = plan;
        self.sync_services()?;
        self.publish_workloads()?;
        self.write_state();
        self.wait_ready(&created, timeout)?;
        if changes.is_empty() {
            changes.push("no change".into());
        }
        Ok(changes.join("\n"))
    }

    fn remove_pods(&mut self, keys: &[Name], changes: &mut Vec<String>) {
        let pods: Vec<RunningPod> = keys.iter().filter_map(|k| self.pods.remove(k)).collect();
        for e in pods::delete(&self.paths, &self.supervisor, &pods) {
            tracing::warn!(error = %e, "removing a pod");
        }
        for p in pods {
            waypoints::stopped(&self.paths, self.control_plane.as_mut(), &p.desired.key());
            changes.push(format!(
                "pod {}/{} deleted",
                p.desired.namespace, p.desired.name
            ));
        }
    }

    /// The Service rules of every node, from the current plan and the pods' addresses.
    pub fn service_rules(&self) -> Vec<ServiceRule> {
        let mut rules = Vec::new();
        for svc in self.plan.services.values() {
            let Some(vip) = svc.cluster_ip else { continue };
            for port in &svc.ports {
                let endpoints = report::endpoints_of(svc, self.pods.values())
                    .filter_map(|p| plan::target_port(port, &p.desired.spec).map(|t| (p.ip, t)))
                    .collect();
                rules.push(ServiceRule {
                    name: format!("{}/{}:{}", svc.namespace, svc.name, port.number()),
                    vip,
                    port: port.number(),
                    protocol: port.proto(),
                    endpoints,
                });
            }
        }
        rules
    }

    fn sync_services(&self) -> Result<(), Error> {
        let script = services::render(&self.service_rules());
        for node in &self.cluster.nodes {
            services::apply(&self.paths.node_netns(&node.name), &script)?;
        }
        Ok(())
    }

    /// Waits until each of `pods` is running with its ports open, or has finished, or restarts in a loop.
    fn wait_ready(&self, pods: &[Name], timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        loop {
            let waiting: Vec<String> = pods
                .iter()
                .filter(|k| {
                    let Some(st) = self.supervisor.statuses(k) else {
                        return false;
                    };
                    let settled = match supervisor::phase(&st) {
                        "Running" => {
                            st.iter().any(|c| c.restart_count > 0)
                                || self.pods.get(*k).is_some_and(pods::ready)
                        }
                        "Pending" => false,
                        _ => true,
                    };
                    !settled
                })
                .map(|k| format!("{}/{}", k.0, k.1))
                .collect();
            if waiting.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Mesh {
                    mesh: self.paths.name.clone(),
                    detail: format!("pods not ready after {timeout:?}: {}", waiting.join(", ")),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn status(&self) -> crate::status::StatusReport {
        report::build(self)
    }

    /// Removes every pod (CNI DEL included), then every namespace and the state directory.
    pub fn down(&mut self) -> Vec<Error> {
        let all: Vec<RunningPod> = std::mem::take(&mut self.pods).into_values().collect();
        let mut errors = pods::delete(&self.paths, &self.supervisor, &all);
        self.supervisor
            .stop(&self.supervisor.pods(), pods::MAX_GRACE);
        self.control_plane = None;
        if let Some(mut kube) = self.kube.take()
            && let Err(e) = kube.clear()
        {
            errors.push(e);
        }
        errors.extend(topology::teardown(&self.paths, pods::MAX_GRACE));
        errors
    }

    fn write_state(&self) {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct State<'a> {
            mesh: &'a str,
            daemon_pid: u32,
            cluster: &'a ClusterConfig,
            pods: Vec<&'a RunningPod>,
            services: Vec<&'a plan::DesiredService>,
        }
        let state = State {
            mesh: &self.paths.name,
            daemon_pid: std::process::id(),
            cluster: &self.cluster,
            pods: self.pods.values().collect(),
            services: self.plan.services.values().collect(),
        };
        let path = self.paths.state_file();
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(&state).unwrap_or_default();
        if let Err(e) = std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, &path)) {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the mesh state");
        }
    }
}
