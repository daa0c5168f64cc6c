//! Services: each node translates a Service address to one of its endpoints, as kube-proxy does, with one
//! nftables table per node that is replaced atomically on every change.
//!
//! `render` is the pure part (table-tested); `apply` loads a rendered table into a node's namespace.
//! Hairpin traffic (a pod reaching itself through its Service) is masqueraded so the reply comes back through the
//! node; everything else keeps the client's address.

use std::fmt::Write;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::manifest::Protocol;

pub const TABLE: &str = "meshctl_services";
/// The mark that asks for masquerade; far from the mesh's 0x539/0xfff and 0x111 marks.
const MASQ_MARK: &str = "0x00004000";

/// One Service port and where it leads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRule {
    /// `namespace/name:port`, for the comment.
    pub name: String,
    pub vip: Ipv4Addr,
    pub port: u16,
    pub protocol: Protocol,
    pub endpoints: Vec<(Ipv4Addr, u16)>,
}

/// The whole table as an `nft -f` script that replaces the previous table in one transaction.
pub fn render(rules: &[ServiceRule]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "table ip {TABLE}\ndelete table ip {TABLE}\ntable ip {TABLE} {{"
    );
    for (hook, prio) in [("prerouting", "dstnat"), ("output", "-100")] {
        let _ = writeln!(
            s,
            "  chain {hook} {{\n    type nat hook {hook} priority {prio}; policy accept;\n    jump services\n  }}"
        );
    }
    let _ = writeln!(
        s,
        "  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n    meta mark & {MASQ_MARK} == {MASQ_MARK} masquerade\n  }}"
    );
    let _ = writeln!(s, "  chain services {{");
    for (i, r) in rules
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.endpoints.is_empty())
    {
        let l4 = if r.protocol == Protocol::Udp {
            "udp"
        } else {
            "tcp"
        };
        let _ = writeln!(
            s,
            "    ip daddr {} {l4} dport {} jump svc{i} comment \"{}\"",
            r.vip, r.port, r.name
        );
    }
    let _ = writeln!(s, "  }}");
    for (i, r) in rules
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.endpoints.is_empty())
    {
        let n = r.endpoints.len();
        let map: Vec<String> = (0..n).map(|j| format!("{j} : jump svc{i}_ep{j}")).collect();
        let _ = writeln!(
            s,
            "  chain svc{i} {{\n    numgen random mod {n} vmap {{ {} }}\n  }}",
            map.join(", ")
        );
        let l4 = if r.protocol == Protocol::Udp {
            "udp"
        } else {
            "tcp"
        };
        for (j, (ip, port)) in r.endpoints.iter().enumerate() {
            let _ = writeln!(
                s,
                "  chain svc{i}_ep{j} {{\n    ip saddr {ip} meta mark set meta mark | {MASQ_MARK}\n    meta l4proto {l4} dnat to {ip}:{port}\n  }}"
            );
        }
    }
    s.push_str("}\n");
    s
}

/// Loads a rendered table into a node.
pub fn apply(node_netns: &str, script: &str) -> Result<(), Error> {
    crate::cmd::run("nft", &["-f", "-"], Some(node_netns), Some(script)).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(eps: &[(&str, u16)]) -> ServiceRule {
        ServiceRule {
            name: "demo/backend:80".into(),
            vip: Ipv4Addr::new(10, 96, 0, 10),
            port: 80,
            protocol: Protocol::Tcp,
            endpoints: eps
                .iter()
                .map(|(ip, p)| (ip.parse().unwrap_or(Ipv4Addr::UNSPECIFIED), *p))
                .collect(),
        }
    }

    #[test]
    fn spreads_over_endpoints_and_marks_hairpin() {
        let s = render(&[rule(&[("10.244.0.2", 8080), ("10.244.1.2", 8080)])]);
        assert!(s.starts_with("table ip meshctl_services\ndelete table ip meshctl_services\n"));
        assert!(s.contains("ip daddr 10.96.0.10 tcp dport 80 jump svc0"));
        assert!(s.contains("numgen random mod 2 vmap { 0 : jump svc0_ep0, 1 : jump svc0_ep1 }"));
        assert!(s.contains("ip saddr 10.244.1.2 meta mark set meta mark | 0x00004000\n    meta l4proto tcp dnat to 10.244.1.2:8080"));
        assert!(s.contains("masquerade"));
    }

    #[test]
    fn service_without_endpoints_gets_no_translation() {
        let s = render(&[rule(&[])]);
        assert!(!s.contains("10.96.0.10"));
        assert!(!s.contains("svc0"));
    }

    #[test]
    fn udp_ports_match_udp() {
        let mut r = rule(&[("10.244.0.2", 53)]);
        r.protocol = Protocol::Udp;
        assert!(render(&[r]).contains("udp dport 80 jump svc0"));
    }
}
