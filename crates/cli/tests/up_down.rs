//! `wgfabric up` and `wgfabric down` in network namespaces, on the two hosts of
//! [`util::hosts::Fabric`]. Up then down leaves each namespace exactly as it was; while the
//! full tunnel is up, no packet crosses the underlay but the tunnel's own; a failed up
//! leaves nothing behind.

mod util;

use std::net::{IpAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use util::hosts::{binaries, Fabric, OUTSIDE, PORT, RELAY_UNDERLAY};
use util::{assert_code, stderr, stdout, Scratch};
use wgfabric_host::namespace::enter;
use wgfabric_host::probe::Prober;
use wgfabric_testkit::{require_tool, wait_until, Netns};

/// What `up` and `down` may change in `ns`: addresses, routes of every table, rules of both
/// families, and the kernel parameters they set.
fn snapshot(ns: &Netns) -> String {
    let mut text = String::new();
    for argv in [
        &["ip", "address"][..],
        &["ip", "-4", "route", "show", "table", "all"],
        &["ip", "-6", "route", "show", "table", "all"],
        &["ip", "-4", "rule"],
        &["ip", "-6", "rule"],
        &[
            "sysctl",
            "net.ipv4.conf.all.src_valid_mark",
            "net.ipv4.conf.all.forwarding",
            "net.ipv6.conf.all.forwarding",
            "net.ipv4.conf.under-r.forwarding",
        ],
    ] {
        let argv: Vec<&str> = argv.to_vec();
        let out = match ns.exec(&argv) {
            Ok(out) => out,
            // under-r is only in the relay's namespace.
            Err(error) => error.stdout,
        };
        text.push_str(&format!("$ {}\n{out}", argv.join(" ")));
    }
    text
}

/// The JSON `output` printed, once it is checked against the shape `shape` of docs/cli.md.
fn json(output: &Output, shape: &str) -> Value {
    assert_code(output, 0);
    util::shape::assert_shape(shape, &stdout(output));
    serde_json::from_str(&stdout(output)).unwrap_or_else(|e| panic!("{e}: {}", stdout(output)))
}

#[test]
#[ignore = "needs root and network namespaces"]
fn up_then_down_leaves_both_namespaces_as_they_were_and_prints_what_it_did() {
    let fabric = Fabric::new("");
    let (relay_before, spoke_before) = (snapshot(&fabric.relay_ns), snapshot(&fabric.spoke_ns));

    let relay = fabric.up_relay(&[]);
    assert_code(&relay, 0);
    let text = stdout(&relay);
    assert!(text.starts_with(&format!("{} up for relay\n", fabric.relay_if)), "{text}");
    assert!(text.contains("  address 10.99.0.1/24\n"), "{text}");
    let forwarding = format!("sysctl net.ipv4.conf.{}.forwarding changed (was 0)", fabric.relay_if);
    assert!(text.contains(&forwarding), "a relay forwards on its interface: {text}");

    let up = json(&fabric.up_spoke(&["--format", "json"]), "up");
    assert_eq!(up["format"], 1);
    assert_eq!(up["host"], "spoke");
    assert_eq!(up["interface"].as_str(), Some(fabric.spoke_if.as_str()));
    assert_eq!(up["daemon"]["action"], "started");
    assert_eq!(up["peers"], 1);
    assert_eq!(up["fwmark"], serde_json::json!({"mark": 51820, "before": 0}));
    assert_eq!(up["addresses"], serde_json::json!(["10.99.0.2/24", "fd99::2/64"]));
    let routes: Vec<(&str, u64)> = up["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|route| (route["destination"].as_str().unwrap(), route["table"].as_u64().unwrap()))
        .collect();
    assert_eq!(routes, [("0.0.0.0/0", 51820), ("::/0", 51820)]);
    assert_eq!(up["rules"].as_array().unwrap().len(), 4, "{}", up["rules"]);
    assert_eq!(
        up["sysctls"],
        serde_json::json!([{"key": "net/ipv4/conf/all/src_valid_mark", "before": "0"}])
    );
    let rules = fabric.spoke_ns.run(&["ip", "-6", "rule"]);
    assert!(rules.contains("not from all fwmark 0xca6c lookup 51820"), "{rules}");
    assert!(rules.contains("from all lookup main suppress_prefixlength 0"), "{rules}");
    assert_ne!(snapshot(&fabric.spoke_ns), spoke_before);

    let twice = fabric.up_spoke(&[]);
    assert_code(&twice, 2);
    assert!(stderr(&twice).contains("is up already"), "{}", stderr(&twice));

    let down = json(&fabric.down(&fabric.spoke_ns, &["--format", "json"]), "down");
    assert_eq!(down["daemon_stopped"], true);
    assert_eq!(down["undone"], up);
    assert_code(&fabric.down(&fabric.relay_ns, &[]), 0);
    assert_eq!(snapshot(&fabric.spoke_ns), spoke_before);
    assert_eq!(snapshot(&fabric.relay_ns), relay_before);
    for interface in [&fabric.spoke_if, &fabric.relay_if] {
        let socket = PathBuf::from(wgfabric_testkit::SOCKET_DIR).join(format!("{interface}.sock"));
        assert!(!socket.exists(), "the daemon of {interface} is stopped");
    }
    let again = fabric.down(&fabric.spoke_ns, &[]);
    assert_code(&again, 2);
    assert!(stderr(&again).contains("brought no interface up"), "{}", stderr(&again));
}

/// Packets that entered the relay's underlay interface: WireGuard to its port, and anything
/// else but ARP.
fn underlay_counts(relay_ns: &Netns) -> (u64, u64) {
    let listing = relay_ns.run(&["nft", "-j", "list", "counters", "table", "netdev", "leaks"]);
    let listing: Value = serde_json::from_str(&listing).unwrap();
    let mut counts = (0, 0);
    for entry in listing["nftables"].as_array().unwrap() {
        let Some(counter) = entry.get("counter") else { continue };
        let packets = counter["packets"].as_u64().unwrap();
        match counter["name"].as_str() {
            Some("wireguard") => counts.0 = packets,
            Some("other") => counts.1 = packets,
            _ => {}
        }
    }
    counts
}

/// Sends one UDP datagram from `ns` to `target` (an address no host has).
fn send_udp(ns: &Netns, target: &str) {
    let target = target.to_owned();
    enter(Some(ns.name()), move || {
        let any = if target.starts_with('[') { "[::]:0" } else { "0.0.0.0:0" };
        UdpSocket::bind(any)?.send_to(b"leak?", &target).map(drop)
    })
    .unwrap();
}

#[test]
#[ignore = "needs root and network namespaces"]
fn nothing_leaves_outside_a_full_tunnel() {
    if require_tool("nft").is_err() {
        return;
    }
    let fabric = Fabric::new("");
    let rules = format!(
        "table netdev leaks {{\n  counter wireguard {{}}\n  counter other {{}}\n  \
         chain ingress {{\n    type filter hook ingress device \"under-r\" priority 0;\n    \
         meta protocol arp accept\n    \
         ip daddr {RELAY_UNDERLAY} udp dport {PORT} counter name \"wireguard\" accept\n    \
         counter name \"other\"\n  }}\n}}\n"
    );
    std::fs::write(fabric.scratch.path("leaks.nft"), rules).unwrap();
    let file = fabric.scratch.path("leaks.nft").display().to_string();
    fabric.relay_ns.run(&["nft", "-f", &file]);

    // The capture sees what leaves by the underlay while the tunnel is down.
    send_udp(&fabric.spoke_ns, "203.0.113.9:9");
    assert!(
        wait_until(Duration::from_secs(5), || underlay_counts(&fabric.relay_ns).1 > 0),
        "the capture counts packets outside the tunnel"
    );

    assert_code(&fabric.up_relay(&[]), 0);
    assert_code(&fabric.up_spoke(&[]), 0);
    let before = underlay_counts(&fabric.relay_ns);
    // The outside address answers, through the tunnel: the underlay would carry it too, but
    // the capture would count that.
    let outside: IpAddr = OUTSIDE.parse().unwrap();
    let mut prober = Prober::open(Some(fabric.spoke_ns.name()), None, &[outside]).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || {
            prober.probe(Duration::from_millis(300)).is_ok_and(|answers| answers == [true])
        }),
        "{OUTSIDE} answers through the tunnel"
    );
    send_udp(&fabric.spoke_ns, "203.0.113.9:9");
    send_udp(&fabric.spoke_ns, "[2001:db8:ffff::9]:9");
    let (wireguard, other) = underlay_counts(&fabric.relay_ns);
    assert!(wireguard > before.0, "the tunnel carried the traffic");
    assert_eq!(other, before.1, "no packet left outside the tunnel");
    drop(prober);
    assert_code(&fabric.down(&fabric.spoke_ns, &[]), 0);
    assert_code(&fabric.down(&fabric.relay_ns, &[]), 0);
}

#[test]
#[ignore = "needs root and network namespaces"]
fn a_failed_up_leaves_nothing_behind_and_names_the_cause() {
    // The spoke routes a subnet: the relay routes it into its tunnel, where the relay's
    // namespace already has a route to it.
    let fabric = Fabric::new("routes = [\"10.20.0.0/16\"]");
    fabric.relay_ns.run(&["ip", "route", "add", "10.20.0.0/16", "dev", "lo"]);
    let (relay_before, spoke_before) = (snapshot(&fabric.relay_ns), snapshot(&fabric.spoke_ns));

    let conflict = fabric.up_relay(&[]);
    assert_code(&conflict, 2);
    let message = stderr(&conflict);
    let route = format!("add route 10.20.0.0/16 dev {}: ", fabric.relay_if);
    assert!(message.contains(&route), "{message}");
    assert!(message.contains("conflicts with one already there"), "{message}");

    let unfetchable = fabric.up_spoke(&["--key-file", "/nonexistent/spoke.key"]);
    assert_code(&unfetchable, 2);
    let message = stderr(&unfetchable);
    assert!(message.contains("the private key of `spoke`: "), "{message}");
    assert!(message.contains("/nonexistent/spoke.key"), "{message}");

    let (exe, _) = binaries();
    let mut command = fabric.spoke_ns.command(&exe.to_string_lossy());
    command.args(["up", "spoke", "--daemon", "/nonexistent/wgfabricd", "--state-dir"]);
    command.arg(fabric.scratch.path("run-missing")).current_dir(&fabric.scratch.0);
    let missing = command.output().unwrap();
    assert_code(&missing, 2);
    assert!(stderr(&missing).contains("/nonexistent/wgfabricd"), "{}", stderr(&missing));

    assert_eq!(snapshot(&fabric.relay_ns), relay_before);
    assert_eq!(snapshot(&fabric.spoke_ns), spoke_before);
    for interface in [&fabric.spoke_if, &fabric.relay_if] {
        let socket = PathBuf::from(wgfabric_testkit::SOCKET_DIR).join(format!("{interface}.sock"));
        assert!(!socket.exists(), "no daemon is left for {interface}");
    }
    let down = fabric.down(&fabric.relay_ns, &[]);
    assert!(stderr(&down).contains("brought no interface up"), "nothing is recorded");
}

#[test]
fn bad_input_gets_a_named_error_before_anything_is_touched() {
    let scratch = Scratch::new();
    let missing = scratch.run(&["up", "relay", "--rendered", "nowhere"]);
    assert_code(&missing, 2);
    assert!(stderr(&missing).contains("nowhere/fabric.json: "), "{}", stderr(&missing));
    assert!(stderr(&missing).contains("wgfabric render --out DIR"), "{}", stderr(&missing));

    let state = scratch.path("run").display().to_string();
    let down = scratch.run(&["down", "wg7", "--state-dir", &state]);
    assert_code(&down, 2);
    assert!(stderr(&down).contains("brought no interface `wg7` up"), "{}", stderr(&down));
    let none = scratch.run(&["down", "--state-dir", &state]);
    assert_code(&none, 2);
    assert!(stderr(&none).contains("brought no interface up"), "{}", stderr(&none));
}
