//! The interop scenarios every pair of implementations must pass, written once and run for
//! each pair: `a` is the side that initiates, so calling a scenario with the pair swapped
//! tests the other side initiating.
//!
//! Each scenario builds two namespaces joined by a veth (the underlay), starts `a` and `b`
//! there, configures them through `wg setconf` with only `a` knowing `b`'s endpoint (so `b`
//! must learn `a`'s from the handshake), and checks what must hold. A scenario whose
//! implementation is missing is skipped outside CI (see [`crate::require_tool`]).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use wgfabric_proto::keys::{PresharedKey, PublicKey};

use crate::{keypair, preshared_key, transfer, unique_interface_name, veth, Daemon, Impl};
use crate::{Netns, WgConfig, WgPeer};

/// Inner (tunnel) addresses of `a` and `b`, from the documentation ranges.
const INNER_V4: [&str; 2] = ["198.51.100.1", "198.51.100.2"];
const INNER_V6: [&str; 2] = ["2001:db8:100::1", "2001:db8:100::2"];
/// Underlay addresses on the veth.
const UNDERLAY_V4: [&str; 2] = ["192.0.2.1", "192.0.2.2"];
const UNDERLAY_V6: [&str; 2] = ["2001:db8::1", "2001:db8::2"];
const PORTS: [u16; 2] = [51820, 51821];
/// Time for a first handshake; generous for a loaded 2-core CI machine.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// Whether the underlay between the two namespaces is IPv4 or IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Underlay {
    /// 192.0.2.0/24.
    V4,
    /// 2001:db8::/64.
    V6,
}

/// How the preshared keys of the two sides relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Psk {
    /// No preshared key.
    None,
    /// Both sides share one.
    Same,
    /// Each side has a different one: no session may come up.
    Mismatch,
}

/// Two namespaces joined by a veth.
#[derive(Debug)]
pub struct Link {
    /// `a`'s namespace.
    pub a: Netns,
    /// `b`'s namespace.
    pub b: Netns,
    underlay: Underlay,
}

impl Link {
    /// Two fresh namespaces with the underlay addresses on a veth pair.
    pub fn new(underlay: Underlay) -> Self {
        let link = Self { a: Netns::new("wgf-a"), b: Netns::new("wgf-b"), underlay };
        veth(&link.a, "veth-a", &link.b, "veth-b");
        let (addrs, len) = match underlay {
            Underlay::V4 => (UNDERLAY_V4, 24),
            Underlay::V6 => (UNDERLAY_V6, 64),
        };
        link.a.add_addr("veth-a", &format!("{}/{len}", addrs[0]));
        link.b.add_addr("veth-b", &format!("{}/{len}", addrs[1]));
        link
    }

    fn underlay_addr(&self, side: usize) -> IpAddr {
        let addrs = match self.underlay {
            Underlay::V4 => UNDERLAY_V4,
            Underlay::V6 => UNDERLAY_V6,
        };
        addrs[side].parse().expect("a constant address")
    }
}

/// Two running, configured implementations on a [`Link`].
#[derive(Debug)]
pub struct Tunnel<'l> {
    /// The initiating side.
    pub a: Daemon<'l>,
    /// The responding side.
    pub b: Daemon<'l>,
    /// `a`'s public key.
    pub a_key: PublicKey,
    /// `b`'s public key.
    pub b_key: PublicKey,
}

impl<'l> Tunnel<'l> {
    /// Starts `a` and `b`, configures them as each other's peer with both inner address
    /// families, and sets the interfaces up.
    pub fn new(link: &'l Link, a: &Impl, b: &Impl, psk: Psk) -> Self {
        let a = Daemon::start(&link.a, a.clone(), &unique_interface_name("wgfa"));
        let b = Daemon::start(&link.b, b.clone(), &unique_interface_name("wgfb"));
        let (a_private, a_key) = keypair();
        let (b_private, b_key) = keypair();
        let (a_psk, b_psk): (Option<PresharedKey>, Option<PresharedKey>) = match psk {
            Psk::None => (None, None),
            Psk::Same => {
                let key = preshared_key();
                (Some(key.clone()), Some(key))
            }
            Psk::Mismatch => (Some(preshared_key()), Some(preshared_key())),
        };
        let mut b_as_peer = WgPeer::new(b_key);
        b_as_peer.preshared_key = a_psk;
        b_as_peer.endpoint = Some(SocketAddr::new(link.underlay_addr(1), PORTS[1]));
        b_as_peer.allowed_ips = vec![format!("{}/32", INNER_V4[1]), format!("{}/128", INNER_V6[1])];
        let mut a_as_peer = WgPeer::new(a_key);
        a_as_peer.preshared_key = b_psk;
        a_as_peer.allowed_ips = vec![format!("{}/32", INNER_V4[0]), format!("{}/128", INNER_V6[0])];
        a.setconf(&WgConfig {
            private_key: a_private,
            listen_port: Some(PORTS[0]),
            fwmark: None,
            peers: vec![b_as_peer],
        });
        b.setconf(&WgConfig {
            private_key: b_private,
            listen_port: Some(PORTS[1]),
            fwmark: None,
            peers: vec![a_as_peer],
        });
        for (daemon, side) in [(&a, 0), (&b, 1)] {
            daemon.up(&[&format!("{}/24", INNER_V4[side]), &format!("{}/64", INNER_V6[side])]);
        }
        Self { a, b, a_key, b_key }
    }

    /// Pings `b`'s inner address from `a` until it answers, then checks both sides saw the
    /// handshake and `b` learned `a`'s endpoint.
    ///
    /// # Panics
    /// When no reply comes within the handshake timeout, or the state is wrong.
    pub fn assert_connects(&self, link: &Link, inner: &str) {
        let what = format!(
            "{} -> {} ({inner})",
            self.a.implementation().name(),
            self.b.implementation().name()
        );
        assert!(self.a.ns().ping_until_reply(inner, HANDSHAKE_TIMEOUT), "{what}: no reply");
        let stats = self.a.ns().ping(inner, 5);
        assert!(stats.all_answered(), "{what}: lost pings after the handshake: {stats:?}");
        let a_view = self.a.dump();
        let b_view = self.b.dump();
        let b_peer = a_view.peer(&self.b_key).expect("a lists b");
        let a_peer = b_view.peer(&self.a_key).expect("b lists a");
        if self.a.implementation().reports_handshake_time() {
            assert!(b_peer.latest_handshake > 0, "{what}: a reports no handshake");
        }
        assert!(b_peer.tx_bytes > 0 && b_peer.rx_bytes > 0, "{what}: a's counters: {b_peer:?}");
        let expected = SocketAddr::new(link.underlay_addr(0), PORTS[0]).to_string();
        assert_eq!(a_peer.endpoint.as_deref(), Some(expected.as_str()), "{what}: b's view of a");
    }
}

fn available(a: &Impl, b: &Impl) -> bool {
    a.require().is_ok() && b.require().is_ok()
}

/// `a` initiates; a handshake completes and pings over inner IPv4 all come back.
pub fn handshake_and_ping(a: &Impl, b: &Impl) {
    if !available(a, b) {
        return;
    }
    let link = Link::new(Underlay::V4);
    let tunnel = Tunnel::new(&link, a, b, Psk::None);
    tunnel.assert_connects(&link, INNER_V4[1]);
}

/// After the handshake, `bytes` of TCP from `b` to `a` arrive intact (checked by hash).
pub fn tcp_transfer(a: &Impl, b: &Impl, bytes: u64) {
    if !available(a, b) {
        return;
    }
    let link = Link::new(Underlay::V4);
    let tunnel = Tunnel::new(&link, a, b, Psk::None);
    tunnel.assert_connects(&link, INNER_V4[1]);
    let listen = SocketAddr::new(INNER_V4[0].parse().expect("a constant address"), 5201);
    let report = transfer(&link.a, listen, &link.b, bytes).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{} <- {}: {}", a.name(), b.name(), report.trim());
}

/// Inner IPv6 works: ping and a 1 MB transfer over the tunnel's IPv6 addresses.
pub fn inner_ipv6(a: &Impl, b: &Impl) {
    if !available(a, b) {
        return;
    }
    let link = Link::new(Underlay::V4);
    let tunnel = Tunnel::new(&link, a, b, Psk::None);
    tunnel.assert_connects(&link, INNER_V6[1]);
    let listen = SocketAddr::new(INNER_V6[0].parse().expect("a constant address"), 5201);
    transfer(&link.a, listen, &link.b, 1 << 20).unwrap_or_else(|e| panic!("{e}"));
}

/// The tunnel runs over an IPv6 underlay, carrying IPv4 and IPv6.
pub fn ipv6_underlay(a: &Impl, b: &Impl) {
    if !available(a, b) {
        return;
    }
    let link = Link::new(Underlay::V6);
    let tunnel = Tunnel::new(&link, a, b, Psk::None);
    tunnel.assert_connects(&link, INNER_V4[1]);
    assert!(tunnel.a.ns().ping(INNER_V6[1], 3).all_answered(), "inner IPv6 over IPv6");
}

/// With the same preshared key on both sides the tunnel comes up.
pub fn preshared_key_connects(a: &Impl, b: &Impl) {
    if !available(a, b) {
        return;
    }
    let link = Link::new(Underlay::V4);
    let tunnel = Tunnel::new(&link, a, b, Psk::Same);
    tunnel.assert_connects(&link, INNER_V4[1]);
    assert!(tunnel.a.dump().peer(&tunnel.b_key).is_some_and(|p| p.has_preshared_key));
}

/// With different preshared keys no packet gets through and the initiator never completes
/// a handshake ([`preshared_key_connects`] shows the same setup works when the keys match).
pub fn preshared_key_mismatch_does_not_connect(a: &Impl, b: &Impl) {
    if !available(a, b) {
        return;
    }
    let link = Link::new(Underlay::V4);
    let tunnel = Tunnel::new(&link, a, b, Psk::Mismatch);
    let stats = tunnel.a.ns().ping(INNER_V4[1], 5);
    assert_eq!(stats.received, 0, "a reply crossed mismatched preshared keys: {stats:?}");
    let b_peer = tunnel.a.dump().peer(&tunnel.b_key).cloned().expect("a lists b");
    assert_eq!(b_peer.latest_handshake, 0, "a completed a handshake: {b_peer:?}");
}
