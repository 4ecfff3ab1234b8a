//! Timestamps of the audit log: whole seconds, UTC, written as RFC 3339
//! (`2026-05-01T12:34:56Z`) so the log reads well and sorts as text.
//!
//! The controller never reads the clock itself: callers convert the time they read with
//! [`Timestamp::from_system_time`].

use core::fmt;
use core::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

const SECONDS_PER_DAY: u64 = 86_400;

/// A point in time, in whole seconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

/// Text that is not a time the audit log understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a time: use 2026-05-01T12:34:56Z, 2026-05-01, or an age like 30m, 12h, 7d")]
pub struct TimeParseError(String);

impl Timestamp {
    /// Seconds since the Unix epoch.
    pub const fn from_unix(seconds: u64) -> Self {
        Self(seconds)
    }

    /// A time read from the system clock (before 1970 counts as 1970).
    pub fn from_system_time(time: SystemTime) -> Self {
        Self(time.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs())
    }

    /// Seconds since the Unix epoch.
    pub const fn unix(self) -> u64 {
        self.0
    }

    /// Reads a time for a filter: an RFC 3339 UTC time, a date (its midnight, UTC), or an age
    /// such as `90s`, `30m`, `12h`, `7d` counted back from `now`.
    ///
    /// # Errors
    /// [`TimeParseError`] for anything else.
    pub fn parse_relative(text: &str, now: Self) -> Result<Self, TimeParseError> {
        let unit = match text.as_bytes().last() {
            Some(b's') => 1,
            Some(b'm') => 60,
            Some(b'h') => 3_600,
            Some(b'd') => SECONDS_PER_DAY,
            _ => return text.parse(),
        };
        let digits = &text[..text.len() - 1];
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TimeParseError(text.to_owned()));
        }
        let seconds = digits.parse::<u64>().ok().and_then(|count| count.checked_mul(unit));
        Ok(Self(now.0.saturating_sub(seconds.unwrap_or(u64::MAX))))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (days, seconds) = (self.0 / SECONDS_PER_DAY, self.0 % SECONDS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            seconds / 3_600,
            seconds / 60 % 60,
            seconds % 60
        )
    }
}

impl FromStr for Timestamp {
    type Err = TimeParseError;

    /// `YYYY-MM-DDTHH:MM:SSZ` or `YYYY-MM-DD` (UTC).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || TimeParseError(text.to_owned());
        let (date, time) = match text.split_once('T') {
            Some((date, time)) => (date, Some(time.strip_suffix('Z').ok_or_else(error)?)),
            None => (text, None),
        };
        let [year, month, day] = fields(date, '-').ok_or_else(error)?;
        let seconds = match time {
            Some(time) => {
                let [hour, minute, second] = fields(time, ':').ok_or_else(error)?;
                if hour > 23 || minute > 59 || second > 59 {
                    return Err(error());
                }
                hour * 3_600 + minute * 60 + second
            }
            None => 0,
        };
        let days = days_from_civil(year, month, day).ok_or_else(error)?;
        Ok(Self(days * SECONDS_PER_DAY + seconds))
    }
}

/// Three fixed-width decimal fields separated by `separator` (4-2-2 for dates, 2-2-2 for
/// times).
fn fields(text: &str, separator: char) -> Option<[u64; 3]> {
    let mut parts = text.split(separator);
    let mut next = |width: &[usize]| -> Option<u64> {
        let part = parts.next()?;
        let ok = width.contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit());
        ok.then(|| part.parse().ok()).flatten()
    };
    let first_width: &[usize] = if separator == '-' { &[4] } else { &[2] };
    let values = [next(first_width)?, next(&[2])?, next(&[2])?];
    parts.next().is_none().then_some(values)
}

fn is_leap(year: u64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn month_lengths(year: u64) -> [u64; 12] {
    [31, if is_leap(year) { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
}

/// Days since 1970-01-01 of a Gregorian date from 1970 on, or `None` if there is no such
/// date.
fn days_from_civil(year: u64, month: u64, day: u64) -> Option<u64> {
    let lengths = month_lengths(year);
    let month_index = usize::try_from(month).ok()?.checked_sub(1)?;
    if year < 1970 || day == 0 || day > *lengths.get(month_index)? {
        return None;
    }
    let leap_days_before = |y: u64| (y - 1) / 4 - (y - 1) / 100 + (y - 1) / 400;
    let years = (year - 1970) * 365 + leap_days_before(year) - leap_days_before(1970);
    let months: u64 = lengths[..month_index].iter().sum();
    Some(years + months + day - 1)
}

/// The date `days` after 1970-01-01.
fn civil_from_days(mut days: u64) -> (u64, u64, u64) {
    let mut year = 1970;
    while days >= 365 + u64::from(is_leap(year)) {
        days -= 365 + u64::from(is_leap(year));
        year += 1;
    }
    let mut month = 0;
    for length in month_lengths(year) {
        if days < length {
            break;
        }
        days -= length;
        month += 1;
    }
    (year, month + 1, days + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        for (seconds, text) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_700_000_000, "2023-11-14T22:13:20Z"),
            (4_107_542_399, "2100-02-28T23:59:59Z"),
            (4_107_542_400, "2100-03-01T00:00:00Z"),
        ] {
            assert_eq!(Timestamp(seconds).to_string(), text);
            assert_eq!(text.parse(), Ok(Timestamp(seconds)), "{text}");
        }
        assert_eq!("2023-11-14".parse(), Ok(Timestamp(1_699_920_000)));
    }

    #[test]
    fn every_day_of_four_centuries_round_trips() {
        let mut previous = None;
        for days in 0..146_097 {
            let text = Timestamp(days * SECONDS_PER_DAY + 86_399).to_string();
            assert_eq!(text.parse::<Timestamp>().unwrap().0 / SECONDS_PER_DAY, days, "{text}");
            assert!(previous.as_ref().is_none_or(|p: &String| *p < text), "sorts as text");
            previous = Some(text);
        }
    }

    #[test]
    fn nonsense_is_refused() {
        for bad in [
            "",
            "yesterday",
            "2023-02-29",
            "2023-13-01",
            "2023-00-10",
            "1969-12-31",
            "2023-1-01",
            "2023-11-14T24:00:00Z",
            "2023-11-14T12:00:00",
            "2023-11-14T12:00:00+02:00",
            "+2023-11-14",
            "2023-11-14T1:2:3Z",
            "5w",
            "-5m",
            "m",
        ] {
            assert!(Timestamp::parse_relative(bad, Timestamp(1_000_000)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ages_count_back_from_now() {
        let now = Timestamp(1_000_000);
        assert_eq!(Timestamp::parse_relative("90s", now), Ok(Timestamp(999_910)));
        assert_eq!(Timestamp::parse_relative("30m", now), Ok(Timestamp(998_200)));
        assert_eq!(Timestamp::parse_relative("2h", now), Ok(Timestamp(992_800)));
        assert_eq!(Timestamp::parse_relative("7d", now), Ok(Timestamp(395_200)));
        assert_eq!(Timestamp::parse_relative("99999d", now), Ok(Timestamp(0)));
        assert_eq!(
            Timestamp::parse_relative("2023-11-14T22:13:20Z", now),
            Ok(Timestamp(1_700_000_000))
        );
    }
}
