#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use std::collections::BTreeMap;

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
    for (bad, logged) in [
        ("unknown", "not listed"),
        ("bad-sa", "not <namespace>/<name>"),
        ("bad-shape", "malformed entry"),
        ("", "not listed"),
    ] {
        let err = tokens.caller(bad).unwrap_err().to_string();
        assert!(err.contains(logged), "{bad}: {err}");
    }
    let none = Tokens {
        path: None,
        trust_domain: TD.into(),
    };
    assert!(matches!(
        none.caller("node1-token"),
        Err(TokenError::NoTokensFile)
    ));
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
    serve_capped(dir, DEFAULT_MAX_WORKLOAD_CERT_TTL).await
}

async fn serve_capped(dir: &Path, max_workload_cert_ttl: Duration) -> String {
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
    let settings = CaSettings {
        auth: CaAuth::Tokens(Some(tokens_file(dir))),
        trust_domain: TD.into(),
        max_workload_cert_ttl,
    };
    let ca = service_with(&root, settings, pods).unwrap();
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
    client_asking(address, token, impersonate, DEFAULT_WORKLOAD_CERT_TTL)
}

fn client_asking(address: &str, token: &str, impersonate: bool, validity: Duration) -> CaClient {
    let channel = tonic::transport::Endpoint::from_shared(address.to_owned())
        .unwrap()
        .connect_lazy();
    CaClient::new(
        channel,
        CaClientConfig {
            token: TokenSource::Static(token.into()),
            impersonate,
            validity,
            ..CaClientConfig::default()
        },
    )
}

/// Refused as istiod refuses: `Unauthenticated`, with no reason.
fn refused(result: Result<hbone::tls::WorkloadCertificate, CaError>) -> bool {
    matches!(result, Err(CaError::Rpc { status, .. })
        if status.code() == tonic::Code::Unauthenticated
            && ["authentication failed", "not authorized"].contains(&status.message()))
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

#[test]
fn max_workload_cert_ttl_is_a_go_duration_of_a_second_or_more() {
    let hour = Duration::from_secs(3600);
    let ok = [
        ("2160h", 2160 * hour),
        ("24h", 24 * hour),
        ("30m", Duration::from_secs(1800)),
        ("1h30m", Duration::from_secs(5400)),
        ("1s", Duration::from_secs(1)),
        (" 48h ", 48 * hour),
    ];
    for (text, want) in ok {
        assert_eq!(parse_max_workload_cert_ttl(text).unwrap(), want, "{text}");
    }
    for bad in ["", "90d", "0s", "0", "500ms", "-1h", "forever", "24"] {
        assert!(parse_max_workload_cert_ttl(bad).is_err(), "{bad:?}");
    }
    assert_eq!(DEFAULT_MAX_WORKLOAD_CERT_TTL, 2160 * hour);
}

#[test]
fn bearer_tokens_need_the_bearer_scheme() {
    let cases = [
        (Some("Bearer abc"), Some("abc")),
        (Some("Bearer  abc "), Some("abc")),
        (Some("Bearer "), None),
        (Some("bearer abc"), None),
        (Some("Basic abc"), None),
        (Some("abc"), None),
        (None, None),
    ];
    for (header, want) in cases {
        let mut md = MetadataMap::new();
        if let Some(h) = header {
            md.insert("authorization", h.parse().unwrap());
        }
        assert_eq!(bearer_token(&md), want, "{header:?}");
    }
}

fn lifetime(cert: &hbone::tls::WorkloadCertificate) -> Duration {
    cert.not_after().duration_since(cert.not_before()).unwrap()
}

#[tokio::test]
async fn certificates_last_what_is_asked_up_to_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let day = Duration::from_secs(86400);
    let ten_years = 3650 * day;
    let default_cap = serve(dir.path()).await;
    let capped_30m = serve_capped(dir.path(), Duration::from_secs(1800)).await;
    // (server, requested validity, longest validity granted)
    let cases = [
        (&default_cap, Duration::ZERO, day),
        (
            &default_cap,
            Duration::from_secs(600),
            Duration::from_secs(600),
        ),
        (&default_cap, ten_years, 90 * day),
        (&capped_30m, ten_years, Duration::from_secs(1800)),
        (&capped_30m, Duration::ZERO, Duration::from_secs(1800)),
    ];
    for (address, asked, longest) in cases {
        let cert = client_asking(address, "node1-token", true, asked)
            .fetch_certificate(&id("demo", "backend"))
            .await
            .unwrap();
        let life = lifetime(&cert);
        assert!(
            life <= longest + Duration::from_secs(1) && life + Duration::from_secs(5) >= longest,
            "asked {asked:?}: {life:?}, want {longest:?}"
        );
    }
}

#[tokio::test]
async fn refusals_do_not_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let address = serve(dir.path()).await;
    // (token, identity asked for): unknown token, malformed entry, impersonation denied on
    // both counts (not a node account; no such pod on the node).
    let cases = [
        ("nope", id("demo", "backend")),
        ("bad-sa", id("demo", "backend")),
        ("waypoint-token", id("demo", "backend")),
        ("node1-token", id("demo", "other")),
    ];
    for (token, identity) in cases {
        let result = client(&address, token, true)
            .fetch_certificate(&identity)
            .await;
        let Err(CaError::Rpc { status, .. }) = &result else {
            panic!("{token}: {result:?}");
        };
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{token}");
        assert!(
            ["authentication failed", "not authorized"].contains(&status.message()),
            "{token}: {status:?}"
        );
    }
}
