//! The three servers in-process on 127.0.0.1:0, spoken to with raw HTTP/1.1 over a `TcpStream`.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::*;
use crate::telemetry::logging::LogLevelControl;
use crate::telemetry::metrics::{CommonTrafficLabels, Metrics, Reporter};
use crate::telemetry::{ConnectionAddrs, ConnectionRecorder};

const LOCAL: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request on a fresh connection (`Connection: close`), read to EOF.
async fn request(addr: SocketAddr, method: &str, target: &str, extra_headers: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{extra_headers}\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .map(|l| l.split_once(':').unwrap())
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

struct StaticDump;

impl ConfigDumpSource for StaticDump {
    fn config_dump(&self) -> serde_json::Value {
        serde_json::json!({ "workloads": [], "services": [], "version": "test" })
    }
}

struct Admin {
    addr: SocketAddr,
    quit: watch::Receiver<bool>,
    log_control: LogLevelControl,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

async fn start_admin() -> Admin {
    let (filter_layer, log_control) = LogLevelControl::new(Some("info")).unwrap();
    let (quit_tx, quit) = watch::channel(false);
    let state = AdminState {
        config_dump: Arc::new(StaticDump),
        log_control: log_control.clone(),
        quit: quit_tx,
    };
    let server = AdminServer::bind(LOCAL, state).await.unwrap();
    let addr = server.local_addr();
    let (stop, stop_rx) = watch::channel(false);
    // The server runs under a subscriber holding the filter, as under the global one in production (reloads
    // rebuild tracing's interest cache against the current dispatcher).
    let subscriber = tracing::Dispatch::new(tracing_subscriber::layer::SubscriberExt::with(
        tracing_subscriber::registry(),
        filter_layer,
    ));
    let task = tokio::spawn(tracing::instrument::WithSubscriber::with_subscriber(
        server.run(stop_rx),
        subscriber,
    ));
    Admin {
        addr,
        quit,
        log_control,
        stop,
        task,
    }
}

#[tokio::test]
async fn admin_routes() {
    let admin = start_admin().await;
    let index = request(admin.addr, "GET", "/", "").await;
    assert_eq!(
        (index.status, index.header("content-type")),
        (200, Some("text/html; charset=utf-8"))
    );
    assert!(index.body.contains("/config_dump"));

    let dump = request(admin.addr, "GET", "/config_dump", "").await;
    assert_eq!(
        (dump.status, dump.header("content-type")),
        (200, Some("application/json"))
    );
    let value: serde_json::Value = serde_json::from_str(&dump.body).unwrap();
    assert_eq!(value["version"], "test");
    assert!(
        dump.body.contains("\n  \""),
        "pretty-printed: {}",
        dump.body
    );

    assert_eq!(request(admin.addr, "GET", "/nope", "").await.status, 404);
    let pprof = request(admin.addr, "GET", "/debug/pprof/profile?seconds=1", "").await;
    assert_eq!(pprof.status, 501);
    let get_quit = request(admin.addr, "GET", "/quitquitquit", "").await;
    assert_eq!(
        (get_quit.status, get_quit.header("allow")),
        (405, Some("POST"))
    );
    assert!(!*admin.quit.borrow());
    admin.stop.send_replace(true);
    admin.task.await.unwrap();
}

#[tokio::test]
async fn logging_endpoint_changes_levels() {
    let admin = start_admin().await;
    let get = request(admin.addr, "GET", "/logging", "").await;
    assert_eq!((get.status, get.header("allow")), (405, Some("POST")));

    let list = request(admin.addr, "POST", "/logging", "").await;
    assert_eq!(
        (list.status, list.body.as_str()),
        (200, "current log level is info\n")
    );
    assert_eq!(
        list.header("content-type"),
        Some("text/plain; charset=utf-8")
    );

    let set = request(admin.addr, "POST", "/logging?level=debug", "").await;
    assert_eq!(
        (set.status, set.body.as_str()),
        (200, "current log level is debug\n")
    );
    assert_eq!(admin.log_control.current(), "debug");

    let modules = request(
        admin.addr,
        "POST",
        "/logging?level=ztunnel::proxy:trace,hyper:warn",
        "",
    )
    .await;
    assert_eq!(modules.status, 200);
    assert_eq!(
        admin.log_control.current(),
        "debug,hyper=warn,ztunnel::proxy=trace"
    );

    let bad = request(admin.addr, "POST", "/logging?level=loud", "").await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("unknown log level"), "{}", bad.body);
    assert_eq!(
        admin.log_control.current(),
        "debug,hyper=warn,ztunnel::proxy=trace"
    );

    let reset = request(admin.addr, "POST", "/logging?reset", "").await;
    assert_eq!(
        (reset.status, reset.body.as_str()),
        (200, "current log level is info\n")
    );
    assert_eq!(admin.log_control.current(), "info");
    admin.stop.send_replace(true);
    admin.task.await.unwrap();
}

#[tokio::test]
async fn quitquitquit_fires_and_server_stops() {
    let mut admin = start_admin().await;
    let reply = request(admin.addr, "POST", "/quitquitquit", "").await;
    assert_eq!(reply.status, 200);
    admin.quit.wait_for(|q| *q).await.unwrap();
    admin.stop.send_replace(true);
    admin.task.await.unwrap();
    assert!(
        TcpStream::connect(admin.addr).await.is_err(),
        "listener closed after shutdown"
    );
}

#[tokio::test]
async fn readiness_flips_when_guards_drop() {
    let readiness = Readiness::new();
    let server = ReadinessServer::bind(LOCAL, readiness.clone())
        .await
        .unwrap();
    let addr = server.local_addr();
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(server.run(stop_rx));

    let state = readiness.register("state manager");
    let proxy = readiness.register("proxy");
    let pending = request(addr, "GET", "/healthz/ready", "").await;
    assert_eq!(pending.status, 500);
    assert_eq!(pending.body, "not ready, pending: state manager, proxy\n");
    drop(state);
    assert_eq!(
        request(addr, "GET", "/healthz/ready", "").await.body,
        "not ready, pending: proxy\n"
    );
    proxy.ready();
    let ready = request(addr, "GET", "/healthz/ready", "").await;
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));
    assert_eq!(
        ready.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(request(addr, "GET", "/other", "").await.status, 404);
    assert_eq!(
        request(addr, "POST", "/healthz/ready", "").await.status,
        405
    );
    stop.send_replace(true);
    task.await.unwrap();
}

#[tokio::test]
async fn metrics_in_both_formats() {
    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::new(&mut registry, "1.27.0"));
    let server = StatsServer::bind(LOCAL, Arc::new(registry)).await.unwrap();
    let addr = server.local_addr();
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(server.run(stop_rx));

    let labels = CommonTrafficLabels {
        source_workload: "client".into(),
        ..CommonTrafficLabels::new(Reporter::Source)
    };
    let addrs = ConnectionAddrs {
        src: "10.0.0.1:1234".parse().unwrap(),
        dst: "10.0.0.2:80".parse().unwrap(),
        dst_hbone: None,
    };
    let recorder = ConnectionRecorder::new(metrics.clone(), labels, addrs);
    recorder.add_received(3);

    let open = request(
        addr,
        "GET",
        "/metrics",
        "Accept: application/openmetrics-text; version=1.0.0\r\n",
    )
    .await;
    assert_eq!(open.status, 200);
    assert_eq!(
        open.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(open.body.ends_with("# EOF\n"));
    assert!(
        open.body
            .contains("istio_tcp_sockets_open{reporter=\"source\"} 1"),
        "{}",
        open.body
    );
    assert!(open.body.contains("source_workload=\"client\""));
    assert!(open.body.contains("destination_workload=\"unknown\""));
    recorder.finish::<crate::telemetry::ConnectionFailure>(Ok(()));

    let plain = request(addr, "GET", "/stats/prometheus", "").await;
    assert_eq!(plain.status, 200);
    assert_eq!(
        plain.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(!plain.body.contains("# EOF"));
    assert!(
        plain
            .body
            .contains("# TYPE istio_tcp_connections_closed_total counter"),
        "{}",
        plain.body
    );
    assert!(
        plain
            .body
            .contains("istio_tcp_sockets_open{reporter=\"source\"} 0")
    );
    assert!(
        plain
            .body
            .contains("istio_build{component=\"ztunnel\",tag=\"1.27.0\"} 1")
    );
    let received = plain
        .body
        .lines()
        .find(|l| l.starts_with("istio_tcp_received_bytes_total{"))
        .unwrap();
    assert!(received.ends_with(" 3"), "{received}");

    assert_eq!(request(addr, "POST", "/metrics", "").await.status, 405);
    assert_eq!(request(addr, "GET", "/stats", "").await.status, 404);
    stop.send_replace(true);
    task.await.unwrap();
}

#[tokio::test]
async fn bind_fails_on_taken_port() {
    let taken = tokio::net::TcpListener::bind(LOCAL).await.unwrap();
    let addr = taken.local_addr().unwrap();
    let error = ReadinessServer::bind(addr, Readiness::new())
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        AdminError::Bind {
            server: "readiness",
            ..
        }
    ));
    assert!(error.to_string().contains(&addr.to_string()), "{error}");
}
