//! A session: the transport keys of one completed handshake, shared with crypto workers.
//!
//! The device hands out `Arc<Session>`s so that sealing and opening run on any thread without
//! the device lock. Only two things in a session change after creation: the send counter (an
//! atomic that can never pass [`REJECT_AFTER_MESSAGES`], so a nonce is never reused) and the
//! replay window (a short uncontended lock taken after a packet authenticated). Keys are wiped
//! when the last reference drops.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use ring::aead::Aad;

use crate::constants::{REJECT_AFTER_MESSAGES, REKEY_AFTER_MESSAGES};
use crate::crypto::{aead_key, nonce, Secret, TAG_LEN};
use crate::peer_id::PeerId;
use crate::replay::ReplayWindow;
use crate::wire::{DataHeader, DATA_HEADER_LEN, DATA_MIN_LEN};

/// Why a packet could not be sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SealError {
    /// The session used up its counters; a new handshake is needed.
    Exhausted,
    /// The buffer has no room for the header, padding and tag.
    BufferTooSmall,
}

/// Why a transport message was dropped on receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpenError {
    /// Not a transport message for this session.
    Malformed,
    /// Authentication failed: forged, corrupted or for another key.
    Decrypt,
    /// The counter was seen before or is too old for the replay window.
    Replay,
}

/// The keys and counters of one session.
pub struct Session {
    pub(crate) peer: PeerId,
    pub(crate) local_index: u32,
    pub(crate) remote_index: u32,
    pub(crate) created: Instant,
    pub(crate) initiator: bool,
    send_key: Secret,
    receive_key: Secret,
    send_counter: AtomicU64,
    replay: Mutex<ReplayWindow>,
}

impl core::fmt::Debug for Session {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Session")
            .field("peer", &self.peer)
            .field("local_index", &self.local_index)
            .field("remote_index", &self.remote_index)
            .field("initiator", &self.initiator)
            .finish_non_exhaustive()
    }
}

/// Length of a packet of `len` bytes once padded to a multiple of 16, without exceeding the
/// interface MTU (whitepaper §5.4.6; an MTU of 0 means "unknown, always pad").
pub fn padded_len(len: usize, mtu: usize) -> usize {
    let padded = len.div_ceil(16) * 16;
    if mtu == 0 {
        padded
    } else {
        padded.min(mtu).max(len)
    }
}

/// The datagram size of a packet of `len` bytes: header, padded packet and tag.
pub fn sealed_len(len: usize, mtu: usize) -> usize {
    DATA_HEADER_LEN + padded_len(len, mtu) + TAG_LEN
}

impl Session {
    pub(crate) fn new(
        peer: PeerId,
        local_index: u32,
        remote_index: u32,
        keys: crate::noise::SessionKeys,
        initiator: bool,
        now: Instant,
    ) -> Self {
        Self {
            peer,
            local_index,
            remote_index,
            created: now,
            initiator,
            send_key: keys.send,
            receive_key: keys.receive,
            send_counter: AtomicU64::new(0),
            replay: Mutex::new(ReplayWindow::default()),
        }
    }

    /// The peer this session belongs to.
    pub fn peer(&self) -> PeerId {
        self.peer
    }

    /// Our index for this session: the receiver index of transport messages sent to us.
    pub fn local_index(&self) -> u32 {
        self.local_index
    }

    /// Encrypts one packet in place into a transport message.
    ///
    /// The packet is `buf[DATA_HEADER_LEN..DATA_HEADER_LEN + len]`; the header goes in front of
    /// it, then zero padding (see [`padded_len`]) and the tag. Returns the datagram length,
    /// [`sealed_len`]`(len, mtu)`. An empty packet is a keepalive.
    ///
    /// # Errors
    /// [`SealError::BufferTooSmall`] unless `buf` holds [`sealed_len`] bytes;
    /// [`SealError::Exhausted`] once the session may send no more.
    pub fn seal(&self, buf: &mut [u8], len: usize, mtu: usize) -> Result<usize, SealError> {
        let total = sealed_len(len, mtu);
        let Some(datagram) = buf.get_mut(..total) else { return Err(SealError::BufferTooSmall) };
        let counter = self
            .send_counter
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                (c < REJECT_AFTER_MESSAGES).then_some(c + 1)
            })
            .map_err(|_| SealError::Exhausted)?;
        let (header, rest) = datagram.split_at_mut(DATA_HEADER_LEN);
        header.copy_from_slice(&DataHeader { receiver: self.remote_index, counter }.to_bytes());
        let (payload, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
        payload[len..].fill(0);
        let sealed = aead_key(&self.send_key)
            .seal_in_place_separate_tag(nonce(counter), Aad::empty(), payload)
            .map_err(|_| SealError::Exhausted)?;
        tag.copy_from_slice(sealed.as_ref());
        Ok(total)
    }

    /// Decrypts a transport message in place and checks it against the replay window.
    ///
    /// On success the plaintext (still padded) is `datagram[DATA_HEADER_LEN..][..len]`.
    ///
    /// # Errors
    /// See [`OpenError`]; the datagram's contents are unspecified after an error.
    pub fn open(&self, datagram: &mut [u8]) -> Result<Opened, OpenError> {
        let header = DataHeader::parse(datagram).ok_or(OpenError::Malformed)?;
        if header.receiver != self.local_index || datagram.len() < DATA_MIN_LEN {
            return Err(OpenError::Malformed);
        }
        let plain = aead_key(&self.receive_key)
            .open_in_place(nonce(header.counter), Aad::empty(), &mut datagram[DATA_HEADER_LEN..])
            .map_err(|_| OpenError::Decrypt)?;
        let len = plain.len();
        let fresh = self.replay.lock().map(|mut w| w.accept(header.counter)).unwrap_or(false);
        if !fresh {
            return Err(OpenError::Replay);
        }
        Ok(Opened { counter: header.counter, len })
    }

    /// Counters used so far for sending.
    pub(crate) fn sent_messages(&self) -> u64 {
        self.send_counter.load(Ordering::Relaxed)
    }

    /// Whether sending has used enough counters that a new handshake is due.
    pub(crate) fn needs_rekey_by_count(&self) -> bool {
        self.sent_messages() >= REKEY_AFTER_MESSAGES
    }

    /// Whether the session can still send.
    pub(crate) fn can_send(&self) -> bool {
        self.sent_messages() < REJECT_AFTER_MESSAGES
    }

    /// Stops all further sending on this session (it can still receive).
    pub(crate) fn expire_sending(&self) {
        self.send_counter.store(REJECT_AFTER_MESSAGES, Ordering::Relaxed);
    }

    /// Moves the send counter, for tests of the message limits.
    #[cfg(test)]
    pub(crate) fn set_send_counter(&self, value: u64) {
        self.send_counter.store(value, Ordering::Relaxed);
    }
}

/// A transport message that authenticated and was not a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    /// Its counter.
    pub counter: u64,
    /// Length of the padded plaintext after the header; 0 for a keepalive.
    pub len: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::noise::SessionKeys;
    use zeroize::Zeroizing;

    pub(crate) fn pair() -> (Session, Session) {
        let now = Instant::now();
        let k1 = Zeroizing::new([1u8; 32]);
        let k2 = Zeroizing::new([2u8; 32]);
        let peer = PeerId::for_tests(0);
        let a = Session::new(
            peer,
            10,
            20,
            SessionKeys { send: k1.clone(), receive: k2.clone() },
            true,
            now,
        );
        let b = Session::new(peer, 20, 10, SessionKeys { send: k2, receive: k1 }, false, now);
        (a, b)
    }

    #[test]
    fn padding_rules() {
        assert_eq!(padded_len(0, 1420), 0);
        assert_eq!(padded_len(1, 1420), 16);
        assert_eq!(padded_len(16, 1420), 16);
        assert_eq!(padded_len(1419, 1420), 1420);
        assert_eq!(padded_len(1420, 1420), 1420);
        assert_eq!(padded_len(1405, 1420), 1408);
        assert_eq!(padded_len(1500, 1420), 1500);
        assert_eq!(padded_len(17, 0), 32);
    }

    #[test]
    fn seal_open_round_trip() {
        let (a, b) = pair();
        let mut buf = vec![0u8; 2048];
        buf[16..16 + 100].fill(0xab);
        let n = a.seal(&mut buf, 100, 1420).unwrap();
        assert_eq!(n, 16 + 112 + 16);
        let opened = b.open(&mut buf[..n]).unwrap();
        assert_eq!(opened, Opened { counter: 0, len: 112 });
        assert!(buf[16..116].iter().all(|&x| x == 0xab));
        assert!(buf[116..128].iter().all(|&x| x == 0));
    }

    #[test]
    fn replays_and_forgeries_are_refused() {
        let (a, b) = pair();
        let mut buf = vec![0u8; 256];
        let n = a.seal(&mut buf, 0, 1420).unwrap();
        let copy = buf[..n].to_vec();
        assert_eq!(b.open(&mut buf[..n]).unwrap().len, 0);
        assert_eq!(b.open(&mut copy.clone()), Err(OpenError::Replay));
        let mut forged = copy.clone();
        forged[20] ^= 1;
        assert_eq!(b.open(&mut forged), Err(OpenError::Decrypt));
        // A message for another session index is not ours to open.
        let mut other = copy;
        other[4] ^= 1;
        assert_eq!(b.open(&mut other), Err(OpenError::Malformed));
        // Our own messages do not decrypt with our own receive key.
        let n = a.seal(&mut buf, 0, 1420).unwrap();
        buf[4..8].copy_from_slice(&10u32.to_le_bytes());
        assert_eq!(a.open(&mut buf[..n]), Err(OpenError::Decrypt));
    }

    #[test]
    fn counters_stop_at_the_limit() {
        let (a, _) = pair();
        let mut buf = vec![0u8; 64];
        a.set_send_counter(REJECT_AFTER_MESSAGES - 1);
        assert!(a.seal(&mut buf, 0, 1420).is_ok());
        assert_eq!(a.seal(&mut buf, 0, 1420), Err(SealError::Exhausted));
        assert_eq!(a.seal(&mut buf, 0, 1420), Err(SealError::Exhausted));
        assert_eq!(a.sent_messages(), REJECT_AFTER_MESSAGES);
        assert!(!a.can_send());
    }

    #[test]
    fn small_buffers_are_refused_before_using_a_counter() {
        let (a, _) = pair();
        let mut buf = vec![0u8; 40];
        assert_eq!(a.seal(&mut buf, 20, 1420), Err(SealError::BufferTooSmall));
        assert_eq!(a.sent_messages(), 0);
    }
}
