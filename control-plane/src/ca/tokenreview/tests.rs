#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use k8s_openapi::api::authentication::v1::UserInfo;
use k8s_openapi::api::core::v1::PodSpec;
use kube::api::ObjectMeta;

use super::*;

const TD: &str = "cluster.local";

#[test]
fn usernames_of_service_accounts_only() {
    let cases = [
        (
            "system:serviceaccount:istio-system:ztunnel",
            Some(("istio-system", "ztunnel")),
        ),
        (
            "system:serviceaccount:default:app-a",
            Some(("default", "app-a")),
        ),
        ("system:serviceaccount:default:", None),
        ("system:serviceaccount::app", None),
        ("system:serviceaccount:default", None),
        ("system:serviceaccount:default:a:b", None),
        ("system:serviceaccounts:default", None),
        ("system:node:node-a", None),
        ("alice", None),
        ("", None),
    ];
    for (username, want) in cases {
        assert_eq!(parse_username(username), want, "{username:?}");
    }
}

/// `user.extra` as written in a table: `(key, values)`.
type Pairs<'a> = &'a [(&'a str, &'a [&'a str])];

fn extra(pairs: Pairs<'_>) -> BTreeMap<String, Vec<String>> {
    pairs
        .iter()
        .map(|(k, vs)| (k.to_string(), vs.iter().map(|v| v.to_string()).collect()))
        .collect()
}

#[test]
fn the_node_comes_from_extra_or_from_the_bound_pod() {
    let pod = |name: &str, uid: &str| Binding::Pod {
        name: name.into(),
        uid: uid.into(),
    };
    let cases: [(Pairs<'_>, Option<Binding>); 9] = [
        (&[], Some(Binding::Unbound)),
        (
            &[
                (NODE_NAME, &["node-a"]),
                (POD_NAME, &["zt-1"]),
                (POD_UID, &["u1"]),
            ],
            Some(Binding::Node("node-a".into())),
        ),
        (
            &[(POD_NAME, &["zt-1"]), (POD_UID, &["u1"])],
            Some(pod("zt-1", "u1")),
        ),
        (
            &[
                (NODE_NAME, &[""]),
                (POD_NAME, &["zt-1"]),
                (POD_UID, &["u1"]),
            ],
            Some(pod("zt-1", "u1")),
        ),
        (&[(NODE_NAME, &[]), (POD_NAME, &[])], Some(Binding::Unbound)),
        (
            &[("authentication.kubernetes.io/credential-id", &["JTI=x"])],
            Some(Binding::Unbound),
        ),
        // A pod without its uid cannot be checked against a recreated pod.
        (&[(POD_NAME, &["zt-1"])], None),
        (&[(NODE_NAME, &["node-a", "node-b"])], None),
        (&[(POD_NAME, &["zt-1"]), (POD_UID, &["u1", "u2"])], None),
    ];
    for (pairs, want) in cases {
        let got = binding(&extra(pairs));
        assert_eq!(got.as_ref().ok(), want.as_ref(), "{pairs:?}: {got:?}");
    }
}

fn status(
    authenticated: bool,
    audiences: &[&str],
    username: &str,
    pairs: Pairs<'_>,
) -> TokenReviewStatus {
    TokenReviewStatus {
        authenticated: Some(authenticated),
        audiences: Some(audiences.iter().map(|a| a.to_string()).collect()),
        error: None,
        user: Some(UserInfo {
            username: Some(username.into()),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                "system:authenticated".into(),
            ]),
            extra: Some(extra(pairs)),
            uid: None,
        }),
    }
}

const ZTUNNEL_USER: &str = "system:serviceaccount:istio-system:ztunnel";
const APP_A_USER: &str = "system:serviceaccount:default:app-a";

#[test]
fn reviews_must_authenticate_our_audience_and_a_service_account() {
    let ours = vec!["istio-ca".to_string(), "other-ca".to_string()];
    let ok = |ns: &str, sa: &str, binding: Binding| Reviewed {
        namespace: ns.into(),
        service_account: sa.into(),
        binding,
    };
    let not_in_group = TokenReviewStatus {
        user: Some(UserInfo {
            groups: Some(vec!["system:authenticated".into()]),
            ..status(true, &["istio-ca"], APP_A_USER, &[]).user.unwrap()
        }),
        ..status(true, &["istio-ca"], APP_A_USER, &[])
    };
    let with_error = TokenReviewStatus {
        error: Some("token has been invalidated".into()),
        ..status(true, &["istio-ca"], APP_A_USER, &[])
    };
    let cases = [
        (
            status(true, &["istio-ca"], APP_A_USER, &[]),
            Some(ok("default", "app-a", Binding::Unbound)),
        ),
        (
            status(
                true,
                &["other-ca"],
                ZTUNNEL_USER,
                &[(NODE_NAME, &["node-a"])],
            ),
            Some(ok(
                "istio-system",
                "ztunnel",
                Binding::Node("node-a".into()),
            )),
        ),
        (status(false, &["istio-ca"], APP_A_USER, &[]), None),
        (status(true, &["kubernetes"], APP_A_USER, &[]), None),
        (status(true, &[], APP_A_USER, &[]), None),
        (status(true, &["istio-ca"], "alice", &[]), None),
        (
            status(true, &["istio-ca"], ZTUNNEL_USER, &[(POD_NAME, &["zt"])]),
            None,
        ),
        (not_in_group, None),
        (with_error, None),
        (TokenReviewStatus::default(), None),
    ];
    for (status, want) in cases {
        let got = reviewed(&status, &ours);
        assert_eq!(got.as_ref().ok(), want.as_ref(), "{status:?}: {got:?}");
    }
}

fn pod(name: &str, uid: &str, sa: &str, node: Option<&str>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("istio-system".into()),
            uid: Some(uid.into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            service_account_name: Some(sa.into()),
            node_name: node.map(str::to_owned),
            ..PodSpec::default()
        }),
        status: None,
    }
}

#[test]
fn the_bound_pod_must_be_the_tokens_own() {
    let reviewed = Reviewed {
        namespace: "istio-system".into(),
        service_account: "ztunnel".into(),
        binding: Binding::Pod {
            name: "zt".into(),
            uid: "u1".into(),
        },
    };
    let cases = [
        (
            pod("zt", "u1", "ztunnel", Some("node-a")),
            Some(Some("node-a")),
        ),
        (pod("zt", "u1", "ztunnel", None), Some(None)),
        // Deleted and recreated under the same name: a new uid.
        (pod("zt", "u2", "ztunnel", Some("node-a")), None),
        (pod("zt", "u1", "other", Some("node-a")), None),
        (
            Pod {
                spec: None,
                ..pod("zt", "u1", "ztunnel", Some("node-a"))
            },
            None,
        ),
    ];
    for (pod, want) in cases {
        let got = node_of_pod(&reviewed, "zt", "u1", &pod);
        assert_eq!(
            got.as_ref().ok().map(|n| n.as_deref()),
            want,
            "{pod:?}: {got:?}"
        );
    }
}

/// A scripted API server: token → review status, `(namespace, name)` → pod; counts requests
/// and checks every review asks for `audiences`.
#[derive(Default)]
struct FakeApiServer {
    reviews: HashMap<String, TokenReviewStatus>,
    pods: HashMap<(String, String), Pod>,
    audiences: Vec<String>,
    review_calls: AtomicUsize,
    pod_calls: AtomicUsize,
}

fn json(code: u16, value: &impl serde::Serialize) -> hyper::Response<Full<Bytes>> {
    hyper::Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(value).unwrap())))
        .unwrap()
}

impl FakeApiServer {
    async fn handle(
        &self,
        request: hyper::Request<hyper::body::Incoming>,
    ) -> hyper::Response<Full<Bytes>> {
        let path = request.uri().path().to_owned();
        let method = request.method().clone();
        if method == hyper::Method::POST && path == "/apis/authentication.k8s.io/v1/tokenreviews" {
            self.review_calls.fetch_add(1, Ordering::SeqCst);
            let body = request.into_body().collect().await.unwrap().to_bytes();
            let mut review: TokenReview = serde_json::from_slice(&body).unwrap();
            assert_eq!(review.spec.audiences.as_ref(), Some(&self.audiences));
            review.status = Some(self.reviews.get(&review.spec.token).cloned().unwrap_or(
                TokenReviewStatus {
                    authenticated: Some(false),
                    error: Some("invalid bearer token".into()),
                    ..TokenReviewStatus::default()
                },
            ));
            return json(201, &review);
        }
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        if let (&hyper::Method::GET, ["api", "v1", "namespaces", ns, "pods", name]) =
            (&method, parts.as_slice())
        {
            self.pod_calls.fetch_add(1, Ordering::SeqCst);
            if let Some(pod) = self.pods.get(&(ns.to_string(), name.to_string())) {
                return json(200, pod);
            }
            return json(
                404,
                &serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "reason": "NotFound", "code": 404, "message": format!("pods {name:?} not found")}),
            );
        }
        json(
            404,
            &serde_json::json!({"kind": "Status", "code": 404, "reason": "NotFound"}),
        )
    }

    /// Serves on 127.0.0.1; a client for it.
    async fn start(self) -> (Arc<Self>, kube::Client) {
        let server = Arc::new(self);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let api = server.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let api = api.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let api = api.clone();
                        async move { Ok::<_, std::convert::Infallible>(api.handle(request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
        (server, kube::Client::try_from(config).unwrap())
    }
}

fn caller(ns: &str, sa: &str, node: Option<&str>) -> Caller {
    Caller {
        identity: Identity::new(TD, ns, sa).unwrap(),
        node: node.map(str::to_owned),
    }
}

async fn reviewer() -> (Arc<FakeApiServer>, TokenReviewer) {
    let bound = |pod: &str, uid: &str| -> Vec<(&'static str, Vec<String>)> {
        vec![(POD_NAME, vec![pod.into()]), (POD_UID, vec![uid.into()])]
    };
    let with = |user: &str, extra: Vec<(&'static str, Vec<String>)>| TokenReviewStatus {
        user: Some(UserInfo {
            extra: Some(extra.into_iter().map(|(k, v)| (k.to_string(), v)).collect()),
            ..status(true, &["istio-ca"], user, &[]).user.unwrap()
        }),
        ..status(true, &["istio-ca"], user, &[])
    };
    let mut node_bound = bound("zt-a", "u-a");
    node_bound.push((NODE_NAME, vec!["node-a".into()]));
    let reviews = HashMap::from([
        ("zt-node".to_string(), with(ZTUNNEL_USER, node_bound)),
        (
            "zt-pod".to_string(),
            with(ZTUNNEL_USER, bound("zt-b", "u-b")),
        ),
        (
            "zt-recreated".to_string(),
            with(ZTUNNEL_USER, bound("zt-b", "u-old")),
        ),
        (
            "zt-deleted".to_string(),
            with(ZTUNNEL_USER, bound("zt-gone", "u-g")),
        ),
        ("zt-unbound".to_string(), with(ZTUNNEL_USER, vec![])),
        (
            "app-a".to_string(),
            with(APP_A_USER, bound("app-a-1", "u-app")),
        ),
        (
            "wrong-audience".to_string(),
            status(true, &["kubernetes"], APP_A_USER, &[]),
        ),
        ("alice".to_string(), with("alice", vec![])),
    ]);
    let pods = HashMap::from([(
        ("istio-system".to_string(), "zt-b".to_string()),
        pod("zt-b", "u-b", "ztunnel", Some("node-b")),
    )]);
    let (api, client) = FakeApiServer {
        reviews,
        pods,
        audiences: vec!["istio-ca".into()],
        ..FakeApiServer::default()
    }
    .start()
    .await;
    let reviewer = TokenReviewer::new(
        client,
        vec!["istio-ca".into()],
        TD,
        vec![("istio-system".into(), "ztunnel".into())],
    );
    (api, reviewer)
}

#[tokio::test]
async fn reviews_through_the_api_server() {
    let (api, reviewer) = reviewer().await;
    // (token, caller, pod reads)
    let cases = [
        (
            "zt-node",
            Some(caller("istio-system", "ztunnel", Some("node-a"))),
            0,
        ),
        (
            "zt-pod",
            Some(caller("istio-system", "ztunnel", Some("node-b"))),
            1,
        ),
        ("zt-recreated", None, 1),
        ("zt-deleted", None, 1),
        (
            "zt-unbound",
            Some(caller("istio-system", "ztunnel", None)),
            0,
        ),
        // An ordinary workload's pod is never read: it gets no node.
        ("app-a", Some(caller("default", "app-a", None)), 0),
        ("wrong-audience", None, 0),
        ("alice", None, 0),
        ("forged", None, 0),
    ];
    for (token, want, pod_reads) in cases {
        api.pod_calls.store(0, Ordering::SeqCst);
        let got = reviewer.caller(token).await;
        assert_eq!(got.as_ref().ok(), want.as_ref(), "{token}: {got:?}");
        assert_eq!(api.pod_calls.load(Ordering::SeqCst), pod_reads, "{token}");
    }
}

#[tokio::test]
async fn successes_are_cached_failures_are_not() {
    let (api, reviewer) = reviewer().await;
    let reviews = || api.review_calls.load(Ordering::SeqCst);
    for _ in 0..5 {
        reviewer.caller("zt-pod").await.unwrap();
    }
    assert_eq!(reviews(), 1);
    assert_eq!(api.pod_calls.load(Ordering::SeqCst), 1);
    for _ in 0..3 {
        reviewer.caller("zt-recreated").await.unwrap_err();
        reviewer.caller("forged").await.unwrap_err();
    }
    assert_eq!(reviews(), 7);
}

#[tokio::test]
async fn the_bearer_token_comes_from_the_authorization_metadata() {
    let (api, reviewer) = reviewer().await;
    let metadata = |value: Option<&str>| {
        let mut md = MetadataMap::new();
        if let Some(v) = value {
            md.insert("authorization", v.parse().unwrap());
        }
        md
    };
    let ok = reviewer
        .authenticate(&metadata(Some("Bearer zt-unbound")))
        .await
        .unwrap();
    assert_eq!(ok, caller("istio-system", "ztunnel", None));
    for bad in [
        None,
        Some("zt-unbound"),
        Some("Basic zt-unbound"),
        Some("Bearer "),
    ] {
        let err = reviewer.authenticate(&metadata(bad)).await.unwrap_err();
        assert!(matches!(err, ReviewError::MissingToken), "{bad:?}: {err}");
    }
    assert_eq!(api.review_calls.load(Ordering::SeqCst), 1);
}
