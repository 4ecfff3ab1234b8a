//! Where a lane runs: light traffic gathers on one CPU, at idle priority.
//!
//! The scheduler wakes a thread on an idle CPU when there is one, and an idle CPU has halted:
//! on a virtual machine, waking it is a trip through the hypervisor, tens of microseconds. A
//! `ping` across the tunnel pays that for every thread it passes through (the application,
//! each daemon's lane, the application again), whichever implementation carries it. A lane
//! whose traffic is light therefore moves to one home CPU, where every one of those wake-ups
//! finds a CPU that is awake, and runs there under `SCHED_IDLE`: the scheduler keeps a woken
//! thread on its waker's CPU when all that CPU runs is idle-priority work, so the application
//! a delivery wakes runs on the home CPU too, at once, preempting the lane. Every gathered
//! lane must be at idle priority for that, including those of other daemons on the machine
//! and those that went to sleep a moment ago (the scheduler may keep them queued a while).
//! Measured with `scripts/ping-cost`, gathered lanes took 0.54× of boringtun's round trip at
//! 0.6× of its CPU time (docs/PERFORMANCE.md).
//!
//! At idle priority a lane has the home CPU only when no other thread wants it, so it
//! returns to all its CPUs, at the normal priority:
//!
//! - **as soon as it carries load**: once it worked for an eighth of the waiter's last
//!   stretch (a transfer needs the normal priority, and a bulk one every core);
//! - **as soon as it is kept waiting**: once it sat runnable, off its CPU, for longer than
//!   [`HOGGED`] since a wake-up, or longer than [`CONTENDED`] since each of its last
//!   [`STRIKES`] wake-ups. Another thread is busy on the home CPU, and gathering stays off
//!   for [`FIRST_QUIET`], doubling up to [`MAX_QUIET`] while it keeps happening. A short
//!   wait is not enough: an application woken there may run a while before it sleeps
//!   (`ping` spins between its requests), and kernel threads run there too.
//!
//! A thread that starts to spin on the home CPU thus delays the packet that finds it there
//! until the scheduler gives idle-priority work a turn: measured, 22 to 86 ms, once; the lane
//! then spreads out. It gathers again once it has been light for [`SETTLE`] (a lane that slept
//! that long has been light all along), so that a bursty transfer does not move it back and
//! forth.

use std::time::{Duration, Instant};

use wgfabric_sys::{set_idle_policy, Cpus, RunDelay};

/// Time spent runnable but off the CPU, between two wake-ups, that means another thread is
/// busy on the home CPU: longer than the work of the other threads of a round trip (tens of
/// microseconds), shorter than a time slice.
const CONTENDED: Duration = Duration::from_micros(250);
/// Wake-ups in a row that waited longer than [`CONTENDED`] before a lane spreads out.
const STRIKES: u32 = 2;
/// A single wait for the CPU that spreads a lane out at once: longer than kernel threads or
/// an application's spin keep the home CPU, shorter than a busy thread keeps idle-priority
/// work waiting (tens of milliseconds).
const HOGGED: Duration = Duration::from_millis(10);
/// How long a lane must have been light before it gathers.
const SETTLE: Duration = Duration::from_millis(100);
/// How long a lane stays spread out after it was kept waiting on the home CPU...
const FIRST_QUIET: Duration = Duration::from_secs(1);
/// ...doubling each time it happens again soon after, up to this.
const MAX_QUIET: Duration = Duration::from_secs(60);

/// Where a lane runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Place {
    /// On the home CPU only.
    Home,
    /// On every CPU the daemon may use.
    Everywhere,
}

/// A lane's placement policy (see the module doc). Pure: the lane applies its answers.
#[derive(Debug)]
pub(super) struct Placement {
    place: Place,
    /// Since when the lane has been light, while it is spread out.
    light_since: Option<Instant>,
    /// When the lane was last kept waiting at home, if ever.
    contended_at: Option<Instant>,
    /// How long it stays spread out after that.
    quiet: Duration,
    /// Wake-ups in a row, at home, that waited longer than [`CONTENDED`].
    strikes: u32,
}

impl Placement {
    /// A lane that starts spread out.
    pub(super) fn new() -> Self {
        Self {
            place: Place::Everywhere,
            light_since: None,
            contended_at: None,
            quiet: FIRST_QUIET,
            strikes: 0,
        }
    }

    pub(super) fn place(&self) -> Place {
        self.place
    }

    /// Where the lane should run after a wake-up at `now`, given whether it carried more than
    /// light traffic over the last stretch (`busy`), how long it waited for a CPU since its last wake-up
    /// (`waited`, measured at home only) and since when it slept (`asleep`). `Some` when that
    /// changes.
    pub(super) fn update(
        &mut self,
        now: Instant,
        busy: bool,
        waited: Duration,
        asleep: Instant,
    ) -> Option<Place> {
        self.strikes = if waited > CONTENDED { self.strikes + 1 } else { 0 };
        // The waiter's verdict on its load predates a long sleep, which says light.
        let asleep = asleep.min(now);
        let busy = busy && now.saturating_duration_since(asleep) < SETTLE;
        match self.place {
            Place::Home if self.strikes >= STRIKES || waited > HOGGED => self.contended(now),
            Place::Home if busy => self.move_to(Place::Everywhere),
            Place::Home => None,
            Place::Everywhere if busy => {
                self.light_since = None;
                None
            }
            Place::Everywhere => {
                let light_since = *self.light_since.get_or_insert(asleep);
                let quiet = self.contended_at.is_some_and(|at| now < at + self.quiet);
                (now.saturating_duration_since(light_since) >= SETTLE && !quiet)
                    .then(|| self.move_to(Place::Home))
                    .flatten()
            }
        }
    }

    /// Notes that the lane was kept waiting at home at `now`: it spreads out for a while.
    pub(super) fn contended(&mut self, now: Instant) -> Option<Place> {
        let again = self.contended_at.is_some_and(|at| now < at + self.quiet + MAX_QUIET);
        self.quiet = if again { (self.quiet * 2).min(MAX_QUIET) } else { FIRST_QUIET };
        self.contended_at = Some(now);
        self.move_to(Place::Everywhere)
    }

    fn move_to(&mut self, place: Place) -> Option<Place> {
        self.light_since = None;
        self.strikes = 0;
        (self.place != place).then(|| {
            self.place = place;
            place
        })
    }
}

/// Where a daemon's lanes gather, and where they return to.
#[derive(Debug, Clone, Copy)]
pub(super) struct Home {
    pub(super) cpu: usize,
    pub(super) everywhere: Cpus,
}

/// One lane's gathering: its placement policy, applied to the lane's thread.
pub(super) struct Gathering {
    lane: usize,
    home: Home,
    placement: Placement,
    run_delay: RunDelay,
    /// The lane's total wait for a CPU at its last wake-up.
    waited: Duration,
}

impl Gathering {
    /// Gathering for the calling lane thread, unless the kernel does not say how long a
    /// thread waits for its CPU (then a lane could not tell that it is kept waiting at home).
    pub(super) fn start(lane: usize, home: Home) -> Option<Self> {
        let run_delay = RunDelay::of_current_thread()
            .inspect_err(|e| tracing::debug!(lane, error = %e, "lanes do not gather"))
            .ok()?;
        let waited = run_delay.total().unwrap_or_default();
        Some(Self { lane, home, placement: Placement::new(), run_delay, waited })
    }

    /// Whether the lane may poll for its next packet: not at home, where the threads that
    /// wake it run on its own, awake CPU, and polling would only take turns with them.
    pub(super) fn may_poll(&self) -> bool {
        self.placement.place() == Place::Everywhere
    }

    /// Follows a wake-up of the lane: `busy` is the waiter's verdict on its load (more than
    /// light traffic), `asleep` when the lane went to sleep.
    pub(super) fn woke(&mut self, busy: bool, asleep: Option<Instant>) {
        let now = Instant::now();
        let waited = match self.placement.place() {
            Place::Home => self.waited_since_last(),
            Place::Everywhere => Duration::ZERO,
        };
        let change = self.placement.update(now, busy, waited, asleep.unwrap_or(now));
        match change {
            Some(Place::Home) => self.gather(now),
            Some(Place::Everywhere) => {
                let waited_us = waited.as_micros();
                tracing::debug!(lane = self.lane, busy, waited_us, "lane spreads out");
                self.spread();
            }
            None => {}
        }
    }

    /// How long the lane waited for its CPU since the last call.
    fn waited_since_last(&mut self) -> Duration {
        let total = self.run_delay.total().unwrap_or(self.waited);
        let before = std::mem::replace(&mut self.waited, total);
        total.saturating_sub(before)
    }

    fn gather(&mut self, now: Instant) {
        let lane = self.lane;
        let gathered = Cpus::only(self.home.cpu)
            .apply_to_current_thread()
            .and_then(|()| set_idle_policy(true));
        if let Err(e) = gathered {
            tracing::debug!(lane, error = %e, "cannot gather on the home CPU");
            self.placement.contended(now);
            self.spread();
            return;
        }
        // Moving there was a wait of its own.
        self.waited = self.run_delay.total().unwrap_or(self.waited);
        tracing::debug!(lane, cpu = self.home.cpu, "light traffic: lane gathered");
    }

    fn spread(&self) {
        // The normal policy first: at idle priority the move itself could wait behind the
        // thread that keeps the home CPU busy.
        if let Err(e) = set_idle_policy(false) {
            tracing::warn!(lane = self.lane, error = %e, "a lane cannot leave SCHED_IDLE");
        }
        if let Err(e) = self.home.everywhere.apply_to_current_thread() {
            tracing::warn!(lane = self.lane, error = %e, "a lane cannot leave its home CPU");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIGHT: Duration = Duration::ZERO;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A wake-up at `now` after a short sleep.
    fn wake(
        placement: &mut Placement,
        now: Instant,
        busy: bool,
        waited: Duration,
    ) -> Option<Place> {
        placement.update(now, busy, waited, now)
    }

    /// A placement gathered at `t + SETTLE`.
    fn gathered(t: Instant) -> Placement {
        let mut placement = Placement::new();
        assert_eq!(wake(&mut placement, t, false, LIGHT), None);
        assert_eq!(wake(&mut placement, t + SETTLE, false, LIGHT), Some(Place::Home));
        placement
    }

    #[test]
    fn a_light_lane_gathers_once_it_settled() {
        let t = Instant::now();
        let mut placement = Placement::new();
        assert_eq!(wake(&mut placement, t, false, LIGHT), None);
        assert_eq!(wake(&mut placement, t + ms(99), false, LIGHT), None);
        assert_eq!(wake(&mut placement, t + ms(100), false, LIGHT), Some(Place::Home));
        assert_eq!(wake(&mut placement, t + ms(101), false, LIGHT), None, "no change, no move");
        assert_eq!(placement.place(), Place::Home);
    }

    #[test]
    fn load_spreads_at_once_and_restarts_the_settling() {
        let t = Instant::now();
        let mut placement = gathered(t);
        let t = t + SETTLE;
        assert_eq!(wake(&mut placement, t + ms(1), true, LIGHT), Some(Place::Everywhere));
        // Light again: it must settle from here.
        assert_eq!(wake(&mut placement, t + ms(2), false, LIGHT), None);
        assert_eq!(wake(&mut placement, t + ms(50), true, LIGHT), None, "busy again");
        assert_eq!(wake(&mut placement, t + ms(60), false, LIGHT), None);
        assert_eq!(wake(&mut placement, t + ms(159), false, LIGHT), None);
        assert_eq!(wake(&mut placement, t + ms(160), false, LIGHT), Some(Place::Home));
    }

    #[test]
    fn waiting_for_the_cpu_spreads_for_a_quiet_period_that_doubles() {
        let t = Instant::now();
        let mut placement = gathered(t);
        let t = t + SETTLE;
        let long_wait = CONTENDED + Duration::from_micros(1);
        assert_eq!(wake(&mut placement, t, false, CONTENDED), None, "up to the limit is normal");
        assert_eq!(wake(&mut placement, t, false, long_wait), None, "one long wait is no verdict");
        assert_eq!(wake(&mut placement, t, false, LIGHT), None);
        assert_eq!(wake(&mut placement, t, false, long_wait), None, "nor two apart");
        assert_eq!(wake(&mut placement, t, false, long_wait), Some(Place::Everywhere));
        // Light all along, but quiet for the first second.
        assert_eq!(wake(&mut placement, t + ms(1), false, LIGHT), None);
        assert_eq!(wake(&mut placement, t + ms(999), false, LIGHT), None);
        assert_eq!(wake(&mut placement, t + ms(1001), false, LIGHT), Some(Place::Home));
        // Kept waiting again soon after: 2 s this time.
        let t = t + ms(1002);
        assert_eq!(wake(&mut placement, t, false, long_wait), None);
        assert_eq!(wake(&mut placement, t, false, long_wait), Some(Place::Everywhere));
        assert_eq!(wake(&mut placement, t + ms(1), false, LIGHT), None);
        assert_eq!(wake(&mut placement, t + ms(1999), false, LIGHT), None);
        assert_eq!(wake(&mut placement, t + ms(2001), false, LIGHT), Some(Place::Home));
    }

    #[test]
    fn the_quiet_period_has_a_limit_and_starts_over_after_a_calm_stretch() {
        let t = Instant::now();
        let mut placement = gathered(t);
        let mut t = t + SETTLE;
        for _ in 0..10 {
            placement.contended(t);
            t += placement.quiet;
        }
        assert_eq!(placement.quiet, MAX_QUIET);
        // Calm for longer than the limit after the last quiet period ended.
        placement.contended(t + MAX_QUIET + MAX_QUIET);
        assert_eq!(placement.quiet, FIRST_QUIET);
    }

    #[test]
    fn waiting_is_ignored_while_spread_out() {
        let t = Instant::now();
        let mut placement = Placement::new();
        assert_eq!(wake(&mut placement, t, false, ms(5)), None);
        assert_eq!(wake(&mut placement, t + SETTLE, false, ms(5)), Some(Place::Home));
    }

    #[test]
    fn one_very_long_wait_spreads_at_once() {
        let t = Instant::now();
        let mut placement = gathered(t);
        let t = t + SETTLE;
        assert_eq!(wake(&mut placement, t, false, HOGGED), None);
        assert_eq!(wake(&mut placement, t, false, LIGHT), None);
        let hogged = HOGGED + Duration::from_micros(1);
        assert_eq!(wake(&mut placement, t, false, hogged), Some(Place::Everywhere));
        assert_eq!(wake(&mut placement, t + ms(999), false, LIGHT), None, "quiet for a second");
    }

    #[test]
    fn a_lane_that_slept_long_enough_gathers_at_once() {
        let asleep = Instant::now();
        let mut placement = Placement::new();
        // The waiter still says busy: its verdict predates the sleep.
        let t = asleep + SETTLE;
        assert_eq!(placement.update(t, true, LIGHT, asleep), Some(Place::Home));
    }

    #[test]
    fn a_short_sleep_counts_towards_settling() {
        let asleep = Instant::now();
        let mut placement = Placement::new();
        assert_eq!(placement.update(asleep + ms(40), true, LIGHT, asleep), None, "busy");
        assert_eq!(placement.update(asleep + ms(60), false, LIGHT, asleep + ms(50)), None);
        let t = asleep + ms(150);
        assert_eq!(placement.update(t, false, LIGHT, t - ms(1)), Some(Place::Home));
    }
}
