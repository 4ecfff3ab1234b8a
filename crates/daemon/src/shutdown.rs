//! The one place that decides when the daemon stops, and why.
//!
//! Any thread may [`Shutdown::trigger`] it (the signal thread, the socket watcher, the data
//! path when the TUN device disappears); the first reason wins and every waiter wakes up.

use std::fmt;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Why the daemon stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// SIGINT or SIGTERM.
    Signal(i32),
    /// The userspace API socket file was removed or replaced.
    SocketRemoved,
    /// The TUN device was deleted (`ip link del`). Triggered by the data path.
    InterfaceGone,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Signal(SIGINT) => f.write_str("received SIGINT"),
            Self::Signal(SIGTERM) => f.write_str("received SIGTERM"),
            Self::Signal(other) => write!(f, "received signal {other}"),
            Self::SocketRemoved => f.write_str("the userspace API socket file was removed"),
            Self::InterfaceGone => f.write_str("the interface was deleted"),
        }
    }
}

/// A latch that threads trigger once and wait on; cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct Shutdown(Arc<(Mutex<Option<Reason>>, Condvar)>);

impl Shutdown {
    /// Records `reason` unless another came first, and wakes every waiter.
    pub(crate) fn trigger(&self, reason: Reason) {
        let (state, changed) = &*self.0;
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.is_none() {
            *state = Some(reason);
            changed.notify_all();
        }
    }

    /// Blocks until triggered.
    pub(crate) fn wait(&self) -> Reason {
        let (state, changed) = &*self.0;
        let state = state.lock().unwrap_or_else(PoisonError::into_inner);
        let state = changed
            .wait_while(state, |reason| reason.is_none())
            .unwrap_or_else(PoisonError::into_inner);
        // Invariant: `wait_while` returns only once the predicate is false, i.e. a reason is set.
        state.expect("a shutdown reason is set")
    }

    /// Blocks until triggered or `timeout` passes; `None` on timeout. Pollers use this as their
    /// sleep so that they stop promptly.
    pub(crate) fn wait_timeout(&self, timeout: Duration) -> Option<Reason> {
        let (state, changed) = &*self.0;
        let state = state.lock().unwrap_or_else(PoisonError::into_inner);
        let (state, _) = changed
            .wait_timeout_while(state, timeout, |reason| reason.is_none())
            .unwrap_or_else(PoisonError::into_inner);
        *state
    }

    /// Turns SIGINT and SIGTERM into a trigger, from a dedicated thread.
    ///
    /// # Errors
    /// When the handlers cannot be installed or the thread cannot start.
    pub(crate) fn trigger_on_signals(&self) -> anyhow::Result<()> {
        let mut signals =
            Signals::new([SIGINT, SIGTERM]).context("installing SIGINT/SIGTERM handlers")?;
        let shutdown = self.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                if let Some(signal) = signals.forever().next() {
                    shutdown.trigger(Reason::Signal(signal));
                }
            })
            .context("starting the signal thread")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_reason_wins_and_wakes_waiters() {
        let shutdown = Shutdown::default();
        assert_eq!(shutdown.wait_timeout(Duration::ZERO), None);
        let waiter = {
            let shutdown = shutdown.clone();
            std::thread::spawn(move || shutdown.wait())
        };
        shutdown.trigger(Reason::SocketRemoved);
        shutdown.trigger(Reason::Signal(SIGTERM));
        assert_eq!(waiter.join().unwrap(), Reason::SocketRemoved);
        assert_eq!(shutdown.wait_timeout(Duration::from_secs(60)), Some(Reason::SocketRemoved));
    }

    #[test]
    fn reasons_read_well_in_logs() {
        assert_eq!(Reason::Signal(SIGTERM).to_string(), "received SIGTERM");
        assert_eq!(Reason::InterfaceGone.to_string(), "the interface was deleted");
    }
}
