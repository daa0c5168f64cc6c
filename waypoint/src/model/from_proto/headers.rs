//! `*_headers_to_add` / `*_headers_to_remove` → [`HeaderChanges`].

use http::{HeaderName, HeaderValue};
use xds::pb::envoy::config::core::v3::{
    HeaderValueOption, header_value_option::HeaderAppendAction as Action,
};

use super::{At, ModelError};
use crate::model::HeaderChanges;

/// Pseudo-headers and `host` cannot be added or removed (as in Envoy).
fn name(at: &At<'_>, raw: &str) -> Result<HeaderName, ModelError> {
    let lower = raw.to_ascii_lowercase();
    if lower.starts_with(':') || lower == "host" {
        return Err(at.invalid(format_args!("{raw:?} cannot be modified")));
    }
    HeaderName::from_bytes(lower.as_bytes())
        .map_err(|_| at.invalid(format_args!("{raw:?} is not a header name")))
}

/// The literal value: `%%` is a `%`; any other `%` starts one of Envoy's formatters
/// (`%DOWNSTREAM_REMOTE_ADDRESS%`, …), which the waypoint does not expand.
fn literal(at: &At<'_>, raw: &[u8]) -> Result<Vec<u8>, ModelError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match (raw[i], raw.get(i + 1)) {
            (b'%', Some(b'%')) => {
                out.push(b'%');
                i += 2;
            }
            (b'%', _) => return Err(at.unsupported("header value formatters (%…%)")),
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// One addition, or `None` for an empty value without `keep_empty_value` (Envoy skips those).
fn addition(
    at: &At<'_>,
    o: &HeaderValueOption,
) -> Result<Option<(HeaderName, HeaderValue, bool)>, ModelError> {
    let Some(h) = &o.header else {
        return Err(at.f("header").missing());
    };
    let key = name(&at.f("header.key"), &h.key)?;
    let raw = if h.raw_value.is_empty() {
        h.value.as_bytes()
    } else {
        h.raw_value.as_slice()
    };
    let bytes = literal(&at.f("header.value"), raw)?;
    if bytes.is_empty() && !o.keep_empty_value {
        return Ok(None);
    }
    let value = HeaderValue::from_bytes(&bytes)
        .map_err(|_| at.f("header.value").invalid("not a valid header value"))?;
    #[allow(deprecated)]
    let deprecated_append = o.append.as_ref().map(|b| b.value);
    let append = match (Action::try_from(o.append_action), deprecated_append) {
        (Ok(Action::AppendIfExistsOrAdd), None) => true,
        (Ok(Action::AppendIfExistsOrAdd), Some(append)) => append,
        (Ok(Action::OverwriteIfExistsOrAdd), None) => false,
        (Ok(_), Some(_)) => {
            return Err(at.invalid("both append and append_action are set"));
        }
        (Ok(a @ (Action::AddIfAbsent | Action::OverwriteIfExists)), None) => {
            return Err(at
                .f("append_action")
                .unsupported(format_args!("{}", a.as_str_name())));
        }
        (Err(_), _) => {
            return Err(at
                .f("append_action")
                .invalid(format_args!("unknown action {}", o.append_action)));
        }
    };
    Ok(Some((key, value, append)))
}

/// The changes at one level (route, weighted cluster, virtual host, route configuration).
pub(super) fn changes(
    at: &At<'_>,
    add_field: &str,
    add: &[HeaderValueOption],
    remove_field: &str,
    remove: &[String],
) -> Result<HeaderChanges, ModelError> {
    let mut out = HeaderChanges::default();
    for (i, o) in add.iter().enumerate() {
        if let Some(a) = addition(&at.f(add_field).i(i, ""), o)? {
            out.add.push(a);
        }
    }
    for (i, r) in remove.iter().enumerate() {
        out.remove.push(name(&at.f(remove_field).i(i, ""), r)?);
    }
    Ok(out)
}

/// `first` then `then` as one level: removals of both, then the additions of `first` that
/// `then` does not remove, then those of `then`. Exactly equivalent to applying the two in turn.
pub(super) fn compose(first: &HeaderChanges, then: &HeaderChanges) -> HeaderChanges {
    let mut remove = first.remove.clone();
    for n in &then.remove {
        if !remove.contains(n) {
            remove.push(n.clone());
        }
    }
    let add = first
        .add
        .iter()
        .filter(|(n, _, _)| !then.remove.contains(n))
        .chain(&then.add)
        .cloned()
        .collect();
    HeaderChanges { remove, add }
}
