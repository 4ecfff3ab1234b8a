//! The fault matrix, on the lab fabric (one relay, three spokes, in network namespaces; root
//! only). Every fault happens under a `ping -i 0.01` across the fabric and is held to a
//! convergence time and a loss: daemons killed and restarted by their supervisor, agents
//! killed mid-apply and mid-rotation, the interface deleted, an address, a route and a
//! full tunnel's policy-routing rule removed by hand, etcd down for a minute, the key's directory read-only during a rotation, and the
//! wall clock stepped an hour either way.
//!
//! Agents run at the default status interval (5 s), so "within a round" means what it means
//! on a real host; only the clock test, with several faults in a row, runs them at 2 s. The
//! figures in docs/faults.md come from these tests (`--no-capture`
//! prints them).
#![allow(clippy::disallowed_methods, reason = "a system test measures convergence in real time")]

mod lab;
mod util;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lab::probe::{Probed, Prober, PROBE_INTERVAL};
use lab::{Lab, Source, Spaces, HOSTS};
use wgfabric_testkit::{wait_until, Daemon, Impl};

/// What a loaded 2-core machine adds to a round before a fault counts as repaired: the
/// daemon's start, a handshake, the agent's own work.
const MARGIN: Duration = Duration::from_secs(3);

/// How often an agent looks whether its daemon or interface was replaced.
const REPLACEMENT_CHECK: Duration = Duration::from_secs(1);

/// How long etcd stays down.
const ETCD_OUTAGE: Duration = Duration::from_secs(60);

/// Prints what the prober saw for `fault` and holds it to `bound` (outage) and to the loss
/// that outage explains.
fn assert_within(fault: &str, probed: Probed, bound: Duration) {
    eprintln!(
        "FAULT {fault}: outage {} ms, {} of {} probes lost",
        probed.outage.as_millis(),
        probed.lost,
        probed.sent
    );
    assert!(probed.sent > 0, "{fault}: no probe was answered at all");
    assert!(probed.outage <= bound, "{fault}: out for {:?}, more than {bound:?}", probed.outage);
    let explained = u32::try_from(bound.as_millis() / PROBE_INTERVAL.as_millis()).unwrap();
    assert!(probed.lost <= explained, "{fault}: {} probes lost", probed.lost);
}

/// Prints what the prober saw for `fault`, which the data path should not notice: no probe
/// lost, no reply later than a loaded machine explains.
fn assert_no_loss(fault: &str, probed: Probed) {
    assert_within(fault, probed, Duration::from_secs(1));
    assert_eq!(probed.lost, 0, "{fault}: probes lost");
}

/// Waits until `from` reaches `to` again, then lets the prober see a few more replies.
fn wait_back(lab: &Lab<'_>, from: &str, to: &str, timeout: Duration) {
    let ns = lab.spaces.ns(from);
    let address = lab.address(to);
    assert!(ns.ping_until_reply(&address, timeout), "{from} never reached {to} again");
    assert!(ns.ping(&address, 3).all_answered(), "{from} reaches {to} steadily");
}

/// Kills `daemon` with SIGKILL and restarts it once it is gone, as a supervisor with
/// `Restart=always` would.
fn kill_and_supervise(daemon: &mut Daemon<'_>) {
    let pid = daemon.pid().expect("the daemon runs").to_string();
    assert!(Command::new("kill").args(["-KILL", &pid]).status().unwrap().success());
    assert!(wait_until(Duration::from_secs(5), || daemon.has_exited()), "SIGKILL took");
    daemon.restart();
}

/// Kills `host`'s daemon under a prober from s2 to s1 (across the relay), and holds the
/// fabric to a round of repairs.
fn kill_daemon_under_traffic(host: &'static str) {
    let spaces = Spaces::new();
    let mut lab = Lab::start_at_default_rounds(&spaces, Source::Directory);
    let bound = REPLACEMENT_CHECK + MARGIN;
    let prober = Prober::start(spaces.ns("s2"), &lab.address("s1"));
    wait_back(&lab, "s2", "s1", Duration::from_secs(5));
    // A steady fabric: the agent has seen where every peer is (within a round of start).
    let seen = wait_until(lab.round() + MARGIN, || {
        lab.status(host).is_some_and(|s| s.peers.iter().all(|peer| peer.endpoint.is_some()))
    });
    assert!(seen, "{host}'s agent never saw its peers' endpoints");
    kill_and_supervise(lab.daemons.get_mut(host).unwrap());
    wait_back(&lab, "s2", "s1", bound + MARGIN);
    assert_within(&format!("kill -9 of {host}'s daemon"), prober.finish(), bound);
    let corrected = lab.status(host).and_then(|s| s.corrected).expect("the status says so");
    assert!(corrected.what.contains("daemon"), "{corrected:?}");
}

#[test]
#[ignore = "needs root and network namespaces"]
fn a_spokes_killed_daemon_is_back_in_its_configuration_within_a_round() {
    kill_daemon_under_traffic("s1");
}

#[test]
#[ignore = "needs root and network namespaces"]
fn a_relays_killed_daemon_is_back_with_its_spokes_within_a_round() {
    kill_daemon_under_traffic("relay");
}

#[test]
#[ignore = "needs root and network namespaces"]
fn a_replaced_daemon_is_probed_again() {
    if Impl::WireguardGo.require().is_err() {
        return;
    }
    let spaces = Spaces::new();
    let mut lab = Lab::start(&spaces, Source::Directory, &[]);
    let old = lab.daemons.remove("s2").unwrap();
    old.stop();
    let daemon = Daemon::start(spaces.ns("s2"), Impl::WireguardGo, &lab.interfaces["s2"]);
    lab.daemons.insert("s2", daemon);
    let probed = wait_until(Duration::from_secs(15), || {
        lab.status("s2").is_some_and(|s| s.agent.successor == Some(false))
    });
    assert!(probed, "s2's agent still trusts the old daemon's capabilities");
    wait_back(&lab, "s2", "relay", Duration::from_secs(15));
}

#[test]
#[ignore = "needs root and network namespaces"]
fn the_interface_an_address_and_a_route_removed_by_hand_are_back_within_a_round() {
    let spaces = Spaces::new();
    let mut lab = Lab::start_at_default_rounds(&spaces, Source::Directory);
    let bound = lab.round() + MARGIN;

    // The interface deleted under traffic: the daemon loses its device; its supervisor
    // starts it again, and the agent puts everything back.
    let prober = Prober::start(spaces.ns("s2"), &lab.address("s1"));
    wait_back(&lab, "s2", "s1", Duration::from_secs(5));
    let s1 = spaces.ns("s1");
    s1.run(&["ip", "link", "del", &lab.interfaces["s1"]]);
    let daemon = lab.daemons.get_mut("s1").unwrap();
    assert!(wait_until(Duration::from_secs(5), || daemon.has_exited()), "the daemon exits");
    daemon.restart();
    wait_back(&lab, "s2", "s1", bound + MARGIN);
    assert_within("interface deleted", prober.finish(), REPLACEMENT_CHECK + MARGIN);

    // An address removed by hand.
    let prober = Prober::start(spaces.ns("s1"), &lab.address("s3"));
    wait_back(&lab, "s1", "s3", Duration::from_secs(5));
    let address = format!("{}/24", lab.address("s3"));
    spaces.ns("s3").delete_address(&lab.interfaces["s3"], &address).unwrap();
    wait_back(&lab, "s1", "s3", bound + MARGIN);
    assert_within("address removed", prober.finish(), bound);
    let corrected = lab.status("s3").and_then(|s| s.corrected).expect("the status says so");
    assert!(corrected.what.contains(&format!("address {address} missing")), "{corrected:?}");

    // The route into the tunnel removed by hand.
    let prober = Prober::start(spaces.ns("s3"), &lab.address("s1"));
    wait_back(&lab, "s3", "s1", Duration::from_secs(5));
    spaces.ns("s3").run(&["ip", "route", "del", "10.88.0.0/24", "dev", &lab.interfaces["s3"]]);
    wait_back(&lab, "s3", "s1", bound + MARGIN);
    assert_within("route removed", prober.finish(), bound);
    let corrected = lab.status("s3").and_then(|s| s.corrected).expect("the status says so");
    assert!(corrected.what.contains("route 10.88.0.0/24 missing"), "{corrected:?}");
}

/// Starts `wgfabric ARGS` as [`Lab::controller`] does, without waiting for it.
fn controller_in_background(lab: &Lab<'_>, args: &[&str]) -> std::process::Child {
    lab.controller_command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

/// Every host holds the inventory's key, its peers hold that key, and every spoke completes a
/// handshake with the relay and reaches every other spoke.
fn assert_keys_agree(lab: &Lab<'_>) {
    for host in HOSTS {
        let key = lab.public_key(host);
        let settled = wait_until(Duration::from_secs(20), || {
            lab.dump(host).public_key == Some(key)
                && HOSTS.iter().filter(|other| **other != host).all(|other| {
                    let peers = lab.dump(other).peers;
                    let expected = host == "relay" || *other == "relay";
                    peers.iter().any(|peer| peer.public_key == key) == expected
                })
        });
        assert!(settled, "{host}'s key {key} is not the one its peers know");
    }
    for spoke in &HOSTS[1..] {
        for other in HOSTS.iter().filter(|other| *other != spoke) {
            wait_back(lab, spoke, other, Duration::from_secs(15));
        }
    }
}

#[test]
#[ignore = "needs root and network namespaces"]
fn agents_killed_mid_apply_and_mid_rotation_converge_when_restarted() {
    let spaces = Spaces::new();
    let mut lab = Lab::start_at_default_rounds(&spaces, Source::Directory);

    // Mid-apply: the agents that have a change are killed as it is published.
    let prober = Prober::start(spaces.ns("s3"), &lab.address("s1"));
    wait_back(&lab, "s3", "s1", Duration::from_secs(5));
    let inventory = std::fs::read_to_string(lab.inventory()).unwrap();
    let routed = inventory.replace("[host.s1]\n", "[host.s1]\nroutes = [\"10.99.1.0/24\"]\n");
    std::fs::write(lab.inventory(), routed).unwrap();
    lab.controller(&["apply", "--no-wait"]).success();
    for host in ["relay", "s1"] {
        lab.agents.get_mut(host).unwrap().kill();
        lab.start_agent(host);
    }
    let restarted = Instant::now();
    let run = lab.controller(&["apply", "--timeout", "30s"]).success();
    let took = restarted.elapsed();
    eprintln!(
        "FAULT agents killed mid-apply: applied {} ms after they restarted",
        took.as_millis()
    );
    assert!(run.stdout().contains("4/4 host(s) run revision"), "{}", run.stdout());
    assert!(took <= lab.round() + MARGIN, "the restarted agents took {took:?}");
    let relay_s1 = lab.dump("relay").peer(&lab.public_key("s1")).unwrap().allowed_ips.clone();
    assert!(relay_s1.iter().any(|ip| ip == "10.99.1.0/24"), "{relay_s1:?}");
    assert_no_loss("agents killed mid-apply", prober.finish());

    // Mid-rotation: s1's agent dies once its rotation is under way, and is restarted.
    let old_key = lab.public_key("s1");
    let prober = Prober::start(spaces.ns("s2"), &lab.address("s1"));
    wait_back(&lab, "s2", "s1", Duration::from_secs(5));
    let mut rotate = controller_in_background(&lab, &["rotate", "s1", "--verify-timeout", "30s"]);
    let switching = wait_until(Duration::from_secs(30), || {
        lab.status("s1").is_some_and(|status| {
            status.rotations.iter().any(|r| r.phase >= wgfabric_store::state::Phase::Switch)
        })
    });
    assert!(switching, "the rotation never reached its switch");
    lab.agents.get_mut("s1").unwrap().kill();
    lab.start_agent("s1");
    let finished = wait_until(Duration::from_secs(60), || !matches!(rotate.try_wait(), Ok(None)));
    assert!(finished, "the rotation never ended");
    let output = rotate.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let outcome = if lab.public_key("s1") == old_key { "rolled back" } else { "resumed" };
    assert!(
        stdout.contains("s1: rotated to") || stdout.contains("s1: rolled-back"),
        "the rotation ends either way: {stdout}"
    );
    assert_keys_agree(&lab);
    assert_within(
        &format!("agent killed mid-rotation ({outcome})"),
        prober.finish(),
        lab.round() + MARGIN,
    );
}

#[test]
#[ignore = "needs root and network namespaces"]
fn a_read_only_key_directory_fails_the_rotation_and_keeps_the_old_key() {
    let spaces = Spaces::new();
    let lab = Lab::start_at_default_rounds(&spaces, Source::Directory);
    let old_key = lab.public_key("s1");
    let key_dir = lab.dir.0.join("s1");
    // Read-only for s1's agent only: a bind mount in the mount namespace `ip netns exec`
    // gave it, which goes away with the agent.
    let agent = lab.agents["s1"].pid().to_string();
    let dir = key_dir.display().to_string();
    for mount in [&["--bind", &dir, &dir][..], &["-o", "remount,bind,ro", &dir]] {
        let status = Command::new("nsenter")
            .args(["-t", &agent, "-m", "mount"])
            .args(mount)
            .status()
            .unwrap();
        assert!(status.success(), "mount {mount:?} in the agent's namespace");
    }

    let prober = Prober::start(spaces.ns("s2"), &lab.address("s1"));
    wait_back(&lab, "s2", "s1", Duration::from_secs(5));
    let run = lab.controller(&["rotate", "s1", "--verify-timeout", "10s"]);
    eprintln!("{}{}", run.stdout(), run.stderr());
    assert_eq!(run.code(), Some(1), "the rotation failed");
    assert!(run.stdout().contains("s1: rolled-back"), "{}", run.stdout());
    assert!(run.stdout().contains("Read-only file system"), "a clear error: {}", run.stdout());
    assert_eq!(lab.public_key("s1"), old_key, "the inventory keeps the old key");
    assert_keys_agree(&lab);
    assert_no_loss("read-only key directory during a rotation", prober.finish());
    assert!(!Path::new(&key_dir).join("private.key.next").exists());
    let audit = std::fs::read_to_string(lab.dir.0.join("audit.jsonl")).unwrap();
    let recorded = audit
        .lines()
        .any(|line| line.contains("rotation s1-") && line.contains("Read-only file system"));
    assert!(recorded, "the audit log says why:\n{audit}");
}

#[test]
#[ignore = "needs root, network namespaces and etcd; long (a minute without etcd)"]
fn long_etcd_down_for_a_minute_keeps_the_fabric_up_and_converges_after() {
    let spaces = Spaces::new();
    let mut lab = Lab::start_at_default_rounds(&spaces, Source::Etcd);
    let prober = Prober::start(spaces.ns("s1"), &lab.address("s2"));
    wait_back(&lab, "s1", "s2", Duration::from_secs(5));
    lab.etcd().stop();
    let stopped = Instant::now();
    // A change made while etcd is down cannot be published: said so, and kept for later.
    let inventory = std::fs::read_to_string(lab.inventory()).unwrap();
    let routed = inventory.replace("[host.s1]\n", "[host.s1]\nroutes = [\"10.99.1.0/24\"]\n");
    std::fs::write(lab.inventory(), routed).unwrap();
    let refused = lab.controller(&["apply", "--timeout", "5s"]);
    eprintln!("{}{}", refused.stdout(), refused.stderr());
    assert_eq!(refused.code(), Some(2), "apply fails while etcd is down");
    // The fabric keeps its last good state the whole minute.
    while stopped.elapsed() < ETCD_OUTAGE {
        assert!(spaces.ns("s3").ping(&lab.address("relay"), 3).all_answered());
    }
    lab.etcd().start_again();
    let started = Instant::now();
    let run = lab.controller(&["apply", "--timeout", "60s"]).success();
    let took = started.elapsed();
    eprintln!(
        "FAULT etcd down {ETCD_OUTAGE:?}: the change applied {} ms after etcd was back",
        took.as_millis()
    );
    assert!(run.stdout().contains("4/4 host(s) run revision"), "{}", run.stdout());
    assert!(took <= lab.round() * 2 + MARGIN, "the agents took {took:?} to come back");
    let relay_s1 = lab.dump("relay").peer(&lab.public_key("s1")).unwrap().allowed_ips.clone();
    assert!(relay_s1.iter().any(|ip| ip == "10.99.1.0/24"), "{relay_s1:?}");
    assert_no_loss(&format!("etcd down {ETCD_OUTAGE:?}"), prober.finish());
}

#[test]
fn ping_output_is_summed_up() {
    let text = "PING 10.88.0.1 (10.88.0.1) 56(84) bytes of data.\n\
        [100.00] 64 bytes from 10.88.0.1: icmp_seq=1 ttl=64 time=0.5 ms\n\
        [100.01] 64 bytes from 10.88.0.1: icmp_seq=2 ttl=64 time=0.5 ms\n\
        [101.50] 64 bytes from 10.88.0.1: icmp_seq=150 ttl=64 time=0.5 ms\n\
        [101.51] 64 bytes from 10.88.0.1: icmp_seq=151 ttl=64 time=0.5 ms\n\
        [101.51] 64 bytes from 10.88.0.1: icmp_seq=151 ttl=64 time=0.5 ms (DUP!)\n";
    let probed = lab::probe::summarize(text);
    assert_eq!((probed.sent, probed.lost), (151, 147));
    assert_eq!(probed.outage.as_millis(), 1490);
}

/// libfaketime (Debian's `faketime`), which shifts a process's wall clock by what a file says
/// and leaves its monotonic clock alone: the machine's clock is shared, this one is the
/// process's own.
fn libfaketime() -> Option<std::path::PathBuf> {
    let multiarch = std::fs::read_dir("/usr/lib").ok()?;
    multiarch
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("faketime/libfaketimeMT.so.1"))
        .find(|path| path.exists())
}

/// The environment that has `library` (libfaketime) put a process on the clock in
/// `offset_file` (`+0`, `-3600`: seconds from the real time), read again every second.
fn faked_clock(library: &Path, offset_file: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("LD_PRELOAD", library.display().to_string()),
        ("FAKETIME_TIMESTAMP_FILE", offset_file.display().to_string()),
        ("FAKETIME_CACHE_DURATION", "1".to_owned()),
        ("DONT_FAKE_MONOTONIC", "1".to_owned()),
    ]
}

/// Steps s1's clock to `offset` seconds from the real time; returns once its agent reports
/// in the new time and its daemon, which re-reads the clock every second, had the time to.
fn step_clock(lab: &Lab<'_>, offset_file: &Path, offset: i64) {
    std::fs::write(offset_file, format!("{offset:+}\n")).unwrap();
    let stepped = Instant::now();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let expected = now.as_secs().saturating_add_signed(offset);
    let seen = wait_until(lab.round() + MARGIN, || {
        stepped.elapsed() >= Duration::from_secs(2)
            && lab.status("s1").is_some_and(|status| status.time.abs_diff(expected) < 60)
    });
    assert!(seen, "s1's agent never reported in the stepped time");
}

/// Removes s1's relay peer by hand: a fresh session, so a new initiation from s1 with its
/// stepped clock, which the relay takes only if its timestamp is later than the last one.
fn forget_the_relay_on_s1(lab: &Lab<'_>, fault: &str) {
    let prober = Prober::start(lab.spaces.ns("s2"), &lab.address("s1"));
    wait_back(lab, "s2", "s1", Duration::from_secs(5));
    let relay = lab.public_key("relay").to_base64();
    lab.daemons["s1"].set(&["peer", &relay, "remove"]);
    wait_back(lab, "s2", "s1", lab.round() + MARGIN * 2);
    assert_within(fault, prober.finish(), lab.round() + MARGIN);
}

#[test]
#[ignore = "needs root, network namespaces and libfaketime"]
fn the_wall_clock_stepped_an_hour_either_way_keeps_handshakes_rotations_and_audit_sane() {
    let Some(library) = libfaketime() else {
        assert!(std::env::var_os("CI").is_none(), "libfaketime is missing (apt install faketime)");
        return;
    };
    let clock = util::Scratch::new();
    let offset_file = clock.path("offset");
    std::fs::write(&offset_file, "+0\n").unwrap();
    let env = faked_clock(&library, &offset_file);
    let wrapper = clock.path("wgfabricd");
    let exports: String = env.iter().map(|(key, value)| format!("{key}='{value}' ")).collect();
    let daemon = lab::wgfabric().with_file_name("wgfabricd");
    let script = format!("#!/bin/sh\nexec env {exports}'{}' \"$@\"\n", daemon.display());
    std::fs::write(&wrapper, script).unwrap();
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .unwrap();
    let spaces = Spaces::new();
    let mut lab = Lab::start(&spaces, Source::Directory, &[("s1", Impl::Wgfabricd(wrapper))]);
    let env: Vec<(&str, &str)> = env.iter().map(|(key, value)| (*key, value.as_str())).collect();
    lab.agents.get_mut("s1").unwrap().kill();
    lab.start_agent_with_env("s1", &env);

    // Back an hour: s1's next initiation must still be later than its last.
    step_clock(&lab, &offset_file, -3600);
    forget_the_relay_on_s1(&lab, "wall clock stepped back an hour");
    let handshake = lab.dump("s1").peers[0].latest_handshake;
    let real = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    assert!(real.as_secs().abs_diff(handshake + 3600) < 60, "handshake times follow the clock");
    let out = lab.run_controller_ok(&["rotate", "s1", "--verify-timeout", "20s"]);
    assert!(out.contains("s1: rotated to"), "{out}");
    let out = lab.run_controller_ok(&["rotate", "relay", "--verify-timeout", "20s"]);
    assert!(out.contains("relay: rotated to"), "{out}");
    assert_keys_agree(&lab);

    // Forward an hour past the real time, then rotations again.
    step_clock(&lab, &offset_file, 3600);
    forget_the_relay_on_s1(&lab, "wall clock stepped forward two hours");
    let out = lab.run_controller_ok(&["rotate", "s1", "--verify-timeout", "20s"]);
    assert!(out.contains("s1: rotated to"), "{out}");
    assert_keys_agree(&lab);

    // The audit logs hold what happened, in the clock each host had, and verify.
    for log in [lab.dir.0.join("audit.jsonl"), lab.dir.0.join("s1").join("audit.jsonl")] {
        let log = log.display().to_string();
        let verified = Command::new(lab::wgfabric())
            .args(["audit", "verify", "--log", &log])
            .output()
            .unwrap();
        assert!(verified.status.success(), "{log}: {}", String::from_utf8_lossy(&verified.stdout));
    }
}

/// An address outside the fabric, which a full tunnel sends into the tunnel.
const OUTSIDE: &str = "203.0.113.1";

/// The table `host`'s kernel looks up for a packet to [`OUTSIDE`]: the tunnel's while its
/// policy routing holds, the main one (a leak) without it.
fn route_outside(lab: &Lab<'_>, host: &str) -> String {
    lab.spaces.ns(host).run(&["ip", "route", "get", OUTSIDE])
}

#[test]
#[ignore = "needs root and network namespaces"]
fn a_policy_routing_rule_removed_by_hand_is_back_within_a_round() {
    let spaces = Spaces::new();
    let lab = Lab::start_at_default_rounds(&spaces, Source::Directory);
    let bound = lab.round() + MARGIN;
    let s3 = spaces.ns("s3");
    // A default route in the main table, which packets would take if the rules went.
    s3.run(&["ip", "route", "add", "default", "dev", "u0"]);
    let inventory = std::fs::read_to_string(lab.inventory()).unwrap();
    let full = inventory.replace("[host.s3]\n", "[host.s3]\ntunnel = \"full\"\n");
    std::fs::write(lab.inventory(), full).unwrap();
    lab.controller(&["apply", "--timeout", "30s"]).success();
    let tunnelled = wait_until(bound, || route_outside(&lab, "s3").contains("table 51820"));
    assert!(tunnelled, "no full-tunnel policy routing: {}", route_outside(&lab, "s3"));
    let mark = lab.dump("s3").fwmark;
    assert_eq!(mark, 51820, "the device marks its own packets");

    let prober = Prober::start(s3, &lab.address("s1"));
    wait_back(&lab, "s3", "s1", Duration::from_secs(5));
    s3.run(&["ip", "rule", "del", "not", "fwmark", "51820", "table", "51820"]);
    let removed = Instant::now();
    assert!(!route_outside(&lab, "s3").contains("table 51820"), "the rule was removed");
    let back = wait_until(bound, || route_outside(&lab, "s3").contains("table 51820"));
    let took = removed.elapsed();
    eprintln!("FAULT policy-routing rule removed: restored {} ms after", took.as_millis());
    assert!(back, "the rule is still missing after {bound:?}");
    assert_no_loss("policy-routing rule removed", prober.finish());
    let corrected = lab.status("s3").and_then(|s| s.corrected).expect("the status says so");
    assert!(
        corrected.what.contains("-4 rule not fwmark 0xca6c table 51820 missing"),
        "{corrected:?}"
    );

    // The full tunnel given up: its policy routing goes with it.
    std::fs::write(lab.inventory(), inventory).unwrap();
    lab.controller(&["apply", "--timeout", "30s"]).success();
    let gone = wait_until(bound, || !s3.run(&["ip", "rule"]).contains("51820"));
    assert!(gone, "rules left: {}", s3.run(&["ip", "rule"]));
    assert_eq!(lab.dump("s3").fwmark, 0, "the mark is cleared");
}
