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

/// Reads a duration in humantime's grammar (`500ms`, `30s`, `2m`, `1h30m`, `1.5s`); a bare
/// number is seconds, as it always was.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bare_number = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    let parsed = if bare_number {
        humantime::parse_duration(&format!("{text}s"))
    } else {
        humantime::parse_duration(text)
    };
    parsed.map_err(|error| format!("`{text}` is not a duration such as 30s: {error}"))
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
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        for bad in ["", "soon", "-5s", "5x", "1.2.3", "."] {
            let error = parse_duration(bad).unwrap_err();
            assert!(error.contains(&format!("`{bad}`")), "{bad:?}: {error}");
        }
    }
}
