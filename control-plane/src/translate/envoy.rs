//! Small builders for Envoy protos shared by the waypoint and proxyless translations: `Any`
//! packing, the ADS config source, durations, wrappers, matchers, header options and names.

use std::time::Duration;

use prost::{Message, Name};
use xds::pb::envoy::config::core::v3::{
    AggregatedConfigSource, ApiVersion, ConfigSource, HeaderValue, HeaderValueOption,
    HeaderValueOption as Hvo, config_source::ConfigSourceSpecifier,
};
use xds::pb::envoy::extensions::filters::http::router::v3::Router;
use xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager::RouteSpecifier, http_filter,
};
use xds::pb::envoy::r#type::matcher::v3::{
    RegexMatcher, StringMatcher, string_matcher::MatchPattern,
};
use xds::pb::google::protobuf as pbuf;

pub(super) const ROUTER_FILTER: &str = "envoy.filters.http.router";
pub(super) const HCM_FILTER: &str = "envoy.filters.network.http_connection_manager";

/// `Any{type.googleapis.com/<full name>, bytes}`.
pub(super) fn any<M: Message + Name>(m: &M) -> pbuf::Any {
    pbuf::Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

/// `{ads: {}, resource_api_version: V3}`: what Envoy and gRPC both accept for RDS and EDS.
pub(super) fn ads() -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        ..ConfigSource::default()
    }
}

pub(super) fn duration(d: Duration) -> pbuf::Duration {
    pbuf::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        // Below 10^9: fits.
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// A duration the manifest rules already checked (so parsing cannot fail here).
pub(super) fn parsed(text: &str) -> Option<pbuf::Duration> {
    crate::manifest::parse_duration(text).ok().map(duration)
}

pub(super) fn u32v(value: u32) -> pbuf::UInt32Value {
    pbuf::UInt32Value { value }
}

pub(super) fn exact(s: &str) -> StringMatcher {
    matcher(MatchPattern::Exact(s.to_owned()))
}

pub(super) fn regex(re: &str) -> StringMatcher {
    matcher(MatchPattern::SafeRegex(regex_matcher(re)))
}

pub(super) fn matcher(p: MatchPattern) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(p),
        ..StringMatcher::default()
    }
}

/// A regex for Envoy's default engine (RE2).
pub(super) fn regex_matcher(re: &str) -> RegexMatcher {
    RegexMatcher {
        regex: re.to_owned(),
        ..RegexMatcher::default()
    }
}

/// A header to set (`overwrite`) or append.
pub(super) fn header(name: &str, value: &str, overwrite: bool) -> Hvo {
    use xds::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction as A;
    HeaderValueOption {
        header: Some(HeaderValue {
            key: name.to_ascii_lowercase(),
            value: value.to_owned(),
            ..HeaderValue::default()
        }),
        append_action: if overwrite {
            A::OverwriteIfExistsOrAdd
        } else {
            A::AppendIfExistsOrAdd
        } as i32,
        ..HeaderValueOption::default()
    }
}

/// The terminal `envoy.filters.http.router` filter.
pub(super) fn router_filter() -> HttpFilter {
    HttpFilter {
        name: ROUTER_FILTER.into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(
            any(&Router::default()),
        )),
        ..HttpFilter::default()
    }
}

/// `outbound|<port>||<hostname>`, Istio's cluster (and EDS service) name.
pub(super) fn cluster_name(port: u16, hostname: &str) -> String {
    format!("outbound|{port}||{hostname}")
}

/// An HTTP connection manager whose routes come over RDS (`route_config_name` over ADS).
pub(super) fn http_connection_manager(
    stat_prefix: &str,
    route_config_name: &str,
    http_filters: Vec<HttpFilter>,
) -> HttpConnectionManager {
    HttpConnectionManager {
        stat_prefix: stat_prefix.to_owned(),
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: route_config_name.to_owned(),
        })),
        http_filters,
        ..HttpConnectionManager::default()
    }
}
