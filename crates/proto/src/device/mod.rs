//! The device: every peer of one interface, and the entry points the I/O layer drives.
//!
//! # Driving a device
//!
//! All inputs take the current [`Instant`]; the device never reads a clock.
//!
//! * Packets from the TUN interface: [`Device::route`] picks the peer, then either
//!   [`Device::prepare_send`] returns a [`Session`] to seal with (outside any lock, on any
//!   thread) and the endpoint to send to, or the packet is handed to [`Device::stage_packet`]
//!   to wait for a handshake.
//! * Datagrams from the network: transport data is opened with the session from
//!   [`Device::session`] and then judged by [`Device::receive_data`]; handshake messages go to
//!   [`Device::handle_handshake`].
//! * [`Device::encapsulate`] and [`Device::decapsulate`] do all of the above for one packet,
//!   for callers that do not need parallel crypto.
//! * After any input, drain [`Device::poll_transmit`] (datagrams the device wants sent) and
//!   [`Device::poll_event`] (lifecycle events), then sleep until [`Device::poll_timeout`] and
//!   call [`Device::handle_timeout`].

mod config;
mod data;
mod handshake;
mod timers;
mod uapi;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore as _, SeedableRng};

use crate::admission::Admission;
use crate::allowed_ips::AllowedIps;
use crate::keys::PublicKey;
use crate::noise::Identity;
use crate::peer::{Endpoint, Peer, PeerId};
use crate::session::Session;
use crate::tai64n::Tai64n;

pub use config::PeerInfo;
pub use data::{Decapsulated, Encapsulated, NotReady, Outbound, Verdict};
pub use uapi::PeerCursor;

/// A datagram the device wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub endpoint: Endpoint,
    /// The peer it is for; `None` for cookie replies to unauthenticated sources.
    pub peer: Option<PeerId>,
    /// The datagram.
    pub datagram: Vec<u8>,
}

/// Something that happened, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// We sent a handshake initiation (`retry` when it repeats an unanswered one).
    HandshakeInitiated {
        /// The peer.
        peer: PeerId,
        /// Whether this retransmits an unanswered initiation.
        retry: bool,
    },
    /// A handshake completed and a new session is in use.
    HandshakeCompleted {
        /// The peer.
        peer: PeerId,
        /// Whether we initiated it.
        initiator: bool,
    },
    /// A handshake got no answer for REKEY_ATTEMPT_TIME; queued packets were dropped.
    HandshakeTimedOut {
        /// The peer.
        peer: PeerId,
    },
    /// An authenticated packet came from a new address.
    EndpointChanged {
        /// The peer.
        peer: PeerId,
        /// Its new endpoint.
        endpoint: Endpoint,
    },
    /// No session for 3 × REJECT_AFTER_TIME: all session keys of the peer were erased.
    KeysZeroed {
        /// The peer.
        peer: PeerId,
    },
    /// A response to our initiation did not authenticate (typically: different preshared
    /// keys). Raised once per initiation; every such response is counted in
    /// [`PeerStats::handshakes_rejected`](crate::PeerStats).
    HandshakeRejected {
        /// The peer.
        peer: PeerId,
    },
    /// The device's private key was set, replaced or removed.
    PrivateKeyChanged {
        /// The public key of the new private key; `None` when it was removed.
        public_key: Option<PublicKey>,
    },
    /// A peer was configured.
    PeerAdded {
        /// Its public key.
        public_key: PublicKey,
    },
    /// A peer was removed, with its sessions.
    PeerRemoved {
        /// Its public key.
        public_key: PublicKey,
    },
    /// A peer's preshared key was set, replaced or removed; it takes effect at the next
    /// handshake.
    PresharedKeyChanged {
        /// The peer.
        peer: PeerId,
        /// Whether the peer now has a preshared key.
        set: bool,
    },
    /// A successor key completed its first handshake and took over its predecessor's
    /// allowed IPs (see [`Device::set_successor_of`]).
    SuccessorActivated {
        /// The peer with the new key.
        peer: PeerId,
        /// The peer with the old key, which now has no allowed IPs.
        predecessor: PeerId,
    },
}

/// Why a packet was dropped. Counted per reason in [`Stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// Not a well-formed WireGuard message, or an inner packet that is not IPv4/IPv6.
    Malformed,
    /// A handshake message whose `mac1` is wrong.
    BadMac,
    /// Transport data that failed authentication.
    Decrypt,
    /// Transport data whose counter was already seen or is too old.
    Replay,
    /// Transport data for a session index we do not have (unknown, expired or erased).
    UnknownSession,
    /// A decrypted packet whose source address is not among the peer's allowed IPs.
    SourceNotAllowed,
    /// An outbound packet whose destination is not among any peer's allowed IPs.
    NoRoute,
    /// An outbound packet for a peer without a known endpoint.
    NoEndpoint,
    /// A handshake message that failed to decrypt or named an unknown peer.
    HandshakeInvalid,
    /// A handshake initiation replayed (old timestamp) or flooding (too soon).
    HandshakeReplay,
    /// A handshake message refused by a per-source rate limit.
    RateLimited,
    /// A handshake message answered with a cookie reply instead (its source over budget, or
    /// the device under load).
    CookieRequired,
    /// A cookie reply that was unexpected or failed to decrypt.
    BadCookie,
    /// A queued packet discarded because the queue was full or the handshake gave up.
    QueueOverflow,
    /// The device has no private key.
    NoIdentity,
}

impl DropReason {
    /// Every reason, in a stable order (for metrics).
    pub const ALL: [Self; 15] = [
        Self::Malformed,
        Self::BadMac,
        Self::Decrypt,
        Self::Replay,
        Self::UnknownSession,
        Self::SourceNotAllowed,
        Self::NoRoute,
        Self::NoEndpoint,
        Self::HandshakeInvalid,
        Self::HandshakeReplay,
        Self::RateLimited,
        Self::CookieRequired,
        Self::BadCookie,
        Self::QueueOverflow,
        Self::NoIdentity,
    ];

    /// A short snake_case name, stable for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::BadMac => "bad_mac",
            Self::Decrypt => "decrypt",
            Self::Replay => "replay",
            Self::UnknownSession => "unknown_session",
            Self::SourceNotAllowed => "source_not_allowed",
            Self::NoRoute => "no_route",
            Self::NoEndpoint => "no_endpoint",
            Self::HandshakeInvalid => "handshake_invalid",
            Self::HandshakeReplay => "handshake_replay",
            Self::RateLimited => "rate_limited",
            Self::CookieRequired => "cookie_required",
            Self::BadCookie => "bad_cookie",
            Self::QueueOverflow => "queue_overflow",
            Self::NoIdentity => "no_identity",
        }
    }
}

/// Device-wide counters.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    dropped: [u64; DropReason::ALL.len()],
    /// Cookie replies sent instead of handshake work (the sender's source was over its
    /// budget, or the device under load).
    pub cookie_replies_sent: u64,
}

impl Stats {
    /// Packets dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize]
    }

    /// Counts `n` packets dropped for `reason`.
    pub fn record_drop(&mut self, reason: DropReason, n: u64) {
        self.dropped[reason as usize] += n;
    }

    /// Adds `other`'s counts to these (for counts kept apart, such as an admission gate's).
    pub fn absorb(&mut self, other: &Self) {
        for (ours, theirs) in self.dropped.iter_mut().zip(other.dropped) {
            *ours += theirs;
        }
        self.cookie_replies_sent += other.cookie_replies_sent;
    }
}

/// What an index in a received message refers to.
#[derive(Debug, Clone)]
enum IndexEntry {
    /// Our initiation in flight to this peer.
    Handshake(PeerId),
    /// A session.
    Session(Arc<Session>),
}

/// Maps our wall clock onto the caller's monotonic clock for handshake timestamps.
#[derive(Debug, Clone, Copy)]
struct WallClock {
    at: Instant,
    since_epoch: Duration,
}

impl WallClock {
    fn at(&self, now: Instant) -> Duration {
        self.since_epoch + now.saturating_duration_since(self.at)
    }
}

/// One WireGuard interface's protocol state.
pub struct Device {
    identity: Option<Identity>,
    admission: Admission,
    slots: Vec<Slot>,
    free_slots: Vec<u32>,
    by_key: HashMap<PublicKey, PeerId>,
    allowed_ips: AllowedIps<PeerId>,
    indices: HashMap<u32, IndexEntry>,
    rng: ChaCha20Rng,
    wall_clock: WallClock,
    /// The timestamp of the last initiation sent: the next one is later, even when the wall
    /// clock was stepped back (peers refuse an initiation that is not).
    last_timestamp: Option<Tai64n>,
    mtu: usize,
    timer_queue: BinaryHeap<Reverse<(Instant, PeerId)>>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: Stats,
}

impl core::fmt::Debug for Device {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Device")
            .field("public_key", &self.public_key())
            .field("peers", &self.by_key.len())
            .finish_non_exhaustive()
    }
}

/// A peer's place in the device. Peers are boxed so that the slot array, which grows by
/// doubling, costs a pointer per slot rather than a whole peer.
#[derive(Debug, Default)]
struct Slot {
    generation: u32,
    peer: Option<Box<Peer>>,
}

/// The MTU assumed for padding until the caller sets the interface's.
pub const DEFAULT_MTU: usize = 1420;

impl Device {
    /// A device with no key and no peers.
    ///
    /// `seed` seeds the device's random generator (ephemeral keys, session indices, cookie
    /// secrets, timer jitter): pass 32 bytes from the operating system's CSPRNG, or a fixed
    /// value in tests for reproducible runs. `since_epoch` is the wall-clock time at `now`,
    /// used for handshake timestamps.
    pub fn new(seed: [u8; 32], now: Instant, since_epoch: Duration) -> Self {
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut admission_seed = [0; 32];
        rng.fill_bytes(&mut admission_seed);
        Self {
            identity: None,
            admission: Admission::new(admission_seed),
            slots: Vec::new(),
            free_slots: Vec::new(),
            by_key: HashMap::new(),
            allowed_ips: AllowedIps::new(),
            indices: HashMap::new(),
            rng,
            wall_clock: WallClock { at: now, since_epoch },
            last_timestamp: None,
            mtu: DEFAULT_MTU,
            timer_queue: BinaryHeap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    /// Re-anchors the wall clock (call when the system clock may have been stepped). A step
    /// back moves handshake times back, but never the timestamps of initiations.
    pub fn set_wall_clock(&mut self, now: Instant, since_epoch: Duration) {
        self.wall_clock = WallClock { at: now, since_epoch };
    }

    /// Sets the interface MTU, which bounds padding.
    pub fn set_mtu(&mut self, mtu: usize) {
        self.mtu = mtu;
    }

    /// The interface MTU used for padding.
    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// Device-wide counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Device-wide counters, for drops the caller detects itself (e.g. failed decryption).
    pub fn stats_mut(&mut self) -> &mut Stats {
        &mut self.stats
    }

    /// The next datagram to send, if any.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next lifecycle event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn peer(&self, id: PeerId) -> Option<&Peer> {
        let slot = self.slots.get(id.slot as usize)?;
        (slot.generation == id.generation).then_some(slot.peer.as_deref()).flatten()
    }

    fn peer_mut(&mut self, id: PeerId) -> Option<&mut Peer> {
        let slot = self.slots.get_mut(id.slot as usize)?;
        (slot.generation == id.generation).then_some(slot.peer.as_deref_mut()).flatten()
    }

    /// A fresh random index that is not in use.
    fn allocate_index(&mut self, entry: IndexEntry) -> u32 {
        loop {
            let index = rand_core::RngCore::next_u32(&mut self.rng);
            if let std::collections::hash_map::Entry::Vacant(slot) = self.indices.entry(index) {
                slot.insert(entry);
                return index;
            }
        }
    }

    fn release_sessions(&mut self, sessions: impl IntoIterator<Item = Arc<Session>>) {
        for session in sessions {
            self.indices.remove(&session.local_index);
        }
    }

    fn queue_transmit(&mut self, peer: Option<PeerId>, endpoint: Endpoint, datagram: Vec<u8>) {
        if let Some(p) = peer.and_then(|id| self.peer_mut(id)) {
            p.stats.tx_bytes += datagram.len() as u64;
        }
        self.transmits.push_back(Transmit { endpoint, peer, datagram });
    }
}

#[cfg(test)]
mod tests;
