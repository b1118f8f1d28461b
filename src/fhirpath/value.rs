//! FHIRPath system values: partial-precision dates/times, quantities with UCUM / calendar units,
//! decimal helpers (exact `rust_decimal` arithmetic).

use rust_decimal::prelude::*;
use rust_decimal::Decimal;
use std::cmp::Ordering;

/// A Date, DateTime or Time with partial precision.
///
/// `prec`: 1 year, 2 month, 3 day, 4 hour, 5 minute, 6 second, 7 millisecond (a Time uses 4..=7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dt {
    pub y: i32,
    pub mo: u32,
    pub d: u32,
    pub h: u32,
    pub mi: u32,
    pub s: u32,
    pub ms: u32,
    pub prec: u8,
    /// Offset from UTC in minutes.
    pub tz: Option<i32>,
}

impl Dt {
    const ZERO: Dt = Dt {
        y: 0,
        mo: 1,
        d: 1,
        h: 0,
        mi: 0,
        s: 0,
        ms: 0,
        prec: 0,
        tz: None,
    };
}

fn num(s: &str, len: usize) -> Option<(u32, &str)> {
    if s.len() < len || !s.as_bytes()[..len].iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some((s[..len].parse().ok()?, &s[len..]))
}

pub fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

fn parse_date_part(s: &str) -> Option<(Dt, &str)> {
    let mut dt = Dt::ZERO;
    let (y, mut rest) = num(s, 4)?;
    dt.y = y as i32;
    dt.prec = 1;
    if let Some(r) = rest.strip_prefix('-') {
        let (m, r) = num(r, 2)?;
        if !(1..=12).contains(&m) {
            return None;
        }
        dt.mo = m;
        dt.prec = 2;
        rest = r;
        if let Some(r) = rest.strip_prefix('-') {
            let (d, r) = num(r, 2)?;
            if d < 1 || d > days_in_month(dt.y, m) {
                return None;
            }
            dt.d = d;
            dt.prec = 3;
            rest = r;
        }
    }
    Some((dt, rest))
}

/// Parses `HH(:MM(:SS(.fff)?)?)?` into `dt` (precision 4..=7).
fn parse_time_part<'s>(s: &'s str, dt: &mut Dt) -> Option<&'s str> {
    let (h, mut rest) = num(s, 2)?;
    if h > 23 {
        return None;
    }
    dt.h = h;
    dt.prec = 4;
    if let Some(r) = rest.strip_prefix(':') {
        let (m, r) = num(r, 2)?;
        if m > 59 {
            return None;
        }
        dt.mi = m;
        dt.prec = 5;
        rest = r;
        if let Some(r) = rest.strip_prefix(':') {
            let (sec, r) = num(r, 2)?;
            if sec > 59 {
                return None;
            }
            dt.s = sec;
            dt.prec = 6;
            rest = r;
            if let Some(r) = rest.strip_prefix('.') {
                let n = r.bytes().take_while(u8::is_ascii_digit).count();
                if n == 0 {
                    return None;
                }
                let frac = &r[..n.min(3)];
                let mut ms: u32 = frac.parse().ok()?;
                for _ in frac.len()..3 {
                    ms *= 10;
                }
                dt.ms = ms;
                dt.prec = 7;
                rest = &r[n..];
            }
        }
    }
    Some(rest)
}

fn parse_tz(s: &str) -> Option<(Option<i32>, &str)> {
    if let Some(r) = s.strip_prefix('Z') {
        return Some((Some(0), r));
    }
    let sign = match s.as_bytes().first() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return Some((None, s)),
    };
    let (h, r) = num(&s[1..], 2)?;
    let r = r.strip_prefix(':')?;
    let (m, r) = num(r, 2)?;
    if h > 14 || m > 59 {
        return None;
    }
    Some((Some(sign * (h as i32 * 60 + m as i32)), r))
}

/// `YYYY(-MM(-DD)?)?`
pub fn parse_date(s: &str) -> Option<Dt> {
    let (dt, rest) = parse_date_part(s)?;
    rest.is_empty().then_some(dt)
}

/// A FHIR/FHIRPath dateTime: date, optional `T` + partial time + optional zone. A bare date is
/// accepted (date precision). `trailing_t` allows `2015T` / `2015-02T` (literal syntax).
pub fn parse_datetime(s: &str) -> Option<Dt> {
    let (mut dt, rest) = parse_date_part(s)?;
    if rest.is_empty() {
        return Some(dt);
    }
    let rest = rest.strip_prefix('T')?;
    if rest.is_empty() {
        return Some(dt);
    }
    if dt.prec < 3 {
        return None;
    }
    let rest = parse_time_part(rest, &mut dt)?;
    let (tz, rest) = parse_tz(rest)?;
    dt.tz = tz;
    rest.is_empty().then_some(dt)
}

/// `HH(:MM(:SS(.fff)?)?)?` (no zone).
pub fn parse_time(s: &str) -> Option<Dt> {
    let mut dt = Dt::ZERO;
    let rest = parse_time_part(s, &mut dt)?;
    rest.is_empty().then_some(dt)
}

fn fmt_tz(tz: i32) -> String {
    if tz == 0 {
        return "Z".into();
    }
    let sign = if tz < 0 { '-' } else { '+' };
    let a = tz.abs();
    format!("{sign}{:02}:{:02}", a / 60, a % 60)
}

pub fn fmt_date(d: &Dt) -> String {
    match d.prec {
        1 => format!("{:04}", d.y),
        2 => format!("{:04}-{:02}", d.y, d.mo),
        _ => format!("{:04}-{:02}-{:02}", d.y, d.mo, d.d),
    }
}

pub fn fmt_time(d: &Dt) -> String {
    let mut s = format!("{:02}", d.h);
    if d.prec >= 5 {
        s += &format!(":{:02}", d.mi);
    }
    if d.prec >= 6 {
        s += &format!(":{:02}", d.s);
    }
    if d.prec >= 7 {
        s += &format!(".{:03}", d.ms);
    }
    s
}

pub fn fmt_datetime(d: &Dt) -> String {
    let mut s = fmt_date(d);
    if d.prec >= 4 {
        s.push('T');
        s += &fmt_time(d);
        if let Some(tz) = d.tz {
            s += &fmt_tz(tz);
        }
    }
    s
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Milliseconds since the epoch of the local fields (zone not applied).
fn local_ms(d: &Dt) -> i64 {
    let days = days_from_civil(d.y as i64, d.mo.max(1), d.d.max(1));
    ((days * 24 + d.h as i64) * 60 + d.mi as i64) * 60_000 + d.s as i64 * 1000 + d.ms as i64
}

fn set_local_ms(d: &mut Dt, ms: i64) {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (y, m, dd) = civil_from_days(days);
    d.y = y as i32;
    d.mo = m;
    d.d = dd;
    d.h = (rem / 3_600_000) as u32;
    d.mi = (rem / 60_000 % 60) as u32;
    d.s = (rem / 1000 % 60) as u32;
    d.ms = (rem % 1000) as u32;
}

fn to_utc(d: &Dt) -> Dt {
    match d.tz {
        Some(tz) if d.prec >= 4 && tz != 0 => {
            let mut u = *d;
            set_local_ms(&mut u, local_ms(d) - tz as i64 * 60_000);
            u.tz = Some(0);
            u
        }
        _ => *d,
    }
}

/// Orders two dates/times per FHIRPath §6.2: `None` when the answer depends on missing
/// precision (or only one side has a zone). Seconds and milliseconds are one precision.
pub fn dt_cmp(a: &Dt, b: &Dt) -> Option<Ordering> {
    let (a, b) = if a.prec >= 4 && b.prec >= 4 {
        match (a.tz, b.tz) {
            (Some(_), Some(_)) => (to_utc(a), to_utc(b)),
            (None, None) => (*a, *b),
            _ => return None,
        }
    } else {
        (*a, *b)
    };
    let la = a.prec.min(6);
    let lb = b.prec.min(6);
    let comps = |d: &Dt| {
        [
            d.y as i64,
            d.mo as i64,
            d.d as i64,
            d.h as i64,
            d.mi as i64,
            d.s as i64 * 1000 + d.ms as i64,
        ]
    };
    let (ca, cb) = (comps(&a), comps(&b));
    for i in 0..la.min(lb) as usize {
        match ca[i].cmp(&cb[i]) {
            Ordering::Equal => {}
            o => return Some(o),
        }
    }
    (la == lb).then_some(Ordering::Equal)
}

/// Time-valued units usable in date arithmetic, as (calendar unit, amount multiplier).
fn date_unit(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "year" | "years" => "year",
        "month" | "months" => "month",
        "week" | "weeks" | "wk" => "week",
        "day" | "days" | "d" => "day",
        "hour" | "hours" | "h" => "hour",
        "minute" | "minutes" | "min" => "minute",
        "second" | "seconds" | "s" => "second",
        "millisecond" | "milliseconds" | "ms" => "millisecond",
        _ => return None,
    })
}

/// `dt + n unit` (`sign` -1 for subtraction). The quantity value is truncated to an integer
/// (FHIRPath §6.6.1 calendar-duration semantics). Errors on non-time units and on UCUM `a` / `mo`
/// (not calendar durations).
pub fn dt_add(d: &Dt, value: Decimal, unit: &str, sign: i64, is_time: bool) -> Result<Dt, String> {
    let u = date_unit(unit)
        .ok_or_else(|| format!("cannot add a quantity in '{unit}' to a date/time"))?;
    let n = value.trunc().to_i64().ok_or("quantity too large")? * sign;
    let mut r = *d;
    match u {
        "year" | "month" => {
            if is_time {
                return Err("cannot add years/months to a time".into());
            }
            let months = if u == "year" { n * 12 } else { n };
            let total = r.y as i64 * 12 + (r.mo as i64 - 1) + months;
            r.y = total.div_euclid(12) as i32;
            r.mo = (total.rem_euclid(12) + 1) as u32;
            if r.prec >= 3 {
                r.d = r.d.min(days_in_month(r.y, r.mo));
            }
        }
        _ => {
            let ms = match u {
                "week" => n * 7 * 86_400_000,
                "day" => n * 86_400_000,
                "hour" => n * 3_600_000,
                "minute" => n * 60_000,
                "second" => n * 1000,
                _ => n,
            };
            if is_time {
                let base = ((r.h as i64 * 60 + r.mi as i64) * 60 + r.s as i64) * 1000 + r.ms as i64;
                let t = (base + ms).rem_euclid(86_400_000);
                r.h = (t / 3_600_000) as u32;
                r.mi = (t / 60_000 % 60) as u32;
                r.s = (t / 1000 % 60) as u32;
                r.ms = (t % 1000) as u32;
            } else if r.prec <= 3 {
                // a date: whole days only
                let days = ms / 86_400_000;
                if r.prec == 3 {
                    let z = days_from_civil(r.y as i64, r.mo, r.d) + days;
                    let (y, m, dd) = civil_from_days(z);
                    r.y = y as i32;
                    r.mo = m;
                    r.d = dd;
                }
            } else {
                set_local_ms(&mut r, local_ms(d) + ms);
            }
        }
    }
    Ok(r)
}

// ---------------------------------------------------------------------------------------------
// Quantities and units

/// A quantity: decimal value and unit (UCUM code, or a calendar keyword such as `day`).
#[derive(Debug, Clone, PartialEq)]
pub struct Qty {
    pub value: Decimal,
    pub unit: String,
}

/// Normalises a calendar keyword (`days` → `day`); other units unchanged.
pub fn calendar_unit(u: &str) -> Option<&'static str> {
    Some(match u {
        "year" | "years" => "year",
        "month" | "months" => "month",
        "week" | "weeks" => "week",
        "day" | "days" => "day",
        "hour" | "hours" => "hour",
        "minute" | "minutes" => "minute",
        "second" | "seconds" => "second",
        "millisecond" | "milliseconds" => "millisecond",
        _ => return None,
    })
}

/// UCUM equivalent of a calendar keyword, for comparisons (years/months have none that compares
/// equal: `1 year` vs `1 'a'` is not comparable).
fn calendar_to_ucum(u: &str) -> &str {
    match u {
        "week" => "wk",
        "day" => "d",
        "hour" => "h",
        "minute" => "min",
        "second" => "s",
        "millisecond" => "ms",
        other => other,
    }
}

type Dims = Vec<(String, i32)>;

fn dec(s: &str) -> Decimal {
    Decimal::from_str_exact(s).unwrap_or(Decimal::ONE)
}

/// Atom → (factor, base unit, exponent of base).
fn atom(a: &str) -> Option<(Decimal, &'static str, i32)> {
    Some(match a {
        "m" => (Decimal::ONE, "m", 1),
        "g" => (Decimal::ONE, "g", 1),
        "s" => (Decimal::ONE, "s", 1),
        "L" | "l" => (dec("0.001"), "m", 3),
        "mol" => (Decimal::ONE, "mol", 1),
        "eq" => (Decimal::ONE, "eq", 1),
        "K" => (Decimal::ONE, "K", 1),
        "A" => (Decimal::ONE, "A", 1),
        "U" => (Decimal::ONE, "U", 1),
        "min" => (dec("60"), "s", 1),
        "h" => (dec("3600"), "s", 1),
        "d" => (dec("86400"), "s", 1),
        "wk" => (dec("604800"), "s", 1),
        "mo" => (dec("2629800"), "s", 1),
        "a" => (dec("31557600"), "s", 1),
        "[lb_av]" => (dec("453.59237"), "g", 1),
        "[oz_av]" => (dec("28.349523125"), "g", 1),
        "[in_i]" => (dec("0.0254"), "m", 1),
        "[ft_i]" => (dec("0.3048"), "m", 1),
        "[mi_i]" => (dec("1609.344"), "m", 1),
        "%" => (dec("0.01"), "1", 0),
        "1" => (Decimal::ONE, "1", 0),
        _ => return None,
    })
}

fn metric(a: &str) -> bool {
    matches!(
        a,
        "m" | "g" | "s" | "L" | "l" | "mol" | "eq" | "K" | "A" | "U"
    )
}

fn prefix(p: &str) -> Option<Decimal> {
    Some(match p {
        "k" => dec("1000"),
        "h" => dec("100"),
        "da" => dec("10"),
        "d" => dec("0.1"),
        "c" => dec("0.01"),
        "m" => dec("0.001"),
        "u" | "μ" => dec("0.000001"),
        "n" => dec("0.000000001"),
        "p" => dec("0.000000000001"),
        "M" => dec("1000000"),
        "G" => dec("1000000000"),
        _ => return None,
    })
}

/// Parses a UCUM unit into a factor and base dimensions. Unknown atoms become their own base
/// (comparable only with the same atom).
pub fn ucum(unit: &str) -> Option<(Decimal, Dims)> {
    let mut factor = Decimal::ONE;
    let mut dims: Dims = Vec::new();
    let add = |base: &str, exp: i32, dims: &mut Dims| {
        if exp == 0 || base == "1" {
            return;
        }
        match dims.iter_mut().find(|(b, _)| b == base) {
            Some(d) => d.1 += exp,
            None => dims.push((base.to_string(), exp)),
        }
    };
    let u = unit.trim();
    if u.is_empty() {
        return Some((factor, dims));
    }
    let mut sign = 1;
    let mut rest = u;
    if let Some(r) = rest.strip_prefix('/') {
        sign = -1;
        rest = r;
    }
    loop {
        let end = rest.find(['.', '/']).unwrap_or(rest.len());
        let term = &rest[..end];
        // strip annotations {…}
        let term_clean: String = {
            let mut s = String::new();
            let mut depth = 0;
            for c in term.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ if depth == 0 => s.push(c),
                    _ => {}
                }
            }
            s
        };
        if !term_clean.is_empty() {
            // exponent: trailing [+-]digits (not inside brackets)
            let bytes = term_clean.as_bytes();
            let mut i = bytes.len();
            while i > 0 && bytes[i - 1].is_ascii_digit() {
                i -= 1;
            }
            if i > 0 && (bytes[i - 1] == b'-' || bytes[i - 1] == b'+') {
                i -= 1;
            }
            let (name, exp) = if i < bytes.len() && i > 0 && !term_clean.ends_with(']') {
                (&term_clean[..i], term_clean[i..].parse::<i32>().ok()?)
            } else {
                (term_clean.as_str(), 1)
            };
            if name.chars().all(|c| c.is_ascii_digit()) {
                // a number factor like 10*3 is not supported; plain integers are factors
                let n: Decimal = name.parse().ok()?;
                factor = if sign > 0 { factor * n } else { factor / n };
            } else {
                let (f, base, bexp) = match atom(name) {
                    Some(x) => x,
                    None => {
                        let mut found = None;
                        for plen in [1usize, 2] {
                            if name.len() > plen && name.is_char_boundary(plen) {
                                let (p, a) = name.split_at(plen);
                                if let (Some(pf), Some((af, b, e))) = (prefix(p), atom(a)) {
                                    if metric(a) {
                                        found = Some((pf * af, b, e));
                                        break;
                                    }
                                }
                            }
                        }
                        match found {
                            Some(x) => x,
                            None => {
                                add(name, sign * exp, &mut dims);
                                (Decimal::ONE, "1", 0)
                            }
                        }
                    }
                };
                let mut ff = Decimal::ONE;
                for _ in 0..exp.abs() {
                    ff *= f;
                }
                if (sign * exp.signum()) > 0 {
                    factor *= ff;
                } else {
                    factor /= ff;
                }
                add(base, sign * exp * bexp, &mut dims);
            }
        }
        if end >= rest.len() {
            break;
        }
        sign = if rest.as_bytes()[end] == b'/' { -1 } else { 1 };
        rest = &rest[end + 1..];
    }
    dims.retain(|(_, e)| *e != 0);
    dims.sort();
    Some((factor, dims))
}

/// Value of `q` in canonical base units, with its dimensions (calendar durations above a week
/// have none: they only compare with the same unit).
fn canonical(q: &Qty) -> Option<(Decimal, Dims)> {
    let u = calendar_unit(&q.unit)
        .map(calendar_to_ucum)
        .unwrap_or(&q.unit);
    if matches!(u, "year" | "month") {
        return None;
    }
    let (f, d) = ucum(u)?;
    Some((q.value * f, d))
}

/// Brings `a` and `b` to comparable values: `None` when their units are not comparable.
pub fn qty_pair(a: &Qty, b: &Qty) -> Option<(Decimal, Decimal)> {
    let norm = |u: &str| calendar_unit(u).unwrap_or("").to_string();
    if a.unit == b.unit || (!norm(&a.unit).is_empty() && norm(&a.unit) == norm(&b.unit)) {
        return Some((a.value, b.value));
    }
    // calendar year/month vs UCUM a/mo: not comparable
    let cal_a = calendar_unit(&a.unit);
    let cal_b = calendar_unit(&b.unit);
    if matches!(cal_a, Some("year" | "month")) || matches!(cal_b, Some("year" | "month")) {
        if let (Some(x), Some(y)) = (cal_a, cal_b) {
            // 1 year = 12 months
            let m = |u: &str, v: Decimal| {
                if u == "year" {
                    v * Decimal::from(12)
                } else {
                    v
                }
            };
            if matches!(x, "year" | "month") && matches!(y, "year" | "month") {
                return Some((m(x, a.value), m(y, b.value)));
            }
        }
        return None;
    }
    let (va, da) = canonical(a)?;
    let (vb, db) = canonical(b)?;
    (da == db).then_some((va, vb))
}

/// Whether two units are comparable.
pub fn comparable(a: &str, b: &str) -> bool {
    let one = Decimal::ONE;
    qty_pair(
        &Qty {
            value: one,
            unit: a.into(),
        },
        &Qty {
            value: one,
            unit: b.into(),
        },
    )
    .is_some()
}

/// Converts `q` into the unit `to` (same dimensions).
pub fn convert(q: &Qty, to: &str) -> Option<Decimal> {
    if q.unit == to {
        return Some(q.value);
    }
    let (v, d) = canonical(q)?;
    let (f, d2) = canonical(&Qty {
        value: Decimal::ONE,
        unit: to.into(),
    })?;
    (d == d2 && !f.is_zero()).then(|| v / f)
}

// ---------------------------------------------------------------------------------------------
// Decimal helpers

/// Number of decimal places of `d` as written.
pub fn scale(d: &Decimal) -> u32 {
    d.scale()
}

/// Decimal equivalence: equal after rounding both to the least precise scale.
pub fn dec_equiv(a: &Decimal, b: &Decimal) -> bool {
    let s = a.scale().min(b.scale());
    a.round_dp_with_strategy(s, RoundingStrategy::MidpointAwayFromZero)
        == b.round_dp_with_strategy(s, RoundingStrategy::MidpointAwayFromZero)
}

/// Decimal from an f64 result (transcendental functions), shortest round-trip text.
pub fn dec_from_f64(f: f64) -> Option<Decimal> {
    if !f.is_finite() {
        return None;
    }
    let s = format!("{f}");
    Decimal::from_str_exact(&s)
        .ok()
        .or_else(|| Decimal::from_f64(f))
}

fn set_scale(d: Decimal, p: u32) -> Decimal {
    let mut r = d;
    if r.scale() < p {
        r.rescale(p);
    }
    r
}

/// `lowBoundary` / `highBoundary` of a decimal (FHIRPath 2.1 §5.7): the bound of the interval
/// implied by the value's precision, written with `p` decimal places.
pub fn dec_boundary(v: Decimal, p: u32, high: bool) -> Option<Decimal> {
    if p > 28 {
        return None;
    }
    if v.is_sign_negative() && !v.is_zero() {
        let r = dec_boundary(-v, p, !high)?;
        let mut n = -r;
        if n.is_zero() {
            n.set_sign_negative(true);
        }
        return Some(n);
    }
    let half = Decimal::new(5, v.scale() + 1);
    let r = if high {
        (v + half).round_dp_with_strategy(p, RoundingStrategy::MidpointAwayFromZero)
    } else {
        (v - half).round_dp_with_strategy(p, RoundingStrategy::ToZero)
    };
    Some(set_scale(r, p))
}

/// `lowBoundary` / `highBoundary` of a date/time at `p` digits of precision
/// (date 4/6/8, dateTime up to 17, time 2/4/6/9).
pub fn dt_boundary(d: &Dt, p: u32, high: bool, kind: u8) -> Option<Dt> {
    // kind: 0 date, 1 dateTime, 2 time
    let prec: u8 = match (kind, p) {
        (0 | 1, 4) => 1,
        (0 | 1, 6) => 2,
        (0 | 1, 8) => 3,
        (1, 10) => 4,
        (1, 12) => 5,
        (1, 14) => 6,
        (1, 17) => 7,
        (2, 2) => 4,
        (2, 4) => 5,
        (2, 6) => 6,
        (2, 9) => 7,
        _ => return None,
    };
    let mut r = *d;
    if d.prec < 2 {
        r.mo = if high { 12 } else { 1 };
    }
    if d.prec < 3 {
        r.d = if high { days_in_month(r.y, r.mo) } else { 1 };
    }
    if kind != 2 && d.prec < 4 {
        r.h = if high { 23 } else { 0 };
    }
    if d.prec < 5 {
        r.mi = if high { 59 } else { 0 };
    }
    if d.prec < 6 {
        r.s = if high { 59 } else { 0 };
    }
    if d.prec < 7 {
        r.ms = if high { 999 } else { 0 };
    }
    if kind == 1 && prec >= 4 && d.tz.is_none() {
        r.tz = Some(if high { -12 * 60 } else { 14 * 60 });
    }
    r.prec = prec;
    if prec < 4 {
        r.tz = None;
    }
    Some(r)
}

/// Digits of precision (`precision()`): decimal places, or date/time digits.
pub fn dt_precision(d: &Dt, kind: u8) -> i64 {
    if kind == 2 {
        return [0, 0, 0, 0, 2, 4, 6, 9][d.prec as usize];
    }
    [0, 4, 6, 8, 10, 12, 14, 17][d.prec as usize]
}

pub fn fmt_qty(q: &Qty) -> String {
    if calendar_unit(&q.unit).is_some() {
        format!("{} {}", q.value, q.unit)
    } else {
        format!("{} '{}'", q.value, q.unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        let a = parse_datetime("2017-11-05T01:30:00.0-04:00").unwrap();
        let b = parse_datetime("2017-11-05T00:30:00.0-05:00").unwrap();
        assert_eq!(dt_cmp(&a, &b), Some(Ordering::Equal));
        assert_eq!(
            dt_cmp(
                &parse_date("2018-03").unwrap(),
                &parse_date("2018-03-01").unwrap()
            ),
            None
        );
        let d = dt_add(
            &parse_date("1973-12-25").unwrap(),
            Decimal::from(7),
            "days",
            1,
            false,
        )
        .unwrap();
        assert_eq!(fmt_date(&d), "1974-01-01");
    }

    #[test]
    fn units() {
        let g = Qty {
            value: Decimal::from(4),
            unit: "g".into(),
        };
        let mg = Qty {
            value: Decimal::from(4000),
            unit: "mg".into(),
        };
        let (a, b) = qty_pair(&g, &mg).unwrap();
        assert_eq!(a, b);
        assert!(comparable("cm", "[in_i]"));
        assert!(!comparable("cm", "s"));
        assert!(comparable("mL", "L"));
    }
}
