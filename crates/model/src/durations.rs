//! Durations as people write them in messages (`250ms`, `1.5s`, `30s`, `2m`), the same units
//! the command line reads, never Rust's `Debug` form.

use std::time::Duration;

/// A duration as people write it: milliseconds below a second, seconds (with one decimal
/// when not whole) below two minutes, then minutes.
pub fn human(duration: Duration) -> String {
    let seconds = duration.as_secs_f64();
    if seconds < 1.0 {
        format!("{}ms", duration.as_millis())
    } else if seconds < 120.0 {
        if duration.subsec_millis() == 0 {
            format!("{}s", duration.as_secs())
        } else {
            format!("{seconds:.1}s")
        }
    } else {
        format!("{:.0}m", seconds / 60.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_people_write() {
        assert_eq!(human(Duration::from_millis(250)), "250ms");
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
        assert_eq!(human(Duration::from_secs(30)), "30s");
        assert_eq!(human(Duration::from_secs(180)), "3m");
    }
}
