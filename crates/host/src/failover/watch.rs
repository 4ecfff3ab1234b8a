//! The loop around a [`Monitor`]: probe every relay through the tunnel, read the device's
//! counters, let the monitor decide, and apply its switches.
//!
//! Probes are ICMP echoes sent from this process ([`Prober`]); the counters and the switches
//! go through the interface's userspace API ([`Device`]). The same loop drives an interface on
//! this host or, given its network namespace, one inside a namespace (the demo); API sockets
//! live in the file system, which namespaces share.

use core::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{Monitor, Reason};
use crate::probe::Prober;
use wgfabric_model::names::Name;
use wgfabric_uapi::{Device, DeviceError};

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
    /// The failover routes moved; the device has already taken the change.
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
    /// The probes could not be opened or sent.
    Probe(std::io::Error),
    /// The userspace API could not be read or refused a change (the interface is gone).
    Device(DeviceError),
}

impl fmt::Display for WatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Probe(error) => write!(f, "failover monitor: probes: {error}"),
            Self::Device(error) => write!(f, "failover monitor: {error}"),
        }
    }
}

impl std::error::Error for WatchError {}

impl From<DeviceError> for WatchError {
    fn from(error: DeviceError) -> Self {
        Self::Device(error)
    }
}

/// The monotonic clock: this loop is an I/O edge of the crate, paced in real time.
#[expect(clippy::disallowed_methods, reason = "the watch loop paces probes in real time")]
fn now() -> Instant {
    Instant::now()
}

/// Runs `monitor` until `stop` is set: every [`super::Policy::interval`], probes each relay's
/// overlay address through the interface, reads the peers' counters from `device`, and
/// applies any switch with one `set`. `namespace` is the network namespace of the interface
/// (as `ip netns` names it), `None` for this host's own. Returns the monitor, with the
/// configuration as last applied.
///
/// # Errors
/// [`WatchError`] when the probes cannot be opened or sent, or the device cannot be read or
/// refuses a switch. A probe that goes unanswered is not an error.
pub fn watch(
    mut monitor: Monitor,
    device: &Device,
    namespace: Option<&str>,
    stop: &AtomicBool,
    mut on_event: impl FnMut(Event),
) -> Result<Monitor, WatchError> {
    let host = monitor.config().host.clone();
    let policy = *monitor.policy();
    let targets: Vec<_> = monitor.probes().map(|(_, addr)| addr).collect();
    let mut prober = Prober::open(namespace, Some(&monitor.config().interface), &targets)
        .map_err(WatchError::Probe)?;
    let keys: Vec<_> = monitor
        .probes()
        .map(|(relay, _)| monitor.config().peer(relay.as_str()).map(|peer| peer.public_key))
        .collect();
    let mut last_rx: Vec<Option<u64>> = vec![None; keys.len()];
    let mut next = now();
    while !stop.load(Ordering::Relaxed) {
        let answered = prober.probe(policy.timeout).map_err(WatchError::Probe)?;
        let peers = device.get()?.peers;
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
            device.set(&switch.set_request())?;
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
