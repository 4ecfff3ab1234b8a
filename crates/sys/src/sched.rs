//! Where and when the calling thread runs: CPU affinity, the `SCHED_IDLE` policy and timer
//! slack.

use std::io;
use std::num::NonZeroU64;

use rustix::thread::{sched_getaffinity, sched_setaffinity, set_current_timer_slack, CpuSet};

use crate::errno::cvt;

/// Pins the calling thread to the `index`-th CPU it is allowed to run on (wrapping around),
/// and returns that CPU's number.
///
/// # Errors
///
/// The failing `sched_getaffinity`/`sched_setaffinity` call's error.
pub fn pin_current_thread(index: usize) -> io::Result<usize> {
    let allowed = sched_getaffinity(None)?;
    let cpus: Vec<usize> = (0..CpuSet::MAX_CPU).filter(|&cpu| allowed.is_set(cpu)).collect();
    let cpu = *cpus.get(index % cpus.len().max(1)).ok_or(io::ErrorKind::NotFound)?;
    let mut only = CpuSet::new();
    only.set(cpu);
    sched_setaffinity(None, &only)?;
    Ok(cpu)
}

/// Moves the calling thread to `SCHED_IDLE` (`idle`) or back to the normal policy.
///
/// A thread under `SCHED_IDLE` runs only when its CPU has nothing else to do, and any other
/// thread woken there preempts it at once: the way to poll without taking time from work.
///
/// # Errors
///
/// The failing `sched_setscheduler` call's error: leaving `SCHED_IDLE` needs `CAP_SYS_NICE`
/// (or an `RLIMIT_NICE` that allows nice 0), so check [`idle_policy_is_reversible`] first.
pub fn set_idle_policy(idle: bool) -> io::Result<()> {
    let policy = if idle { libc::SCHED_IDLE } else { libc::SCHED_OTHER };
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: the pointer describes `param`, which outlives the call; pid 0 is this thread.
    cvt(unsafe { libc::sched_setscheduler(0, policy, &param) }).map(drop)
}

/// Makes the calling thread's timed sleeps end within a nanosecond of their deadline instead
/// of the default 50 µs "timer slack", which the kernel spends to batch wake-ups: for a
/// thread that must be awake just before a packet it expects.
///
/// # Errors
///
/// The failing `prctl(PR_SET_TIMERSLACK)` call's error.
pub fn set_precise_timers() -> io::Result<()> {
    set_current_timer_slack(NonZeroU64::new(1)).map_err(io::Error::from)
}

/// Whether this process may move a thread to `SCHED_IDLE` and back, tried on a throwaway
/// thread so that a one-way trip strands nothing.
pub fn idle_policy_is_reversible() -> bool {
    std::thread::scope(|scope| {
        scope
            .spawn(|| set_idle_policy(true).and_then(|()| set_idle_policy(false)).is_ok())
            .join()
            .unwrap_or(false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins a throwaway thread (so the test runner's stays unpinned) and returns the CPU it
    /// chose and the set the thread was left with.
    fn pin_fresh_thread(index: usize) -> (usize, CpuSet) {
        std::thread::spawn(move || {
            let cpu = pin_current_thread(index).unwrap();
            (cpu, sched_getaffinity(None).unwrap())
        })
        .join()
        .unwrap()
    }

    /// Pinning picks the allowed CPUs in turn, wrapping around, and leaves the thread on
    /// the chosen CPU alone.
    #[test]
    fn pinning_takes_the_allowed_cpus_in_turn() {
        let allowed = sched_getaffinity(None).unwrap();
        let count = allowed.count() as usize;
        let (first, left) = pin_fresh_thread(0);
        assert!(allowed.is_set(first));
        assert_eq!(left.count(), 1);
        assert!(left.is_set(first));
        assert_eq!(pin_fresh_thread(count).0, first, "index {count} wraps to the first");
        if count > 1 {
            let (second, _) = pin_fresh_thread(1);
            assert!(allowed.is_set(second) && second > first, "{second} after {first}");
        }
    }
}
