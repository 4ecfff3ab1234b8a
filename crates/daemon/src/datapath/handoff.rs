//! A gathered lane's small deliveries, written to the TUN by a helper thread at idle priority.
//!
//! A delivery wakes the application waiting for it, and the scheduler puts a woken thread on
//! an idle CPU, halted on a virtual machine, unless all its waker's CPU runs is idle-priority
//! work: then it runs there at once. So a gathered lane hands a lone small frame (a reply, an
//! ACK) to its helper, which waits under `SCHED_IDLE` on the home CPU, and goes on; the
//! helper writes the frame as soon as the lane sleeps, and the application it wakes runs on
//! the home CPU, awake, preempting the helper. The lane itself never runs at idle priority
//! with work in hand: a woken application that keeps running would starve it.
//!
//! The helper can be starved instead, by a busy thread on the home CPU. So the hand-off holds
//! one frame at a time, and the lane takes a frame that is still waiting back and writes it
//! itself before it writes anything else, so packets stay in order (but for a frame the
//! helper has just taken and not yet written, which can come after the lane's next one:
//! rare, and IP does not promise order), or when it has slept [`LIMIT`] without the helper
//! running (and then stops gathering for a while).

use std::sync::{Arc, Mutex, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use wgfabric_sys::{set_idle_policy, wait_readable, Cpus, Doorbell, Error};

use super::Shared;

/// The largest frame handed off (with its virtio-net header): a reply or an ACK, not a
/// superframe, whose copy would cost more than the wake-up it saves.
const MAX_FRAME: usize = 256;
/// How long a lane sleeps, at most, while its helper holds a frame.
pub(super) const LIMIT: Duration = Duration::from_millis(10);

/// The frame waiting for the helper: `len` bytes of `frame`, none when `len` is zero.
struct Slot {
    frame: [u8; MAX_FRAME],
    len: usize,
    /// When the helper took the last frame.
    taken_at: Option<Instant>,
}

/// One lane's hand-off to its helper (see the module doc).
pub(super) struct Handoff {
    slot: Mutex<Slot>,
    bell: Doorbell,
}

impl Handoff {
    pub(super) fn new() -> std::io::Result<Self> {
        Ok(Self {
            slot: Mutex::new(Slot { frame: [0; MAX_FRAME], len: 0, taken_at: None }),
            bell: Doorbell::new()?,
        })
    }

    /// Hands `frame` to the helper; false (the caller writes it) when it is too large or the
    /// helper is busy with another.
    pub(super) fn offer(&self, frame: &[u8]) -> bool {
        let Some(mut slot) = self.try_slot() else { return false };
        if slot.len != 0 || frame.len() > MAX_FRAME || frame.is_empty() {
            return false;
        }
        let Some(dest) = slot.frame.get_mut(..frame.len()) else { return false };
        dest.copy_from_slice(frame);
        slot.len = frame.len();
        drop(slot);
        self.bell.ring();
        true
    }

    /// Writes a frame the helper has not taken yet with `write`, so that it goes out before
    /// whatever the lane writes next. Whether there was one.
    pub(super) fn reclaim(&self, write: impl FnOnce(&[u8])) -> bool {
        let Some(mut slot) = self.try_slot() else { return false };
        let len = std::mem::take(&mut slot.len);
        if let Some(frame) = slot.frame.get(..len).filter(|frame| !frame.is_empty()) {
            write(frame);
        }
        len != 0
    }

    /// Whether the helper was starved while the lane slept since `asleep`: it took the
    /// frame more than `patience` later, or has not yet taken it after that long (then the
    /// frame is written with `write`, as [`Self::reclaim`] does).
    pub(super) fn starved(
        &self,
        asleep: Instant,
        patience: Duration,
        write: impl FnOnce(&[u8]),
    ) -> bool {
        // The helper holds the slot while it takes the frame: it runs.
        let Some(slot) = self.try_slot() else { return false };
        if slot.len == 0 {
            return slot.taken_at.is_some_and(|at| at.saturating_duration_since(asleep) > patience);
        }
        drop(slot);
        asleep.elapsed() > patience && self.reclaim(write)
    }

    /// Whether a frame waits for the helper.
    pub(super) fn pending(&self) -> bool {
        self.try_slot().is_none_or(|slot| slot.len != 0)
    }

    /// The slot, unless the helper holds it (it is writing the frame).
    fn try_slot(&self) -> Option<std::sync::MutexGuard<'_, Slot>> {
        match self.slot.try_lock() {
            Ok(slot) => Some(slot),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// The helper's loop: waits at idle priority on `home` for frames and writes them to the
    /// lane's TUN queue until the daemon stops.
    pub(super) fn serve(&self, shared: &Arc<Shared>, queue: usize, home: usize) {
        let Some(tun) = shared.tun.queues().get(queue) else { return };
        if let Err(e) =
            Cpus::only(home).apply_to_current_thread().and_then(|()| set_idle_policy(true))
        {
            // Without both, the hand-off would only add a wake-up: lanes write themselves.
            tracing::debug!(lane = queue, error = %e, "no delivery helper");
            return;
        }
        let mut frame = [0; MAX_FRAME];
        loop {
            match wait_readable(
                &[std::os::fd::AsFd::as_fd(&self.bell)],
                &[&shared.io_shutdown],
                None,
            ) {
                Ok(_) => {}
                Err(Error::Shutdown) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "the delivery helper cannot wait");
                    return;
                }
            }
            self.bell.answer();
            // Copied out: the application the write wakes preempts this thread before it
            // could release the slot, and the lane must find it free.
            let len = {
                let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
                let len = std::mem::take(&mut slot.len);
                slot.taken_at = Some(Instant::now());
                match (frame.get_mut(..len), slot.frame.get(..len)) {
                    (Some(to), Some(from)) => to.copy_from_slice(from),
                    _ => continue,
                }
                len
            };
            if let Some(frame) = frame.get(..len).filter(|frame| !frame.is_empty()) {
                super::inbound::write(shared, tun, frame);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(handoff: &Handoff) -> Option<Vec<u8>> {
        let mut out = None;
        handoff.reclaim(|frame| out = Some(frame.to_vec()));
        out
    }

    #[test]
    fn one_small_frame_at_a_time() {
        let handoff = Handoff::new().unwrap();
        assert!(!handoff.pending());
        assert!(!handoff.offer(&[0; MAX_FRAME + 1]), "a superframe is written by the lane");
        assert!(!handoff.offer(&[]));
        assert!(handoff.offer(b"reply"));
        assert!(handoff.pending());
        assert!(!handoff.offer(b"next"), "the slot holds one frame");
        assert_eq!(written(&handoff).as_deref(), Some(&b"reply"[..]), "taken back in order");
        assert!(!handoff.pending());
        assert_eq!(written(&handoff), None);
        assert!(handoff.offer(&[7; MAX_FRAME]));
        assert_eq!(written(&handoff), Some(vec![7; MAX_FRAME]));
    }

    #[test]
    fn a_frame_held_by_the_helper_is_neither_replaced_nor_taken() {
        let handoff = Handoff::new().unwrap();
        let held = handoff.slot.lock().unwrap();
        assert!(!handoff.offer(b"reply"));
        assert!(!handoff.reclaim(|_| panic!("nothing to take")));
        assert!(handoff.pending(), "the helper is writing");
        drop(held);
        assert!(!handoff.pending());
    }
}
