//! `k8s_openapi` Pod (+ its namespace's labels) → [`PodMeta`], the informer's view (pure).
//!
//! The pod's netns is not in the API; it stays `None` here and is filled in by the agent (CNI ADD, its own
//! record, or the netns finder). Pods the agent must never touch are left out of the view: host-network pods
//! (their "netns" is the node's; istio-cni's `PodRedirectionEnabled` refuses them too) and terminal pods
//! (phase `Succeeded`/`Failed`: their sandbox is gone, so an enrolled one is un-enrolled as deleted).

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Pod;

use crate::pods::PodMeta;

/// Why a pod is not in the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Excluded {
    /// No name, namespace or uid (never the case for objects read from an API server).
    Incomplete,
    HostNetwork,
    /// `Succeeded` or `Failed`.
    Terminal,
}

/// The pod's IPs: `status.podIPs` when present (it includes `podIP`), else `status.podIP`. Unparsable entries
/// are skipped.
pub fn pod_ips(pod: &Pod) -> Vec<IpAddr> {
    let Some(status) = &pod.status else {
        return Vec::new();
    };
    match status.pod_ips.as_deref() {
        Some(ips) if !ips.is_empty() => ips.iter().filter_map(|p| p.ip.parse().ok()).collect(),
        _ => status
            .pod_ip
            .iter()
            .filter_map(|ip| ip.parse().ok())
            .collect(),
    }
}

/// Whether the pod has finished for good (its containers will not run again).
pub fn is_terminal(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed")
}

/// The informer's view of one pod, given its namespace's labels (empty when the namespace is unknown).
pub fn pod_meta(
    pod: &Pod,
    namespace_labels: &BTreeMap<String, String>,
) -> Result<PodMeta, Excluded> {
    let md = &pod.metadata;
    let (Some(name), Some(namespace), Some(uid)) = (&md.name, &md.namespace, &md.uid) else {
        return Err(Excluded::Incomplete);
    };
    let spec = pod.spec.as_ref();
    if spec.and_then(|s| s.host_network).unwrap_or(false) {
        return Err(Excluded::HostNetwork);
    }
    if is_terminal(pod) {
        return Err(Excluded::Terminal);
    }
    Ok(PodMeta {
        uid: uid.clone(),
        name: name.clone(),
        namespace: namespace.clone(),
        // `serviceAccount` is the deprecated alias the API server still fills in; prefer the real field.
        service_account: spec
            .and_then(|s| s.service_account_name.clone().or(s.service_account.clone()))
            .unwrap_or_default(),
        node: spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        labels: md.labels.clone().unwrap_or_default(),
        annotations: md.annotations.clone().unwrap_or_default(),
        namespace_labels: namespace_labels.clone(),
        netns: None,
        ips: pod_ips(pod),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn converts_a_running_pod_with_its_namespace_labels() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "client", "namespace": "demo", "uid": "u-1",
                         "labels": {"app": "client"},
                         "annotations": {"ambient.istio.io/redirection": "enabled"}},
            "spec": {"nodeName": "node1", "serviceAccountName": "client-sa", "serviceAccount": "old",
                     "containers": [{"name": "app"}]},
            "status": {"phase": "Running", "podIP": "10.244.1.5",
                       "podIPs": [{"ip": "10.244.1.5"}, {"ip": "fd00::5"}]}
        }));
        let ns = labels(&[("istio.io/dataplane-mode", "ambient")]);
        let meta = pod_meta(&p, &ns).unwrap();
        assert_eq!(
            meta,
            PodMeta {
                uid: "u-1".into(),
                name: "client".into(),
                namespace: "demo".into(),
                service_account: "client-sa".into(),
                node: "node1".into(),
                labels: labels(&[("app", "client")]),
                annotations: labels(&[("ambient.istio.io/redirection", "enabled")]),
                namespace_labels: ns,
                netns: None,
                ips: vec!["10.244.1.5".parse().unwrap(), "fd00::5".parse().unwrap()],
            }
        );
    }

    #[test]
    fn ips_fall_back_to_pod_ip_and_skip_garbage() {
        let only_ip = pod(serde_json::json!({
            "metadata": {"name": "a", "namespace": "n", "uid": "u"},
            "status": {"podIP": "10.0.0.7"}
        }));
        assert_eq!(pod_ips(&only_ip), vec![IpAddr::from([10, 0, 0, 7])]);
        let empty_list = pod(serde_json::json!({
            "metadata": {"name": "a", "namespace": "n", "uid": "u"},
            "status": {"podIP": "10.0.0.8", "podIPs": []}
        }));
        assert_eq!(pod_ips(&empty_list), vec![IpAddr::from([10, 0, 0, 8])]);
        let garbage = pod(serde_json::json!({
            "metadata": {"name": "a", "namespace": "n", "uid": "u"},
            "status": {"podIPs": [{"ip": "not-an-ip"}, {"ip": "10.0.0.9"}]}
        }));
        assert_eq!(pod_ips(&garbage), vec![IpAddr::from([10, 0, 0, 9])]);
        let pending =
            pod(serde_json::json!({"metadata": {"name": "a", "namespace": "n", "uid": "u"}}));
        let meta = pod_meta(&pending, &BTreeMap::new()).unwrap();
        assert!(meta.ips.is_empty());
        assert_eq!(meta.service_account_or_default(), "default");
        assert_eq!(meta.node, "");
    }

    #[test]
    fn leaves_out_host_network_terminal_and_incomplete_pods() {
        let ns = BTreeMap::new();
        let host = pod(serde_json::json!({
            "metadata": {"name": "a", "namespace": "n", "uid": "u"},
            "spec": {"hostNetwork": true, "containers": []}
        }));
        assert_eq!(pod_meta(&host, &ns), Err(Excluded::HostNetwork));
        for phase in ["Succeeded", "Failed"] {
            let done = pod(serde_json::json!({
                "metadata": {"name": "a", "namespace": "n", "uid": "u"},
                "status": {"phase": phase, "podIP": "10.0.0.1"}
            }));
            assert_eq!(pod_meta(&done, &ns), Err(Excluded::Terminal), "{phase}");
        }
        let no_uid = pod(serde_json::json!({"metadata": {"name": "a", "namespace": "n"}}));
        assert_eq!(pod_meta(&no_uid, &ns), Err(Excluded::Incomplete));
    }
}
