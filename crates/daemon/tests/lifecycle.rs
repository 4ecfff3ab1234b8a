//! The process contract `wg-quick` relies on, checked on the real binary inside a namespace:
//! detaching only once ready, one daemon per socket, clean exits (also when the interface is
//! deleted under traffic), and the userspace API as the stock `wg` tool speaks it. Bad
//! userspace API input is `robustness.rs`'s.

mod common;

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

use common::wgfabricd;
use wgfabric_testkit::scenarios::{Link, Psk, Tunnel, Underlay, INNER_V4};
use wgfabric_testkit::{
    keypair, run, unique_interface_name, wait_until, Daemon, Netns, WgConfig, WgPeer,
};

#[test]
#[ignore = "needs root and network namespaces"]
fn detaches_only_once_the_socket_answers() {
    let ns = Netns::new("wgfd-detach");
    let interface = unique_interface_name("wgfd");
    let socket = PathBuf::from(wgfabric_testkit::SOCKET_DIR).join(format!("{interface}.sock"));
    let status = ns.command(env!("CARGO_BIN_EXE_wgfabricd")).arg(&interface).status().unwrap();
    assert!(status.success(), "{status}");
    // No waiting: the parent returned, so the daemon must already answer.
    assert!(UnixStream::connect(&socket).is_ok(), "the socket does not answer yet");
    let pids = ns.pids();
    let [pid] = pids[..] else { panic!("not one daemon in the namespace: {pids:?}") };
    run(&["kill", "-TERM", &pid.to_string()]);
    assert!(wait_until(Duration::from_secs(5), || !socket.exists()), "socket left behind");
}

#[test]
#[ignore = "needs root and network namespaces"]
fn a_live_socket_is_refused_and_a_stale_one_replaced() {
    let ns = Netns::new("wgfd-socket");
    let interface = unique_interface_name("wgfd");
    let socket = PathBuf::from(wgfabric_testkit::SOCKET_DIR).join(format!("{interface}.sock"));
    std::fs::create_dir_all(wgfabric_testkit::SOCKET_DIR).unwrap();
    // What a killed daemon leaves: a socket file nobody listens on.
    drop(UnixListener::bind(&socket).unwrap());
    let first = Daemon::start(&ns, wgfabricd(), &interface);
    let undisturbed = first.uapi("get=1\n\n");
    assert!(undisturbed.ends_with("errno=0\n\n"), "{undisturbed:?}");
    let second = ns
        .command(env!("CARGO_BIN_EXE_wgfabricd"))
        .args(["--foreground", &interface])
        .output()
        .unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("another daemon"), "{stderr}");
    assert_eq!(first.uapi("get=1\n\n"), undisturbed, "the first daemon was disturbed");
}

#[test]
#[ignore = "needs root and network namespaces"]
fn sigterm_exits_cleanly_and_removes_the_socket() {
    let ns = Netns::new("wgfd-term");
    let mut daemon = Daemon::start(&ns, wgfabricd(), &unique_interface_name("wgfd"));
    run(&["kill", "-TERM", &daemon.pid().unwrap().to_string()]);
    assert!(wait_until(Duration::from_secs(5), || daemon.has_exited()), "still running");
    assert!(!daemon.socket_path().exists(), "socket left behind");
    assert!(daemon.log_text().contains("received SIGTERM"), "{}", daemon.log_text());
}

#[test]
#[ignore = "needs root and network namespaces"]
fn removing_the_socket_file_stops_the_daemon() {
    let ns = Netns::new("wgfd-unlink");
    let mut daemon = Daemon::start(&ns, wgfabricd(), &unique_interface_name("wgfd"));
    std::fs::remove_file(daemon.socket_path()).unwrap();
    assert!(wait_until(Duration::from_secs(5), || daemon.has_exited()), "still running");
    assert!(daemon.log_text().contains("socket file was removed"), "{}", daemon.log_text());
}

#[test]
#[ignore = "needs root and network namespaces"]
fn deleting_the_interface_while_traffic_flows_stops_the_daemon() {
    let link = Link::new(Underlay::V4);
    let mut tunnel = Tunnel::new(&link, &wgfabricd(), &wgfabricd(), Psk::None);
    tunnel.assert_connects(&link, INNER_V4[1]);
    // Pings both ways, 100 a second, keep every thread of `a`'s data path busy.
    let flood =
        |ns: &Netns, to: &str| ns.spawn(&["ping", "-n", "-q", "-i", "0.01", "-w", "30", to]);
    let _outbound = flood(&link.a, INNER_V4[1]);
    let _inbound = flood(&link.b, INNER_V4[0]);
    let counters = || {
        let peer = tunnel.a.dump().peer(&tunnel.b_key).cloned().expect("listed");
        (peer.rx_bytes, peer.tx_bytes)
    };
    let (rx, tx) = counters();
    let flowing = wait_until(Duration::from_secs(5), || {
        let (rx_now, tx_now) = counters();
        rx_now > rx + 10_000 && tx_now > tx + 10_000
    });
    assert!(flowing, "the pings do not flow");

    link.a.run(&["ip", "link", "del", tunnel.a.interface()]);
    let daemon = &mut tunnel.a;
    assert!(wait_until(Duration::from_secs(5), || daemon.has_exited()), "still running");
    let status = daemon.exit_status().expect("it exited");
    assert!(status.success(), "{status}");
    assert!(!daemon.socket_path().exists(), "socket left behind");
    assert!(daemon.log_text().contains("the interface was deleted"), "{}", daemon.log_text());
}

#[test]
#[ignore = "needs root and network namespaces"]
fn the_interface_name_is_reported_and_withdrawn() {
    let ns = Netns::new("wgfd-name");
    let interface = unique_interface_name("wgfd");
    let name_file = std::env::temp_dir().join(format!("{interface}.name"));
    let status = ns
        .command(env!("CARGO_BIN_EXE_wgfabricd"))
        .env("WG_TUN_NAME_FILE", &name_file)
        .arg(&interface)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(std::fs::read_to_string(&name_file).unwrap(), format!("{interface}\n"));
    let socket = PathBuf::from(wgfabric_testkit::SOCKET_DIR).join(format!("{interface}.sock"));
    std::fs::remove_file(socket).unwrap();
    assert!(wait_until(Duration::from_secs(5), || !name_file.exists()), "name file left behind");
}

#[test]
#[ignore = "needs root and network namespaces"]
fn the_stock_wg_tool_configures_it() {
    let ns = Netns::new("wgfd-wg");
    let daemon = Daemon::start(&ns, wgfabricd(), &unique_interface_name("wgfd"));
    let (private, public) = keypair();
    let (_, peer_key) = keypair();
    let mut peer = WgPeer::new(peer_key);
    peer.endpoint = Some("[2001:db8::2]:51820".parse().unwrap());
    peer.allowed_ips = vec!["10.0.0.2/32".into(), "2001:db8:100::2/128".into()];
    peer.persistent_keepalive = Some(25);
    daemon.setconf(&WgConfig {
        private_key: private,
        listen_port: Some(51820),
        fwmark: Some(7),
        peers: vec![peer],
    });
    let before = daemon.dump();
    assert_eq!((before.public_key, before.listen_port, before.fwmark), (Some(public), 51820, 7));
    let shown = before.peer(&peer_key).unwrap();
    assert_eq!(shown.endpoint.as_deref(), Some("[2001:db8::2]:51820"));
    assert_eq!(shown.allowed_ips, ["10.0.0.2/32", "2001:db8:100::2/128"]);
    assert_eq!(shown.persistent_keepalive, Some(25));

    daemon.set(&["peer", &peer_key.to_base64(), "allowed-ips", "10.0.0.0/24"]);
    let after_set = daemon.dump();
    assert_eq!(after_set.peer(&peer_key).unwrap().allowed_ips, ["10.0.0.0/24"]);

    // What `wg showconf` prints, `wg syncconf` takes back without a change.
    let conf = daemon.wg(&["showconf", daemon.interface()]).unwrap();
    let path = std::env::temp_dir().join(format!("{}.conf", daemon.interface()));
    // It holds the private key: private from the start.
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path);
    file.as_mut().unwrap().write_all(conf.as_bytes()).unwrap();
    let synced = daemon.wg(&["syncconf", daemon.interface(), &path.to_string_lossy()]);
    std::fs::remove_file(&path).unwrap();
    synced.unwrap();
    assert_eq!(daemon.dump(), after_set);
}
