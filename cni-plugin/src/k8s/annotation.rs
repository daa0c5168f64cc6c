//! The `ambient.istio.io/redirection` pod annotation (pure): its values and the JSON merge patches that set and
//! remove it, as istio-cni writes them (`cni/pkg/util/podutil.go`: `AnnotateEnrolledPod`,
//! `AnnotatePartiallyEnrolledPod`, `AnnotateUnenrollPod`).
//!
//! The annotation records the *actual* state, written only by the node agent: `enabled` once the pod's rules are in
//! place and ztunnel acked it, `pending` while it has rules but no Ack, absent otherwise. Intent is the
//! `istio.io/dataplane-mode` label (opt-out: `none` on the pod). Istio releases before 1.22 also honoured a
//! user-set `ambient.istio.io/redirection: disabled` as an opt-out; current istio-cni does not (its constants say
//! "anything else [than enabled] indicates it is not [captured]"), and neither do we. We do leave values we never
//! write (such as `disabled`) alone on pods we do not enroll, so nothing fights a user's leftover annotation.

use serde_json::{Value, json};

/// The annotation key.
pub const REDIRECTION_ANNOTATION: &str = "ambient.istio.io/redirection";
/// Rules in place and acked by ztunnel.
pub const REDIRECTION_ENABLED: &str = "enabled";
/// Rules in place, no ztunnel Ack yet.
pub const REDIRECTION_PENDING: &str = "pending";

/// Whether `value` is one the agent writes (and therefore may remove).
pub fn is_ours(value: &str) -> bool {
    value == REDIRECTION_ENABLED || value == REDIRECTION_PENDING
}

/// The merge patch (`application/merge-patch+json`) that sets the annotation to `value`, or removes it (`None`:
/// a JSON `null` deletes the key).
pub fn patch_body(value: Option<&str>) -> Value {
    json!({"metadata": {"annotations": {REDIRECTION_ANNOTATION: value}}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_bodies_match_istio_cni() {
        assert_eq!(
            patch_body(Some(REDIRECTION_ENABLED)).to_string(),
            r#"{"metadata":{"annotations":{"ambient.istio.io/redirection":"enabled"}}}"#
        );
        assert_eq!(
            patch_body(Some(REDIRECTION_PENDING)).to_string(),
            r#"{"metadata":{"annotations":{"ambient.istio.io/redirection":"pending"}}}"#
        );
        assert_eq!(
            patch_body(None).to_string(),
            r#"{"metadata":{"annotations":{"ambient.istio.io/redirection":null}}}"#
        );
    }

    #[test]
    fn only_our_values_are_ours() {
        assert!(is_ours("enabled") && is_ours("pending"));
        assert!(!is_ours("disabled") && !is_ours("") && !is_ours("Enabled"));
    }
}
