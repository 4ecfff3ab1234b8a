//! Where and when the calling thread runs: CPU affinity, the `SCHED_IDLE` policy, the nice
//! value, timer slack, and how long it waited for a CPU.

use std::fs::File;
use std::io;
use std::num::NonZeroU64;
use std::os::unix::fs::FileExt as _;
use std::time::Duration;

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

/// A set of CPUs a thread may run on.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Cpus(CpuSet);

impl Cpus {
    /// The CPUs the calling thread may run on now.
    ///
    /// # Errors
    ///
    /// The failing `sched_getaffinity` call's error.
    pub fn of_current_thread() -> io::Result<Self> {
        Ok(Self(sched_getaffinity(None)?))
    }

    /// The set of `cpu` alone.
    pub fn only(cpu: usize) -> Self {
        let mut set = CpuSet::new();
        set.set(cpu);
        Self(set)
    }

    /// The lowest-numbered CPU in the set.
    pub fn first(&self) -> Option<usize> {
        (0..CpuSet::MAX_CPU).find(|&cpu| self.0.is_set(cpu))
    }

    /// Whether `cpu` is in the set.
    pub fn contains(&self, cpu: usize) -> bool {
        cpu < CpuSet::MAX_CPU && self.0.is_set(cpu)
    }

    /// Lets the calling thread run on these CPUs only; the scheduler moves it at once if it
    /// is on another.
    ///
    /// # Errors
    ///
    /// The failing `sched_setaffinity` call's error.
    pub fn apply_to_current_thread(&self) -> io::Result<()> {
        sched_setaffinity(None, &self.0).map_err(io::Error::from)
    }
}

impl std::fmt::Debug for Cpus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries((0..CpuSet::MAX_CPU).filter(|&cpu| self.0.is_set(cpu))).finish()
    }
}

/// The calling thread's total time spent runnable but waiting for a CPU, read from
/// `/proc/thread-self/schedstat` (the file is opened by, and describes, the thread that
/// opens it).
#[derive(Debug)]
pub struct RunDelay(File);

impl RunDelay {
    /// Opens the calling thread's statistics.
    ///
    /// # Errors
    ///
    /// If the kernel does not keep them (no `CONFIG_SCHED_INFO`) or `/proc` is not mounted.
    pub fn of_current_thread() -> io::Result<Self> {
        let delay = Self(File::open("/proc/thread-self/schedstat")?);
        delay.total()?;
        Ok(delay)
    }

    /// How long the thread has waited for a CPU since it started.
    ///
    /// # Errors
    ///
    /// The failing read's error, or `InvalidData` if the file does not read as expected.
    pub fn total(&self) -> io::Result<Duration> {
        // "<ns on CPU> <ns waiting> <time slices>\n": three u64s fit in 64 bytes.
        let mut buf = [0u8; 64];
        let len = self.0.read_at(&mut buf, 0)?;
        let text = buf.get(..len).and_then(|bytes| std::str::from_utf8(bytes).ok());
        text.and_then(|text| text.split_ascii_whitespace().nth(1))
            .and_then(|waiting| waiting.parse().ok())
            .map(Duration::from_nanos)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unexpected schedstat"))
    }
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

/// Sets the calling thread's nice value, from -20 (the largest share of a contended CPU) to
/// 19. Linux keeps one per thread, and `setpriority(PRIO_PROCESS, 0, ..)` changes the
/// caller's alone. [`set_idle_policy`] keeps it: it applies again once the thread leaves
/// `SCHED_IDLE`.
///
/// # Errors
///
/// The failing `setpriority` call's error: going below the current value needs
/// `CAP_SYS_NICE` (or an `RLIMIT_NICE` that allows it).
pub fn set_nice(nice: i32) -> io::Result<()> {
    // SAFETY: plain integers; `who` 0 is the calling thread.
    cvt(unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) }).map(drop)
}

/// Whether this process may give a thread the nice value `nice`, tried on a throwaway thread.
pub fn nice_is_allowed(nice: i32) -> bool {
    std::thread::scope(|scope| scope.spawn(|| set_nice(nice).is_ok()).join().unwrap_or(false))
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

    /// A thread gathered on one CPU runs there, and returns to the whole set when asked.
    #[test]
    fn a_thread_moves_to_one_cpu_and_back() {
        std::thread::spawn(|| {
            let all = Cpus::of_current_thread().unwrap();
            let first = all.first().unwrap();
            assert!(all.contains(first));
            Cpus::only(first).apply_to_current_thread().unwrap();
            assert_eq!(Cpus::of_current_thread().unwrap(), Cpus::only(first));
            // SAFETY: sched_getcpu takes no arguments and only reads this thread's state.
            assert_eq!(unsafe { libc::sched_getcpu() }, first as libc::c_int);
            all.apply_to_current_thread().unwrap();
            assert_eq!(Cpus::of_current_thread().unwrap(), all);
        })
        .join()
        .unwrap();
    }

    /// The calling thread's nice value, field 19 of `/proc/thread-self/stat`.
    fn own_nice() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // The command name (field 2) may hold spaces; fields after it follow its ')'.
        let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
        after_comm.split_ascii_whitespace().nth(16).unwrap().parse().unwrap()
    }

    /// A thread's nice value changes for that thread only, and survives a trip through
    /// `SCHED_IDLE` where the process may make one.
    #[test]
    fn nice_is_per_thread_and_outlives_the_idle_policy() {
        let before = own_nice();
        let target = (before + 3).min(19);
        let seen = std::thread::spawn(move || {
            // Raising the value needs no privilege.
            set_nice(target).unwrap();
            let set = own_nice();
            let after_idle =
                (set_idle_policy(true).is_ok() && set_idle_policy(false).is_ok()).then(own_nice);
            (set, after_idle)
        })
        .join()
        .unwrap();
        assert_eq!(seen.0, target);
        if let Some(after_idle) = seen.1 {
            assert_eq!(after_idle, target, "the normal policy came back with another nice");
        }
        assert_eq!(own_nice(), before, "another thread's nice changed this one's");
        assert!(nice_is_allowed(target));
    }

    /// The waiting time reads and never goes backwards.
    #[test]
    fn run_delay_reads_and_grows() {
        let delay = RunDelay::of_current_thread().unwrap();
        let before = delay.total().unwrap();
        std::thread::yield_now();
        assert!(delay.total().unwrap() >= before);
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
