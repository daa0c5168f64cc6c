//! A waypoint's socket listener for one service port: `0.0.0.0_<port>`, one filter chain with
//! the HTTP connection manager (RDS `"<port>"` over ADS).

use xds::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener, filter};
use xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter;

use crate::translate::clusters::socket_address;
use crate::translate::envoy::{HCM_FILTER, any, http_connection_manager, router_filter};

/// `0.0.0.0_<port>`.
pub(super) fn listener_name(port: u16) -> String {
    format!("0.0.0.0_{port}")
}

/// The listener; `filters` are the RBAC and extension filters (the router is appended).
pub(super) fn listener(bind: &str, port: u16, mut filters: Vec<HttpFilter>) -> Listener {
    filters.push(router_filter());
    let hcm = http_connection_manager(&format!("waypoint_{port}"), &port.to_string(), filters);
    Listener {
        name: listener_name(port),
        address: Some(socket_address(bind, port)),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: HCM_FILTER.into(),
                config_type: Some(filter::ConfigType::TypedConfig(any(&hcm))),
            }],
            ..FilterChain::default()
        }],
        ..Listener::default()
    }
}
