//! Test harness: network namespaces cleaned up on drop, a node (netns + CNI dirs with Debian's bridge +
//! host-local), the agent process, and a libcni-style chain driver (ADD in order with prevResult, DEL in
//! reverse with the cached result).

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub(crate) const SYSTEM_CNI_BIN: &str = "/usr/lib/cni";

/// Fails the test with a clear message unless we are root (netns, nft and the bridge plugin need it).
pub(crate) fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root: it creates network namespaces and runs nft/ip and the bridge CNI plugin \
         (run `sudo cargo test -p cni-plugin`)"
    );
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this test process and call.
pub(crate) fn unique(tag: &str) -> String {
    format!(
        "cnit-{}-{}-{tag}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `f` until it returns `Some` or `timeout` passes.
pub(crate) fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A named network namespace, deleted on drop (also on panic).
pub(crate) struct Netns {
    pub(crate) name: String,
}

impl Netns {
    pub(crate) fn new(tag: &str) -> Self {
        let name = unique(tag);
        run_ok("ip", &["netns", "add", &name]);
        let ns = Self { name };
        ns.exec_ok("ip", &["link", "set", "lo", "up"]);
        ns
    }

    pub(crate) fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Runs a command inside; returns (success, stdout, stderr).
    pub(crate) fn exec(&self, program: &str, args: &[&str]) -> (bool, String, String) {
        let mut cmd = Command::new(program);
        cmd.args(args);
        let out = in_netns(&mut cmd, &self.path()).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub(crate) fn exec_ok(&self, program: &str, args: &[&str]) -> String {
        let (ok, out, err) = self.exec(program, args);
        assert!(ok, "{program} {args:?} in {}: {err}", self.name);
        out
    }

    /// Deletes it now (for "netns already gone" cases).
    pub(crate) fn delete(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.delete();
    }
}

/// Makes `cmd` enter the netns at `path` between fork and exec. The netns file must stay open until `spawn`;
/// it is simply leaked (a handful of descriptors per test process).
pub(crate) fn in_netns<'a>(cmd: &'a mut Command, path: &Path) -> &'a mut Command {
    let file = File::open(path).unwrap_or_else(|e| panic!("open netns {}: {e}", path.display()));
    let fd = file.as_raw_fd();
    // Keep it open for the lifetime of the test process (a handful of fds).
    std::mem::forget(file);
    // SAFETY: setns(2) is async-signal-safe; `fd` stays open (leaked above).
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        })
    }
}

pub(crate) fn run_ok(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes a file atomically (temp + rename), as the pod source's writer must.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().unwrap().to_string_lossy()
    ));
    let mut f = File::create(&tmp).unwrap();
    f.write_all(data).unwrap();
    f.sync_all().unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// One node: its netns, directories and primary CNI configuration (bridge + host-local).
pub(crate) struct Node {
    pub(crate) netns: Netns,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) name: String,
}

impl Node {
    pub(crate) fn new() -> Self {
        require_root();
        let netns = Netns::new("node");
        let dir = tempfile::tempdir().unwrap();
        for d in ["net.d", "bin", "run", "pods", "ztunnel", "ipam", "cache"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        let node = Self {
            netns,
            dir,
            name: "node1".into(),
        };
        let conf = json!({
            "cniVersion": "1.0.0",
            "name": "meshnet",
            "plugins": [{
                "type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
                "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.250.1.0/24", "gateway": "10.250.1.1"}]],
                         "routes": [{"dst": "0.0.0.0/0"}], "dataDir": node.path("ipam")}
            }]
        });
        std::fs::write(
            node.path("net.d").join("10-meshnet.conflist"),
            serde_json::to_vec_pretty(&conf).unwrap(),
        )
        .unwrap();
        node
    }

    pub(crate) fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    pub(crate) fn zds_socket(&self) -> PathBuf {
        self.path("ztunnel").join("ztunnel.sock")
    }

    pub(crate) fn pods_json(&self) -> Value {
        std::fs::read(self.path("run").join("pods.json"))
            .ok()
            .and_then(|t| serde_json::from_slice(&t).ok())
            .unwrap_or(json!({}))
    }

    /// Writes (or rewrites) a pod file.
    pub(crate) fn write_pod(&self, pod: &Value) {
        let file = format!(
            "{}.{}.json",
            pod["namespace"].as_str().unwrap(),
            pod["name"].as_str().unwrap()
        );
        write_atomic(&self.path("pods").join(file), pod.to_string().as_bytes());
    }

    pub(crate) fn remove_pod(&self, namespace: &str, name: &str) {
        std::fs::remove_file(self.path("pods").join(format!("{namespace}.{name}.json"))).unwrap();
    }

    pub(crate) fn chain(&self) -> Chain {
        Chain {
            conf_dir: self.path("net.d"),
            cni_path: vec![self.path("bin"), PathBuf::from(SYSTEM_CNI_BIN)],
            exec_netns: self.netns.path(),
        }
    }

    /// The primary conflist as JSON.
    pub(crate) fn primary_conf(&self) -> Value {
        let list = self.chain().load();
        list.1
    }
}

/// Pod metadata as meshctl writes it.
pub(crate) fn pod_json(namespace: &str, name: &str, uid: &str, ns_ambient: bool) -> Value {
    let ns_labels = if ns_ambient {
        json!({"istio.io/dataplane-mode": "ambient"})
    } else {
        json!({})
    };
    json!({"uid": uid, "name": name, "namespace": namespace, "serviceAccount": name, "node": "node1",
           "labels": {"app": name}, "annotations": {}, "namespaceLabels": ns_labels})
}

/// The running agent process; killed on drop.
pub(crate) struct AgentProc {
    pub(crate) child: Child,
    pub(crate) log: PathBuf,
}

impl AgentProc {
    pub(crate) fn start(node: &Node, extra: &[&str]) -> Self {
        let pods = node.path("pods");
        Self::launch(node, &["--pod-dir".as_ref(), pods.as_os_str()], extra, true)
    }

    /// With the Kubernetes pod source (`--kubeconfig`). It runs in the host netns, where the test's API server
    /// listens on 127.0.0.1, so without the node-side probe SNAT table (that would be the host's).
    pub(crate) fn start_kube(node: &Node, kubeconfig: &Path, extra: &[&str]) -> Self {
        let mut all = vec!["--host-probe-snat", "false"];
        all.extend_from_slice(extra);
        Self::launch(
            node,
            &["--kubeconfig".as_ref(), kubeconfig.as_os_str()],
            &all,
            false,
        )
    }

    fn launch(
        node: &Node,
        source: &[&std::ffi::OsStr],
        extra: &[&str],
        in_node_netns: bool,
    ) -> Self {
        let log = node.path(&format!("agent-{}.log", unique("l")));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cni-agent"));
        cmd.arg("--cni-conf-dir")
            .arg(node.path("net.d"))
            .arg("--cni-bin-dir")
            .arg(node.path("bin"))
            .arg("--plugin-binary")
            .arg(env!("CARGO_BIN_EXE_istio-cni"))
            .arg("--run-dir")
            .arg(node.path("run"))
            .args(source)
            .arg("--ztunnel-uds")
            .arg(node.zds_socket())
            .arg("--node-name")
            .arg(&node.name)
            .args(extra)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap());
        if in_node_netns {
            in_netns(&mut cmd, &node.netns.path());
        }
        let child = cmd.spawn().unwrap();
        let agent = Self { child, log };
        let sock = node.path("run").join("pluginevent.sock");
        wait_for(
            "the agent to serve and install its entry",
            Duration::from_secs(10),
            || {
                let installed = node.primary_conf()["plugins"]
                    .as_array()
                    .is_some_and(|p| p.last().is_some_and(|l| l["type"] == "istio-cni"));
                // Connect, not just exists: a killed predecessor leaves its socket files behind. The ZDS socket is
                // bound before this one.
                (std::os::unix::net::UnixStream::connect(&sock).is_ok() && installed).then_some(())
            },
        );
        agent
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait (≤ 5 s).
    pub(crate) fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        wait_for("the agent to exit", Duration::from_secs(5), || {
            self.child.try_wait().unwrap()
        })
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- agent log ----\n{}", self.log_text());
        }
    }
}

/// A plugin failure: which plugin, exit status and its stdout (the CNI error object).
#[derive(Debug)]
pub(crate) struct PluginFailure {
    pub(crate) plugin: String,
    pub(crate) stdout: String,
    #[allow(dead_code)] // read through Debug in assertion messages
    pub(crate) stderr: String,
}

impl PluginFailure {
    pub(crate) fn code(&self) -> Option<u64> {
        serde_json::from_str::<Value>(&self.stdout).ok()?["code"].as_u64()
    }
}

/// One attachment (pod sandbox) as the runtime knows it.
#[derive(Debug, Clone)]
pub(crate) struct Attachment {
    pub(crate) container_id: String,
    pub(crate) netns: PathBuf,
    pub(crate) ifname: String,
    pub(crate) args: String,
    /// What ADD cached: the list used and the final result.
    pub(crate) cached: Option<(Value, Value)>,
}

impl Attachment {
    pub(crate) fn new(netns: &Netns, namespace: &str, name: &str, uid: &str) -> Self {
        Self {
            container_id: format!("sandbox-{}", netns.name),
            netns: netns.path(),
            ifname: "eth0".into(),
            args: format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name};K8S_POD_INFRA_CONTAINER_ID=sandbox;K8S_POD_UID={uid}"
            ),
            cached: None,
        }
    }
}

/// A libcni-style driver of the node's primary configuration.
pub(crate) struct Chain {
    pub(crate) conf_dir: PathBuf,
    pub(crate) cni_path: Vec<PathBuf>,
    pub(crate) exec_netns: PathBuf,
}

/// What ADD printed, per plugin.
pub(crate) struct AddOutput {
    pub(crate) result: Value,
    pub(crate) per_plugin: Vec<(String, Value)>,
}

impl Chain {
    /// (file, list) of the lexically first `.conf`/`.conflist`/`.json`; a single conf becomes a list.
    pub(crate) fn load(&self) -> (PathBuf, Value) {
        // Another writer may replace or rename the file between listing and reading: retry briefly.
        for _ in 0..50 {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&self.conf_dir)
                .unwrap()
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let n = p.file_name().unwrap().to_string_lossy().to_string();
                    !n.starts_with('.')
                        && (n.ends_with(".conf")
                            || n.ends_with(".conflist")
                            || n.ends_with(".json"))
                })
                .collect();
            files.sort();
            let Some(file) = files.first().cloned() else {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            };
            let Ok(text) = std::fs::read(&file) else {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            };
            let v: Value = serde_json::from_slice(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", file.display()));
            let list = if v.get("plugins").is_some() {
                v
            } else {
                json!({"cniVersion": v["cniVersion"], "name": v["name"], "plugins": [v]})
            };
            return (file, list);
        }
        panic!(
            "no readable CNI configuration in {}",
            self.conf_dir.display()
        );
    }

    fn plugin_conf(list: &Value, plugin: &Value, prev: Option<&Value>) -> Value {
        let mut conf = plugin.clone();
        conf["name"] = list["name"].clone();
        conf["cniVersion"] = list["cniVersion"].clone();
        if let Some(p) = prev {
            conf["prevResult"] = p.clone();
        }
        conf
    }

    pub(crate) fn exec(
        &self,
        command: &str,
        plugin: &Value,
        conf: &Value,
        att: &Attachment,
    ) -> Result<Option<Value>, PluginFailure> {
        let ty = plugin["type"].as_str().unwrap().to_string();
        let binary = self
            .cni_path
            .iter()
            .map(|d| d.join(&ty))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("plugin {ty} not found"));
        let path: Vec<String> = self
            .cni_path
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let mut cmd = Command::new(binary);
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", &att.container_id)
            .env("CNI_NETNS", &att.netns)
            .env("CNI_IFNAME", &att.ifname)
            .env("CNI_ARGS", &att.args)
            .env("CNI_PATH", path.join(":"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = in_netns(&mut cmd, &self.exec_netns).spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(conf.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            return Err(PluginFailure {
                plugin: ty,
                stdout,
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        if stdout.trim().is_empty() {
            return Ok(None);
        }
        Ok(Some(serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!("{ty} printed a non-JSON result ({e}): {stdout}")
        })))
    }

    /// ADD every plugin in order; caches the list and the final result in `att`.
    pub(crate) fn add(&self, att: &mut Attachment) -> Result<AddOutput, PluginFailure> {
        let (_, list) = self.load();
        let mut prev: Option<Value> = None;
        let mut per_plugin = Vec::new();
        for plugin in list["plugins"].as_array().unwrap() {
            let conf = Self::plugin_conf(&list, plugin, prev.as_ref());
            let out = self
                .exec("ADD", plugin, &conf, att)?
                .expect("ADD printed no result");
            per_plugin.push((plugin["type"].as_str().unwrap().to_string(), out.clone()));
            prev = Some(out);
        }
        let result = prev.unwrap();
        att.cached = Some((list, result.clone()));
        Ok(AddOutput { result, per_plugin })
    }

    pub(crate) fn check(&self, att: &Attachment) -> Result<(), PluginFailure> {
        let (list, result) = att.cached.clone().expect("CHECK before ADD");
        for plugin in list["plugins"].as_array().unwrap() {
            let conf = Self::plugin_conf(&list, plugin, Some(&result));
            self.exec("CHECK", plugin, &conf, att)?;
        }
        Ok(())
    }

    /// DEL in reverse with the cached list and result (or the current list and no result).
    pub(crate) fn del(&self, att: &Attachment) -> Result<(), PluginFailure> {
        let (list, result) = match att.cached.clone() {
            Some((l, r)) => (l, Some(r)),
            None => (self.load().1, None),
        };
        let mut first = None;
        for plugin in list["plugins"].as_array().unwrap().iter().rev() {
            let conf = Self::plugin_conf(&list, plugin, result.as_ref());
            if let Err(e) = self.exec("DEL", plugin, &conf, att) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// Runs the plugin binary directly with the given env and stdin; returns (exit success, stdout).
pub(crate) fn run_plugin(env: &[(&str, &str)], stdin: &[u8]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_istio-cni"));
    cmd.env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    let _ = input.write_all(stdin);
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The structure of our rules in a pod netns: per table, per chain (type/hook/prio) and per rule a signature
/// (verdict + the constants it matches), from `nft -j list ruleset`.
pub(crate) fn nft_structure(ns: &Netns) -> Value {
    let out = ns.exec_ok("nft", &["-j", "list", "ruleset"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let mut tables = serde_json::Map::new();
    for item in v["nftables"].as_array().unwrap() {
        if let Some(t) = item.get("table") {
            tables.insert(
                format!(
                    "{} {}",
                    t["family"].as_str().unwrap(),
                    t["name"].as_str().unwrap()
                ),
                json!({}),
            );
        }
    }
    for item in v["nftables"].as_array().unwrap() {
        if let Some(c) = item.get("chain") {
            let key = format!(
                "{} {}",
                c["family"].as_str().unwrap(),
                c["table"].as_str().unwrap()
            );
            let base = match c.get("hook") {
                Some(h) => format!(
                    "{} {} {}",
                    c["type"].as_str().unwrap(),
                    h.as_str().unwrap(),
                    c["prio"]
                ),
                None => "regular".into(),
            };
            tables[&key][c["name"].as_str().unwrap()] = json!({"base": base, "rules": []});
        }
    }
    for item in v["nftables"].as_array().unwrap() {
        if let Some(r) = item.get("rule") {
            let key = format!(
                "{} {}",
                r["family"].as_str().unwrap(),
                r["table"].as_str().unwrap()
            );
            let sig = rule_signature(&r["expr"]);
            tables[&key][r["chain"].as_str().unwrap()]["rules"]
                .as_array_mut()
                .unwrap()
                .push(json!(sig));
        }
    }
    Value::Object(tables)
}

/// "verdict | constants..." for one rule.
fn rule_signature(expr: &Value) -> String {
    let mut verdict = String::new();
    let mut consts = Vec::new();
    for e in expr.as_array().unwrap() {
        if let Some(m) = e.get("match") {
            consts.push(format!(
                "{}{}",
                m["op"].as_str().unwrap(),
                literal(&m["right"])
            ));
        } else if e.get("accept").is_some() {
            verdict = "accept".into();
        } else if let Some(r) = e.get("redirect") {
            verdict = format!("redirect {}", r["port"]);
        } else if let Some(j) = e.get("jump") {
            verdict = format!("jump {}", j["target"].as_str().unwrap());
        } else if let Some(m) = e.get("mangle") {
            verdict = format!("set {}", literal(&m["key"]));
        }
    }
    format!("{verdict} | {}", consts.join(" "))
}

fn literal(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Object(o) => o.keys().cloned().collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// (`ip rule` entries with priority 32764, `ip route show table 100`) in a pod netns.
pub(crate) fn routing_state(ns: &Netns) -> (Vec<Value>, Vec<Value>) {
    let rules: Vec<Value> =
        serde_json::from_str::<Value>(&ns.exec_ok("ip", &["-j", "-4", "rule", "show"]))
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["priority"] == 32764)
            .cloned()
            .collect();
    let (ok, routes_out, err) = ns.exec("ip", &["-j", "-4", "route", "show", "table", "100"]);
    // A table that never existed is reported as an error; it is empty.
    assert!(
        ok || err.contains("FIB table does not exist"),
        "ip route show table 100: {err}"
    );
    let routes_out = if ok { routes_out } else { String::new() };
    let routes: Vec<Value> = if routes_out.trim().is_empty() {
        Vec::new()
    } else {
        serde_json::from_str::<Value>(&routes_out)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    };
    (rules, routes)
}
