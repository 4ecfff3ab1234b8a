//! `datagram`: one or more datagrams from the network into a `Device` that has a private key,
//! a peer `b` with a live session (a real handshake completed in the setup) and a second peer
//! `c` to which it has a handshake initiation in flight.
//!
//! Input: a selector byte, then the body.
//!
//! | selector bits | meaning |
//! |---|---|
//! | 0-2 | kind: 0 raw datagram, 1 initiation, 2 response, 3 cookie reply, 4 transport data, 5 the body sealed as a packet by `b`'s session, 6 two packets sealed by `b` and delivered out of order and twice, 7 a sequence of records `selector, u16 length (LE), body` |
//! | 3 | under load (senders without a cookie get a cookie reply) |
//! | 4 | kinds 1 and 2: fetch a cookie reply first and stamp `mac2` with that cookie; other kinds: call `handle_handshake` instead of `decapsulate` |
//! | 5 | the datagram comes from a new address (roaming) |
//! | 6-7 | before delivery, move the clock on by 0, 6 s (a retransmission), 125 s (rekey) or 185 s (the session expired), firing timers |
//!
//! Kinds 1 to 4 take the body after the 4-byte header and pad or cut it to the message's
//! length; kinds 1 and 2 get a correct `mac1` (keyed by the device's public key) so the body
//! reaches the Noise layer instead of stopping at the `mac1` check. The setup is
//! deterministic (fixed keys, random seeds and clock), so the corpus' messages stay valid:
//! regenerate them with `cargo run --example seeds` (see docs/fuzzing.md) when the setup or
//! the protocol core's use of its random generator changes.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use blake2::digest::consts::U16;
use blake2::digest::{FixedOutput, KeyInit, Mac};
use blake2::{Blake2s256, Blake2sMac, Digest};
use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::XChaCha20Poly1305;
use wgfabric_proto::keys::{PresharedKey, PrivateKey, PublicKey};
use wgfabric_proto::session::sealed_len;
use wgfabric_proto::wire::{
    MessageType, COOKIE_REPLY_LEN, DATA_HEADER_LEN, DATA_MIN_LEN, INITIATION_LEN, RESPONSE_LEN,
    TYPE_COOKIE_REPLY, TYPE_DATA, TYPE_INITIATION, TYPE_RESPONSE,
};
use wgfabric_proto::{Decapsulated, Device, Encapsulated, Endpoint, PeerId, Session};
use wgfabric_testkit::packet::ipv4;

/// The wall clock at the base instant (handshake timestamps).
const EPOCH: Duration = Duration::from_secs(1_700_000_000);
/// When fuzz input arrives, after the setup's handshakes (which run at the base instant).
const DELIVERY: Duration = Duration::from_secs(5);

pub const A_ADDR: &str = "192.0.2.1:51820";
pub const B_ADDR: &str = "198.51.100.2:51820";
pub const C_ADDR: &str = "203.0.113.3:51820";
const ROAM_ADDR: &str = "[2001:db8::9]:4500";

const A_KEY: [u8; 32] = [0x11; 32];
const B_KEY: [u8; 32] = [0x22; 32];
const C_KEY: [u8; 32] = [0x33; 32];
const PSK: [u8; 32] = [0x07; 32];
const MTU: usize = 1420;

const INITIATION_MAC1: usize = INITIATION_LEN - 32;
const RESPONSE_MAC1: usize = RESPONSE_LEN - 32;

/// Records of a sequence (kind 7), at most.
const MAX_RECORDS: usize = 16;

/// The base instant: every time in the target is an offset from it.
pub fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("a literal socket address")
}

/// HASH(parts...) of the whitepaper: BLAKE2s-256.
fn hash(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Blake2s256::new();
    for part in parts {
        Digest::update(&mut hasher, part);
    }
    hasher.finalize().into()
}

/// MAC(key, input): keyed BLAKE2s-128.
fn mac(key: &[u8], input: &[u8]) -> [u8; 16] {
    let mut mac = <Blake2sMac<U16> as KeyInit>::new_from_slice(key).expect("a 16 or 32-byte key");
    Mac::update(&mut mac, input);
    mac.finalize_fixed().into()
}

/// Where `mac1` sits in a handshake message of this length.
fn mac1_offset(len: usize) -> Option<usize> {
    match len {
        INITIATION_LEN => Some(INITIATION_MAC1),
        RESPONSE_LEN => Some(RESPONSE_MAC1),
        _ => None,
    }
}

/// Writes the `mac1` a sender that knows `to` would write.
pub fn stamp_mac1(message: &mut [u8], to: &PublicKey) {
    let Some(at) = mac1_offset(message.len()) else { return };
    let key = hash(&[b"mac1----", to.as_bytes()]);
    let mac1 = mac(&key, &message[..at]);
    message[at..at + 16].copy_from_slice(&mac1);
}

/// The cookie inside a cookie reply from `from` to `message`, if it decrypts.
fn open_cookie(reply: &[u8], message: &[u8], from: &PublicKey) -> Option<[u8; 16]> {
    let at = mac1_offset(message.len())?;
    if reply.len() != COOKIE_REPLY_LEN || reply[0] != TYPE_COOKIE_REPLY {
        return None;
    }
    let key = hash(&[b"cookie--", from.as_bytes()]);
    let cipher = <XChaCha20Poly1305 as KeyInit>::new_from_slice(&key).ok()?;
    let mut cookie = reply[32..48].to_vec();
    let tag = chacha20poly1305::Tag::from_slice(&reply[48..64]);
    let nonce = chacha20poly1305::XNonce::from_slice(&reply[8..32]);
    cipher.decrypt_in_place_detached(nonce, &message[at..at + 16], &mut cookie, tag).ok()?;
    cookie.try_into().ok()
}

/// The device under test and what the setup left around it.
pub struct Setup {
    pub now: Instant,
    /// The device under test.
    pub a: Device,
    /// Its peer with a live session.
    pub b: Device,
    /// `b`'s handle for `a`.
    pub peer_a: PeerId,
    /// `a`'s handle for `b`.
    pub peer_b: PeerId,
    /// `b`'s sending session to `a`.
    pub b_session: Arc<Session>,
    /// `a`'s initiation to `c`, still unanswered.
    pub initiation_to_c: Vec<u8>,
    a_public: PublicKey,
}

fn device(seed: u8, key: [u8; 32]) -> Device {
    let mut device = Device::new([seed; 32], base(), EPOCH);
    device.set_private_key(Some(PrivateKey::from_bytes(key)));
    device.set_mtu(MTU);
    device
}

/// Delivers everything `from` wants to send to `to`, both ways, until both are quiet.
fn drive(now: Instant, a: &mut Device, b: &mut Device) {
    let (a_addr, b_addr) = (addr(A_ADDR), addr(B_ADDR));
    loop {
        let mut moved = false;
        while let Some(t) = a.poll_transmit() {
            if t.endpoint.addr == b_addr {
                let mut datagram = t.datagram;
                let _ = b.decapsulate(now, Endpoint::new(a_addr), &mut datagram, false);
                moved = true;
            }
        }
        while let Some(t) = b.poll_transmit() {
            let mut datagram = t.datagram;
            let _ = a.decapsulate(now, Endpoint::new(b_addr), &mut datagram, false);
            moved = true;
        }
        if !moved {
            break;
        }
    }
}

fn encapsulate(now: Instant, device: &mut Device, packet: &[u8]) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; sealed_len(packet.len(), device.mtu())];
    buf[DATA_HEADER_LEN..DATA_HEADER_LEN + packet.len()].copy_from_slice(packet);
    match device.encapsulate(now, &mut buf, packet.len()) {
        Encapsulated::Send { len, .. } => {
            buf.truncate(len);
            Some(buf)
        }
        _ => None,
    }
}

impl Setup {
    /// `a` with peers `b` (session established by a real handshake that `b` started) and `c`
    /// (`a`'s initiation in flight), all at the base instant.
    pub fn new() -> Self {
        let now = base();
        let (a_key, b_key) = (PrivateKey::from_bytes(A_KEY), PrivateKey::from_bytes(B_KEY));
        let a_public = a_key.public_key();
        let mut a = device(1, A_KEY);
        let mut b = device(2, B_KEY);

        let peer_b = a.add_peer(b_key.public_key()).expect("b is not a itself");
        a.set_endpoint(peer_b, addr(B_ADDR));
        a.add_allowed_ip(peer_b, "10.0.0.2/32".parse().expect("a prefix"));
        a.add_allowed_ip(peer_b, "fd00::2/128".parse().expect("a prefix"));
        a.set_preshared_key(peer_b, PresharedKey::from_bytes(PSK));
        let peer_c = a.add_peer(c_public()).expect("c is not a itself");
        a.set_endpoint(peer_c, addr(C_ADDR));
        a.add_allowed_ip(peer_c, "10.0.0.3/32".parse().expect("a prefix"));

        let peer_a = b.add_peer(a_public).expect("a is not b itself");
        b.set_endpoint(peer_a, addr(A_ADDR));
        b.add_allowed_ip(peer_a, "10.0.0.1/32".parse().expect("a prefix"));
        b.add_allowed_ip(peer_a, "fd00::1/128".parse().expect("a prefix"));
        b.set_preshared_key(peer_a, PresharedKey::from_bytes(PSK));

        // b initiates; its queued packet confirms the session on a's side.
        let first = ipv4([10, 0, 0, 2], [10, 0, 0, 1], 8);
        let _ = encapsulate(now, &mut b, &first);
        drive(now, &mut a, &mut b);
        let b_session =
            b.prepare_send(now, peer_a, 0).expect("the setup's handshake completed").session;

        // a starts a handshake with c, which never answers within the setup.
        let to_c = ipv4([10, 0, 0, 1], [10, 0, 0, 3], 8);
        let _ = encapsulate(now, &mut a, &to_c);
        let mut initiation_to_c = Vec::new();
        while let Some(t) = a.poll_transmit() {
            if t.endpoint.addr == addr(C_ADDR) {
                initiation_to_c = t.datagram;
            }
        }
        while a.poll_event().is_some() {}
        while b.poll_event().is_some() {}
        Self { now, a, b, peer_a, peer_b, b_session, initiation_to_c, a_public }
    }

    /// Fires `a`'s timers up to `by` from now.
    fn advance(&mut self, by: Duration) {
        let target = self.now + by;
        while let Some(at) = self.a.poll_timeout().filter(|t| *t <= target) {
            self.now = self.now.max(at);
            self.a.handle_timeout(self.now);
            self.drain();
        }
        self.now = target;
    }

    /// Drops what `a` wants to send, checking that each is a well-formed message.
    fn drain(&mut self) {
        while let Some(t) = self.a.poll_transmit() {
            assert!(MessageType::of(&t.datagram).is_some(), "a sent a malformed datagram");
        }
        while self.a.poll_event().is_some() {}
    }

    /// The public key of the device under test.
    pub fn a_public(&self) -> &PublicKey {
        &self.a_public
    }

    /// Seals `packet` as `b` would send it to `a`.
    pub fn seal_from_b(&self, packet: &[u8]) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; sealed_len(packet.len(), MTU)];
        buf[DATA_HEADER_LEN..DATA_HEADER_LEN + packet.len()].copy_from_slice(packet);
        let len = self.b_session.seal(&mut buf, packet.len(), MTU).ok()?;
        buf.truncate(len);
        Some(buf)
    }

    /// Delivers one datagram to `a` and checks what comes out.
    fn deliver(&mut self, from: SocketAddr, mut datagram: Vec<u8>, direct: bool, load: bool) {
        let from = Endpoint::new(from);
        if direct {
            let _ = self.a.handle_handshake(self.now, from, &datagram, load);
        } else if let Decapsulated::Packet(range) =
            self.a.decapsulate(self.now, from, &mut datagram, load)
        {
            assert!(range.start == DATA_HEADER_LEN && range.end <= datagram.len() - 16);
            let packet = &datagram[range];
            // Cryptokey routing: only b's sessions deliver here, and only b's sources.
            let source = match packet.first().map(|b| b >> 4) {
                Some(4) => IpAddr::from(<[u8; 4]>::try_from(&packet[12..16]).expect("4 bytes")),
                Some(6) => IpAddr::from(<[u8; 16]>::try_from(&packet[8..24]).expect("16 bytes")),
                _ => panic!("delivered a packet that is not IP"),
            };
            assert_eq!(self.a.route(source), Some(self.peer_b), "source {source} not allowed");
        }
        self.drain();
    }

    /// A handshake message with a `mac2` made from the cookie that `a` hands `from` for it.
    fn prove(&mut self, from: SocketAddr, mut message: Vec<u8>) -> Vec<u8> {
        let Some(at) = mac1_offset(message.len()) else { return message };
        let _ = self.a.handle_handshake(self.now, Endpoint::new(from), &message, true);
        let mut cookie = None;
        while let Some(t) = self.a.poll_transmit() {
            cookie = cookie.or_else(|| open_cookie(&t.datagram, &message, &self.a_public));
        }
        if let Some(cookie) = cookie {
            let mac2 = mac(&cookie, &message[..at + 16]);
            message[at + 16..at + 32].copy_from_slice(&mac2);
        }
        message
    }

    /// Handles one record: a selector byte and its body.
    pub fn handle(&mut self, selector: u8, body: &[u8], depth: usize) {
        let load = selector & 0x08 != 0;
        let flag = selector & 0x10 != 0;
        let from = addr(if selector & 0x20 != 0 { ROAM_ADDR } else { B_ADDR });
        match selector >> 6 {
            1 => self.advance(Duration::from_secs(6)),
            2 => self.advance(Duration::from_secs(125)),
            3 => self.advance(Duration::from_secs(185)),
            _ => {}
        }
        let message = |kind: u8, len: usize| {
            let mut m = vec![0u8; len];
            m[0] = kind;
            let n = body.len().min(len - 4);
            m[4..4 + n].copy_from_slice(&body[..n]);
            m
        };
        match selector & 0x07 {
            0 => self.deliver(from, body.to_vec(), flag, load),
            kind @ (1 | 2) => {
                let (kind, len) = if kind == 1 {
                    (TYPE_INITIATION, INITIATION_LEN)
                } else {
                    (TYPE_RESPONSE, RESPONSE_LEN)
                };
                let mut m = message(kind, len);
                stamp_mac1(&mut m, &self.a_public);
                if flag {
                    m = self.prove(from, m);
                }
                self.deliver(from, m, false, load);
            }
            3 => self.deliver(from, message(TYPE_COOKIE_REPLY, COOKIE_REPLY_LEN), flag, load),
            4 => {
                let len = (body.len() + 4).max(DATA_MIN_LEN);
                self.deliver(from, message(TYPE_DATA, len), flag, load);
            }
            5 => {
                if let Some(datagram) = self.seal_from_b(body) {
                    self.deliver(from, datagram, false, load);
                }
            }
            6 => {
                let (first, second) = body.split_at(body.len() / 2);
                let (Some(first), Some(second)) =
                    (self.seal_from_b(first), self.seal_from_b(second))
                else {
                    return;
                };
                for datagram in [second.clone(), first, second] {
                    self.deliver(from, datagram, false, load);
                }
            }
            _ if depth == 0 => {
                let mut rest = body;
                for _ in 0..MAX_RECORDS {
                    let Some((&[selector, lo, hi], tail)) = rest.split_first_chunk::<3>() else {
                        break;
                    };
                    let len = usize::from(u16::from_le_bytes([lo, hi])).min(tail.len());
                    let (record, tail) = tail.split_at(len);
                    self.handle(selector, record, depth + 1);
                    rest = tail;
                }
            }
            _ => {}
        }
    }
}

impl Default for Setup {
    fn default() -> Self {
        Self::new()
    }
}

/// `c`'s public key (the peer `a` has an initiation in flight to).
pub fn c_public() -> PublicKey {
    PrivateKey::from_bytes(C_KEY).public_key()
}

/// A device standing for `c`, peered with `a`, to answer `a`'s initiation in the seeds.
pub fn c_device() -> Device {
    let mut c = device(3, C_KEY);
    let peer_a = c.add_peer(PrivateKey::from_bytes(A_KEY).public_key()).expect("a is not c");
    c.set_endpoint(peer_a, addr(A_ADDR));
    c.add_allowed_ip(peer_a, "10.0.0.1/32".parse().expect("a prefix"));
    c
}

/// A second device with `b`'s key, to make fresh initiations from `b` in the seeds.
pub fn b_again(seed: u8) -> Device {
    let mut b = device(seed, B_KEY);
    let peer_a = b.add_peer(PrivateKey::from_bytes(A_KEY).public_key()).expect("a is not b");
    b.set_endpoint(peer_a, addr(A_ADDR));
    b.add_allowed_ip(peer_a, "10.0.0.1/32".parse().expect("a prefix"));
    b.set_preshared_key(peer_a, PresharedKey::from_bytes(PSK));
    b
}

/// The instant fuzz input is delivered at.
pub fn delivery() -> Instant {
    base() + DELIVERY
}

pub fn run(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else { return };
    let mut setup = Setup::new();
    setup.now = delivery();
    setup.handle(selector, body, 0);
    let _ = setup.a.poll_timeout();
    let _ = wgfabric_proto::uapi::format_get(&setup.a.snapshot());
}
