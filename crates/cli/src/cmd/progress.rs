//! Progress of long operations (`apply`, `rotate`) on standard error: one line rewritten in
//! place on a terminal, one line per change otherwise (logs, CI), so both read well.

use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

/// A progress display.
#[derive(Debug)]
pub(crate) struct ProgressLine {
    terminal: bool,
    last: String,
    dirty: bool,
}

impl ProgressLine {
    pub(crate) fn new() -> Self {
        Self { terminal: std::io::stderr().is_terminal(), last: String::new(), dirty: false }
    }

    /// Shows `text` if it differs from what is shown.
    pub(crate) fn show(&mut self, text: &str) {
        if text == self.last {
            return;
        }
        let mut stderr = std::io::stderr().lock();
        // Progress is best effort: a closed standard error must not stop the operation.
        let _ = if self.terminal {
            write!(stderr, "\r\x1b[K{text}")
        } else {
            writeln!(stderr, "{text}")
        };
        let _ = stderr.flush();
        text.clone_into(&mut self.last);
        self.dirty = self.terminal;
    }

    /// Ends the line so that what follows starts on a fresh one.
    pub(crate) fn finish(&mut self) {
        if self.dirty {
            eprintln!();
            self.dirty = false;
        }
        self.last.clear();
    }
}

/// Reads a duration such as `500ms`, `30s`, `2m` or `1h` (a bare number is seconds).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 =
        number.parse().map_err(|_| format!("`{text}` is not a duration such as 30s"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("`{text}`: use ms, s, m or h")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("`{text}` is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5d").is_err());
    }
}
