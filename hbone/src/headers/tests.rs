//! Table tests for the header parsers, plus the stable-toolchain stand-in for the fuzz
//! targets: every parser runs over a seed corpus and a bounded number of pseudo-random
//! mutations of it, and must never panic.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use super::*;

#[test]
fn authority_table() {
    let addr = |s: &str| Ok(Authority::Addr(s.parse::<SocketAddr>().unwrap()));
    let host = |h: &str, port| {
        Ok(Authority::Host {
            host: h.into(),
            port,
        })
    };
    let cases: &[(&str, Result<Authority, ()>)] = &[
        (
            "10.0.0.1:8080",
            addr("10.0.0.1:8080").map_err(|_: HeaderError| ()),
        ),
        (
            "[fd00::1]:80",
            addr("[fd00::1]:80").map_err(|_: HeaderError| ()),
        ),
        (
            "reviews.default.svc.cluster.local:9080",
            host("reviews.default.svc.cluster.local", 9080).map_err(|_: HeaderError| ()),
        ),
        (
            "Reviews.Default:80",
            host("reviews.default", 80).map_err(|_: HeaderError| ()),
        ),
        ("", Err(())),
        ("10.0.0.1", Err(())),
        ("10.0.0.1:", Err(())),
        ("10.0.0.1:0", Err(())),
        ("10.0.0.1:65536", Err(())),
        ("10.0.0.1:+80", Err(())),
        ("10.0.0.256:80", Err(())),
        ("10.0.0:80", Err(())),
        ("fd00::1:80", Err(())),
        ("[fd00::1]", Err(())),
        ("[10.0.0.1]:80", Err(())),
        ("user@host:80", Err(())),
        ("host/path:80", Err(())),
        ("-bad.example:80", Err(())),
        ("a..b:80", Err(())),
        ("host:80 ", Err(())),
        ("ho st:80", Err(())),
        ("host\0:80", Err(())),
    ];
    for (input, want) in cases {
        assert_eq!(parse_authority(input).map_err(|_| ()), *want, "{input:?}");
    }
    let long = format!("{}.example:80", "a".repeat(300));
    assert!(parse_authority(&long).is_err());
}

#[test]
fn forwarded_round_trip_and_table() {
    let client: SocketAddr = "10.1.2.3:45678".parse().unwrap();
    let v = format_forwarded(client, Some("reviews.default.svc.cluster.local"));
    assert_eq!(
        v,
        "for=\"10.1.2.3:45678\";host=reviews.default.svc.cluster.local"
    );
    let parsed = parse_forwarded(&v).unwrap();
    assert_eq!(parsed.len(), 1);
    assert_eq!(parsed[0].for_addr(), Some(client));
    assert_eq!(
        parsed[0].host.as_deref(),
        Some("reviews.default.svc.cluster.local")
    );
    let v6 = format_forwarded("[fd00::1]:80".parse().unwrap(), None);
    assert_eq!(
        parse_forwarded(&v6).unwrap()[0].for_addr(),
        Some("[fd00::1]:80".parse().unwrap())
    );
    let multi = parse_forwarded("for=1.2.3.4;proto=https, for=\"a\\\"b\";by=x").unwrap();
    assert_eq!(multi[1].for_.as_deref(), Some("a\"b"));
    for bad in [
        "for=\"unterminated",
        "for",
        "=x",
        "for=a b",
        "f r=1",
        "for=\"x\"y\"",
        "for=\"\\",
    ] {
        assert!(parse_forwarded(bad).is_err(), "{bad:?}");
    }
    assert!(parse_forwarded(&"for=a,".repeat(20)).is_err());
}

#[test]
fn baggage_round_trip_and_table() {
    let b = Baggage {
        cluster_id: "Kubernetes".into(),
        namespace: "default".into(),
        workload_type: "deployment".into(),
        workload_name: "productpage-v1".into(),
        service_name: "productpage".into(),
        service_version: "v1".into(),
        region: String::new(),
        zone: String::new(),
    };
    let v = b.to_header();
    assert_eq!(
        v,
        "k8s.cluster.name=Kubernetes,k8s.namespace.name=default,k8s.deployment.name=productpage-v1,service.name=productpage,service.version=v1"
    );
    assert_eq!(parse_baggage(&v).unwrap(), b);
    assert_eq!(Baggage::default().to_header(), "");
    let with_props = parse_baggage(" k8s.pod.name = p ;prop=1 , other=x,,").unwrap();
    assert_eq!(
        (
            with_props.workload_type.as_str(),
            with_props.workload_name.as_str()
        ),
        ("pod", "p")
    );
    for bad in ["novalue", "k=v v", "k=\"q\"", "=v", "k\0=v"] {
        assert!(parse_baggage(bad).is_err(), "{bad:?}");
    }
    assert!(parse_baggage(&"a=b,".repeat(100)).is_err());
}

#[test]
fn traceparent_round_trip_and_table() {
    let t = TraceParent::random();
    let s = t.to_string();
    assert_eq!(s.len(), 55);
    assert_eq!(parse_traceparent(&s).unwrap(), t);
    let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    assert!(parse_traceparent(good).is_ok());
    for bad in [
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "",
    ] {
        assert!(parse_traceparent(bad).is_err(), "{bad:?}");
    }
}

/// Seed corpus shared in spirit with `fuzz/`: one valid and a few edge inputs per parser.
pub(crate) const SEEDS: &[&str] = &[
    "10.0.0.1:8080",
    "[fd00::1]:80",
    "reviews.default.svc.cluster.local:9080",
    "for=\"10.1.2.3:45678\";host=reviews.default.svc.cluster.local",
    "for=1.2.3.4;proto=https, for=\"a\\\"b\";by=x",
    "k8s.cluster.name=Kubernetes,k8s.namespace.name=default,k8s.deployment.name=p,service.name=p,service.version=v1",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "",
    "[",
    "\"",
    "\\",
    ":",
];

/// xorshift64*: deterministic, no dependency, good enough to shake parsers.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % (n.max(1) as u64)).unwrap_or(0)
    }
}

const INTERESTING: &[u8] = b"[]:;,=\"\\.- \t\0\xff0123456789abcdefABCDEF%@/";

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..=rng.below(6) {
        match rng.below(5) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            1 => {
                let i = rng.below(v.len() + 1);
                v.insert(i, INTERESTING[rng.below(INTERESTING.len())]);
            }
            2 if !v.is_empty() => {
                let i = rng.below(v.len());
                v.truncate(i);
            }
            3 => {
                let n = rng.below(64);
                v.extend((0..n).map(|_| (rng.next() & 0xff) as u8));
            }
            _ => {
                let copy = v.clone();
                v.extend_from_slice(&copy[..copy.len().min(512)]);
            }
        }
    }
    v
}

/// Runs every parser on `input`; the call itself is the assertion (no panic).
pub(crate) fn exercise_all(input: &[u8]) {
    let s = String::from_utf8_lossy(input);
    let _ = parse_authority(&s);
    let _ = parse_forwarded(&s);
    let _ = parse_baggage(&s);
    let _ = parse_traceparent(&s);
    if let Ok(a) = parse_authority(&s) {
        assert_eq!(
            parse_authority(&a.to_string()),
            Ok(a),
            "authority must round-trip"
        );
    }
}

#[test]
fn parsers_survive_seed_corpus_and_random_mutations() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for seed in SEEDS {
        exercise_all(seed.as_bytes());
    }
    for _ in 0..20_000 {
        let seed = SEEDS[rng.below(SEEDS.len())].as_bytes();
        exercise_all(&mutate(&mut rng, seed));
    }
    let huge = "a=b,".repeat(10_000);
    exercise_all(huge.as_bytes());
}
