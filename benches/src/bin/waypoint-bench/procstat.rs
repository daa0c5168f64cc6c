//! What `/proc/<pid>` says about a child: resident memory (`VmRSS`, and the peak `VmHWM`) from
//! `status`, CPU time (user + system, all threads) from `stat`, context switches (voluntary +
//! involuntary, summed over `task/*/status`), and its established TCP
//! connections to one address (its sockets in `fd/` matched with `/proc/net/tcp`); and a
//! sampler thread that keeps the highest `VmRSS` seen while a load runs.

use std::collections::HashSet;
use std::net::SocketAddrV4;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};

const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// 5 minutes of samples at most, whatever happens to the stop signal.
const MAX_SAMPLES: usize = 1500;

/// `(VmRSS, VmHWM)` of `pid` in KiB.
pub(crate) fn memory_kib(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    let rss = status_kib(&status, "VmRSS:").context("no VmRSS")?;
    let hwm = status_kib(&status, "VmHWM:").context("no VmHWM")?;
    Ok((rss, hwm))
}

/// The number after `key` in a `status` file (KiB for memory lines, a count for others).
fn status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User + system CPU time of `pid` (all its threads), in clock ticks.
pub(crate) fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("read /proc/{pid}/stat"))?;
    parse_ticks(&stat).with_context(|| format!("bad /proc/{pid}/stat: {stat}"))
}

/// Fields 14 (utime) and 15 (stime); the command name (field 2) may hold spaces, so count
/// from its closing parenthesis.
fn parse_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Context switches of all of `pid`'s threads (voluntary + involuntary); threads that already
/// exited are not counted.
pub(crate) fn context_switches(pid: u32) -> Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let Ok(status) = std::fs::read_to_string(task?.path().join("status")) else {
            continue;
        };
        total += status_kib(&status, "voluntary_ctxt_switches:").unwrap_or(0);
        total += status_kib(&status, "nonvoluntary_ctxt_switches:").unwrap_or(0);
    }
    Ok(total)
}

/// Established TCP connections of `pid` whose remote end is `remote` (a proxy's pool).
pub(crate) fn connections_to(pid: u32, remote: SocketAddrV4) -> Result<usize> {
    let mut inodes = HashSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let Ok(target) = std::fs::read_link(fd?.path()) else {
            continue;
        };
        let target = target.to_string_lossy();
        if let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|t| t.strip_suffix(']'))
        {
            inodes.insert(inode.to_owned());
        }
    }
    let table = std::fs::read_to_string("/proc/net/tcp")?;
    Ok(count_established(&table, remote, &inodes))
}

/// Rows of `/proc/net/tcp` in state `01` (established) to `remote` whose inode is in `inodes`.
fn count_established(table: &str, remote: SocketAddrV4, inodes: &HashSet<String>) -> usize {
    // Addresses are hex, the IPv4 address in host (little-endian) byte order.
    let want = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(remote.ip().octets()),
        remote.port()
    );
    table
        .lines()
        .skip(1)
        .filter(|row| {
            let f: Vec<&str> = row.split_whitespace().collect();
            f.len() > 9 && f[2] == want && f[3] == "01" && inodes.contains(f[9])
        })
        .count()
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 if that fails).
pub(crate) fn ticks_per_sec(scratch: &Path) -> f64 {
    crate::cmd::run(
        Command::new("getconf").arg("CLK_TCK"),
        Duration::from_secs(5),
        scratch,
        "getconf",
    )
    .ok()
    .and_then(|s| s.trim().parse().ok())
    .unwrap_or(100.0)
}

/// Samples `VmRSS` of `pid` every 200 ms until [`Sampler::stop`]; keeps the peak.
#[derive(Debug)]
pub(crate) struct Sampler {
    done: Arc<AtomicBool>,
    thread: JoinHandle<u64>,
}

impl Sampler {
    pub(crate) fn start(pid: u32) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            for _ in 0..MAX_SAMPLES {
                peak = memory_kib(pid).map_or(peak, |(rss, _)| peak.max(rss));
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                std::thread::sleep(SAMPLE_EVERY);
            }
            peak
        });
        Self { done, thread }
    }

    /// The highest `VmRSS` seen, KiB.
    pub(crate) fn stop(self) -> u64 {
        self.done.store(true, Ordering::SeqCst);
        self.thread.join().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_status_and_stat() {
        let status = "Name:\tenvoy\nVmHWM:\t  2048 kB\nVmRSS:\t   1024 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(1024));
        assert_eq!(status_kib(status, "VmHWM:"), Some(2048));
        let stat = "42 (a b) S 1 42 42 0 -1 4194560 100 0 0 0 17 5 0 0 20 0 3 0";
        assert_eq!(parse_ticks(stat), Some(22));
        let me = std::process::id();
        assert!(memory_kib(me).is_ok_and(|(rss, hwm)| rss > 0 && hwm >= rss));
        assert!(cpu_ticks(me).is_ok());
        assert!(context_switches(me).is_ok_and(|n| n > 0));
    }

    #[test]
    fn counts_established_connections_to_an_address() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:A1B2 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 111 1
   1: 0100007F:A1B3 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 222 1
   2: 0100007F:A1B4 0100007F:1F90 06 00000000:00000000 00:00000000 00000000     0        0 333 1
   3: 0100007F:A1B5 0200007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 444 1
";
        let mine: HashSet<String> = ["111", "333", "444"].map(String::from).into();
        let remote: SocketAddrV4 = "127.0.0.1:8080".parse().expect("addr");
        assert_eq!(count_established(table, remote, &mine), 1);
    }
}
