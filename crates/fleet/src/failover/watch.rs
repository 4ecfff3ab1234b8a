//! The loop around a [`Monitor`]: probe every relay through the tunnel, read the device's
//! counters, let the monitor decide, and apply its switches with `wg set`.
//!
//! It only runs the stock tools (`ping`, `wg`), through a caller-supplied command builder, so
//! the same loop drives a local interface (`Command::new`), one inside a network namespace
//! (the demo), a kernel interface or a userspace daemon.

use core::fmt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::live::{parse_dump, DumpError};
use super::{Monitor, Reason};
use crate::names::Name;
use crate::netns::{describe, run, CommandError};

/// What the loop reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A probe round finished: whether each relay (in relay order) was alive.
    Round {
        /// The host.
        host: Name,
        /// Each relay and whether it was alive this round.
        alive: Vec<(Name, bool)>,
    },
    /// The failover routes moved; `wg set` has already been applied.
    Switched {
        /// The host.
        host: Name,
        /// The relay that carried them.
        from: Name,
        /// The relay that carries them now.
        to: Name,
        /// Why.
        reason: Reason,
        /// When the device was updated.
        at: Instant,
    },
}

/// Why the loop stopped before being asked to.
#[derive(Debug)]
#[non_exhaustive]
pub enum WatchError {
    /// `wg` or `ping` could not run, or `wg` refused a change.
    Command(CommandError),
    /// `wg show dump` printed something unexpected.
    Dump(DumpError),
}

impl fmt::Display for WatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Command(error) => write!(f, "failover monitor: {error}"),
            Self::Dump(error) => write!(f, "failover monitor: {error}"),
        }
    }
}

impl std::error::Error for WatchError {}

impl From<CommandError> for WatchError {
    fn from(error: CommandError) -> Self {
        Self::Command(error)
    }
}

/// The command builder for an interface on this host's own network stack, to pass to
/// [`watch`] (a function, unlike `Command::new`, accepts a program name of any lifetime).
pub fn on_this_host(program: &str) -> Command {
    Command::new(program)
}

/// The monotonic clock: this loop is an I/O edge of the crate, paced in real time.
#[expect(clippy::disallowed_methods, reason = "the watch loop paces probes in real time")]
fn now() -> Instant {
    Instant::now()
}

/// Runs `monitor` until `stop` is set: every [`super::Policy::interval`], pings each relay's
/// overlay address through the interface, reads `wg show IFACE dump`, and applies any switch
/// with one `wg set`. `command(program)` builds the command for a program on the host:
/// [`on_this_host`], or `ip netns exec NS program` as [`crate::netns::command_in`] builds it.
/// Returns the monitor, with the configuration as last applied.
///
/// # Errors
/// [`WatchError`] when a tool cannot run, `wg` fails (the interface is gone) or its dump is
/// malformed. A probe that goes unanswered is not an error.
pub fn watch(
    mut monitor: Monitor,
    command: impl Fn(&str) -> Command,
    stop: &AtomicBool,
    mut on_event: impl FnMut(Event),
) -> Result<Monitor, WatchError> {
    let host = monitor.config().host.clone();
    let interface = monitor.config().interface.clone();
    let policy = *monitor.policy();
    let keys: Vec<_> = monitor
        .probes()
        .map(|(relay, _)| monitor.config().peer(relay.as_str()).map(|peer| peer.public_key))
        .collect();
    let mut last_rx: Vec<Option<u64>> = vec![None; keys.len()];
    let mut next = now();
    while !stop.load(Ordering::Relaxed) {
        let probes: Vec<Child> = monitor
            .probes()
            .map(|(_, addr)| {
                let mut ping = command("ping");
                ping.args(["-n", "-q", "-c", "1", "-I", &interface])
                    .args(["-W", &format!("{:.3}", policy.timeout.as_secs_f64())])
                    .arg(addr.to_string())
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                let line = describe(&ping);
                ping.spawn().map_err(|e| CommandError {
                    command: line,
                    status: None,
                    stderr: e.to_string(),
                })
            })
            .collect::<Result<_, _>>()?;
        let answered: Vec<bool> = probes
            .into_iter()
            .map(|mut child| child.wait().is_ok_and(|status| status.success()))
            .collect();
        let dump = run(command("wg").args(["show", &interface, "dump"]))?;
        let peers = parse_dump(&dump).map_err(WatchError::Dump)?;
        let alive: Vec<bool> = keys
            .iter()
            .zip(&mut last_rx)
            .zip(&answered)
            .map(|((key, last), answered)| {
                let rx =
                    peers.iter().find(|peer| Some(peer.public_key) == *key).map(|p| p.rx_bytes);
                let grew = matches!((*last, rx), (Some(before), Some(after)) if after > before);
                *last = rx;
                *answered || grew
            })
            .collect();
        if let Some(switch) = monitor.handle_round(&alive) {
            run(command("wg").args(switch.wg_set_args()))?;
            on_event(Event::Switched {
                host: host.clone(),
                from: switch.from,
                to: switch.to,
                reason: switch.reason,
                at: now(),
            });
        }
        let relays = monitor.probes().map(|(relay, _)| relay.clone());
        on_event(Event::Round { host: host.clone(), alive: relays.zip(alive).collect() });
        next += policy.interval;
        sleep_until(next, stop);
        next = next.max(now());
    }
    Ok(monitor)
}

/// Sleeps until `deadline`, waking every 50 ms to honour `stop`.
fn sleep_until(deadline: Instant, stop: &AtomicBool) {
    const TICK: Duration = Duration::from_millis(50);
    loop {
        let left = deadline.saturating_duration_since(now());
        if left.is_zero() || stop.load(Ordering::Relaxed) {
            return;
        }
        std::thread::sleep(left.min(TICK));
    }
}
