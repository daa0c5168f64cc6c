//! W3C `traceparent`, version `00`: generated per CONNECT, used by receivers as a log id.

use std::fmt;

use super::HeaderError;

/// A trace context: 128-bit trace id, 64-bit parent id, flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// Trace id (non-zero).
    pub trace_id: u128,
    /// Parent span id (non-zero).
    pub parent_id: u64,
    /// Trace flags.
    pub flags: u8,
}

impl TraceParent {
    /// Random ids, flags `00` (spec §2.3).
    pub fn random() -> Self {
        Self {
            trace_id: rand::random::<u128>().max(1),
            parent_id: rand::random::<u64>().max(1),
            flags: 0,
        }
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.parent_id, self.flags
        )
    }
}

fn lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Parses an exactly-55-character version-00 `traceparent`.
pub fn parse_traceparent(value: &str) -> Result<TraceParent, HeaderError> {
    let err = HeaderError::TraceParent;
    if value.len() != 55 || !value.is_ascii() {
        return Err(err("not 55 ASCII characters"));
    }
    let parts: Vec<&str> = value.split('-').collect();
    let [version, trace, parent, flags] = parts.as_slice() else {
        return Err(err("expected four dash-separated fields"));
    };
    if *version != "00" || trace.len() != 32 || parent.len() != 16 || flags.len() != 2 {
        return Err(err("bad version or field width"));
    }
    if ![trace, parent, flags].iter().all(|f| lower_hex(f)) {
        return Err(err("not lower-case hex"));
    }
    let trace_id = u128::from_str_radix(trace, 16).map_err(|_| err("bad trace id"))?;
    let parent_id = u64::from_str_radix(parent, 16).map_err(|_| err("bad parent id"))?;
    let flags = u8::from_str_radix(flags, 16).map_err(|_| err("bad flags"))?;
    if trace_id == 0 || parent_id == 0 {
        return Err(err("all-zero id"));
    }
    Ok(TraceParent {
        trace_id,
        parent_id,
        flags,
    })
}
