//! The interop scenarios every pair of implementations must pass, written once and run for
//! each pair: `a` is the side that initiates, so calling a scenario with the pair swapped
//! tests the other side initiating.
//!
//! Each scenario builds two namespaces joined by a veth (the underlay), starts `a` and `b`
//! there, configures them through `wg setconf` with only `a` knowing `b`'s endpoint (so `b`
//! must learn `a`'s from the handshake), and checks what must hold. A scenario whose
//! implementation is missing is skipped outside CI (see [`crate::require_tool`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use wgfabric_proto::keys::{PresharedKey, PublicKey};

use crate::{keypair, preshared_key, transfer, unique_interface_name, veth, Daemon, Impl};
use crate::{Netns, WgConfig, WgPeer};

/// Inner (tunnel) IPv4 addresses of `a` and `b` (in a /24), from the documentation ranges.
pub const INNER_V4: [&str; 2] = ["198.51.100.1", "198.51.100.2"];
/// Inner (tunnel) IPv6 addresses of `a` and `b` (in a /64).
pub const INNER_V6: [&str; 2] = ["2001:db8:100::1", "2001:db8:100::2"];
/// Underlay addresses on the veth, at first: IPv4 in a /24, IPv6 in a /64.
const UNDERLAY_V4: [&str; 2] = ["192.0.2.1", "192.0.2.2"];
const UNDERLAY_V6: [&str; 2] = ["2001:db8::1", "2001:db8::2"];
/// The listen ports of `a` and `b`.
pub const PORTS: [u16; 2] = [51820, 51821];
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

/// One end of a [`Link`] or [`Tunnel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The initiating side, which knows the other's endpoint from its configuration.
    A,
    /// The responding side, which learns the other's endpoint from the handshake.
    B,
}

impl Side {
    /// The other end.
    pub fn other(self) -> Self {
        match self {
            Self::A => Self::B,
            Self::B => Self::A,
        }
    }

    /// 0 for `A`, 1 for `B`: the index into the per-side constants.
    pub fn index(self) -> usize {
        match self {
            Self::A => 0,
            Self::B => 1,
        }
    }
}

/// Two namespaces joined by a veth.
#[derive(Debug)]
pub struct Link {
    /// `a`'s namespace.
    pub a: Netns,
    /// `b`'s namespace.
    pub b: Netns,
    underlay: Underlay,
    /// The underlay address each side has now.
    addrs: Mutex<[IpAddr; 2]>,
}

impl Link {
    /// Two fresh namespaces with the underlay addresses on a veth pair.
    pub fn new(underlay: Underlay) -> Self {
        let first = match underlay {
            Underlay::V4 => UNDERLAY_V4,
            Underlay::V6 => UNDERLAY_V6,
        };
        let addrs = first.map(|addr| addr.parse().expect("a constant address"));
        let link = Self {
            a: Netns::new("wgf-a"),
            b: Netns::new("wgf-b"),
            underlay,
            addrs: Mutex::new(addrs),
        };
        veth(&link.a, Self::device(Side::A), &link.b, Self::device(Side::B)).unwrap();
        for side in [Side::A, Side::B] {
            link.ns(side).add_address(Self::device(side), &link.cidr(addrs[side.index()])).unwrap();
        }
        link
    }

    /// `side`'s namespace.
    pub fn ns(&self, side: Side) -> &Netns {
        match side {
            Side::A => &self.a,
            Side::B => &self.b,
        }
    }

    /// `side`'s end of the veth.
    pub fn device(side: Side) -> &'static str {
        match side {
            Side::A => "veth-a",
            Side::B => "veth-b",
        }
    }

    /// The underlay address `side` has now.
    pub fn underlay_addr(&self, side: Side) -> IpAddr {
        self.addrs.lock().unwrap_or_else(PoisonError::into_inner)[side.index()]
    }

    /// Moves `side` to `addr` on the same link and subnet, as a host that roams: deletes the
    /// address it had (and with it the subnet's route, until the new one is added), then adds
    /// `addr`.
    pub fn move_underlay(&self, side: Side, addr: IpAddr) {
        let mut addrs = self.addrs.lock().unwrap_or_else(PoisonError::into_inner);
        let ns = self.ns(side);
        ns.delete_address(Self::device(side), &self.cidr(addrs[side.index()])).unwrap();
        ns.add_address(Self::device(side), &self.cidr(addr)).unwrap();
        addrs[side.index()] = addr;
    }

    fn cidr(&self, addr: IpAddr) -> String {
        let len = match self.underlay {
            Underlay::V4 => 24,
            Underlay::V6 => 64,
        };
        format!("{addr}/{len}")
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
    /// What `a` and `b` were configured with, for restarts.
    configs: [WgConfig; 2],
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
        b_as_peer.endpoint = Some(SocketAddr::new(link.underlay_addr(Side::B), PORTS[1]));
        b_as_peer.allowed_ips = vec![format!("{}/32", INNER_V4[1]), format!("{}/128", INNER_V6[1])];
        let mut a_as_peer = WgPeer::new(a_key);
        a_as_peer.preshared_key = b_psk;
        a_as_peer.allowed_ips = vec![format!("{}/32", INNER_V4[0]), format!("{}/128", INNER_V6[0])];
        let configs = [
            WgConfig {
                private_key: a_private,
                listen_port: Some(PORTS[0]),
                fwmark: None,
                peers: vec![b_as_peer],
            },
            WgConfig {
                private_key: b_private,
                listen_port: Some(PORTS[1]),
                fwmark: None,
                peers: vec![a_as_peer],
            },
        ];
        let tunnel = Self { a, b, a_key, b_key, configs };
        for side in [Side::A, Side::B] {
            tunnel.configure(side);
        }
        tunnel
    }

    /// `side`'s daemon.
    pub fn daemon(&self, side: Side) -> &Daemon<'l> {
        match side {
            Side::A => &self.a,
            Side::B => &self.b,
        }
    }

    /// `side`'s public key.
    pub fn key(&self, side: Side) -> &PublicKey {
        match side {
            Side::A => &self.a_key,
            Side::B => &self.b_key,
        }
    }

    /// Stops `side`'s daemon and starts it again with the same interface name, configuration
    /// and addresses, as after a reboot; the other side is left alone.
    pub fn restart(&mut self, side: Side) {
        match side {
            Side::A => self.a.restart(),
            Side::B => self.b.restart(),
        }
        self.configure(side);
    }

    /// Applies `side`'s configuration and sets its interface up with its inner addresses.
    fn configure(&self, side: Side) {
        let daemon = self.daemon(side);
        daemon.setconf(&self.configs[side.index()]);
        let i = side.index();
        daemon.up(&[&format!("{}/24", INNER_V4[i]), &format!("{}/64", INNER_V6[i])]);
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
        let expected = SocketAddr::new(link.underlay_addr(Side::A), PORTS[0]).to_string();
        assert_eq!(a_peer.endpoint.as_deref(), Some(expected.as_str()), "{what}: b's view of a");
    }
}

/// Whether both implementations can run here; see [`Impl::require`] for the policy.
pub fn available(a: &Impl, b: &Impl) -> bool {
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
