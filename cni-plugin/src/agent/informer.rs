//! The informer's decisions (pure): given the enrolled pods and the pod source's current view, what to enroll
//! and what to un-enroll ([`plan`]), which pods still need their netns found ([`needs_netns`]) and, with the
//! Kubernetes source, which redirection annotations to write ([`annotations`]). The agent runs these on every
//! change of the pod source (a poll of the pod dir, or a watch event) and once at start-up.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::enrollment::{self, Decision, EnrollmentPolicy};
use crate::k8s::NodePod;
use crate::k8s::annotation::{REDIRECTION_ENABLED, REDIRECTION_PENDING, is_ours};
use crate::pods::PodMeta;

use super::state::{PodMap, Redirection};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A running pod (netns and IPs known) that should be enrolled and is not.
    Enroll(Box<PodMeta>),
    /// An enrolled pod that must leave the mesh.
    Unenroll { key: String, why: Why },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Its file is gone: the pod was deleted.
    Deleted,
    /// Same name, new uid: the old pod is gone.
    Replaced,
    /// Labels (or namespace labels) no longer enroll it.
    NotSelected,
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Deleted => "pod deleted",
            Self::Replaced => "pod replaced (new uid)",
            Self::NotSelected => "pod no longer selected for ambient",
        })
    }
}

fn is_mine(p: &PodMeta, node: &str) -> bool {
    p.node.is_empty() || node.is_empty() || p.node == node
}

/// Whether `pod` should be enrolled and is not (same uid) yet.
fn wants_enrollment(
    enrolled: &PodMap,
    pod: &PodMeta,
    policy: &EnrollmentPolicy,
    node: &str,
) -> bool {
    let cached_same = enrolled.get(&pod.key()).is_some_and(|e| e.uid == pod.uid);
    !cached_same && is_mine(pod, node) && enrollment::decide(policy, pod) == Decision::Enroll
}

/// Plans the changes. `node` filters pods of other nodes (pods without a node are taken as ours); `held` pods
/// (whose enrollment cannot be judged now, e.g. their namespace is not known yet) are left as they are;
/// `netns_exists` guards enrollment of pods whose namespace is gone or not made yet.
pub fn plan(
    enrolled: &PodMap,
    pods: &BTreeMap<String, PodMeta>,
    held: &BTreeSet<String>,
    policy: &EnrollmentPolicy,
    node: &str,
    netns_exists: &dyn Fn(&Path) -> bool,
) -> Vec<Action> {
    let mine = |p: &PodMeta| is_mine(p, node);
    let mut actions = Vec::new();
    for (key, entry) in enrolled {
        let why = match pods.get(key) {
            None if held.contains(key) => None,
            None => Some(Why::Deleted),
            Some(p) if !mine(p) => Some(Why::Deleted),
            Some(p) if p.uid != entry.uid => Some(Why::Replaced),
            Some(p) if !enrollment::decide(policy, p).is_enroll() => Some(Why::NotSelected),
            Some(_) => None,
        };
        if let Some(why) = why {
            actions.push(Action::Unenroll {
                key: key.clone(),
                why,
            });
        }
    }
    for pod in pods.values() {
        if !wants_enrollment(enrolled, pod, policy, node) {
            continue;
        }
        let running = pod.netns.as_deref().is_some_and(netns_exists) && !pod.ips.is_empty();
        if running {
            actions.push(Action::Enroll(Box::new(pod.clone())));
        }
    }
    actions
}

/// Pods [`plan`] would enroll if only their netns were known: selected, not enrolled, with IPs, no netns.
pub fn needs_netns(
    enrolled: &PodMap,
    pods: &BTreeMap<String, PodMeta>,
    policy: &EnrollmentPolicy,
    node: &str,
) -> Vec<String> {
    pods.values()
        .filter(|p| p.netns.is_none() && !p.ips.is_empty())
        .filter(|p| wants_enrollment(enrolled, p, policy, node))
        .map(PodMeta::key)
        .collect()
}

/// One write of the `ambient.istio.io/redirection` annotation: `Some(value)` sets it, `None` removes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotationChange {
    pub key: String,
    pub value: Option<&'static str>,
}

/// The annotation writes that make every pod of the node show what the agent did to it: `enabled` or `pending`
/// for an enrolled pod (same uid), and no annotation of ours (`enabled`/`pending`) on any other pod. Values we
/// never write are left alone on pods we do not enroll. Idempotent: a failed write is planned again next time.
pub fn annotations(
    enrolled: &PodMap,
    node_pods: &BTreeMap<String, NodePod>,
) -> Vec<AnnotationChange> {
    node_pods
        .iter()
        .filter_map(|(key, pod)| {
            let want =
                enrolled
                    .get(key)
                    .filter(|e| e.uid == pod.uid)
                    .map(|e| match e.redirection {
                        Redirection::Enabled => REDIRECTION_ENABLED,
                        Redirection::Pending => REDIRECTION_PENDING,
                    });
            let have = pod.redirection.as_deref();
            let write = match want {
                Some(w) => have != Some(w),
                None => have.is_some_and(is_ours),
            };
            write.then(|| AnnotationChange {
                key: key.clone(),
                value: want,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::state::PodEntry;
    use crate::enrollment::DATAPLANE_MODE_LABEL;

    fn pod(name: &str, uid: &str, ambient: bool, running: bool) -> PodMeta {
        let mut p = PodMeta {
            uid: uid.into(),
            name: name.into(),
            namespace: "demo".into(),
            node: "node1".into(),
            ..PodMeta::default()
        };
        if ambient {
            p.labels
                .insert(DATAPLANE_MODE_LABEL.into(), "ambient".into());
        }
        if running {
            p.netns = Some(format!("/run/netns/{name}").into());
            p.ips = vec![std::net::IpAddr::from([10, 0, 0, 1])];
        }
        p
    }

    fn entry(uid: &str) -> PodEntry {
        PodEntry {
            uid: uid.into(),
            redirection: Redirection::Enabled,
            ips: vec![],
            netns: None,
            service_account: String::new(),
        }
    }

    #[test]
    fn plans_enroll_and_unenroll() {
        let policy = EnrollmentPolicy {
            ambient_enabled: true,
            ..EnrollmentPolicy::default()
        };
        let mut enrolled = PodMap::new();
        for (name, uid) in [
            ("kept", "1"),
            ("gone", "2"),
            ("relabelled", "3"),
            ("replaced", "4"),
        ] {
            enrolled.insert(format!("demo/{name}"), entry(uid));
        }
        let pods: BTreeMap<String, PodMeta> = [
            pod("kept", "1", true, true),
            pod("relabelled", "3", false, true),
            pod("replaced", "44", true, true),
            pod("late-label", "5", true, true),
            pod("not-started", "6", true, false),
            pod("plain", "7", false, true),
        ]
        .into_iter()
        .map(|p| (p.key(), p))
        .collect();
        let exists = |_: &Path| true;
        let none_held = BTreeSet::new();
        let actions = plan(&enrolled, &pods, &none_held, &policy, "node1", &exists);
        let unenroll = |k: &str, why| Action::Unenroll {
            key: format!("demo/{k}"),
            why,
        };
        assert_eq!(
            actions,
            vec![
                unenroll("gone", Why::Deleted),
                unenroll("relabelled", Why::NotSelected),
                unenroll("replaced", Why::Replaced),
                Action::Enroll(Box::new(pods["demo/late-label"].clone())),
                Action::Enroll(Box::new(pods["demo/replaced"].clone())),
            ]
        );
        let none = |_: &Path| false;
        let actions = plan(&PodMap::new(), &pods, &none_held, &policy, "node1", &none);
        assert!(actions.is_empty(), "{actions:?}");
        let actions = plan(&PodMap::new(), &pods, &none_held, &policy, "node2", &exists);
        assert!(actions.is_empty(), "pods of other nodes: {actions:?}");
        // A pod whose namespace is not known yet is neither un-enrolled nor enrolled.
        let held: BTreeSet<String> = ["demo/gone".to_string()].into();
        let actions = plan(&enrolled, &pods, &held, &policy, "node1", &exists);
        assert!(
            !actions.contains(&unenroll("gone", Why::Deleted)),
            "{actions:?}"
        );
    }

    #[test]
    fn netns_is_looked_for_only_where_it_would_enroll() {
        let policy = EnrollmentPolicy {
            ambient_enabled: true,
            ..EnrollmentPolicy::default()
        };
        let no_netns = |mut p: PodMeta| {
            p.netns = None;
            p
        };
        let mut no_ips = pod("no-ips", "4", true, true);
        no_ips.netns = None;
        no_ips.ips.clear();
        let pods: BTreeMap<String, PodMeta> = [
            no_netns(pod("wanted", "1", true, true)),
            pod("has-netns", "2", true, true),
            no_netns(pod("plain", "3", false, true)),
            no_ips,
            no_netns(pod("enrolled", "5", true, true)),
        ]
        .into_iter()
        .map(|p| (p.key(), p))
        .collect();
        let mut enrolled = PodMap::new();
        enrolled.insert("demo/enrolled".into(), entry("5"));
        assert_eq!(
            needs_netns(&enrolled, &pods, &policy, "node1"),
            ["demo/wanted"]
        );
        assert!(needs_netns(&enrolled, &pods, &policy, "node2").is_empty());
    }

    #[test]
    fn annotations_follow_the_enrolled_set() {
        let mut enrolled = PodMap::new();
        enrolled.insert("demo/on".into(), entry("1"));
        enrolled.insert("demo/already".into(), entry("2"));
        enrolled.insert(
            "demo/acking".into(),
            PodEntry {
                redirection: Redirection::Pending,
                ..entry("3")
            },
        );
        enrolled.insert("demo/replaced".into(), entry("old"));
        let node_pod = |uid: &str, v: Option<&str>| NodePod {
            uid: uid.into(),
            redirection: v.map(str::to_string),
        };
        let node_pods: BTreeMap<String, NodePod> = [
            ("demo/on", node_pod("1", None)),
            ("demo/already", node_pod("2", Some("enabled"))),
            ("demo/acking", node_pod("3", Some("enabled"))),
            ("demo/replaced", node_pod("new", Some("enabled"))),
            ("demo/off", node_pod("5", Some("pending"))),
            ("demo/user", node_pod("6", Some("disabled"))),
            ("demo/plain", node_pod("7", None)),
        ]
        .into_iter()
        .map(|(k, p)| (k.to_string(), p))
        .collect();
        let change = |key: &str, value| AnnotationChange {
            key: key.into(),
            value,
        };
        assert_eq!(
            annotations(&enrolled, &node_pods),
            vec![
                change("demo/acking", Some("pending")),
                change("demo/off", None),
                change("demo/on", Some("enabled")),
                change("demo/replaced", None),
            ]
        );
    }
}
