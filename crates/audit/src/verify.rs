//! Checking an audit log: every line must be a record whose `prev` is the hash of the line
//! before it (the [`GENESIS`] value for the first) and whose `seq` is one more than that
//! line's. The first line that fails is reported with what most likely happened to it.
//!
//! How each kind of tampering shows:
//!
//! | done to the log | reported at | because |
//! |---|---|---|
//! | line *n* edited | line *n + 1* | its `prev` no longer matches line *n* |
//! | lines removed before line *n* | line *n* | `seq` jumps and `prev` does not match |
//! | lines reordered | the first moved line | `seq` goes back or jumps |
//! | line inserted before line *n* | the inserted line, or line *n* | `prev` or `seq` |
//! | last line edited, lines cut off the end | only with an anchor | nothing follows them |
//!
//! An anchor is a head hash reported by an earlier verification; it must still be the hash
//! of some line.

use core::fmt;

use super::{line_hash, Record, GENESIS};

/// A log whose chain holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Number of lines.
    pub entries: u64,
    /// Hash of the last line ([`GENESIS`] when empty): keep it elsewhere, and pass it back as
    /// an anchor later to detect lines removed from the end or the whole log rewritten.
    pub head: String,
}

/// Where and why a log's chain breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// The 1-based line that does not fit; `None` when only the anchor is missing.
    pub line: Option<usize>,
    /// What is wrong, and what most likely happened.
    pub problem: String,
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.problem),
            None => f.write_str(&self.problem),
        }
    }
}

impl std::error::Error for Broken {}

/// Verifies the text of a log; with `anchor`, also that a line with that hash is still in it.
///
/// # Errors
/// [`Broken`] at the first line that does not fit.
pub fn verify(text: &str, anchor: Option<&str>) -> Result<Verified, Broken> {
    let mut prev = GENESIS.to_owned();
    let mut expected_seq = 1u64;
    let mut anchored = anchor.is_none_or(|a| a == GENESIS);
    let mut offset = 0;
    for (index, raw) in text.split_inclusive('\n').enumerate() {
        let number = index + 1;
        offset += raw.len();
        let broken = |problem: String| Broken { line: Some(number), problem };
        let Some(line) = raw.strip_suffix('\n') else {
            return Err(broken(
                "incomplete last line (no newline): a write was cut short, or the line was \
                 appended by hand"
                    .into(),
            ));
        };
        let record = Record::parse(line)
            .map_err(|error| broken(format!("not an audit record ({error})")))?;
        if record.seq != expected_seq || record.prev != prev {
            return Err(broken(diagnose(number, expected_seq, record.seq, &text[offset..])));
        }
        prev = line_hash(line.as_bytes());
        anchored |= anchor == Some(prev.as_str());
        expected_seq += 1;
    }
    if !anchored {
        return Err(Broken {
            line: None,
            problem: format!(
                "no line has the anchored hash {}: lines up to it were edited or removed, or \
                 the log was rewritten",
                anchor.unwrap_or_default()
            ),
        });
    }
    Ok(Verified { entries: expected_seq - 1, head: prev })
}

/// What most likely happened when line `number` holds record `seq` but should have been
/// record `expected`, chained to the line before; `later` is the text after it.
fn diagnose(number: usize, expected: u64, seq: u64, later: &str) -> String {
    if seq == expected {
        return match number {
            1 => format!("the first record does not start the chain (prev is not {GENESIS})"),
            _ => format!(
                "its prev does not match line {0}: line {0} was edited after this one was \
                 written (or this line's prev was)",
                number - 1
            ),
        };
    }
    if seq < expected {
        return format!(
            "record {seq} again where {expected} was due: a line was inserted before it, or \
             lines were reordered"
        );
    }
    let due_at = later.lines().position(|l| Record::parse(l).is_ok_and(|r| r.seq == expected));
    match due_at {
        Some(offset) => format!(
            "record {seq} where {expected} was due, and record {expected} is at line {}: lines \
             were reordered",
            number + 1 + offset
        ),
        None => format!(
            "record {seq} where {expected} was due: {} line(s) before it were removed",
            seq - expected
        ),
    }
}
