//! Cell values of store files: timestamps, customer ids, numbers.
//!
//! Timestamps are read in the layouts the public data sets and their re-exports use, all
//! taken as UTC: `2009-12-01 07:45:00` (UCI II, pandas), `2019-10-01 00:00:00 UTC`
//! (REES46), RFC 3339 (`2019-10-01T00:00:00Z`, `...+02:00`, converted to UTC) and the
//! original UCI `12/1/2010 8:26` (month first). The common layouts are parsed by hand
//! because chrono's format-string parser would dominate the ingest time of a large file.

use std::borrow::Cow;

use chrono::{DateTime, NaiveDate, Utc};

/// Parses a timestamp in one of the accepted layouts; `None` when it is none of them.
pub(crate) fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let t = text.trim();
    let bare = [" UTC", "UTC", "Z", "z", "+00:00", " +00:00"]
        .iter()
        .find_map(|s| t.strip_suffix(s))
        .unwrap_or(t);
    if let Some(parsed) = iso_like(bare) {
        return Some(parsed);
    }
    if let Ok(parsed) = DateTime::parse_from_rfc3339(t) {
        return Some(parsed.to_utc());
    }
    month_first(t)
}

/// `YYYY-MM-DD[ T]HH:MM[:SS[.fraction]]`.
fn iso_like(t: &str) -> Option<DateTime<Utc>> {
    let date = t.get(..10)?;
    let rest = t.get(10..)?;
    let time = rest.strip_prefix(' ').or_else(|| rest.strip_prefix('T'))?;
    let mut parts = date.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 || parts.next().is_some() {
        return None;
    }
    build(number(y)?, number(m)?, number(d)?, time)
}

/// `M/D/YYYY H:MM[:SS]`, the original UCI *Online Retail* layout.
fn month_first(t: &str) -> Option<DateTime<Utc>> {
    let (date, time) = t.split_once(' ')?;
    let mut parts = date.split('/');
    let (m, d, y) = (parts.next()?, parts.next()?, parts.next()?);
    if y.len() != 4 || m.len() > 2 || d.len() > 2 || parts.next().is_some() {
        return None;
    }
    build(number(y)?, number(m)?, number(d)?, time.trim())
}

/// A date and `H:MM[:SS[.fraction]]` as UTC.
fn build(y: u32, m: u32, d: u32, time: &str) -> Option<DateTime<Utc>> {
    let mut parts = time.split(':');
    let (h, mi) = (parts.next()?, parts.next()?);
    let (s, nanos) = match parts.next() {
        None => (0, 0),
        Some(sec) => {
            let (whole, frac) = sec.split_once('.').unwrap_or((sec, ""));
            if whole.len() != 2 || frac.len() > 9 {
                return None;
            }
            let nanos = if frac.is_empty() {
                0
            } else {
                number(frac)? * 10u32.pow(9 - frac.len() as u32)
            };
            (number(whole)?, nanos)
        }
    };
    if parts.next().is_some() || h.is_empty() || h.len() > 2 || mi.len() != 2 {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(i32::try_from(y).ok()?, m, d)?;
    Some(
        date.and_hms_nano_opt(number(h)?, number(mi)?, s, nanos)?
            .and_utc(),
    )
}

/// Digits only (no sign, no spaces), at most 9 of them.
fn number(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A customer id, trimmed; `None` when missing. An integer written with a zero fraction
/// (`13085.0`, how pandas writes an integer column that has gaps) becomes the integer, so
/// the same customer has one id in both files; the flag says it was rewritten.
pub(super) fn customer_id(text: &str) -> Option<(Cow<'_, str>, bool)> {
    let t = text.trim();
    if t.is_empty()
        || ["nan", "null", "na", "none", "n/a"]
            .iter()
            .any(|m| t.eq_ignore_ascii_case(m))
    {
        return None;
    }
    if let Some((int, frac)) = t.split_once('.')
        && !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && !frac.is_empty()
        && frac.bytes().all(|b| b == b'0')
    {
        return Some((Cow::Borrowed(int), true));
    }
    Some((Cow::Borrowed(t), false))
}

/// A finite number; `None` for anything else (including `inf` and `NaN`).
pub(super) fn finite(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        NaiveDate::from_ymd_opt(y, mo, d)
            .and_then(|d| d.and_hms_opt(h, mi, s))
            .expect("valid")
            .and_utc()
    }

    #[test]
    fn accepts_every_layout_as_utc() {
        let t = utc(2009, 12, 1, 7, 45, 0);
        assert_eq!(parse_time("2009-12-01 07:45:00"), Some(t));
        assert_eq!(parse_time(" 2009-12-01 07:45 "), Some(t));
        assert_eq!(parse_time("2009-12-01 07:45:00 UTC"), Some(t));
        assert_eq!(parse_time("2009-12-01T07:45:00Z"), Some(t));
        assert_eq!(parse_time("2009-12-01T09:45:00+02:00"), Some(t));
        assert_eq!(parse_time("12/1/2009 7:45"), Some(t));
        assert_eq!(parse_time("12/01/2009 07:45:00"), Some(t));
        assert_eq!(
            parse_time("2009-12-01T07:45:00.25Z"),
            Some(t + chrono::TimeDelta::milliseconds(250))
        );
    }

    #[test]
    fn rejects_nonsense_without_panicking() {
        for bad in [
            "",
            "yesterday",
            "2009-13-01 07:45:00",
            "2009-12-01",
            "2009-12-01 7:45:00:00",
            "13/1/2010 8:26",
            "2009-12-01 07:45:00 CET",
            "2009-12-01 07:45:0é",
            "é",
            "1/1/99999 1:00",
            "2009-12-01 24:00:00",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn customer_ids_are_trimmed_and_pandas_floats_normalised() {
        assert_eq!(customer_id(" 13085.0 "), Some(("13085".into(), true)));
        assert_eq!(customer_id("13085.00"), Some(("13085".into(), true)));
        assert_eq!(customer_id("13085.5"), Some(("13085.5".into(), false)));
        assert_eq!(customer_id("abc.0"), Some(("abc.0".into(), false)));
        assert_eq!(customer_id("13085"), Some(("13085".into(), false)));
        assert_eq!(customer_id("  "), None);
        assert_eq!(customer_id("NaN"), None);
    }

    #[test]
    fn numbers_must_be_finite() {
        assert_eq!(finite(" 2.5 "), Some(2.5));
        assert_eq!(finite("inf"), None);
        assert_eq!(finite("NaN"), None);
        assert_eq!(finite("1,5"), None);
    }
}
