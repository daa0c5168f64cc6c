//! The waypoint's typed configuration: what the Envoy xDS resources it is sent (listeners,
//! route configurations, clusters, cluster load assignments) mean to it, validated once at the
//! xDS boundary (`from_proto`) so the data path never touches a proto.
//!
//! Pure decisions over these types live beside them: route selection (`select`), actions
//! (`action`: rewrites, redirects, header changes, hashing), RBAC (`rbac`) and load balancing
//! (`lb`). None of them does I/O.

pub mod action;
pub mod from_proto;
pub mod hash;
pub mod lb;
pub mod outlier;
pub mod rate_limit;
pub mod rbac;
pub mod select;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method, StatusCode};

/// Everything the waypoint holds, as one immutable snapshot (swapped whole on every change).
#[derive(Debug, Default, Clone)]
pub struct Config {
    /// By listener name (`0.0.0.0_<port>`).
    pub listeners: BTreeMap<String, Arc<Listener>>,
    /// By route configuration name (`"<port>"`).
    pub routes: BTreeMap<String, Arc<RouteTable>>,
    /// By cluster name (`outbound|<port>||<host>`).
    pub clusters: BTreeMap<String, Arc<Cluster>>,
    /// By cluster name (the assignment's `cluster_name`).
    pub endpoints: BTreeMap<String, Arc<Vec<Endpoint>>>,
}

/// One socket listener: the port it serves and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    pub name: String,
    /// Bind address from the listener (used only when serving plain sockets).
    pub address: SocketAddr,
    pub kind: ListenerKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ListenerKind {
    /// HTTP connection manager: route configuration by name (RDS) and the HTTP filters that
    /// precede the router, in order.
    Http {
        stat_prefix: String,
        route_config: String,
        filters: Vec<HttpFilter>,
    },
    /// TCP proxy to one cluster.
    Tcp {
        stat_prefix: String,
        cluster: String,
    },
}

/// An HTTP filter the waypoint understands (unknown filters are a conversion error unless the
/// listener marks them optional, in which case they are dropped). Each is named; a virtual host
/// or route replaces a filter's config by that name ([`FilterOverride`]).
#[derive(Debug, Clone, PartialEq)]
pub enum HttpFilter {
    /// `envoy.filters.http.rbac`, named (e.g. `istio.rbac.deny`).
    Rbac {
        name: String,
        rbac: rbac::RbacFilter,
    },
    /// `envoy.filters.http.fault` (`HTTPFault`). `None`: an empty config (no delay, no abort),
    /// the usual form, where routes carry the faults.
    Fault {
        name: String,
        fault: Option<Arc<Fault>>,
    },
    /// `envoy.filters.http.local_ratelimit` (`LocalRateLimit`). Without a token bucket it lets
    /// everything through (routes or virtual hosts carry the limits).
    LocalRateLimit {
        name: String,
        limit: Arc<rate_limit::RateLimit>,
    },
}

impl HttpFilter {
    pub fn name(&self) -> &str {
        match self {
            HttpFilter::Rbac { name, .. }
            | HttpFilter::Fault { name, .. }
            | HttpFilter::LocalRateLimit { name, .. } => name,
        }
    }
}

/// A virtual host's or route's `typed_per_filter_config` entry for one named filter.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterOverride {
    /// `RBACPerRoute` (without `rbac`: [`rbac::RbacFilter::disabled`]).
    Rbac(rbac::RbacFilter),
    /// `HTTPFault`.
    Fault(Arc<Fault>),
    /// `LocalRateLimit`.
    RateLimit(Arc<rate_limit::RateLimit>),
    /// `FilterConfig { disabled: true }`: the filter does nothing here.
    Disabled,
}

/// Fault injection (Envoy's `HTTPFault`): a fixed delay and/or an abort, each for a share of
/// requests, drawn independently; the delay comes first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Fault {
    pub delay: Option<FaultDelay>,
    pub abort: Option<FaultAbort>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultDelay {
    pub fixed: Duration,
    pub share: Share,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultAbort {
    pub status: AbortStatus,
    pub share: Share,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AbortStatus {
    /// `http_status` (200–599).
    Http(StatusCode),
    /// `grpc_status`.
    Grpc(u32),
}

/// A share of requests, in parts per million (Envoy's `FractionalPercent`, any denominator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    pub per_million: u32,
}

impl Share {
    pub const ALL: Share = Share {
        per_million: 1_000_000,
    };
    pub const NONE: Share = Share { per_million: 0 };

    /// Whether a uniform draw in `0..1_000_000` falls in the share.
    pub fn hit(self, draw: u32) -> bool {
        draw < self.per_million
    }
}

/// A route configuration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RouteTable {
    pub name: String,
    pub virtual_hosts: Vec<VirtualHost>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct VirtualHost {
    pub name: String,
    /// Lower-case; `*` wildcard forms allowed as in Envoy (`*`, `*.suffix`, `prefix*`).
    pub domains: Vec<String>,
    pub routes: Vec<Route>,
    /// Per-filter configs by filter name (the route configuration's, then the host's own).
    pub overrides: BTreeMap<String, FilterOverride>,
    pub request_headers: HeaderChanges,
    pub response_headers: HeaderChanges,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub name: String,
    pub matcher: RouteMatch,
    pub action: RouteAction,
    pub request_headers: HeaderChanges,
    pub response_headers: HeaderChanges,
    /// Per-filter configs by filter name.
    pub overrides: BTreeMap<String, FilterOverride>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PathMatch {
    /// Any path (`prefix: "/"` or `prefix: ""`).
    Any,
    Prefix(String),
    /// Prefix on `/`-separated segments (`path_separated_prefix`).
    SegmentPrefix(String),
    Exact(String),
    /// Whole-path regex (anchored).
    Regex(Regex),
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouteMatch {
    pub path: PathMatch,
    /// `case_sensitive` (default true) for prefix/exact.
    pub case_sensitive: bool,
    /// All must hold. `:method`, `:authority`, `:path`, `:scheme` are pseudo-headers.
    pub headers: Vec<HeaderMatch>,
    /// All must hold.
    pub query: Vec<QueryMatch>,
    /// gRPC only (`grpc: {}`): `content-type` starts with `application/grpc`.
    pub grpc: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HeaderMatch {
    pub name: String,
    pub value: StringMatch,
    pub invert: bool,
    /// `treat_missing_header_as_empty`.
    pub missing_as_empty: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QueryMatch {
    pub name: String,
    /// `None` = present.
    pub value: Option<StringMatch>,
}

/// Envoy's `StringMatcher` (and the header-matcher forms that map onto it).
#[derive(Debug, Clone, PartialEq)]
pub enum StringMatch {
    Exact { value: String, ignore_case: bool },
    Prefix { value: String, ignore_case: bool },
    Suffix { value: String, ignore_case: bool },
    Contains { value: String, ignore_case: bool },
    Regex(Regex),
    Present,
}

/// A compiled, anchored regular expression compared by its source text. (In [`RegexRewrite`]
/// the pattern is compiled unanchored, as substitution applies to every match.)
#[derive(Debug, Clone)]
pub struct Regex {
    pub source: String,
    pub compiled: regex::Regex,
}

impl PartialEq for Regex {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum RouteAction {
    Forward(Forward),
    Redirect(Redirect),
    Direct {
        status: StatusCode,
        body: bytes::Bytes,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Forward {
    /// One or more clusters with weights (a single cluster has weight 1).
    pub clusters: Vec<WeightedCluster>,
    pub prefix_rewrite: Option<String>,
    pub regex_rewrite: Option<RegexRewrite>,
    pub host_rewrite: Option<String>,
    /// `None` = no timeout (Envoy's `0s`); Envoy's default when unset is 15 s.
    pub timeout: Option<Duration>,
    pub retry: Option<RetryPolicy>,
    pub hash_policy: Vec<HashPolicy>,
    pub mirrors: Vec<Mirror>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WeightedCluster {
    pub name: String,
    pub weight: u32,
    pub request_headers: HeaderChanges,
    pub response_headers: HeaderChanges,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RegexRewrite {
    pub pattern: Regex,
    pub substitution: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// `5xx`, `gateway-error`, `reset`, `connect-failure`, `retriable-status-codes`, … parsed.
    pub on: RetryOn,
    pub num_retries: u32,
    pub per_try_timeout: Option<Duration>,
    pub retriable_status_codes: Vec<u16>,
    /// Base and max back-off (Envoy: 25 ms and 10 × base).
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryOn {
    pub server_error: bool,
    pub gateway_error: bool,
    pub reset: bool,
    pub connect_failure: bool,
    pub retriable_status_codes: bool,
    pub refused_stream: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum HashPolicy {
    Header {
        name: String,
        terminal: bool,
    },
    Cookie {
        name: String,
        ttl: Option<Duration>,
        path: Option<String>,
        terminal: bool,
    },
    SourceIp {
        terminal: bool,
    },
    QueryParameter {
        name: String,
        terminal: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Mirror {
    pub cluster: String,
    /// Share of requests mirrored; all when unset.
    pub share: Share,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Redirect {
    pub scheme: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub path: Option<String>,
    pub prefix_rewrite: Option<String>,
    pub regex_rewrite: Option<RegexRewrite>,
    pub strip_query: bool,
    /// 301, 302 (default), 303, 307, 308.
    pub status: StatusCode,
}

/// Header additions and removals, applied in Envoy's order: remove, then add/append.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HeaderChanges {
    pub remove: Vec<HeaderName>,
    /// `(name, value, append)`: `append = false` overwrites.
    pub add: Vec<(HeaderName, HeaderValue, bool)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    pub name: String,
    pub lb: LbPolicy,
    pub connect_timeout: Duration,
    pub circuit_breakers: CircuitBreakers,
    pub outlier: Option<OutlierDetection>,
    /// HTTP/2 to upstreams (`typed_extension_protocol_options` explicit http2, or
    /// `http2_protocol_options`).
    pub http2: bool,
    /// `common_lb_config.healthy_panic_threshold` in percent (Envoy's default 50): below this
    /// share of healthy (and not ejected) endpoints, traffic goes to all of them; 0 never panics.
    pub panic_threshold: u32,
    /// `common_http_protocol_options.max_requests_per_connection`: an upstream connection is
    /// retired after this many requests.
    pub max_requests_per_connection: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LbPolicy {
    RoundRobin,
    LeastRequest { choice_count: u32 },
    Random,
    RingHash { minimum_ring_size: u64 },
    Maglev { table_size: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CircuitBreakers {
    pub max_connections: u32,
    pub max_pending_requests: u32,
    pub max_requests: u32,
    pub max_retries: u32,
}

impl Default for CircuitBreakers {
    /// Envoy's defaults (1024 each, 3 retries).
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_pending_requests: 1024,
            max_requests: 1024,
            max_retries: 3,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutlierDetection {
    pub consecutive_5xx: u32,
    pub consecutive_gateway_failure: Option<u32>,
    pub interval: Duration,
    pub base_ejection_time: Duration,
    /// Cap on `base_ejection_time × ejections` (Envoy's default 300 s, never below the base).
    pub max_ejection_time: Duration,
    pub max_ejection_percent: u32,
    /// `always_eject_one_host`: one host may be ejected even past `max_ejection_percent`.
    pub always_eject_one_host: bool,
}

/// One endpoint of a cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// `podIP:targetPort`.
    pub address: SocketAddr,
    pub weight: u32,
    pub healthy: bool,
    /// From metadata `istio.workload` (the workload uid), if any.
    pub workload: Option<String>,
    /// From metadata `istio.tunnel == "hbone"`: reach it over HBONE at `ip:15008`.
    pub hbone: bool,
    /// From metadata `istio.identity` (SPIFFE URI): the identity its tunnel must present.
    pub identity: Option<hbone::Identity>,
    /// Locality priority (0 = highest).
    pub priority: u32,
}

/// What the pure decisions read of a request.
#[derive(Debug, Clone)]
pub struct RequestView<'a> {
    pub method: &'a Method,
    /// `:path` including the query.
    pub path_and_query: &'a str,
    /// `:authority` / Host.
    pub authority: &'a str,
    pub headers: &'a http::HeaderMap,
}

/// What the pure decisions read of the connection.
#[derive(Debug, Clone)]
pub struct ConnectionView<'a> {
    /// The client's SPIFFE identity (from the HBONE peer certificate); `None` over plain HTTP.
    pub peer_identity: Option<&'a hbone::Identity>,
    /// The downstream peer address (the client pod IP from the tunnel, or the TCP peer).
    pub remote_ip: IpAddr,
    /// The original destination (the CONNECT authority; or the socket's local address).
    pub destination: SocketAddr,
}
