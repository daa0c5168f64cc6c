#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use hbone::ca::{CaClient, CaClientConfig, CaError, TokenSource};

const TD: &str = "cluster.local";

fn id(ns: &str, sa: &str) -> Identity {
    Identity::new(TD, ns, sa).unwrap()
}

fn tokens_file(dir: &Path) -> PathBuf {
    let path = dir.join("tokens.json");
    let tokens = serde_json::json!({
        "node1-token": "node1",
        "waypoint-token": {"serviceAccount": "demo/waypoint"},
        "bad-sa": {"serviceAccount": "no-slash"},
        "bad-shape": 42,
    });
    std::fs::write(&path, tokens.to_string()).unwrap();
    path
}

#[test]
fn tokens_authenticate_as_their_subject() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = Tokens {
        path: Some(tokens_file(dir.path())),
        trust_domain: TD.into(),
    };
    let node = tokens.caller("node1-token").unwrap();
    assert_eq!(
        node,
        Caller {
            identity: id(ZTUNNEL_NS, ZTUNNEL_SA),
            node: Some("node1".into()),
        }
    );
    let waypoint = tokens.caller("waypoint-token").unwrap();
    assert_eq!(
        waypoint,
        Caller {
            identity: id("demo", "waypoint"),
            node: None,
        }
    );
    for bad in ["unknown", "bad-sa", "bad-shape", ""] {
        let err = tokens.caller(bad).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "{bad}: {err}");
    }
    let none = Tokens {
        path: None,
        trust_domain: TD.into(),
    };
    assert!(none.caller("node1-token").is_err());
}

#[test]
fn token_subjects_keep_their_json_forms() {
    let map: BTreeMap<String, TokenSubject> = [
        ("a".to_string(), TokenSubject::Node("node1".into())),
        (
            "b".to_string(),
            TokenSubject::ServiceAccount {
                service_account: "demo/waypoint".into(),
            },
        ),
    ]
    .into();
    let text = serde_json::to_string(&map).unwrap();
    assert_eq!(
        text,
        r#"{"a":"node1","b":{"serviceAccount":"demo/waypoint"}}"#
    );
    assert_eq!(
        serde_json::from_str::<BTreeMap<String, TokenSubject>>(&text).unwrap(),
        map
    );
}

/// Serves the CA with the tokens of [`tokens_file`] on 127.0.0.1; `demo/waypoint` and
/// `demo/backend` run on node1, `demo/other` on node2.
async fn serve(dir: &Path) -> String {
    let root = load_or_create_root(&dir.join("ca"), TD).unwrap();
    let pods = PodsOnNodes::default();
    pods.write().unwrap().extend([
        (
            "node1".to_string(),
            "demo".to_string(),
            "waypoint".to_string(),
        ),
        (
            "node1".to_string(),
            "demo".to_string(),
            "backend".to_string(),
        ),
        ("node2".to_string(), "demo".to_string(), "other".to_string()),
    ]);
    let ca = service(&root, Some(tokens_file(dir)), TD, pods).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ca)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    format!("http://{addr}")
}

fn client(address: &str, token: &str, impersonate: bool) -> CaClient {
    let channel = tonic::transport::Endpoint::from_shared(address.to_owned())
        .unwrap()
        .connect_lazy();
    CaClient::new(
        channel,
        CaClientConfig {
            token: TokenSource::Static(token.into()),
            impersonate,
            ..CaClientConfig::default()
        },
    )
}

fn refused(result: Result<hbone::tls::WorkloadCertificate, CaError>) -> bool {
    matches!(result, Err(CaError::Rpc { status, .. }) if status.code() == tonic::Code::Unauthenticated)
}

#[tokio::test]
async fn a_service_account_token_obtains_only_its_own_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let address = serve(dir.path()).await;
    for impersonate in [true, false] {
        let waypoint = client(&address, "waypoint-token", impersonate);
        let cert = waypoint
            .fetch_certificate(&id("demo", "waypoint"))
            .await
            .unwrap();
        assert_eq!(cert.identity(), &id("demo", "waypoint"));
    }
    let waypoint = client(&address, "waypoint-token", true);
    // Not another service account, not even one of a pod on the waypoint's node, nor the tunnel's.
    for other in [
        id("demo", "backend"),
        id("demo", "other"),
        id(ZTUNNEL_NS, ZTUNNEL_SA),
    ] {
        assert!(refused(waypoint.fetch_certificate(&other).await), "{other}");
    }
}

#[tokio::test]
async fn node_tokens_still_impersonate_pods_of_their_node_only() {
    let dir = tempfile::tempdir().unwrap();
    let address = serve(dir.path()).await;
    let node1 = client(&address, "node1-token", true);
    for on_node1 in [id("demo", "backend"), id("demo", "waypoint")] {
        let cert = node1.fetch_certificate(&on_node1).await.unwrap();
        assert_eq!(cert.identity(), &on_node1);
    }
    assert!(refused(node1.fetch_certificate(&id("demo", "other")).await));
    assert!(refused(
        client(&address, "nope", true)
            .fetch_certificate(&id("demo", "backend"))
            .await
    ));
}
