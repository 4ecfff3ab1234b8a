//! The data path: routing, sending on a session, and judging received packets.

use std::net::IpAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use super::{Device, DropReason, Event, IndexEntry};
use crate::constants::REJECT_AFTER_TIME;
use crate::ip;
use crate::peer::{Endpoint, PeerId};
use crate::session::{sealed_len, OpenError, Session};
use crate::wire::{DataHeader, MessageType, DATA_HEADER_LEN};

/// A session ready to seal packets for a peer, and where to send them.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// Seal with this (on any thread).
    pub session: Arc<Session>,
    /// Send the datagrams here.
    pub endpoint: Endpoint,
}

/// Why [`Device::prepare_send`] has no session to offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    /// No usable session yet: hand the packets to [`Device::stage_packet`], which starts a
    /// handshake and sends them once it completes.
    NoSession,
    /// The peer's endpoint is unknown; the packets cannot go anywhere (dropped and counted).
    NoEndpoint,
}

/// What to do with a decrypted packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Write the first `len` bytes of the plaintext to the TUN device.
    Deliver {
        /// The packet's length without padding.
        len: usize,
    },
    /// It was a keepalive; nothing to deliver.
    Keepalive,
    /// Drop it (already counted).
    Drop(DropReason),
}

/// Outcome of [`Device::encapsulate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encapsulated {
    /// Send the first `len` bytes of the buffer to `endpoint`.
    Send {
        /// Destination.
        endpoint: Endpoint,
        /// Datagram length.
        len: usize,
    },
    /// Queued until a handshake completes; it will come out of `poll_transmit`.
    Queued,
    /// Dropped (already counted).
    Dropped(DropReason),
}

/// Outcome of [`Device::decapsulate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decapsulated {
    /// A packet for the TUN device at this range of the datagram buffer.
    Packet(Range<usize>),
    /// Consumed by the protocol (handshake, cookie, keepalive); check `poll_transmit`.
    Consumed,
    /// Dropped (already counted).
    Dropped(DropReason),
}

impl From<OpenError> for DropReason {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Malformed => Self::Malformed,
            OpenError::Decrypt => Self::Decrypt,
            OpenError::Replay => Self::Replay,
        }
    }
}

impl Device {
    /// The peer whose allowed IPs hold `destination` (longest prefix wins).
    pub fn route(&self, destination: IpAddr) -> Option<PeerId> {
        self.allowed_ips.lookup(destination)
    }

    /// The peer an IP packet from the TUN device goes to.
    ///
    /// # Errors
    /// [`DropReason::Malformed`] if it is not IPv4/IPv6, [`DropReason::NoRoute`] if no peer
    /// has its destination; both are counted.
    pub fn route_packet(&mut self, packet: &[u8]) -> Result<PeerId, DropReason> {
        let result = ip::destination(packet)
            .ok_or(DropReason::Malformed)
            .and_then(|dst| self.route(dst).ok_or(DropReason::NoRoute));
        if let Err(reason) = result {
            self.stats.record_drop(reason, 1);
        }
        result
    }

    /// Claims the peer's sending session for packets that will make `datagram_bytes` bytes on
    /// the wire (use [`sealed_len`] per packet). Updates timers and counters as if they were
    /// sent; seal them with [`Session::seal`] and send them to the returned endpoint.
    ///
    /// # Errors
    /// See [`NotReady`]. `NoEndpoint` is counted as a drop of one packet.
    pub fn prepare_send(
        &mut self,
        now: Instant,
        id: PeerId,
        datagram_bytes: u64,
    ) -> Result<Outbound, NotReady> {
        let peer = self.peer_mut(id).ok_or(NotReady::NoSession)?;
        let Some(endpoint) = peer.endpoint else {
            self.stats.record_drop(DropReason::NoEndpoint, 1);
            return Err(NotReady::NoEndpoint);
        };
        let session = peer.sessions.sendable(now).cloned().ok_or(NotReady::NoSession)?;
        peer.stats.tx_bytes += datagram_bytes;
        self.on_data_sent(now, id, true);
        Ok(Outbound { session, endpoint })
    }

    /// Keeps a copy of a packet until a session exists, starting a handshake if needed.
    pub fn stage_packet(&mut self, now: Instant, id: PeerId, packet: &[u8]) {
        let Some(peer) = self.peer_mut(id) else { return };
        if peer.stage(packet) {
            self.stats.record_drop(DropReason::QueueOverflow, 1);
        }
        self.send_staged(now, id);
    }

    /// The session that a transport message with this receiver index is for, if it exists and
    /// is younger than REJECT_AFTER_TIME.
    pub fn session(&self, now: Instant, receiver_index: u32) -> Option<Arc<Session>> {
        match self.indices.get(&receiver_index)? {
            IndexEntry::Session(s)
                if now.saturating_duration_since(s.created) < REJECT_AFTER_TIME =>
            {
                Some(s.clone())
            }
            _ => None,
        }
    }

    /// Judges a transport message that [`Session::open`] accepted: confirms a new session,
    /// roams the endpoint to `from`, runs the timers, and checks the inner packet's source
    /// against the peer's allowed IPs. `plaintext` is the opened (padded) payload and
    /// `datagram_len` the size of the whole datagram, for the byte counters.
    pub fn receive_data(
        &mut self,
        now: Instant,
        session: &Session,
        from: Endpoint,
        plaintext: &[u8],
        datagram_len: usize,
    ) -> Verdict {
        let installed = matches!(
            self.indices.get(&session.local_index),
            Some(IndexEntry::Session(s)) if core::ptr::eq(&**s, session)
        );
        let id = session.peer;
        let Some(peer) = self.peer_mut(id).filter(|_| installed) else {
            return self.drop_packet(DropReason::UnknownSession);
        };
        peer.stats.rx_bytes += datagram_len as u64;
        if peer.sessions.is_next(session) {
            let displaced = peer.sessions.confirm_next();
            self.release_sessions(displaced);
            self.on_handshake_complete(now, id, false);
            self.send_staged(now, id);
        }
        self.update_endpoint(id, from);
        self.on_authenticated_received(now, id);
        self.keep_key_fresh_on_receive(now, id);
        if plaintext.is_empty() {
            return Verdict::Keepalive;
        }
        let Some((source, len)) = ip::source_and_len(plaintext) else {
            return self.drop_packet(DropReason::Malformed);
        };
        if self.allowed_ips.lookup(source) != Some(id) && !self.accepts(id, source) {
            return self.drop_packet(DropReason::SourceNotAllowed);
        }
        self.on_data_received(now, id);
        Verdict::Deliver { len }
    }

    /// Whether the peer's accepted sources hold `source`: the check after the routing lookup
    /// failed, so it costs nothing on the common path.
    fn accepts(&self, id: PeerId, source: IpAddr) -> bool {
        self.peer(id).is_some_and(|peer| peer.accept_ips.iter().any(|ip| ip.contains(source)))
    }

    fn drop_packet(&mut self, reason: DropReason) -> Verdict {
        self.stats.record_drop(reason, 1);
        Verdict::Drop(reason)
    }

    /// Roams: authenticated traffic from a new address moves the peer's endpoint there.
    pub(super) fn update_endpoint(&mut self, id: PeerId, from: Endpoint) {
        let Some(peer) = self.peer_mut(id) else { return };
        if peer.endpoint == Some(from) {
            return;
        }
        let moved = peer.endpoint.map(|e| e.addr) != Some(from.addr);
        peer.endpoint = Some(from);
        if moved {
            self.events.push_back(Event::EndpointChanged { peer: id, endpoint: from });
        }
    }

    /// Routes, seals and addresses one packet, for callers without a parallel data path.
    ///
    /// The packet is `buf[DATA_HEADER_LEN..DATA_HEADER_LEN + len]`; `buf` needs room for
    /// [`sealed_len`]`(len, mtu)` bytes.
    pub fn encapsulate(&mut self, now: Instant, buf: &mut [u8], len: usize) -> Encapsulated {
        let Some(packet) = buf.get(DATA_HEADER_LEN..DATA_HEADER_LEN + len) else {
            self.stats.record_drop(DropReason::Malformed, 1);
            return Encapsulated::Dropped(DropReason::Malformed);
        };
        let id = match self.route_packet(packet) {
            Ok(id) => id,
            Err(reason) => return Encapsulated::Dropped(reason),
        };
        let mtu = self.mtu;
        match self.prepare_send(now, id, sealed_len(len, mtu) as u64) {
            Ok(out) => match out.session.seal(buf, len, mtu) {
                Ok(n) => Encapsulated::Send { endpoint: out.endpoint, len: n },
                Err(_) => {
                    self.stats.record_drop(DropReason::QueueOverflow, 1);
                    Encapsulated::Dropped(DropReason::QueueOverflow)
                }
            },
            Err(NotReady::NoSession) => {
                let packet = buf[DATA_HEADER_LEN..DATA_HEADER_LEN + len].to_vec();
                self.stage_packet(now, id, &packet);
                Encapsulated::Queued
            }
            Err(NotReady::NoEndpoint) => Encapsulated::Dropped(DropReason::NoEndpoint),
        }
    }

    /// Handles one datagram from the network, for callers without a parallel data path.
    /// `under_load` asks handshake senders for cookies (see [`Device::handle_handshake`]).
    pub fn decapsulate(
        &mut self,
        now: Instant,
        from: Endpoint,
        datagram: &mut [u8],
        under_load: bool,
    ) -> Decapsulated {
        match MessageType::of(datagram) {
            Some(MessageType::Data) => {}
            Some(_) => {
                return match self.handle_handshake(now, from, datagram, under_load) {
                    Ok(()) => Decapsulated::Consumed,
                    Err(reason) => Decapsulated::Dropped(reason),
                };
            }
            None => {
                self.stats.record_drop(DropReason::Malformed, 1);
                return Decapsulated::Dropped(DropReason::Malformed);
            }
        }
        let session = DataHeader::parse(datagram).and_then(|h| self.session(now, h.receiver));
        let Some(session) = session else {
            self.stats.record_drop(DropReason::UnknownSession, 1);
            return Decapsulated::Dropped(DropReason::UnknownSession);
        };
        let opened = match session.open(datagram) {
            Ok(opened) => opened,
            Err(e) => {
                let reason = DropReason::from(e);
                self.stats.record_drop(reason, 1);
                return Decapsulated::Dropped(reason);
            }
        };
        let plaintext = &datagram[DATA_HEADER_LEN..DATA_HEADER_LEN + opened.len];
        match self.receive_data(now, &session, from, plaintext, datagram.len()) {
            Verdict::Deliver { len } => {
                Decapsulated::Packet(DATA_HEADER_LEN..DATA_HEADER_LEN + len)
            }
            Verdict::Keepalive => Decapsulated::Consumed,
            Verdict::Drop(reason) => Decapsulated::Dropped(reason),
        }
    }
}
