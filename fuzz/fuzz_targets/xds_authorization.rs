//! `istio.security.Authorization` → `ztunnel::model::Authorization` (the xDS boundary), then
//! the converted policy evaluated alone (`ztunnel::authz::evaluate`) against a few fixed
//! connections. Never panics, and the verdict keeps the policy's shape: a dry-run policy never
//! decides, a DENY policy can only deny by its own name, an ALLOW policy can only deny for want
//! of a match.
#![no_main]

use std::net::IpAddr;

use hbone::Identity;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use ztunnel::authz::{ConnectionInfo, Verdict, evaluate};
use ztunnel::model::{Authorization, PolicyAction};

fn connections() -> Vec<ConnectionInfo> {
    let ip = |s: &str| s.parse::<IpAddr>().expect("literal address");
    let id = |ns: &str, sa: &str| Identity::new("cluster.local", ns, sa).ok();
    vec![
        ConnectionInfo {
            src_ip: ip("10.0.0.1"),
            src_identity: id("default", "sleep"),
            dst_ip: ip("10.0.0.2"),
            dst_port: 8080,
        },
        ConnectionInfo {
            src_ip: ip("192.168.1.7"),
            src_identity: None,
            dst_ip: ip("10.0.0.2"),
            dst_port: 80,
        },
        ConnectionInfo {
            src_ip: ip("fd00::1"),
            src_identity: id("istio-system", "default"),
            dst_ip: ip("fd00::2"),
            dst_port: 0,
        },
    ]
}

fuzz_target!(|data: &[u8]| {
    let Ok(p) = proto::istio::security::Authorization::decode(data) else {
        return;
    };
    let Ok(p) = Authorization::try_from(p) else {
        return;
    };
    let _ = p.to_string();
    for conn in connections() {
        let verdict = evaluate([&p], &conn);
        match (&verdict, p.dry_run, p.action) {
            (Verdict::Allow, _, _) => {}
            (Verdict::Deny { .. }, true, _) => panic!("dry-run policy {p} decided {verdict}"),
            (Verdict::Deny { policy: Some(k) }, false, PolicyAction::Deny) => {
                assert_eq!(*k, p.key())
            }
            (Verdict::Deny { policy: None }, false, PolicyAction::Allow) => {}
            _ => panic!("{:?} policy {p} gave {verdict:?}", p.action),
        }
    }
});
