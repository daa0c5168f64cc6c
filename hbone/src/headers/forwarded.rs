//! RFC 7239 `forwarded`; the tunnel sends `for="<ip:port>"` plus `;host=<service>` when a
//! Service was targeted.

use std::net::SocketAddr;

use super::HeaderError;

const MAX_LEN: usize = 4096;
const MAX_ELEMENTS: usize = 16;

/// One forwarded-element; unknown parameters are ignored, values unquoted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardedElement {
    /// `for=`
    pub for_: Option<String>,
    /// `host=`
    pub host: Option<String>,
    /// `by=`
    pub by: Option<String>,
    /// `proto=`
    pub proto: Option<String>,
}

impl ForwardedElement {
    /// The `for` value as a socket address, when it is one.
    pub fn for_addr(&self) -> Option<SocketAddr> {
        self.for_.as_deref()?.parse().ok()
    }
}

/// The value the tunnel sends.
pub fn format_forwarded(client: SocketAddr, service_host: Option<&str>) -> String {
    match service_host {
        Some(host) => format!("for=\"{client}\";host={host}"),
        None => format!("for=\"{client}\""),
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Splits on `sep` outside quoted strings; errors on an unterminated quote.
fn split_outside_quotes(s: &str, sep: u8) -> Result<Vec<&str>, HeaderError> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, b) in s.bytes().enumerate() {
        match (quoted, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (_, _, b'"') => quoted = !quoted,
            (false, _, b) if b == sep => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if quoted {
        return Err(HeaderError::Forwarded("unterminated quoted string"));
    }
    parts.push(&s[start..]);
    Ok(parts)
}

fn unquote(v: &str) -> Result<String, HeaderError> {
    let Some(inner) = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
        if !v.is_empty() && v.bytes().all(is_tchar) {
            return Ok(v.to_owned());
        }
        return Err(HeaderError::Forwarded("bad token value"));
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(
                chars
                    .next()
                    .ok_or(HeaderError::Forwarded("dangling escape"))?,
            ),
            '"' => return Err(HeaderError::Forwarded("stray quote")),
            c if c.is_control() => return Err(HeaderError::Forwarded("control character")),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Parses a `forwarded` header into its elements (at most 16, 4 KiB).
pub fn parse_forwarded(value: &str) -> Result<Vec<ForwardedElement>, HeaderError> {
    if value.len() > MAX_LEN {
        return Err(HeaderError::Forwarded("too long"));
    }
    let mut elements = Vec::new();
    for element in split_outside_quotes(value, b',')? {
        if elements.len() == MAX_ELEMENTS {
            return Err(HeaderError::Forwarded("too many elements"));
        }
        let mut out = ForwardedElement::default();
        for pair in split_outside_quotes(element, b';')? {
            let pair = pair.trim_matches([' ', '\t']);
            if pair.is_empty() {
                continue;
            }
            let (key, val) = pair
                .split_once('=')
                .ok_or(HeaderError::Forwarded("pair without ="))?;
            if key.is_empty() || !key.bytes().all(is_tchar) {
                return Err(HeaderError::Forwarded("bad parameter name"));
            }
            let val = Some(unquote(val)?);
            match key.to_ascii_lowercase().as_str() {
                "for" => out.for_ = val,
                "host" => out.host = val,
                "by" => out.by = val,
                "proto" => out.proto = val,
                _ => {}
            }
        }
        elements.push(out);
    }
    Ok(elements)
}
