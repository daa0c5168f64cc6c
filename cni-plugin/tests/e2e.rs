//! End-to-end tests with real parts: network namespaces, Debian's bridge + host-local CNI plugins, nft, ip, the
//! real `istio-cni` and `cni-agent` binaries, and a fake ztunnel speaking ZDS. Need root (they say so if not).
//! [`kube_source`] adds a real kube-apiserver (`scripts/kube.sh build` must have run once on the machine).
#![allow(clippy::unwrap_used)]

/// The tests crate's API server harness, compiled into this test binary (a dev-dependency on the tests crate would
/// build the whole mesh, and cni-plugin, a second time).
#[path = "../../tests/src/kube.rs"]
#[allow(dead_code, unreachable_pub)]
mod apiserver;
#[path = "e2e/fake_ztunnel.rs"]
mod fake_ztunnel;
#[path = "e2e/harness.rs"]
mod harness;
#[path = "e2e/kube_source.rs"]
mod kube_source;

use std::time::{Duration, Instant};

use fake_ztunnel::{Event, FakeZtunnel, netns_ino};
use harness::{AgentProc, Attachment, Netns, Node, nft_structure, pod_json, routing_state};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(10);

/// CNI environment variables of one plugin run.
type Env<'a> = Vec<(&'a str, &'a str)>;

/// The spec §8 rule set (DNS capture off, IPv4 pod) as `nft_structure` reports it.
fn expected_rules() -> Value {
    json!({
        "inet istio-ambient-mangle": {
            "prerouting": {"base": "filter prerouting -150", "rules": ["jump ISTIO_PRERT | "]},
            "output": {"base": "route output -150", "rules": ["jump ISTIO_OUTPUT | "]},
            "ISTIO_PRERT": {"base": "regular", "rules": ["set ct | ==1337"]},
            "ISTIO_OUTPUT": {"base": "regular", "rules": ["set meta | ==273"]},
        },
        "inet istio-ambient-nat": {
            "prerouting": {"base": "nat prerouting -100", "rules": ["jump ISTIO_PRERT | "]},
            "output": {"base": "nat output -100", "rules": ["jump ISTIO_OUTPUT | "]},
            "ISTIO_PRERT": {"base": "regular", "rules": [
                "accept | ==tcp ==169.254.7.127",
                "redirect 15006 | !=127.0.0.1 !=15008 !=1337", // nft folds `meta l4proto tcp` into `tcp dport`
            ]},
            "ISTIO_OUTPUT": {"base": "regular", "rules": [
                "accept | ==tcp ==169.254.7.127",
                "accept | ==tcp ==273",
                "accept | ==lo !=127.0.0.1",
                "redirect 15001 | ==tcp !=127.0.0.1 !=1337",
            ]},
        },
    })
}

fn assert_rules_present(pod: &Netns) {
    let got = nft_structure(pod);
    assert_eq!(got, expected_rules(), "nft ruleset in {}", pod.name);
    let (rules, routes) = routing_state(pod);
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert_eq!(rules[0]["fwmark"], "0x111");
    assert_eq!(rules[0]["fwmask"], "0xfff");
    assert_eq!(rules[0]["table"], "100");
    assert_eq!(routes.len(), 1, "{routes:?}");
    assert_eq!(routes[0]["type"], "local");
    assert_eq!(routes[0]["dst"], "default");
    assert_eq!(routes[0]["dev"], "lo");
}

fn assert_no_rules(pod: &Netns) {
    assert_eq!(
        nft_structure(pod),
        json!({}),
        "leftover nft tables in {}",
        pod.name
    );
    let (rules, routes) = routing_state(pod);
    assert!(
        rules.is_empty() && routes.is_empty(),
        "{rules:?} {routes:?}"
    );
}

fn adds_of(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Add { pod, .. } => Some(pod.clone()),
            _ => None,
        })
        .collect()
}

fn assert_clean(events: &[Event]) {
    assert!(
        !events.iter().any(|e| matches!(e, Event::Bad(_))),
        "protocol violations: {events:?}"
    );
}

/// Creates a pod netns, writes its file and runs the chain ADD; returns the netns and attachment.
fn start_pod(node: &Node, name: &str, uid: &str, ambient: bool) -> (Netns, Attachment) {
    let pod_ns = Netns::new(name);
    node.write_pod(&pod_json("demo", name, uid, ambient));
    let mut att = Attachment::new(&pod_ns, "demo", name, uid);
    node.chain().add(&mut att).unwrap();
    // As meshctl does after ADD: record netns and IPs.
    let (_, result) = att.cached.clone().unwrap();
    let ip = result["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let mut meta = pod_json("demo", name, uid, ambient);
    meta["netns"] = json!(pod_ns.path());
    meta["ips"] = json!([ip]);
    node.write_pod(&meta);
    (pod_ns, att)
}

#[test]
fn chain_add_check_del_installs_and_removes_the_spec_rules() {
    let node = Node::new();
    let agent = AgentProc::start(&node, &[]);
    let zt = FakeZtunnel::connect(&node.zds_socket(), false);
    let pod_ns = Netns::new("client");
    node.write_pod(&pod_json("demo", "client", "uid-client", true));
    let mut att = Attachment::new(&pod_ns, "demo", "client", "uid-client");

    let out = node.chain().add(&mut att).unwrap();
    let types: Vec<&str> = out.per_plugin.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(types, ["bridge", "istio-cni"]);
    assert_eq!(
        out.result, out.per_plugin[0].1,
        "ADD must pass the bridge result through unchanged"
    );
    assert!(
        out.result["ips"][0]["address"]
            .as_str()
            .unwrap()
            .starts_with("10.250.1.")
    );

    assert_rules_present(&pod_ns);
    let events = zt.wait("add", T, |e| !adds_of(e).is_empty());
    assert_clean(&events);
    assert_eq!(
        events.last().unwrap(),
        &Event::Add {
            uid: "uid-client".into(),
            pod: "demo/client".into(),
            netns_ino: netns_ino(&pod_ns.path())
        }
    );
    let record = &node.pods_json()["demo/client"];
    assert_eq!(record["redirection"], "enabled");
    assert_eq!(record["uid"], "uid-client");
    // The node-side probe SNAT set holds the pod IP.
    let host = node
        .netns
        .exec_ok("nft", &["list", "table", "inet", "istio-ambient-host"]);
    let ip = out.result["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    assert!(host.contains(ip), "{host}");

    node.chain().check(&att).unwrap();

    // Un-enrollment: the namespace label goes away (the pod keeps running).
    let mut meta = pod_json("demo", "client", "uid-client", false);
    meta["netns"] = json!(pod_ns.path());
    meta["ips"] = json!([ip]);
    node.write_pod(&meta);
    let events = zt.wait("del", T, |e| {
        e.contains(&Event::Del {
            uid: "uid-client".into(),
        })
    });
    assert_clean(&events);
    harness::wait_for("pods.json to drop the pod", T, || {
        node.pods_json().get("demo/client").is_none().then_some(())
    });
    assert_no_rules(&pod_ns);

    node.chain().del(&att).unwrap();
    node.chain().del(&att).unwrap();
    let mut gone = pod_ns;
    gone.delete();
    node.chain().del(&att).unwrap();
    let mut no_cache = att.clone();
    no_cache.cached = None;
    node.chain().del(&no_cache).unwrap();
    drop(agent);
}

#[test]
fn add_without_ztunnel_fails_with_code_11_and_leaves_nothing_and_status_reports_it() {
    let node = Node::new();
    let mut agent = AgentProc::start(&node, &[]);
    let status = |node: &Node| {
        let (file, list) = node.chain().load();
        let _ = file;
        let plugin = list["plugins"].as_array().unwrap().last().unwrap().clone();
        let mut conf = plugin.clone();
        conf["cniVersion"] = json!("1.1.0");
        conf["name"] = list["name"].clone();
        harness::run_plugin(&[("CNI_COMMAND", "STATUS")], conf.to_string().as_bytes())
    };
    // Agent up, no ztunnel: ADD cannot be served.
    let (ok, out) = status(&node);
    assert!(!ok);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["code"],
        50,
        "{out}"
    );

    let pod_ns = Netns::new("lonely");
    node.write_pod(&pod_json("demo", "lonely", "uid-lonely", true));
    let mut att = Attachment::new(&pod_ns, "demo", "lonely", "uid-lonely");
    let start = Instant::now();
    let err = node
        .chain()
        .add(&mut att)
        .err()
        .expect("ADD must fail without ztunnel");
    assert_eq!(err.plugin, "istio-cni");
    assert_eq!(err.code(), Some(11), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(20));
    assert_no_rules(&pod_ns);
    assert!(node.pods_json().get("demo/lonely").is_none());
    // The runtime cleans up with DEL (no cached result).
    node.chain().del(&att).unwrap();

    // With a tunnel: STATUS succeeds, and a NACKing tunnel also fails ADD closed.
    let zt = FakeZtunnel::connect(&node.zds_socket(), true);
    harness::wait_for("STATUS ok", T, || status(&node).0.then_some(()));
    let err = node
        .chain()
        .add(&mut att)
        .err()
        .expect("ADD must fail on NACK");
    assert_eq!(err.code(), Some(11), "{err:?}");
    assert_no_rules(&pod_ns);
    assert_clean(&zt.events());
    node.chain().del(&att).unwrap();

    // Agent down: 50.
    agent.terminate();
    let (ok, out) = status(&node);
    assert!(!ok);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["code"],
        50,
        "{out}"
    );
    // Default: the entry stays, so ADD of ambient pods keeps failing closed while the agent is away.
    let err = node
        .chain()
        .add(&mut att)
        .err()
        .expect("ADD must fail with the agent down");
    assert_eq!(err.code(), Some(11));
    assert_no_rules(&pod_ns);
}

#[test]
fn replays_on_ztunnel_restart_and_survives_agent_restart() {
    let node = Node::new();
    let mut agent = AgentProc::start(&node, &[]);
    let zt1 = FakeZtunnel::connect(&node.zds_socket(), false);
    let (p1, _a1) = start_pod(&node, "p1", "uid-1", true);
    let (p2, _a2) = start_pod(&node, "p2", "uid-2", true);
    zt1.wait("two adds", T, |e| adds_of(e).len() == 2);
    zt1.close();

    // ztunnel restart: full replay, one Ack each, then snapshot_sent.
    let zt2 = FakeZtunnel::connect(&node.zds_socket(), false);
    let ev = zt2.wait("replay", T, |e| e.contains(&Event::Snapshot));
    assert_clean(&ev);
    assert_eq!(adds_of(&ev), ["demo/p1", "demo/p2"]);
    assert_eq!(ev.last(), Some(&Event::Snapshot));
    assert!(ev.contains(&Event::Add {
        uid: "uid-2".into(),
        pod: "demo/p2".into(),
        netns_ino: netns_ino(&p2.path())
    }));

    // Two tunnels (rolling upgrade): add only to the newest, del to all.
    let zt3 = FakeZtunnel::connect(&node.zds_socket(), false);
    zt3.wait("replay to the newest", T, |e| e.contains(&Event::Snapshot));
    let (p3, _a3) = start_pod(&node, "p3", "uid-3", true);
    zt3.wait("add p3", T, |e| adds_of(e).contains(&"demo/p3".to_string()));
    assert!(
        !adds_of(&zt2.events()).contains(&"demo/p3".to_string()),
        "add went to an old tunnel"
    );
    node.remove_pod("demo", "p1");
    let del1 = Event::Del {
        uid: "uid-1".into(),
    };
    zt2.wait("del on the old tunnel", T, |e| e.contains(&del1));
    zt3.wait("del on the new tunnel", T, |e| e.contains(&del1));
    assert_no_rules(&p1);

    // Agent restart; p2 is deleted while it is down.
    agent.kill();
    zt2.wait("old tunnel sees the agent go", T, |e| {
        e.contains(&Event::Closed)
    });
    node.remove_pod("demo", "p2");
    let agent2 = AgentProc::start(&node, &[]);
    let zt4 = FakeZtunnel::connect(&node.zds_socket(), false);
    let ev = zt4.wait("replay after agent restart", T, |e| {
        e.contains(&Event::Snapshot)
    });
    assert_clean(&ev);
    assert_eq!(
        adds_of(&ev),
        ["demo/p3"],
        "p2 must be dropped by the snapshot: {ev:?}"
    );
    assert_rules_present(&p3);
    assert_no_rules(&p2);
    harness::wait_for("pods.json after restart", T, || {
        let pods = node.pods_json();
        (pods.as_object().unwrap().len() == 1 && pods["demo/p3"]["redirection"] == "enabled")
            .then_some(())
    });
    drop(agent2);
    drop((zt2, zt3));
}

#[test]
fn informer_enrolls_a_running_pod_when_labelled_and_a_pod_started_before_the_agent() {
    let node = Node::new();
    // A pod that exists before the agent starts (the reboot race): captured at start-up.
    let early = Netns::new("early");
    let mut early_meta = pod_json("demo", "early", "uid-early", true);
    early_meta["netns"] = json!(early.path());
    early_meta["ips"] = json!(["10.250.1.200"]);
    node.write_pod(&early_meta);

    let _agent = AgentProc::start(&node, &[]);
    assert_rules_present(&early);
    let zt = FakeZtunnel::connect(&node.zds_socket(), false);
    zt.wait("replay of the early pod", T, |e| {
        e.contains(&Event::Snapshot)
    });
    assert_eq!(adds_of(&zt.events()), ["demo/early"]);
    harness::wait_for("early pod enabled", T, || {
        (node.pods_json()["demo/early"]["redirection"] == "enabled").then_some(())
    });

    // Not ambient at ADD: passed through, nothing installed.
    let (late, att) = start_pod(&node, "late", "uid-late", false);
    assert_no_rules(&late);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(adds_of(&zt.events()), ["demo/early"]);

    // The pod gets the label while running: enrolled without restart.
    let mut meta: Value =
        serde_json::from_slice(&std::fs::read(node.path("pods").join("demo.late.json")).unwrap())
            .unwrap();
    meta["labels"]["istio.io/dataplane-mode"] = json!("ambient");
    node.write_pod(&meta);
    zt.wait("add for the labelled pod", T, |e| {
        adds_of(e).contains(&"demo/late".to_string())
    });
    harness::wait_for("late pod enabled", T, || {
        (node.pods_json()["demo/late"]["redirection"] == "enabled").then_some(())
    });
    assert_rules_present(&late);
    // Opt-out label on the pod: un-enrolled.
    meta["labels"]["istio.io/dataplane-mode"] = json!("none");
    meta["namespaceLabels"] = json!({"istio.io/dataplane-mode": "ambient"});
    node.write_pod(&meta);
    zt.wait("del for the opted-out pod", T, |e| {
        e.contains(&Event::Del {
            uid: "uid-late".into(),
        })
    });
    assert_no_rules(&late);
    assert_clean(&zt.events());
    node.chain().del(&att).unwrap();
}

#[test]
fn competing_writer_never_leaves_a_half_written_file_and_the_entry_comes_back() {
    let node = Node::new();
    let _agent = AgentProc::start(&node, &[]);
    let dir = node.path("net.d");
    let file = dir.join("10-meshnet.conflist");
    let base: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let mut without = base.clone();
    let plugins: Vec<Value> = base["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] != "istio-cni")
        .cloned()
        .collect();
    without["plugins"] = json!(plugins);
    let single = plugins[0].clone();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (dir, stop) = (dir.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                for e in std::fs::read_dir(&dir).unwrap().flatten() {
                    let name = e.file_name().to_string_lossy().to_string();
                    if name.starts_with('.') {
                        continue;
                    }
                    if let Ok(text) = std::fs::read(e.path()) {
                        serde_json::from_slice::<Value>(&text)
                            .unwrap_or_else(|err| panic!("half-written {name}: {err}"));
                        reads += 1;
                    }
                }
                std::thread::sleep(Duration::from_micros(500));
            }
            reads
        })
    };
    let start = Instant::now();
    let mut max_gap = Duration::ZERO;
    let iterations = 200;
    for i in 0..iterations {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "loop took too long"
        );
        // Every 10th round the other CNI writes a single-plugin .conf instead.
        if i % 10 == 9 {
            let _ = std::fs::remove_file(&file);
            let mut conf = single.clone();
            conf["cniVersion"] = json!("1.0.0");
            conf["name"] = json!("meshnet");
            harness::write_atomic(&dir.join("10-meshnet.conf"), conf.to_string().as_bytes());
        } else {
            harness::write_atomic(
                &file,
                serde_json::to_vec_pretty(&without).unwrap().as_slice(),
            );
        }
        let wrote = Instant::now();
        harness::wait_for("our entry back", Duration::from_secs(2), || {
            let list = node.primary_conf();
            let ok = list["plugins"].as_array().is_some_and(|p| {
                p.len() == 2 && p[1]["type"] == "istio-cni" && p[0]["type"] == "bridge"
            }) && !dir.join("10-meshnet.conf").exists();
            ok.then_some(())
        });
        max_gap = max_gap.max(wrote.elapsed());
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let reads = reader.join().expect("reader saw a half-written file");
    eprintln!(
        "competing writer: {iterations} rewrites in {:?}, max gap until the entry was back {max_gap:?}, {reads} parses",
        start.elapsed()
    );
    assert!(max_gap < Duration::from_secs(1), "max gap {max_gap:?}");
    let leftovers: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn malformed_inputs_get_the_right_error_codes_and_never_panic() {
    let good = json!({"cniVersion": "1.0.0", "name": "net", "type": "istio-cni", "ambient_enabled": true,
                      "cni_agent_run_dir": "/nonexistent/run"});
    let good_s = good.to_string();
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        c.to_string()
    };
    let without = |k: &str| {
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove(k);
        c.to_string()
    };
    let add_env: Vec<(&str, &str)> = vec![
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "abc"),
        ("CNI_NETNS", "/run/netns/none"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", "K8S_POD_NAMESPACE=demo;K8S_POD_NAME=x"),
    ];
    let env_without = |k: &str| -> Vec<(&str, &str)> {
        add_env.iter().copied().filter(|(n, _)| *n != k).collect()
    };
    let env_with = |k: &'static str, v: &'static str| -> Vec<(&str, &str)> {
        let mut e: Vec<(&str, &str)> = add_env.iter().copied().filter(|(n, _)| *n != k).collect();
        e.push((k, v));
        e
    };
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let big_name = with("name", json!("n".repeat(100_000)));
    let cases: Vec<(&str, Env, String, u64)> = vec![
        ("empty stdin", add_env.clone(), String::new(), 6),
        ("not json", add_env.clone(), "{".into(), 6),
        (
            "garbage bytes",
            add_env.clone(),
            "\u{0}\u{1}\u{2}".into(),
            6,
        ),
        ("json array", add_env.clone(), "[1,2]".into(), 6),
        ("json string", add_env.clone(), "\"x\"".into(), 6),
        ("json null", add_env.clone(), "null".into(), 6),
        ("deeply nested", add_env.clone(), deep, 6),
        (
            "trailing garbage",
            add_env.clone(),
            format!("{good_s}xyz"),
            6,
        ),
        ("no cniVersion", add_env.clone(), without("cniVersion"), 7),
        (
            "unknown cniVersion",
            add_env.clone(),
            with("cniVersion", json!("9.9.9")),
            1,
        ),
        (
            "old cniVersion",
            add_env.clone(),
            with("cniVersion", json!("0.1.0")),
            1,
        ),
        (
            "empty cniVersion",
            add_env.clone(),
            with("cniVersion", json!("")),
            1,
        ),
        (
            "numeric cniVersion",
            add_env.clone(),
            with("cniVersion", json!(1)),
            6,
        ),
        ("no name", add_env.clone(), without("name"), 6),
        ("empty name", add_env.clone(), with("name", json!("")), 7),
        ("no type", add_env.clone(), without("type"), 6),
        (
            "name not a string",
            add_env.clone(),
            with("name", json!(["x"])),
            6,
        ),
        (
            "ambient_enabled not bool",
            add_env.clone(),
            with("ambient_enabled", json!("yes")),
            6,
        ),
        (
            "exclude_namespaces not a list",
            add_env.clone(),
            with("exclude_namespaces", json!("a")),
            6,
        ),
        (
            "prevResult not an object",
            add_env.clone(),
            with("prevResult", json!([1])),
            6,
        ),
        (
            "prevResult a string",
            add_env.clone(),
            with("prevResult", json!("x")),
            6,
        ),
        (
            "iptables mode",
            add_env.clone(),
            with("native_nftables", json!(false)),
            2,
        ),
        (
            "empty run dir",
            add_env.clone(),
            with("cni_agent_run_dir", json!("")),
            7,
        ),
        (
            "no CNI_COMMAND",
            env_without("CNI_COMMAND"),
            good_s.clone(),
            4,
        ),
        (
            "unknown CNI_COMMAND",
            env_with("CNI_COMMAND", "FROB"),
            good_s.clone(),
            4,
        ),
        (
            "lowercase CNI_COMMAND",
            env_with("CNI_COMMAND", "add"),
            good_s.clone(),
            4,
        ),
        (
            "no CNI_CONTAINERID",
            env_without("CNI_CONTAINERID"),
            good_s.clone(),
            4,
        ),
        (
            "bad CNI_CONTAINERID",
            env_with("CNI_CONTAINERID", "a;rm -rf"),
            good_s.clone(),
            4,
        ),
        ("no CNI_NETNS", env_without("CNI_NETNS"), good_s.clone(), 4),
        (
            "no CNI_IFNAME",
            env_without("CNI_IFNAME"),
            good_s.clone(),
            4,
        ),
        (
            "bad CNI_IFNAME",
            env_with("CNI_IFNAME", "a/b"),
            good_s.clone(),
            4,
        ),
        (
            "long CNI_IFNAME",
            env_with("CNI_IFNAME", "abcdefghijklmnopq"),
            good_s.clone(),
            4,
        ),
        (
            "malformed CNI_ARGS",
            env_with("CNI_ARGS", "K8S_POD_NAME"),
            good_s.clone(),
            4,
        ),
        ("agent unreachable", add_env.clone(), good_s.clone(), 11),
        (
            "huge name, agent unreachable",
            add_env.clone(),
            big_name,
            11,
        ),
        (
            "GC without CNI_PATH",
            vec![("CNI_COMMAND", "GC")],
            good_s.clone(),
            4,
        ),
        (
            "STATUS, agent down",
            vec![("CNI_COMMAND", "STATUS")],
            good_s.clone(),
            50,
        ),
    ];
    assert!(cases.len() >= 30);
    for (what, env, stdin, code) in &cases {
        let (ok, out) = harness::run_plugin(env, stdin.as_bytes());
        assert!(!ok, "{what}: must fail, printed {out}");
        let v: Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{what}: stdout not JSON ({e}): {out}"));
        assert_eq!(v["code"], *code, "{what}: {out}");
        assert!(
            v["msg"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {out}"
        );
        assert!(v["cniVersion"].is_string(), "{what}: {out}");
    }
    // And the successes that need no agent.
    let ok_cases: Vec<(&str, Env, String)> = vec![
        (
            "VERSION",
            vec![("CNI_COMMAND", "VERSION")],
            r#"{"cniVersion":"1.1.0"}"#.into(),
        ),
        (
            "VERSION, empty stdin",
            vec![("CNI_COMMAND", "VERSION")],
            String::new(),
        ),
        (
            "ambient disabled",
            add_env.clone(),
            with("ambient_enabled", json!(false)),
        ),
        (
            "excluded namespace",
            add_env.clone(),
            with("exclude_namespaces", json!(["demo"])),
        ),
        (
            "not a pod",
            env_with("CNI_ARGS", "IgnoreUnknown=1"),
            good_s.clone(),
        ),
        (
            "DEL",
            env_without("CNI_NETNS")
                .into_iter()
                .map(|(k, v)| (k, if k == "CNI_COMMAND" { "DEL" } else { v }))
                .collect(),
            good_s.clone(),
        ),
        ("CHECK", env_with("CNI_COMMAND", "CHECK"), good_s.clone()),
        (
            "GC",
            vec![("CNI_COMMAND", "GC"), ("CNI_PATH", "/x")],
            good_s.clone(),
        ),
    ];
    for (what, env, stdin) in &ok_cases {
        let (ok, out) = harness::run_plugin(env, stdin.as_bytes());
        assert!(ok, "{what}: {out}");
        if *what == "VERSION" {
            let v: Value = serde_json::from_str(&out).unwrap();
            assert_eq!(v["cniVersion"], "1.1.0");
            assert!(
                v["supportedVersions"]
                    .as_array()
                    .unwrap()
                    .contains(&json!("1.0.0"))
            );
        }
        if what.starts_with("ambient")
            || what.starts_with("excluded")
            || what.starts_with("not a pod")
        {
            let v: Value = serde_json::from_str(&out).unwrap();
            assert_eq!(
                v,
                json!({"cniVersion": "1.0.0", "dns": {}}),
                "{what}: empty result"
            );
        }
    }
}
