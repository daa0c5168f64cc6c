//! Rule-set rendering (pure): the in-pod redirect rules of spec §8 in native nftables, the in-pod policy routing
//! as an `ip -batch` script, and the node-side probe SNAT table. Applying them is [`crate::redirect`]'s job.
//!
//! Why native nftables rather than `iptables(-nft)`: one `nft -f -` run replaces all three tables in a single
//! kernel transaction (no half-applied state if the agent dies mid-way, no per-rule exec), removal is one atomic
//! `delete table`, the rules are readable back as JSON for checks, and the node already uses `nft -f` for the
//! service NAT; `iptables-nft` would produce the same kernel objects through a compatibility layer with
//! `xt` matches and no atomic multi-table replace.

use std::fmt::Write as _;
use std::net::IpAddr;

/// Tunnel socket mark (`PACKET_MARK`) and its mask.
pub const TUNNEL_MARK: u32 = 0x539;
/// Connection mark of spoofed (tunnel-originated) connections.
pub const CONN_MARK: u32 = 0x111;
/// Mask of both marks.
pub const MARK_MASK: u32 = 0xfff;
/// Policy routing table for spoofed replies.
pub const ROUTE_TABLE: u32 = 100;
/// Priority of the fwmark rule.
pub const RULE_PRIORITY: u32 = 32764;
/// Probe SNAT source (v4, v6).
pub const PROBE_SNAT_V4: &str = "169.254.7.127";
pub const PROBE_SNAT_V6: &str = "fd16:9254:7127:1337:ffff:ffff:ffff:ffff";
/// Tunnel ports inside the pod.
pub const PORT_OUTBOUND: u16 = 15001;
pub const PORT_INBOUND_PLAIN: u16 = 15006;
pub const PORT_INBOUND_HBONE: u16 = 15008;
pub const PORT_DNS: u16 = 15053;
/// The in-pod tables (all `inet`).
pub const TABLE_NAT: &str = "istio-ambient-nat";
pub const TABLE_MANGLE: &str = "istio-ambient-mangle";
pub const TABLE_RAW: &str = "istio-ambient-raw";
/// The node-side probe table and its sets.
pub const HOST_TABLE: &str = "istio-ambient-host";
pub const HOST_SET_V4: &str = "istio-inpod-probes-v4";
pub const HOST_SET_V6: &str = "istio-inpod-probes-v6";
/// The conntrack mark bit that tags node-local probe connections between the output and postrouting hooks.
pub const HOST_PROBE_CT_BIT: u32 = 0x0010_0000;

/// What varies per pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PodRuleOptions {
    /// DNS capture (UDP/TCP 53 → 15053 and the raw-table conntrack zones).
    pub dns_capture: bool,
    /// Render the IPv6 copy (the pod has an IPv6 address and IPv6 is enabled).
    pub ipv6: bool,
}

/// The `nft -f -` script that atomically replaces the in-pod tables (and removes the raw table when DNS capture
/// is off).
pub fn render_pod_nft(opts: PodRuleOptions) -> String {
    let mut s = String::new();
    for t in [TABLE_NAT, TABLE_MANGLE, TABLE_RAW] {
        let _ = writeln!(s, "add table inet {t}\ndelete table inet {t}");
    }
    let m = format!("meta mark & {MARK_MASK:#x}");
    let not_tunnel = format!("{m} != {TUNNEL_MARK:#x}");
    // mangle
    let mangle_pre = vec![format!(
        "{m} == {TUNNEL_MARK:#x} ct mark set ct mark & {:#010x} | {CONN_MARK:#x}",
        !MARK_MASK
    )];
    let mangle_out = vec![format!(
        "ct mark & {MARK_MASK:#x} == {CONN_MARK:#x} meta mark set ct mark"
    )];
    table(
        &mut s,
        TABLE_MANGLE,
        ("filter", "route"),
        -150,
        &mangle_pre,
        &mangle_out,
    );
    // nat
    let mut pre = Vec::new();
    let mut out = Vec::new();
    let mut families = vec![("ip", "127.0.0.1", PROBE_SNAT_V4)];
    if opts.ipv6 {
        families.push(("ip6", "::1", PROBE_SNAT_V6));
    }
    for (fam, lo, snat) in &families {
        pre.push(format!("meta l4proto tcp {fam} saddr {snat} accept"));
        pre.push(format!(
            "meta l4proto tcp {fam} daddr != {lo} tcp dport != {PORT_INBOUND_HBONE} {not_tunnel} redirect to :{PORT_INBOUND_PLAIN}"
        ));
    }
    for (fam, _, snat) in &families {
        out.push(format!("meta l4proto tcp {fam} daddr {snat} accept"));
    }
    if opts.dns_capture {
        out.push(format!(
            "meta l4proto udp udp dport 53 oifname != \"lo\" {not_tunnel} redirect to :{PORT_DNS}"
        ));
        for (fam, lo, _) in &families {
            out.push(format!(
                "meta l4proto tcp {fam} daddr != {lo} tcp dport 53 {not_tunnel} redirect to :{PORT_DNS}"
            ));
        }
    }
    out.push(format!("meta l4proto tcp {m} == {CONN_MARK:#x} accept"));
    for (fam, lo, _) in &families {
        out.push(format!("oifname \"lo\" {fam} daddr != {lo} accept"));
    }
    for (fam, lo, _) in &families {
        out.push(format!(
            "meta l4proto tcp {fam} daddr != {lo} {not_tunnel} redirect to :{PORT_OUTBOUND}"
        ));
    }
    table(&mut s, TABLE_NAT, ("nat", "nat"), -100, &pre, &out);
    if opts.dns_capture {
        let raw_out = vec![format!(
            "meta l4proto udp udp dport 53 {m} == {TUNNEL_MARK:#x} ct zone set 1"
        )];
        let raw_pre = vec![format!(
            "meta l4proto udp udp sport 53 {not_tunnel} ct zone set 1"
        )];
        table(
            &mut s,
            TABLE_RAW,
            ("filter", "filter"),
            -300,
            &raw_pre,
            &raw_out,
        );
    }
    s
}

/// The `nft -f -` script that removes the in-pod tables (idempotent, atomic).
pub fn render_pod_nft_removal() -> String {
    let mut s = String::new();
    for t in [TABLE_NAT, TABLE_MANGLE, TABLE_RAW] {
        let _ = writeln!(s, "add table inet {t}\ndelete table inet {t}");
    }
    s
}

/// One table with base chains `prerouting`/`output` jumping to `ISTIO_PRERT`/`ISTIO_OUTPUT`.
fn table(
    s: &mut String,
    name: &str,
    (pre_type, out_type): (&str, &str),
    prio: i32,
    pre: &[String],
    out: &[String],
) {
    let _ = writeln!(s, "table inet {name} {{");
    for (chain, ty, hook, target) in [
        ("prerouting", pre_type, "prerouting", "ISTIO_PRERT"),
        ("output", out_type, "output", "ISTIO_OUTPUT"),
    ] {
        let _ = writeln!(
            s,
            "\tchain {chain} {{\n\t\ttype {ty} hook {hook} priority {prio}; policy accept;\n\t\tjump {target}\n\t}}"
        );
    }
    for (chain, rules) in [("ISTIO_PRERT", pre), ("ISTIO_OUTPUT", out)] {
        let _ = writeln!(s, "\tchain {chain} {{");
        for r in rules {
            let _ = writeln!(s, "\t\t{r}");
        }
        let _ = writeln!(s, "\t}}");
    }
    let _ = writeln!(s, "}}");
}

/// The `ip <family> -batch -` scripts that install the in-pod policy routing (after
/// [`render_routing_removal`]); `ip -batch` takes no per-line family, so there is one script per family.
pub fn render_routing(ipv6: bool) -> Vec<(&'static str, String)> {
    families(ipv6)
        .into_iter()
        .map(|fam| {
            let (any, lo_up) = if fam == "-4" {
                ("0.0.0.0/0", "link set lo up\n")
            } else {
                ("::/0", "")
            };
            let script = format!(
                "{lo_up}rule add fwmark {CONN_MARK:#x}/{MARK_MASK:#x} pref {RULE_PRIORITY} lookup {ROUTE_TABLE}\n\
                 route add local {any} dev lo table {ROUTE_TABLE}\n"
            );
            (fam, script)
        })
        .collect()
}

/// The `ip <family> -force -batch -` scripts that remove it (errors for missing pieces are expected).
pub fn render_routing_removal(ipv6: bool) -> Vec<(&'static str, String)> {
    families(ipv6)
        .into_iter()
        .map(|fam| {
            let script = format!(
                "rule del fwmark {CONN_MARK:#x}/{MARK_MASK:#x} pref {RULE_PRIORITY} lookup {ROUTE_TABLE}\n\
                 route flush table {ROUTE_TABLE}\n"
            );
            (fam, script)
        })
        .collect()
}

fn families(ipv6: bool) -> Vec<&'static str> {
    if ipv6 { vec!["-4", "-6"] } else { vec!["-4"] }
}

/// The node-side probe SNAT table with the current enrolled pod IPs (atomic replace).
///
/// Upstream matches `owner --socket-exists` in `nat POSTROUTING`. nftables has no "packet has a local socket"
/// match in postrouting (`socket` only works in prerouting/input/output, `meta skuid` would tie it to uids), and
/// SNAT is not allowed in the output hook. So the table tags new TCP connections to enrolled pod IPs in the
/// **output** hook (only locally generated packets pass it; forwarded packets with a spoofed node source do not)
/// with a conntrack mark bit, and postrouting SNATs only tagged connections.
pub fn render_host_nft(ips: &[IpAddr]) -> String {
    let v4: Vec<String> = ips
        .iter()
        .filter(|i| i.is_ipv4())
        .map(|i| i.to_string())
        .collect();
    let v6: Vec<String> = ips
        .iter()
        .filter(|i| i.is_ipv6())
        .map(|i| i.to_string())
        .collect();
    let elements = |v: &[String]| {
        if v.is_empty() {
            String::new()
        } else {
            format!("\t\telements = {{ {} }}\n", v.join(", "))
        }
    };
    let bit = format!("{HOST_PROBE_CT_BIT:#010x}");
    format!(
        "add table inet {HOST_TABLE}\ndelete table inet {HOST_TABLE}\n\
         table inet {HOST_TABLE} {{\n\
         \tset {HOST_SET_V4} {{\n\t\ttype ipv4_addr\n{e4}\t}}\n\
         \tset {HOST_SET_V6} {{\n\t\ttype ipv6_addr\n{e6}\t}}\n\
         \tchain output {{\n\t\ttype filter hook output priority -150; policy accept;\n\
         \t\tmeta l4proto tcp ip daddr @{HOST_SET_V4} ct state new ct mark set ct mark | {bit}\n\
         \t\tmeta l4proto tcp ip6 daddr @{HOST_SET_V6} ct state new ct mark set ct mark | {bit}\n\t}}\n\
         \tchain ISTIO_POSTRT {{\n\t\ttype nat hook postrouting priority 99; policy accept;\n\
         \t\tmeta l4proto tcp ct mark & {bit} == {bit} ip daddr @{HOST_SET_V4} snat ip to {PROBE_SNAT_V4}\n\
         \t\tmeta l4proto tcp ct mark & {bit} == {bit} ip6 daddr @{HOST_SET_V6} snat ip6 to {PROBE_SNAT_V6}\n\t}}\n\
         }}\n",
        e4 = elements(&v4),
        e6 = elements(&v6),
    )
}

/// Removes the node-side table.
pub fn render_host_removal() -> String {
    format!("add table inet {HOST_TABLE}\ndelete table inet {HOST_TABLE}\n")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn chain<'a>(script: &'a str, table: &str, chain: &str) -> Vec<&'a str> {
        let start = script.find(&format!("table inet {table} {{")).unwrap();
        let body = &script[start..];
        let c = body.find(&format!("chain {chain} {{")).unwrap();
        body[c..]
            .lines()
            .skip(1)
            .map(str::trim)
            .take_while(|l| *l != "}")
            .collect()
    }

    #[test]
    fn nat_output_follows_the_spec_order() {
        let s = render_pod_nft(PodRuleOptions::default());
        let out = chain(&s, TABLE_NAT, "ISTIO_OUTPUT");
        assert_eq!(
            out,
            [
                "meta l4proto tcp ip daddr 169.254.7.127 accept",
                "meta l4proto tcp meta mark & 0xfff == 0x111 accept",
                "oifname \"lo\" ip daddr != 127.0.0.1 accept",
                "meta l4proto tcp ip daddr != 127.0.0.1 meta mark & 0xfff != 0x539 redirect to :15001",
            ]
        );
        let pre = chain(&s, TABLE_NAT, "ISTIO_PRERT");
        assert_eq!(
            pre,
            [
                "meta l4proto tcp ip saddr 169.254.7.127 accept",
                "meta l4proto tcp ip daddr != 127.0.0.1 tcp dport != 15008 meta mark & 0xfff != 0x539 redirect to :15006",
            ]
        );
        assert_eq!(
            chain(&s, TABLE_MANGLE, "ISTIO_PRERT"),
            ["meta mark & 0xfff == 0x539 ct mark set ct mark & 0xfffff000 | 0x111"]
        );
        assert_eq!(
            chain(&s, TABLE_MANGLE, "ISTIO_OUTPUT"),
            ["ct mark & 0xfff == 0x111 meta mark set ct mark"]
        );
        assert!(
            chain(&s, TABLE_MANGLE, "output")[0]
                .starts_with("type route hook output priority -150")
        );
        assert!(
            chain(&s, TABLE_NAT, "prerouting")[0]
                .starts_with("type nat hook prerouting priority -100")
        );
        assert!(!s.contains("table inet istio-ambient-raw {"));
        assert!(!s.contains("15053"));
        // The old raw table is still removed (DNS capture turned off).
        assert!(s.contains("delete table inet istio-ambient-raw"));
    }

    #[test]
    fn dns_and_ipv6_variants() {
        let s = render_pod_nft(PodRuleOptions {
            dns_capture: true,
            ipv6: true,
        });
        let out = chain(&s, TABLE_NAT, "ISTIO_OUTPUT");
        assert_eq!(out.len(), 10, "{out:#?}");
        assert!(out[2].contains("udp dport 53 oifname != \"lo\"") && out[2].ends_with(":15053"));
        assert!(out[3].contains("ip daddr != 127.0.0.1 tcp dport 53"));
        assert!(out[4].contains("ip6 daddr != ::1 tcp dport 53"));
        assert!(out[9].contains("ip6 daddr != ::1") && out[9].ends_with(":15001"));
        assert!(chain(&s, TABLE_NAT, "ISTIO_PRERT")[2].contains(PROBE_SNAT_V6));
        assert!(chain(&s, TABLE_RAW, "prerouting")[0].contains("priority -300"));
        assert_eq!(
            chain(&s, TABLE_RAW, "ISTIO_OUTPUT"),
            ["meta l4proto udp udp dport 53 meta mark & 0xfff == 0x539 ct zone set 1"]
        );
    }

    #[test]
    fn routing_scripts() {
        assert_eq!(
            render_routing(false),
            [(
                "-4",
                "link set lo up\nrule add fwmark 0x111/0xfff pref 32764 lookup 100\n\
                 route add local 0.0.0.0/0 dev lo table 100\n"
                    .to_string()
            )]
        );
        let v6 = render_routing(true);
        assert_eq!(v6[1].0, "-6");
        assert!(v6[1].1.contains("route add local ::/0 dev lo table 100"));
        assert!(
            render_routing_removal(true)[1]
                .1
                .contains("route flush table 100")
        );
    }

    #[test]
    fn host_table_lists_the_enrolled_ips() {
        let s = render_host_nft(&["10.0.0.1".parse().unwrap(), "fd00::1".parse().unwrap()]);
        assert!(s.contains("elements = { 10.0.0.1 }"));
        assert!(s.contains("elements = { fd00::1 }"));
        assert!(s.contains("snat ip to 169.254.7.127"));
        let empty = render_host_nft(&[]);
        assert!(!empty.contains("elements"));
    }
}
