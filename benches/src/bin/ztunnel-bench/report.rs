//! What a bench run collected, and its markdown tables: medians over the repetitions, the
//! meshed/direct ratio, and ztunnel's RSS per node.

use benches::machine::median;
use std::fmt::Write;

use crate::iperf::Throughput;
use crate::rr::Latency;

/// The measurements of one path (direct or through ztunnel), one entry per repetition.
#[derive(Debug, Default)]
pub(crate) struct PathResults {
    pub(crate) throughput: Vec<Throughput>,
    pub(crate) latency: Vec<Latency>,
}

#[derive(Debug, Default)]
pub(crate) struct Results {
    pub(crate) direct: PathResults,
    pub(crate) meshed: PathResults,
    /// Node names, in the order of the RSS vectors.
    pub(crate) nodes: Vec<String>,
    pub(crate) rss_idle_kib: Vec<u64>,
    /// Per repetition: the peak per node during the meshed iperf3 run.
    pub(crate) rss_load_kib: Vec<Vec<u64>>,
    pub(crate) rss_after_kib: Vec<u64>,
}

struct Medians {
    mib: f64,
    gbit: f64,
    retrans: f64,
    p50: f64,
    p99: f64,
}

fn medians(p: &PathResults) -> Medians {
    let t = |f: fn(&Throughput) -> f64| median(p.throughput.iter().map(f).collect());
    let l = |f: fn(&Latency) -> f64| median(p.latency.iter().map(f).collect());
    Medians {
        mib: t(Throughput::mib_per_sec),
        gbit: t(Throughput::gbit_per_sec),
        retrans: t(|x| x.retransmits as f64),
        p50: l(|x| x.p50_us),
        p99: l(|x| x.p99_us),
    }
}

fn mib(kib: f64) -> String {
    format!("{:.1}", kib / 1024.0)
}

pub(crate) fn markdown(r: &Results) -> String {
    let (d, m) = (medians(&r.direct), medians(&r.meshed));
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| measure (median of {} runs) | direct | through ztunnel | ztunnel / direct |",
        r.direct.throughput.len()
    );
    let _ = writeln!(s, "|---|---:|---:|---:|");
    let rows = [
        ("iperf3 throughput, MiB/s", d.mib, m.mib, 0),
        ("iperf3 throughput, Gbit/s", d.gbit, m.gbit, 2),
        ("iperf3 retransmits", d.retrans, m.retrans, 0),
        ("64 B request/response p50, µs", d.p50, m.p50, 1),
        ("64 B request/response p99, µs", d.p99, m.p99, 1),
    ];
    for (name, dv, mv, prec) in rows {
        let ratio = if dv > 0.0 {
            format!("{:.2}", mv / dv)
        } else {
            "–".to_owned()
        };
        let _ = writeln!(s, "| {name} | {dv:.prec$} | {mv:.prec$} | {ratio} |");
    }
    let _ = writeln!(s);
    let header: Vec<String> = r.nodes.iter().map(|n| format!("{n} MiB")).collect();
    let _ = writeln!(s, "| ztunnel RSS | {} |", header.join(" | "));
    let _ = writeln!(s, "|---|{}", "---:|".repeat(r.nodes.len()));
    let load: Vec<f64> = (0..r.nodes.len())
        .map(|i| median(r.rss_load_kib.iter().map(|run| run[i] as f64).collect()))
        .collect();
    let row = |v: Vec<f64>| v.into_iter().map(mib).collect::<Vec<_>>().join(" | ");
    let idle = |v: &[u64]| row(v.iter().map(|k| *k as f64).collect());
    let _ = writeln!(
        s,
        "| idle, before any traffic | {} |",
        idle(&r.rss_idle_kib)
    );
    let _ = writeln!(
        s,
        "| peak during the meshed iperf3 run (median of runs) | {} |",
        row(load)
    );
    let _ = writeln!(s, "| idle, after all runs | {} |", idle(&r.rss_after_kib));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_ratio() {
        let path = |bps: f64, p50: f64| PathResults {
            throughput: vec![Throughput {
                bytes_per_sec: bps,
                retransmits: 0,
            }],
            latency: vec![Latency {
                p50_us: p50,
                p99_us: p50 * 2.0,
            }],
        };
        let r = Results {
            direct: path(2.0 * 1048576.0, 10.0),
            meshed: path(1048576.0, 30.0),
            nodes: vec!["node1".into()],
            rss_idle_kib: vec![2048],
            rss_load_kib: vec![vec![4096]],
            rss_after_kib: vec![3072],
        };
        let t = markdown(&r);
        assert!(
            t.contains("| iperf3 throughput, MiB/s | 2 | 1 | 0.50 |"),
            "{t}"
        );
        assert!(
            t.contains("| 64 B request/response p50, µs | 10.0 | 30.0 | 3.00 |"),
            "{t}"
        );
        assert!(t.contains("| idle, before any traffic | 2.0 |"), "{t}");
        assert!(t.contains("(median of runs) | 4.0 |"), "{t}");
    }
}
