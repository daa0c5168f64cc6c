//! Leader election over a `coordination.k8s.io/v1` Lease, as Kubernetes controllers (and istiod) do it, so
//! several control-plane replicas can run and only one writes: the holder renews the Lease every third of its
//! duration; another replica takes it over once it has not been renewed for a whole duration. Every change is
//! a `replace` with the `resourceVersion` that was read, so two replicas can never both win. A replica that
//! stops releases the Lease (empty holder), so a successor takes over at its next try.
//!
//! RBAC: `get`, `create`, `update` on `leases` in the control plane's namespace.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::watch;

/// The Lease's name.
pub const LEASE_NAME: &str = "control-plane-leader";

/// What a replica does with the Lease as it finds it (pure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nobody holds it, or the holder let it expire: take it.
    Acquire,
    /// We hold it: renew it.
    Renew,
    /// Someone else holds it and renews it.
    Follow,
}

/// Decides from the Lease's holder and last renewal (unix milliseconds) and its duration.
pub fn decide(
    holder: Option<&str>,
    renewed_ms: Option<i64>,
    duration: Duration,
    me: &str,
    now_ms: i64,
) -> Step {
    match holder.filter(|h| !h.is_empty()) {
        None => Step::Acquire,
        Some(h) if h == me => Step::Renew,
        Some(_) => {
            let expires = renewed_ms
                .unwrap_or(0)
                .saturating_add(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX));
            if now_ms > expires {
                Step::Acquire
            } else {
                Step::Follow
            }
        }
    }
}

fn now() -> (Timestamp, i64) {
    let t = Timestamp::now();
    (t, t.as_millisecond())
}

/// Runs the election until shutdown; `leader` says whether this replica leads.
pub async fn run(
    client: Client,
    namespace: String,
    me: String,
    duration: Duration,
    leader: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let api: Api<Lease> = Api::namespaced(client, &namespace);
    let period = duration / 3;
    loop {
        let leading = match try_once(&api, &me, duration).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, lease = LEASE_NAME, namespace, "leader election failed; not leading until it works");
                false
            }
        };
        if leader.send_replace(leading) != leading {
            tracing::info!(
                leading,
                me,
                lease = LEASE_NAME,
                namespace,
                "leadership changed"
            );
        }
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    if *leader.borrow() {
        if let Err(e) = release(&api, &me).await {
            tracing::warn!(error = %e, "could not release the leader Lease; a successor waits for it to expire");
        }
        leader.send_replace(false);
    }
}

/// One round: read the Lease, then create, renew or take it over as [`decide`] says. Whether we lead.
async fn try_once(api: &Api<Lease>, me: &str, duration: Duration) -> Result<bool, kube::Error> {
    let (t, now_ms) = now();
    let seconds = i32::try_from(duration.as_secs()).unwrap_or(i32::MAX);
    let Some(mut lease) = api.get_opt(LEASE_NAME).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(LEASE_NAME.into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(me.into()),
                lease_duration_seconds: Some(seconds),
                acquire_time: Some(MicroTime(t)),
                renew_time: Some(MicroTime(t)),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    let held_for = spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map_or(duration, Duration::from_secs);
    let step = decide(
        spec.holder_identity.as_deref(),
        spec.renew_time.as_ref().map(|r| r.0.as_millisecond()),
        held_for,
        me,
        now_ms,
    );
    match step {
        Step::Follow => return Ok(false),
        Step::Acquire => {
            spec.holder_identity = Some(me.into());
            spec.acquire_time = Some(MicroTime(t));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        }
        Step::Renew => {}
    }
    spec.renew_time = Some(MicroTime(t));
    spec.lease_duration_seconds = Some(seconds);
    match api
        .replace(LEASE_NAME, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(true),
        // Someone else changed it since we read it: they won this round.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

async fn release(api: &Api<Lease>, me: &str) -> Result<(), kube::Error> {
    let Some(mut lease) = api.get_opt(LEASE_NAME).await? else {
        return Ok(());
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if spec.holder_identity.as_deref() != Some(me) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.renew_time = None;
    api.replace(LEASE_NAME, &PostParams::default(), &lease)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_secs(15);

    #[test]
    fn the_lease_goes_to_whoever_finds_it_free_or_expired() {
        let cases: &[(Option<&str>, Option<i64>, i64, Step)] = &[
            (None, None, 1_000, Step::Acquire),
            (Some(""), Some(900), 1_000, Step::Acquire),
            (Some("me"), Some(0), 100_000, Step::Renew),
            (Some("other"), Some(90_000), 100_000, Step::Follow),
            (Some("other"), Some(85_000), 100_000, Step::Follow),
            (Some("other"), Some(84_999), 100_000, Step::Acquire),
            (Some("other"), None, 100_000, Step::Acquire),
        ];
        for (holder, renewed, now, want) in cases {
            assert_eq!(
                decide(*holder, *renewed, D, "me", *now),
                *want,
                "{holder:?} {renewed:?} {now}"
            );
        }
    }
}
