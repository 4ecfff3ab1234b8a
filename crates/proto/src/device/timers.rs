//! Timer events and their handlers (whitepaper §6), and the device's timer queue.
//!
//! Per-packet events only write a deadline or a timestamp into the peer; the queue holds one
//! live entry per peer (its earliest deadline) and stale entries are skipped when popped, so
//! the data path never pays for heap operations. Timers that would be pushed back by every
//! packet (persistent keepalive) are re-evaluated when they fire instead.

use std::cmp::Reverse;
use std::time::{Duration, Instant};

use rand_core::RngCore;

use super::{Device, DropReason, Event};
use crate::constants::{
    KEEPALIVE_TIMEOUT, MAX_TIMER_HANDSHAKES, REJECT_AFTER_TIME, REKEY_AFTER_TIME, REKEY_TIMEOUT,
    REKEY_TIMEOUT_JITTER_MAX,
};
use crate::noise;
use crate::peer::PeerId;
use crate::session::sealed_len;
use crate::tai64n::Tai64n;
use crate::timers::Timer;
use crate::wire::DATA_HEADER_LEN;

impl Device {
    /// The earliest time at which [`Device::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timer_queue.peek().map(|Reverse((at, _))| *at)
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&Reverse((at, id))) = self.timer_queue.peek() {
            if at > now {
                break;
            }
            self.timer_queue.pop();
            match self.peer_mut(id) {
                Some(peer) if peer.scheduled == Some(at) => peer.scheduled = None,
                _ => continue,
            }
            while let Some(timer) = self.peer_mut(id).and_then(|p| p.timers.pop_expired(now)) {
                self.on_timer(now, id, timer);
            }
            self.reschedule(id);
        }
    }

    fn jitter(&mut self) -> Duration {
        let max = REKEY_TIMEOUT_JITTER_MAX.as_millis() as u32 + 1;
        Duration::from_millis(u64::from(self.rng.next_u32() % max))
    }

    /// Arms `timer` for `id` and makes sure the queue wakes up for it.
    pub(super) fn arm(&mut self, id: PeerId, timer: Timer, at: Instant) {
        let Some(peer) = self.peer_mut(id) else { return };
        peer.timers.set(timer, at);
        self.reschedule(id);
    }

    fn stop(&mut self, id: PeerId, timer: Timer) {
        if let Some(peer) = self.peer_mut(id) {
            peer.timers.stop(timer);
        }
    }

    fn reschedule(&mut self, id: PeerId) {
        let Some(peer) = self.peer_mut(id) else { return };
        let Some(next) = peer.timers.next() else { return };
        if peer.scheduled.is_none_or(|s| next < s) {
            peer.scheduled = Some(next);
            self.timer_queue.push(Reverse((next, id)));
        }
    }

    fn on_timer(&mut self, now: Instant, id: PeerId, timer: Timer) {
        match timer {
            Timer::RetransmitHandshake => self.retransmit_handshake(now, id),
            Timer::SendKeepalive => {
                self.send_keepalive(now, id);
                let again = self
                    .peer_mut(id)
                    .is_some_and(|p| core::mem::take(&mut p.need_another_keepalive));
                if again {
                    self.arm(id, Timer::SendKeepalive, now + KEEPALIVE_TIMEOUT);
                }
            }
            Timer::NewHandshake => {
                self.clear_endpoint_source(id);
                self.send_initiation(now, id, false);
            }
            Timer::ZeroKeyMaterial => self.zero_key_material(id),
            Timer::PersistentKeepalive => {
                let Some(peer) = self.peer(id) else { return };
                let interval = Duration::from_secs(u64::from(peer.persistent_keepalive));
                if interval.is_zero() {
                    return;
                }
                match peer.last_authenticated_traffic.map(|t| t + interval) {
                    Some(due) if due > now => self.arm(id, Timer::PersistentKeepalive, due),
                    _ => self.send_keepalive(now, id),
                }
            }
        }
    }

    fn retransmit_handshake(&mut self, now: Instant, id: PeerId) {
        let Some(peer) = self.peer_mut(id) else { return };
        if peer.handshake_attempts > MAX_TIMER_HANDSHAKES {
            peer.timers.stop(Timer::SendKeepalive);
            let dropped = peer.staged.len() as u64;
            peer.staged.clear();
            peer.stats.handshakes_timed_out += 1;
            let zeroing = peer.timers.is_armed(Timer::ZeroKeyMaterial);
            self.stats.record_drop(DropReason::QueueOverflow, dropped);
            self.events.push_back(Event::HandshakeTimedOut { peer: id });
            if !zeroing {
                self.arm(id, Timer::ZeroKeyMaterial, now + REJECT_AFTER_TIME * 3);
            }
        } else {
            peer.handshake_attempts += 1;
            self.clear_endpoint_source(id);
            self.send_initiation(now, id, true);
        }
    }

    fn zero_key_material(&mut self, id: PeerId) {
        let Some(peer) = self.peer_mut(id) else { return };
        let sessions = peer.sessions.take_all();
        let handshake = peer.handshake.take();
        self.release_sessions(sessions);
        if let Some(state) = handshake {
            self.indices.remove(&state.local_index);
        }
        self.events.push_back(Event::KeysZeroed { peer: id });
    }

    /// Sends a handshake initiation, at most once per REKEY_TIMEOUT.
    pub(super) fn send_initiation(&mut self, now: Instant, id: PeerId, retry: bool) {
        let Some(peer) = self.peer_mut(id) else { return };
        if !retry {
            peer.handshake_attempts = 0;
        }
        if peer
            .last_initiation_sent
            .is_some_and(|t| now.saturating_duration_since(t) < REKEY_TIMEOUT)
        {
            return;
        }
        let Some(endpoint) = peer.endpoint else { return };
        if let Some(old) = peer.handshake.take() {
            self.indices.remove(&old.local_index);
        }
        let index = self.allocate_index(super::IndexEntry::Handshake(id));
        let wall = Tai64n::from_unix(self.wall_clock.at(now));
        let timestamp = self.last_timestamp.map_or(wall, |last| wall.max(last.next()));
        self.last_timestamp = Some(timestamp);
        let Self { identity, slots, rng, .. } = self;
        let (Some(identity), Some(peer)) =
            (identity.as_ref(), slots[id.slot as usize].peer.as_mut())
        else {
            self.indices.remove(&index);
            return;
        };
        let Ok((mut message, state)) =
            noise::create_initiation(identity, &peer.keys, index, timestamp, rng)
        else {
            self.indices.remove(&index);
            return;
        };
        peer.cookies.stamp(&peer.keys.remote, &mut message, now);
        peer.handshake = Some(Box::new(state));
        peer.last_initiation_sent = Some(now);
        peer.stats.handshakes_initiated += 1;
        self.queue_transmit(Some(id), endpoint, message.to_vec());
        self.on_authenticated_sent(now, id);
        let jitter = self.jitter();
        self.arm(id, Timer::RetransmitHandshake, now + REKEY_TIMEOUT + jitter);
        self.events.push_back(Event::HandshakeInitiated { peer: id, retry });
    }

    /// Sends queued packets, or a keepalive when none are queued.
    pub(super) fn send_keepalive(&mut self, now: Instant, id: PeerId) {
        let Some(peer) = self.peer_mut(id) else { return };
        if peer.staged.is_empty() {
            peer.staged.push_back(Vec::new());
        }
        self.send_staged(now, id);
    }

    /// Seals and sends queued packets if a session can send; otherwise starts a handshake and
    /// keeps them queued.
    pub(super) fn send_staged(&mut self, now: Instant, id: PeerId) {
        let mtu = self.mtu;
        let Some(peer) = self.peer_mut(id) else { return };
        if peer.staged.is_empty() {
            return;
        }
        let (Some(session), Some(endpoint)) = (peer.sessions.sendable(now).cloned(), peer.endpoint)
        else {
            self.send_initiation(now, id, false);
            return;
        };
        let staged = core::mem::take(&mut peer.staged);
        let mut sent_data = false;
        for packet in staged {
            let mut buf = vec![0u8; sealed_len(packet.len(), mtu)];
            buf[DATA_HEADER_LEN..DATA_HEADER_LEN + packet.len()].copy_from_slice(&packet);
            match session.seal(&mut buf, packet.len(), mtu) {
                Ok(_) => {
                    sent_data |= !packet.is_empty();
                    self.queue_transmit(Some(id), endpoint, buf);
                }
                Err(_) => {
                    // Counters ran out between the check and the seal: keep it for the next
                    // session.
                    if let Some(peer) = self.peer_mut(id) {
                        peer.staged.push_back(packet);
                    }
                }
            }
        }
        self.on_data_sent(now, id, sent_data);
    }

    /// Timer bookkeeping after authenticated packets went out; `data` unless all were
    /// keepalives.
    pub(super) fn on_data_sent(&mut self, now: Instant, id: PeerId, data: bool) {
        self.on_authenticated_sent(now, id);
        if data && !self.peer(id).is_some_and(|p| p.timers.is_armed(Timer::NewHandshake)) {
            let jitter = self.jitter();
            self.arm(id, Timer::NewHandshake, now + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + jitter);
        }
        self.keep_key_fresh_on_send(now, id);
    }

    /// Any authenticated packet sent: no keepalive is owed any more.
    pub(super) fn on_authenticated_sent(&mut self, now: Instant, id: PeerId) {
        self.stop(id, Timer::SendKeepalive);
        self.on_traffic(now, id);
    }

    /// Any authenticated packet received: the peer is alive.
    pub(super) fn on_authenticated_received(&mut self, now: Instant, id: PeerId) {
        self.stop(id, Timer::NewHandshake);
        self.on_traffic(now, id);
    }

    /// Data (not a keepalive) received: owe the peer a keepalive unless we send something.
    pub(super) fn on_data_received(&mut self, now: Instant, id: PeerId) {
        let Some(peer) = self.peer_mut(id) else { return };
        if peer.timers.is_armed(Timer::SendKeepalive) {
            peer.need_another_keepalive = true;
        } else {
            self.arm(id, Timer::SendKeepalive, now + KEEPALIVE_TIMEOUT);
        }
    }

    fn on_traffic(&mut self, now: Instant, id: PeerId) {
        let Some(peer) = self.peer_mut(id) else { return };
        peer.last_authenticated_traffic = Some(now);
        self.arm_persistent_keepalive(now, id);
    }

    pub(super) fn arm_persistent_keepalive(&mut self, now: Instant, id: PeerId) {
        let Some(peer) = self.peer(id) else { return };
        if peer.persistent_keepalive != 0 && !peer.timers.is_armed(Timer::PersistentKeepalive) {
            let interval = Duration::from_secs(u64::from(peer.persistent_keepalive));
            self.arm(id, Timer::PersistentKeepalive, now + interval);
        }
    }

    /// A handshake completed: the retransmissions stop and the handshake time is recorded.
    pub(super) fn on_handshake_complete(&mut self, now: Instant, id: PeerId, initiator: bool) {
        let wall = self.wall_clock.at(now);
        let Some(peer) = self.peer_mut(id) else { return };
        peer.timers.stop(Timer::RetransmitHandshake);
        peer.handshake_attempts = 0;
        peer.sent_lastminute_handshake = false;
        peer.last_handshake = Some(wall);
        peer.stats.handshakes_completed += 1;
        let predecessor = peer.successor_of.take();
        self.events.push_back(Event::HandshakeCompleted { peer: id, initiator });
        if let Some(old) =
            predecessor.and_then(|key| self.peer_by_key(&key)).filter(|&old| old != id)
        {
            for cidr in self.allowed_ips.prefixes_of(old) {
                self.allowed_ips.insert(cidr, id);
            }
            self.events.push_back(Event::SuccessorActivated { peer: id, predecessor: old });
        }
    }

    /// A session was derived: its keys are erased if nothing replaces them in time.
    pub(super) fn on_session_derived(&mut self, now: Instant, id: PeerId) {
        self.arm(id, Timer::ZeroKeyMaterial, now + REJECT_AFTER_TIME * 3);
    }

    /// Initiates a new handshake when the current session is old or used up (sending side).
    fn keep_key_fresh_on_send(&mut self, now: Instant, id: PeerId) {
        let Some(current) = self.peer(id).and_then(|p| p.sessions.current.as_ref()) else { return };
        let stale =
            current.initiator && now.saturating_duration_since(current.created) >= REKEY_AFTER_TIME;
        if current.can_send() && (stale || current.needs_rekey_by_count()) {
            self.send_initiation(now, id, false);
        }
    }

    /// The initiator rekeys shortly before its session would be rejected, if it only receives.
    pub(super) fn keep_key_fresh_on_receive(&mut self, now: Instant, id: PeerId) {
        let Some(peer) = self.peer_mut(id) else { return };
        let Some(current) = peer.sessions.current.as_ref() else { return };
        let limit = REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT;
        if current.initiator
            && !peer.sent_lastminute_handshake
            && now.saturating_duration_since(current.created) >= limit
        {
            peer.sent_lastminute_handshake = true;
            self.send_initiation(now, id, false);
        }
    }
}
