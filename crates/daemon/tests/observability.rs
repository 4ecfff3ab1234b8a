//! What operators see of a live tunnel: `--metrics` scraped over HTTP as Prometheus would,
//! and `--log-format json` lifecycle events, checked on the real binary in namespaces.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use wgfabric_proto::keys::{PresharedKey, PrivateKey};
use wgfabric_testkit::scenarios::{Link, Psk, Tunnel, Underlay};
use wgfabric_testkit::{
    metric_value, preshared_key, run, transfer, unique_interface_name, wait_until, Daemon, Impl,
    Netns, WithFlags,
};

/// Where the metrics are served, inside each daemon's namespace.
const METRICS_PORT: u16 = 9587;
/// `b`'s inner address in testkit's tunnels.
const B_INNER: &str = "198.51.100.2";
/// `a`'s inner address, where transfers to `a` arrive.
const A_INNER: &str = "198.51.100.1";

/// wgfabricd with extra `flags`.
fn wrapper(flags: &str) -> WithFlags {
    WithFlags::new(Path::new(env!("CARGO_BIN_EXE_wgfabricd")), flags)
}

/// `GET /metrics` from inside `ns`.
fn scrape(ns: &Netns) -> String {
    wgfabric_testkit::scrape(ns, METRICS_PORT)
}

#[test]
#[ignore = "needs root and network namespaces"]
fn metrics_follow_a_live_tunnel() {
    let with_metrics = wrapper(&format!("--metrics 127.0.0.1:{METRICS_PORT}"));
    let plain = Impl::Wgfabricd(PathBuf::from(env!("CARGO_BIN_EXE_wgfabricd")));
    let link = Link::new(Underlay::V4);
    let tunnel = Tunnel::new(&link, &with_metrics.implementation(), &plain, Psk::None);
    let interface = format!("interface=\"{}\"", tunnel.a.interface());
    let peer = format!("public_key=\"{}\"", tunnel.b_key);

    let before = scrape(&link.a);
    assert_eq!(metric_value(&before, "wgfabric_uapi_up", &[&interface]), Some(1), "{before}");
    assert_eq!(metric_value(&before, "wgfabric_interface_peers", &[&interface]), Some(1));
    assert_eq!(metric_value(&before, "wireguard_latest_handshake_seconds", &[&peer]), Some(0));
    assert_eq!(metric_value(&before, "wgfabric_peer_connected", &[&peer]), Some(0));
    let endpoint = "endpoint=\"192.0.2.2:51821\"";
    assert_eq!(metric_value(&before, "wgfabric_peer_endpoint_info", &[&peer, endpoint]), Some(1));

    tunnel.assert_connects(&link, B_INNER);
    let connected = scrape(&link.a);
    wgfabric_testkit::assert_promtool_accepts(&connected);
    let sent = |text: &str| metric_value(text, "wireguard_sent_bytes_total", &[&peer]).unwrap();
    let received =
        |text: &str| metric_value(text, "wireguard_received_bytes_total", &[&peer]).unwrap();
    assert!(sent(&connected) > sent(&before), "{connected}");
    assert!(received(&connected) > 0, "{connected}");
    assert!(metric_value(&connected, "wireguard_latest_handshake_seconds", &[&peer]).unwrap() > 0);
    assert_eq!(
        metric_value(&connected, "wgfabric_peer_connected", &[&peer]),
        Some(1),
        "{connected}"
    );
    assert!(
        metric_value(&connected, "wgfabric_peer_handshake_attempts_total", &[&peer]).unwrap() >= 1
    );
    assert!(
        metric_value(&connected, "wgfabric_peer_handshakes_completed_total", &[&peer]).unwrap()
            >= 1
    );
    let rejected = [peer.as_str(), "reason=\"rejected\""];
    assert_eq!(
        metric_value(&connected, "wgfabric_peer_handshake_failures_total", &rejected),
        Some(0)
    );
    let replays = [interface.as_str(), "reason=\"replay\""];
    assert_eq!(metric_value(&connected, "wgfabric_packets_dropped_total", &replays), Some(0));

    // A megabyte from b to a shows up in a's received bytes, with the tunnel's overhead.
    let bytes = 1 << 20;
    let listen = format!("{A_INNER}:5201").parse().unwrap();
    transfer(&link.a, listen, &link.b, bytes).unwrap_or_else(|e| panic!("{e}"));
    let after = scrape(&link.a);
    assert!(received(&after) >= received(&connected) + bytes, "{after}");
    assert!(sent(&after) > sent(&connected), "acknowledgements went back: {after}");
}

/// Keys as they could leak: base64 and hex.
fn spellings(private: &[PrivateKey], preshared: &[PresharedKey]) -> Vec<String> {
    let private = private.iter().flat_map(|k| [k.to_base64_secret(), k.to_hex_secret()]);
    let preshared = preshared.iter().flat_map(|k| [k.to_base64_secret(), k.to_hex_secret()]);
    private.chain(preshared).collect()
}

/// The secrets `wg showconf` reveals of a daemon.
fn secrets_of(daemon: &Daemon<'_>) -> (Vec<PrivateKey>, Vec<PresharedKey>) {
    let conf = daemon.wg(&["showconf", daemon.interface()]).unwrap();
    let field = |name: &str| {
        conf.lines()
            .filter_map(move |line| {
                line.strip_prefix(name)?.trim().strip_prefix('=').map(str::trim)
            })
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let private = field("PrivateKey").iter().map(|k| PrivateKey::from_base64(k).unwrap()).collect();
    let preshared =
        field("PresharedKey").iter().map(|k| PresharedKey::from_base64(k).unwrap()).collect();
    (private, preshared)
}

/// The JSON objects of a log, checking every line is one.
fn events(log: &str) -> Vec<serde_json::Value> {
    log.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

/// Whether some event has `message` and, for each `(field, value)`, that field.
fn logged(events: &[serde_json::Value], message: &str, fields: &[(&str, &str)]) -> bool {
    events.iter().any(|event| {
        let f = &event["fields"];
        f["message"] == message && fields.iter().all(|(name, value)| f[*name] == *value)
    })
}

/// Writes a preshared key to a private temporary file for `wg set`.
fn psk_file(key: &PresharedKey, name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("{name}-{}.psk", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    file.write_all(format!("{}\n", key.to_base64_secret()).as_bytes()).unwrap();
    path
}

fn stop_and_read_log(daemon: &mut Daemon<'_>) -> String {
    run(&["kill", "-TERM", &daemon.pid().unwrap().to_string()]);
    assert!(wait_until(Duration::from_secs(5), || daemon.has_exited()), "still running");
    daemon.log_text()
}

#[test]
#[ignore = "needs root and network namespaces"]
fn json_logs_tell_the_lifecycle_and_never_a_key() {
    let json = wrapper("--log-format json");
    let link = Link::new(Underlay::V4);
    let mut tunnel = Tunnel::new(&link, &json.implementation(), &json.implementation(), Psk::Same);
    tunnel.assert_connects(&link, B_INNER);
    let (a_private, mut preshared) = secrets_of(&tunnel.a);
    let (b_private, _) = secrets_of(&tunnel.b);

    // a changes the preshared key and forgets its session with b: the next handshake fails.
    let changed = preshared_key();
    let file = psk_file(&changed, tunnel.a.interface());
    let b_key = tunnel.b_key.to_base64();
    let path = file.to_string_lossy().into_owned();
    tunnel.a.set(&["peer", &b_key, "remove"]);
    tunnel.a.set(&[
        "peer",
        &b_key,
        "preshared-key",
        &path,
        "endpoint",
        "192.0.2.2:51821",
        "allowed-ips",
        &format!("{B_INNER}/32"),
    ]);
    std::fs::remove_file(&file).unwrap();
    preshared.push(changed);
    let rejected = || {
        let _ = link.a.ping(B_INNER, 1);
        tunnel.a.log_text().contains("did not authenticate")
    };
    assert!(wait_until(Duration::from_secs(15), rejected), "{}", tunnel.a.log_text());

    let a_log = stop_and_read_log(&mut tunnel.a);
    let b_log = stop_and_read_log(&mut tunnel.b);
    let (a, b) = (events(&a_log), events(&b_log));
    let a_key = tunnel.a_key.to_base64();
    let a_interface = tunnel.a.interface().to_owned();
    for (message, fields) in [
        ("up", vec![("interface", a_interface.as_str())]),
        ("private key changed", vec![("public_key", a_key.as_str())]),
        ("peer added", vec![("peer", b_key.as_str())]),
        ("preshared key changed", vec![("peer", b_key.as_str())]),
        ("handshake completed", vec![("peer", b_key.as_str())]),
        ("peer removed", vec![("peer", b_key.as_str())]),
        (
            "handshake failed: the response did not authenticate (different preshared keys?)",
            vec![("peer", b_key.as_str())],
        ),
        ("down", vec![("interface", a_interface.as_str())]),
    ] {
        assert!(logged(&a, message, &fields), "a did not log {message:?} {fields:?}:\n{a_log}");
    }
    let learned = [("peer", a_key.as_str()), ("endpoint", "192.0.2.1:51820")];
    assert!(logged(&b, "endpoint changed", &learned), "b did not log the endpoint:\n{b_log}");
    assert!(logged(&b, "handshake completed", &[("peer", a_key.as_str())]), "{b_log}");

    let secrets = spellings(&[a_private, b_private].concat(), &preshared);
    assert_eq!(secrets.len(), 2 * (2 + 2), "both private keys and both preshared keys");
    for secret in &secrets {
        assert!(!a_log.contains(secret) && !b_log.contains(secret), "a key was logged");
    }
}

#[test]
#[ignore = "needs root and network namespaces"]
fn a_metrics_port_in_use_fails_the_start_and_leaves_nothing() {
    let ns = Netns::new("wgfd-mport");
    let with_metrics = wrapper(&format!("--metrics 127.0.0.1:{METRICS_PORT}"));
    let _first = Daemon::start(&ns, with_metrics.implementation(), &unique_interface_name("wgfd"));
    let second = unique_interface_name("wgfd");
    let metrics = format!("127.0.0.1:{METRICS_PORT}");
    let output = ns
        .command(env!("CARGO_BIN_EXE_wgfabricd"))
        .args(["--foreground", "--metrics", &metrics, &second])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("binding metrics on {metrics}")), "{stderr}");
    assert!(!ns.has_link(&second), "the interface was created");
    let socket = PathBuf::from(wgfabric_testkit::SOCKET_DIR).join(format!("{second}.sock"));
    assert!(!socket.exists(), "the socket was left behind");
}
