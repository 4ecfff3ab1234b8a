//! What comes from outside cannot hurt the daemon: a flood of garbage datagrams at its port
//! while a transfer runs, and malformed userspace API requests, which are refused with an
//! errno and change nothing at all.

mod common;

use std::net::SocketAddr;

use common::wgfabricd;
use wgfabric_testkit::scenarios::{self, Link, Psk, Side, Tunnel, Underlay, INNER_V4, PORTS};
use wgfabric_testkit::Impl::{self, WireguardGo};
use wgfabric_testkit::{
    keypair, preshared_key, spray_garbage, transfer, unique_interface_name, Daemon, Netns,
    WgConfig, WgPeer,
};

const TWENTY_MB: u64 = 20 << 20;
/// 2 s of garbage at netprobe's rate: several transfers' worth.
const GARBAGE: u64 = 20_000;

/// `peer` sends wgfabricd 20 MB transfers back to back through the tunnel for as long as
/// 20,000 datagrams of nonsense hit wgfabricd's listen port from the peer's own address.
fn garbage_during_transfers(peer: &Impl) {
    if !scenarios::available(&wgfabricd(), peer) {
        return;
    }
    let link = Link::new(Underlay::V4);
    let mut tunnel = Tunnel::new(&link, &wgfabricd(), peer, Psk::None);
    tunnel.assert_connects(&link, INNER_V4[1]);
    let endpoint_before = tunnel.a.dump().peer(&tunnel.b_key).and_then(|p| p.endpoint.clone());

    let port = SocketAddr::new(link.underlay_addr(Side::A), PORTS[0]);
    let mut garbage = spray_garbage(&link.b, port, GARBAGE);
    let listen = SocketAddr::new(INNER_V4[0].parse().unwrap(), 5201);
    let mut transfers = 0;
    while garbage.is_running() {
        let report = transfer(&link.a, listen, &link.b, TWENTY_MB)
            .unwrap_or_else(|e| panic!("transfer {transfers} failed under garbage: {e}"));
        eprintln!("under garbage: {}", report.trim());
        transfers += 1;
    }
    assert!(transfers > 0, "the garbage was over before the first transfer began");
    let sent = garbage.wait().unwrap_or_else(|e| panic!("{e}"));
    assert!(sent.starts_with(&format!("sent {GARBAGE} ")), "{sent}");

    assert!(!tunnel.a.has_exited(), "wgfabricd died");
    let view = tunnel.a.dump();
    let endpoint = view.peer(&tunnel.b_key).and_then(|p| p.endpoint.clone());
    assert_eq!(endpoint, endpoint_before, "garbage from another port moved the endpoint");
    let stats = link.a.ping(INNER_V4[1], 5);
    assert!(stats.all_answered(), "the tunnel suffered: {stats:?}");
}

#[test]
#[ignore = "needs root and network namespaces"]
fn garbage_at_the_port_while_wgfabricd_receives_from_itself() {
    garbage_during_transfers(&wgfabricd());
}

#[test]
#[ignore = "needs root and network namespaces"]
fn garbage_at_the_port_while_wgfabricd_receives_from_wireguard_go() {
    garbage_during_transfers(&WireguardGo);
}

/// The `errno=N` of a userspace API reply.
fn errno(reply: &str) -> i64 {
    let value = reply.lines().find_map(|line| line.strip_prefix("errno="));
    value.and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no errno in {reply:?}"))
}

#[test]
#[ignore = "needs root and network namespaces"]
fn malformed_set_requests_change_nothing() {
    let ns = Netns::new("wgfd-uapi");
    let daemon = Daemon::start(&ns, wgfabricd(), &unique_interface_name("wgfd"));
    let (private, _) = keypair();
    let (_, first_key) = keypair();
    let (_, second_key) = keypair();
    let mut first = WgPeer::new(first_key);
    first.preshared_key = Some(preshared_key());
    first.endpoint = Some("192.0.2.2:51820".parse().unwrap());
    first.allowed_ips = vec!["10.0.0.2/32".into(), "2001:db8:100::2/128".into()];
    let mut second = WgPeer::new(second_key);
    second.allowed_ips = vec!["10.0.1.0/24".into()];
    // No endpoint, so the keepalive sends nothing and the counters stay still.
    second.persistent_keepalive = Some(25);
    daemon.setconf(&WgConfig {
        private_key: private,
        listen_port: Some(51820),
        fwmark: Some(7),
        peers: vec![first, second],
    });
    let interface = daemon.interface().to_owned();
    // Everything the device shows, byte for byte: the raw reply and what `wg` makes of it.
    let state = || {
        let show = |args: &[&str]| daemon.wg(args).unwrap_or_else(|e| panic!("{e}"));
        [
            daemon.uapi("get=1\n\n"),
            show(&["showconf", &interface]),
            show(&["show", &interface, "dump"]),
        ]
    };
    // For failure messages: `wg show` hides the private key.
    let shown = || daemon.wg(&["show", &interface]).unwrap_or_else(|e| panic!("{e}"));
    let before = state();
    let before_shown = shown();

    let (first, second) = (first_key.to_hex(), second_key.to_hex());
    let (_, stranger) = keypair();
    let stranger = stranger.to_hex();
    let (new_private, _) = keypair();
    let new_private = new_private.to_hex_secret();
    let bad_requests = [
        ("a private key that is not hex", format!("private_key={}\n", "g".repeat(64))),
        ("a public key a digit short", format!("public_key={}\n", &first[..63])),
        (
            "a preshared key a digit long",
            format!("public_key={first}\npreshared_key={}\n", "1".repeat(65)),
        ),
        ("a port beyond 65535", "listen_port=65536\n".into()),
        ("a port that is not a number", "listen_port=http\n".into()),
        ("a negative fwmark", "fwmark=-1\n".into()),
        ("a hexadecimal fwmark", "fwmark=0x10\n".into()),
        (
            "a keepalive beyond 65535",
            format!("public_key={first}\npersistent_keepalive_interval=65536\n"),
        ),
        ("protocol version 2", format!("public_key={first}\nprotocol_version=2\n")),
        ("an unknown device key", "frobnicate=1\n".into()),
        ("an unknown peer key", format!("public_key={first}\nfrobnicate=1\n")),
        ("a peer key before any public_key", "endpoint=192.0.2.9:51820\n".into()),
        ("a device key among peer keys", format!("public_key={first}\nlisten_port=1\n")),
        ("an endpoint without a port", format!("public_key={first}\nendpoint=192.0.2.9\n")),
        (
            "a prefix longer than the address",
            format!("public_key={first}\nallowed_ip=10.9.0.0/33\n"),
        ),
        ("a flag other than true", "replace_peers=yes\n".into()),
        ("a line without =", "listen_port\n".into()),
        (
            "a bad line after good ones",
            format!(
                "private_key={new_private}\nlisten_port=40000\nfwmark=9\nreplace_peers=true\n\
                 public_key={stranger}\nendpoint=192.0.2.9:51820\nallowed_ip=10.9.0.0/16\n\
                 public_key={first}\nremove=true\n\
                 public_key={second}\nreplace_allowed_ips=true\nallowed_ip=bogus\n"
            ),
        ),
    ];
    for (what, body) in &bad_requests {
        let reply = daemon.uapi(&format!("set=1\n{body}\n"));
        assert!(errno(&reply) < 0, "{what}: not refused: {reply:?}");
        assert!(state() == before, "{what} changed the device:\n{before_shown}\n---\n{}", shown());
    }

    // Well-formed, but the port is taken: the fwmark before it must not stick either.
    let holder = Daemon::start(&ns, wgfabricd(), &unique_interface_name("wgfd"));
    holder.set(&["listen-port", "40001"]);
    let reply = daemon.uapi("set=1\nfwmark=9\nlisten_port=40001\n\n");
    assert_eq!(errno(&reply), -98, "not EADDRINUSE: {reply:?}");
    assert!(state() == before, "a refused port changed the device:\n{}", shown());
    let refused = daemon.wg(&["set", &interface, "fwmark", "9", "listen-port", "40001"]);
    assert!(refused.is_err(), "wg set succeeded on a taken port");
    assert!(state() == before, "a refused `wg set` changed the device:\n{}", shown());

    // The refusals left nothing wedged: a good request still applies.
    daemon.set(&["fwmark", "9"]);
    assert_eq!(daemon.dump().fwmark, 9);
}
