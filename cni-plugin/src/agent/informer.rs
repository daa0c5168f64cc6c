//! The informer's decisions (pure): given the enrolled pods and the pod source's current view, what to enroll
//! and what to un-enroll. The agent runs this on every poll of the pod dir and once at start-up.

use std::path::Path;

use crate::enrollment::{self, Decision, EnrollmentPolicy};
use crate::pods::PodMeta;

use super::state::PodMap;

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

/// Plans the changes. `node` filters pods of other nodes (pods without a node are taken as ours);
/// `netns_exists` guards enrollment of pods whose namespace is gone or not made yet.
pub fn plan(
    enrolled: &PodMap,
    pods: &std::collections::BTreeMap<String, PodMeta>,
    policy: &EnrollmentPolicy,
    node: &str,
    netns_exists: &dyn Fn(&Path) -> bool,
) -> Vec<Action> {
    let mine = |p: &PodMeta| p.node.is_empty() || node.is_empty() || p.node == node;
    let mut actions = Vec::new();
    for (key, entry) in enrolled {
        let why = match pods.get(key) {
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
    for (key, pod) in pods {
        let cached_same = enrolled.get(key).is_some_and(|e| e.uid == pod.uid);
        if cached_same || !mine(pod) || enrollment::decide(policy, pod) != Decision::Enroll {
            continue;
        }
        let running = pod.netns.as_deref().is_some_and(netns_exists) && !pod.ips.is_empty();
        if running {
            actions.push(Action::Enroll(Box::new(pod.clone())));
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::state::{PodEntry, Redirection};
    use crate::enrollment::DATAPLANE_MODE_LABEL;
    use std::collections::BTreeMap;

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
        let actions = plan(&enrolled, &pods, &policy, "node1", &exists);
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
        let actions = plan(&PodMap::new(), &pods, &policy, "node1", &none);
        assert!(actions.is_empty(), "{actions:?}");
        let actions = plan(&PodMap::new(), &pods, &policy, "node2", &exists);
        assert!(actions.is_empty(), "pods of other nodes: {actions:?}");
    }
}
