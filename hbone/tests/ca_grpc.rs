//! CA client ⇄ `CaService` over real gRPC on 127.0.0.1, with node-bound impersonation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use hbone::Identity;
use hbone::ca::{
    BoxFuture, CaClient, CaClientConfig, CaError, CaService, CaServiceConfig, Caller,
    CallerAuthenticator, NodeAuthorizer, TokenSource,
};
use hbone::test_util::TestCa;
use proto::istio::v1::auth::istio_certificate_service_server::IstioCertificateServiceServer;
use tonic::metadata::MetadataMap;
use tonic::transport::{Endpoint, Server};

fn id(s: &str) -> Identity {
    s.parse().unwrap()
}

const ZTUNNEL: &str = "spiffe://cluster.local/ns/istio-system/sa/ztunnel";
const APP_ON_A: &str = "spiffe://cluster.local/ns/default/sa/app-a";
const APP_ON_B: &str = "spiffe://cluster.local/ns/default/sa/app-b";

/// Tokens → callers (stands in for Kubernetes TokenReview).
struct Tokens(HashMap<String, Caller>);

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct AuthError(&'static str);

impl CallerAuthenticator for Tokens {
    type Error = AuthError;

    fn authenticate<'a>(&'a self, md: &'a MetadataMap) -> BoxFuture<'a, Result<Caller, AuthError>> {
        Box::pin(async move {
            assert_eq!(
                md.get("clusterid").and_then(|v| v.to_str().ok()),
                Some("Kubernetes")
            );
            let token = md
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .ok_or(AuthError("no token"))?;
            self.0.get(token).cloned().ok_or(AuthError("bad token"))
        })
    }
}

/// node → identities of pods on it.
struct Pods(HashMap<String, Vec<Identity>>);

impl NodeAuthorizer for Pods {
    fn node_may_obtain<'a>(&'a self, node: &'a str, identity: &'a Identity) -> BoxFuture<'a, bool> {
        Box::pin(async move { self.0.get(node).is_some_and(|ids| ids.contains(identity)) })
    }
}

async fn serve(ca: &TestCa) -> String {
    let tokens = Tokens(HashMap::from([
        (
            "ztunnel-token".to_string(),
            Caller {
                identity: id(ZTUNNEL),
                node: Some("node-a".into()),
            },
        ),
        (
            "app-token".to_string(),
            Caller {
                identity: id(APP_ON_A),
                node: Some("node-a".into()),
            },
        ),
    ]));
    let pods = Pods(HashMap::from([
        ("node-a".to_string(), vec![id(APP_ON_A)]),
        ("node-b".to_string(), vec![id(APP_ON_B)]),
    ]));
    let service = CaService::new(
        ca.signer(),
        tokens,
        pods,
        CaServiceConfig {
            trusted_node_accounts: vec![("istio-system".into(), "ztunnel".into())],
            default_validity: Duration::from_secs(3600),
            max_validity: Duration::from_secs(90 * 86400),
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        Server::builder()
            .add_service(IstioCertificateServiceServer::new(service))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    format!("http://{addr}")
}

fn client(address: &str, token: &str) -> CaClient {
    let channel = Endpoint::from_shared(address.to_owned())
        .unwrap()
        .connect_lazy();
    CaClient::new(
        channel,
        CaClientConfig {
            token: TokenSource::Static(token.into()),
            validity: Duration::from_secs(600),
            ..CaClientConfig::default()
        },
    )
}

fn rpc_code(e: CaError) -> tonic::Code {
    match e {
        CaError::Rpc { status, .. } => status.code(),
        other => panic!("expected an RPC error, got {other}"),
    }
}

#[tokio::test]
async fn node_agent_gets_certificates_only_for_pods_on_its_node() {
    let ca = TestCa::new(Duration::from_secs(3600));
    let address = serve(&ca).await;
    let ztunnel = client(&address, "ztunnel-token");
    let cert = ztunnel.fetch_certificate(&id(APP_ON_A)).await.unwrap();
    assert_eq!(cert.identity(), &id(APP_ON_A));
    assert_eq!(cert.roots().len(), 1);
    let life = cert.not_after().duration_since(cert.not_before()).unwrap();
    assert!(
        life <= Duration::from_secs(601),
        "requested validity honoured: {life:?}"
    );
    // A pod on another node: Unauthenticated, as istiod answers.
    assert_eq!(
        rpc_code(ztunnel.fetch_certificate(&id(APP_ON_B)).await.unwrap_err()),
        tonic::Code::Unauthenticated
    );
    // An ordinary workload may not impersonate at all, but may get its own identity.
    let app = client(&address, "app-token");
    assert_eq!(
        rpc_code(app.fetch_certificate(&id(APP_ON_B)).await.unwrap_err()),
        tonic::Code::Unauthenticated
    );
    assert!(app.fetch_certificate(&id(APP_ON_A)).await.is_ok());
    // No or wrong token.
    assert_eq!(
        rpc_code(
            client(&address, "nope")
                .fetch_certificate(&id(APP_ON_A))
                .await
                .unwrap_err()
        ),
        tonic::Code::Unauthenticated
    );
}

#[tokio::test]
async fn certificates_from_the_grpc_ca_work_for_mtls() {
    let ca = TestCa::new(Duration::from_secs(3600));
    let address = serve(&ca).await;
    let ztunnel = client(&address, "ztunnel-token");
    let cert = ztunnel.fetch_certificate(&id(APP_ON_A)).await.unwrap();
    // Valid for both client and server use with our own TLS configs.
    assert!(
        hbone::tls::client_config(&cert, vec![id(APP_ON_A)], hbone::tls::KeyExchange::Default)
            .is_ok()
    );
    assert!(hbone::tls::server_config(&cert, hbone::tls::KeyExchange::Default).is_ok());
}
