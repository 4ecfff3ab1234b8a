//! Timestamps of the audit log: whole seconds, UTC, written as RFC 3339
//! (`2026-05-01T12:34:56Z`) so the log reads well and sorts as text.
//!
//! The controller never reads the clock itself: callers convert the time they read with
//! [`Timestamp::from_system_time`].

use core::fmt;
use core::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The last second of the year 9999: RFC 3339 has four-digit years, so later times are held
/// at this one.
const LAST_SECOND: u64 = 253_402_300_799;

/// A point in time, in whole seconds since the Unix epoch, at most [`LAST_SECOND`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

/// Text that is not a time the audit log understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a time: use 2026-05-01T12:34:56Z, 2026-05-01, or an age like 30m, 12h, 7d")]
pub struct TimeParseError(String);

impl Timestamp {
    /// Seconds since the Unix epoch (after the year 9999 counts as its last second).
    pub const fn from_unix(seconds: u64) -> Self {
        Self(if seconds > LAST_SECOND { LAST_SECOND } else { seconds })
    }

    /// A time read from the system clock (before 1970 counts as 1970).
    pub fn from_system_time(time: SystemTime) -> Self {
        Self::from_unix(time.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs())
    }

    /// Seconds since the Unix epoch.
    pub const fn unix(self) -> u64 {
        self.0
    }

    /// Reads a time for a filter: an RFC 3339 UTC time, a date (its midnight, UTC), or an age
    /// in humantime's grammar, such as `90s`, `30m`, `12h`, `7d` or `1w 2d`, counted back from
    /// `now`.
    ///
    /// # Errors
    /// [`TimeParseError`] for anything else.
    pub fn parse_relative(text: &str, now: Self) -> Result<Self, TimeParseError> {
        match humantime::parse_duration(text) {
            Ok(age) => Ok(Self(now.0.saturating_sub(age.as_secs()))),
            Err(_) => text.parse(),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let time = UNIX_EPOCH + Duration::from_secs(self.0);
        humantime::format_rfc3339_seconds(time).fmt(f)
    }
}

impl FromStr for Timestamp {
    type Err = TimeParseError;

    /// An RFC 3339 time in UTC (`2026-05-01T12:34:56Z`; a fraction of a second is dropped),
    /// or a date `2026-05-01` meaning its midnight, UTC.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        const DATE_LEN: usize = "2026-05-01".len();
        let time = if text.len() == DATE_LEN {
            humantime::parse_rfc3339(&format!("{text}T00:00:00Z"))
        } else {
            humantime::parse_rfc3339(text)
        };
        time.map(Self::from_system_time).map_err(|_| TimeParseError(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECONDS_PER_DAY: u64 = 86_400;

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
        assert_eq!("2023-11-14T22:13:20.75Z".parse(), Ok(Timestamp(1_700_000_000)));
        assert_eq!(Timestamp::from_unix(u64::MAX).to_string(), "9999-12-31T23:59:59Z");
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
            "2023-11-14Z",
            "2023-11-14T12:00:00+00:0",
            "5y3",
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
        assert_eq!(Timestamp::parse_relative("1w 1d", now), Ok(Timestamp(308_800)));
        assert_eq!(
            Timestamp::parse_relative("2023-11-14T22:13:20Z", now),
            Ok(Timestamp(1_700_000_000))
        );
    }
}
