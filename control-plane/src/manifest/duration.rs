//! Duration strings as Kubernetes, Gateway API and Istio write them: one or more
//! `<number><unit>` parts (`1s`, `500ms`, `1m30s`, `1.5h`), units `h`, `m`, `s`, `ms`, `us`, `ns`.

use std::time::Duration;

/// Parses `text`; the error says what is wrong, for a [`super::ManifestError`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = |why: &str| format!("{text:?} is not a duration ({why}; e.g. 1s, 500ms, 1m30s)");
    if text.is_empty() {
        return Err(bad("empty"));
    }
    let mut rest = text;
    let mut nanos: u128 = 0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| bad("missing unit"))?;
        if num_len == 0 {
            return Err(bad("expected a number"));
        }
        let (num, tail) = rest.split_at(num_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale: u128 = match unit {
            "h" => 3_600_000_000_000,
            "m" => 60_000_000_000,
            "s" => 1_000_000_000,
            "ms" => 1_000_000,
            "us" | "µs" => 1_000,
            "ns" => 1,
            _ => return Err(bad(&format!("unknown unit {unit:?}"))),
        };
        nanos += scaled(num, scale).ok_or_else(|| bad(&format!("bad number {num:?}")))?;
        rest = tail;
    }
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| bad("too long"))?;
    // The remainder is below 10^9, so it fits.
    let sub = u32::try_from(nanos % 1_000_000_000).unwrap_or(0);
    Ok(Duration::new(secs, sub))
}

/// `num` (digits with at most one '.') times `scale`, in whole nanoseconds.
fn scaled(num: &str, scale: u128) -> Option<u128> {
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() && frac.is_empty() || frac.contains('.') || int.len() > 12 {
        return None;
    }
    let whole: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut total = whole.checked_mul(scale)?;
    let mut unit = scale;
    for d in frac.chars().take(18) {
        unit /= 10;
        total += u128::from(d.to_digit(10)?) * unit;
    }
    Some(total)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubernetes_durations() {
        let ok = [
            ("1s", Duration::from_secs(1)),
            ("500ms", Duration::from_millis(500)),
            ("1m", Duration::from_secs(60)),
            ("1m30s", Duration::from_secs(90)),
            ("1.5h", Duration::from_secs(5400)),
            ("0.25s", Duration::from_millis(250)),
            ("0s", Duration::ZERO),
            ("10us", Duration::from_micros(10)),
        ];
        for (text, want) in ok {
            assert_eq!(parse_duration(text).unwrap(), want, "{text}");
        }
        for bad in ["", "1", "s", "1d", "-1s", "1..2s", "1 s", "ms5"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should fail");
        }
    }
}
