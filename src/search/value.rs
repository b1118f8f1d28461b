//! Parsing of FHIR date/time and decimal text into the ranges used by the index and queries.

/// Offset applied to date/time values without a zone: Asia/Tokyo, UTC+09:00 (no DST).
pub const DEFAULT_OFFSET_MS: i64 = 9 * 3_600_000;

const MS_PER_DAY: i64 = 86_400_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

fn num(s: &str, len: usize) -> Option<i64> {
    (s.len() == len && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
}

/// Parses a FHIR `date`, `dateTime` or `instant` (also the partial forms search allows) into the
/// inclusive epoch-millisecond range its precision covers.
///
/// Input: `YYYY`, `YYYY-MM`, `YYYY-MM-DD`, `YYYY-MM-DDThh:mm[:ss[.fff…]][Z|±hh:mm]`.
/// Output: `Some((lo_ms, hi_ms))`, UTC, inclusive; values without a zone are taken in Asia/Tokyo
/// ([`DEFAULT_OFFSET_MS`]). `None` for anything malformed (bad month/day/hour, garbage).
/// Examples: `2024` → 2023-12-31T15:00:00.000Z ..= 2024-12-31T14:59:59.999Z;
/// `2024-01-05T10:00:00+09:00` → 2024-01-05T01:00:00.000Z ..= 01:00:00.999Z.
/// Spec: FHIR R4 `datatypes.html#dateTime`, `search.html#date` (implicit ranges).
pub fn parse_date_range(s: &str) -> Option<(i64, i64)> {
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut parts = date.split('-');
    let y = num(parts.next()?, 4)?;
    let m = parts.next().map(|p| num(p, 2)).unwrap_or(Some(0))?;
    let d = parts.next().map(|p| num(p, 2)).unwrap_or(Some(0))?;
    if parts.next().is_some() || m > 12 || (m == 0 && d != 0) {
        return None;
    }
    if d > 0 && (m == 0 || d > days_in_month(y, m)) {
        return None;
    }
    let Some(time) = time else {
        // date precision: year, month or day, local midnight
        let (start, end) = if m == 0 {
            (days_from_civil(y, 1, 1), days_from_civil(y + 1, 1, 1))
        } else if d == 0 {
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            (days_from_civil(y, m, 1), days_from_civil(ny, nm, 1))
        } else {
            let s = days_from_civil(y, m, d);
            (s, s + 1)
        };
        return Some((start * MS_PER_DAY - DEFAULT_OFFSET_MS, end * MS_PER_DAY - DEFAULT_OFFSET_MS - 1));
    };
    if d == 0 {
        return None;
    }
    // split zone
    let (clock, offset_ms) = if let Some(c) = time.strip_suffix('Z') {
        (c, 0)
    } else if let Some(p) = time.rfind(['+', '-']) {
        let z = &time[p + 1..];
        let (zh, zm) = z.split_once(':')?;
        let (zh, zm) = (num(zh, 2)?, num(zm, 2)?);
        if zh > 14 || zm > 59 {
            return None;
        }
        let sign = if &time[p..p + 1] == "-" { -1 } else { 1 };
        (&time[..p], sign * (zh * 3_600_000 + zm * 60_000))
    } else {
        (time, DEFAULT_OFFSET_MS)
    };
    let mut hms = clock.split(':');
    let h = num(hms.next()?, 2)?;
    let mi = num(hms.next()?, 2)?;
    let (sec, frac) = match hms.next() {
        None => (None, None),
        Some(sf) => match sf.split_once('.') {
            Some((s, f)) => (Some(num(s, 2)?), Some(f)),
            None => (Some(num(sf, 2)?), None),
        },
    };
    if hms.next().is_some() || h > 23 || mi > 59 || sec.is_some_and(|s| s > 60) {
        return None;
    }
    let base = days_from_civil(y, m, d) * MS_PER_DAY + h * 3_600_000 + mi * 60_000;
    let (start, width) = match (sec, frac) {
        (None, _) => (base, 60_000),
        (Some(s), None) => (base + s.min(59) * 1000, 1000),
        (Some(s), Some(f)) => {
            if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let digits = f.len().min(3);
            let ms: i64 = f[..digits].parse().ok()?;
            let scale = 10i64.pow(3 - digits as u32);
            (base + s.min(59) * 1000 + ms * scale, scale)
        }
    };
    let start = start - offset_ms;
    Some((start, start + width - 1))
}

/// Parses decimal text and returns `(value, lo, hi)` with the half-open range `[lo, hi)` its
/// significant figures imply: `1.50` → `(1.5, 1.495, 1.505)`, `100` → `(100, 99.5, 100.5)`,
/// `1e-3` → `(0.001, 0.0005, 0.0015)`.
///
/// Output: `None` if `s` is not a decimal (`abc`, `1.2.3`, empty, non-finite).
/// Spec: FHIR R4 `search.html#number` (implicit precision).
pub fn decimal_range(s: &str) -> Option<(f64, f64, f64)> {
    let s = s.trim();
    let v: f64 = s.parse().ok()?;
    if !v.is_finite() || !s.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E')) {
        return None;
    }
    let (mant, exp) = match s.find(['e', 'E']) {
        Some(p) => (&s[..p], s[p + 1..].parse::<i32>().ok()?),
        None => (s, 0),
    };
    let decimals = mant.split_once('.').map(|(_, f)| f.len() as i32).unwrap_or(0);
    let half = 0.5 * 10f64.powi(exp - decimals);
    Some((v, v - half, v + half))
}

/// [`decimal_range`] for a JSON number, using its text: with serde_json's `arbitrary_precision`
/// (enabled in this crate) a parsed `1.50` keeps its two decimals → `[1.495, 1.505)`.
pub fn json_number_range(n: &serde_json::Number) -> Option<(f64, f64, f64)> {
    decimal_range(&n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    #[test]
    fn date_precisions() {
        // 2024-01-01T00:00:00Z = 1704067200000
        let y2024 = 1_704_067_200_000;
        assert_eq!(parse_date_range("2024"), Some((y2024 - 9 * H, y2024 + 366 * 24 * H - 9 * H - 1)));
        assert_eq!(parse_date_range("2024-01"), Some((y2024 - 9 * H, y2024 + 31 * 24 * H - 9 * H - 1)));
        assert_eq!(parse_date_range("2024-01-01"), Some((y2024 - 9 * H, y2024 + 15 * H - 1)));
        assert_eq!(parse_date_range("2024-01-01T00:00:00Z"), Some((y2024, y2024 + 999)));
        assert_eq!(parse_date_range("2024-01-01T09:00:00+09:00"), Some((y2024, y2024 + 999)));
        assert_eq!(parse_date_range("2024-01-01T09:00"), Some((y2024, y2024 + 59_999)));
        assert_eq!(parse_date_range("2024-01-01T00:00:00.5Z"), Some((y2024 + 500, y2024 + 599)));
        assert_eq!(parse_date_range("2024-01-01T00:00:00.123456Z"), Some((y2024 + 123, y2024 + 123)));
        assert_eq!(parse_date_range("2023-12-31T19:00:00-05:00"), Some((y2024, y2024 + 999)));
        assert_eq!(parse_date_range("1969-12-31T23:59:59Z"), Some((-1000, -1)));
        for bad in ["", "20", "2024-13", "2024-02-30", "2024-01-01T25:00", "2024-01-01T10", "abcd", "2024-1-1", "2024-01-01T10:00+9"] {
            assert_eq!(parse_date_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn decimal_precisions() {
        let (v, lo, hi) = decimal_range("1.50").unwrap();
        assert_eq!(v, 1.5);
        assert!((lo - 1.495).abs() < 1e-12 && (hi - 1.505).abs() < 1e-12);
        assert_eq!(decimal_range("100"), Some((100.0, 99.5, 100.5)));
        let (_, lo, hi) = decimal_range("1e-3").unwrap();
        assert!((lo - 0.0005).abs() < 1e-15 && (hi - 0.0015).abs() < 1e-15);
        assert_eq!(decimal_range("abc"), None);
        assert_eq!(decimal_range("NaN"), None);
        assert_eq!(decimal_range(""), None);
    }
}
