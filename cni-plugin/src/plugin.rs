//! The chained CNI plugin `istio-cni` (CNI spec 0.3–1.1): ADD asks the node agent to enroll an ambient pod and
//! passes `prevResult` through unchanged; DEL, CHECK and GC succeed (pod removal is the agent informer's job);
//! STATUS reports whether the agent can serve ADD; VERSION lists what we speak.
//!
//! Fail-closed: when an enrolled pod cannot be enrolled (agent down, ztunnel not connected or not acking) ADD
//! fails with code 11, so the runtime retries and the pod never starts unmeshed. Every failure is a CNI error
//! object on stdout with a non-zero exit; a panic is caught at the top ([`main`]).

pub mod conf;
pub mod env;
pub mod error;
pub mod uds_http;

use std::io::Read;
use std::time::Duration;

use serde_json::json;

use crate::enrollment::{self, Decision, EnrollmentPolicy};
use crate::event::{CmdAddRequest, PATH_CMDADD, PATH_READYZ, PLUGIN_EVENT_SOCKET};
use crate::pods::{FilePodSource, PodSource};
use conf::{Input, PluginConf};
use env::{CniEnv, Command};
use error::{CniError, code};

/// Default bound on waiting for the agent's answer to ADD (the agent itself bounds the ztunnel Ack at 5 s).
const DEFAULT_AGENT_TIMEOUT: Duration = Duration::from_secs(15);
const STATUS_TIMEOUT: Duration = Duration::from_secs(3);

/// The binary's whole life: read env and stdin, run, print, return the exit code. Never panics outward.
pub fn main() -> i32 {
    let mut stdin = Vec::new();
    let _ = std::io::stdin().take(1 << 20).read_to_end(&mut stdin);
    init_logging(&stdin);
    let version = conf::peek_version(&stdin);
    let outcome = std::panic::catch_unwind(|| {
        let env = env::from_vars(|k| std::env::var(k).ok())?;
        run(&env, &stdin)
    });
    let result = match outcome {
        Ok(r) => r,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(CniError::new(
                code::INTERNAL,
                "internal error in istio-cni",
                what,
            ))
        }
    };
    match result {
        Ok(out) => {
            if let Some(out) = out {
                println!("{out}");
            }
            0
        }
        Err(e) => {
            tracing::error!(code = e.code, msg = %e.msg, details = %e.details, "CNI command failed");
            println!("{}", e.in_version(version.as_deref()).to_json());
            1
        }
    }
}

/// Logs go to stderr (stdout is the result), at the configuration's `plugin_log_level`.
fn init_logging(stdin: &[u8]) {
    let level = serde_json::from_slice::<serde_json::Value>(stdin)
        .ok()
        .and_then(|v| v.get("plugin_log_level")?.as_str().map(str::to_string))
        .unwrap_or_else(|| "info".into());
    let filter = tracing_subscriber::EnvFilter::try_new(&level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

/// Runs one command; `Ok(Some(json))` is printed on stdout.
pub fn run(env: &CniEnv, stdin: &[u8]) -> Result<Option<String>, CniError> {
    if env.command == Command::Version {
        return Ok(Some(version_output(stdin)));
    }
    let input = conf::parse(stdin)?;
    let version = input.conf.cni_version.clone();
    let r = match env.command {
        Command::Add => add(env, &input),
        Command::Status => status(&input.conf).map(|_| None),
        // DEL is best-effort and must succeed repeatedly and with the netns gone: nothing of ours is keyed by the
        // attachment (the agent keys pods by namespace/name and learns of deletion from the pod source).
        Command::Del | Command::Check | Command::Gc => Ok(None),
        Command::Version => Ok(Some(version_output(stdin))),
    };
    r.map_err(|e| e.in_version(Some(&version)))
}

fn version_output(stdin: &[u8]) -> String {
    let asked = conf::peek_version(stdin)
        .filter(|v| conf::SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| conf::DEFAULT_VERSION.into());
    json!({"cniVersion": asked, "supportedVersions": conf::SUPPORTED_VERSIONS}).to_string()
}

/// `prevResult` as given, or an empty result in the configured version.
fn pass_through(input: &Input) -> Option<String> {
    Some(match &input.prev_result {
        Some(raw) => raw.get().to_string(),
        None => json!({"cniVersion": input.conf.cni_version, "dns": {}}).to_string(),
    })
}

fn add(env: &CniEnv, input: &Input) -> Result<Option<String>, CniError> {
    let conf = &input.conf;
    let args = &env.args;
    if !conf.ambient_enabled {
        return Ok(pass_through(input));
    }
    if args.pod_name.is_empty() || args.pod_namespace.is_empty() {
        tracing::info!(container = %env.container_id, "no K8S_POD_NAME/K8S_POD_NAMESPACE: not a pod, skipping");
        return Ok(pass_through(input));
    }
    let policy = EnrollmentPolicy {
        ambient_enabled: conf.ambient_enabled,
        exclude_namespaces: conf.exclude_namespaces.clone(),
        agent_namespace: conf.pod_namespace.clone(),
    };
    if let Some(dir) = &conf.pod_dir {
        let pod = read_pod(dir, &args.pod_namespace, &args.pod_name, conf)?;
        if let Decision::Skip(reason) = enrollment::decide(&policy, &pod) {
            tracing::info!(pod = %pod.key(), %reason, "not enrolling");
            return Ok(pass_through(input));
        }
    } else if policy.exclude_namespaces.contains(&args.pod_namespace)
        || policy.agent_namespace == args.pod_namespace
    {
        return Ok(pass_through(input));
    }
    let body = CmdAddRequest {
        netns: env
            .netns
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        pod_name: args.pod_name.clone(),
        pod_namespace: args.pod_namespace.clone(),
        ips: input
            .prev_result
            .as_deref()
            .map(conf::result_ips)
            .unwrap_or_default(),
    };
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let socket = conf.cni_agent_run_dir.join(PLUGIN_EVENT_SOCKET);
    let timeout = conf
        .agent_timeout_ms
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_AGENT_TIMEOUT);
    let try_again = |details: String| {
        CniError::new(
            code::TRY_AGAIN_LATER,
            format!(
                "pod {}/{} could not be added to the ambient mesh",
                args.pod_namespace, args.pod_name
            ),
            details,
        )
    };
    match uds_http::request(&socket, "POST", PATH_CMDADD, Some(&body), timeout) {
        Ok((200, _)) => Ok(pass_through(input)),
        Ok((status, text)) => Err(try_again(format!(
            "node agent answered {status}: {}",
            text.trim()
        ))),
        Err(e) => Err(try_again(format!("node agent unreachable: {e}"))),
    }
}

fn read_pod(
    dir: &std::path::Path,
    namespace: &str,
    name: &str,
    conf: &PluginConf,
) -> Result<crate::pods::PodMeta, CniError> {
    let source = FilePodSource::new(dir);
    let attempts = if conf.enable_ambient_detection_retry {
        20
    } else {
        5
    };
    for attempt in 0..attempts {
        match source.get(namespace, name) {
            Ok(Some(pod)) => return Ok(pod),
            Ok(None) => {}
            Err(e) => {
                return Err(CniError::new(
                    code::POD_SOURCE,
                    "cannot read the pod's metadata",
                    e.to_string(),
                ));
            }
        }
        if attempt + 1 < attempts {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Err(CniError::new(
        code::TRY_AGAIN_LATER,
        "pod metadata not found",
        format!("{}", FilePodSource::file_of(dir, namespace, name).display()),
    ))
}

fn status(conf: &PluginConf) -> Result<(), CniError> {
    let socket = conf.cni_agent_run_dir.join(PLUGIN_EVENT_SOCKET);
    match uds_http::request(&socket, "GET", PATH_READYZ, None, STATUS_TIMEOUT) {
        Ok((200, _)) => Ok(()),
        Ok((status, text)) => Err(CniError::new(
            code::NOT_AVAILABLE,
            "the node agent cannot serve ADD",
            format!("{status}: {}", text.trim()),
        )),
        Err(e) => Err(CniError::new(
            code::NOT_AVAILABLE,
            "the node agent is not available",
            e.to_string(),
        )),
    }
}
