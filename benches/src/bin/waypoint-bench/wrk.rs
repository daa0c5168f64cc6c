//! One wrk run (`wrk -t<threads> -c<connections> -d<seconds>s --latency -H 'Host: …' URL`) and
//! what its report says: requests/s, the p50 and p99 of the latency distribution, the request
//! count, responses that were not 2xx/3xx, and socket errors.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

/// What the bench asks of wrk.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Load {
    pub(crate) threads: u32,
    pub(crate) connections: u32,
    pub(crate) seconds: u32,
}

/// One wrk report.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Report {
    pub(crate) requests_per_sec: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) requests: u64,
    /// "Non-2xx or 3xx responses".
    pub(crate) non_2xx_3xx: u64,
    /// connect + read + write + timeout.
    pub(crate) socket_errors: u64,
}

/// Runs wrk against `addr` with `Host: host`; killed if it overruns its duration by 20 s.
pub(crate) fn run(
    load: Load,
    addr: SocketAddr,
    host: &str,
    scratch: &Path,
    tag: &str,
) -> Result<Report> {
    let mut cmd = Command::new("wrk");
    cmd.arg(format!("-t{}", load.threads))
        .arg(format!("-c{}", load.connections))
        .arg(format!("-d{}s", load.seconds))
        .arg("--latency")
        .args(["-H", &format!("Host: {host}")])
        .arg(format!("http://{addr}/"));
    let limit = Duration::from_secs(u64::from(load.seconds) + 20);
    let out = crate::cmd::run(&mut cmd, limit, scratch, tag)?;
    parse(&out).with_context(|| format!("unexpected wrk output:\n{out}"))
}

/// `1.23ms`, `456.78us`, `1.02s`, `2.00m` → milliseconds.
fn duration_ms(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = text.split_at(split);
    let v: f64 = num.parse().ok()?;
    let scale = match unit {
        "us" => 1e-3,
        "ms" => 1.0,
        "s" => 1e3,
        "m" => 60e3,
        "h" => 3600e3,
        _ => return None,
    };
    Some(v * scale)
}

fn parse(out: &str) -> Option<Report> {
    let mut r = Report {
        requests_per_sec: f64::NAN,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        requests: 0,
        non_2xx_3xx: 0,
        socket_errors: 0,
    };
    let mut seen = (false, false, false, false);
    for line in out.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            r.requests_per_sec = v.trim().parse().ok()?;
            seen.0 = true;
        } else if let Some(v) = line.strip_prefix("50%") {
            r.p50_ms = duration_ms(v.trim())?;
            seen.1 = true;
        } else if let Some(v) = line.strip_prefix("99%") {
            r.p99_ms = duration_ms(v.trim())?;
            seen.2 = true;
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            r.non_2xx_3xx = v.trim().parse().ok()?;
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            r.socket_errors = v
                .split(',')
                .filter_map(|f| f.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum();
        } else if let Some((n, rest)) = line.split_once(" requests in ")
            && rest.contains("read")
        {
            r.requests = n.trim().parse().ok()?;
            seen.3 = true;
        }
    }
    (seen == (true, true, true, true)).then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = "Running 10s test @ http://127.0.0.2:8080/
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.07ms  455.06us  18.63ms   86.52%
    Req/Sec    23.79k     1.35k   27.26k    70.50%
  Latency Distribution
     50%  1.00ms
     75%  1.19ms
     90%  1.49ms
     99%    2.51s
  473533 requests in 10.00s, 87.61MB read
  Socket errors: connect 0, read 3, write 0, timeout 4
  Non-2xx or 3xx responses: 17
Requests/sec:  47341.50
Transfer/sec:      8.76MB
";

    #[test]
    fn parses_a_report() {
        let r = parse(OUT).expect("parses");
        assert_eq!(r.requests_per_sec, 47341.5);
        assert_eq!(r.p50_ms, 1.0);
        assert_eq!(r.p99_ms, 2510.0);
        assert_eq!(r.requests, 473533);
        assert_eq!(r.non_2xx_3xx, 17);
        assert_eq!(r.socket_errors, 7);
    }

    #[test]
    fn units_and_incomplete_output() {
        assert_eq!(duration_ms("456.00us"), Some(0.456));
        assert_eq!(duration_ms("2.00m"), Some(120_000.0));
        assert_eq!(duration_ms("3.1x"), None);
        let no_rps: String = OUT
            .lines()
            .filter(|l| !l.starts_with("Requests/sec"))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(parse(&no_rps), None);
    }
}
