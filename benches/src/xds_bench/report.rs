//! The markdown tables: one column per mesh size, each cell the median of the runs with the
//! range in brackets when there was more than one run.

use std::fmt::Write as _;

use super::bench::{SizeResult, ms};
use super::inproc::Change;

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// `median [min–max]` with `digits` decimals.
pub(crate) fn cell(v: Vec<f64>, digits: usize) -> String {
    if v.is_empty() {
        return "–".into();
    }
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let n = v.len();
    let m = median(v);
    if n == 1 {
        format!("{m:.digits$}")
    } else {
        format!("{m:.digits$} [{lo:.digits$}–{hi:.digits$}]")
    }
}

const MIB: f64 = 1024.0 * 1024.0;

type Cell = Box<dyn Fn(&SizeResult) -> String>;

fn row(name: impl Into<String>, f: impl Fn(&SizeResult) -> String + 'static) -> (String, Cell) {
    (name.into(), Box::new(f))
}

/// A row of one value per run, in milliseconds or MiB.
fn runs<T>(
    name: impl Into<String>,
    digits: usize,
    of: impl Fn(&SizeResult) -> &[T] + 'static,
    value: impl Fn(&T) -> f64 + 'static,
) -> (String, Cell) {
    row(name, move |r| {
        cell(of(r).iter().map(&value).collect(), digits)
    })
}

/// A row over the changes made with `k` clients.
fn changes(name: String, k: usize, value: fn(&Change) -> f64) -> (String, Cell) {
    runs(
        name,
        1,
        move |r| r.changes.get(&k).map_or(&[][..], Vec::as_slice),
        value,
    )
}

fn rows(clients: &[usize]) -> Vec<(String, Cell)> {
    let mut rows = vec![
        row("`Address` resources (workloads + Services)", |r| {
            r.addresses.to_string()
        }),
        row(
            "first read + translate, ms (the control plane's `translate_ms`)",
            |r| format!("{:.1}", r.first_translate_ms),
        ),
        row(
            "of which read files / parse / translate, ms (1 sample)",
            |r| {
                let [a, b, c] = r.breakdown;
                format!("{:.1} / {:.1} / {:.1}", ms(a), ms(b), ms(c))
            },
        ),
        runs(
            "full `Address` push to a raw delta stream, ms",
            1,
            |r| &r.pushes,
            |p| ms(p.time),
        ),
        runs(
            "full push size, MiB",
            2,
            |r| &r.pushes,
            |p| p.bytes as f64 / MIB,
        ),
    ];
    for &k in clients {
        rows.push(runs(
            format!("initial sync, {k} client(s): connect → all ACKed both types, ms"),
            1,
            move |r| r.sync.get(&k).map_or(&[][..], Vec::as_slice),
            |d| ms(*d),
        ));
    }
    for &k in clients {
        rows.extend([
            changes(
                format!("change, {k} client(s): rename → snapshot published, ms"),
                k,
                |c| ms(c.published),
            ),
            changes(
                format!("change, {k} client(s): of which read + translate, ms"),
                k,
                |c| c.translate_ms,
            ),
            changes(
                format!("**change → ACK, {k} client(s): rename → all ACKed, ms**"),
                k,
                |c| ms(c.acked),
            ),
            changes(
                format!("change, {k} client(s): published → all ACKed, ms"),
                k,
                |c| ms(c.acked) - ms(c.published),
            ),
        ]);
    }
    rows.extend([
        runs(
            "baseline: local config, serialize + write, ms",
            1,
            |r| &r.files,
            |f| ms(f.write),
        ),
        runs(
            "baseline: local config, ztunnel `local_config::load`, ms",
            1,
            |r| &r.files,
            |f| ms(f.load),
        ),
        runs(
            "baseline: local config file size, MiB",
            2,
            |r| &r.files,
            |f| f.bytes as f64 / MIB,
        ),
    ]);
    rows
}

fn memory_rows() -> Vec<(String, Cell)> {
    let mib = |kib: u64| kib as f64 / 1024.0;
    vec![
        runs(
            "control-plane RSS, translated, no clients, MiB",
            1,
            |r| &r.memory,
            move |m| mib(m.idle_rss),
        ),
        runs(
            "control-plane RSS after the clients synced, MiB",
            1,
            |r| &r.memory,
            move |m| mib(m.synced_rss),
        ),
        runs(
            "control-plane peak RSS (`VmHWM`) by then, MiB",
            1,
            |r| &r.memory,
            move |m| mib(m.peak),
        ),
        runs(
            "control-plane RSS 2 s after the clients disconnected, MiB",
            1,
            |r| &r.memory,
            move |m| mib(m.after_rss),
        ),
        runs(
            "control-plane RSS after as many new clients synced again, MiB",
            1,
            |r| &r.memory,
            move |m| mib(m.second_rss),
        ),
        runs(
            "initial sync against the binary, ms",
            1,
            |r| &r.memory,
            |m| ms(m.sync),
        ),
    ]
}

fn table(out: &mut String, results: &[SizeResult], rows: Vec<(String, Cell)>) {
    let _ = write!(out, "| measure |");
    for r in results {
        let _ = write!(out, " {} workloads |", r.workloads);
    }
    let _ = write!(out, "\n|---|");
    for _ in results {
        let _ = write!(out, "---:|");
    }
    out.push('\n');
    for (name, f) in rows {
        let _ = write!(out, "| {name} |");
        for r in results {
            let _ = write!(out, " {} |", f(r));
        }
        out.push('\n');
    }
}

pub(crate) fn markdown(results: &[SizeResult], clients: &[usize]) -> String {
    let mut out = String::new();
    table(&mut out, results, rows(clients));
    let k = results.first().map_or(0, |r| r.memory_clients);
    let _ = writeln!(
        out,
        "\nThe `control-plane` binary as a child process, {k} clients:\n"
    );
    table(&mut out, results, memory_rows());
    out
}
