//! What a bench run collected, and its output: markdown tables of medians with ratios between
//! the targets (throughput, latency, errors, CPU per request, memory), or the same as JSON with
//! every run.

use benches::machine::median;
use std::fmt::Write;

use serde_json::{Value, json};

use crate::backend::Stats;
use crate::wrk::Report;

/// What wrk is pointed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum Target {
    /// Straight to the backend.
    #[default]
    Direct,
    /// Envoy configured by the control plane as the `envoy-wp` waypoint.
    Envoy,
    /// Our waypoint configured by the control plane as the `our-wp` waypoint.
    Waypoint,
}

impl Target {
    pub(crate) fn key(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Envoy => "envoy",
            Target::Waypoint => "waypoint",
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Envoy => "Envoy",
            Target::Waypoint => "our waypoint",
        }
    }
}

/// One wrk run and what the bench read around it.
#[derive(Debug, Clone)]
pub(crate) struct RunResult {
    pub(crate) wrk: Report,
    pub(crate) proxy_cpu_ms_per_1k: Option<f64>,
    /// The proxy's CPU time over the run's wall-clock time (2.0: both cores busy).
    pub(crate) proxy_cores: Option<f64>,
    pub(crate) proxy_switches_per_request: Option<f64>,
    pub(crate) backend_cpu_ms_per_1k: f64,
    pub(crate) proxy_rss_peak_kib: Option<u64>,
    /// What the backend counted during the run.
    pub(crate) backend: Stats,
    /// The proxy's established connections to the backend right after the run (its pool).
    pub(crate) proxy_upstream_connections: Option<usize>,
}

impl RunResult {
    /// Socket reads the backend needed per request (1.0: each request arrived whole).
    fn reads_per_request(&self) -> f64 {
        self.backend.reads as f64 / self.backend.requests.max(1) as f64
    }

    fn head_bytes_per_request(&self) -> f64 {
        self.backend.head_bytes as f64 / self.backend.requests.max(1) as f64
    }

    /// One line for the progress log.
    pub(crate) fn summary(&self) -> String {
        let w = &self.wrk;
        let cpu = self
            .proxy_cpu_ms_per_1k
            .zip(self.proxy_cores)
            .zip(self.proxy_switches_per_request)
            .map_or(String::new(), |((c, cores), sw)| {
                format!(
                    ", proxy CPU {c:.1} ms/1k req ({cores:.2} cores, {sw:.2} context switches/req)"
                )
            });
        format!(
            "{:.0} req/s, p50 {:.3} ms, p99 {:.3} ms, {} requests, non-2xx/3xx {}, socket errors {}{cpu}, backend CPU {:.1} ms/1k req; backend: {} connections accepted, {} requests, {:.2} reads and {:.0} head bytes per request",
            w.requests_per_sec,
            w.p50_ms,
            w.p99_ms,
            w.requests,
            w.non_2xx_3xx,
            w.socket_errors,
            self.backend_cpu_ms_per_1k,
            self.backend.accepted,
            self.backend.requests,
            self.reads_per_request(),
            self.head_bytes_per_request(),
        )
    }
}

#[derive(Debug, Default)]
pub(crate) struct TargetResults {
    pub(crate) target: Target,
    pub(crate) runs: Vec<RunResult>,
    /// Whether the backend saw the route's header (`None` for direct).
    pub(crate) route_applied: Option<bool>,
    pub(crate) rss_idle_kib: Option<u64>,
    pub(crate) rss_hwm_kib: Option<u64>,
    pub(crate) rss_after_kib: Option<u64>,
    /// What the proxy logged (at warn and above).
    pub(crate) log_lines: Vec<String>,
}

#[derive(Debug)]
pub(crate) struct Results {
    pub(crate) targets: Vec<TargetResults>,
    pub(crate) service_port: u16,
}

/// The medians (and totals) of one target's runs.
#[derive(Debug, Clone, Copy)]
struct Summary {
    rps: f64,
    p50: f64,
    p99: f64,
    non_2xx: f64,
    socket_errors: f64,
    proxy_cpu: f64,
    proxy_cores: f64,
    proxy_switches: f64,
    backend_cpu: f64,
    rss_load_kib: f64,
    accepted: f64,
    open_after: f64,
    reads_per_request: f64,
    head_bytes: f64,
}

fn summarize(t: &TargetResults) -> Summary {
    let m = |f: fn(&RunResult) -> Option<f64>| median(t.runs.iter().filter_map(f).collect());
    let total = |f: fn(&RunResult) -> u64| t.runs.iter().map(f).sum::<u64>() as f64;
    Summary {
        rps: m(|r| Some(r.wrk.requests_per_sec)),
        p50: m(|r| Some(r.wrk.p50_ms)),
        p99: m(|r| Some(r.wrk.p99_ms)),
        non_2xx: total(|r| r.wrk.non_2xx_3xx),
        socket_errors: total(|r| r.wrk.socket_errors),
        proxy_cpu: m(|r| r.proxy_cpu_ms_per_1k),
        proxy_cores: m(|r| r.proxy_cores),
        proxy_switches: m(|r| r.proxy_switches_per_request),
        backend_cpu: m(|r| Some(r.backend_cpu_ms_per_1k)),
        rss_load_kib: m(|r| r.proxy_rss_peak_kib.map(|k| k as f64)),
        accepted: m(|r| Some(r.backend.accepted as f64)),
        open_after: m(|r| r.proxy_upstream_connections.map(|c| c as f64)),
        reads_per_request: m(|r| Some(r.reads_per_request())),
        head_bytes: m(|r| Some(r.head_bytes_per_request())),
    }
}

/// The ratio columns that make sense for the targets measured: (numerator, denominator).
fn ratio_pairs(r: &Results) -> Vec<(usize, usize)> {
    let at = |t: Target| r.targets.iter().position(|x| x.target == t);
    [
        (Target::Waypoint, Target::Direct),
        (Target::Envoy, Target::Direct),
        (Target::Waypoint, Target::Envoy),
    ]
    .into_iter()
    .filter_map(|(a, b)| Some((at(a)?, at(b)?)))
    .collect()
}

fn cell(v: f64, prec: usize) -> String {
    if v.is_nan() {
        "–".to_owned()
    } else {
        format!("{v:.prec$}")
    }
}

fn ratio(a: f64, b: f64) -> String {
    if a.is_nan() || b.is_nan() || b == 0.0 {
        "–".to_owned()
    } else {
        format!("{:.2}", a / b)
    }
}

fn short(t: Target) -> &'static str {
    match t {
        Target::Direct => "direct",
        Target::Envoy => "Envoy",
        Target::Waypoint => "waypoint",
    }
}

pub(crate) fn markdown(r: &Results) -> String {
    let sums: Vec<Summary> = r.targets.iter().map(summarize).collect();
    let pairs = ratio_pairs(r);
    let runs = r.targets.first().map_or(0, |t| t.runs.len());
    let mut s = String::new();
    let names: Vec<&str> = r.targets.iter().map(|t| t.target.label()).collect();
    let ratio_names: Vec<String> = pairs
        .iter()
        .map(|(a, b)| {
            format!(
                "{} / {}",
                short(r.targets[*a].target),
                short(r.targets[*b].target)
            )
        })
        .collect();
    let _ = writeln!(
        s,
        "| measure (median of {runs} runs) | {} | {} |",
        names.join(" | "),
        ratio_names.join(" | ")
    );
    let _ = writeln!(s, "|---|{}", "---:|".repeat(names.len() + pairs.len()));
    type Get = fn(&Summary) -> f64;
    let rows: [(&str, Get, usize, bool); 13] = [
        ("requests/s", |x| x.rps, 0, true),
        ("latency p50, ms", |x| x.p50, 3, true),
        ("latency p99, ms", |x| x.p99, 3, true),
        (
            "non-2xx/3xx responses (sum of runs)",
            |x| x.non_2xx,
            0,
            false,
        ),
        ("socket errors (sum of runs)", |x| x.socket_errors, 0, false),
        ("proxy CPU, ms per 1000 requests", |x| x.proxy_cpu, 1, true),
        ("proxy CPU busy, cores (of 2)", |x| x.proxy_cores, 2, true),
        (
            "proxy context switches per request",
            |x| x.proxy_switches,
            2,
            true,
        ),
        (
            "backend CPU, ms per 1000 requests",
            |x| x.backend_cpu,
            1,
            true,
        ),
        (
            "connections the backend accepted in a run",
            |x| x.accepted,
            0,
            false,
        ),
        (
            "proxy's connections to the backend after a run",
            |x| x.open_after,
            0,
            false,
        ),
        (
            "request head bytes at the backend",
            |x| x.head_bytes,
            0,
            true,
        ),
        (
            "backend socket reads per request",
            |x| x.reads_per_request,
            2,
            true,
        ),
    ];
    for (name, get, prec, with_ratio) in rows {
        let values: Vec<String> = sums.iter().map(|x| cell(get(x), prec)).collect();
        let ratios: Vec<String> = pairs
            .iter()
            .map(|(a, b)| {
                if with_ratio {
                    ratio(get(&sums[*a]), get(&sums[*b]))
                } else {
                    "–".to_owned()
                }
            })
            .collect();
        let _ = writeln!(
            s,
            "| {name} | {} | {} |",
            values.join(" | "),
            ratios.join(" | ")
        );
    }
    let applied: Vec<&str> = r
        .targets
        .iter()
        .map(|t| match t.route_applied {
            None => "–",
            Some(true) => "yes",
            Some(false) => "**NO**",
        })
        .collect();
    let _ = writeln!(
        s,
        "| route header reached the backend | {} | {} |",
        applied.join(" | "),
        vec!["–"; pairs.len()].join(" | ")
    );
    s.push('\n');
    s.push_str(&memory_table(r, &sums));
    s
}

fn memory_table(r: &Results, sums: &[Summary]) -> String {
    let proxies: Vec<usize> = (0..r.targets.len())
        .filter(|i| r.targets[*i].target != Target::Direct)
        .collect();
    if proxies.is_empty() {
        return String::new();
    }
    let at = |t: Target| r.targets.iter().position(|x| x.target == t);
    let pair = at(Target::Waypoint).zip(at(Target::Envoy));
    let mut s = String::new();
    let names: Vec<&str> = proxies
        .iter()
        .map(|i| r.targets[*i].target.label())
        .collect();
    let ratio_head = if pair.is_some() {
        " waypoint / Envoy |"
    } else {
        ""
    };
    let _ = writeln!(
        s,
        "| resident memory, MiB | {} |{ratio_head}",
        names.join(" | ")
    );
    let _ = writeln!(
        s,
        "|---|{}",
        "---:|".repeat(names.len() + usize::from(pair.is_some()))
    );
    let mib = |k: Option<u64>| k.map_or(f64::NAN, |k| k as f64 / 1024.0);
    type Get<'a> = Box<dyn Fn(usize) -> f64 + 'a>;
    let rows: [(&str, Get<'_>); 4] = [
        (
            "idle after start (VmRSS)",
            Box::new(|i| mib(r.targets[i].rss_idle_kib)),
        ),
        (
            "highest VmRSS during a run (median of runs)",
            Box::new(|i| sums[i].rss_load_kib / 1024.0),
        ),
        (
            "peak by the end (VmHWM)",
            Box::new(|i| mib(r.targets[i].rss_hwm_kib)),
        ),
        (
            "idle 2 s after the last run (VmRSS)",
            Box::new(|i| mib(r.targets[i].rss_after_kib)),
        ),
    ];
    for (name, get) in rows {
        let values: Vec<String> = proxies.iter().map(|i| cell(get(*i), 1)).collect();
        let tail = pair.map_or(String::new(), |(a, b)| {
            format!(" {} |", ratio(get(a), get(b)))
        });
        let _ = writeln!(s, "| {name} | {} |{tail}", values.join(" | "));
    }
    s
}

fn run_json(r: &RunResult) -> Value {
    json!({
        "requests_per_sec": r.wrk.requests_per_sec,
        "p50_ms": r.wrk.p50_ms,
        "p99_ms": r.wrk.p99_ms,
        "requests": r.wrk.requests,
        "non_2xx_3xx": r.wrk.non_2xx_3xx,
        "socket_errors": r.wrk.socket_errors,
        "proxy_cpu_ms_per_1000_requests": r.proxy_cpu_ms_per_1k,
        "proxy_cpu_cores": r.proxy_cores,
        "proxy_context_switches_per_request": r.proxy_switches_per_request,
        "backend_cpu_ms_per_1000_requests": r.backend_cpu_ms_per_1k,
        "proxy_rss_peak_kib": r.proxy_rss_peak_kib,
        "backend_connections_accepted": r.backend.accepted,
        "backend_requests": r.backend.requests,
        "backend_reads": r.backend.reads,
        "backend_head_bytes": r.backend.head_bytes,
        "proxy_upstream_connections_after": r.proxy_upstream_connections,
    })
}

/// Every run and the medians, keyed by target (`direct`, `envoy`, `waypoint`).
pub(crate) fn json(r: &Results) -> Value {
    let mut targets = serde_json::Map::new();
    for t in &r.targets {
        let m = summarize(t);
        let num = |v: f64| if v.is_nan() { Value::Null } else { json!(v) };
        targets.insert(
            t.target.key().to_owned(),
            json!({
                "runs": t.runs.iter().map(run_json).collect::<Vec<_>>(),
                "median": {
                    "requests_per_sec": num(m.rps),
                    "p50_ms": num(m.p50),
                    "p99_ms": num(m.p99),
                    "proxy_cpu_ms_per_1000_requests": num(m.proxy_cpu),
                    "proxy_cpu_cores": num(m.proxy_cores),
                    "proxy_context_switches_per_request": num(m.proxy_switches),
                    "backend_cpu_ms_per_1000_requests": num(m.backend_cpu),
                    "proxy_rss_peak_kib": num(m.rss_load_kib),
                },
                "non_2xx_3xx_total": m.non_2xx,
                "socket_errors_total": m.socket_errors,
                "route_applied": t.route_applied,
                "rss_idle_kib": t.rss_idle_kib,
                "rss_hwm_kib": t.rss_hwm_kib,
                "rss_after_kib": t.rss_after_kib,
                "log_lines": t.log_lines,
            }),
        );
    }
    json!({ "service_port": r.service_port, "targets": targets })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(t: Target, rps: f64, p50: f64, cpu: Option<f64>, rss: Option<u64>) -> TargetResults {
        TargetResults {
            target: t,
            runs: vec![RunResult {
                wrk: Report {
                    requests_per_sec: rps,
                    p50_ms: p50,
                    p99_ms: p50 * 4.0,
                    requests: 1000,
                    non_2xx_3xx: if t == Target::Waypoint { 3 } else { 0 },
                    socket_errors: 0,
                },
                proxy_cpu_ms_per_1k: cpu,
                proxy_cores: cpu.map(|c| c / 40.0),
                proxy_switches_per_request: cpu.map(|_| 1.0),
                backend_cpu_ms_per_1k: 10.0,
                proxy_rss_peak_kib: rss,
                backend: Stats {
                    accepted: 50,
                    requests: 1000,
                    reads: 1000,
                    ..Stats::default()
                },
                proxy_upstream_connections: None,
            }],
            route_applied: (t != Target::Direct).then_some(true),
            rss_idle_kib: rss,
            rss_hwm_kib: rss,
            rss_after_kib: rss,
            log_lines: vec![],
        }
    }

    #[test]
    fn tables_have_ratios() {
        let r = Results {
            targets: vec![
                target(Target::Direct, 40000.0, 1.0, None, None),
                target(Target::Envoy, 20000.0, 2.0, Some(40.0), Some(40 * 1024)),
                target(Target::Waypoint, 10000.0, 4.0, Some(80.0), Some(10 * 1024)),
            ],
            service_port: 8080,
        };
        let t = markdown(&r);
        assert!(
            t.contains("| measure (median of 1 runs) | direct | Envoy | our waypoint | waypoint / direct | Envoy / direct | waypoint / Envoy |"),
            "{t}"
        );
        assert!(
            t.contains("| requests/s | 40000 | 20000 | 10000 | 0.25 | 0.50 | 0.50 |"),
            "{t}"
        );
        assert!(
            t.contains("| non-2xx/3xx responses (sum of runs) | 0 | 0 | 3 | – | – | – |"),
            "{t}"
        );
        assert!(
            t.contains("| proxy CPU, ms per 1000 requests | – | 40.0 | 80.0 | – | – | 2.00 |"),
            "{t}"
        );
        assert!(
            t.contains("| idle after start (VmRSS) | 40.0 | 10.0 | 0.25 |"),
            "{t}"
        );
        let j = json(&r);
        assert_eq!(j["targets"]["waypoint"]["non_2xx_3xx_total"], 3.0);
    }

    #[test]
    fn direct_and_envoy_only() {
        let r = Results {
            targets: vec![
                target(Target::Direct, 40000.0, 1.0, None, None),
                target(Target::Envoy, 20000.0, 2.0, Some(40.0), Some(4096)),
            ],
            service_port: 8080,
        };
        let t = markdown(&r);
        assert!(t.contains("| requests/s | 40000 | 20000 | 0.50 |"), "{t}");
        assert!(t.contains("| resident memory, MiB | Envoy |\n"), "{t}");
    }
}
