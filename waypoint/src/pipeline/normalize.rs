//! Path normalisation before routing and authorization (Istio's default `BASE`, Envoy's
//! `normalize_path`): percent-escapes of unreserved characters are decoded and dot segments
//! removed (RFC 3986 §6.2.2.2 and §5.2.4), so `/a/../admin` and `/%61dmin` meet the same routes
//! and policies as `/admin` — and the upstream receives the normalised path. The query is kept
//! as sent.

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// Decodes `%XX` where it names an unreserved character; other escapes are upper-cased.
fn decode_unreserved(path: &str) -> String {
    let b = path.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            let c = h * 16 + l;
            if unreserved(c) {
                out.push(c);
            } else {
                out.push(b'%');
                out.push(b[i + 1].to_ascii_uppercase());
                out.push(b[i + 2].to_ascii_uppercase());
            }
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// RFC 3986 §5.2.4 on an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing = false;
    for (i, s) in segments.iter().enumerate() {
        match *s {
            "." => trailing = i == last,
            ".." => {
                out.pop();
                trailing = i == last;
            }
            s => {
                out.push(s);
                trailing = false;
            }
        }
    }
    let mut p = String::with_capacity(path.len());
    for s in &out {
        p.push('/');
        p.push_str(s);
    }
    if trailing || p.is_empty() {
        p.push('/');
    }
    p
}

/// The normalised `path?query` (a path not starting with `/` is left alone, e.g. `*`).
pub fn normalize(path_and_query: &str) -> String {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    if !path.starts_with('/') {
        return path_and_query.to_owned();
    }
    let mut p = remove_dot_segments(&decode_unreserved(path));
    if let Some(q) = query {
        p.push('?');
        p.push_str(q);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn dot_segments_and_escapes_cannot_dodge_a_path_rule() {
        for (input, want) in [
            ("/admin", "/admin"),
            ("/a/../admin", "/admin"),
            ("/./admin", "/admin"),
            ("/%61dmin/x", "/admin/x"),
            ("/%2e%2e/admin", "/admin"),
            ("/a/b/../../admin?x=/../y", "/admin?x=/../y"),
            ("/../../..", "/"),
            ("/a/.", "/a/"),
            ("/a/b/..", "/a/"),
            ("/a%2fb", "/a%2Fb"),
            ("/", "/"),
            ("/a//b", "/a//b"),
            ("*", "*"),
            ("/%zz", "/%zz"),
            ("/%", "/%"),
        ] {
            assert_eq!(normalize(input), want, "{input}");
        }
    }
}
