//! The ADS server over real gRPC on 127.0.0.1, driven by a raw tonic ADS client: SotW and delta
//! subscriptions, ACK/NACK (events, dump, metrics), pushes of changes only, removals, stale nonces,
//! reconnects with `initial_resource_versions`, refusals and shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use xds::pb::envoy::config::cluster::v3::Cluster;
use xds::pb::envoy::config::core::v3::Node;
use xds::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use xds::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use xds::pb::google::rpc::Status as RpcStatus;
use xds::type_url::{ADDRESS, CLUSTER, ENDPOINT};
use xds::{AckEvent, AdsServer, Resource, SharedSnapshot, Snapshot};

const WAIT: Duration = Duration::from_secs(5);
/// How long "nothing arrives" is watched for.
const QUIET: Duration = Duration::from_millis(300);

/// A resource whose content (and so version) is determined by `tag`.
fn res(type_url: &str, name: &str, tag: &str) -> Resource {
    let body = Cluster {
        name: name.to_owned(),
        alt_stat_name: tag.to_owned(),
        ..Default::default()
    };
    Resource::new(type_url, name, &body)
}

fn snap(items: &[(&str, &str, &str)]) -> Arc<Snapshot> {
    let mut s = Snapshot::new();
    for (t, n, tag) in items {
        s.insert(res(t, n, tag));
    }
    Arc::new(s)
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

struct Harness {
    server: AdsServer,
    addr: SocketAddr,
    snapshots: watch::Sender<Arc<Snapshot>>,
    events: broadcast::Receiver<AckEvent>,
    stop: Option<oneshot::Sender<()>>,
    serving: JoinHandle<Result<(), xds::ServeError>>,
}

impl Harness {
    async fn start(initial: Arc<Snapshot>) -> Self {
        let (snapshots, rx) = watch::channel(initial);
        let server = AdsServer::new(Arc::new(SharedSnapshot::new(rx)));
        let events = server.events();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel();
        let serving = tokio::spawn(xds::serve(server.clone(), listener, async {
            let _ = stopped.await;
        }));
        Harness {
            server,
            addr,
            snapshots,
            events,
            stop: Some(stop),
            serving,
        }
    }

    async fn client(&self) -> AggregatedDiscoveryServiceClient<tonic::transport::Channel> {
        AggregatedDiscoveryServiceClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    async fn event(&mut self) -> AckEvent {
        tokio::time::timeout(WAIT, self.events.recv())
            .await
            .expect("an ACK/NACK event")
            .unwrap()
    }

    fn publish(&self, s: Arc<Snapshot>) {
        self.snapshots.send_replace(s);
    }

    /// The dump entry of `node`'s type `type_url` (waits for the server to have processed the last request).
    async fn dump_type(&self, node: &str, type_url: &str) -> serde_json::Value {
        let dump = self.server.dump();
        let client = dump["clients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["node_id"] == node)
            .unwrap_or_else(|| panic!("{node} not in {dump:#}"))
            .clone();
        client["types"][type_url].clone()
    }
}

fn node(id: &str) -> Option<Node> {
    Some(Node {
        id: id.to_owned(),
        cluster: "test".to_owned(),
        ..Default::default()
    })
}

struct Sotw {
    tx: mpsc::Sender<DiscoveryRequest>,
    rx: Streaming<DiscoveryResponse>,
}

impl Sotw {
    async fn open(h: &Harness, first: DiscoveryRequest) -> Self {
        let (tx, rx) = mpsc::channel(16);
        tx.send(first).await.unwrap();
        let rx = h
            .client()
            .await
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        Sotw { tx, rx }
    }

    async fn send(&self, r: DiscoveryRequest) {
        self.tx.send(r).await.unwrap();
    }

    async fn recv(&mut self) -> DiscoveryResponse {
        tokio::time::timeout(WAIT, self.rx.message())
            .await
            .expect("a response in time")
            .unwrap()
            .unwrap()
    }

    async fn quiet(&mut self) {
        if let Ok(m) = tokio::time::timeout(QUIET, self.rx.message()).await {
            panic!("expected no response, got {m:?}");
        }
    }

    /// ACKs `r` with `resource_names`.
    async fn ack(&self, r: &DiscoveryResponse, resource_names: &[&str]) {
        self.send(sotw_req(
            &r.type_url,
            resource_names,
            &r.version_info,
            &r.nonce,
        ))
        .await;
    }
}

fn sotw_req(
    type_url: &str,
    resource_names: &[&str],
    version: &str,
    nonce: &str,
) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: type_url.to_owned(),
        resource_names: names(resource_names),
        version_info: version.to_owned(),
        response_nonce: nonce.to_owned(),
        ..Default::default()
    }
}

/// Names of the `Cluster`-encoded resources of a response, with their tag.
fn decoded(resources: &[xds::pb::google::protobuf::Any]) -> Vec<String> {
    use prost::Message;
    resources
        .iter()
        .map(|a| {
            let c = Cluster::decode(a.value.as_slice()).unwrap();
            format!("{}@{}", c.name, c.alt_stat_name)
        })
        .collect()
}

#[tokio::test]
async fn sotw_subscriptions_acks_updates_removals() {
    let v1 = snap(&[
        (CLUSTER, "a", "1"),
        (CLUSTER, "b", "1"),
        (ENDPOINT, "a", "1"),
        (ENDPOINT, "b", "1"),
    ]);
    let mut h = Harness::start(v1.clone()).await;
    let mut c = Sotw::open(
        &h,
        DiscoveryRequest {
            node: node("sotw-1"),
            ..sotw_req(CLUSTER, &[], "", "")
        },
    )
    .await;

    let cds = c.recv().await;
    assert_eq!(cds.type_url, CLUSTER);
    assert_eq!(cds.version_info, v1.type_version(CLUSTER));
    assert_eq!(
        decoded(&cds.resources),
        ["a@1", "b@1"],
        "wildcard: the full set"
    );
    c.ack(&cds, &[]).await;
    let ev = h.event().await;
    assert_eq!(
        ev,
        AckEvent {
            node_id: "sotw-1".into(),
            type_url: CLUSTER.into(),
            version: cds.version_info.clone(),
            nonce: cds.nonce.clone(),
            nack: None
        }
    );

    c.send(sotw_req(ENDPOINT, &["a"], "", "")).await;
    let eds = c.recv().await;
    assert_eq!(
        decoded(&eds.resources),
        ["a@1"],
        "named: only what was asked"
    );
    assert_ne!(eds.nonce, cds.nonce);
    c.ack(&eds, &["a"]).await;
    h.event().await;

    // Same snapshot again: nothing.
    h.publish(v1.clone());
    c.quiet().await;

    // One endpoint changes: only that one, and CDS stays quiet.
    let v2 = snap(&[
        (CLUSTER, "a", "1"),
        (CLUSTER, "b", "1"),
        (ENDPOINT, "a", "2"),
        (ENDPOINT, "b", "1"),
    ]);
    h.publish(v2.clone());
    let eds2 = c.recv().await;
    assert_eq!(
        (eds2.type_url.as_str(), decoded(&eds2.resources)),
        (ENDPOINT, vec!["a@2".to_owned()])
    );
    c.ack(&eds2, &["a"]).await;
    h.event().await;
    c.quiet().await;

    // Cluster b removed: the CDS full set without it.
    let v3 = snap(&[(CLUSTER, "a", "1"), (ENDPOINT, "a", "2")]);
    h.publish(v3.clone());
    let cds3 = c.recv().await;
    assert_eq!(
        (cds3.type_url.as_str(), decoded(&cds3.resources)),
        (CLUSTER, vec!["a@1".to_owned()])
    );
    assert_eq!(cds3.version_info, v3.type_version(CLUSTER));
    c.ack(&cds3, &[]).await;
    h.event().await;

    let t = h.dump_type("sotw-1", CLUSTER).await;
    assert_eq!(t["wildcard"], true);
    assert_eq!(t["last_sent"]["nonce"], cds3.nonce.as_str());
    assert_eq!(t["last_acked_version"], cds3.version_info.as_str());
    assert!(t["last_nack"].is_null());
    let t = h.dump_type("sotw-1", ENDPOINT).await;
    assert_eq!(
        (t["wildcard"].clone(), t["names"].clone()),
        (false.into(), serde_json::json!(["a"]))
    );
}

#[tokio::test]
async fn sotw_nack_is_recorded_in_events_dump_and_metrics() {
    let mut h = Harness::start(snap(&[(CLUSTER, "a", "good")])).await;
    let mut registry = prometheus_client::registry::Registry::default();
    h.server.register_metrics(&mut registry);
    let mut c = Sotw::open(
        &h,
        DiscoveryRequest {
            node: node("sotw-nack"),
            ..sotw_req(CLUSTER, &[], "", "")
        },
    )
    .await;
    let good = c.recv().await;
    c.ack(&good, &[]).await;
    h.event().await;

    h.publish(snap(&[(CLUSTER, "a", "bad")]));
    let bad = c.recv().await;
    let nack = DiscoveryRequest {
        error_detail: Some(RpcStatus {
            code: 3,
            message: "cluster a: invalid".into(),
            details: vec![],
        }),
        ..sotw_req(CLUSTER, &[], &good.version_info, &bad.nonce)
    };
    c.send(nack).await;
    let ev = h.event().await;
    assert_eq!(ev.nack.as_deref(), Some("cluster a: invalid"));
    assert_eq!(
        (ev.version.as_str(), ev.nonce.as_str()),
        (good.version_info.as_str(), bad.nonce.as_str())
    );
    c.quiet().await;

    let t = h.dump_type("sotw-nack", CLUSTER).await;
    assert_eq!(t["last_nack"]["message"], "cluster a: invalid");
    assert_eq!(
        t["last_nack"]["version"],
        good.version_info.as_str(),
        "the version kept"
    );
    assert_eq!(
        t["last_nack"]["rejected_version"],
        bad.version_info.as_str()
    );
    assert_eq!(t["last_nack"]["nonce"], bad.nonce.as_str());
    assert_eq!(t["last_acked_version"], good.version_info.as_str());

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for line in [
        "xds_connected_clients 1",
        "xds_pushes_total{type=\"cluster\"} 2",
        "xds_acks_total{type=\"cluster\"} 1",
        "xds_nacks_total{type=\"cluster\"} 1",
    ] {
        assert!(text.contains(line), "{line} not in\n{text}");
    }

    // A fixed config is pushed and ACKed normally.
    h.publish(snap(&[(CLUSTER, "a", "fixed")]));
    let fixed = c.recv().await;
    assert_eq!(decoded(&fixed.resources), ["a@fixed"]);
}

#[tokio::test]
async fn sotw_stale_nonce_is_not_an_ack_but_new_names_are_served() {
    let mut h = Harness::start(snap(&[(ENDPOINT, "a", "1"), (ENDPOINT, "b", "1")])).await;
    let mut c = Sotw::open(
        &h,
        DiscoveryRequest {
            node: node("sotw-stale"),
            ..sotw_req(ENDPOINT, &["a"], "", "")
        },
    )
    .await;
    let first = c.recv().await;
    h.publish(snap(&[(ENDPOINT, "a", "2"), (ENDPOINT, "b", "1")]));
    let second = c.recv().await;
    // A request answering the superseded response, adding "b".
    c.send(sotw_req(
        ENDPOINT,
        &["a", "b"],
        &first.version_info,
        &first.nonce,
    ))
    .await;
    let third = c.recv().await;
    assert_eq!(decoded(&third.resources), ["b@1"], "the new name is served");
    // A stale NACK is ignored.
    let stale_nack = DiscoveryRequest {
        error_detail: Some(RpcStatus::default()),
        ..sotw_req(ENDPOINT, &["a", "b"], "", &second.nonce)
    };
    c.send(stale_nack).await;
    c.ack(&third, &["a", "b"]).await;
    let ev = h.event().await;
    assert_eq!(
        (ev.nonce.as_str(), ev.nack.as_deref()),
        (third.nonce.as_str(), None),
        "only the ACK of the latest counts"
    );
    assert!(h.dump_type("sotw-stale", ENDPOINT).await["last_nack"].is_null());
}

struct Delta {
    tx: mpsc::Sender<DeltaDiscoveryRequest>,
    rx: Streaming<DeltaDiscoveryResponse>,
}

impl Delta {
    async fn open(h: &Harness, first: DeltaDiscoveryRequest) -> Self {
        let (tx, rx) = mpsc::channel(16);
        tx.send(first).await.unwrap();
        let rx = h
            .client()
            .await
            .delta_aggregated_resources(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        Delta { tx, rx }
    }

    async fn send(&self, r: DeltaDiscoveryRequest) {
        self.tx.send(r).await.unwrap();
    }

    async fn recv(&mut self) -> DeltaDiscoveryResponse {
        tokio::time::timeout(WAIT, self.rx.message())
            .await
            .expect("a response in time")
            .unwrap()
            .unwrap()
    }

    async fn quiet(&mut self) {
        if let Ok(m) = tokio::time::timeout(QUIET, self.rx.message()).await {
            panic!("expected no response, got {m:?}");
        }
    }

    async fn ack(&self, r: &DeltaDiscoveryResponse) {
        self.send(delta_req(&r.type_url, &[], &[], &r.nonce)).await;
    }
}

fn delta_req(
    type_url: &str,
    subscribe: &[&str],
    unsubscribe: &[&str],
    nonce: &str,
) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: type_url.to_owned(),
        resource_names_subscribe: names(subscribe),
        resource_names_unsubscribe: names(unsubscribe),
        response_nonce: nonce.to_owned(),
        ..Default::default()
    }
}

fn updated(r: &DeltaDiscoveryResponse) -> Vec<String> {
    let any: Vec<_> = r
        .resources
        .iter()
        .filter_map(|x| x.resource.clone())
        .collect();
    decoded(&any)
}

#[tokio::test]
async fn delta_wildcard_named_updates_removals_reconnect() {
    let v1 = snap(&[
        (ADDRESS, "w1", "1"),
        (ADDRESS, "w2", "1"),
        (CLUSTER, "c1", "1"),
        (CLUSTER, "c2", "1"),
    ]);
    let mut h = Harness::start(v1.clone()).await;
    let mut d = Delta::open(
        &h,
        DeltaDiscoveryRequest {
            node: node("delta-1"),
            ..delta_req(ADDRESS, &[], &[], "")
        },
    )
    .await;
    let r = d.recv().await;
    assert_eq!(
        (updated(&r), r.removed_resources.clone()),
        (names(&["w1@1", "w2@1"]), vec![])
    );
    assert_eq!(r.system_version_info, v1.type_version(ADDRESS));
    let w1_version = r.resources[0].version.clone();
    d.ack(&r).await;
    assert_eq!(h.event().await.nack, None);

    // Named subscription with an unknown name: removed_resources at once.
    d.send(delta_req(CLUSTER, &["c1", "nope"], &[], "")).await;
    let r = d.recv().await;
    assert_eq!(
        (updated(&r), r.removed_resources.clone()),
        (names(&["c1@1"]), names(&["nope"]))
    );
    d.ack(&r).await;
    h.event().await;

    // Changes only; removals after additions.
    h.publish(snap(&[
        (ADDRESS, "w1", "1"),
        (ADDRESS, "w3", "1"),
        (CLUSTER, "c1", "2"),
        (CLUSTER, "c2", "2"),
    ]));
    let mut got = Vec::new();
    for _ in 0..3 {
        let r = d.recv().await;
        got.push((r.type_url.clone(), updated(&r), r.removed_resources.clone()));
        d.ack(&r).await;
    }
    assert_eq!(
        got,
        [
            (CLUSTER.to_owned(), names(&["c1@2"]), vec![]),
            (ADDRESS.to_owned(), names(&["w3@1"]), vec![]),
            (ADDRESS.to_owned(), vec![], names(&["w2"])),
        ],
        "c2 is not subscribed; w1 is unchanged"
    );
    d.quiet().await;

    // Stale nonce: the subscription change is honoured.
    d.send(delta_req(CLUSTER, &["c2"], &[], "stale-nonce"))
        .await;
    let r = d.recv().await;
    assert_eq!(updated(&r), ["c2@2"]);
    let t = h.dump_type("delta-1", CLUSTER).await;
    assert_eq!(t["names"], serde_json::json!(["c1", "c2", "nope"]));

    // Reconnect with initial_resource_versions: w1 is current, "gone" is not on the server, w3 is new.
    drop(d);
    let first = DeltaDiscoveryRequest {
        node: node("delta-2"),
        initial_resource_versions: HashMap::from([
            ("w1".to_owned(), w1_version),
            ("gone".to_owned(), "x".to_owned()),
        ]),
        ..delta_req(ADDRESS, &[], &[], "")
    };
    let mut d2 = Delta::open(&h, first).await;
    let r = d2.recv().await;
    assert_eq!(
        (updated(&r), r.removed_resources.clone()),
        (names(&["w3@1"]), names(&["gone"]))
    );
}

#[tokio::test]
async fn delta_nack_is_recorded() {
    let mut h = Harness::start(snap(&[(CLUSTER, "c", "1")])).await;
    let mut d = Delta::open(
        &h,
        DeltaDiscoveryRequest {
            node: node("delta-nack"),
            ..delta_req(CLUSTER, &["*"], &[], "")
        },
    )
    .await;
    let good = d.recv().await;
    d.ack(&good).await;
    h.event().await;
    h.publish(snap(&[(CLUSTER, "c", "2")]));
    let bad = d.recv().await;
    let nack = DeltaDiscoveryRequest {
        error_detail: Some(RpcStatus {
            code: 13,
            message: "no".into(),
            details: vec![],
        }),
        ..delta_req(CLUSTER, &[], &[], &bad.nonce)
    };
    d.send(nack).await;
    let ev = h.event().await;
    assert_eq!(
        (ev.nack.as_deref(), ev.version.as_str()),
        (Some("no"), good.system_version_info.as_str())
    );
    let t = h.dump_type("delta-nack", CLUSTER).await;
    assert_eq!(
        t["last_nack"]["rejected_version"],
        bad.system_version_info.as_str()
    );
    d.quiet().await;
}

#[tokio::test]
async fn refuses_a_stream_without_node() {
    let h = Harness::start(snap(&[])).await;
    let (tx, rx) = mpsc::channel(1);
    tx.send(sotw_req(CLUSTER, &[], "", "")).await.unwrap();
    let res = h
        .client()
        .await
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await;
    let status = match res {
        Err(s) => s,
        Ok(mut stream) => stream
            .get_mut()
            .message()
            .await
            .expect_err("the stream must fail"),
    };
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");

    let (tx, rx) = mpsc::channel(1);
    tx.send(delta_req(CLUSTER, &[], &[], "")).await.unwrap();
    let res = h
        .client()
        .await
        .delta_aggregated_resources(ReceiverStream::new(rx))
        .await;
    let status = match res {
        Err(s) => s,
        Ok(mut stream) => stream
            .get_mut()
            .message()
            .await
            .expect_err("the stream must fail"),
    };
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
}

#[tokio::test]
async fn disconnects_and_shutdown_end_streams() {
    let mut h = Harness::start(snap(&[(CLUSTER, "a", "1")])).await;
    let mut c = Sotw::open(
        &h,
        DiscoveryRequest {
            node: node("bye"),
            ..sotw_req(CLUSTER, &[], "", "")
        },
    )
    .await;
    c.recv().await;
    let gone = Sotw::open(
        &h,
        DiscoveryRequest {
            node: node("gone"),
            ..sotw_req(CLUSTER, &[], "", "")
        },
    )
    .await;
    drop(gone);
    // The dropped client disappears from the dump.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let clients = h.server.dump()["clients"].as_array().unwrap().len();
        if clients == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "dump still lists {clients} clients"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    h.stop.take().unwrap().send(()).unwrap();
    let status = tokio::time::timeout(WAIT, c.rx.message())
        .await
        .expect("the stream ends in time");
    assert_eq!(
        status.expect_err("ended with a status").code(),
        tonic::Code::Unavailable
    );
    drop(c);
    tokio::time::timeout(WAIT, &mut h.serving)
        .await
        .expect("serve returns")
        .unwrap()
        .unwrap();
}
