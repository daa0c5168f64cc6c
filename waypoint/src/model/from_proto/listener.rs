//! A listener's one filter chain → [`ListenerKind`]: the HTTP connection manager (RDS route
//! configuration; RBAC, fault and local rate limit filters in order; router last) or `tcp_proxy`
//! to one cluster.

use std::sync::Arc;

use xds::pb::envoy::config::listener::v3::{
    FilterChain, FilterChainMatch, Listener as PbListener, filter,
};
use xds::pb::envoy::extensions::filters::http::fault::v3::HttpFault;
use xds::pb::envoy::extensions::filters::http::local_ratelimit::v3::LocalRateLimit;
use xds::pb::envoy::extensions::filters::http::rbac::v3::Rbac;
use xds::pb::envoy::extensions::filters::http::router::v3::Router;
use xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter as PbHttpFilter, http_connection_manager::RouteSpecifier,
    http_filter,
};
use xds::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
    TcpProxy, tcp_proxy::ClusterSpecifier,
};

use super::rate_limit::{self, Level};
use super::{At, ModelError, decode, fault, holds, rbac_rules};
use crate::model::rate_limit::RateLimit;
use crate::model::rbac::RbacFilter;
use crate::model::{Fault, HttpFilter, ListenerKind};

/// Filter names Envoy accepts for the router when a filter has no typed config.
const ROUTER_NAME: &str = "envoy.filters.http.router";

/// The listener's one filter chain (in `filter_chains` or as `default_filter_chain`), with no
/// match conditions and no transport socket, holding one network filter.
pub(super) fn kind(at: &At<'_>, l: &PbListener) -> Result<ListenerKind, ModelError> {
    if l.filter_chain_matcher.is_some() {
        return Err(at
            .f("filter_chain_matcher")
            .unsupported("filter chain matching"));
    }
    let chains: Vec<(At<'_>, &FilterChain)> = l
        .filter_chains
        .iter()
        .enumerate()
        .map(|(i, c)| (at.f("filter_chains").i(i, &c.name), c))
        .chain(
            l.default_filter_chain
                .iter()
                .map(|c| (at.f("default_filter_chain"), c)),
        )
        .collect();
    let [(at, fc)] = chains.as_slice() else {
        return Err(at.f("filter_chains").unsupported(format_args!(
            "exactly one filter chain is supported, got {}",
            chains.len()
        )));
    };
    if fc
        .filter_chain_match
        .as_ref()
        .is_some_and(|m| *m != FilterChainMatch::default())
    {
        return Err(at
            .f("filter_chain_match")
            .unsupported("filter chain match conditions"));
    }
    if fc.transport_socket.is_some() {
        return Err(at
            .f("transport_socket")
            .unsupported("transport sockets (the waypoint terminates HBONE itself)"));
    }
    let [f] = fc.filters.as_slice() else {
        return Err(at.f("filters").unsupported(format_args!(
            "exactly one network filter (HTTP connection manager or tcp_proxy) is supported, got {}",
            fc.filters.len()
        )));
    };
    let at = at.f("filters").i(0, &f.name);
    let any = match &f.config_type {
        Some(filter::ConfigType::TypedConfig(any)) => any,
        Some(filter::ConfigType::ConfigDiscovery(_)) => {
            return Err(at
                .f("config_discovery")
                .unsupported("filter config discovery"));
        }
        None => return Err(at.f("typed_config").missing()),
    };
    if holds::<HttpConnectionManager>(any) {
        let hcm: HttpConnectionManager = decode(&at.f("typed_config"), any)?;
        http(&at.f("typed_config"), &hcm)
    } else if holds::<TcpProxy>(any) {
        let tcp: TcpProxy = decode(&at.f("typed_config"), any)?;
        tcp_proxy(&at.f("typed_config"), &tcp)
    } else {
        Err(at
            .f("typed_config")
            .unsupported(format_args!("network filter of type {:?}", any.type_url)))
    }
}

fn http(at: &At<'_>, hcm: &HttpConnectionManager) -> Result<ListenerKind, ModelError> {
    let route_config = match &hcm.route_specifier {
        Some(RouteSpecifier::Rds(rds)) if !rds.route_config_name.is_empty() => {
            rds.route_config_name.clone()
        }
        Some(RouteSpecifier::Rds(_)) => return Err(at.f("rds.route_config_name").missing()),
        Some(RouteSpecifier::RouteConfig(_)) => {
            return Err(at
                .f("route_config")
                .unsupported("inline route configurations (use RDS)"));
        }
        Some(RouteSpecifier::ScopedRoutes(_)) => {
            return Err(at.f("scoped_routes").unsupported("scoped routes"));
        }
        None => return Err(at.f("route_specifier").missing()),
    };
    Ok(ListenerKind::Http {
        stat_prefix: hcm.stat_prefix.clone(),
        route_config,
        filters: http_filters(&at.f("http_filters"), &hcm.http_filters)?,
    })
}

/// What one HTTP filter is.
enum Kind {
    Rbac(RbacFilter),
    Fault(Option<Arc<Fault>>),
    RateLimit(Arc<RateLimit>),
    Router,
    /// Not understood but optional: dropped.
    Skip,
}

fn http_filter(at: &At<'_>, f: &PbHttpFilter) -> Result<Kind, ModelError> {
    let any = match &f.config_type {
        Some(http_filter::ConfigType::TypedConfig(any)) => any,
        None if f.name == ROUTER_NAME => return Ok(Kind::Router),
        _ if f.is_optional => return Ok(Kind::Skip),
        Some(http_filter::ConfigType::ConfigDiscovery(_)) => {
            return Err(at
                .f("config_discovery")
                .unsupported("filter config discovery"));
        }
        None => return Err(at.f("typed_config").missing()),
    };
    if holds::<Router>(any) {
        Ok(Kind::Router)
    } else if holds::<Rbac>(any) {
        let rbac: Rbac = decode(&at.f("typed_config"), any)?;
        // A disabled filter runs only where a route enables it with its own config, which
        // replaces this one: here it lets everything through.
        Ok(Kind::Rbac(if f.disabled {
            RbacFilter::disabled()
        } else {
            rbac_rules::filter(&at.f("typed_config"), &rbac)?
        }))
    } else if holds::<HttpFault>(any) {
        let config: HttpFault = decode(&at.f("typed_config"), any)?;
        // Disabled, or with neither a delay nor an abort: only routes' configs inject faults.
        if f.disabled || (config.delay.is_none() && config.abort.is_none()) {
            return Ok(Kind::Fault(None));
        }
        let fault = fault::fault(&at.f("typed_config"), &config)?;
        Ok(Kind::Fault(Some(Arc::new(fault))))
    } else if holds::<LocalRateLimit>(any) {
        let config: LocalRateLimit = decode(&at.f("typed_config"), any)?;
        Ok(Kind::RateLimit(Arc::new(if f.disabled {
            rate_limit::pass_through(&config.stat_prefix)
        } else {
            rate_limit::local_rate_limit(&at.f("typed_config"), &config, Level::Filter)?
        })))
    } else if f.is_optional {
        Ok(Kind::Skip)
    } else {
        Err(at
            .f("typed_config")
            .unsupported(format_args!("HTTP filter of type {:?}", any.type_url)))
    }
}

/// The filters before the router, which must come last.
fn http_filters(at: &At<'_>, list: &[PbHttpFilter]) -> Result<Vec<HttpFilter>, ModelError> {
    let mut out = Vec::new();
    for (i, f) in list.iter().enumerate() {
        let at = at.i(i, &f.name);
        match http_filter(&at, f)? {
            Kind::Rbac(rbac) => out.push(HttpFilter::Rbac {
                name: f.name.clone(),
                rbac,
            }),
            Kind::Fault(fault) => out.push(HttpFilter::Fault {
                name: f.name.clone(),
                fault,
            }),
            Kind::RateLimit(limit) => out.push(HttpFilter::LocalRateLimit {
                name: f.name.clone(),
                limit,
            }),
            Kind::Skip => {}
            Kind::Router if i + 1 == list.len() => return Ok(out),
            Kind::Router => return Err(at.invalid("the router must be the last filter")),
        }
    }
    Err(at.invalid("no router filter (envoy.filters.http.router) at the end"))
}

fn tcp_proxy(at: &At<'_>, t: &TcpProxy) -> Result<ListenerKind, ModelError> {
    if t.metadata_match.is_some() {
        return Err(at.f("metadata_match").unsupported("subset load balancing"));
    }
    if t.tunneling_config.is_some() {
        return Err(at.f("tunneling_config").unsupported("TCP tunneling"));
    }
    let cluster = match &t.cluster_specifier {
        Some(ClusterSpecifier::Cluster(c)) if !c.is_empty() => c.clone(),
        Some(ClusterSpecifier::WeightedClusters(w)) => {
            let live: Vec<&str> = w
                .clusters
                .iter()
                .filter(|c| c.weight > 0)
                .map(|c| c.name.as_str())
                .collect();
            match live.as_slice() {
                [one] if !one.is_empty() => (*one).to_owned(),
                _ => {
                    return Err(at
                        .f("weighted_clusters")
                        .unsupported("more than one weighted TCP cluster"));
                }
            }
        }
        _ => return Err(at.f("cluster").missing()),
    };
    Ok(ListenerKind::Tcp {
        stat_prefix: t.stat_prefix.clone(),
        cluster,
    })
}
