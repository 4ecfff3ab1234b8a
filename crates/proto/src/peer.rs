//! One peer: its keys, endpoint, sessions, timers and queued packets.
//!
//! The session slots follow the kernel module: `current` sends; `previous` still receives what
//! was in flight when a new session took over; `next` is a session we created as responder and
//! that becomes `current` once the initiator proves it has it (its first data packet), so no
//! packet is lost across a rekey.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cidr::Cidr;
use crate::constants::{MAX_STAGED_PACKETS, REJECT_AFTER_TIME};
use crate::cookie::CookieJar;
use crate::keys::PublicKey;
use crate::noise::{InitiationState, PeerKeys};
pub use crate::peer_id::PeerId;
use crate::session::Session;
use crate::tai64n::Tai64n;
use crate::timers::TimerTable;

/// The local address and interface a peer's packets arrived on, used as the source of replies
/// (as the kernel's "sticky" source address does), so multi-homed hosts answer from the
/// address the peer talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourceAddr {
    /// Local IP address.
    pub ip: IpAddr,
    /// Interface index (matters for IPv6 link-local addresses).
    pub ifindex: u32,
}

/// Where a peer is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// The peer's address and port.
    pub addr: SocketAddr,
    /// Our source address for packets to it, once learned.
    pub src: Option<SourceAddr>,
}

impl Endpoint {
    /// An endpoint with no preferred source address.
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr, src: None }
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(addr: SocketAddr) -> Self {
        Self::new(addr)
    }
}

/// The three session slots of a peer.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    pub(crate) current: Option<Arc<Session>>,
    pub(crate) previous: Option<Arc<Session>>,
    pub(crate) next: Option<Arc<Session>>,
}

impl Sessions {
    /// Installs a session we derived as initiator: it sends at once. Returns the sessions
    /// displaced, whose indices the caller must release.
    pub(crate) fn install_as_initiator(&mut self, session: Arc<Session>) -> Vec<Arc<Session>> {
        let mut dropped = Vec::new();
        if let Some(next) = self.next.take() {
            // An unconfirmed responder session is kept for receiving; the old current goes.
            dropped.extend(self.current.take());
            dropped.extend(self.previous.replace(next));
        } else {
            dropped.extend(core::mem::replace(&mut self.previous, self.current.take()));
        }
        self.current = Some(session);
        dropped
    }

    /// Installs a session we derived as responder: it waits in `next` until confirmed.
    pub(crate) fn install_as_responder(&mut self, session: Arc<Session>) -> Vec<Arc<Session>> {
        let mut dropped: Vec<_> = self.next.replace(session).into_iter().collect();
        dropped.extend(self.previous.take());
        dropped
    }

    /// The initiator used `next`: promote it. Returns the displaced session, if any.
    pub(crate) fn confirm_next(&mut self) -> Option<Arc<Session>> {
        let next = self.next.take()?;
        let dropped = core::mem::replace(&mut self.previous, self.current.take());
        self.current = Some(next);
        dropped
    }

    /// Whether `session` is the unconfirmed `next`.
    pub(crate) fn is_next(&self, session: &Session) -> bool {
        self.next.as_deref().is_some_and(|n| core::ptr::eq(n, session))
    }

    /// Takes every session out.
    pub(crate) fn take_all(&mut self) -> Vec<Arc<Session>> {
        [self.current.take(), self.previous.take(), self.next.take()]
            .into_iter()
            .flatten()
            .collect()
    }

    /// The current session if it may still send at `now`.
    pub(crate) fn sendable(&self, now: Instant) -> Option<&Arc<Session>> {
        self.current.as_ref().filter(|s| {
            s.can_send() && now.saturating_duration_since(s.created) < REJECT_AFTER_TIME
        })
    }
}

/// Traffic and handshake counters of one peer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PeerStats {
    /// Bytes received from the peer (whole authenticated datagrams).
    pub rx_bytes: u64,
    /// Bytes sent to the peer (whole datagrams).
    pub tx_bytes: u64,
    /// Handshake initiations sent.
    pub handshakes_initiated: u64,
    /// Handshakes completed, either side initiating.
    pub handshakes_completed: u64,
    /// Handshake attempts abandoned after REKEY_ATTEMPT_TIME without an answer.
    pub handshakes_timed_out: u64,
    /// Handshake responses from the peer that did not authenticate (typically: the two sides
    /// have different preshared keys).
    pub handshakes_rejected: u64,
    /// Authenticated handshake initiations from the peer refused as replayed or too frequent.
    pub handshakes_replayed: u64,
}

/// Everything the device keeps per peer.
#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) keys: PeerKeys,
    pub(crate) cookies: CookieJar,
    pub(crate) endpoint: Option<Endpoint>,
    pub(crate) persistent_keepalive: u16,
    /// Our initiation in flight, awaiting a response (boxed: most peers have none).
    pub(crate) handshake: Option<Box<InitiationState>>,
    /// The local index of the latest initiation a response to was rejected, so that a
    /// rejection is reported once per initiation however many bad responses arrive.
    pub(crate) rejected_initiation: Option<u32>,
    pub(crate) sessions: Sessions,
    pub(crate) timers: TimerTable,
    /// The deadline this peer is queued under in the device's timer queue.
    pub(crate) scheduled: Option<Instant>,
    pub(crate) staged: VecDeque<Vec<u8>>,
    pub(crate) latest_timestamp: Option<Tai64n>,
    pub(crate) last_initiation_consumed: Option<Instant>,
    pub(crate) last_initiation_sent: Option<Instant>,
    pub(crate) last_authenticated_traffic: Option<Instant>,
    pub(crate) handshake_attempts: u32,
    pub(crate) sent_lastminute_handshake: bool,
    pub(crate) need_another_keepalive: bool,
    /// Wall-clock time of the latest completed handshake, since the Unix epoch.
    pub(crate) last_handshake: Option<Duration>,
    /// The peer whose allowed IPs this one takes over at its first completed handshake.
    pub(crate) successor_of: Option<PublicKey>,
    /// Sources accepted from this peer beyond the allowed IPs routed to it (see
    /// [`crate::Device::add_accept_ip`]): empty but for a path moving between two peers.
    pub(crate) accept_ips: Vec<Cidr>,
    pub(crate) stats: PeerStats,
}

impl Peer {
    pub(crate) fn new(keys: PeerKeys) -> Self {
        Self {
            cookies: CookieJar::default(),
            keys,
            endpoint: None,
            persistent_keepalive: 0,
            handshake: None,
            rejected_initiation: None,
            sessions: Sessions::default(),
            timers: TimerTable::default(),
            scheduled: None,
            staged: VecDeque::new(),
            latest_timestamp: None,
            last_initiation_consumed: None,
            last_initiation_sent: None,
            last_authenticated_traffic: None,
            handshake_attempts: 0,
            sent_lastminute_handshake: false,
            need_another_keepalive: false,
            last_handshake: None,
            successor_of: None,
            accept_ips: Vec::new(),
            stats: PeerStats::default(),
        }
    }

    /// Queues a copy of a packet until a session exists, dropping the oldest beyond the bound.
    /// Returns whether one was dropped.
    pub(crate) fn stage(&mut self, packet: &[u8]) -> bool {
        let dropped = self.staged.len() >= MAX_STAGED_PACKETS;
        if dropped {
            self.staged.pop_front();
        }
        self.staged.push_back(packet.to_vec());
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::noise::SessionKeys;
    use zeroize::Zeroizing;

    fn session(index: u32, initiator: bool) -> Arc<Session> {
        let keys = SessionKeys { send: Zeroizing::new([0; 32]), receive: Zeroizing::new([0; 32]) };
        Arc::new(Session::new(PeerId::for_tests(0), index, 0, keys, initiator, Instant::now()))
    }

    fn indices(s: &Sessions) -> [Option<u32>; 3] {
        [&s.current, &s.previous, &s.next].map(|x| x.as_ref().map(|s| s.local_index))
    }

    #[test]
    fn initiator_sessions_rotate_current_into_previous() {
        let mut s = Sessions::default();
        assert!(s.install_as_initiator(session(1, true)).is_empty());
        assert!(s.install_as_initiator(session(2, true)).is_empty());
        assert_eq!(indices(&s), [Some(2), Some(1), None]);
        let dropped = s.install_as_initiator(session(3, true));
        assert_eq!(dropped.iter().map(|d| d.local_index).collect::<Vec<_>>(), vec![1]);
        assert_eq!(indices(&s), [Some(3), Some(2), None]);
    }

    #[test]
    fn responder_sessions_wait_for_confirmation() {
        let mut s = Sessions::default();
        s.install_as_initiator(session(1, true));
        s.install_as_initiator(session(2, true));
        let dropped = s.install_as_responder(session(3, false));
        assert_eq!(dropped.iter().map(|d| d.local_index).collect::<Vec<_>>(), vec![1]);
        assert_eq!(indices(&s), [Some(2), None, Some(3)]);
        let next = s.next.clone().unwrap();
        assert!(s.is_next(&next));
        assert!(s.confirm_next().is_none());
        assert_eq!(indices(&s), [Some(3), Some(2), None]);
        assert!(s.confirm_next().is_none());
    }

    #[test]
    fn an_initiation_racing_an_unconfirmed_response_keeps_it_for_receiving() {
        let mut s = Sessions::default();
        s.install_as_initiator(session(1, true));
        s.install_as_responder(session(2, false));
        let dropped = s.install_as_initiator(session(3, true));
        assert_eq!(dropped.iter().map(|d| d.local_index).collect::<Vec<_>>(), vec![1]);
        assert_eq!(indices(&s), [Some(3), Some(2), None]);
    }

    #[test]
    fn staging_is_bounded() {
        let keys = PeerKeys::new(PublicKey::from_bytes([9; 32]));
        let mut peer = Peer::new(keys);
        for i in 0..MAX_STAGED_PACKETS {
            assert!(!peer.stage(&[i as u8]));
        }
        assert!(peer.stage(&[0xff]));
        assert_eq!(peer.staged.len(), MAX_STAGED_PACKETS);
        assert_eq!(peer.staged.front().unwrap(), &vec![1u8]);
    }
}
