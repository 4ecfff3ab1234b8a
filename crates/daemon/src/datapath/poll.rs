//! How an idle lane waits for its next packet: poll briefly when the traffic says the packet
//! is about to arrive, sleep otherwise.
//!
//! Waking a sleeping thread takes an interrupt to its CPU, and on a virtual machine whose CPU
//! has halted, a trip through the hypervisor: tens of microseconds, a large part of a
//! tunnel's round trip. Polling instead costs CPU time for as long as it lasts, so a lane
//! polls only where it pays. It learns, separately for idle periods that follow a send to
//! the network and those that follow a delivery to the TUN, the rhythm of the packets that
//! end them (whether it polled or slept):
//!
//! - **A packet due at a known time.** Packets that arrive at a steady period (a health
//!   check, a heartbeat, `ping`) say when the next one is due: a [`Rhythm`] tracks their
//!   period and phase the way a phase-locked loop does, and how far arrivals stray from it.
//!   Once [`LOCKED`] arrivals in a row came within one part in [`STEADY`] of a period of
//!   when they were due, the lane sleeps on a timer until just before the next is due, early
//!   by the timer's own measured lateness and twice the arrivals' mean error, and polls
//!   across the expected arrival. The wake-up it pays is the timer's, off the packet's path,
//!   and the poll lasts tens of microseconds per packet; the window must fit within the cap.
//! - **Not for a reply.** Polling at once after a send, for twice the last gap when the
//!   gap was short (a request's reply on its way back), caught 99% of replies and still did
//!   not pay on a virtual machine: over nine alternating rounds of 2,000 pings 5 ms apart,
//!   the median of the rounds' mean round trips was 81 µs without it and 87 µs with it (lower
//!   in six rounds of nine) for the same CPU time, and a flood ping (each request sent when
//!   the last reply came) was as fast without it, for 4–10 µs less CPU per round trip.
//! - **Backing off when polls come up empty.** A poll that ends without a packet doubles the
//!   number of idle periods of its kind that sleep before the next try (up to
//!   [`MAX_BACKOFF`]); a packet that arrives within the window resets it.
//! - **Within a budget.** Polling earns [`SHARE`] of the wall time that passes and can save up
//!   at most [`BURST`]: a lane never polls more than that share of a CPU, whatever the
//!   traffic.
//! - **Not while the lane is busy.** A lane that worked for most of the last [`EPOCH`] is
//!   moving a bulk transfer: its idle periods are short gaps between batches, a wake-up's
//!   delay is small beside its work, and the other threads on the machine (the applications
//!   at both ends) need the CPU that polling would spend. Measured during a single TCP stream,
//!   polling filled 8% of a CPU per lane and moved nothing faster.
//!
//! Polling runs under `SCHED_IDLE`: only when the CPU has nothing else to do, so any other
//! thread (the peer daemon's lane, the application, a compiler) preempts it at once. The lane
//! returns to the normal policy before it touches a packet, so it never holds a lock at idle
//! priority. A lane that finds its packet after being kept off its CPU for a time slice
//! ([`CONTENDED`]) does not poll again for a while ([`FIRST_QUIET`], doubling up to
//! [`MAX_QUIET`] while it keeps happening, and starting over once a whole [`MAX_QUIET`] of
//! polling passed without it): on a machine that runs other idle-priority or low-weight work
//! (a batch job under `chrt --idle`, a `nice 19` spinner), a packet that arrives while the
//! lane waits behind it is noticed only when the other thread's time slice ends,
//! milliseconds later, where a sleeping lane would have been woken at once. Shorter waits
//! are the machine's own traffic: the peer daemon's lane sealing the very packet this lane
//! waits for, or the application sending it, for tens of microseconds. A lane kept off its
//! CPU that missed nothing goes on polling.

use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use wgfabric_sys::{set_idle_policy, wait_readable, Error, Ready, Shutdown};

/// The share of wall time a lane may spend polling: one part in `SHARE`.
const SHARE: u32 = 10;
/// The most polling time a lane can save up while it sleeps.
const BURST: Duration = Duration::from_millis(5);
/// Added to both sides of a periodic packet's window, beyond twice the arrivals' mean error.
const JITTER: Duration = Duration::from_micros(10);
/// An arrival keeps a rhythm when it comes within one part in `STEADY` of a period of when
/// it was due.
const STEADY: u32 = 50;
/// Arrivals in a row that must keep a rhythm before the lane polls for the next.
const LOCKED: u32 = 3;
/// The most idle periods a lane sleeps through after polls that came up empty.
const MAX_BACKOFF: u32 = 64;
/// A gap this long between two polls, shorter than any time slice the scheduler hands out,
/// means another thread held this lane off its CPU for a slice: a packet that arrived
/// meanwhile was noticed late, where a sleeping lane would have been woken at once. With
/// 50 µs, the other daemon's lane preparing the very packet awaited counted too, and a
/// daemon sat out polling in 43% of its idle periods during a `ping` run; at 250 µs, in 1–4%.
const CONTENDED: Duration = Duration::from_micros(250);
/// How long a lane does not poll after a poll that was kept off its CPU...
const FIRST_QUIET: Duration = Duration::from_millis(100);
/// ...doubling with each such poll in a row, up to this.
const MAX_QUIET: Duration = Duration::from_secs(1);
/// What the lane assumes of its timer's lateness before it has measured any.
const FIRST_LATENESS: Duration = Duration::from_micros(20);
/// How long a stretch of wall time the lane's load is measured over.
const EPOCH: Duration = Duration::from_millis(10);
/// The share of a stretch a lane works beyond which its traffic is not light: a ping every
/// 5 ms keeps a lane busy under 1% of the time, a transfer of a gigabit per second about 30%.
const LOADED: f64 = 0.125;

/// What a lane did last before it went idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    /// It sent packets read from the TUN to the network.
    Sent,
    /// It received from the network (and delivered to the TUN).
    Received,
}

/// When to poll: sleep until `from` (at once if it has passed), poll until `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    from: Instant,
    until: Instant,
}

/// Periodic arrivals, tracked like a phase-locked loop: each arrival's distance from when it
/// was due corrects the phase by half and the period by an eighth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rhythm {
    /// When the next packet is due.
    due: Instant,
    period: Duration,
    /// How far arrivals were from when they were due, as a moving average.
    error: Duration,
    /// Arrivals in a row that kept the rhythm.
    kept: u32,
    /// Whether the last arrival strayed from it.
    strayed: bool,
}

impl Rhythm {
    /// A rhythm guessed from one interval between two arrivals, the last at `arrival`.
    fn start(arrival: Instant, period: Duration) -> Self {
        Self { due: arrival + period, period, error: period / STEADY, kept: 0, strayed: false }
    }

    /// Follows a packet that arrived at `arrival`. One that strays too far is taken for an
    /// outlier (a packet held up, or one outside the rhythm) and leaves it as it was; a
    /// second in a row starts it again from the interval since the last arrival.
    fn follow(self, arrival: Instant, since_last: Duration) -> Self {
        let (late, miss) = match arrival.checked_duration_since(self.due) {
            Some(late) => (true, late),
            None => (false, self.due.saturating_duration_since(arrival)),
        };
        if miss > self.period / STEADY {
            if self.strayed {
                return Self::start(arrival, since_last);
            }
            // A late packet was the one due; an early one came on top of it.
            let due = if late { self.due + self.period } else { self.due };
            return Self { due, strayed: true, ..self };
        }
        let (phase, drift) = (miss / 2, miss / 8);
        let (due, period) = if late {
            (self.due + phase, self.period + drift)
        } else {
            (self.due - phase, self.period.saturating_sub(drift))
        };
        Self {
            due: due + period,
            period,
            error: (self.error * 7 + miss) / 8,
            kept: self.kept.saturating_add(1),
            strayed: false,
        }
    }
}

/// What the lane learnt about idle periods of one kind.
#[derive(Debug, Default, Clone, Copy)]
struct Pattern {
    /// When the last packet that ended an idle period of this kind arrived.
    last_arrival: Option<Instant>,
    /// The rhythm of those packets, once two have arrived.
    rhythm: Option<Rhythm>,
    /// Idle periods of this kind still to sleep through before polling again.
    skip: u32,
    /// The backoff after the next empty poll.
    backoff: u32,
}

impl Pattern {
    /// When to poll in an idle period of this kind that begins `since`, if at all, given the
    /// polling `cap` and how late the lane's timer tends to fire.
    fn window(&mut self, since: Instant, cap: Duration, lateness: Duration) -> Option<Window> {
        let rhythm = self.rhythm.filter(|rhythm| rhythm.kept >= LOCKED)?;
        if self.skip > 0 {
            self.skip -= 1;
            return None;
        }
        let margin = rhythm.error * 2 + JITTER;
        let from = rhythm.due.checked_sub(margin + lateness)?.max(since);
        let until = rhythm.due + margin;
        (until > since && until.saturating_duration_since(from) <= cap)
            .then_some(Window { from, until })
    }

    /// Learns from an idle period that ended with a packet at `arrival`, and had `window` to
    /// poll in (if it had).
    fn learn(&mut self, arrival: Instant, window: Option<Window>) {
        if let Some(last) = self.last_arrival {
            let interval = arrival.saturating_duration_since(last);
            self.rhythm = Some(match self.rhythm {
                Some(rhythm) => rhythm.follow(arrival, interval),
                None => Rhythm::start(arrival, interval),
            });
        }
        self.last_arrival = Some(arrival);
        match window {
            Some(window) if arrival > window.until => {
                self.backoff = (self.backoff * 2).clamp(1, MAX_BACKOFF);
                self.skip = self.backoff;
            }
            Some(window) if arrival >= window.from => self.backoff = 0,
            // Came before its window opened (or had none): nothing spent, nothing proven.
            _ => {}
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

/// How much of its time the lane spends working, measured over stretches of at least
/// [`EPOCH`].
#[derive(Debug)]
struct Load {
    /// When the lane last went from idle to working.
    woke: Instant,
    busy: Duration,
    idle: Duration,
    /// Whether the lane worked for most of the last complete stretch.
    busy_most: bool,
    /// Whether it worked for at least [`LOADED`] of it: more than light traffic.
    loaded: bool,
}

impl Load {
    fn new(now: Instant) -> Self {
        Self {
            woke: now,
            busy: Duration::ZERO,
            idle: Duration::ZERO,
            busy_most: false,
            loaded: false,
        }
    }

    /// Counts an idle period from `since` to `until`, and the work before it.
    fn idled(&mut self, since: Instant, until: Instant) {
        self.busy += since.saturating_duration_since(self.woke);
        self.idle += until.saturating_duration_since(since);
        self.woke = until;
        if self.busy + self.idle >= EPOCH {
            self.busy_most = self.busy > self.idle;
            self.loaded = self.busy.as_secs_f64() >= LOADED * (self.busy + self.idle).as_secs_f64();
            (self.busy, self.idle) = (Duration::ZERO, Duration::ZERO);
        }
    }
}

/// The idle period under way.
#[derive(Debug, Clone, Copy)]
struct Idle {
    since: Instant,
    after: Ending,
    window: Option<Window>,
    /// When a descriptor turned readable, if one has.
    ready: Option<Instant>,
}

/// An idle lane's waiting strategy (see the module doc).
#[derive(Debug)]
pub(super) struct Waiter {
    cap: Duration,
    patterns: [Pattern; 2],
    budget: Budget,
    load: Load,
    /// When the last poll that was kept off its CPU ended, if one was.
    contended_at: Option<Instant>,
    /// How long the lane does not poll after it.
    quiet: Duration,
    /// How late the lane's timed sleeps end, as a moving average.
    lateness: Duration,
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
            load: Load::new(now),
            contended_at: None,
            quiet: FIRST_QUIET,
            lateness: FIRST_LATENESS,
            last: Ending::Received,
            idle: None,
        }
    }

    /// Notes that the lane just did work ending in `ending`, which closes an idle period.
    pub(super) fn worked(&mut self, ending: Ending) {
        if let Some(idle) = self.idle.take() {
            let arrival = idle.ready.unwrap_or_else(Instant::now);
            self.load.idled(idle.since, arrival);
            self.pattern(idle.after).learn(arrival, idle.window);
        }
        self.last = ending;
    }

    /// Returns which of `fds` are readable once one is (or an error once one of `signals`
    /// triggers), polling first if `may_poll` and that is likely to pay.
    pub(super) fn wait(
        &mut self,
        fds: &[BorrowedFd<'_>],
        signals: &[&Shutdown],
        may_poll: bool,
    ) -> Result<Ready, Error> {
        let since = Instant::now();
        let idle = match self.idle {
            // Woken without work (a spurious wake-up, a retired socket): sleep again.
            Some(idle) => idle,
            None => {
                let window = self.window(since).filter(|_| may_poll);
                let idle = Idle { since, after: self.last, window, ready: None };
                if let Some(window) = window {
                    let woke = self.watch(fds, signals, since, window);
                    if !matches!(woke, Ok(ready) if ready.is_empty()) {
                        self.idle = Some(Idle { ready: Some(Instant::now()), ..idle });
                        return woke;
                    }
                }
                self.idle = Some(idle);
                idle
            }
        };
        let result = wait_readable(fds, signals, None);
        self.idle = Some(Idle { ready: Some(Instant::now()), ..idle });
        result
    }

    /// Since when the lane has been idle, while it waits or has just woken from a wait.
    pub(super) fn idle_since(&self) -> Option<Instant> {
        self.idle.map(|idle| idle.since)
    }

    /// Whether the lane worked for at least [`LOADED`] of the last stretch of [`EPOCH`]:
    /// more than light traffic.
    pub(super) fn loaded(&self) -> bool {
        self.load.loaded
    }

    /// Sleeps until `window` opens, then polls until it closes: which descriptors turned
    /// readable meanwhile.
    fn watch(
        &mut self,
        fds: &[BorrowedFd<'_>],
        signals: &[&Shutdown],
        since: Instant,
        window: Window,
    ) -> Result<Ready, Error> {
        let sleep = window.from.saturating_duration_since(since);
        if !sleep.is_zero() {
            let ready = wait_readable(fds, signals, Some(sleep))?;
            if !ready.is_empty() {
                return Ok(ready);
            }
            let late = Instant::now().saturating_duration_since(window.from);
            self.lateness = (self.lateness * 7 + late) / 8;
        }
        let start = Instant::now();
        let polled = poll(fds, signals, window.until);
        let end = Instant::now();
        self.budget.spend(end.saturating_duration_since(start));
        let polled = polled?;
        if polled.contended {
            self.contended(end);
        }
        Ok(polled.ready)
    }

    /// Notes a poll that was kept off its CPU and ended at `end`.
    fn contended(&mut self, end: Instant) {
        let again = self.quiet_ends().is_some_and(|ended| end < ended + MAX_QUIET);
        self.quiet = if again { (self.quiet * 2).min(MAX_QUIET) } else { FIRST_QUIET };
        self.contended_at = Some(end);
    }

    /// When the quiet period after the last contended poll ends (or ended).
    fn quiet_ends(&self) -> Option<Instant> {
        self.contended_at.map(|at| at + self.quiet)
    }

    /// When to poll in an idle period that begins at `now`, within the budget.
    fn window(&mut self, now: Instant) -> Option<Window> {
        let quiet = self.quiet_ends().is_some_and(|ends| now < ends);
        if self.cap.is_zero() || self.load.busy_most || quiet {
            return None;
        }
        let (cap, lateness) = (self.cap, self.lateness);
        let window = self.pattern(self.last).window(now, cap, lateness)?;
        let until = window.until.min(window.from + self.budget.available(now));
        (until > window.from).then_some(Window { until, ..window })
    }

    fn pattern(&mut self, ending: Ending) -> &mut Pattern {
        &mut self.patterns[ending as usize]
    }
}

/// What a poll found.
#[derive(Debug)]
struct Polled {
    /// The descriptors that turned readable (none if the window closed first).
    ready: Ready,
    /// Whether the packet arrived while the lane was kept off its CPU for longer than
    /// [`CONTENDED`], so that it was noticed late.
    contended: bool,
}

/// Polls at idle priority until something is readable or until `until`.
fn poll(fds: &[BorrowedFd<'_>], signals: &[&Shutdown], until: Instant) -> Result<Polled, Error> {
    // Taken first: leaving the normal policy may hand the CPU to another thread at once.
    let mut turn = Instant::now();
    if let Err(e) = set_idle_policy(true) {
        tracing::debug!(error = %e, "not polling: cannot use SCHED_IDLE");
        return Ok(Polled { ready: Ready::default(), contended: false });
    }
    let polled = loop {
        let result = wait_readable(fds, signals, Some(Duration::ZERO));
        let now = Instant::now();
        match result {
            // Kept off the CPU or not, nothing was missed: go on.
            Ok(ready) if ready.is_empty() && now < until => {
                turn = now;
                std::thread::yield_now();
            }
            result => {
                let late = now.duration_since(turn) > CONTENDED;
                break result.map(|ready| Polled { contended: late && !ready.is_empty(), ready });
            }
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
    const LATE: Duration = Duration::from_micros(10);

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    /// A pattern that has seen idle periods of these gaps, each starting when the last ended
    /// plus `busy`; returns it and when the last one ended.
    fn seen(start: Instant, gaps: &[u64], busy: u64) -> (Pattern, Instant) {
        let mut pattern = Pattern::default();
        let mut now = start;
        for &gap in gaps {
            now += us(busy + gap);
            pattern.learn(now, None);
        }
        (pattern, now)
    }

    /// A waiter whose lane saw a packet every 5 ms after each kind of idle period, with a
    /// full budget at the next packet's window; returns it and when the last packet came.
    fn steady_waiter(t: Instant) -> (Waiter, Instant) {
        let mut waiter = Waiter::new(CAP, t);
        let (pattern, last) = seen(t, &[4_900; 5], 100);
        waiter.patterns = [pattern; 2];
        waiter.budget = Budget { left: BURST, at: last };
        (waiter, last)
    }

    #[test]
    fn short_gaps_alone_do_not_poll() {
        let t = Instant::now();
        let mut pattern = Pattern::default();
        assert_eq!(pattern.window(t, CAP, LATE), None, "nothing learnt yet");
        // Replies 60 µs after each send, at irregular times: no rhythm, no polling.
        let mut now = t;
        for gap in [1_000, 3_000, 700, 9_000, 2_000] {
            now += us(gap + 60);
            pattern.learn(now, None);
            assert_eq!(pattern.window(now, CAP, LATE), None);
        }
    }

    #[test]
    fn steady_arrivals_poll_around_the_next_one() {
        let t = Instant::now();
        // Arrivals 5,000 µs apart; the lane was busy 100 µs after each.
        let (mut pattern, last) = seen(t, &[4_900; 5], 100);
        let rhythm = pattern.rhythm.unwrap();
        assert_eq!((rhythm.due, rhythm.period, rhythm.kept), (last + us(5_000), us(5_000), 3));
        // The error decays from a 50th of the period: 100 → 87.5 → 76.6 → 67.0 µs.
        assert_eq!(rhythm.error, Duration::from_nanos(66_991));
        let since = last + us(100);
        let early = rhythm.error * 2 + JITTER + LATE;
        let window =
            Window { from: rhythm.due - early, until: rhythm.due + rhythm.error * 2 + JITTER };
        assert_eq!(pattern.window(since, CAP, LATE), Some(window));
        pattern.learn(rhythm.due + us(8), Some(window));
        assert_eq!((pattern.backoff, pattern.skip), (0, 0), "the packet came within the window");
        let rhythm = pattern.rhythm.unwrap();
        // Late by 8 µs: the phase moves 4 µs and the period 1 µs later.
        assert_eq!(rhythm.period, us(5_001));
        assert_eq!(rhythm.due, last + us(5_000 + 4 + 5_001));
    }

    #[test]
    fn irregular_or_long_periods_sleep() {
        let t = Instant::now();
        // 300 µs late is more than 2% of 5 ms: an outlier that leaves the rhythm as it was.
        let (pattern, _) = seen(t, &[4_900, 4_900, 4_900, 4_900, 5_200, 4_600, 4_900], 100);
        let rhythm = pattern.rhythm.unwrap();
        assert_eq!((rhythm.kept, rhythm.period, rhythm.strayed), (4, us(5_000), false));
        // Two in a row start it again, from the 5,300 µs between them.
        let (mut pattern, last) = seen(t, &[4_900, 4_900, 4_900, 5_200, 5_200], 100);
        let rhythm = pattern.rhythm.unwrap();
        assert_eq!((rhythm.kept, rhythm.period, rhythm.due), (0, us(5_300), last + us(5_300)));
        assert_eq!(pattern.window(last, CAP, LATE), None);
        // Steady, but a 2 s period's error makes a window wider than the cap.
        let (mut pattern, last) = seen(t, &[2_000_000; 5], 0);
        assert_eq!(pattern.window(last, CAP, LATE), None);
    }

    #[test]
    fn a_packet_before_the_window_is_no_verdict_and_one_after_backs_off() {
        let t = Instant::now();
        let window = Some(Window { from: t + us(4_960), until: t + us(5_080) });
        let mut pattern = Pattern { backoff: 4, ..Pattern::default() };
        pattern.learn(t + us(3_000), window);
        assert_eq!((pattern.backoff, pattern.skip), (4, 0), "nothing was spent");
        pattern.learn(t + us(6_000), window);
        assert_eq!((pattern.backoff, pattern.skip), (8, 8), "the window came up empty");
    }

    #[test]
    fn empty_polls_back_off_exponentially_up_to_a_limit() {
        let t = Instant::now();
        let (mut pattern, last) = seen(t, &[4_900; 5], 100);
        let steady = pattern;
        let mut skipped = Vec::new();
        for _ in 0..10 {
            let mut count = 0;
            let window = loop {
                match pattern.window(last, CAP, LATE) {
                    Some(window) => break window,
                    None => count += 1,
                }
            };
            skipped.push(count);
            // Each poll comes up empty; the rhythm itself is kept as it was.
            pattern.learn(window.until + us(1), Some(window));
            pattern = Pattern { skip: pattern.skip, backoff: pattern.backoff, ..steady };
        }
        assert_eq!(skipped, [0, 1, 2, 4, 8, 16, 32, 64, 64, 64]);
        pattern.skip = 0;
        let window = pattern.window(last, CAP, LATE).unwrap();
        pattern.learn(window.from + us(1), Some(window));
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
    fn a_window_is_cut_to_the_budget() {
        let t = Instant::now();
        let mut waiter = Waiter::new(CAP, t);
        let (pattern, last) = seen(t, &[4_900; 5], 100);
        waiter.patterns = [pattern; 2];
        let since = last + us(100);
        waiter.budget = Budget { left: us(30), at: since };
        let rhythm = pattern.rhythm.unwrap();
        let from = rhythm.due - rhythm.error * 2 - JITTER - FIRST_LATENESS;
        assert_eq!(waiter.window(since), Some(Window { from, until: from + us(30) }));
        waiter.budget.left = Duration::ZERO;
        assert_eq!(waiter.window(since), None, "no budget, no poll");
    }

    #[test]
    fn a_lane_busy_for_most_of_a_stretch_does_not_poll() {
        let t = Instant::now();
        let (mut waiter, last) = steady_waiter(t);
        // Bulk: 80 µs of work, then 20 µs idle, over a whole stretch.
        let mut now = last;
        for _ in 0..EPOCH.as_micros() / 100 {
            waiter.load.idled(now + us(80), now + us(100));
            now += us(100);
        }
        assert!(waiter.load.busy_most);
        assert_eq!(waiter.window(last + us(100)), None, "a busy lane sleeps");
        // Then a long idle period: the next stretch is mostly idle, and polling resumes.
        waiter.load.idled(now + us(80), now + EPOCH);
        assert!(!waiter.load.busy_most);
        assert!(waiter.window(last + us(100)).is_some());
    }

    #[test]
    fn a_lane_working_an_eighth_of_a_stretch_is_loaded() {
        let t = Instant::now();
        let mut load = Load::new(t);
        // A stretch with 2 ms of work in 10: loaded, though mostly idle.
        load.idled(t + us(2_000), t + EPOCH);
        assert!(load.loaded && !load.busy_most);
        // One with a 50 µs answer every 5 ms: light.
        let t = t + EPOCH;
        load.idled(t + us(50), t + us(5_000));
        load.idled(t + us(5_050), t + EPOCH);
        assert!(!load.loaded);
    }

    #[test]
    fn a_poll_kept_off_its_cpu_stops_polling_for_a_while_that_grows() {
        let t = Instant::now();
        let (mut waiter, last) = steady_waiter(t);
        let since = last + us(100);
        assert!(waiter.window(since).is_some());
        waiter.contended(since - us(50));
        assert_eq!(waiter.window(since), None, "quiet after a poll kept off its CPU");
        // Contended polls whenever the lane polls again: the quiet doubles up to a second.
        let mut quiet = Vec::new();
        for _ in 0..6 {
            waiter.contended(waiter.quiet_ends().unwrap());
            quiet.push(waiter.quiet.as_millis());
        }
        assert_eq!(quiet, [200, 400, 800, 1_000, 1_000, 1_000]);
        // A whole MAX_QUIET of polling without contention starts over.
        waiter.contended(waiter.quiet_ends().unwrap() + MAX_QUIET);
        assert_eq!(waiter.quiet, FIRST_QUIET);
    }

    #[test]
    fn a_zero_cap_never_polls() {
        let t = Instant::now();
        let (mut waiter, last) = steady_waiter(t);
        assert!(waiter.window(last + us(100)).is_some());
        waiter.cap = Duration::ZERO;
        assert_eq!(waiter.window(last + us(100)), None);
    }

    #[test]
    fn each_kind_of_idle_period_is_learnt_apart() {
        let t = Instant::now();
        let (mut waiter, last) = steady_waiter(t);
        waiter.patterns[Ending::Sent as usize] = Pattern::default();
        waiter.last = Ending::Sent;
        assert_eq!(waiter.window(last + us(100)), None);
        waiter.last = Ending::Received;
        assert!(waiter.window(last + us(100)).is_some());
    }
}
