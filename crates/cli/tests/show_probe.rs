//! `wgfabric show` and `wgfabric probe` against real wgfabricd daemons, on the two hosts of
//! [`util::hosts::Fabric`] brought up with `wgfabric up`: the spoke probes the relay through
//! the tunnel, then shows the relay as a peer with a handshake. Neither `wg` nor `ping` is
//! used.

mod util;

use std::time::Duration;

use serde_json::Value;
use util::hosts::{Fabric, PORT, RELAY_UNDERLAY};
use util::{assert_code, stderr, stdout, Scratch};
use wgfabric_proto::keys::PrivateKey;
use wgfabric_testkit::wait_until;

/// The relay's overlay addresses, as the fixture's network assigns them.
const RELAY_V4: &str = "10.99.0.1";
const RELAY_V6: &str = "fd99::1";

/// The private key (base64) and public key of a fixture host.
fn keys(fabric: &Fabric, host: &str) -> (String, String) {
    let text = std::fs::read_to_string(fabric.scratch.path(&format!("{host}.key"))).unwrap();
    let private = PrivateKey::from_base64(text.trim()).unwrap();
    (private.to_base64_secret(), private.public_key().to_base64())
}

/// The JSON `output` printed, once it is checked against the shape `shape` of docs/cli.md.
fn json(output: &std::process::Output, shape: &str) -> Value {
    util::shape::assert_shape(shape, &stdout(output));
    serde_json::from_str(&stdout(output)).unwrap_or_else(|e| panic!("{e}: {}", stdout(output)))
}

#[test]
#[ignore = "needs root and network namespaces"]
fn probe_answers_through_the_tunnel_and_show_lists_the_peer_after_the_handshake() {
    let fabric = Fabric::new("");
    assert_code(&fabric.up_relay(&[]), 0);
    assert_code(&fabric.up_spoke(&[]), 0);
    let probe = |args: &[&str]| {
        let mut argv = vec!["probe"];
        argv.extend(args);
        fabric.wgfabric(&fabric.spoke_ns, &argv)
    };
    // The first request starts the handshake; poll until one is answered.
    assert!(
        wait_until(Duration::from_secs(10), || {
            probe(&[RELAY_V4, "-c", "1", "-W", "500ms"]).status.success()
        }),
        "the relay never answered through the tunnel"
    );

    let answered = probe(&[RELAY_V4, "-c", "3", "-i", "100ms", "--size", "1372"]);
    assert_code(&answered, 0);
    let text = stdout(&answered);
    assert!(text.starts_with("probe 10.99.0.1: 1380 bytes per request\n"), "{text}");
    for sequence in 1..=3 {
        let line = format!("1380 bytes from {RELAY_V4}: icmp_seq={sequence} time=");
        assert!(text.contains(&line), "{text}");
    }
    assert!(text.contains("\n3 sent, 3 received, 0% loss\nrtt min/avg/max = "), "{text}");

    let v6 = json(&probe(&[RELAY_V6, "-c", "2", "-i", "100ms", "--format", "json"]), "probe");
    assert_eq!((v6["sent"].as_u64(), v6["received"].as_u64()), (Some(2), Some(2)), "{v6}");
    assert_eq!(v6["replies"][1]["outcome"], "answered");
    assert!(v6["rtt_ms"]["max"].as_f64().unwrap() > 0.0, "{v6}");

    // An overlay address no peer has: nothing answers, and the exit status says so.
    let lost = probe(&["10.99.0.77", "-c", "2", "-i", "100ms", "-W", "300ms"]);
    assert_code(&lost, 1);
    assert!(stdout(&lost).contains("2 sent, 0 received"), "{}", stdout(&lost));
    assert!(stdout(&lost).contains("100% loss"), "{}", stdout(&lost));

    let (spoke_secret, spoke_public) = keys(&fabric, "spoke");
    let (_, relay_public) = keys(&fabric, "relay");
    let doc = json(
        &fabric.wgfabric(&fabric.spoke_ns, &["show", &fabric.spoke_if, "--format", "json"]),
        "show",
    );
    let interface = &doc["interfaces"][0];
    // The spoke has no port of its own: the daemon picked one.
    let port = interface["listening_port"].as_u64().unwrap();
    assert_eq!(interface["interface"].as_str(), Some(fabric.spoke_if.as_str()));
    assert_eq!(interface["public_key"].as_str(), Some(spoke_public.as_str()));
    let peer = &interface["peers"][0];
    assert_eq!(peer["public_key"].as_str(), Some(relay_public.as_str()));
    assert!(peer["latest_handshake"].as_u64().is_some_and(|time| time > 0), "{peer}");
    assert!(peer["rx_bytes"].as_u64().is_some_and(|bytes| bytes > 0), "{peer}");
    assert!(!doc.to_string().contains(&spoke_secret), "the private key is never shown");

    let shown = fabric.wgfabric(&fabric.spoke_ns, &["show", &fabric.spoke_if]);
    assert_code(&shown, 0);
    let text = stdout(&shown);
    let expected_head = format!(
        "interface: {}\n  public key: {spoke_public}\n  private key: (hidden)\n  listening port: {port}\n  \
         fwmark: 0xca6c\n\n\
         peer: {relay_public}\n  endpoint: {RELAY_UNDERLAY}:{PORT}\n  \
         allowed ips: 0.0.0.0/0, 10.99.0.1/32, ::/0, fd99::1/128\n  latest handshake: ",
        fabric.spoke_if
    );
    assert!(text.starts_with(&expected_head), "{text}\nexpected:\n{expected_head}");
    assert!(text.contains(" received, ") && text.contains(" sent\n"), "{text}");
    assert!(!text.contains(&spoke_secret), "the private key is never shown");

    // Without IFACE, every socket in the shared directory: both hosts' interfaces, whichever
    // namespace asks. Other daemons on the machine may be listed too.
    let all = fabric.wgfabric(&fabric.relay_ns, &["show"]);
    let text = stdout(&all);
    for interface in [&fabric.spoke_if, &fabric.relay_if] {
        assert!(text.contains(&format!("interface: {interface}\n")), "{text}");
    }
    assert!(all.status.success() || stderr(&all).contains("could not read"), "{}", stderr(&all));
}

#[test]
#[ignore = "needs root and network namespaces"]
fn probe_fails_cleanly_on_an_address_without_a_route() {
    let fabric = Fabric::new("");
    // The relay's namespace has no default route.
    let output = fabric.wgfabric(
        &fabric.relay_ns,
        &["probe", "203.0.113.9", "-c", "2", "-i", "100ms", "--format", "json"],
    );
    assert_code(&output, 1);
    let report = json(&output, "probe");
    assert_eq!(report["unreachable"], 2, "{report}");
    assert_eq!(report["received"], 0, "{report}");
    assert_eq!(report["loss_percent"], 100.0, "{report}");
    assert!(report["rtt_ms"].is_null(), "{report}");
    let text = stdout(&fabric.wgfabric(&fabric.relay_ns, &["probe", "203.0.113.9", "-c", "1"]));
    assert!(text.contains("203.0.113.9 is unreachable: icmp_seq=1 "), "{text}");
}

#[test]
fn bad_input_gets_a_named_error() {
    let scratch = Scratch::new();
    let missing = scratch.run(&["show", "wgf-nosuch0"]);
    assert_code(&missing, 2);
    assert!(stderr(&missing).contains("wgf-nosuch0.sock: "), "{}", stderr(&missing));
    let escape = scratch.run(&["show", "../etc"]);
    assert_code(&escape, 2);
    assert!(stderr(&escape).contains("not an interface name"), "{}", stderr(&escape));

    let size = scratch.run(&["probe", "127.0.0.1", "--size", "5000"]);
    assert_code(&size, 2);
    assert!(stderr(&size).contains("from 0 to 1400 bytes"), "{}", stderr(&size));
    let name = scratch.run(&["probe", "relay-fra"]);
    assert_code(&name, 2);
    assert!(stderr(&name).contains("relay-fra"), "{}", stderr(&name));
    let count = scratch.run(&["probe", "127.0.0.1", "-c", "0"]);
    assert_code(&count, 2);
}
