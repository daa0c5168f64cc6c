#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Mutex;

use super::*;
use crate::ca::generate_csr;
use crate::test_util::TestCa;
use crate::tls::WorkloadCertificate;
use tracing_subscriber::layer::SubscriberExt;

const DAY: Duration = Duration::from_secs(86400);

fn id(s: &str) -> Identity {
    s.parse().unwrap()
}

fn config() -> CaServiceConfig {
    CaServiceConfig {
        trusted_node_accounts: vec![("istio-system".into(), "ztunnel".into())],
        default_validity: DAY,
        max_validity: 90 * DAY,
    }
}

#[test]
fn impersonation_table() {
    let config = config();
    let ztunnel = Caller {
        identity: id("spiffe://cluster.local/ns/istio-system/sa/ztunnel"),
        node: Some("node-a".into()),
    };
    let app = Caller {
        identity: id("spiffe://cluster.local/ns/default/sa/app"),
        node: Some("node-a".into()),
    };
    let unbound = Caller {
        node: None,
        ..ztunnel.clone()
    };
    let target = id("spiffe://cluster.local/ns/default/sa/app");
    let foreign = id("spiffe://other.domain/ns/default/sa/app");
    let cases = [
        (&app, &target, Decision::Allow),
        (&ztunnel, &ztunnel.identity, Decision::Allow),
        (&unbound, &unbound.identity, Decision::Allow),
        (&ztunnel, &target, Decision::AskNode("node-a".into())),
        (
            &app,
            &id("spiffe://cluster.local/ns/default/sa/other"),
            Decision::Deny(Denied::NotTrusted),
        ),
        (&unbound, &target, Decision::Deny(Denied::NotNodeBound)),
        (&ztunnel, &foreign, Decision::Deny(Denied::OtherTrustDomain)),
    ];
    for (caller, requested, want) in cases {
        assert_eq!(
            authorize(&config, caller, requested),
            want,
            "{caller:?} -> {requested}"
        );
    }
}

#[test]
fn validity_is_the_request_or_the_default_capped() {
    let ten_years = 10 * 365 * 86400;
    let cases = [
        (90 * DAY, 0, DAY),
        (90 * DAY, -5, DAY),
        (90 * DAY, 600, Duration::from_secs(600)),
        (90 * DAY, ten_years, 90 * DAY),
        (90 * DAY, i64::MAX, 90 * DAY),
        (90 * DAY, 90 * 86400, 90 * DAY),
        // A cap below the default shortens the default too.
        (Duration::from_secs(1800), 0, Duration::from_secs(1800)),
        (Duration::from_secs(1800), 3600, Duration::from_secs(1800)),
    ];
    for (cap, requested, want) in cases {
        let config = CaServiceConfig {
            max_validity: cap,
            ..config()
        };
        assert_eq!(
            validity(&config, requested),
            want,
            "cap {cap:?}, asked {requested}"
        );
    }
}

#[derive(Debug, thiserror::Error)]
#[error("secret reason {0}")]
struct FakeAuthError(&'static str);

#[test]
fn refusal_statuses_name_no_reason() {
    let app = id("spiffe://cluster.local/ns/default/sa/app");
    let csr = || CaError::CsrIdentity {
        identity: app.clone(),
    };
    let cases: [(Refusal<FakeAuthError>, tonic::Code, &str); 7] = [
        (
            Refusal::Authentication(FakeAuthError("token expired")),
            tonic::Code::Unauthenticated,
            AUTHENTICATION_FAILED,
        ),
        (
            Refusal::RequestedIdentity(RequestedIdentityError::NotAString),
            tonic::Code::InvalidArgument,
            INVALID_REQUEST,
        ),
        (
            Refusal::Denied(Denied::NotTrusted),
            tonic::Code::Unauthenticated,
            NOT_AUTHORIZED,
        ),
        (
            Refusal::Denied(Denied::NotNodeBound),
            tonic::Code::Unauthenticated,
            NOT_AUTHORIZED,
        ),
        (
            Refusal::NotOnNode {
                node: "node-a".into(),
            },
            tonic::Code::Unauthenticated,
            NOT_AUTHORIZED,
        ),
        (
            Refusal::Csr(csr()),
            tonic::Code::InvalidArgument,
            INVALID_REQUEST,
        ),
        (
            Refusal::Signing(CaError::CaMaterial("key gone".into())),
            tonic::Code::Internal,
            INTERNAL,
        ),
    ];
    for (refusal, code, message) in cases {
        let status = refusal.status();
        assert_eq!(
            (status.code(), status.message()),
            (code, message),
            "{refusal}"
        );
        assert!(status.details().is_empty() && status.metadata().is_empty());
    }
}

/// Tokens → callers; anything else fails with a reason that must stay in the log.
struct Tokens(HashMap<&'static str, Caller>);

impl CallerAuthenticator for Tokens {
    type Error = FakeAuthError;

    fn authenticate<'a>(
        &'a self,
        metadata: &'a MetadataMap,
    ) -> BoxFuture<'a, Result<Caller, FakeAuthError>> {
        let token = metadata
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let result = match token {
            None => Err(FakeAuthError("no bearer token")),
            Some(t) => self.0.get(t).cloned().ok_or(FakeAuthError("unknown token")),
        };
        Box::pin(async move { result })
    }
}

/// `app-a` runs on node-a, `app-b` on node-b.
struct Pods;

impl NodeAuthorizer for Pods {
    fn node_may_obtain<'a>(&'a self, node: &'a str, identity: &'a Identity) -> BoxFuture<'a, bool> {
        let ok = matches!(
            (node, identity.service_account()),
            ("node-a", "app-a") | ("node-b", "app-b")
        );
        Box::pin(async move { ok })
    }
}

const ZTUNNEL: &str = "spiffe://cluster.local/ns/istio-system/sa/ztunnel";
const APP_A: &str = "spiffe://cluster.local/ns/default/sa/app-a";
const APP_B: &str = "spiffe://cluster.local/ns/default/sa/app-b";

fn service(ca: &TestCa) -> CaService<Tokens, Pods> {
    let tokens = Tokens(HashMap::from([
        (
            "ztunnel-a",
            Caller {
                identity: id(ZTUNNEL),
                node: Some("node-a".into()),
            },
        ),
        (
            "ztunnel-unbound",
            Caller {
                identity: id(ZTUNNEL),
                node: None,
            },
        ),
        (
            "app-a",
            Caller {
                identity: id(APP_A),
                node: Some("node-a".into()),
            },
        ),
    ]));
    CaService::new(ca.signer(), tokens, Pods, config())
}

/// A request with `token`, asking for `impersonate` (a raw metadata value) with a CSR for
/// `csr_for`, valid `validity_secs`.
fn request(
    token: Option<&str>,
    impersonate: Option<prost_types::value::Kind>,
    csr_pem: String,
    validity_secs: i64,
) -> Request<IstioCertificateRequest> {
    let metadata = impersonate.map(|kind| prost_types::Struct {
        fields: [(
            IMPERSONATED_IDENTITY.to_owned(),
            prost_types::Value { kind: Some(kind) },
        )]
        .into(),
    });
    let mut request = Request::new(IstioCertificateRequest {
        csr: csr_pem,
        validity_duration: validity_secs,
        metadata,
    });
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

fn uri(s: &str) -> Option<prost_types::value::Kind> {
    Some(prost_types::value::Kind::StringValue(s.into()))
}

/// Captures what the service logs.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    fn take(&self) -> String {
        String::from_utf8(std::mem::take(&mut *self.0.lock().unwrap())).unwrap()
    }
}

#[tokio::test]
async fn every_refusal_is_opaque_and_its_reason_is_logged() {
    let log = Log::default();
    let writer = log.clone();
    // A second registered dispatcher makes tracing combine every dispatcher's interest instead of
    // asking whichever thread first hits a call site (another test's, with no subscriber, would
    // cache `never` and silence the events this test reads).
    let _second = tracing::Dispatch::new(
        tracing_subscriber::registry().with(tracing_subscriber::filter::LevelFilter::OFF),
    );
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish(),
    );
    tracing::callsite::rebuild_interest_cache();
    let ca = TestCa::new(Duration::from_secs(3600));
    let service = service(&ca);
    let csr = |s: &str| generate_csr(&id(s)).unwrap().pem;
    use tonic::Code::{InvalidArgument, Unauthenticated};
    // (token, impersonated, CSR for, code, message, logged reason, logged requested identity)
    let cases = [
        (
            None,
            uri(APP_A),
            csr(APP_A),
            Unauthenticated,
            AUTHENTICATION_FAILED,
            "no bearer token",
            Some(APP_A),
        ),
        (
            Some("stolen"),
            uri(APP_A),
            csr(APP_A),
            Unauthenticated,
            AUTHENTICATION_FAILED,
            "unknown token",
            Some(APP_A),
        ),
        (
            Some("app-a"),
            uri(APP_B),
            csr(APP_B),
            Unauthenticated,
            NOT_AUTHORIZED,
            "caller may not impersonate",
            Some(APP_B),
        ),
        (
            Some("ztunnel-a"),
            uri(APP_B),
            csr(APP_B),
            Unauthenticated,
            NOT_AUTHORIZED,
            "no pod on node node-a",
            Some(APP_B),
        ),
        (
            Some("ztunnel-unbound"),
            uri(APP_A),
            csr(APP_A),
            Unauthenticated,
            NOT_AUTHORIZED,
            "not bound to a node",
            Some(APP_A),
        ),
        (
            Some("ztunnel-a"),
            uri("spiffe://x/ns/a"),
            csr(APP_A),
            InvalidArgument,
            INVALID_REQUEST,
            "ImpersonatedIdentity",
            None,
        ),
        (
            Some("ztunnel-a"),
            Some(prost_types::value::Kind::BoolValue(true)),
            csr(APP_A),
            InvalidArgument,
            INVALID_REQUEST,
            "not a string",
            None,
        ),
        (
            Some("ztunnel-a"),
            uri(APP_A),
            csr(APP_B),
            InvalidArgument,
            INVALID_REQUEST,
            "unusable CSR",
            Some(APP_A),
        ),
        (
            Some("ztunnel-a"),
            uri(APP_A),
            "garbage".into(),
            InvalidArgument,
            INVALID_REQUEST,
            "unusable CSR",
            Some(APP_A),
        ),
    ];
    for (token, impersonate, csr_pem, code, message, reason, requested) in cases {
        let what = format!("{token:?} asking {impersonate:?}");
        let status = service
            .create_certificate(request(token, impersonate, csr_pem, 0))
            .await
            .expect_err(&what);
        assert_eq!((status.code(), status.message()), (code, message), "{what}");
        let logged = log.take();
        assert!(
            logged.contains("WARN") && logged.contains(reason),
            "{what}: {logged}"
        );
        if let Some(requested) = requested {
            assert!(
                logged.contains(&format!("requested={requested}")),
                "{what}: {logged}"
            );
        }
        let caller_known = token.is_some_and(|t| t != "stolen");
        assert_eq!(
            logged.contains("src.identity="),
            caller_known,
            "{what}: {logged}"
        );
    }
}

#[tokio::test]
async fn grants_within_the_cap() {
    let ca = TestCa::new(Duration::from_secs(3600));
    let service = service(&ca);
    let ten_years = 10 * 365 * 86400;
    // (token, impersonated, requested seconds, longest validity expected)
    let cases = [
        ("app-a", None, 0, DAY),
        ("app-a", uri(APP_A), 600, Duration::from_secs(600)),
        ("ztunnel-a", uri(APP_A), ten_years, 90 * DAY),
        ("ztunnel-unbound", None, ten_years, 90 * DAY),
    ];
    for (token, impersonate, asked, longest) in cases {
        let want = match &impersonate {
            Some(prost_types::value::Kind::StringValue(s)) => id(s),
            _ if token == "app-a" => id(APP_A),
            _ => id(ZTUNNEL),
        };
        let csr = generate_csr(&want).unwrap();
        let response = service
            .create_certificate(request(Some(token), impersonate, csr.pem, asked))
            .await
            .unwrap()
            .into_inner();
        let cert =
            WorkloadCertificate::from_ca_response(&want, csr.key_pkcs8_der, &response.cert_chain)
                .unwrap();
        let life = cert.not_after().duration_since(cert.not_before()).unwrap();
        assert!(
            life <= longest + Duration::from_secs(1) && life + Duration::from_secs(5) >= longest,
            "{token} asking {asked}s for {want}: {life:?}"
        );
    }
}
