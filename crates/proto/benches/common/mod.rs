//! Two devices with an established session, for the benchmarks.
#![allow(clippy::disallowed_methods, reason = "benchmarks start their clock at the real now")]

use std::time::{Duration, Instant};

use wgfabric_proto::keys::PrivateKey;
use wgfabric_proto::session::sealed_len;
use wgfabric_proto::wire::DATA_HEADER_LEN;
use wgfabric_proto::{Decapsulated, Device, Encapsulated, Endpoint};

pub(crate) struct Pair {
    pub(crate) now: Instant,
    pub(crate) a: Device,
    pub(crate) b: Device,
}

pub(crate) const A_ADDR: &str = "192.0.2.1:51820";
pub(crate) const B_ADDR: &str = "192.0.2.2:51820";

/// An IPv4 packet of `len` bytes from 10.0.0.1 to 10.0.0.2.
pub(crate) fn packet(len: usize) -> Vec<u8> {
    let mut p = vec![0x5a; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[12..16].copy_from_slice(&[10, 0, 0, 1]);
    p[16..20].copy_from_slice(&[10, 0, 0, 2]);
    p
}

impl Pair {
    pub(crate) fn new() -> Self {
        let now = Instant::now();
        let epoch = Duration::from_secs(1_700_000_000);
        let (mut a, mut b) = (Device::new([1; 32], now, epoch), Device::new([2; 32], now, epoch));
        let (ka, kb) = (PrivateKey::from_bytes([3; 32]), PrivateKey::from_bytes([4; 32]));
        let (pa, pb) = (ka.public_key(), kb.public_key());
        a.set_private_key(Some(ka));
        b.set_private_key(Some(kb));
        let peer_b = a.add_peer(pb).unwrap();
        a.set_endpoint(peer_b, B_ADDR.parse().unwrap());
        a.add_allowed_ip(peer_b, "10.0.0.2/32".parse().unwrap());
        let peer_a = b.add_peer(pa).unwrap();
        b.set_endpoint(peer_a, A_ADDR.parse().unwrap());
        b.add_allowed_ip(peer_a, "10.0.0.1/32".parse().unwrap());
        let mut pair = Self { now, a, b };
        pair.send_and_handshake();
        pair
    }

    /// Sends one packet from A, carrying every datagram across until both sides are quiet.
    pub(crate) fn send_and_handshake(&mut self) {
        let p = packet(100);
        let mut buf = vec![0u8; sealed_len(p.len(), 1420)];
        buf[DATA_HEADER_LEN..DATA_HEADER_LEN + p.len()].copy_from_slice(&p);
        let mut to_b = Vec::new();
        if let Encapsulated::Send { len, .. } = self.a.encapsulate(self.now, &mut buf, p.len()) {
            to_b.push(buf[..len].to_vec());
        }
        let (a_ep, b_ep) =
            (Endpoint::new(A_ADDR.parse().unwrap()), Endpoint::new(B_ADDR.parse().unwrap()));
        loop {
            to_b.extend(std::iter::from_fn(|| self.a.poll_transmit()).map(|t| t.datagram));
            if to_b.is_empty() {
                break;
            }
            for mut d in to_b.drain(..) {
                let _ = self.b.decapsulate(self.now, a_ep, &mut d, false);
            }
            for t in std::iter::from_fn(|| self.b.poll_transmit()).collect::<Vec<_>>() {
                let mut d = t.datagram;
                let r = self.a.decapsulate(self.now, b_ep, &mut d, false);
                assert!(!matches!(r, Decapsulated::Dropped(_)), "{r:?}");
            }
        }
    }
}
