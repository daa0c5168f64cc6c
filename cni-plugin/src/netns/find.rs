//! Finding a running pod's network namespace when nobody told us its path: pods that were already running when
//! the agent started with the Kubernetes pod source, or that became ambient after their CNI ADD went by.
//!
//! **What we do.** Candidates are the bind mounts in the netns dir (`/run/netns/*`: where `ip netns`, the local
//! mesh and our tests keep pod namespaces; preferred, because the path stays valid for the pod's lifetime) and
//! `/proc/<pid>/ns/net` of every process (per namespace the oldest process, normally the sandbox's pause
//! process, which lives as long as the pod). Candidates are deduplicated by namespace identity (device +
//! inode); the agent's own namespace and that of pid 1 (the node's) are never candidates. For each remaining
//! namespace we read its addresses (a short-lived thread `setns`es into each in turn, then exits, so no pooled
//! thread is ever left in a pod's namespace). A pod's namespace is the one holding one of its IPs, accepted only
//! when exactly one namespace does.
//!
//! **How istio-cni differs.** It also scans `/proc/*/ns/net`, but pairs a process with a pod through the pod
//! UID in the process's cgroup path, and then accepts the pairing only if the namespace holds one of the pod's
//! IPs (`cni/pkg/nodeagent/podcgroupns_linux.go`). We match on the IPs alone, because pods of the local mesh
//! and of our tests have no kubelet cgroups (their namespaces often have no process at all), and compensate by
//! refusing ambiguous matches: two namespaces holding the pod's IP (for example a leftover namespace of a dead
//! pod) leave the pod unenrolled and logged until the ambiguity goes away.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A network namespace's identity: (device, inode) of its nsfs file.
pub type NetnsId = (u64, u64);

/// Where a candidate path comes from; the smaller is preferred for the same namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    /// A bind mount in the netns dir.
    BindMount,
    /// `/proc/<pid>/ns/net`; `start` is the process start time (ticks since boot).
    Process { start: u64 },
}

/// One path to a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub path: PathBuf,
    pub id: NetnsId,
    pub origin: Origin,
}

/// The result for one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    One(PathBuf),
    Nothing,
    /// More than one namespace holds one of the pod's IPs.
    Ambiguous(Vec<PathBuf>),
}

/// The best path per namespace, leaving out `excluded` namespaces (the agent's and the node's).
pub fn dedupe(candidates: Vec<Candidate>, excluded: &[NetnsId]) -> Vec<Candidate> {
    let mut best: BTreeMap<NetnsId, Candidate> = BTreeMap::new();
    for c in candidates {
        if excluded.contains(&c.id) {
            continue;
        }
        match best.get(&c.id) {
            Some(b) if (b.origin, &b.path) <= (c.origin, &c.path) => {}
            _ => {
                best.insert(c.id, c);
            }
        }
    }
    best.into_values().collect()
}

/// The namespace (of `namespaces`: path and its addresses) holding one of `pod_ips`.
pub fn match_ips(namespaces: &[(PathBuf, Vec<IpAddr>)], pod_ips: &[IpAddr]) -> Found {
    let mut hits: Vec<PathBuf> = namespaces
        .iter()
        .filter(|(_, addrs)| {
            addrs
                .iter()
                .any(|a| !a.is_loopback() && pod_ips.contains(a))
        })
        .map(|(p, _)| p.clone())
        .collect();
    match hits.len() {
        0 => Found::Nothing,
        1 => Found::One(hits.swap_remove(0)),
        _ => Found::Ambiguous(hits),
    }
}

/// The start time (field 22) from the text of `/proc/<pid>/stat`; the command name (field 2) may hold spaces and
/// parentheses, so fields are counted after the last `)`.
pub fn parse_starttime(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The I/O side: where to look.
#[derive(Debug, Clone)]
pub struct Finder {
    /// Bind-mounted namespaces (`/run/netns`).
    pub netns_dir: PathBuf,
    /// The (host) proc filesystem (`/proc`, or `/host/proc` in a container).
    pub proc_dir: PathBuf,
}

impl Finder {
    /// Finds the namespace of each pod (key → its IPs). Blocking: scans the proc filesystem and enters every
    /// candidate namespace on a dedicated thread.
    pub fn find(&self, pods: &[(String, Vec<IpAddr>)]) -> BTreeMap<String, Found> {
        if pods.is_empty() {
            return BTreeMap::new();
        }
        let excluded: Vec<NetnsId> = [
            Path::new("/proc/self/ns/net"),
            &self.proc_dir.join("1/ns/net"),
        ]
        .iter()
        .filter_map(|p| id_of(p))
        .collect();
        let namespaces = dedupe(self.candidates(), &excluded);
        let with_addrs = read_addresses(namespaces);
        pods.iter()
            .map(|(key, ips)| (key.clone(), match_ips(&with_addrs, ips)))
            .collect()
    }

    fn candidates(&self) -> Vec<Candidate> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.netns_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = entry.path();
            if let Some(id) = id_of(&path) {
                out.push(Candidate {
                    path,
                    id,
                    origin: Origin::BindMount,
                });
            }
        }
        for entry in std::fs::read_dir(&self.proc_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            let path = self.proc_dir.join(pid).join("ns/net");
            let Some(id) = id_of(&path) else { continue };
            let start = std::fs::read_to_string(self.proc_dir.join(pid).join("stat"))
                .ok()
                .and_then(|s| parse_starttime(&s))
                .unwrap_or(u64::MAX);
            out.push(Candidate {
                path,
                id,
                origin: Origin::Process { start },
            });
        }
        out
    }
}

fn id_of(path: &Path) -> Option<NetnsId> {
    let md = std::fs::metadata(path).ok()?;
    Some((md.dev(), md.ino()))
}

/// Each namespace's addresses, read on a thread of its own that enters them in turn and then exits (its network
/// namespace is no longer the agent's, so it must not go back to any pool). Unreadable ones are left out.
fn read_addresses(namespaces: Vec<Candidate>) -> Vec<(PathBuf, Vec<IpAddr>)> {
    let scan = std::thread::Builder::new()
        .name("netns-find".into())
        .spawn(move || {
            namespaces
                .into_iter()
                .filter_map(|c| match addresses_in(&c.path) {
                    Ok(addrs) => Some((c.path, addrs)),
                    Err(e) => {
                        tracing::debug!(netns = %c.path.display(), error = %e, "skipping netns");
                        None
                    }
                })
                .collect::<Vec<_>>()
        });
    match scan.map(|t| t.join()) {
        Ok(Ok(found)) => found,
        Ok(Err(_)) | Err(_) => {
            tracing::warn!("netns scan thread failed");
            Vec::new()
        }
    }
}

/// Moves the current thread into `path`'s namespace and lists its addresses.
fn addresses_in(path: &Path) -> std::io::Result<Vec<IpAddr>> {
    let file = File::open(path)?;
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)?;
    let addrs = nix::ifaddrs::getifaddrs()?
        .filter_map(|ifa| {
            let a = ifa.address?;
            if let Some(v4) = a.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .collect();
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cand(path: &str, id: u64, origin: Origin) -> Candidate {
        Candidate {
            path: path.into(),
            id: (4, id),
            origin,
        }
    }

    #[test]
    fn dedupe_prefers_bind_mounts_then_the_oldest_process_and_skips_excluded() {
        let got = dedupe(
            vec![
                cand("/proc/20/ns/net", 1, Origin::Process { start: 900 }),
                cand("/proc/10/ns/net", 1, Origin::Process { start: 500 }),
                cand("/proc/30/ns/net", 2, Origin::Process { start: 100 }),
                cand("/run/netns/pod-b", 2, Origin::BindMount),
                cand("/proc/1/ns/net", 3, Origin::Process { start: 1 }),
                cand("/proc/99/ns/net", 4, Origin::Process { start: 7 }),
            ],
            &[(4, 3), (4, 4)],
        );
        let paths: Vec<&str> = got.iter().map(|c| c.path.to_str().unwrap()).collect();
        assert_eq!(paths, ["/proc/10/ns/net", "/run/netns/pod-b"]);
    }

    #[test]
    fn matches_only_an_unambiguous_namespace() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let namespaces = vec![
            (
                PathBuf::from("/run/netns/a"),
                vec![ip("127.0.0.1"), ip("10.0.0.5")],
            ),
            (
                PathBuf::from("/run/netns/b"),
                vec![ip("127.0.0.1"), ip("fd00::6")],
            ),
            (PathBuf::from("/run/netns/c"), vec![ip("10.0.0.7")]),
            (PathBuf::from("/run/netns/d"), vec![ip("10.0.0.7")]),
        ];
        let find = |ips: &[&str]| {
            let ips: Vec<IpAddr> = ips.iter().map(|s| ip(s)).collect();
            match_ips(&namespaces, &ips)
        };
        assert_eq!(find(&["10.0.0.5"]), Found::One("/run/netns/a".into()));
        assert_eq!(
            find(&["10.9.9.9", "fd00::6"]),
            Found::One("/run/netns/b".into())
        );
        assert_eq!(find(&["10.9.9.9"]), Found::Nothing);
        assert_eq!(find(&[]), Found::Nothing);
        // Loopback is in every namespace and never identifies one.
        assert_eq!(find(&["127.0.0.1"]), Found::Nothing);
        assert_eq!(
            find(&["10.0.0.7"]),
            Found::Ambiguous(vec!["/run/netns/c".into(), "/run/netns/d".into()])
        );
        // Two IPs of one pod in two namespaces: ambiguous too.
        assert!(matches!(
            find(&["10.0.0.5", "fd00::6"]),
            Found::Ambiguous(_)
        ));
    }

    #[test]
    fn parses_the_start_time_past_odd_command_names() {
        let stat =
            "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 3 1 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_starttime(stat), Some(987654));
        assert_eq!(parse_starttime("1 (x) S 0"), None);
        assert_eq!(parse_starttime("garbage"), None);
    }

    #[test]
    fn lists_process_candidates() {
        // Entering namespaces needs CAP_SYS_ADMIN; the listing does not. (The e2e test `kube_source` finds a real
        // pod netns by its IP.)
        let finder = Finder {
            netns_dir: PathBuf::from("/nonexistent-netns-dir"),
            proc_dir: PathBuf::from("/proc"),
        };
        let cands = finder.candidates();
        let me = format!("/proc/{}/ns/net", std::process::id());
        assert!(cands.iter().any(|c| c.path == Path::new(&me)), "{cands:?}");
        assert!(finder.find(&[]).is_empty());
    }
}
