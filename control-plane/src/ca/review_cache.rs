//! A short-lived cache of successful token reviews, so a burst of CSRs from one node agent
//! costs the API server one `TokenReview` rather than one per certificate.
//!
//! Entries live `min(MAX_AGE, time until the token's own exp)` and are keyed by a keyed hash of
//! the token (as the API server's own token cache does), so bearer tokens are not kept in
//! memory. Failures are never cached: the caller reviews again next time.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hbone::ca::Caller;
use tokio::time::Instant;

/// Longest a successful review is trusted without asking the API server again.
pub(super) const MAX_AGE: Duration = Duration::from_secs(60);
/// Most tokens remembered; beyond it, new reviews are not cached until old ones expire.
const CAPACITY: usize = 4096;

/// Successful reviews: token key → caller, until a deadline.
pub(super) struct ReviewCache {
    /// Per-process random key of the token hash.
    key: std::collections::hash_map::RandomState,
    entries: Mutex<HashMap<u128, (Caller, Instant)>>,
}

impl ReviewCache {
    pub(super) fn new() -> Self {
        Self {
            key: std::collections::hash_map::RandomState::new(),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// 128 bits of a keyed hash of `token`: two domain-separated 64-bit halves.
    fn key(&self, token: &str) -> u128 {
        let hi = self.key.hash_one((0u8, token));
        let lo = self.key.hash_one((1u8, token));
        (u128::from(hi) << 64) | u128::from(lo)
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<u128, (Caller, Instant)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The caller `token` was reviewed as, if that review is still fresh at `now`.
    pub(super) fn get(&self, token: &str, now: Instant) -> Option<Caller> {
        let key = self.key(token);
        let mut entries = self.entries();
        match entries.get(&key) {
            Some((caller, until)) if now < *until => Some(caller.clone()),
            Some(_) => {
                entries.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Remembers `caller` for `token` until `now + lifetime(token)`; not at all when that is
    /// zero or the cache is full of fresh entries.
    pub(super) fn insert(&self, token: &str, caller: Caller, now: Instant, wall: SystemTime) {
        let ttl = lifetime(token, wall);
        if ttl.is_zero() {
            return;
        }
        let key = self.key(token);
        let mut entries = self.entries();
        if entries.len() >= CAPACITY {
            entries.retain(|_, (_, until)| now < *until);
            if entries.len() >= CAPACITY {
                tracing::debug!(entries = entries.len(), "token review cache full");
                return;
            }
        }
        entries.insert(key, (caller, now + ttl));
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries().len()
    }
}

/// How long a review of `token` may be reused, at wall-clock time `now`: [`MAX_AGE`], or less
/// when the token (a JWT) expires sooner. The token was just accepted by the API server, so its
/// payload is only read here, not verified.
pub(super) fn lifetime(token: &str, now: SystemTime) -> Duration {
    match jwt_expiry(token) {
        Some(exp) => exp.duration_since(now).unwrap_or_default().min(MAX_AGE),
        None => MAX_AGE,
    }
}

/// The `exp` claim of a JWT, if `token` is one and has it.
fn jwt_expiry(token: &str) -> Option<SystemTime> {
    let payload = token.split('.').nth(1)?;
    let json = base64url_decode(payload)?;
    let claims: serde_json::Value = serde_json::from_slice(&json).ok()?;
    let exp = claims.get("exp")?.as_u64()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(exp))
}

/// Unpadded (or padded) base64url, as JWT segments are; `None` on anything else.
fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in text.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // A single leftover sextet cannot encode a byte.
    (bits < 6).then_some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use hbone::Identity;

    fn caller(sa: &str) -> Caller {
        Caller {
            identity: Identity::new("cluster.local", "default", sa).unwrap(),
            node: None,
        }
    }

    fn b64(bytes: &[u8]) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            }
        }
        out
    }

    fn jwt(claims: &serde_json::Value) -> String {
        format!(
            "{}.{}.signature",
            b64(br#"{"alg":"RS256"}"#),
            b64(claims.to_string().as_bytes())
        )
    }

    #[test]
    fn base64url_round_trips() {
        for text in [
            "",
            "f",
            "fo",
            "foo",
            "foob",
            "fooba",
            "foobar",
            "\u{ff}\u{fe}?>",
        ] {
            assert_eq!(
                base64url_decode(&b64(text.as_bytes())).unwrap(),
                text.as_bytes()
            );
        }
        assert_eq!(base64url_decode("Zm9vYg==").unwrap(), b"foob");
        for bad in ["Zm9v+", "Zm9v/", "A", "Zm9vY", "a.b"] {
            assert!(base64url_decode(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn lifetime_is_the_max_age_or_the_token_expiry() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let at = |secs: u64| jwt(&serde_json::json!({"exp": 1_700_000_000 + secs, "sub": "x"}));
        let cases = [
            (at(3600), MAX_AGE),
            (at(30), Duration::from_secs(30)),
            (at(0), Duration::ZERO),
            (
                jwt(&serde_json::json!({"exp": 1_600_000_000})),
                Duration::ZERO,
            ),
            (jwt(&serde_json::json!({"sub": "no exp"})), MAX_AGE),
            (jwt(&serde_json::json!({"exp": "soon"})), MAX_AGE),
            ("opaque-legacy-token".to_string(), MAX_AGE),
            ("a.!!!.c".to_string(), MAX_AGE),
        ];
        for (token, want) in cases {
            assert_eq!(lifetime(&token, now), want, "{token}");
        }
    }

    #[test]
    fn entries_expire_and_tokens_do_not_collide() {
        let cache = ReviewCache::new();
        let t0 = Instant::now();
        let wall = SystemTime::now();
        cache.insert("token-a", caller("a"), t0, wall);
        cache.insert("token-b", caller("b"), t0, wall);
        assert_eq!(cache.get("token-a", t0), Some(caller("a")));
        assert_eq!(cache.get("token-b", t0 + MAX_AGE / 2), Some(caller("b")));
        assert_eq!(cache.get("token-c", t0), None);
        assert_eq!(cache.get("token-a", t0 + MAX_AGE), None);
        assert_eq!(cache.len(), 1, "the expired entry is dropped on lookup");
    }

    #[test]
    fn a_token_about_to_expire_is_cached_no_longer_than_it_lives() {
        let cache = ReviewCache::new();
        let t0 = Instant::now();
        let wall = SystemTime::now();
        let exp = wall.duration_since(UNIX_EPOCH).unwrap().as_secs() + 10;
        let short = jwt(&serde_json::json!({ "exp": exp }));
        cache.insert(&short, caller("a"), t0, wall);
        assert!(cache.get(&short, t0 + Duration::from_secs(8)).is_some());
        assert!(cache.get(&short, t0 + Duration::from_secs(11)).is_none());
        let expired = jwt(&serde_json::json!({ "exp": exp - 20 }));
        cache.insert(&expired, caller("a"), t0, wall);
        assert!(cache.get(&expired, t0).is_none());
    }

    #[test]
    fn a_full_cache_drops_expired_entries_then_stops_caching() {
        let cache = ReviewCache::new();
        let t0 = Instant::now();
        let wall = SystemTime::now();
        for i in 0..CAPACITY {
            cache.insert(&format!("old-{i}"), caller("a"), t0, wall);
        }
        let later = t0 + MAX_AGE;
        cache.insert("new", caller("b"), later, wall);
        assert_eq!(cache.len(), 1, "expired entries make room");
        for i in 1..CAPACITY {
            cache.insert(&format!("fresh-{i}"), caller("a"), later, wall);
        }
        cache.insert("overflow", caller("c"), later, wall);
        assert_eq!(cache.get("overflow", later), None);
        assert_eq!(cache.get("new", later), Some(caller("b")));
    }
}
