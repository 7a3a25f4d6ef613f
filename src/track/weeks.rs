//! ISO weeks (Monday 00:00:00 to Sunday 23:59:59 UTC), the unit of `segscope track`: their
//! labels (`2026-W41`), the week an instant falls in, and `--weeks` ranges.

use chrono::{DateTime, Datelike, NaiveDate, Utc, Weekday};
use serde::Serialize;

/// One ISO week. Orders chronologically (year, then week).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IsoWeek {
    year: i32,
    week: u32,
}

/// Why a week label or range could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("'{text}' is not {expected}")]
pub struct WeekLabelError {
    /// The text given.
    pub text: String,
    /// What was expected, in words.
    pub expected: &'static str,
}

impl IsoWeek {
    /// The week `at` falls in.
    pub fn of(at: DateTime<Utc>) -> Self {
        let w = at.iso_week();
        IsoWeek {
            year: w.year(),
            week: w.week(),
        }
    }

    /// Monday of the week.
    fn monday(self) -> Option<NaiveDate> {
        NaiveDate::from_isoywd_opt(self.year, self.week, Weekday::Mon)
    }

    /// Monday 00:00:00 UTC.
    pub fn start(self) -> DateTime<Utc> {
        self.monday()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map_or(DateTime::<Utc>::UNIX_EPOCH, |t| t.and_utc())
    }

    /// Sunday 23:59:59 UTC: the instant a week's state is measured at.
    pub fn end(self) -> DateTime<Utc> {
        self.monday()
            .and_then(|d| (d + chrono::Days::new(6)).and_hms_opt(23, 59, 59))
            .map_or(DateTime::<Utc>::UNIX_EPOCH, |t| t.and_utc())
    }

    /// The following week.
    pub fn next(self) -> Self {
        IsoWeek::of(self.start() + chrono::Duration::days(7))
    }

    /// The week `n` weeks earlier.
    pub fn minus(self, n: u32) -> Self {
        IsoWeek::of(self.start() - chrono::Duration::days(7 * i64::from(n)))
    }

    /// Reads `YYYY-Www` (e.g. `2026-W41`).
    pub fn parse(text: &str) -> Result<Self, WeekLabelError> {
        let bad = || WeekLabelError {
            text: text.to_string(),
            expected: "an ISO week such as 2026-W41",
        };
        let t = text.trim();
        let (year, week) = t.split_once("-W").ok_or_else(bad)?;
        if year.len() != 4 || week.len() != 2 {
            return Err(bad());
        }
        let year: i32 = year.parse().map_err(|_| bad())?;
        let week: u32 = week.parse().map_err(|_| bad())?;
        NaiveDate::from_isoywd_opt(year, week, Weekday::Mon).ok_or_else(bad)?;
        Ok(IsoWeek { year, week })
    }
}

impl std::fmt::Display for IsoWeek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-W{:02}", self.year, self.week)
    }
}

impl Serialize for IsoWeek {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An inclusive range of weeks, as `--weeks 2026-W36..2026-W43` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeekRange {
    /// First week.
    pub first: IsoWeek,
    /// Last week (not before `first`).
    pub last: IsoWeek,
}

impl WeekRange {
    /// Every week of the range, in order.
    pub fn weeks(&self) -> Vec<IsoWeek> {
        let mut out = vec![self.first];
        let mut w = self.first;
        while w < self.last {
            w = w.next();
            out.push(w);
        }
        out
    }
}

impl std::str::FromStr for WeekRange {
    type Err = WeekLabelError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || WeekLabelError {
            text: text.to_string(),
            expected: "a range of ISO weeks such as 2026-W36..2026-W43",
        };
        let (first, last) = text.split_once("..").ok_or_else(bad)?;
        let first = IsoWeek::parse(first)?;
        let last = IsoWeek::parse(last)?;
        if last < first {
            return Err(WeekLabelError {
                text: text.to_string(),
                expected: "a range whose last week is not before its first",
            });
        }
        Ok(WeekRange { first, last })
    }
}
