//! ztunnel's resident memory per node: the processes in the node's network namespace
//! (`ip netns pids`) whose `/proc/<pid>/comm` is `ztunnel`, and their `VmRSS`; a sampler
//! thread records the peak while a test runs.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::cmd;

const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// 2 minutes of samples at most, whatever happens to the stop signal.
const MAX_SAMPLES: usize = 600;

/// The ztunnel pid in network namespace `netns`.
pub(crate) fn ztunnel_pid(netns: &str, scratch: &Path) -> Result<u32> {
    let mut c = Command::new("ip");
    c.args(["netns", "pids", netns]);
    let out = cmd::run(&mut c, Duration::from_secs(10), scratch, "netns-pids")?;
    let pids: Vec<u32> = out
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "ztunnel")
        })
        .collect();
    match pids.as_slice() {
        [pid] => Ok(*pid),
        [] => bail!("no ztunnel process in netns {netns}"),
        more => bail!("several ztunnel processes in netns {netns}: {more:?}"),
    }
}

/// `VmRSS` of `pid` in KiB.
pub(crate) fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    parse_vmrss(&status).with_context(|| format!("no VmRSS for pid {pid}"))
}

fn parse_vmrss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Samples the RSS of `pids` every 200 ms until [`Sampler::stop`]; keeps each pid's peak.
#[derive(Debug)]
pub(crate) struct Sampler {
    done: Arc<AtomicBool>,
    thread: JoinHandle<Vec<u64>>,
}

impl Sampler {
    pub(crate) fn start(pids: Vec<u32>) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = vec![0u64; pids.len()];
            for _ in 0..MAX_SAMPLES {
                for (p, pid) in peak.iter_mut().zip(&pids) {
                    *p = (*p).max(rss_kib(*pid).unwrap_or(0));
                }
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                std::thread::sleep(SAMPLE_EVERY);
            }
            peak
        });
        Self { done, thread }
    }

    /// Peak KiB per pid, in the order given to [`Sampler::start`].
    pub(crate) fn stop(self) -> Vec<u64> {
        self.done.store(true, Ordering::SeqCst);
        self.thread.join().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vmrss() {
        let status = "Name:\tztunnel\nVmPeak:\t  99 kB\nVmRSS:\t   12345 kB\nThreads:\t4\n";
        assert_eq!(parse_vmrss(status), Some(12345));
        assert_eq!(parse_vmrss("Name:\tx\n"), None);
    }

    #[test]
    fn samples_own_process() {
        let s = Sampler::start(vec![std::process::id()]);
        std::thread::sleep(Duration::from_millis(50));
        let peak = s.stop();
        assert_eq!(peak.len(), 1);
        assert!(peak[0] > 0);
    }
}
