//! The per-peer timer table (whitepaper §6): one deadline per kind of timer.
//!
//! There are no timer threads: the device keeps the deadlines, reports the earliest through
//! `poll_timeout`, and runs the expired ones when the caller passes a `now` at or after it.

use std::time::Instant;

/// The kinds of per-peer timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Resend an initiation that got no response (REKEY_TIMEOUT plus jitter).
    RetransmitHandshake,
    /// We received data and sent nothing back for KEEPALIVE_TIMEOUT: send a keepalive.
    SendKeepalive,
    /// We sent data and heard nothing for KEEPALIVE_TIMEOUT + REKEY_TIMEOUT: start a handshake.
    NewHandshake,
    /// No new session for 3 × REJECT_AFTER_TIME: erase all key material.
    ZeroKeyMaterial,
    /// The configured persistent keepalive interval passed without traffic.
    PersistentKeepalive,
}

impl Timer {
    const ALL: [Self; 5] = [
        Self::RetransmitHandshake,
        Self::SendKeepalive,
        Self::NewHandshake,
        Self::ZeroKeyMaterial,
        Self::PersistentKeepalive,
    ];
}

/// The deadlines of one peer's timers.
#[derive(Debug, Default, Clone)]
pub(crate) struct TimerTable {
    deadlines: [Option<Instant>; 5],
}

impl TimerTable {
    /// Arms `timer` to fire at `at`, replacing any earlier deadline.
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.deadlines[timer as usize] = Some(at);
    }

    /// Disarms `timer`.
    pub(crate) fn stop(&mut self, timer: Timer) {
        self.deadlines[timer as usize] = None;
    }

    /// Whether `timer` is armed.
    pub(crate) fn is_armed(&self, timer: Timer) -> bool {
        self.deadlines[timer as usize].is_some()
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// Disarms and returns the first timer due at `now`, in a fixed order.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<Timer> {
        let timer = Timer::ALL
            .into_iter()
            .find(|&t| self.deadlines[t as usize].is_some_and(|d| d <= now))?;
        self.stop(timer);
        Some(timer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::time::Duration;

    #[test]
    fn earliest_deadline_and_expiry() {
        let t0 = Instant::now();
        let mut table = TimerTable::default();
        assert_eq!(table.next(), None);
        table.set(Timer::SendKeepalive, t0 + Duration::from_secs(10));
        table.set(Timer::NewHandshake, t0 + Duration::from_secs(15));
        assert_eq!(table.next(), Some(t0 + Duration::from_secs(10)));
        assert_eq!(table.pop_expired(t0 + Duration::from_secs(9)), None);
        assert_eq!(table.pop_expired(t0 + Duration::from_secs(20)), Some(Timer::SendKeepalive));
        assert_eq!(table.pop_expired(t0 + Duration::from_secs(20)), Some(Timer::NewHandshake));
        assert_eq!(table.pop_expired(t0 + Duration::from_secs(20)), None);
        table.set(Timer::ZeroKeyMaterial, t0);
        assert!(table.is_armed(Timer::ZeroKeyMaterial));
        table.stop(Timer::ZeroKeyMaterial);
        assert_eq!(table.next(), None);
    }
}
