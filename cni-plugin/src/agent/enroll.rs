//! Enrolling and un-enrolling one pod (rules → ZDS → record), serialized per pod, and the start-up rebuild.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::enrollment::{self, Decision};
use crate::pods::PodMeta;
use crate::redirect;
use crate::rules::PodRuleOptions;
use crate::zds::server::{ReplayItem, ReplaySource};

use super::source::Source;
use super::state::{self, PodEntry, Redirection};
use super::{Agent, AgentError};

/// Where an enrollment request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// CNI ADD: failure undoes everything and fails the ADD (the runtime retries).
    Cni,
    /// The informer (label added to a running pod, start-up): failure keeps the rules and records `pending`;
    /// the pod is replayed on the next tunnel connection and retried periodically.
    Informer,
}

impl Agent {
    fn rule_options(&self, ips: &[IpAddr]) -> PodRuleOptions {
        PodRuleOptions {
            dns_capture: self.cfg.dns_capture,
            ipv6: self.cfg.ipv6 && ips.iter().any(IpAddr::is_ipv6),
        }
    }

    /// Installs the rules, hands the pod to ztunnel and records it.
    pub async fn enroll(
        self: &Arc<Self>,
        pod: &PodMeta,
        netns: &Path,
        ips: Vec<IpAddr>,
        origin: Origin,
    ) -> Result<(), AgentError> {
        let key = pod.key();
        let lock = self.pod_lock(&key);
        let _guard = lock.lock().await;
        if origin == Origin::Informer && self.pods().get(&key).is_some_and(|e| e.uid == pod.uid) {
            return Ok(()); // a CNI ADD got there first
        }
        let opts = self.rule_options(&ips);
        let ns = netns.to_path_buf();
        blocking(move || redirect::apply(&ns, opts)).await?;
        let entry = PodEntry {
            uid: pod.uid.clone(),
            redirection: Redirection::Pending,
            ips,
            netns: Some(netns.into()),
            service_account: pod.service_account_or_default().into(),
        };
        let workload = state::workload(&key, &entry);
        match self.zds.add(&workload, netns).await {
            Ok(()) => {
                tracing::info!(pod = %key, uid = %pod.uid, ?origin, "pod enrolled (redirection enabled)");
                self.record(
                    &key,
                    Some(PodEntry {
                        redirection: Redirection::Enabled,
                        ..entry
                    }),
                )
                .await;
                Ok(())
            }
            Err(e) if origin == Origin::Cni => {
                tracing::warn!(pod = %key, error = %e, "ztunnel did not take the pod; removing its rules");
                let ns = netns.to_path_buf();
                if let Err(re) = blocking(move || redirect::remove(&ns)).await {
                    tracing::error!(pod = %key, error = %re, "could not remove rules after a failed add");
                }
                let was = self.pods().get(&key).cloned();
                if was.is_some_and(|w| w.uid == pod.uid) {
                    self.record(&key, None).await;
                }
                Err(AgentError::Zds(e))
            }
            Err(e) => {
                tracing::warn!(pod = %key, error = %e, "ztunnel did not take the pod; redirection pending");
                self.record(&key, Some(entry)).await;
                Err(AgentError::Zds(e))
            }
        }
    }

    /// Removes the rules (if the netns still exists), tells every tunnel and forgets the pod.
    pub async fn unenroll(self: &Arc<Self>, key: &str, why: &str) {
        let lock = self.pod_lock(key);
        let _guard = lock.lock().await;
        let Some(entry) = self.pods().get(key).cloned() else {
            return;
        };
        if let Some(ns) = entry.netns.clone() {
            match blocking(move || redirect::remove(&ns)).await {
                Ok(()) => {}
                Err(e) => tracing::warn!(pod = %key, error = %e, "could not remove pod rules"),
            }
        }
        let acked = self.zds.del(&entry.uid).await;
        self.record(key, None).await;
        tracing::info!(pod = %key, uid = %entry.uid, %why, tunnels = acked, "pod un-enrolled");
    }

    /// Retries `add` for pods whose redirection is pending (a tunnel is connected again).
    pub async fn retry_pending(self: &Arc<Self>) {
        if self.zds.connected() == 0 {
            return;
        }
        let pending: Vec<(String, PodEntry)> = self
            .pods()
            .into_iter()
            .filter(|(_, e)| e.redirection == Redirection::Pending)
            .collect();
        for (key, entry) in pending {
            let Some(ns) = entry.netns.clone() else {
                continue;
            };
            let lock = self.pod_lock(&key);
            let _guard = lock.lock().await;
            if self.pods().get(&key) != Some(&entry) {
                continue;
            }
            if self
                .zds
                .add(&state::workload(&key, &entry), &ns)
                .await
                .is_ok()
            {
                tracing::info!(pod = %key, "pending pod enrolled (redirection enabled)");
                self.record(
                    &key,
                    Some(PodEntry {
                        redirection: Redirection::Enabled,
                        ..entry
                    }),
                )
                .await;
            }
        }
    }

    /// Start-up: rebuild the enrolled set from the pod source, the previous `pods.json` and the rules present
    /// in pod netns, before any tunnel connects (the first replay is then complete). Pods deleted while the
    /// agent was down are cleaned up and left out, so the tunnel drops them after the snapshot. (With the
    /// Kubernetes source a pod's netns comes from `pods.json` when the uid matches, else from the netns finder.)
    pub async fn rebuild(self: &Arc<Self>, source: &mut Source) -> Result<(), AgentError> {
        let previous = state::load(&self.cfg.pods_json());
        let listing = self.list(source, &previous).await?;
        let pods = listing.pods;
        let policy = self.cfg.policy();
        for (key, old) in &previous {
            if listing.held.contains(key) {
                // Namespace unknown: keep the pod as it was; the informer judges it once it can.
                self.pods_mut().insert(key.clone(), old.clone());
                continue;
            }
            let still = pods.get(key).is_some_and(|p| p.uid == old.uid);
            if !still && let Some(ns) = old.netns.clone() {
                tracing::info!(pod = %key, uid = %old.uid, "pod deleted while the agent was down; cleaning up");
                let _ = blocking(move || redirect::remove(&ns)).await;
            }
        }
        for (key, pod) in &pods {
            let Some(ns) = pod.netns.clone().filter(|p| p.exists()) else {
                continue;
            };
            let enroll =
                enrollment::decide(&policy, pod) == Decision::Enroll && !pod.ips.is_empty();
            let ns2 = ns.clone();
            let present = blocking(move || redirect::present(&ns2))
                .await?
                .unwrap_or(false);
            if !enroll {
                if present {
                    tracing::info!(pod = %key, "pod no longer enrolled; removing leftover rules");
                    let _ = blocking(move || redirect::remove(&ns)).await;
                }
                continue;
            }
            let opts = self.rule_options(&pod.ips);
            let ns2 = ns.clone();
            if let Err(e) = blocking(move || redirect::apply(&ns2, opts)).await {
                tracing::error!(pod = %key, error = %e, "could not install pod rules at start-up");
                continue;
            }
            let redirection = previous
                .get(key)
                .filter(|old| old.uid == pod.uid && present)
                .map(|old| old.redirection)
                .unwrap_or(Redirection::Pending);
            tracing::info!(pod = %key, ?redirection, rules_were_present = present, "pod restored");
            self.pods_mut().insert(
                key.clone(),
                PodEntry {
                    uid: pod.uid.clone(),
                    redirection,
                    ips: pod.ips.clone(),
                    netns: Some(ns),
                    service_account: pod.service_account_or_default().into(),
                },
            );
        }
        self.persist().await;
        Ok(())
    }
}

/// Runs blocking rule work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::netns::ExecError> + Send + 'static,
) -> Result<T, AgentError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AgentError::Internal(e.to_string()))?
        .map_err(AgentError::Rules)
}

impl ReplaySource for Agent {
    fn snapshot(&self) -> Vec<ReplayItem> {
        state::replay_items(&self.pods())
    }

    fn replayed(&self, uid: &str, result: Result<(), String>) {
        let redirection = match &result {
            Ok(()) => Redirection::Enabled,
            Err(e) => {
                tracing::warn!(%uid, error = %e, "ztunnel NACKed a replayed pod");
                Redirection::Pending
            }
        };
        let changed = {
            let mut pods = self.pods_mut();
            let mut changed = false;
            for e in pods.values_mut().filter(|e| e.uid == uid) {
                changed |= e.redirection != redirection;
                e.redirection = redirection;
            }
            changed
        };
        if changed {
            self.persist_now();
            self.wake.notify_one();
        }
    }
}

/// The netns path of a CNI request, or the pod file's.
pub fn netns_of(request_netns: &str, pod: &PodMeta) -> Option<PathBuf> {
    if !request_netns.is_empty() {
        return Some(PathBuf::from(request_netns));
    }
    pod.netns.clone()
}
