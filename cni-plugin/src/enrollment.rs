//! The enrollment decision (pure): is this pod captured by the ambient mesh on this node?
//!
//! Shared by the CNI plugin (should ADD ask the agent?) and the node agent (CNI event and informer). The rule
//! (spec §8): `istio.io/dataplane-mode=ambient` on the namespace or the pod, not overridden by the pod label
//! `istio.io/dataplane-mode=none`, not a sidecar-injected pod, not in an excluded namespace, not the agent's own
//! namespace.

use crate::pods::PodMeta;

/// The label that enrolls a namespace or a pod.
pub const DATAPLANE_MODE_LABEL: &str = "istio.io/dataplane-mode";
/// Its value that enrolls.
pub const DATAPLANE_MODE_AMBIENT: &str = "ambient";
/// Its value that opts a pod out.
pub const DATAPLANE_MODE_NONE: &str = "none";
/// A pod with this annotation runs a sidecar and is never captured by ambient.
pub const SIDECAR_STATUS_ANNOTATION: &str = "sidecar.istio.io/status";

/// What decides enrollment besides the pod itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnrollmentPolicy {
    /// `ambient_enabled`: when false, nothing is enrolled.
    pub ambient_enabled: bool,
    /// Namespaces never enrolled (`kube-system` by default).
    pub exclude_namespaces: Vec<String>,
    /// The agent's own namespace; its pods are skipped (empty: none).
    pub agent_namespace: String,
}

/// The decision with its reason (logged and reported to the plugin).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Enroll,
    Skip(SkipReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    AmbientDisabled,
    ExcludedNamespace,
    AgentNamespace,
    PodOptedOut,
    Sidecar,
    NotSelected,
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::AmbientDisabled => "ambient is disabled",
            Self::ExcludedNamespace => "namespace is excluded",
            Self::AgentNamespace => "pod is in the node agent's namespace",
            Self::PodOptedOut => "pod opted out (istio.io/dataplane-mode=none)",
            Self::Sidecar => "pod has a sidecar",
            Self::NotSelected => "neither pod nor namespace has istio.io/dataplane-mode=ambient",
        })
    }
}

impl Decision {
    pub fn is_enroll(self) -> bool {
        self == Self::Enroll
    }
}

/// Decides whether `pod` is enrolled.
pub fn decide(policy: &EnrollmentPolicy, pod: &PodMeta) -> Decision {
    use SkipReason::*;
    if !policy.ambient_enabled {
        return Decision::Skip(AmbientDisabled);
    }
    if policy.exclude_namespaces.contains(&pod.namespace) {
        return Decision::Skip(ExcludedNamespace);
    }
    if !policy.agent_namespace.is_empty() && policy.agent_namespace == pod.namespace {
        return Decision::Skip(AgentNamespace);
    }
    let pod_mode = pod.labels.get(DATAPLANE_MODE_LABEL).map(String::as_str);
    if pod_mode == Some(DATAPLANE_MODE_NONE) {
        return Decision::Skip(PodOptedOut);
    }
    if pod.annotations.contains_key(SIDECAR_STATUS_ANNOTATION) {
        return Decision::Skip(Sidecar);
    }
    let ns_mode = pod
        .namespace_labels
        .get(DATAPLANE_MODE_LABEL)
        .map(String::as_str);
    if pod_mode == Some(DATAPLANE_MODE_AMBIENT) || ns_mode == Some(DATAPLANE_MODE_AMBIENT) {
        Decision::Enroll
    } else {
        Decision::Skip(NotSelected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ns: &str, pod_label: Option<&str>, ns_label: Option<&str>) -> PodMeta {
        let mut p = PodMeta {
            uid: "u".into(),
            name: "p".into(),
            namespace: ns.into(),
            ..PodMeta::default()
        };
        if let Some(v) = pod_label {
            p.labels.insert(DATAPLANE_MODE_LABEL.into(), v.into());
        }
        if let Some(v) = ns_label {
            p.namespace_labels
                .insert(DATAPLANE_MODE_LABEL.into(), v.into());
        }
        p
    }

    #[test]
    fn decision_table() {
        let policy = EnrollmentPolicy {
            ambient_enabled: true,
            exclude_namespaces: vec!["kube-system".into()],
            agent_namespace: "istio-system".into(),
        };
        use Decision::*;
        use SkipReason::*;
        let cases = [
            (pod("demo", None, Some("ambient")), Enroll),
            (pod("demo", Some("ambient"), None), Enroll),
            (pod("demo", Some("ambient"), Some("none")), Enroll),
            (
                pod("demo", Some("none"), Some("ambient")),
                Skip(PodOptedOut),
            ),
            (pod("demo", None, None), Skip(NotSelected)),
            (pod("demo", Some("sidecar"), None), Skip(NotSelected)),
            (pod("demo", None, Some("AMBIENT")), Skip(NotSelected)),
            (
                pod("kube-system", Some("ambient"), None),
                Skip(ExcludedNamespace),
            ),
            (
                pod("istio-system", None, Some("ambient")),
                Skip(AgentNamespace),
            ),
        ];
        for (p, want) in cases {
            assert_eq!(decide(&policy, &p), want, "{p:?}");
        }
        let mut sidecar = pod("demo", None, Some("ambient"));
        sidecar
            .annotations
            .insert(SIDECAR_STATUS_ANNOTATION.into(), "{}".into());
        assert_eq!(decide(&policy, &sidecar), Skip(Sidecar));
        let off = EnrollmentPolicy {
            ambient_enabled: false,
            ..policy.clone()
        };
        assert_eq!(
            decide(&off, &pod("demo", Some("ambient"), None)),
            Skip(AmbientDisabled)
        );
        let no_agent_ns = EnrollmentPolicy {
            agent_namespace: String::new(),
            ..policy
        };
        assert_eq!(
            decide(&no_agent_ns, &pod("", None, Some("ambient"))),
            Enroll
        );
    }
}
