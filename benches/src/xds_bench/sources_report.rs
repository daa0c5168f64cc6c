//! The `--api` tables: one per mesh size, a row per measure and client count, the file source
//! and the Kubernetes source side by side with their ratio (of medians).

use std::fmt::Write as _;

use super::bench::ms;
use super::report::{cell, median};
use super::sources::{Side, SizeResult};

type Values = fn(&Side) -> Vec<f64>;

/// `(measure, decimals, values)`; a measure without values on one side shows `–`.
const ROWS: &[(&str, usize, Values)] = &[
    (
        "API server start (`kube.sh up`: etcd, kube-apiserver, CRDs), s",
        1,
        |s| s.setup.iter().map(|d| d.as_secs_f64()).collect(),
    ),
    ("create: first write → last write returned, ms", 1, |s| {
        vec![ms(s.ingest.written)]
    }),
    (
        "create: first write → snapshot with all N workloads published, ms",
        1,
        |s| vec![ms(s.ingest.published)],
    ),
    (
        "**create: first write → all K clients ACKed it, ms**",
        1,
        |s| vec![ms(s.ingest.acked)],
    ),
    ("create: last write returned → all K ACKed, ms", 1, |s| {
        vec![ms(s.ingest.acked) - ms(s.ingest.written)]
    }),
    ("create: snapshots published on the way", 0, |s| {
        vec![s.ingest.generations as f64]
    }),
    (
        "create: of those, seen by the bench (`status` keeps only the latest)",
        0,
        |s| vec![s.ingest.seen as f64],
    ),
    (
        "create: the control plane's `translate_ms`, summed over those seen",
        1,
        |s| vec![s.ingest.translate_ms],
    ),
    ("create: CPU s, kube-apiserver", 2, |s| {
        cpu(s, s.cpu.apiserver)
    }),
    ("create: CPU s, etcd", 2, |s| cpu(s, s.cpu.etcd)),
    (
        "create: CPU s, bench process (control plane, clients, writer)",
        2,
        |s| vec![s.cpu.bench],
    ),
    ("change: write → snapshot published, ms", 1, |s| {
        s.changes.iter().map(|c| ms(c.published)).collect()
    }),
    (
        "change: of which the control plane's `translate_ms`",
        1,
        |s| s.changes.iter().map(|c| c.translate_ms).collect(),
    ),
    ("**change → ACK: write → all K ACKed, ms**", 1, |s| {
        s.changes.iter().map(|c| ms(c.acked)).collect()
    }),
    ("change: published → all K ACKed, ms", 1, |s| {
        s.changes
            .iter()
            .map(|c| ms(c.acked) - ms(c.published))
            .collect()
    }),
];

/// The API server's processes' CPU, which only the API side has.
fn cpu(side: &Side, seconds: f64) -> Vec<f64> {
    if side.setup.is_some() {
        vec![seconds]
    } else {
        Vec::new()
    }
}

fn ratio(file: &[f64], api: &[f64]) -> String {
    if file.is_empty() || api.is_empty() {
        return "–".into();
    }
    let (f, a) = (median(file.to_vec()), median(api.to_vec()));
    if f.abs() < f64::EPSILON {
        return "–".into();
    }
    format!("{:.2}", a / f)
}

/// The rows that belong to the size, not to a client count: API column only.
fn size_rows(out: &mut String, size: &SizeResult) {
    let p = &size.publish;
    let a = &size.alone;
    let rows = [
        (
            "Kubernetes source, one publish, step by step (1 sample): store apply of every object (parse) / `Store::objects` (clone) / `pods_on_nodes` / translate, ms".to_owned(),
            format!(
                "{:.1} / {:.1} / {:.1} / {:.1}",
                ms(p.apply),
                ms(p.objects),
                ms(p.pods_on_nodes),
                ms(p.translate)
            ),
        ),
        (
            "API writes alone (a fresh API server, no control plane): first write → last write returned, ms".to_owned(),
            format!("{:.1}", ms(a.written)),
        ),
        (
            "API writes alone: CPU s, kube-apiserver / etcd / bench process (writer)".to_owned(),
            format!(
                "{:.2} / {:.2} / {:.2}",
                a.cpu.apiserver, a.cpu.etcd, a.cpu.bench
            ),
        ),
    ];
    for (name, value) in rows {
        let _ = writeln!(out, "| {name} | – | {value} | – |");
    }
}

pub(crate) fn markdown(sizes: &[SizeResult]) -> String {
    let mut out = String::new();
    for size in sizes {
        let _ = writeln!(
            out,
            "{} workloads (file source vs Kubernetes API source):\n\n| measure | file | API | API / file |\n|---|---:|---:|---:|",
            size.workloads
        );
        size_rows(&mut out, size);
        for p in &size.pairs {
            for (name, digits, values) in ROWS {
                let (file, api) = (values(&p.file), values(&p.api));
                let _ = writeln!(
                    out,
                    "| K={}: {name} | {} | {} | {} |",
                    p.clients,
                    cell(file.clone(), *digits),
                    cell(api.clone(), *digits),
                    ratio(&file, &api)
                );
            }
        }
        out.push('\n');
    }
    out
}
