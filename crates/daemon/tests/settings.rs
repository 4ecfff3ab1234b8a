//! Interface settings that must do what `wg show` says: `listen_port` 0 binds a free port and
//! reports it, `fwmark` marks (and then stops marking) every datagram sent, and turning a
//! persistent keepalive on sends one keepalive at once rather than an interval later.

mod common;

use std::time::Duration;

use common::wgfabricd;
use wgfabric_testkit::scenarios::{self, Link, Psk, Tunnel, Underlay, INNER_V4, PORTS};
use wgfabric_testkit::Impl::{self, WireguardGo};
use wgfabric_testkit::{unique_interface_name, wait_until, Daemon, Netns};

/// The UDP ports a process listens on in `ns`, from `ss`.
fn udp_ports_of(ns: &Netns, pid: u32) -> Vec<u16> {
    let listing = ns.run(&["ss", "-Hulnp"]);
    let owner = format!("pid={pid},");
    let mut ports: Vec<u16> = listing
        .lines()
        .filter(|line| line.contains(&owner))
        .filter_map(|line| {
            let local = line.split_whitespace().nth(3)?;
            local.rsplit_once(':')?.1.parse().ok()
        })
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

#[test]
#[ignore = "needs root and network namespaces"]
fn listen_port_zero_binds_a_free_port_that_wg_show_reports() {
    let ns = Netns::new("wgfd-port");
    let daemon = Daemon::start(&ns, wgfabricd(), &unique_interface_name("wgfd"));
    let pid = daemon.pid().expect("it runs");
    daemon.set(&["listen-port", "51820"]);
    assert_eq!(daemon.dump().listen_port, 51820);
    assert_eq!(udp_ports_of(&ns, pid), [51820]);

    daemon.set(&["listen-port", "0"]);
    let port = daemon.dump().listen_port;
    assert!(port != 0 && port != 51820, "wg show reports port {port}");
    assert_eq!(udp_ports_of(&ns, pid), [port], "the reported port is not the bound one");
}

/// The firewall mark the fwmark test sets.
const MARK: u32 = 0x1234;

/// Counts the UDP datagrams `ns` sends to `port` with firewall mark `mark`.
struct MarkCounter<'ns> {
    ns: &'ns Netns,
}

impl<'ns> MarkCounter<'ns> {
    const TABLE: &'static str = "wgfabric_test";

    fn install(ns: &'ns Netns, port: u16, mark: u32) -> Self {
        let table = Self::TABLE;
        ns.run(&["nft", "add", "table", "inet", table]);
        ns.run(&["nft", "add", "counter", "inet", table, "marked"]);
        ns.run(&["nft", "add", "counter", "inet", table, "unmarked"]);
        let hook = "{ type filter hook output priority 0; }";
        ns.run(&["nft", "add", "chain", "inet", table, "out", hook]);
        for (which, mark) in [("marked", mark), ("unmarked", 0)] {
            let (port, mark) = (port.to_string(), mark.to_string());
            ns.run(&[
                "nft", "add", "rule", "inet", table, "out", "udp", "dport", &port, "meta", "mark",
                &mark, "counter", "name", which,
            ]);
        }
        Self { ns }
    }

    /// Datagrams (marked, unmarked) so far.
    fn counts(&self) -> (u64, u64) {
        let count = |which| {
            let listing = self.ns.run(&["nft", "list", "counter", "inet", Self::TABLE, which]);
            let packets = listing.split_whitespace().skip_while(|word| *word != "packets").nth(1);
            packets.and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{listing}"))
        };
        (count("marked"), count("unmarked"))
    }
}

#[test]
#[ignore = "needs root and network namespaces"]
fn fwmark_marks_what_is_sent_also_after_a_new_port_until_cleared() {
    let link = Link::new(Underlay::V4);
    let tunnel = Tunnel::new(&link, &wgfabricd(), &wgfabricd(), Psk::None);
    let counter = MarkCounter::install(&link.a, PORTS[1], MARK);

    tunnel.a.set(&["fwmark", &format!("{MARK:#x}")]);
    assert_eq!(tunnel.a.dump().fwmark, MARK);
    tunnel.assert_connects(&link, INNER_V4[1]);
    let (marked, unmarked) = counter.counts();
    assert!(marked > 0 && unmarked == 0, "with the mark set: {marked} marked, {unmarked} not");

    // A new listen port means new sockets: they carry the mark from their first datagram.
    tunnel.a.set(&["listen-port", "51830"]);
    assert!(link.a.ping(INNER_V4[1], 3).all_answered());
    let (rebound_marked, unmarked) = counter.counts();
    assert!(
        rebound_marked > marked && unmarked == 0,
        "after a new listen port: {} more marked, {unmarked} not",
        rebound_marked - marked
    );
    let marked = rebound_marked;

    tunnel.a.set(&["fwmark", "off"]);
    assert_eq!(tunnel.a.dump().fwmark, 0);
    assert!(link.a.ping(INNER_V4[1], 3).all_answered());
    let (still_marked, unmarked) = counter.counts();
    assert!(
        still_marked == marked && unmarked > 0,
        "with the mark cleared: {} more marked, {unmarked} not",
        still_marked - marked
    );
}

/// How long "at once" may take on a busy machine: far less than the interval.
const AT_ONCE: Duration = Duration::from_secs(5);
const INTERVAL: &str = "25";

/// With no traffic at all, turning the keepalive on makes wgfabricd (`a`) send one, so it
/// handshakes with `peer` first: the handshake and the bytes `peer` receives show it.
fn keepalive_on_an_idle_tunnel_goes_out_at_once(peer: &Impl) {
    if !scenarios::available(&wgfabricd(), peer) {
        return;
    }
    let link = Link::new(Underlay::V4);
    let tunnel = Tunnel::new(&link, &wgfabricd(), peer, Psk::None);
    let received_by_peer = || tunnel.b.dump().peer(&tunnel.a_key).expect("listed").rx_bytes;
    let handshake = || tunnel.a.dump().peer(&tunnel.b_key).expect("listed").latest_handshake;
    assert_eq!((received_by_peer(), handshake()), (0, 0), "traffic before the keepalive");

    tunnel.a.set(&["peer", &tunnel.b_key.to_base64(), "persistent-keepalive", INTERVAL]);
    let shown = tunnel.a.dump().peer(&tunnel.b_key).expect("listed").persistent_keepalive;
    assert_eq!(shown, Some(25));
    assert!(
        wait_until(AT_ONCE, || handshake() > 0 && received_by_peer() > 0),
        "no keepalive within {AT_ONCE:?} of turning it on"
    );
}

#[test]
#[ignore = "needs root and network namespaces"]
fn keepalive_turned_on_goes_out_at_once_to_wgfabricd() {
    keepalive_on_an_idle_tunnel_goes_out_at_once(&wgfabricd());
}

#[test]
#[ignore = "needs root and network namespaces"]
fn keepalive_turned_on_goes_out_at_once_to_wireguard_go() {
    keepalive_on_an_idle_tunnel_goes_out_at_once(&WireguardGo);
}

#[test]
#[ignore = "needs root and network namespaces"]
fn keepalive_turned_on_over_a_live_session_goes_out_at_once() {
    let link = Link::new(Underlay::V4);
    let tunnel = Tunnel::new(&link, &wgfabricd(), &wgfabricd(), Psk::None);
    tunnel.assert_connects(&link, INNER_V4[1]);
    // End with `b` asking and `a` answering: `a` has then sent after everything it received,
    // so no passive keepalive of its own is due to blur what follows.
    assert!(link.b.ping(INNER_V4[0], 1).all_answered());
    let received_by_b = || tunnel.b.dump().peer(&tunnel.a_key).expect("listed").rx_bytes;
    let before = received_by_b();

    tunnel.a.set(&["peer", &tunnel.b_key.to_base64(), "persistent-keepalive", INTERVAL]);
    assert!(
        wait_until(AT_ONCE, || received_by_b() > before),
        "no keepalive within {AT_ONCE:?} of turning it on"
    );
}
