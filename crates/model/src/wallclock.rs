//! The one place where the agent, the stores and the rotation driver read the clocks. They
//! are I/O edges paced in real time; everything they feed (the rotation state machine, the
//! sync planner) takes the time as an argument instead.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The monotonic clock, for deadlines and pacing.
#[expect(clippy::disallowed_methods, reason = "the I/O edges pace themselves in real time")]
pub fn monotonic() -> Instant {
    Instant::now()
}

/// The wall clock, for timestamps in status documents and the audit log.
#[expect(clippy::disallowed_methods, reason = "status documents carry the wall-clock time")]
pub fn system() -> SystemTime {
    SystemTime::now()
}

/// Seconds since the Unix epoch (0 before 1970).
pub fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs()
}
