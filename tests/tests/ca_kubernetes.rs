//! The control plane's CA with Kubernetes authentication against a real kube-apiserver
//! (`tests::kube::ApiServer`): pod-bound ServiceAccount tokens reviewed with `TokenReview`, the
//! node of a ztunnel token's pod limiting what it may impersonate (spec §6), opaque refusals and
//! the `MAX_WORKLOAD_CERT_TTL` cap, all over real gRPC with `hbone`'s CA client.
//!
//! No root needed. Needs `scripts/kube.sh build` to have run (`scripts/test.sh` does).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use anyhow::{Context, Result};
use control_plane::ca::{CaAuth, CaSettings, DEFAULT_MAX_WORKLOAD_CERT_TTL, PodsOnNodes};
use hbone::Identity;
use hbone::ca::{CaClient, CaClientConfig, CaError, TokenSource};
use tests::kube::ApiServer;

const NS: &str = "ca-e2e";
const DAY: Duration = Duration::from_secs(86400);

/// Nodes A and B; ztunnel pods on A (one scheduled later, like a scheduler would) and one to
/// be recreated; workloads `a` and `c` on A, `b` on B.
const MANIFESTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: istio-system}
---
apiVersion: v1
kind: Namespace
metadata: {name: ca-e2e}
---
apiVersion: v1
kind: Node
metadata: {name: node-a}
---
apiVersion: v1
kind: Node
metadata: {name: node-b}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: ztunnel, namespace: istio-system}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: a, namespace: ca-e2e}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: b, namespace: ca-e2e}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: c, namespace: ca-e2e}
---
apiVersion: v1
kind: Pod
metadata: {name: ztunnel-a, namespace: istio-system}
spec: {serviceAccountName: ztunnel, nodeName: node-a, containers: [{name: z, image: example.com/ztunnel:1}]}
---
apiVersion: v1
kind: Pod
metadata: {name: ztunnel-late, namespace: istio-system}
spec: {serviceAccountName: ztunnel, containers: [{name: z, image: example.com/ztunnel:1}]}
---
apiVersion: v1
kind: Pod
metadata: {name: ztunnel-old, namespace: istio-system}
spec: {serviceAccountName: ztunnel, nodeName: node-a, containers: [{name: z, image: example.com/ztunnel:1}]}
---
apiVersion: v1
kind: Pod
metadata: {name: a-1, namespace: ca-e2e}
spec: {serviceAccountName: a, nodeName: node-a, containers: [{name: a, image: example.com/a:1}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b-1, namespace: ca-e2e}
spec: {serviceAccountName: b, nodeName: node-b, containers: [{name: b, image: example.com/b:1}]}
---
apiVersion: v1
kind: Pod
metadata: {name: c-1, namespace: ca-e2e}
spec: {serviceAccountName: c, nodeName: node-a, containers: [{name: c, image: example.com/c:1}]}
"#;

const OLD_ZTUNNEL: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: ztunnel-old, namespace: istio-system}
spec: {serviceAccountName: ztunnel, nodeName: node-a, containers: [{name: z, image: example.com/ztunnel:2}]}
"#;

fn id(ns: &str, sa: &str) -> Identity {
    Identity::new("cluster.local", ns, sa).unwrap()
}

/// The tokens the test presents.
struct Tokens {
    /// ztunnel, bound to `ztunnel-a` on node A (the review names the node).
    ztunnel: String,
    /// ztunnel, bound to `ztunnel-late`, which was on no node when the token was made: the
    /// node is read from the pod.
    ztunnel_late: String,
    /// ztunnel, bound to a pod since deleted and recreated under the same name.
    ztunnel_recreated: String,
    /// ztunnel, bound to no pod.
    ztunnel_unbound: String,
    /// ztunnel, bound to `ztunnel-a`, for another audience.
    ztunnel_other_audience: String,
    /// `a`, bound to `a-1` on node A.
    a: String,
}

fn set_up(api: &ApiServer) -> Result<Tokens> {
    api.apply(MANIFESTS)?;
    let token = |ns: &str, sa: &str, audience: &str, pod: Option<&str>| {
        api.create_token(ns, sa, audience, pod)
            .with_context(|| format!("token of {ns}/{sa} bound to {pod:?}"))
    };
    let zt = "istio-system";
    let ztunnel_late = token(zt, "ztunnel", "istio-ca", Some("ztunnel-late"))?;
    // Schedule it now, as the scheduler does: through the binding subresource.
    let binding = r#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"ztunnel-late"},"target":{"apiVersion":"v1","kind":"Node","name":"node-a"}}"#;
    api.kubectl_stdin(
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/istio-system/pods/ztunnel-late/binding",
            "-f",
            "-",
        ],
        binding,
    )?;
    let ztunnel_recreated = token(zt, "ztunnel", "istio-ca", Some("ztunnel-old"))?;
    api.kubectl(&[
        "delete",
        "pod",
        "ztunnel-old",
        "-n",
        zt,
        "--grace-period=0",
        "--force",
    ])?;
    api.apply(OLD_ZTUNNEL)?;
    Ok(Tokens {
        ztunnel: token(zt, "ztunnel", "istio-ca", Some("ztunnel-a"))?,
        ztunnel_late,
        ztunnel_recreated,
        ztunnel_unbound: token(zt, "ztunnel", "istio-ca", None)?,
        ztunnel_other_audience: token(zt, "ztunnel", "someone-else", Some("ztunnel-a"))?,
        a: token(NS, "a", "istio-ca", Some("a-1"))?,
    })
}

/// The CA with Kubernetes authentication through the cluster-admin kubeconfig, on 127.0.0.1.
async fn serve_ca(api: &ApiServer, dir: &std::path::Path) -> Result<String> {
    let kubeconfig = kube::config::Kubeconfig::read_from(api.kubeconfig())?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    let client = kube::Client::try_from(config)?;
    let root = control_plane::ca::load_or_create_root(dir, "cluster.local")?;
    // What the pod list would give the node authorizer.
    let pods = PodsOnNodes::default();
    pods.write().unwrap().extend(
        [("node-a", "a"), ("node-a", "c"), ("node-b", "b")]
            .map(|(node, sa)| (node.to_string(), NS.to_string(), sa.to_string())),
    );
    let settings = CaSettings {
        auth: CaAuth::Kubernetes {
            client,
            audiences: vec!["istio-ca".into()],
        },
        trust_domain: "cluster.local".into(),
        max_workload_cert_ttl: DEFAULT_MAX_WORKLOAD_CERT_TTL,
    };
    let ca = control_plane::ca::service_with(&root, settings, pods)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ca)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    Ok(format!("http://{addr}"))
}

fn client(address: &str, token: &str, validity: Duration) -> CaClient {
    let channel = tonic::transport::Endpoint::from_shared(address.to_owned())
        .unwrap()
        .connect_lazy();
    CaClient::new(
        channel,
        CaClientConfig {
            token: TokenSource::Static(token.into()),
            validity,
            impersonate: true,
            ..CaClientConfig::default()
        },
    )
}

/// What the CA answered: `Ok(validity)` or `Err((code, message))`.
async fn ask(
    address: &str,
    token: &str,
    identity: &Identity,
    validity: Duration,
) -> Result<Duration, (tonic::Code, String)> {
    match client(address, token, validity)
        .fetch_certificate(identity)
        .await
    {
        Ok(cert) => {
            assert_eq!(cert.identity(), identity);
            Ok(cert.not_after().duration_since(cert.not_before()).unwrap())
        }
        Err(CaError::Rpc { status, .. }) => Err((status.code(), status.message().to_owned())),
        Err(other) => panic!("{identity}: {other}"),
    }
}

#[test]
fn the_ca_reviews_kubernetes_tokens_and_limits_impersonation_to_the_callers_node() -> Result<()> {
    let api = ApiServer::start("ca_kubernetes")?;
    let tokens = set_up(&api).map_err(|e| e.context(api.log_tails()))?;
    let dir = ca_dir(&api);
    tokio::runtime::Runtime::new()?.block_on(async {
        let address = serve_ca(&api, &dir).await?;
        let (a, b, c) = (id(NS, "a"), id(NS, "b"), id(NS, "c"));
        let ztunnel = id("istio-system", "ztunnel");
        let unauthenticated = Err((tonic::Code::Unauthenticated, "authentication failed".into()));
        let not_authorized = Err((tonic::Code::Unauthenticated, "not authorized".into()));
        // (what, token, identity asked for, requested validity, answer: Ok(longest validity))
        let cases = [
            (
                "ztunnel for a pod on its node",
                &tokens.ztunnel,
                &a,
                DAY,
                Ok(DAY),
            ),
            (
                "ztunnel for a pod on another node",
                &tokens.ztunnel,
                &b,
                DAY,
                not_authorized.clone(),
            ),
            (
                "ztunnel for itself",
                &tokens.ztunnel,
                &ztunnel,
                DAY,
                Ok(DAY),
            ),
            (
                "ten years, capped",
                &tokens.ztunnel,
                &a,
                3650 * DAY,
                Ok(90 * DAY),
            ),
            (
                "node read from the pod",
                &tokens.ztunnel_late,
                &c,
                DAY,
                Ok(DAY),
            ),
            (
                "node read from the pod, other node",
                &tokens.ztunnel_late,
                &b,
                DAY,
                not_authorized.clone(),
            ),
            (
                "pod deleted and recreated",
                &tokens.ztunnel_recreated,
                &a,
                DAY,
                unauthenticated.clone(),
            ),
            (
                "ztunnel bound to no pod",
                &tokens.ztunnel_unbound,
                &a,
                DAY,
                not_authorized.clone(),
            ),
            (
                "ztunnel bound to no pod, itself",
                &tokens.ztunnel_unbound,
                &ztunnel,
                DAY,
                Ok(DAY),
            ),
            (
                "another audience",
                &tokens.ztunnel_other_audience,
                &a,
                DAY,
                unauthenticated.clone(),
            ),
            ("a workload for itself", &tokens.a, &a, DAY, Ok(DAY)),
            (
                "a workload for a pod on its node",
                &tokens.a,
                &c,
                DAY,
                not_authorized.clone(),
            ),
            (
                "a workload for a pod elsewhere",
                &tokens.a,
                &b,
                DAY,
                not_authorized.clone(),
            ),
            (
                "a workload as ztunnel",
                &tokens.a,
                &ztunnel,
                DAY,
                not_authorized.clone(),
            ),
            (
                "a forged token",
                &"not-a-token".to_string(),
                &a,
                DAY,
                unauthenticated.clone(),
            ),
        ];
        for (what, token, identity, validity, want) in cases {
            let got = ask(&address, token, identity, validity).await;
            match (&got, &want) {
                (Ok(life), Ok(longest)) => assert!(
                    *life <= *longest + Duration::from_secs(1)
                        && *life + Duration::from_secs(5) >= *longest,
                    "{what}: {life:?}, want {longest:?}"
                ),
                _ => assert_eq!(got, want, "{what}"),
            }
        }
        anyhow::Ok(())
    })
}

/// A directory for the CA root inside the API server's (removed with it).
fn ca_dir(api: &ApiServer) -> std::path::PathBuf {
    api.dir().join("mesh-ca")
}
