#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use super::*;
use crate::model::hash::xxh64;
use crate::model::{
    ConnectionView, Forward, HashPolicy, PathMatch, Redirect, Regex, RegexRewrite, RequestView,
    RetryOn, RetryPolicy, RouteMatch,
};

fn matching(path: PathMatch) -> RouteMatch {
    RouteMatch {
        path,
        case_sensitive: true,
        headers: vec![],
        query: vec![],
        grpc: false,
    }
}

fn regex_rewrite(pattern: &str, substitution: &str) -> RegexRewrite {
    RegexRewrite {
        pattern: Regex {
            source: pattern.into(),
            compiled: regex::Regex::new(pattern).unwrap(),
        },
        substitution: substitution.into(),
    }
}

fn forward(prefix: Option<&str>, regex: Option<RegexRewrite>) -> Forward {
    Forward {
        clusters: vec![],
        prefix_rewrite: prefix.map(String::from),
        regex_rewrite: regex,
        host_rewrite: None,
        timeout: None,
        retry: None,
        hash_policy: vec![],
        mirrors: vec![],
    }
}

fn anchored(s: &str) -> Regex {
    Regex {
        source: s.into(),
        compiled: regex::Regex::new(&format!("^(?:{s})$")).unwrap(),
    }
}

#[test]
fn path_rewrites() {
    let cases: Vec<(Forward, PathMatch, &str, Option<&str>)> = vec![
        (forward(None, None), PathMatch::Any, "/a", None),
        (
            forward(Some("/v2"), None),
            PathMatch::Prefix("/v1".into()),
            "/v1/users?id=1",
            Some("/v2/users?id=1"),
        ),
        (
            forward(Some("/"), None),
            PathMatch::SegmentPrefix("/api".into()),
            "/api/x",
            Some("//x"),
        ),
        (
            forward(Some("/new/"), None),
            PathMatch::Any,
            "/x?y",
            Some("/new/x?y"),
        ),
        (
            forward(Some("/v2/"), None),
            PathMatch::Prefix(String::new()),
            "/x",
            Some("/v2//x"),
        ),
        (
            forward(Some("/whole"), None),
            PathMatch::Exact("/a/b".into()),
            "/a/b?q",
            Some("/whole?q"),
        ),
        (
            forward(Some("/whole"), None),
            PathMatch::Regex(anchored("/r/.*")),
            "/r/1",
            Some("/whole"),
        ),
        // What the control plane emits for ReplaceFullPath and prefix-to-root.
        (
            forward(None, Some(regex_rewrite("^.*$", "/full"))),
            PathMatch::Prefix("/a".into()),
            "/a/b?keep=1",
            Some("/full?keep=1"),
        ),
        (
            forward(None, Some(regex_rewrite("^/api/*", "/"))),
            PathMatch::SegmentPrefix("/api".into()),
            "/api/v1",
            Some("/v1"),
        ),
        (
            forward(None, Some(regex_rewrite("o", "0"))),
            PathMatch::Any,
            "/foo/boo?o=o",
            Some("/f00/b00?o=o"),
        ),
        (
            forward(None, Some(regex_rewrite("^/(\\w+)/(\\w+)$", "/${2}/${1}"))),
            PathMatch::Any,
            "/a/b",
            Some("/b/a"),
        ),
        (
            forward(None, Some(regex_rewrite(".*", "X"))),
            PathMatch::Any,
            "/abc",
            Some("X"),
        ),
    ];
    for (f, path, pq, want) in cases {
        assert_eq!(
            rewrite_path(&f, &matching(path.clone()), pq).as_deref(),
            want,
            "{path:?} {pq}"
        );
    }
}

fn redirect() -> Redirect {
    Redirect {
        scheme: None,
        host: None,
        port: None,
        path: None,
        prefix_rewrite: None,
        regex_rewrite: None,
        strip_query: false,
        status: StatusCode::MOVED_PERMANENTLY,
    }
}

#[test]
fn redirect_locations() {
    let any = matching(PathMatch::Any);
    let prefix = matching(PathMatch::Prefix("/old".into()));
    let cases: Vec<(Redirect, &RouteMatch, &str, &str, &str)> = vec![
        (
            redirect(),
            &any,
            "a.example:8080",
            "/p?q",
            "http://a.example:8080/p?q",
        ),
        (
            Redirect {
                scheme: Some("https".into()),
                ..redirect()
            },
            &any,
            "a.example:80",
            "/p",
            "https://a.example/p",
        ),
        (
            Redirect {
                scheme: Some("https".into()),
                ..redirect()
            },
            &any,
            "a.example:8080",
            "/p",
            "https://a.example:8080/p",
        ),
        (
            Redirect {
                port: Some(9443),
                ..redirect()
            },
            &any,
            "a.example:8080",
            "/p",
            "http://a.example:9443/p",
        ),
        (
            Redirect {
                port: Some(9443),
                ..redirect()
            },
            &any,
            "[fd00::1]:8080",
            "/p",
            "http://[fd00::1]:9443/p",
        ),
        (
            Redirect {
                host: Some("b.example".into()),
                ..redirect()
            },
            &any,
            "a.example:8080",
            "/p",
            "http://b.example/p",
        ),
        (
            Redirect {
                host: Some("b.example".into()),
                port: Some(81),
                ..redirect()
            },
            &any,
            "a.example",
            "/p",
            "http://b.example:81/p",
        ),
        (
            Redirect {
                path: Some("/new".into()),
                ..redirect()
            },
            &any,
            "a",
            "/p?q=1",
            "http://a/new?q=1",
        ),
        (
            Redirect {
                path: Some("/new?x=2".into()),
                strip_query: true,
                ..redirect()
            },
            &any,
            "a",
            "/p?q=1",
            "http://a/new?x=2",
        ),
        (
            Redirect {
                path: Some("new".into()),
                strip_query: true,
                ..redirect()
            },
            &any,
            "a",
            "/p?q=1",
            "http://a/new",
        ),
        (
            Redirect {
                prefix_rewrite: Some("/new".into()),
                ..redirect()
            },
            &prefix,
            "a",
            "/old/x?q",
            "http://a/new/x?q",
        ),
        (
            Redirect {
                regex_rewrite: Some(regex_rewrite("^/old", "/v2")),
                strip_query: true,
                ..redirect()
            },
            &prefix,
            "a",
            "/old/x?q",
            "http://a/v2/x",
        ),
    ];
    for (r, m, authority, pq, want) in cases {
        assert_eq!(
            redirect_location(&r, m, "http", authority, pq),
            want,
            "{r:?}"
        );
    }
    let https = Redirect {
        scheme: Some("http".into()),
        ..redirect()
    };
    assert_eq!(
        redirect_location(&https, &any, "https", "a:443", "/"),
        "http://a/"
    );
}

#[test]
fn header_changes() {
    let mut h = HeaderMap::new();
    h.append("x-keep", HeaderValue::from_static("1"));
    h.append("x-gone", HeaderValue::from_static("1"));
    h.append("x-set", HeaderValue::from_static("old"));
    h.append("x-set", HeaderValue::from_static("older"));
    let changes = crate::model::HeaderChanges {
        remove: vec![
            HeaderName::from_static("x-gone"),
            HeaderName::from_static("x-add"),
        ],
        add: vec![
            (
                HeaderName::from_static("x-set"),
                HeaderValue::from_static("new"),
                false,
            ),
            (
                HeaderName::from_static("x-keep"),
                HeaderValue::from_static("2"),
                true,
            ),
            (
                HeaderName::from_static("x-add"),
                HeaderValue::from_static("a"),
                true,
            ),
        ],
    };
    h.append("x-add", HeaderValue::from_static("pre"));
    apply_headers(&changes, &mut h);
    let all = |n: &str| -> Vec<&str> { h.get_all(n).iter().map(|v| v.to_str().unwrap()).collect() };
    assert_eq!(all("x-set"), ["new"]);
    assert_eq!(all("x-keep"), ["1", "2"]);
    assert_eq!(all("x-add"), ["a"], "removal comes before additions");
    assert!(all("x-gone").is_empty());
}

struct Req {
    headers: HeaderMap,
    path: &'static str,
    authority: &'static str,
    method: Method,
}

fn req(path: &'static str, headers: &[(&'static str, &'static str)]) -> Req {
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.append(*k, HeaderValue::from_static(v));
    }
    Req {
        headers: h,
        path,
        authority: "reviews:8080",
        method: Method::GET,
    }
}

impl Req {
    fn view(&self) -> RequestView<'_> {
        RequestView {
            method: &self.method,
            path_and_query: self.path,
            authority: self.authority,
            headers: &self.headers,
        }
    }
}

fn conn(ip: &str) -> (IpAddr, ConnectionView<'static>) {
    let ip: IpAddr = ip.parse().unwrap();
    (
        ip,
        ConnectionView {
            peer_identity: None,
            remote_ip: ip,
            destination: "10.96.0.10:8080".parse().unwrap(),
        },
    )
}

fn h(v: &str) -> u64 {
    xxh64(v.as_bytes(), 0)
}

#[test]
fn hash_keys() {
    let header = |name: &str, terminal| HashPolicy::Header {
        name: name.into(),
        terminal,
    };
    let (_, c) = conn("10.0.0.1");
    let r = req(
        "/p?user=bob",
        &[("x-user", "alice"), ("cookie", "a=1; session=\"s1\"")],
    );
    let hash = |p: &[HashPolicy]| hash_key(p, &r.view(), &c).map(|o| o.hash);
    assert_eq!(hash(&[header("x-user", false)]), Some(h("alice")));
    assert_eq!(hash(&[header("x-missing", false)]), None);
    assert_eq!(hash(&[]), None);
    assert_eq!(
        hash(&[header("x-user", false), header(":authority", false)]),
        Some(h("alice").rotate_left(1) ^ h("reviews:8080"))
    );
    assert_eq!(
        hash(&[header("x-user", true), header(":authority", false)]),
        Some(h("alice")),
        "terminal stops once a hash exists"
    );
    assert_eq!(
        hash(&[header("x-missing", true), header(":authority", false)]),
        Some(h("reviews:8080")),
        "terminal without a hash does not stop"
    );
    assert_eq!(
        hash(&[HashPolicy::SourceIp { terminal: false }]),
        Some(h("10.0.0.1"))
    );
    assert_eq!(
        hash(&[HashPolicy::QueryParameter {
            name: "user".into(),
            terminal: false
        }]),
        Some(h("bob"))
    );
    let cookie = |ttl: Option<u64>| HashPolicy::Cookie {
        name: "session".into(),
        ttl: ttl.map(Duration::from_secs),
        path: Some("/".into()),
        terminal: false,
    };
    assert_eq!(hash(&[cookie(None)]), Some(h("s1")));

    // Multiple values hash the same in any order.
    let ab = req("/", &[("x-m", "a"), ("x-m", "b")]);
    let ba = req("/", &[("x-m", "b"), ("x-m", "a")]);
    let m = [header("x-m", false)];
    assert_eq!(
        hash_key(&m, &ab.view(), &c).unwrap().hash,
        hash_key(&m, &ba.view(), &c).unwrap().hash
    );
}

#[test]
fn generated_cookies() {
    let policy = |ttl: u64, path: Option<&str>| HashPolicy::Cookie {
        name: "session".into(),
        ttl: Some(Duration::from_secs(ttl)),
        path: path.map(String::from),
        terminal: false,
    };
    let (_, c1) = conn("10.0.0.1");
    let (_, c2) = conn("10.0.0.2");
    let r = req("/", &[]);
    let first = hash_key(&[policy(3600, Some("/"))], &r.view(), &c1).unwrap();
    let again = hash_key(&[policy(3600, Some("/"))], &r.view(), &c1).unwrap();
    let other = hash_key(&[policy(3600, Some("/"))], &r.view(), &c2).unwrap();
    assert_eq!(first, again, "deterministic");
    assert_ne!(first.hash, other.hash);
    let set = first.set_cookie.unwrap();
    let set = set.to_str().unwrap();
    assert!(set.starts_with("session=\""), "{set}");
    assert!(set.ends_with("\"; Max-Age=3600; Path=/; HttpOnly"), "{set}");
    // The client sends the cookie back: same hash, no new cookie.
    let value = set.split('"').nth(1).unwrap();
    let cookie = format!("session={value}");
    let mut back = req("/", &[]);
    back.headers.insert("cookie", cookie.parse().unwrap());
    let next = hash_key(&[policy(3600, Some("/"))], &back.view(), &c1).unwrap();
    assert_eq!((next.hash, next.set_cookie), (first.hash, None));

    let session = hash_key(&[policy(0, None)], &r.view(), &c1).unwrap();
    assert!(
        session
            .set_cookie
            .unwrap()
            .to_str()
            .unwrap()
            .ends_with("\"; HttpOnly")
    );
}

fn retry(on: RetryOn, codes: Vec<u16>) -> RetryPolicy {
    RetryPolicy {
        on,
        num_retries: 2,
        per_try_timeout: None,
        retriable_status_codes: codes,
        backoff_base: Duration::from_millis(25),
        backoff_max: Duration::from_millis(250),
    }
}

#[test]
fn retry_conditions() {
    use AttemptOutcome::*;
    let outcomes = [
        Status(500),
        Status(502),
        Status(503),
        Status(504),
        Status(404),
        Status(409),
        Reset,
        ConnectFailure,
        RefusedStream,
        Timeout,
    ];
    let cases: Vec<(RetryOn, Vec<u16>, [bool; 10])> = vec![
        (
            RetryOn {
                server_error: true,
                ..RetryOn::default()
            },
            vec![],
            [true, true, true, true, false, false, true, true, true, true],
        ),
        (
            RetryOn {
                gateway_error: true,
                ..RetryOn::default()
            },
            vec![],
            [
                false, true, true, true, false, false, true, true, true, true,
            ],
        ),
        (
            RetryOn {
                reset: true,
                ..RetryOn::default()
            },
            vec![],
            [
                false, false, false, false, false, false, true, true, true, true,
            ],
        ),
        (
            RetryOn {
                connect_failure: true,
                ..RetryOn::default()
            },
            vec![],
            [
                false, false, false, false, false, false, false, true, false, false,
            ],
        ),
        (
            RetryOn {
                refused_stream: true,
                ..RetryOn::default()
            },
            vec![],
            [
                false, false, false, false, false, false, false, false, true, false,
            ],
        ),
        (
            RetryOn {
                retriable_status_codes: true,
                ..RetryOn::default()
            },
            vec![409, 503],
            [
                false, false, true, false, false, true, false, false, false, false,
            ],
        ),
        (RetryOn::default(), vec![409, 503], [false; 10]),
    ];
    for (on, codes, want) in cases {
        let p = retry(on, codes);
        let got: Vec<bool> = outcomes.iter().map(|o| retriable(&p, o)).collect();
        assert_eq!(got, want, "{on:?}");
    }
}

#[test]
fn backoffs() {
    let p = retry(RetryOn::default(), vec![]);
    let cases = [
        (0, 0.0, 0),
        (0, 0.5, 12_500),
        (1, 0.5, 25_000),
        (2, 0.75, 75_000),
        (3, 0.5, 100_000),
        (4, 0.5, 125_000),
        (40, 0.5, 125_000),
        (0, f64::NAN, 0),
        (0, 7.0, 25_000),
    ];
    for (attempt, unit, micros) in cases {
        assert_eq!(
            backoff(&p, attempt, unit),
            Duration::from_micros(micros),
            "{attempt} {unit}"
        );
    }
}
