//! Roaming, both ways: a side whose underlay address changes in the middle of a ping series
//! keeps its tunnel. The other side learns the new endpoint from the first authenticated
//! packet (and `wg show` says so), and the side that moved, whose remembered source address no
//! longer exists, keeps sending from the one it has now.
//!
//! The move happens during a ping series and, on a rate-limited link, during a TCP transfer.
//! An address move deletes the old address before adding the new one on the same link, so for
//! a moment there is no route at all, as when a laptop changes networks. wireguard-go 0.0.2022
//! and boringtun 0.7 cannot move that way themselves (they keep sending from the vanished
//! address), so where wgfabricd follows them, they change their listen port instead: the same
//! endpoint change, as a NAT rebinding shows it.

mod common;

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use common::wgfabricd;
use wgfabric_testkit::scenarios::{self, Link, Psk, Side, Tunnel, Underlay, INNER_V4, PORTS};
use wgfabric_testkit::Impl::{self, Boringtun, WireguardGo};
use wgfabric_testkit::{transfer, wait_until, PingStats};

/// The series the move happens in: 100 echo requests 50 ms apart, 5 s in all.
const SERIES: &str = "100";
const SERIES_INTERVAL: &str = "0.05";
/// Requests the move may cost (half a second of them): more means traffic did not resume
/// promptly, or at all.
const MAY_LOSE: u32 = 10;
/// Where a side that changes its listen port goes.
const MOVED_PORT: u16 = 51830;

/// How the roaming side's endpoint changes.
#[derive(Debug, Clone, Copy)]
enum Move {
    /// To another address in the same subnet (deleted, then added).
    Address,
    /// To [`MOVED_PORT`], through `wg set`.
    ListenPort,
}

/// `a` initiates and `b` responds over an `underlay` link; `roamer`'s side moves while it
/// pings the other.
fn moves_mid_flow(a: &Impl, b: &Impl, roamer: Side, how: Move, underlay: Underlay) {
    if !scenarios::available(a, b) {
        return;
    }
    let link = Link::new(underlay);
    let tunnel = Tunnel::new(&link, a, b, Psk::None);
    tunnel.assert_connects(&link, INNER_V4[1]);
    let observer = tunnel.daemon(roamer.other());
    let roamer_key = tunnel.key(roamer);
    let received = || observer.dump().peer(roamer_key).expect("the peer is listed").rx_bytes;

    let before = received();
    let target = INNER_V4[roamer.other().index()];
    let mut series = link.ns(roamer).spawn(&[
        "ping",
        "-n",
        "-q",
        "-c",
        SERIES,
        "-i",
        SERIES_INTERVAL,
        "-W",
        "1",
        target,
    ]);
    assert!(wait_until(Duration::from_secs(5), || received() > before), "the series never flowed");
    let new_endpoint = match how {
        Move::Address => {
            let moved_to = moved(link.underlay_addr(roamer));
            link.move_underlay(roamer, moved_to);
            SocketAddr::new(moved_to, PORTS[roamer.index()])
        }
        Move::ListenPort => {
            tunnel.daemon(roamer).set(&["listen-port", &MOVED_PORT.to_string()]);
            SocketAddr::new(link.underlay_addr(roamer), MOVED_PORT)
        }
    };
    assert!(series.is_running(), "the series was over before the move");

    let output = series.wait().unwrap_or_else(|failed| failed.stdout);
    let stats = PingStats::parse(&output).unwrap_or_else(|| panic!("no ping summary: {output}"));
    assert!(
        stats.received + MAY_LOSE >= stats.transmitted,
        "traffic did not resume after the move: {stats:?}"
    );
    let endpoint = observer.dump().peer(roamer_key).and_then(|peer| peer.endpoint.clone());
    assert_eq!(endpoint, Some(new_endpoint.to_string()), "the endpoint did not follow");
    // The side that stayed reaches the new endpoint on its own initiative too.
    let back = INNER_V4[roamer.index()];
    let stats = link.ns(roamer.other()).ping(back, 5);
    assert!(
        stats.all_answered(),
        "the side that stayed cannot reach the one that moved: {stats:?}"
    );
}

/// The underlay's rate in the transfer test: 20 MB take about 4 s at 40 Mbit/s, however fast
/// the daemons are, so the move surely lands in the middle.
const SHAPED_RATE: &str = "40mbit";
const TRANSFER: u64 = 20 << 20;
/// How much of the transfer must have arrived before the move.
const BEFORE_THE_MOVE: u64 = 2 << 20;

/// `a` initiates and `b` responds; `roamer`'s side moves to a new address while it sends the
/// other a hash-checked TCP transfer, so whole GSO batches meet the vanished source address.
fn moves_during_a_transfer(a: &Impl, b: &Impl, roamer: Side) {
    if !scenarios::available(a, b) {
        return;
    }
    let link = Link::new(Underlay::V4);
    for side in [Side::A, Side::B] {
        let mut argv = vec!["tc", "qdisc", "add", "dev", Link::device(side), "root", "tbf"];
        argv.extend(["rate", SHAPED_RATE, "burst", "64kb", "latency", "100ms"]);
        link.ns(side).run(&argv);
    }
    let tunnel = Tunnel::new(&link, a, b, Psk::None);
    tunnel.assert_connects(&link, INNER_V4[1]);
    let observer = tunnel.daemon(roamer.other());
    let roamer_key = tunnel.key(roamer);
    let received = || observer.dump().peer(roamer_key).expect("the peer is listed").rx_bytes;

    let before = received();
    let listen = SocketAddr::new(INNER_V4[roamer.other().index()].parse().unwrap(), 5201);
    let (sender, receiver) = (link.ns(roamer), link.ns(roamer.other()));
    let moved_to = moved(link.underlay_addr(roamer));
    std::thread::scope(|scope| {
        let transfer = scope.spawn(|| transfer(receiver, listen, sender, TRANSFER));
        let under_way = wait_until(Duration::from_secs(10), || {
            received() > before + BEFORE_THE_MOVE || transfer.is_finished()
        });
        assert!(under_way && !transfer.is_finished(), "the transfer was not under way");
        link.move_underlay(roamer, moved_to);
        assert!(!transfer.is_finished(), "the transfer was over before the move");
        let report = transfer.join().unwrap().unwrap_or_else(|e| panic!("across the move: {e}"));
        eprintln!("across the move: {}", report.trim());
    });
    let expected = SocketAddr::new(moved_to, PORTS[roamer.index()]).to_string();
    let endpoint = observer.dump().peer(roamer_key).and_then(|peer| peer.endpoint.clone());
    assert_eq!(endpoint, Some(expected), "the endpoint did not follow");
}

/// Another address in the same subnet: .1 becomes .11, ::2 becomes ::12.
fn moved(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            IpAddr::from([a, b, c, d + 10])
        }
        IpAddr::V6(v6) => Ipv6Addr::from(u128::from(v6) + 0x10).into(),
    }
}

#[test]
#[ignore = "needs root and network namespaces"]
fn wgfabricd_follows_wgfabricd_that_moves() {
    moves_mid_flow(&wgfabricd(), &wgfabricd(), Side::A, Move::Address, Underlay::V4);
}

#[test]
#[ignore = "needs root and network namespaces"]
fn a_responding_wgfabricd_moves_and_sends_from_its_new_address() {
    moves_mid_flow(&wgfabricd(), &wgfabricd(), Side::B, Move::Address, Underlay::V4);
}

#[test]
#[ignore = "needs root and network namespaces"]
fn a_responding_wgfabricd_moves_over_ipv6() {
    moves_mid_flow(&wgfabricd(), &wgfabricd(), Side::B, Move::Address, Underlay::V6);
}

#[test]
#[ignore = "needs root and network namespaces"]
fn wireguard_go_follows_wgfabricd_that_moves() {
    moves_mid_flow(&wgfabricd(), &WireguardGo, Side::A, Move::Address, Underlay::V4);
    moves_mid_flow(&WireguardGo, &wgfabricd(), Side::B, Move::Address, Underlay::V4);
}

#[test]
#[ignore = "needs root and network namespaces"]
fn boringtun_follows_wgfabricd_that_moves() {
    moves_mid_flow(&wgfabricd(), &Boringtun, Side::A, Move::Address, Underlay::V4);
    moves_mid_flow(&Boringtun, &wgfabricd(), Side::B, Move::Address, Underlay::V4);
}

#[test]
#[ignore = "needs root and network namespaces"]
fn wgfabricd_follows_wgfabricd_that_changes_port() {
    moves_mid_flow(&wgfabricd(), &wgfabricd(), Side::B, Move::ListenPort, Underlay::V4);
}

#[test]
#[ignore = "needs root and network namespaces"]
fn wgfabricd_follows_wireguard_go_that_changes_port() {
    moves_mid_flow(&WireguardGo, &wgfabricd(), Side::A, Move::ListenPort, Underlay::V4);
    moves_mid_flow(&wgfabricd(), &WireguardGo, Side::B, Move::ListenPort, Underlay::V6);
}

#[test]
#[ignore = "needs root and network namespaces"]
fn wgfabricd_follows_boringtun_that_changes_port() {
    moves_mid_flow(&Boringtun, &wgfabricd(), Side::A, Move::ListenPort, Underlay::V4);
    moves_mid_flow(&wgfabricd(), &Boringtun, Side::B, Move::ListenPort, Underlay::V4);
}

#[test]
#[ignore = "needs root and network namespaces"]
fn wgfabricd_moves_during_a_transfer() {
    moves_during_a_transfer(&wgfabricd(), &wgfabricd(), Side::A);
}

#[test]
#[ignore = "needs root and network namespaces"]
fn a_responding_wgfabricd_moves_during_a_transfer_to_wireguard_go() {
    moves_during_a_transfer(&WireguardGo, &wgfabricd(), Side::B);
}
