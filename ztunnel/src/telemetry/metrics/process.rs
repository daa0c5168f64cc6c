//! `process_open_fds` and `process_max_fds`, read from `/proc/self` at scrape time.
//!
//! Owns: reading and exposing those two gauges. A read failure (e.g. not Linux) omits the gauge rather than
//! failing the scrape.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

/// Emits the file-descriptor gauges on every encode of its registry.
#[derive(Debug)]
pub(super) struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(open) = open_fds() {
            encode_gauge(
                &mut encoder,
                "process_open_fds",
                "Number of open file descriptors",
                open,
            )?;
        }
        if let Some(max) = max_fds() {
            encode_gauge(
                &mut encoder,
                "process_max_fds",
                "Maximum number of open file descriptors",
                max,
            )?;
        }
        Ok(())
    }
}

fn encode_gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(value);
    let metric_encoder = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
    gauge.encode(metric_encoder)
}

/// Entries of `/proc/self/fd`, minus the descriptor the listing itself holds open.
fn open_fds() -> Option<i64> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    let count = entries.count();
    i64::try_from(count.saturating_sub(1)).ok()
}

/// The soft "Max open files" limit from `/proc/self/limits`.
fn max_fds() -> Option<i64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_max_open_files(&limits)
}

fn parse_max_open_files(limits: &str) -> Option<i64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    if soft == "unlimited" {
        Some(i64::MAX)
    } else {
        soft.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_soft_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             63432                63432                processes \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_max_open_files(limits), Some(1024));
        assert_eq!(
            parse_max_open_files("Max open files unlimited unlimited files"),
            Some(i64::MAX)
        );
        assert_eq!(parse_max_open_files("nothing here"), None);
    }

    #[test]
    fn reads_proc_self() {
        assert!(open_fds().is_some_and(|n| n > 0));
        assert!(max_fds().is_some_and(|n| n > 0));
    }
}
