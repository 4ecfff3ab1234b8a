//! Direct paths through real NATs, in network namespaces (root only): two relays on an
//! "internet", spokes behind nftables masquerade routers, and the built `wgfabricd` and
//! `wgfabric agent` on every host.
//!
//! ```text
//!   r1 192.0.2.1   r2 192.0.2.2          inet: bridge 192.0.2.254/24
//!        └──────────┴──── inet ───┬──────────────┬──────────────┐
//!                        nat-a .11 (port-preserving)   nat-b .12      nat-c .13 (random-fully)
//!                         LAN 10.1.0.0/24               10.2.0.0/24    10.3.0.0/24
//!                         a .2 (site office)            b .2           c .2
//!                         d .3 (site office)
//! ```
//!
//! Each NAT router drops unsolicited packets to itself, as home routers do, so a hole is
//! punched only by packets from inside. `--no-capture` prints the figures docs/paths.md
//! quotes.
#![allow(clippy::disallowed_methods, reason = "a system test measures convergence in real time")]
#![allow(clippy::disallowed_types, reason = "a system test generates real keys")]

mod lab;
mod util;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use lab::{wgfabricd, Agent};
use rand_core::OsRng;
use util::Scratch;
use wgfabric_model::key_file::generate_key_file;
use wgfabric_model::Fabric;
use wgfabric_store::state::{PathMode, PathReason, PathStatus, Status};
use wgfabric_testkit::{unique_interface_name, veth, wait_until, Background, Daemon, Impl, Netns};

/// Every host, relays first.
const HOSTS: [&str; 6] = ["r1", "r2", "a", "b", "c", "d"];
/// The agents' status interval.
const ROUND: &str = "2s";

/// How a NAT router maps its inside hosts' ports.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mapping {
    /// Keeps the source port when it is free, for every destination (endpoint-independent).
    PortPreserving,
    /// A random port for every flow (`masquerade fully-random`): symmetric.
    Random,
}

/// The namespaces and their underlay.
struct Underlay {
    /// The "internet": held so that its bridge outlives every host plugged into it.
    _inet: Netns,
    hosts: BTreeMap<&'static str, Netns>,
    nats: BTreeMap<char, Netns>,
}

impl Underlay {
    fn build() -> Self {
        let inet = Netns::new("wgfp");
        inet.run(&["ip", "link", "add", "br0", "type", "bridge"]);
        inet.link_up("br0", None).unwrap();
        inet.add_address("br0", "192.0.2.254/24").unwrap();
        let mut hosts = BTreeMap::new();
        let mut port = 0;
        let mut plug = |ns: &Netns, dev: &str, address: &str| {
            port += 1;
            let name = format!("q{port}");
            veth(ns, dev, &inet, &name).unwrap();
            inet.run(&["ip", "link", "set", &name, "master", "br0"]);
            ns.add_address(dev, address).unwrap();
        };
        for (relay, address) in [("r1", "192.0.2.1/24"), ("r2", "192.0.2.2/24")] {
            let ns = Netns::new("wgfp");
            plug(&ns, "u0", address);
            hosts.insert(relay, ns);
        }
        let mut nats = BTreeMap::new();
        for (site, wan, mapping) in [
            ('a', "192.0.2.11/24", Mapping::PortPreserving),
            ('b', "192.0.2.12/24", Mapping::PortPreserving),
            ('c', "192.0.2.13/24", Mapping::Random),
        ] {
            let nat = Netns::new("wgfp");
            plug(&nat, "wan", wan);
            nat.run(&["ip", "route", "add", "default", "via", "192.0.2.254"]);
            nat.run(&["ip", "link", "add", "lan", "type", "bridge"]);
            nat.link_up("lan", None).unwrap();
            let lan = lan_prefix(site);
            nat.add_address("lan", &format!("{lan}.1/24")).unwrap();
            nat.sysctl("net.ipv4.ip_forward", "1").unwrap();
            set_mapping(&nat, mapping);
            nats.insert(site, nat);
        }
        for (host, site, last) in [("a", 'a', 2), ("d", 'a', 3), ("b", 'b', 2), ("c", 'c', 2)] {
            let ns = Netns::new("wgfp");
            let nat = &nats[&site];
            let port = format!("l{host}");
            veth(&ns, "u0", nat, &port).unwrap();
            nat.run(&["ip", "link", "set", &port, "master", "lan"]);
            let lan = lan_prefix(site);
            ns.add_address("u0", &format!("{lan}.{last}/24")).unwrap();
            ns.run(&["ip", "route", "add", "default", "via", &format!("{lan}.1")]);
            hosts.insert(host, ns);
        }
        Self { _inet: inet, hosts, nats }
    }

    fn ns(&self, host: &str) -> &Netns {
        &self.hosts[host]
    }
}

fn lan_prefix(site: char) -> &'static str {
    match site {
        'a' => "10.1.0",
        'b' => "10.2.0",
        _ => "10.3.0",
    }
}

/// Masquerade out of `wan` with `mapping`, and drop what arrives unsolicited for the router
/// itself (which would otherwise pin a conntrack entry and steal the port a hole needs).
fn set_mapping(nat: &Netns, mapping: Mapping) {
    let _ = nat.exec(&["nft", "delete", "table", "ip", "natlab"]);
    nat.run(&["nft", "add", "table", "ip", "natlab"]);
    nat.run(&[
        "nft",
        "add",
        "chain",
        "ip",
        "natlab",
        "post",
        "{ type nat hook postrouting priority 100 ; }",
    ]);
    let mut rule = vec!["nft", "add", "rule", "ip", "natlab", "post", "oifname", "wan"];
    rule.push("masquerade");
    if mapping == Mapping::Random {
        rule.push("fully-random");
    }
    nat.run(&rule);
    nat.run(&[
        "nft",
        "add",
        "chain",
        "ip",
        "natlab",
        "in",
        "{ type filter hook input priority 0 ; }",
    ]);
    nat.run(&[
        "nft", "add", "rule", "ip", "natlab", "in", "iifname", "wan", "ct", "state", "new", "drop",
    ]);
}

/// Forgets every mapping of a NAT router: taking its public address away makes masquerade
/// drop the connections it translated, as a router's reboot or a CGNAT's expiry would.
fn flush_mappings(nat: &Netns, wan: &str) {
    nat.run(&["ip", "address", "del", wan, "dev", "wan"]);
    nat.run(&["ip", "address", "add", wan, "dev", "wan"]);
    nat.run(&["ip", "route", "replace", "default", "via", "192.0.2.254"]);
}

/// The fabric on the underlay: daemons and agents, fields dropped in order (agents first).
struct Fabric6<'u> {
    underlay: &'u Underlay,
    agents: BTreeMap<&'static str, Agent>,
    daemons: BTreeMap<&'static str, Daemon<'u>>,
    interfaces: BTreeMap<&'static str, String>,
    dir: Scratch,
}

impl<'u> Fabric6<'u> {
    /// Daemons (wgfabricd, or `implementations` for some hosts), the relays' agents and
    /// their desired states, then the spokes'.
    fn start(underlay: &'u Underlay, implementations: &[(&str, Impl)]) -> Self {
        let dir = Scratch::new();
        let mut text = String::from("[network.lab]\nipv4 = \"10.99.0.0/24\"\n\n");
        for host in HOSTS {
            let key = generate_key_file(&mut OsRng, &key_file(&dir.0, host), false).unwrap();
            text.push_str(&format!("[host.{host}]\npublic_key = \"{}\"\n", key.public_key()));
            text.push_str(&format!("key_file = \"{}\"\n", key_file(&dir.0, host).display()));
            text.push_str(match host {
                "r1" => "role = \"relay\"\npriority = 10\nendpoint = \"192.0.2.1:51820\"\n",
                "r2" => "role = \"relay\"\npriority = 20\nendpoint = \"192.0.2.2:51820\"\n",
                "a" => "nat = true\nkeepalive = 25\nlisten_port = 51820\nsite = \"office\"\n",
                "d" => "nat = true\nkeepalive = 25\nlisten_port = 51821\nsite = \"office\"\n",
                _ => "nat = true\nkeepalive = 25\nlisten_port = 51820\n",
            });
            text.push('\n');
        }
        std::fs::write(dir.0.join("fabric.toml"), text).unwrap();
        let mut fabric = Self {
            underlay,
            agents: BTreeMap::new(),
            daemons: BTreeMap::new(),
            interfaces: BTreeMap::new(),
            dir,
        };
        fabric.controller(&["addresses", "update"]);
        for host in HOSTS {
            let interface = unique_interface_name("wgfp");
            let implementation = implementations
                .iter()
                .find(|(name, _)| *name == host)
                .map_or_else(wgfabricd, |(_, implementation)| implementation.clone());
            let daemon = Daemon::start(underlay.ns(host), implementation, &interface);
            fabric.daemons.insert(host, daemon);
            fabric.interfaces.insert(host, interface);
        }
        // The relays first, as in a fabric that exists: a spoke's first handshake finds them.
        for relay in &HOSTS[..2] {
            fabric.start_agent(relay);
        }
        fabric.controller(&["apply", "--host", "r1", "--host", "r2", "--timeout", "60s"]);
        for spoke in &HOSTS[2..] {
            fabric.start_agent(spoke);
        }
        fabric.controller(&["apply", "--timeout", "60s"]);
        for spoke in &HOSTS[2..] {
            let relay = fabric.address("r1");
            assert!(
                underlay.ns(spoke).ping_until_reply(&relay, Duration::from_secs(20)),
                "{spoke} cannot reach the relay"
            );
        }
        fabric
    }

    fn start_agent(&mut self, host: &'static str) {
        let log = self.dir.0.join(format!("agent-{host}.log"));
        let source = self.source();
        let args = [
            "agent",
            "--host",
            host,
            "--interface",
            &self.interfaces[host],
            "--source",
            &source,
            "--status-interval",
            ROUND,
        ];
        let env = [("WGFABRIC_LOG_FORMAT", "json")];
        self.agents.insert(host, Agent::spawn(self.underlay.ns(host), &args, &env, log));
    }

    fn source(&self) -> String {
        self.dir.0.join("source").display().to_string()
    }

    fn controller(&self, args: &[&str]) -> String {
        let inventory = self.dir.0.join("fabric.toml").display().to_string();
        let mut command = Command::new(lab::wgfabric());
        command.args(args).args(["-i", &inventory]);
        if args[0] != "addresses" {
            command.args(["--source", &self.source()]);
        }
        let output = command.env_remove("WGFABRIC_SOURCE").output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        eprintln!(
            "$ wgfabric {}\n{stdout}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "wgfabric {} failed", args.join(" "));
        stdout
    }

    fn address(&self, host: &str) -> String {
        let fabric = Fabric::load_locked(&self.dir.0.join("fabric.toml")).unwrap();
        fabric.addresses(host).unwrap().ipv4.unwrap().to_string()
    }

    fn status(&self, host: &str) -> Option<Status> {
        let path = Path::new(&self.source()).join("status").join(format!("{host}.json"));
        Status::from_json(&std::fs::read(path).ok()?).ok()
    }

    /// What `host`'s agent reports of its path to `peer`.
    fn path(&self, host: &str, peer: &str) -> Option<PathStatus> {
        self.status(host)?.paths.into_iter().find(|path| path.peer.as_str() == peer)
    }

    fn is_direct(&self, host: &str, peer: &str) -> bool {
        self.path(host, peer).is_some_and(|path| path.mode == PathMode::Direct)
    }

    /// Pings `to` from `from` every 10 ms for `seconds`.
    fn ping(&self, from: &str, to: &str, seconds: u32) -> Background {
        let line = format!("ping -n -D -i 0.01 -w {seconds} {}; exit 0", self.address(to));
        self.underlay.ns(from).spawn(&["sh", "-c", &line])
    }
}

fn key_file(dir: &Path, host: &str) -> PathBuf {
    dir.join(host).join("private.key")
}

/// How many pings were lost of how many sent, printing when each gap in the replies was
/// (ping's `-D` time stamps) to tell a switch's loss from the machine's.
fn lost(ping: Background) -> (u32, u32) {
    let output = ping.wait().unwrap();
    let mut last: Option<(u32, &str)> = None;
    for line in output.lines() {
        let seq = line.split("icmp_seq=").nth(1).and_then(|rest| rest.split(' ').next());
        let Some(seq) = seq.and_then(|seq| seq.parse::<u32>().ok()) else { continue };
        let stamp = line.split(']').next().unwrap_or_default().trim_start_matches('[');
        if let Some((before, at)) = last.filter(|(before, _)| seq > before + 1) {
            eprintln!("PATHS gap: {} pings lost after [{at}] (seq {before})", seq - before - 1);
        }
        last = Some((seq, stamp));
    }
    let stats = lab::ping_stats(&output);
    (stats.transmitted - stats.received, stats.transmitted)
}

#[test]
#[ignore = "needs root, network namespaces and nftables"]
fn spokes_go_direct_through_nats_that_allow_it_and_say_why_not_otherwise() {
    let underlay = Underlay::build();
    let fabric = Fabric6::start(&underlay, &[]);
    let started = Instant::now();
    let b = fabric.address("b");
    assert!(underlay.ns("a").ping_until_reply(&b, Duration::from_secs(10)), "a reaches b");
    let ping = fabric.ping("a", "b", 30);
    let direct = wait_until(Duration::from_secs(30), || {
        fabric.is_direct("a", "b") && fabric.is_direct("b", "a")
    });
    let took = started.elapsed();
    assert!(direct, "a and b not direct within 30 s: {:?}", fabric.path("a", "b"));
    let (lost, sent) = lost(ping);
    eprintln!("PATHS promotion: direct after {} ms, {lost} of {sent} pings lost", took.as_millis());
    assert_eq!(lost, 0, "pings lost while a and b moved to their direct path");
    let path = fabric.path("a", "b").unwrap();
    assert_eq!(path.reason, PathReason::Handshake);
    assert_eq!(path.endpoint.map(|e| e.ip().to_string()).as_deref(), Some("192.0.2.12"));
    assert!(path.rtt_us.is_some(), "the direct path's RTT is measured: {path:?}");

    // The same site: over the LAN, not through the router.
    let lan = wait_until(Duration::from_secs(30), || fabric.is_direct("a", "d"));
    assert!(lan, "a and d not direct: {:?}", fabric.path("a", "d"));
    let path = fabric.path("a", "d").unwrap();
    assert_eq!(path.endpoint.map(|e| e.ip().to_string()).as_deref(), Some("10.1.0.3"));

    // Behind a randomizing NAT: both relays see c at different ports.
    let symmetric = wait_until(Duration::from_secs(20), || {
        fabric.path("a", "c").is_some_and(|p| p.reason == PathReason::SymmetricNat)
            && fabric.path("c", "b").is_some_and(|p| p.reason == PathReason::SymmetricNat)
    });
    assert!(symmetric, "{:?} {:?}", fabric.path("a", "c"), fabric.path("c", "b"));
    let path = fabric.path("a", "c").unwrap();
    assert_eq!((path.mode, path.via.as_ref().map(|r| r.as_str())), (PathMode::Relayed, Some("r1")));
    assert!(underlay.ns("a").ping(&fabric.address("c"), 3).all_answered(), "relayed all the same");

    // The paths verb says the same, in the shape docs/cli.md shows.
    util::shape::assert_shape("paths", &fabric.controller(&["paths", "--format", "json"]));
    let shown = fabric.controller(&["paths"]);
    assert!(
        shown.lines().any(|l| l.contains("a") && l.contains("c") && l.contains("symmetric-nat")),
        "{shown}"
    );
}

/// Whether `host` told its peer through the store that its direct peer works (stage
/// `ready`): the moment both ends start counting down to the agreed instant.
fn signals_ready(fabric: &Fabric6<'_>, host: &str, peer: &str) -> bool {
    let path = Path::new(&fabric.source()).join("candidates").join(format!("{host}.json"));
    let Ok(text) = std::fs::read_to_string(path) else { return false };
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(&text) else { return false };
    doc["pairs"].as_array().is_some_and(|pairs| {
        pairs.iter().any(|pair| pair["peer"] == peer && pair["stage"] == "ready")
    })
}

/// Sends SIGCONT to a process stopped with SIGSTOP when dropped, even if the test fails.
struct Frozen(String);

impl Frozen {
    fn stop(pid: u32) -> Self {
        let pid = pid.to_string();
        assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
        Self(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.0]).status();
    }
}

/// With wgfabricd at both ends the switch loses nothing even when one end moves seconds
/// late: b's agent is frozen from the moment it signals ready until a has switched alone,
/// and the relays and direct peers accept the moving addresses meanwhile (`accept_ip`).
#[test]
#[ignore = "needs root, network namespaces and nftables"]
fn a_switch_loses_nothing_when_one_end_moves_late() {
    let underlay = Underlay::build();
    let fabric = Fabric6::start(&underlay, &[]);
    let b = fabric.address("b");
    assert!(underlay.ns("a").ping_until_reply(&b, Duration::from_secs(10)), "a reaches b");
    let ping = fabric.ping("a", "b", 40);
    let ready = wait_until(Duration::from_secs(30), || signals_ready(&fabric, "b", "a"));
    assert!(ready, "b never signalled ready: {:?}", fabric.path("b", "a"));
    let frozen = Frozen::stop(fabric.agents["b"].pid());
    let alone = wait_until(Duration::from_secs(15), || fabric.is_direct("a", "b"));
    assert!(alone, "a did not switch: {:?}", fabric.path("a", "b"));
    // Keep b behind for a while, then let it catch up.
    std::thread::sleep(Duration::from_secs(2));
    drop(frozen);
    let both = wait_until(Duration::from_secs(10), || fabric.is_direct("b", "a"));
    assert!(both, "b did not switch: {:?}", fabric.path("b", "a"));
    let (lost, sent) = lost(ping);
    eprintln!("PATHS late switch: {lost} of {sent} pings lost with b's agent 2 s+ late");
    assert_eq!(lost, 0, "pings lost while a was direct and b still relayed");
}

#[test]
#[ignore = "needs root, network namespaces and nftables"]
fn a_direct_path_whose_nat_mappings_go_is_relayed_again_within_a_second() {
    let underlay = Underlay::build();
    let fabric = Fabric6::start(&underlay, &[]);
    let direct = wait_until(Duration::from_secs(30), || {
        fabric.is_direct("a", "b") && fabric.is_direct("b", "a")
    });
    assert!(direct, "a and b not direct: {:?}", fabric.path("a", "b"));
    let ping = fabric.ping("a", "b", 10);
    std::thread::sleep(Duration::from_secs(2));
    // b's router forgets its mappings and now maps every flow to a random port: the direct
    // path cannot come back by itself.
    let nat = &underlay.nats[&'b'];
    set_mapping(nat, Mapping::Random);
    flush_mappings(nat, "192.0.2.12/24");
    let relayed = wait_until(Duration::from_secs(10), || {
        fabric.path("a", "b").is_some_and(|p| p.mode == PathMode::Relayed)
            && fabric.path("b", "a").is_some_and(|p| p.mode == PathMode::Relayed)
    });
    assert!(relayed, "still direct: {:?}", fabric.path("a", "b"));
    let (lost, sent) = lost(ping);
    eprintln!("PATHS demotion: {lost} of {sent} pings lost ({} ms)", lost * 10);
    assert!(lost <= 100, "{lost} pings lost: more than 1 s");
    let path = fabric.path("a", "b").unwrap();
    assert_eq!(path.reason, PathReason::Demoted);
}

#[test]
#[ignore = "needs root, network namespaces, nftables and wireguard-go"]
fn a_wireguard_go_spoke_goes_direct_under_the_agent() {
    if Impl::WireguardGo.require().is_err() {
        return;
    }
    let underlay = Underlay::build();
    let fabric = Fabric6::start(&underlay, &[("b", Impl::WireguardGo)]);
    let direct = wait_until(Duration::from_secs(30), || {
        fabric.is_direct("a", "b") && fabric.is_direct("b", "a")
    });
    assert!(direct, "a and b not direct: {:?} {:?}", fabric.path("a", "b"), fabric.path("b", "a"));
    assert!(underlay.ns("b").ping(&fabric.address("a"), 5).all_answered());
    let path = fabric.path("b", "a").unwrap();
    assert_eq!(path.endpoint.map(|e| e.ip().to_string()).as_deref(), Some("192.0.2.11"));
}

/// The average round-trip time of `count` pings from `from` to `to`, in milliseconds.
fn average_rtt(underlay: &Underlay, fabric: &Fabric6<'_>, from: &str, to: &str) -> f64 {
    let address = fabric.address(to);
    let output = underlay.ns(from).run(&["ping", "-n", "-q", "-c", "10", "-i", "0.2", &address]);
    let line = output.lines().find(|line| line.starts_with("rtt ")).expect("an rtt line");
    let values = line.split('=').nth(1).unwrap().trim().trim_end_matches(" ms");
    values.split('/').nth(1).unwrap().parse().unwrap()
}

#[test]
#[ignore = "needs root, network namespaces, nftables and tc"]
fn a_direct_path_skips_the_relays_detour() {
    let underlay = Underlay::build();
    // 20 ms on every packet a relay sends: a relayed round trip crosses a relay twice.
    let mut delay = Some(20.0);
    for relay in ["r1", "r2"] {
        let netem = ["tc", "qdisc", "add", "dev", "u0", "root", "netem", "delay", "20ms"];
        if let Err(error) = underlay.ns(relay).exec(&netem) {
            eprintln!("this kernel has no netem ({error}): the relays' own detour only");
            delay = None;
            break;
        }
    }
    let fabric = Fabric6::start(&underlay, &[]);
    // c is relayed for whichever reason comes first: a probe that ran before both relays had
    // seen c's mappings fails (`probe-failed`), and `symmetric-nat` follows after the
    // backoff. The reason is checked by the test of what the NATs allow, above.
    let direct = wait_until(Duration::from_secs(30), || {
        fabric.is_direct("a", "b")
            && fabric.path("a", "c").is_some_and(|p| p.mode == PathMode::Relayed)
    });
    assert!(direct, "{:?} {:?}", fabric.path("a", "b"), fabric.path("a", "c"));
    let (direct, relayed) =
        (average_rtt(&underlay, &fabric, "a", "b"), average_rtt(&underlay, &fabric, "a", "c"));
    match delay {
        Some(delay) => {
            eprintln!("PATHS rtt with {delay} ms on the relays' links: direct {direct:.2} ms, relayed {relayed:.2} ms");
            assert!(relayed >= 2.0 * delay, "relayed {relayed} ms");
            assert!(direct < delay, "direct {direct} ms");
        }
        // Without a delay both are fractions of a millisecond on one machine, and which is
        // smaller depends on the load: the figures are printed for the docs.
        None => eprintln!(
            "PATHS rtt on the bare underlay: direct {direct:.3} ms, relayed {relayed:.3} ms"
        ),
    }
}
