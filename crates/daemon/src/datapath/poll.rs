//! How an idle lane waits for its next packet: poll briefly when the traffic says the packet
//! is about to arrive, sleep otherwise.
//!
//! Waking a sleeping thread takes an interrupt to its CPU, and on a virtual machine whose CPU
//! has halted, a trip through the hypervisor: tens of microseconds, a large part of a
//! tunnel's round trip. Polling instead costs CPU time for as long as it lasts, so a lane
//! polls only where it pays:
//!
//! - **Only when the next packet is due soon.** A lane learns, separately for idle periods
//!   that follow a send to the network and those that follow a delivery to the TUN, how long
//!   the last one lasted (whether it polled or slept through it). A request/response exchange
//!   shows as short gaps after sends: the reply comes back within one tunnel round trip. The
//!   lane polls for twice the last gap of the same kind (plus [`SLACK`]), and not at all when
//!   that gap exceeded the `--busy-poll` cap.
//! - **Backing off when polls come up empty.** A poll that ends without a packet doubles the
//!   number of idle periods of its kind that sleep before the next try (up to
//!   [`MAX_BACKOFF`]); a packet that arrives within the window resets it.
//! - **Within a budget.** Polling earns [`SHARE`] of the wall time that passes and can save up
//!   at most [`BURST`]: a lane never polls more than that share of a CPU, whatever the
//!   traffic.
//!
//! Polling runs under `SCHED_IDLE`: only when the CPU has nothing else to do, so any other
//! thread (the peer daemon's lane, the application, a compiler) preempts it at once. The lane
//! returns to the normal policy before it touches a packet, so it never holds a lock at idle
//! priority. A lane kept off its CPU while polling ([`CONTENDED`]) stops and sleeps, so that
//! the scheduler wakes it wherever there is room, and counts the poll as an empty one: on a
//! busy machine polling costs latency instead of saving it, and backs off.

use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use wgfabric_sys::{set_idle_policy, wait_readable, Error, Shutdown};

/// The share of wall time a lane may spend polling: one part in `SHARE`.
const SHARE: u32 = 10;
/// The most polling time a lane can save up while it sleeps.
const BURST: Duration = Duration::from_millis(5);
/// Added to twice the last gap, for the jitter of a round trip.
const SLACK: Duration = Duration::from_micros(20);
/// The most idle periods a lane sleeps through after polls that came up empty.
const MAX_BACKOFF: u32 = 64;
/// A gap this long between two polls means other threads are keeping this lane off its CPU:
/// at idle priority it would notice a packet late, while a sleeping lane is woken at once.
const CONTENDED: Duration = Duration::from_micros(50);

/// What a lane did last before it went idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    /// It sent packets read from the TUN to the network: a reply may be on its way.
    Sent,
    /// It received from the network (and delivered to the TUN).
    Received,
}

/// What the lane learnt about idle periods of one kind.
#[derive(Debug, Default, Clone, Copy)]
struct Pattern {
    /// How long the last idle period of this kind lasted.
    last_gap: Option<Duration>,
    /// Idle periods of this kind still to sleep through before polling again.
    skip: u32,
    /// The backoff after the next empty poll.
    backoff: u32,
}

impl Pattern {
    /// How long to poll at the start of an idle period of this kind, if at all.
    fn window(&mut self, cap: Duration) -> Option<Duration> {
        let gap = self.last_gap.filter(|gap| *gap <= cap)?;
        if self.skip > 0 {
            self.skip -= 1;
            return None;
        }
        Some(cap.min(gap * 2 + SLACK))
    }

    /// Learns from an idle period of `gap`, which polled for the first `polled` of it (if it
    /// did).
    fn learn(&mut self, gap: Duration, polled: Option<Duration>, cap: Duration) {
        self.last_gap = Some(gap);
        match polled {
            Some(window) if gap > window => {
                self.backoff = (self.backoff * 2).clamp(1, MAX_BACKOFF);
                self.skip = self.backoff;
            }
            Some(_) => self.backoff = 0,
            // A short gap slept through: polling would have paid.
            None if gap <= cap => {
                self.backoff = 0;
                self.skip = 0;
            }
            None => {}
        }
    }
}

/// The polling time a lane may still spend.
#[derive(Debug)]
struct Budget {
    left: Duration,
    at: Instant,
}

impl Budget {
    fn available(&mut self, now: Instant) -> Duration {
        let earned = now.saturating_duration_since(self.at) / SHARE;
        self.left = (self.left + earned).min(BURST);
        self.at = now;
        self.left
    }

    fn spend(&mut self, spent: Duration) {
        self.left = self.left.saturating_sub(spent);
    }
}

/// The idle period under way.
#[derive(Debug, Clone, Copy)]
struct Idle {
    since: Instant,
    after: Ending,
    polled: Option<Duration>,
    /// When a descriptor turned readable, if one has.
    ready: Option<Instant>,
}

/// An idle lane's waiting strategy (see the module doc).
#[derive(Debug)]
pub(super) struct Waiter {
    cap: Duration,
    patterns: [Pattern; 2],
    budget: Budget,
    last: Ending,
    idle: Option<Idle>,
}

impl Waiter {
    /// A waiter that polls for at most `cap` at a time (zero: never).
    pub(super) fn new(cap: Duration, now: Instant) -> Self {
        Self {
            cap,
            patterns: [Pattern::default(); 2],
            budget: Budget { left: Duration::ZERO, at: now },
            last: Ending::Received,
            idle: None,
        }
    }

    /// Notes that the lane just did work ending in `ending`, which closes an idle period.
    pub(super) fn worked(&mut self, ending: Ending) {
        if let Some(idle) = self.idle.take() {
            let gap = idle.ready.unwrap_or_else(Instant::now).saturating_duration_since(idle.since);
            let cap = self.cap;
            self.pattern(idle.after).learn(gap, idle.polled, cap);
        }
        self.last = ending;
    }

    /// Returns when one of `fds` is readable (or one of `signals` triggers), polling first
    /// if that is likely to pay.
    pub(super) fn wait(
        &mut self,
        fds: &[BorrowedFd<'_>],
        signals: &[&Shutdown],
    ) -> Result<(), Error> {
        let now = Instant::now();
        let idle = match self.idle {
            // Woken without work (a spurious wake-up or a retired socket): just sleep again.
            Some(idle) => idle,
            None => {
                let window = self.window(now);
                let mut idle = Idle { since: now, after: self.last, polled: None, ready: None };
                if let Some(window) = window {
                    let polled = poll(fds, signals, now + window);
                    let end = Instant::now();
                    let spent = end.saturating_duration_since(now);
                    self.budget.spend(spent);
                    idle.polled = Some(spent);
                    if !matches!(polled, Ok(false)) {
                        self.idle = Some(Idle { ready: Some(end), ..idle });
                        return polled.map(drop);
                    }
                }
                self.idle = Some(idle);
                idle
            }
        };
        let result = wait_readable(fds, signals, None).map(drop);
        self.idle = Some(Idle { ready: Some(Instant::now()), ..idle });
        result
    }

    /// How long to poll for at the start of an idle period that begins at `now`.
    fn window(&mut self, now: Instant) -> Option<Duration> {
        if self.cap.is_zero() {
            return None;
        }
        let cap = self.cap;
        let window = self.pattern(self.last).window(cap)?;
        Some(window.min(self.budget.available(now))).filter(|w| !w.is_zero())
    }

    fn pattern(&mut self, ending: Ending) -> &mut Pattern {
        &mut self.patterns[ending as usize]
    }
}

/// Polls at idle priority until something is readable (true), until `until` or until the
/// lane was kept off its CPU (false).
fn poll(fds: &[BorrowedFd<'_>], signals: &[&Shutdown], until: Instant) -> Result<bool, Error> {
    if let Err(e) = set_idle_policy(true) {
        tracing::debug!(error = %e, "not polling: cannot use SCHED_IDLE");
        return Ok(false);
    }
    let mut turn = Instant::now();
    let polled = loop {
        match wait_readable(fds, signals, Some(Duration::ZERO)) {
            Ok(false) => {
                let now = Instant::now();
                if now >= until || now.duration_since(turn) > CONTENDED {
                    break Ok(false);
                }
                turn = now;
                std::thread::yield_now();
            }
            result => break result,
        }
    };
    if let Err(e) = set_idle_policy(false) {
        // Checked at start-up (`idle_policy_is_reversible`), so only a changed limit gets
        // here; staying at idle priority would starve the lane under load.
        tracing::error!(error = %e, "a lane cannot leave SCHED_IDLE; it stays slow under load");
    }
    polled
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: Duration = Duration::from_millis(1);

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn polls_for_twice_a_short_gap_and_not_after_a_long_one() {
        let mut pattern = Pattern::default();
        assert_eq!(pattern.window(CAP), None, "nothing learnt yet");
        pattern.learn(us(60), None, CAP);
        assert_eq!(pattern.window(CAP), Some(us(140)));
        pattern.learn(us(5_000), Some(us(140)), CAP);
        assert_eq!(pattern.window(CAP), None, "the last gap exceeded the cap");
        pattern.learn(us(800), None, CAP);
        assert_eq!(pattern.window(CAP), Some(CAP), "a short gap slept through: poll again");
    }

    #[test]
    fn empty_polls_back_off_exponentially_up_to_a_limit() {
        let mut pattern = Pattern::default();
        let mut skipped = Vec::new();
        for _ in 0..10 {
            // Each period's gap looks short, but each poll comes up empty.
            pattern.last_gap = Some(us(50));
            let mut count = 0;
            let window = loop {
                match pattern.window(CAP) {
                    Some(window) => break window,
                    None => count += 1,
                }
            };
            skipped.push(count);
            pattern.learn(window + us(1), Some(window), CAP);
        }
        assert_eq!(skipped, [0, 1, 2, 4, 8, 16, 32, 64, 64, 64]);
        pattern.learn(us(50), Some(us(120)), CAP);
        assert_eq!(pattern.backoff, 0, "a poll that paid resets the backoff");
    }

    #[test]
    fn the_budget_grows_with_wall_time_up_to_the_burst() {
        let start = Instant::now();
        let mut budget = Budget { left: Duration::ZERO, at: start };
        assert_eq!(budget.available(start + us(1_000)), us(1_000) / SHARE);
        budget.spend(us(60));
        assert_eq!(budget.available(start + us(1_000)), us(40));
        assert_eq!(budget.available(start + Duration::from_secs(60)), BURST);
    }

    #[test]
    fn a_zero_cap_never_polls() {
        let now = Instant::now();
        let mut waiter = Waiter::new(Duration::ZERO, now);
        waiter.patterns = [Pattern { last_gap: Some(Duration::ZERO), skip: 0, backoff: 0 }; 2];
        waiter.budget.left = BURST;
        assert_eq!(waiter.window(now), None);
    }

    #[test]
    fn each_kind_of_idle_period_is_learnt_apart() {
        let now = Instant::now();
        let mut waiter = Waiter::new(CAP, now);
        waiter.budget.left = BURST;
        waiter.pattern(Ending::Sent).learn(us(50), None, CAP);
        waiter.pattern(Ending::Received).learn(us(4_950), None, CAP);
        waiter.last = Ending::Sent;
        assert_eq!(waiter.window(now), Some(us(120)));
        waiter.last = Ending::Received;
        assert_eq!(waiter.window(now), None);
    }
}
