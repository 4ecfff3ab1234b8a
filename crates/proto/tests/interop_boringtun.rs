//! Interoperability with an independent implementation: boringtun's `Tunn`, in process.
//!
//! Full handshakes and transport data both ways, each side initiating, with and without a
//! preshared key, and forced cookie exchanges in both directions.
#![allow(clippy::disallowed_methods, reason = "the fixture starts its clock at the real now")]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519;
use wgfabric_proto::constants::{REKEY_TIMEOUT, REKEY_TIMEOUT_JITTER_MAX};
use wgfabric_proto::keys::{PresharedKey, PrivateKey, PublicKey};
use wgfabric_proto::session::sealed_len;
use wgfabric_proto::wire::DATA_HEADER_LEN;
use wgfabric_proto::{Decapsulated, Device, Encapsulated, Endpoint};
use wgfabric_testkit::packet::ipv4;

const OURS: &str = "192.0.2.1:51820";
const THEIRS: &str = "192.0.2.2:51821";

struct Fixture {
    now: Instant,
    ours: Device,
    theirs: Tunn,
}

/// An IPv4 packet carrying `payload`.
fn ipv4_packet(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut p = ipv4(src, dst, payload.len());
    p[20..].copy_from_slice(payload);
    // IPv4 header checksum, as a real stack would send.
    let sum = p[..20].chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], w[1]]))).sum::<u32>();
    let folded = (sum & 0xffff) + (sum >> 16);
    p[10..12].copy_from_slice(&(!((folded & 0xffff) + (folded >> 16)) as u16).to_be_bytes());
    p
}

impl Fixture {
    fn new(
        psk_ours: Option<[u8; 32]>,
        psk_theirs: Option<[u8; 32]>,
        theirs_limit: Option<u64>,
    ) -> Self {
        let now = Instant::now();
        let our_key = PrivateKey::from_bytes([0x31; 32]);
        let their_secret = x25519::StaticSecret::from([0x42; 32]);
        let their_public = PublicKey::from_bytes(x25519::PublicKey::from(&their_secret).to_bytes());

        let mut ours = Device::new([5; 32], now, Duration::from_secs(1_700_000_000));
        ours.set_private_key(Some(our_key.clone()));
        let peer = ours.add_peer(their_public).unwrap();
        ours.set_endpoint(peer, THEIRS.parse().unwrap());
        ours.add_allowed_ip(peer, "10.9.0.2/32".parse().unwrap());
        if let Some(psk) = psk_ours {
            ours.set_preshared_key(peer, PresharedKey::from_bytes(psk));
        }

        let their_pub_x = x25519::PublicKey::from(&their_secret);
        let limiter = theirs_limit.map(|limit| Arc::new(RateLimiter::new(&their_pub_x, limit)));
        let theirs = Tunn::new(
            their_secret,
            x25519::PublicKey::from(*our_key.public_key().as_bytes()),
            psk_theirs,
            None,
            7,
            limiter,
        );
        Self { now, ours, theirs }
    }

    /// Feeds a datagram from boringtun to our device; returns a delivered packet, if any.
    fn deliver_to_ours(&mut self, datagram: &[u8], under_load: bool) -> Option<Vec<u8>> {
        let mut buf = datagram.to_vec();
        let from = Endpoint::new(THEIRS.parse().unwrap());
        match self.ours.decapsulate(self.now, from, &mut buf, under_load) {
            Decapsulated::Packet(range) => Some(buf[range].to_vec()),
            Decapsulated::Consumed => None,
            Decapsulated::Dropped(reason) => {
                panic!("our device dropped a boringtun datagram: {reason:?}")
            }
        }
    }

    /// Feeds a datagram from our device to boringtun; returns what it delivers to its tunnel
    /// and everything it wants to send back.
    fn deliver_to_theirs(&mut self, datagram: &[u8]) -> (Option<Vec<u8>>, Vec<Vec<u8>>) {
        let src: SocketAddr = OURS.parse().unwrap();
        let mut out = vec![0u8; 2048];
        let mut replies = Vec::new();
        let mut delivered = None;
        match self.theirs.decapsulate(Some(src.ip()), datagram, &mut out) {
            TunnResult::WriteToNetwork(d) => {
                replies.push(d.to_vec());
                // Drain boringtun's queue, as its documentation asks.
                while let TunnResult::WriteToNetwork(d) =
                    self.theirs.decapsulate(None, &[], &mut out)
                {
                    replies.push(d.to_vec());
                }
            }
            TunnResult::WriteToTunnelV4(p, _) | TunnResult::WriteToTunnelV6(p, _) => {
                delivered = Some(p.to_vec())
            }
            TunnResult::Done => {}
            TunnResult::Err(e) => panic!("boringtun refused our datagram: {e:?}"),
        }
        (delivered, replies)
    }

    fn our_transmits(&mut self) -> Vec<Vec<u8>> {
        core::iter::from_fn(|| self.ours.poll_transmit())
            .map(|t| {
                assert_eq!(t.endpoint.addr, THEIRS.parse().unwrap());
                t.datagram
            })
            .collect()
    }

    /// Sends a packet from our side; returns what boringtun delivered.
    fn send_ours(&mut self, packet: &[u8]) -> Vec<Vec<u8>> {
        let mut buf = vec![0u8; sealed_len(packet.len(), self.ours.mtu())];
        buf[DATA_HEADER_LEN..DATA_HEADER_LEN + packet.len()].copy_from_slice(packet);
        let mut datagrams = Vec::new();
        if let Encapsulated::Send { len, .. } =
            self.ours.encapsulate(self.now, &mut buf, packet.len())
        {
            datagrams.push(buf[..len].to_vec());
        }
        datagrams.extend(self.our_transmits());
        let (theirs, ours) = self.run(datagrams, Vec::new());
        assert!(ours.is_empty(), "boringtun sent data unprompted");
        theirs
    }

    /// Sends a packet from boringtun's side; returns what our device delivered.
    fn send_theirs(&mut self, packet: &[u8]) -> Vec<Vec<u8>> {
        let mut out = vec![0u8; 2048];
        let TunnResult::WriteToNetwork(first) = self.theirs.encapsulate(packet, &mut out) else {
            panic!("boringtun did not send");
        };
        let first = first.to_vec();
        let (theirs, ours) = self.run(Vec::new(), vec![first]);
        assert!(theirs.is_empty(), "we sent data unprompted");
        ours
    }

    /// Carries datagrams both ways until both sides are quiet. Returns the packets delivered
    /// by (boringtun, our device).
    fn run(
        &mut self,
        mut to_them: Vec<Vec<u8>>,
        mut to_us: Vec<Vec<u8>>,
    ) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let (mut theirs, mut ours) = (Vec::new(), Vec::new());
        while !to_them.is_empty() || !to_us.is_empty() {
            for d in core::mem::take(&mut to_them) {
                let (got, replies) = self.deliver_to_theirs(&d);
                theirs.extend(got);
                to_us.extend(replies);
            }
            for d in core::mem::take(&mut to_us) {
                ours.extend(self.deliver_to_ours(&d, false));
                to_them.extend(self.our_transmits());
            }
        }
        (theirs, ours)
    }
}

fn exchange_both_ways(f: &mut Fixture) {
    for i in 0..200u16 {
        let payload: Vec<u8> = (0..(i * 7 % 1380)).map(|b| (b as u8) ^ (i as u8)).collect();
        let ours = ipv4_packet([10, 9, 0, 1], [10, 9, 0, 2], &payload);
        assert_eq!(f.send_ours(&ours), vec![ours.clone()], "our packet {i} arrives intact");
        let theirs = ipv4_packet([10, 9, 0, 2], [10, 9, 0, 1], &payload);
        assert_eq!(f.send_theirs(&theirs), vec![theirs.clone()], "their packet {i} arrives intact");
    }
}

#[test]
fn we_initiate_without_psk() {
    let mut f = Fixture::new(None, None, None);
    exchange_both_ways(&mut f);
}

#[test]
fn they_initiate_without_psk() {
    let mut f = Fixture::new(None, None, None);
    let first = ipv4_packet([10, 9, 0, 2], [10, 9, 0, 1], b"hello");
    assert_eq!(f.send_theirs(&first), vec![first]);
    exchange_both_ways(&mut f);
}

#[test]
fn we_initiate_with_psk() {
    let mut f = Fixture::new(Some([9; 32]), Some([9; 32]), None);
    exchange_both_ways(&mut f);
}

#[test]
fn they_initiate_with_psk() {
    let mut f = Fixture::new(Some([9; 32]), Some([9; 32]), None);
    let first = ipv4_packet([10, 9, 0, 2], [10, 9, 0, 1], b"hello");
    assert_eq!(f.send_theirs(&first), vec![first]);
    exchange_both_ways(&mut f);
}

#[test]
fn psk_mismatch_never_connects() {
    let mut f = Fixture::new(Some([1; 32]), Some([2; 32]), None);
    let mut buf = vec![0u8; 256];
    let packet = ipv4_packet([10, 9, 0, 1], [10, 9, 0, 2], b"x");
    buf[16..16 + packet.len()].copy_from_slice(&packet);
    assert_eq!(f.ours.encapsulate(f.now, &mut buf, packet.len()), Encapsulated::Queued);
    let initiation = f.our_transmits();
    let (_, replies) = f.deliver_to_theirs(&initiation[0]);
    assert_eq!(replies.len(), 1, "boringtun answers the initiation");
    let mut response = replies[0].clone();
    let from = Endpoint::new(THEIRS.parse().unwrap());
    assert!(matches!(
        f.ours.decapsulate(f.now, from, &mut response, false),
        Decapsulated::Dropped(_)
    ));
    assert!(f.our_transmits().is_empty(), "nothing is sent on a failed handshake");
}

#[test]
fn cookie_from_boringtun_under_load() {
    // boringtun with a handshake limit of 0 is always under load and demands a cookie.
    let mut f = Fixture::new(None, None, Some(0));
    let packet = ipv4_packet([10, 9, 0, 1], [10, 9, 0, 2], b"after a cookie");
    let mut buf = vec![0u8; 256];
    buf[16..16 + packet.len()].copy_from_slice(&packet);
    assert_eq!(f.ours.encapsulate(f.now, &mut buf, packet.len()), Encapsulated::Queued);
    let initiation = f.our_transmits();
    let (_, replies) = f.deliver_to_theirs(&initiation[0]);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0][0], 3, "boringtun sent a cookie reply");
    assert_eq!(f.deliver_to_ours(&replies[0], false), None);
    // Our retransmission carries mac2 and is accepted; the queued packet then arrives.
    f.now += REKEY_TIMEOUT + REKEY_TIMEOUT_JITTER_MAX;
    f.ours.handle_timeout(f.now);
    let retry = f.our_transmits();
    assert_eq!(retry.len(), 1);
    assert_eq!(f.run(retry, Vec::new()), (vec![packet], Vec::new()));
}

#[test]
fn cookie_to_boringtun_when_we_are_under_load() {
    let mut f = Fixture::new(None, None, None);
    let packet = ipv4_packet([10, 9, 0, 2], [10, 9, 0, 1], b"hi");
    let mut out = vec![0u8; 2048];
    let TunnResult::WriteToNetwork(init) = f.theirs.encapsulate(&packet, &mut out) else {
        panic!()
    };
    let mut init = init.to_vec();
    let from = Endpoint::new(THEIRS.parse().unwrap());
    let result = f.ours.decapsulate(f.now, from, &mut init, true);
    assert_eq!(result, Decapsulated::Dropped(wgfabric_proto::DropReason::CookieRequired));
    let cookie = f.our_transmits();
    assert_eq!(cookie.len(), 1);
    assert_eq!(cookie[0][0], 3);
    let src: IpAddr = OURS.parse::<SocketAddr>().unwrap().ip();
    assert!(matches!(f.theirs.decapsulate(Some(src), &cookie[0], &mut out), TunnResult::Done));
    // boringtun retries (forced here rather than waiting its real-time timer) with mac2.
    let TunnResult::WriteToNetwork(retry) = f.theirs.format_handshake_initiation(&mut out, true)
    else {
        panic!()
    };
    let mut retry = retry.to_vec();
    assert_eq!(f.ours.decapsulate(f.now, from, &mut retry, true), Decapsulated::Consumed);
    let response = f.our_transmits();
    assert_eq!(response.len(), 1);
    let (_, replies) = f.deliver_to_theirs(&response[0]);
    let delivered: Vec<_> = replies.iter().filter_map(|r| f.deliver_to_ours(r, true)).collect();
    assert_eq!(delivered, vec![packet]);
}
