//! Peer restart: one side's daemon stops and starts again with the same configuration, and the
//! side that stayed up reconnects by itself. Nothing touches the survivor but traffic to the
//! restarted side: its session is stale (the restarted side dropped the keys), so its packets
//! go unanswered until, by WireGuard's timers, it starts a new handshake (after 15 s of data
//! sent without anything received).

mod common;

use std::time::Duration;

use common::wgfabricd;
use wgfabric_testkit::scenarios::{self, Link, Psk, Side, Tunnel, Underlay, INNER_V4};
use wgfabric_testkit::Impl::{self, Boringtun, WireguardGo};

/// The 15 s of the new-handshake timer, a 5 s handshake retry, and slack for a busy machine.
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(40);

/// `a` initiates and `b` responds; after a first connection, `restarted`'s daemon restarts and
/// the other side pings it until it answers again.
fn survivor_reconnects(a: &Impl, b: &Impl, restarted: Side) {
    if !scenarios::available(a, b) {
        return;
    }
    let link = Link::new(Underlay::V4);
    let mut tunnel = Tunnel::new(&link, a, b, Psk::None);
    tunnel.assert_connects(&link, INNER_V4[1]);
    let survivor = restarted.other();
    let handshake_before = tunnel
        .daemon(survivor)
        .dump()
        .peer(tunnel.key(restarted))
        .expect("the peer is listed")
        .latest_handshake;

    tunnel.restart(restarted);
    let target = INNER_V4[restarted.index()];
    assert!(
        link.ns(survivor).ping_until_reply(target, RECONNECT_TIMEOUT),
        "{} did not reconnect to a restarted {}",
        tunnel.daemon(survivor).implementation().name(),
        tunnel.daemon(restarted).implementation().name(),
    );
    let stats = link.ns(survivor).ping(target, 5);
    assert!(stats.all_answered(), "lost pings after reconnecting: {stats:?}");
    let view = tunnel.daemon(survivor).dump();
    let peer = view.peer(tunnel.key(restarted)).expect("the peer is listed");
    if tunnel.daemon(survivor).implementation().reports_handshake_time() {
        assert!(peer.latest_handshake > handshake_before, "no new handshake: {peer:?}");
    }
}

#[test]
#[ignore = "needs root and network namespaces"]
fn wgfabricd_reconnects_to_a_restarted_wgfabricd() {
    survivor_reconnects(&wgfabricd(), &wgfabricd(), Side::B);
}

#[test]
#[ignore = "needs root and network namespaces"]
fn a_responding_wgfabricd_reconnects_to_a_restarted_initiator() {
    survivor_reconnects(&wgfabricd(), &wgfabricd(), Side::A);
}

#[test]
#[ignore = "needs root and network namespaces"]
fn wgfabricd_reconnects_to_a_restarted_wireguard_go() {
    survivor_reconnects(&wgfabricd(), &WireguardGo, Side::B);
}

#[test]
#[ignore = "needs root and network namespaces"]
fn wireguard_go_reconnects_to_a_restarted_wgfabricd() {
    survivor_reconnects(&WireguardGo, &wgfabricd(), Side::B);
}

#[test]
#[ignore = "needs root and network namespaces"]
fn wgfabricd_reconnects_to_a_restarted_boringtun() {
    survivor_reconnects(&wgfabricd(), &Boringtun, Side::B);
}

#[test]
#[ignore = "needs root and network namespaces"]
fn boringtun_reconnects_to_a_restarted_wgfabricd() {
    survivor_reconnects(&Boringtun, &wgfabricd(), Side::B);
}
