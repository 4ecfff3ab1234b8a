//! Faults the agent survives on its own, on the lab fabric (one relay, three spokes, in
//! network namespaces; root only): a daemon killed and started again by its supervisor comes
//! back in its whole configuration, link included, within a round; a daemon replaced by
//! another implementation is probed again; an address or a route removed by hand is put back.

mod lab;
mod util;

use std::process::Command;
use std::time::{Duration, Instant};

use lab::{Lab, Source, Spaces};
use wgfabric_testkit::{wait_until, Daemon, Impl};

/// Kills `host`'s daemon with SIGKILL and starts `implementation` in its place, as a
/// supervisor would; returns when the new one answers.
fn replace_daemon<'s>(
    lab: &mut Lab<'s>,
    spaces: &'s Spaces,
    host: &'static str,
    implementation: Impl,
) {
    let pid = lab.daemons[host].pid().expect("the daemon runs");
    let killed = Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
    assert!(killed.success());
    let old = lab.daemons.remove(host).unwrap();
    drop(old);
    let daemon = Daemon::start(spaces.ns(host), implementation, &lab.interfaces[host]);
    lab.daemons.insert(host, daemon);
}

#[test]
#[ignore = "needs root and network namespaces"]
fn a_killed_daemon_is_back_in_its_configuration_within_a_round_and_a_new_one_is_probed() {
    let spaces = Spaces::new();
    let mut lab = Lab::start(&spaces, Source::Directory, &[]);
    let relay = lab.address("relay");
    let s1 = spaces.ns("s1");
    assert!(s1.ping(&relay, 1).all_answered());

    replace_daemon(&mut lab, &spaces, "s1", lab::wgfabricd());
    let started = Instant::now();
    let back = s1.ping_until_reply(&relay, Duration::from_secs(15));
    let took = started.elapsed();
    eprintln!("s1 answered again {} ms after its daemon was restarted", took.as_millis());
    assert!(back, "s1's interface never came back:\n{}", lab.agents["s1"].log_text());
    let interface = &lab.interfaces["s1"];
    let link = s1.run(&["ip", "-o", "address", "show", "dev", interface]);
    assert!(link.contains(&lab.address("s1")), "the overlay address is back: {link}");
    let corrected = lab.status("s1").and_then(|s| s.corrected).expect("the status says so");
    assert!(corrected.what.contains("daemon"), "{corrected:?}");

    // An address removed by hand, and the link set down: put back within a round.
    let s3 = spaces.ns("s3");
    let s3_interface = &lab.interfaces["s3"];
    let address = format!("{}/24", lab.address("s3"));
    s3.run(&["ip", "address", "del", &address, "dev", s3_interface]);
    s3.run(&["ip", "link", "set", s3_interface, "down"]);
    let started = Instant::now();
    assert!(s3.ping_until_reply(&relay, Duration::from_secs(15)), "s3 never came back");
    eprintln!("s3's address was back {} ms after it was removed", started.elapsed().as_millis());
    let corrected = lab.status("s3").and_then(|s| s.corrected).expect("the status says so");
    assert!(corrected.what.contains(&format!("address {address} missing")), "{corrected:?}");
    assert!(corrected.what.contains("link down"), "{corrected:?}");

    // Another implementation under the same agent: probed again, no successor keys.
    if Impl::WireguardGo.require().is_ok() {
        replace_daemon(&mut lab, &spaces, "s2", Impl::WireguardGo);
        let probed = wait_until(Duration::from_secs(15), || {
            lab.status("s2").is_some_and(|s| s.agent.successor == Some(false))
        });
        assert!(probed, "s2's agent still trusts the old daemon's capabilities");
        let s2 = spaces.ns("s2");
        assert!(s2.ping_until_reply(&relay, Duration::from_secs(15)), "s2 is back");
    }
}
