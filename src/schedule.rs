//! Cron schedules as ops people write them: the Unix 5-field form (`*/5 * * * *`), where
//! day-of-week 0 and 7 are Sunday and 1–5 is Monday to Friday.
//!
//! The `cron` crate speaks Quartz (a seconds field, 1 = Sunday). This wrapper translates,
//! so a number never silently means another day; what it cannot translate it rejects.
//! A local time that happens twice (DST fall-back) fires once; one that does not exist
//! (spring-forward) is skipped for that day, as in `cron`.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// A parsed, validated schedule in a time zone.
#[derive(Clone)]
pub struct Schedule {
    source: String,
    inner: cron::Schedule,
    tz: Tz,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?} {})", self.source, self.tz)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "a cron expression has 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first; {0:?} has {1}"
    )]
    FieldCount(String, usize),
    #[error(
        "day-of-week {0:?}: use names (MON-FRI) or single Unix numbers and ranges (0 or 7 = Sunday); steps over numbers are ambiguous"
    )]
    DayOfWeek(String),
    #[error("invalid cron expression {0:?}: {1}")]
    Invalid(String, String),
    #[error("unknown time zone {0:?} (use an IANA name such as Europe/Berlin)")]
    TimeZone(String),
}

const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl Schedule {
    /// Parse a schedule evaluated in UTC.
    pub fn parse(expr: &str) -> Result<Self, ScheduleError> {
        Self::parse_in(expr, "UTC")
    }

    /// Parse a schedule evaluated in an IANA time zone.
    pub fn parse_in(expr: &str, tz: &str) -> Result<Self, ScheduleError> {
        let tz: Tz = tz
            .parse()
            .map_err(|_| ScheduleError::TimeZone(tz.to_owned()))?;
        let quartz = to_quartz(expr)?;
        let inner = cron::Schedule::from_str(&quartz)
            .map_err(|e| ScheduleError::Invalid(expr.to_owned(), e.to_string()))?;
        Ok(Self {
            source: expr.to_owned(),
            inner,
            tz,
        })
    }

    /// The next fire strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local_after = after.with_timezone(&self.tz);
        let mut upcoming = self.inner.after(&local_after);
        let first = upcoming.next()?;
        // On DST fall-back cron yields the same wall-clock time twice; fire only once.
        if first.naive_local() == local_after.naive_local() {
            return upcoming.next().map(|t| t.with_timezone(&Utc));
        }
        Some(first.with_timezone(&Utc))
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }
}

/// Translate the Unix form to the Quartz form the `cron` crate parses.
fn to_quartz(expr: &str) -> Result<String, ScheduleError> {
    let expr = expr.trim();
    if expr.starts_with('@') {
        return Ok(expr.to_owned());
    }
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let (seconds, rest) = match fields.len() {
        5 => ("0", &fields[..]),
        6 => (fields[0], &fields[1..]),
        n => return Err(ScheduleError::FieldCount(expr.to_owned(), n)),
    };
    let day_of_week = unix_day_of_week(rest[4])?;
    Ok(format!(
        "{seconds} {} {} {} {} {day_of_week}",
        rest[0], rest[1], rest[2], rest[3]
    ))
}

/// Numbers become names (0 and 7 are Sunday); ranges are expanded so wrap-around
/// ranges such as `5-7` (Friday to Sunday) keep their Unix meaning.
fn unix_day_of_week(field: &str) -> Result<String, ScheduleError> {
    if !field.chars().any(|c| c.is_ascii_digit()) {
        return Ok(field.to_owned());
    }
    let reject = || ScheduleError::DayOfWeek(field.to_owned());
    let mut names: Vec<&str> = Vec::new();
    for part in field.split(',') {
        if part.contains('/') || part.contains('#') {
            return Err(reject());
        }
        let (start, end) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let day = |s: &str| -> Result<usize, ScheduleError> {
            match s.parse::<usize>() {
                Ok(n) if n <= 7 => Ok(n % 7),
                _ => Err(reject()),
            }
        };
        let (start, end) = (day(start)?, day(end)?);
        // A range ending on 7 (Sunday) runs up to Saturday and then includes Sunday.
        let mut d = start;
        loop {
            if !names.contains(&DAY_NAMES[d]) {
                names.push(DAY_NAMES[d]);
            }
            if d == end {
                break;
            }
            d = (d + 1) % 7;
        }
    }
    Ok(names.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone, Timelike, Weekday};

    fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0)
            .single()
            .unwrap_or_default()
    }

    #[test]
    fn five_field_form_is_accepted() {
        let s = Schedule::parse("*/5 * * * *").map_err(|e| e.to_string());
        let next = s.map(|s| s.next_after(at(2026, 11, 22, 10, 2)));
        assert_eq!(next, Ok(Some(at(2026, 11, 22, 10, 5))));
    }

    #[test]
    fn unix_weekday_numbers_mean_unix_days() {
        // 2026-11-22 is a Sunday. "1-5" must be Monday to Friday, not Sunday to Thursday.
        let s = Schedule::parse("0 9 * * 1-5").map_err(|e| e.to_string());
        let next = s.ok().and_then(|s| s.next_after(at(2026, 11, 22, 0, 0)));
        assert_eq!(next.map(|t| t.weekday()), Some(Weekday::Mon));
        let sunday = Schedule::parse("0 9 * * 0")
            .ok()
            .and_then(|s| s.next_after(at(2026, 11, 23, 0, 0)));
        assert_eq!(sunday.map(|t| t.weekday()), Some(Weekday::Sun));
        let seven = Schedule::parse("0 9 * * 7")
            .ok()
            .and_then(|s| s.next_after(at(2026, 11, 23, 0, 0)));
        assert_eq!(seven, sunday);
        let weekend = Schedule::parse("0 9 * * 5-7")
            .ok()
            .and_then(|s| s.next_after(at(2026, 11, 23, 0, 0)));
        assert_eq!(weekend.map(|t| t.weekday()), Some(Weekday::Fri));
    }

    #[test]
    fn named_days_pass_through() {
        let s = Schedule::parse("30 8 * * MON-FRI").ok();
        let next = s.and_then(|s| s.next_after(at(2026, 11, 21, 12, 0)));
        assert_eq!(next, Some(at(2026, 11, 23, 8, 30)));
    }

    #[test]
    fn ambiguous_or_malformed_expressions_are_rejected() {
        assert!(matches!(
            Schedule::parse("* * * *"),
            Err(ScheduleError::FieldCount(_, 4))
        ));
        assert!(matches!(
            Schedule::parse("0 9 * * */2"),
            Err(ScheduleError::DayOfWeek(_))
        ));
        assert!(matches!(
            Schedule::parse("0 9 * * 8"),
            Err(ScheduleError::DayOfWeek(_))
        ));
        assert!(matches!(
            Schedule::parse("0 25 * * *"),
            Err(ScheduleError::Invalid(..))
        ));
        assert!(matches!(
            Schedule::parse_in("0 9 * * *", "Mars/Olympus"),
            Err(ScheduleError::TimeZone(_))
        ));
    }

    #[test]
    fn fall_back_fires_once() {
        // America/New_York leaves DST on 2026-11-01 at 02:00 local; 01:30 happens twice.
        let s = Schedule::parse_in("30 1 * * *", "America/New_York").ok();
        let Some(s) = s else {
            panic!("schedule did not parse")
        };
        let first = s.next_after(at(2026, 11, 1, 4, 0)); // 00:00 EDT
        let Some(first) = first else {
            panic!("no fire")
        };
        let second = s.next_after(first);
        assert_eq!(
            second.map(|t| t.with_timezone(&chrono_tz::America::New_York).day()),
            Some(2)
        );
        assert_eq!(
            second.map(|t| t.with_timezone(&chrono_tz::America::New_York).hour()),
            Some(1)
        );
    }
}
