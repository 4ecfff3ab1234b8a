//! Receiving handshake messages: initiations, responses and cookie replies.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Device, DropReason, Event, IndexEntry};
#[cfg(doc)]
use crate::admission::Admission;
use crate::admission::Admit;
use crate::constants::INITIATIONS_PER_SECOND;
use crate::noise;
use crate::peer::{Endpoint, PeerId};
use crate::session::Session;
use crate::wire::{CookieReply, Initiation, MessageType, Response};

/// The shortest gap between two initiations accepted from one peer.
const MIN_INITIATION_GAP: Duration =
    Duration::from_nanos(1_000_000_000 / INITIATIONS_PER_SECOND as u64);

impl Device {
    /// Handles a handshake initiation, handshake response or cookie reply from `from`: runs
    /// it through the device's own [`Admission`] gate, then [`Device::handle_admitted`].
    ///
    /// Set `under_load` when handshake messages arrive faster than they can be processed (for
    /// instance when the caller's handshake queue is filling up): senders without a valid
    /// `mac2` then get a cookie reply instead of costing a Diffie-Hellman. Callers that receive
    /// on several threads run a shared [`Admission`] there instead, and queue what it admits.
    ///
    /// # Errors
    /// The reason the message was dropped (already counted in [`Device::stats`]).
    pub fn handle_handshake(
        &mut self,
        now: Instant,
        from: Endpoint,
        datagram: &[u8],
        under_load: bool,
    ) -> Result<(), DropReason> {
        let result = match self.admission.admit(now, from.addr, datagram, under_load) {
            Admit::Queue(_) => return self.handle_admitted(now, from, datagram),
            Admit::CookieReply(reply) => {
                self.stats.cookie_replies_sent += 1;
                self.queue_transmit(None, from, reply.to_vec());
                DropReason::CookieRequired
            }
            Admit::Drop(reason) => reason,
        };
        self.stats.record_drop(result, 1);
        Err(result)
    }

    /// Handles a handshake message that an [`Admission`] gate admitted: `mac1` was checked
    /// there, along with the sender's budget and, when needed, its cookie. This is where the
    /// Diffie-Hellman work happens.
    ///
    /// # Errors
    /// The reason the message was dropped (already counted in [`Device::stats`]).
    pub fn handle_admitted(
        &mut self,
        now: Instant,
        from: Endpoint,
        datagram: &[u8],
    ) -> Result<(), DropReason> {
        let result = match MessageType::of(datagram) {
            Some(MessageType::Initiation) => self.on_initiation(now, from, datagram),
            Some(MessageType::Response) => self.on_response(now, from, datagram),
            Some(MessageType::CookieReply) => self.on_cookie_reply(now, datagram),
            Some(MessageType::Data) | None => Err(DropReason::Malformed),
        };
        if let Err(reason) = result {
            self.stats.record_drop(reason, 1);
        }
        result
    }

    fn on_initiation(
        &mut self,
        now: Instant,
        from: Endpoint,
        datagram: &[u8],
    ) -> Result<(), DropReason> {
        let message = Initiation::parse(datagram).ok_or(DropReason::Malformed)?;
        let identity = self.identity.as_ref().ok_or(DropReason::NoIdentity)?;
        let (by_key, slots) = (&self.by_key, &self.slots);
        let find = |key: &_| {
            let id: &PeerId = by_key.get(key)?;
            slots.get(id.slot as usize)?.peer.as_ref().map(|p| &p.keys)
        };
        let (keys, consumed) = noise::consume_initiation(identity, &message, find)
            .map_err(|_| DropReason::HandshakeInvalid)?;
        let id = self.by_key[&keys.remote];

        let peer = self.peer_mut(id).ok_or(DropReason::HandshakeInvalid)?;
        let replayed = peer.latest_timestamp.is_some_and(|t| consumed.timestamp <= t);
        let flooding = peer
            .last_initiation_consumed
            .is_some_and(|t| now.saturating_duration_since(t) < MIN_INITIATION_GAP);
        if replayed || flooding {
            peer.stats.handshakes_replayed += 1;
            return Err(DropReason::HandshakeReplay);
        }
        peer.latest_timestamp = Some(consumed.timestamp);
        peer.last_initiation_consumed = Some(now);
        peer.stats.rx_bytes += datagram.len() as u64;

        let index = self.allocate_index(IndexEntry::Handshake(id));
        let Self { slots, rng, .. } = self;
        let Some(peer) = slots[id.slot as usize].peer.as_mut() else {
            return Err(DropReason::HandshakeInvalid);
        };
        let (mut response, keys) = match noise::create_response(&peer.keys, &consumed, index, rng) {
            Ok(built) => built,
            Err(_) => {
                self.indices.remove(&index);
                return Err(DropReason::HandshakeInvalid);
            }
        };
        peer.cookies.stamp(&peer.keys.remote, &mut response, now);
        let session = Arc::new(Session::new(id, index, consumed.remote_index, keys, false, now));
        let displaced = peer.sessions.install_as_responder(session.clone());
        self.indices.insert(index, IndexEntry::Session(session));
        self.release_sessions(displaced);

        self.update_endpoint(id, from);
        self.on_authenticated_received(now, id);
        self.on_session_derived(now, id);
        self.queue_transmit(Some(id), from, response.to_vec());
        self.on_authenticated_sent(now, id);
        Ok(())
    }

    fn on_response(
        &mut self,
        now: Instant,
        from: Endpoint,
        datagram: &[u8],
    ) -> Result<(), DropReason> {
        let message = Response::parse(datagram).ok_or(DropReason::Malformed)?;
        let Some(&IndexEntry::Handshake(id)) = self.indices.get(&message.receiver) else {
            return Err(DropReason::HandshakeInvalid);
        };
        let identity = self.identity.as_ref().ok_or(DropReason::NoIdentity)?;
        let peer = self
            .slots
            .get_mut(id.slot as usize)
            .and_then(|s| s.peer.as_mut())
            .ok_or(DropReason::HandshakeInvalid)?;
        let state = peer
            .handshake
            .as_ref()
            .filter(|s| s.local_index == message.receiver)
            .ok_or(DropReason::HandshakeInvalid)?;
        let Ok(keys) = noise::consume_response(identity, &peer.keys, state, &message) else {
            peer.stats.handshakes_rejected += 1;
            if peer.rejected_initiation.replace(state.local_index) != Some(state.local_index) {
                self.events.push_back(Event::HandshakeRejected { peer: id });
            }
            return Err(DropReason::HandshakeInvalid);
        };
        peer.handshake = None;
        peer.stats.rx_bytes += datagram.len() as u64;

        let session = Arc::new(Session::new(id, message.receiver, message.sender, keys, true, now));
        let displaced = peer.sessions.install_as_initiator(session.clone());
        self.indices.insert(message.receiver, IndexEntry::Session(session));
        self.release_sessions(displaced);

        self.update_endpoint(id, from);
        self.on_authenticated_received(now, id);
        self.on_handshake_complete(now, id, true);
        self.on_session_derived(now, id);
        // Confirm the session to the responder at once: queued packets, or a keepalive.
        self.send_keepalive(now, id);
        Ok(())
    }

    fn on_cookie_reply(&mut self, now: Instant, datagram: &[u8]) -> Result<(), DropReason> {
        let message = CookieReply::parse(datagram).ok_or(DropReason::Malformed)?;
        let id = match self.indices.get(&message.receiver) {
            Some(IndexEntry::Handshake(id)) => *id,
            Some(IndexEntry::Session(session)) => session.peer,
            None => return Err(DropReason::BadCookie),
        };
        let peer = self.peer_mut(id).ok_or(DropReason::BadCookie)?;
        let remote = peer.keys.remote;
        peer.cookies
            .consume_reply(&remote, message.nonce, message.encrypted_cookie, now)
            .map_err(|_| DropReason::BadCookie)
    }
}
