//! Exposition formats for a metrics registry, shared by the node tunnel and the waypoint: OpenMetrics 1.0 text
//! (prometheus-client's native output) and the older Prometheus text format 0.0.4 for scrapers that do not ask for
//! OpenMetrics.
//!
//! Owns: content negotiation from the `Accept` header and the OpenMetrics → 0.0.4 rewrite.
//! Does not own: the HTTP servers that serve them or metric names (each component's telemetry module).
//!
//! The rewrite to 0.0.4, line by line:
//! * `# EOF` is dropped (0.0.4 has no terminator).
//! * Counters: OpenMetrics names the family `foo` in `# HELP`/`# TYPE` while samples are `foo_total`. A 0.0.4
//!   parser matches metadata to samples by exact name, so the family would be lost (its samples become untyped).
//!   `# HELP`/`# TYPE` lines of counters are renamed to `foo_total`, as Prometheus' Go client writes them.
//! * `unknown` becomes `untyped`; `info` families (`foo` with sample `foo_info`) become gauges named `foo_info`.
//! * `# UNIT` lines are dropped (0.0.4 has none).
//!
//! Exemplars and `_created` samples are not used by this crate, so they are not rewritten.

use prometheus_client::registry::Registry;

/// `Content-Type` of OpenMetrics text.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// `Content-Type` of Prometheus text 0.0.4.
pub const PROMETHEUS_TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metrics exposition format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text.
    OpenMetrics,
    /// Prometheus text 0.0.4.
    PrometheusText,
}

impl Format {
    /// OpenMetrics when the `Accept` header lists `application/openmetrics-text` with a non-zero quality,
    /// otherwise Prometheus text.
    pub fn negotiate(accept: Option<&str>) -> Self {
        let wants_openmetrics = accept.is_some_and(|accept| {
            accept.split(',').any(|range| {
                let mut params = range.split(';').map(str::trim);
                let media = params.next().unwrap_or_default();
                media.eq_ignore_ascii_case("application/openmetrics-text")
                    && params.all(|p| !is_zero_quality(p))
            })
        });
        if wants_openmetrics {
            Self::OpenMetrics
        } else {
            Self::PrometheusText
        }
    }

    /// The `Content-Type` of this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            Self::PrometheusText => PROMETHEUS_TEXT_CONTENT_TYPE,
        }
    }

    /// Encodes `registry` in this format.
    pub fn encode(self, registry: &Registry) -> Result<String, std::fmt::Error> {
        let mut openmetrics = String::new();
        prometheus_client::encoding::text::encode(&mut openmetrics, registry)?;
        Ok(match self {
            Self::OpenMetrics => openmetrics,
            Self::PrometheusText => openmetrics_to_prometheus_text(&openmetrics),
        })
    }
}

fn is_zero_quality(param: &str) -> bool {
    param
        .split_once('=')
        .filter(|(key, _)| key.trim().eq_ignore_ascii_case("q"))
        .and_then(|(_, value)| value.trim().parse::<f32>().ok())
        .is_some_and(|q| q <= 0.0)
}

/// Rewrites OpenMetrics text (as prometheus-client writes it: `# HELP` directly followed by `# TYPE`) into
/// Prometheus text 0.0.4. See the module docs for the rules.
pub fn openmetrics_to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut pending_help: Option<&str> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(help) = line.strip_prefix("# HELP ") {
            flush_help(&mut out, pending_help.take(), None);
            pending_help = Some(help);
            continue;
        }
        if let Some(type_line) = line.strip_prefix("# TYPE ") {
            let (name, kind) = type_line.rsplit_once(' ').unwrap_or((type_line, "untyped"));
            let (name, kind) = match kind {
                "counter" if !name.ends_with("_total") => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                "unknown" => (name.to_owned(), "untyped"),
                other => (name.to_owned(), other),
            };
            flush_help(&mut out, pending_help.take(), Some(&name));
            out.push_str("# TYPE ");
            out.push_str(&name);
            out.push(' ');
            out.push_str(kind);
            out.push('\n');
            continue;
        }
        flush_help(&mut out, pending_help.take(), None);
        out.push_str(line);
        out.push('\n');
    }
    flush_help(&mut out, pending_help, None);
    out
}

/// Writes a buffered `# HELP <name> <text>` line, renamed to `rename` when given.
fn flush_help(out: &mut String, help: Option<&str>, rename: Option<&str>) {
    let Some(help) = help else { return };
    let (name, text) = help.split_once(' ').unwrap_or((help, ""));
    out.push_str("# HELP ");
    out.push_str(rename.unwrap_or(name));
    out.push(' ');
    out.push_str(text);
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_format_from_accept() {
        let cases: &[(Option<&str>, Format)] = &[
            (None, Format::PrometheusText),
            (Some("*/*"), Format::PrometheusText),
            (Some("text/plain;version=0.0.4"), Format::PrometheusText),
            (Some("application/openmetrics-text"), Format::OpenMetrics),
            (
                Some(
                    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,\
                     text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                ),
                Format::OpenMetrics,
            ),
            (
                Some("Application/OpenMetrics-Text; q=0"),
                Format::PrometheusText,
            ),
            (
                Some("text/plain, application/openmetrics-text; q=0.3"),
                Format::OpenMetrics,
            ),
        ];
        for (accept, want) in cases {
            assert_eq!(Format::negotiate(*accept), *want, "accept: {accept:?}");
        }
    }

    #[test]
    fn rewrites_openmetrics_for_prometheus_text() {
        let input = "# HELP a_things Things seen.\n\
                     # TYPE a_things counter\n\
                     a_things_total{k=\"v\"} 3\n\
                     # HELP b_open Open now.\n\
                     # TYPE b_open gauge\n\
                     b_open 2\n\
                     # HELP c_build Build.\n\
                     # TYPE c_build info\n\
                     c_build_info{tag=\"1\"} 1\n\
                     # HELP d_raw Raw.\n\
                     # TYPE d_raw unknown\n\
                     # UNIT d_raw seconds\n\
                     d_raw 1\n\
                     # EOF\n";
        let want = "# HELP a_things_total Things seen.\n\
                    # TYPE a_things_total counter\n\
                    a_things_total{k=\"v\"} 3\n\
                    # HELP b_open Open now.\n\
                    # TYPE b_open gauge\n\
                    b_open 2\n\
                    # HELP c_build_info Build.\n\
                    # TYPE c_build_info gauge\n\
                    c_build_info{tag=\"1\"} 1\n\
                    # HELP d_raw Raw.\n\
                    # TYPE d_raw untyped\n\
                    d_raw 1\n";
        assert_eq!(openmetrics_to_prometheus_text(input), want);
    }
}
