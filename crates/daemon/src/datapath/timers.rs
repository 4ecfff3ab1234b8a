//! The timer thread: runs the protocol's timers at their deadlines, and once a second
//! re-reads the interface MTU, re-anchors the wall clock used for handshake timestamps and
//! looks for the start or end of a handshake flood.
//!
//! The deadline it sleeps towards is stored under the device lock; any thread whose work
//! moves the device's next deadline earlier notifies it under that same lock, so no wake-up
//! is lost.

use std::sync::atomic::Ordering;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use wgfabric_sys::SendBatch;

use super::handshakes::{log_flood, FloodWatch};
use super::send::flush;
use super::{since_epoch, Shared};

const HOUSEKEEPING: Duration = Duration::from_secs(1);

pub(super) fn run(shared: &Shared) {
    let mut batch = SendBatch::new(8);
    let mut housekeeping = Instant::now();
    let mut flood = FloodWatch::default();
    loop {
        if shared.io_shutdown.is_triggered() {
            return;
        }
        let now = Instant::now();
        let mtu = (now >= housekeeping).then(|| shared.tun.mtu().ok()).flatten();
        if now >= housekeeping {
            let turned_away = shared.gate().turned_away();
            if let Some(change) = flood.check(turned_away, now) {
                log_flood(change);
            }
        }
        let mut state = shared.lock();
        state.device.handle_timeout(now);
        if now >= housekeeping {
            housekeeping = now + HOUSEKEEPING;
            state.device.set_wall_clock(now, since_epoch());
            if let Some(mtu) = mtu {
                state.device.set_mtu(mtu as usize);
                shared.mtu.store(mtu as usize, Ordering::Relaxed);
            }
        }
        let wake_at = state.device.poll_timeout().map_or(housekeeping, |t| t.min(housekeeping));
        state.timer_deadline = Some(wake_at);
        let outbox = shared.drain(&mut state);
        if !outbox.transmits.is_empty() || !outbox.events.is_empty() {
            drop(state);
            flush(shared, 0, &mut batch, outbox);
            continue;
        }
        let timeout = wake_at.saturating_duration_since(Instant::now());
        drop(
            shared.timer_wake.wait_timeout(state, timeout).unwrap_or_else(PoisonError::into_inner),
        );
    }
}
