//! The `route` action (→ [`Forward`]): clusters, rewrites, timeout, retries, hashing,
//! mirrors.

use std::time::Duration;

use xds::pb::envoy::config::route::v3::{
    RetryPolicy as PbRetry, RouteAction,
    route_action::{
        ClusterSpecifier, HashPolicy as PbHash, HostRewriteSpecifier, RequestMirrorPolicy,
        hash_policy::PolicySpecifier,
    },
    weighted_cluster::ClusterWeight,
};

use super::{At, ModelError, duration, headers, matchers, opt_duration, share, u32v};
use crate::model::{Forward, HashPolicy, Mirror, RetryOn, RetryPolicy, Share, WeightedCluster};

/// Envoy's route timeout when unset.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);
/// Envoy's retry back-off base when unset.
const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(25);

/// What routes inherit from their virtual host (or route configuration) when they set none.
pub(super) struct Defaults {
    pub retry: Option<RetryPolicy>,
    pub mirrors: Vec<Mirror>,
}

pub(super) fn forward(
    at: &At<'_>,
    a: &RouteAction,
    defaults: &Defaults,
) -> Result<Forward, ModelError> {
    check_unsupported(at, a)?;
    let clusters = clusters(at, a.cluster_specifier.as_ref())?;
    let prefix_rewrite = Some(a.prefix_rewrite.clone()).filter(|p| !p.is_empty());
    let regex_rewrite = a
        .regex_rewrite
        .as_ref()
        .map(|r| matchers::regex_rewrite(&at.f("regex_rewrite"), r))
        .transpose()?;
    if prefix_rewrite.is_some() && regex_rewrite.is_some() {
        return Err(at.invalid("both prefix_rewrite and regex_rewrite are set"));
    }
    let host_rewrite = match &a.host_rewrite_specifier {
        None => None,
        Some(HostRewriteSpecifier::HostRewriteLiteral(h)) => {
            Some(h.clone()).filter(|h| !h.is_empty())
        }
        Some(HostRewriteSpecifier::AutoHostRewrite(b)) if !b.value => None,
        Some(_) => {
            return Err(at
                .f("host_rewrite_specifier")
                .unsupported("only host_rewrite_literal"));
        }
    };
    let timeout = match &a.timeout {
        None => Some(DEFAULT_TIMEOUT),
        Some(t) => Some(duration(&at.f("timeout"), t)?).filter(|t| !t.is_zero()),
    };
    let retry = match &a.retry_policy {
        Some(r) => Some(retry(&at.f("retry_policy"), r)?),
        None => defaults.retry.clone(),
    };
    let hash_policy = a
        .hash_policy
        .iter()
        .enumerate()
        .map(|(i, h)| hash(&at.f("hash_policy").i(i, ""), h))
        .collect::<Result<_, _>>()?;
    let mirrors = if a.request_mirror_policies.is_empty() {
        defaults.mirrors.clone()
    } else {
        mirrors(&at.f("request_mirror_policies"), &a.request_mirror_policies)?
    };
    Ok(Forward {
        clusters,
        prefix_rewrite,
        regex_rewrite,
        host_rewrite,
        timeout,
        retry,
        hash_policy,
        mirrors,
    })
}

/// Fields that would change where or how a request goes if ignored.
fn check_unsupported(at: &At<'_>, a: &RouteAction) -> Result<(), ModelError> {
    let unsupported = [
        (
            "metadata_match",
            a.metadata_match.is_some(),
            "subset load balancing",
        ),
        (
            "path_rewrite_policy",
            a.path_rewrite_policy.is_some(),
            "path rewrite extensions",
        ),
        ("path_rewrite", !a.path_rewrite.is_empty(), "path templates"),
        (
            "retry_policy_typed_config",
            a.retry_policy_typed_config.is_some(),
            "retry policy extensions",
        ),
    ];
    match unsupported.iter().find(|(_, set, _)| *set) {
        Some((field, _, what)) => Err(at.f(field).unsupported(what)),
        None => Ok(()),
    }
}

fn clusters(
    at: &At<'_>,
    spec: Option<&ClusterSpecifier>,
) -> Result<Vec<WeightedCluster>, ModelError> {
    match spec {
        Some(ClusterSpecifier::Cluster(name)) if !name.is_empty() => Ok(vec![WeightedCluster {
            name: name.clone(),
            weight: 1,
            request_headers: Default::default(),
            response_headers: Default::default(),
        }]),
        Some(ClusterSpecifier::Cluster(_)) => Err(at.f("cluster").invalid("empty cluster name")),
        Some(ClusterSpecifier::WeightedClusters(w)) => {
            let at = at.f("weighted_clusters.clusters");
            let out = w
                .clusters
                .iter()
                .enumerate()
                .map(|(i, c)| weighted(&at.i(i, &c.name), c))
                .collect::<Result<Vec<_>, _>>()?;
            if crate::model::select::total_weight(&out) == 0 {
                return Err(at.invalid("the weights sum to 0"));
            }
            Ok(out)
        }
        Some(_) => Err(at
            .f("cluster_specifier")
            .unsupported("only cluster and weighted_clusters")),
        None => Err(at.f("cluster_specifier").missing()),
    }
}

fn weighted(at: &At<'_>, c: &ClusterWeight) -> Result<WeightedCluster, ModelError> {
    if c.name.is_empty() {
        return Err(at.f("name").invalid("empty cluster name"));
    }
    let unsupported = [
        ("cluster_header", !c.cluster_header.is_empty()),
        ("metadata_match", c.metadata_match.is_some()),
        (
            "typed_per_filter_config",
            !c.typed_per_filter_config.is_empty(),
        ),
        ("host_rewrite_literal", c.host_rewrite_specifier.is_some()),
    ];
    if let Some((field, _)) = unsupported.iter().find(|(_, set)| *set) {
        return Err(at.f(field).unsupported("on a weighted cluster"));
    }
    Ok(WeightedCluster {
        name: c.name.clone(),
        weight: u32v(c.weight.as_ref()).unwrap_or(0),
        request_headers: headers::changes(
            at,
            "request_headers_to_add",
            &c.request_headers_to_add,
            "request_headers_to_remove",
            &c.request_headers_to_remove,
        )?,
        response_headers: headers::changes(
            at,
            "response_headers_to_add",
            &c.response_headers_to_add,
            "response_headers_to_remove",
            &c.response_headers_to_remove,
        )?,
    })
}

/// `retry_on` tokens; tokens the waypoint does not act on (`retriable-4xx`, gRPC status
/// conditions, `reset-before-request`, …) are ignored, as Envoy ignores unknown ones.
fn retry_on(s: &str) -> RetryOn {
    let mut on = RetryOn::default();
    for token in s.split(',').map(str::trim) {
        match token {
            "5xx" => on.server_error = true,
            "gateway-error" => on.gateway_error = true,
            "reset" => on.reset = true,
            "connect-failure" => on.connect_failure = true,
            "retriable-status-codes" => on.retriable_status_codes = true,
            "refused-stream" => on.refused_stream = true,
            _ => {}
        }
    }
    on
}

/// A `RetryPolicy`: `num_retries` 1 when unset, back-off base 25 ms and max 10 × base when
/// unset, a `0s` per-try timeout is none. Host predicates are not read: retries always avoid
/// the hosts already tried when another is available.
pub(super) fn retry(at: &At<'_>, r: &PbRetry) -> Result<RetryPolicy, ModelError> {
    if !r.retriable_request_headers.is_empty() {
        return Err(at
            .f("retriable_request_headers")
            .unsupported("restricting retries by request header"));
    }
    let retriable_status_codes = r
        .retriable_status_codes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            u16::try_from(*c)
                .ok()
                .filter(|c| (100..=999).contains(c))
                .ok_or_else(|| {
                    at.f("retriable_status_codes")
                        .i(i, "")
                        .invalid(format_args!("{c} is not a status code"))
                })
        })
        .collect::<Result<_, _>>()?;
    let (base, max) = match &r.retry_back_off {
        None => (DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_BASE * 10),
        Some(b) => {
            let at = at.f("retry_back_off");
            let base = opt_duration(&at.f("base_interval"), b.base_interval.as_ref())?
                .unwrap_or(DEFAULT_BACKOFF_BASE);
            if base.is_zero() {
                return Err(at.f("base_interval").invalid("must be positive"));
            }
            let max = opt_duration(&at.f("max_interval"), b.max_interval.as_ref())?
                .unwrap_or(base.saturating_mul(10));
            if max < base {
                return Err(at
                    .f("max_interval")
                    .invalid("must not be below base_interval"));
            }
            (base, max)
        }
    };
    Ok(RetryPolicy {
        on: retry_on(&r.retry_on),
        num_retries: u32v(r.num_retries.as_ref()).unwrap_or(1),
        per_try_timeout: opt_duration(&at.f("per_try_timeout"), r.per_try_timeout.as_ref())?
            .filter(|t| !t.is_zero()),
        retriable_status_codes,
        backoff_base: base,
        backoff_max: max,
    })
}

fn hash(at: &At<'_>, h: &PbHash) -> Result<HashPolicy, ModelError> {
    let terminal = h.terminal;
    Ok(match &h.policy_specifier {
        Some(PolicySpecifier::Header(x)) => {
            if x.regex_rewrite.is_some() {
                return Err(at
                    .f("header.regex_rewrite")
                    .unsupported("rewriting the hashed header"));
            }
            if x.header_name.is_empty() {
                return Err(at.f("header.header_name").invalid("must not be empty"));
            }
            HashPolicy::Header {
                name: x.header_name.to_ascii_lowercase(),
                terminal,
            }
        }
        Some(PolicySpecifier::Cookie(c)) => {
            if c.name.is_empty() {
                return Err(at.f("cookie.name").invalid("must not be empty"));
            }
            if !c.attributes.is_empty() {
                return Err(at.f("cookie.attributes").unsupported("cookie attributes"));
            }
            HashPolicy::Cookie {
                name: c.name.clone(),
                ttl: opt_duration(&at.f("cookie.ttl"), c.ttl.as_ref())?,
                path: Some(c.path.clone()).filter(|p| !p.is_empty()),
                terminal,
            }
        }
        Some(PolicySpecifier::ConnectionProperties(p)) if p.source_ip => {
            HashPolicy::SourceIp { terminal }
        }
        Some(PolicySpecifier::ConnectionProperties(_)) => {
            return Err(at
                .f("connection_properties.source_ip")
                .invalid("must be true"));
        }
        Some(PolicySpecifier::QueryParameter(q)) if !q.name.is_empty() => {
            HashPolicy::QueryParameter {
                name: q.name.clone(),
                terminal,
            }
        }
        Some(PolicySpecifier::QueryParameter(_)) => {
            return Err(at.f("query_parameter.name").invalid("must not be empty"));
        }
        Some(PolicySpecifier::FilterState(_)) => {
            return Err(at.f("filter_state").unsupported("filter state hashing"));
        }
        None => return Err(at.f("policy_specifier").missing()),
    })
}

/// `request_mirror_policies`: a cluster each, the percentage from `runtime_fraction`'s default
/// (100 % when unset).
pub(super) fn mirrors(
    at: &At<'_>,
    list: &[RequestMirrorPolicy],
) -> Result<Vec<Mirror>, ModelError> {
    list.iter()
        .enumerate()
        .map(|(i, m)| {
            let at = at.i(i, &m.cluster);
            if !m.cluster_header.is_empty() {
                return Err(at
                    .f("cluster_header")
                    .unsupported("mirror cluster from a header"));
            }
            if m.cluster.is_empty() {
                return Err(at.f("cluster").missing());
            }
            let share = match &m.runtime_fraction {
                None => Share::ALL,
                Some(f) => {
                    let Some(p) = &f.default_value else {
                        return Err(at.f("runtime_fraction.default_value").missing());
                    };
                    share(&at.f("runtime_fraction.default_value"), p)?
                }
            };
            Ok(Mirror {
                cluster: m.cluster.clone(),
                share,
            })
        })
        .collect()
}
