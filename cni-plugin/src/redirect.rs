//! Applies, removes and detects the in-pod redirect rules (nftables + policy routing) rendered by
//! [`crate::rules`], and the node-side probe SNAT table. Blocking (spawns `nft`/`ip`); the agent calls it from
//! `spawn_blocking`.

use std::net::IpAddr;
use std::path::Path;

use crate::netns::{self, ExecError};
use crate::rules::{self, PodRuleOptions};

/// Installs the redirect rules in the pod netns: all nft tables in one transaction, then the routing. If the
/// routing fails the nft tables are removed again, so nothing half-made stays behind.
pub fn apply(netns: &Path, opts: PodRuleOptions) -> Result<(), ExecError> {
    netns::run(
        Some(netns),
        "nft",
        &["-f", "-"],
        &rules::render_pod_nft(opts),
    )?;
    let routing = (|| {
        remove_routing(netns, opts.ipv6)?;
        for (fam, script) in rules::render_routing(opts.ipv6) {
            netns::run(Some(netns), "ip", &[fam, "-batch", "-"], &script)?;
        }
        Ok(())
    })();
    if let Err(e) = routing {
        let _ = remove(netns);
        return Err(e);
    }
    Ok(())
}

/// Removes every in-pod rule we own (both families). A namespace that is gone counts as success.
pub fn remove(netns: &Path) -> Result<(), ExecError> {
    let nft = netns::run(
        Some(netns),
        "nft",
        &["-f", "-"],
        &rules::render_pod_nft_removal(),
    );
    match nft {
        Err(e) if e.is_netns_gone() => return Ok(()),
        other => other?,
    };
    remove_routing(netns, true)
}

fn remove_routing(netns: &Path, ipv6: bool) -> Result<(), ExecError> {
    for (fam, script) in rules::render_routing_removal(ipv6) {
        netns::run(Some(netns), "ip", &[fam, "-force", "-batch", "-"], &script)
            .or_else(ignore_failed)?;
    }
    Ok(())
}

/// Are our rules present in the pod netns? (`None`: the namespace is gone.)
pub fn present(netns: &Path) -> Result<Option<bool>, ExecError> {
    match netns::run(Some(netns), "nft", &["list", "tables"], "") {
        Ok(out) => {
            Ok(Some(out.lines().any(|l| {
                l.trim() == format!("table inet {}", rules::TABLE_NAT)
            })))
        }
        Err(e) if e.is_netns_gone() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replaces the node-side probe SNAT table (in the agent's own netns) with these pod IPs.
pub fn apply_host(ips: &[IpAddr]) -> Result<(), ExecError> {
    netns::run(None, "nft", &["-f", "-"], &rules::render_host_nft(ips)).map(|_| ())
}

/// Removes the node-side table.
pub fn remove_host() -> Result<(), ExecError> {
    netns::run(None, "nft", &["-f", "-"], &rules::render_host_removal()).map(|_| ())
}

/// `ip -force -batch` exits non-zero when a line failed (e.g. deleting a rule that is not there): expected.
fn ignore_failed(e: ExecError) -> Result<String, ExecError> {
    match e {
        ExecError::Failed { .. } => Ok(String::new()),
        other => Err(other),
    }
}
