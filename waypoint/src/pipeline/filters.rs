//! The HTTP filter phase: the listener's filters before the router, in their configured order,
//! each with the config the route (or else the virtual host) gives it by name:
//!
//! * RBAC — a denial is a 403 naming the policy;
//! * local rate limit — a token from the config's bucket, or a 429 (`RL`);
//! * fault — a fixed delay (`DI`) and/or an abort (`FI`) for a share of requests.

use std::time::Instant;

use http::HeaderMap;
use rand::Rng;

use super::local::LocalReply;
use super::{RequestContext, Routed};
use crate::model::rate_limit::{self, Decision, RateLimit};
use crate::model::{Fault, FilterOverride, HttpFilter, rbac};

/// The config a virtual host or route gives the filter named `name`, most specific first.
fn override_for<'s>(routed: &Routed<'s>, name: &str) -> Option<&'s FilterOverride> {
    routed
        .route
        .and_then(|r| r.overrides.get(name))
        .or_else(|| routed.vhost.and_then(|v| v.overrides.get(name)))
}

fn draw() -> u32 {
    rand::rng().random_range(0..1_000_000)
}

/// Runs every filter; `Err` is the local reply that ends the request.
pub(super) async fn run(
    routed: &Routed<'_>,
    ctx: &mut RequestContext,
    headers: &HeaderMap,
) -> Result<(), LocalReply> {
    for filter in routed.filters {
        let over = override_for(routed, filter.name());
        match filter {
            HttpFilter::Rbac { name, rbac: base } => {
                let effective = match over {
                    Some(FilterOverride::Rbac(f)) => f,
                    Some(FilterOverride::Disabled) => continue,
                    _ => base,
                };
                authorize(name, effective, ctx, headers)?;
            }
            HttpFilter::LocalRateLimit { limit: base, .. } => {
                let effective = match over {
                    Some(FilterOverride::RateLimit(l)) => l,
                    Some(FilterOverride::Disabled) => continue,
                    _ => base,
                };
                limit(effective, ctx)?;
            }
            HttpFilter::Fault { fault: base, .. } => {
                let effective = match over {
                    Some(FilterOverride::Fault(f)) => Some(f),
                    Some(FilterOverride::Disabled) => continue,
                    _ => base.as_ref(),
                };
                if let Some(f) = effective {
                    fault(f, ctx).await?;
                }
            }
        }
    }
    Ok(())
}

fn authorize(
    name: &str,
    filter: &rbac::RbacFilter,
    ctx: &mut RequestContext,
    headers: &HeaderMap,
) -> Result<(), LocalReply> {
    let d = rbac::evaluate(filter, &ctx.view(headers), &ctx.down.view());
    if let Some(shadow) = &d.shadow {
        tracing::info!(
            filter = %name,
            shadow_allowed = shadow.allowed,
            shadow_policy = shadow.policy.as_deref().unwrap_or("none"),
            request_id = %ctx.request_id,
            "RBAC dry-run verdict"
        );
    }
    if d.allowed {
        return Ok(());
    }
    ctx.rbac_policy = d.policy.or_else(|| Some(name.to_owned()));
    Err(LocalReply::Denied)
}

fn limit(limit: &RateLimit, ctx: &mut RequestContext) -> Result<(), LocalReply> {
    let decision = rate_limit::decide(limit, Instant::now(), draw(), draw());
    let verdict = match decision {
        Decision::Pass => return Ok(()),
        Decision::Allowed(v) | Decision::Limited(v) | Decision::LimitedNotEnforced(v) => v,
    };
    if limit.x_ratelimit_headers {
        ctx.rate_limit = Some(verdict);
    }
    match decision {
        Decision::Limited(_) => Err(LocalReply::RateLimited {
            status: limit.status,
            grpc_code: if limit.grpc_resource_exhausted { 8 } else { 14 },
            headers: limit.response_headers.clone(),
        }),
        Decision::LimitedNotEnforced(_) => {
            tracing::debug!(stat_prefix = %limit.stat_prefix, "rate limited (not enforced)");
            Ok(())
        }
        _ => Ok(()),
    }
}

async fn fault(f: &Fault, ctx: &mut RequestContext) -> Result<(), LocalReply> {
    if let Some(d) = &f.delay
        && d.share.hit(draw())
    {
        ctx.flags.push("DI");
        tokio::time::sleep(d.fixed).await;
    }
    if let Some(a) = &f.abort
        && a.share.hit(draw())
    {
        return Err(LocalReply::FaultAbort(a.status));
    }
    Ok(())
}
