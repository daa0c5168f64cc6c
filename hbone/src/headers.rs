//! Parsing and formatting of HBONE request data (spec §2.3): the CONNECT `:authority`, and
//! the `forwarded`, `baggage` and `traceparent` headers.
//!
//! Pure functions over peer input: bounded, allocation-limited, never panicking. They are
//! fuzzed (`fuzz/`) and swept with pseudo-random input in `headers/tests.rs`.

mod authority;
mod baggage;
mod forwarded;
mod traceparent;

pub use authority::{Authority, parse_authority};
pub use baggage::{Baggage, parse_baggage};
pub use forwarded::{ForwardedElement, format_forwarded, parse_forwarded};
pub use traceparent::{TraceParent, parse_traceparent};

/// Header names HBONE uses.
pub mod names {
    /// W3C baggage.
    pub const BAGGAGE: &str = "baggage";
    /// RFC 7239 forwarded.
    pub const FORWARDED: &str = "forwarded";
    /// W3C trace context.
    pub const TRACEPARENT: &str = "traceparent";
    /// Source network, inner CONNECT of double HBONE only.
    pub const X_FORWARDED_NETWORK: &str = "x-forwarded-network";
}

/// Why a header value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("authority {value:?}: {why}")]
    Authority { value: String, why: &'static str },
    #[error("forwarded header: {0}")]
    Forwarded(&'static str),
    #[error("baggage header: {0}")]
    Baggage(&'static str),
    #[error("traceparent header: {0}")]
    TraceParent(&'static str),
}

#[cfg(test)]
mod tests;
