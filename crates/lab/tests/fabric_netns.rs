//! The example fleet (`examples/fabric.toml`: two relays, five spokes behind NAT, a subnet
//! router and a Kubernetes node with its pod CIDR) rendered and brought up in network
//! namespaces with wgfabricd and the stock `wg`, then checked end to end: every pair reaches
//! the other along the intended path (read from the WireGuard counters, the relay's
//! included), split-tunnel hosts route nothing else into the tunnel, and traffic between two
//! spokes resumes within 10 s of the active relay's death.
//!
//! Needs root: run with `cargo test -p wgfabric-lab --test fabric_netns -- --ignored`.
//! Namespaces are named `wgftPIDxN-HOST` and removed by the lab's guards even on failure.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rand_chacha::rand_core::SeedableRng as _;
use rand_chacha::ChaCha20Rng;
use wgfabric_host::failover::Policy;
use wgfabric_lab::demo::{locate_daemon, outage_after, Lab, Monitors, Settings, SteadyPing, Via};
use wgfabric_lab::netns::wait_until;
use wgfabric_model::inventory::{Role, Tunnel};
use wgfabric_model::{example, Fabric, Inventory, Lock};

/// Traffic must resume this fast after the active relay dies.
const FAILOVER_GOAL: Duration = Duration::from_secs(10);

/// The example fabric without its access policy: these tests follow every path and the
/// failover of traffic the policy would deny (the demo checks the policy).
fn example() -> Fabric {
    let text = example::INVENTORY;
    let without_policy = text.find("\n# Access policy:").map_or(text, |end| &text[..end]);
    let inventory = Inventory::parse(Path::new(example::INVENTORY_PATH), without_policy).unwrap();
    let lock = Lock::parse(Path::new(example::LOCK_PATH), example::LOCK).unwrap();
    Fabric::new(inventory, lock).unwrap()
}

/// A prefix no other test (or demo) uses: `wgft` + pid in hex + `x` + counter.
fn unique_prefix() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("wgft{:x}x{n}", std::process::id())
}

fn build(daemon: PathBuf) -> Lab {
    let settings = Settings::new(&unique_prefix(), daemon).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(u64::from(std::process::id()));
    Lab::build(&example(), settings, &mut rng, |_| {}).unwrap()
}

fn wgfabricd() -> PathBuf {
    locate_daemon(None).expect("wgfabricd is built with the workspace (cargo build -p wgfabricd)")
}

#[test]
#[ignore = "needs root and network namespaces"]
fn every_host_reaches_every_other_along_its_intended_path() {
    let lab = build(wgfabricd());
    let matrix = lab.matrix(|_| {}).unwrap();
    let primary = lab.fabric().relay_order("corp")[0].clone();
    assert_eq!(primary.as_str(), "relay-fra");
    assert_eq!(matrix.cells.len(), 7 * 6 + 7 * 2, "7 hosts, each to 6 others and 2 subnets");
    for cell in &matrix.cells {
        assert!(cell.answered, "{} -> {} did not answer: {cell:?}", cell.from, cell.to);
        let from = lab.host(cell.from.as_str()).unwrap();
        let subnet = lab.subnets().iter().find(|subnet| *subnet.name() == cell.to);
        let end = subnet.map_or(&cell.to, |subnet| subnet.router());
        let end_is_relay = lab.host(end.as_str()).unwrap().role() == Role::Relay;
        let expected = if end == from.name() {
            Via::Local
        } else if from.role() == Role::Relay || end_is_relay {
            Via::Direct
        } else {
            Via::Relay(primary.clone())
        };
        assert_eq!(cell.via, expected, "request path of {} -> {}", cell.from, cell.to);
        assert_eq!(cell.reply_via, expected, "reply path of {} -> {}", cell.from, cell.to);
        // The relay's own counters confirm it forwarded the pair: no `?` hop.
        let mut hops = vec![cell.from.to_string()];
        match &expected {
            Via::Relay(relay) => hops.extend([relay.to_string(), end.to_string()]),
            Via::Direct => hops.push(end.to_string()),
            Via::Local | Via::Unknown => {}
        }
        if subnet.is_some() {
            hops.push(cell.to.to_string());
        }
        assert_eq!(cell.hops, hops, "hops of {} -> {}", cell.from, cell.to);
    }
}

/// The interface `ip route get` picks for `destination` in `host`'s namespace, or `None` when
/// there is no route at all.
fn route_device(lab: &Lab, host: &str, destination: IpAddr) -> Option<String> {
    let output =
        lab.host(host).unwrap().run(&["ip", "route", "get", &destination.to_string()]).ok()?;
    let mut words = output.split_whitespace();
    words.find(|word| *word == "dev")?;
    words.next().map(str::to_owned)
}

#[test]
#[ignore = "needs root and network namespaces"]
fn split_tunnel_hosts_route_only_the_fabric_into_the_tunnel() {
    let lab = build(wgfabricd());
    let internet_v4: IpAddr = "8.8.8.8".parse().unwrap();
    let internet_v6: IpAddr = "2001:4860:4860::8888".parse().unwrap();
    let vpc = lab.subnets().iter().find(|s| s.name().as_str() == "aws-prod-vpc").unwrap().target();
    let mut full_tunnel_hosts = 0;
    for host in lab.hosts().iter().filter(|host| host.role() != Role::Relay) {
        let name = host.name().as_str();
        let tunnel = Some(host.interface().to_owned());
        match host.config().tunnel {
            Tunnel::Split => {
                assert_ne!(route_device(&lab, name, internet_v4), tunnel, "{name} leaks IPv4");
                assert_ne!(route_device(&lab, name, internet_v6), tunnel, "{name} leaks IPv6");
            }
            Tunnel::Full => {
                full_tunnel_hosts += 1;
                assert_eq!(route_device(&lab, name, internet_v4), tunnel, "{name}'s default");
                assert_eq!(route_device(&lab, name, internet_v6), tunnel, "{name}'s default");
                // Its relays stay reachable over the underlay, or the tunnel would loop.
                let relay = lab.host("relay-fra").unwrap().site().address();
                assert_eq!(route_device(&lab, name, relay.into()).as_deref(), Some("uplink"));
            }
        }
        if name != "router-aws" {
            assert_eq!(route_device(&lab, name, vpc), tunnel, "{name} must route the VPC in");
        }
    }
    assert_eq!(full_tunnel_hosts, 1, "the example has one full-tunnel laptop");
}

/// Kills the active relay while `from` pings `to`, and returns how long traffic stopped.
fn failover_time(lab: &mut Lab, from: &str, to: &str) -> Duration {
    let mut monitors = Monitors::start(lab, Policy::default());
    let primary = lab.fabric().relay_order("corp")[0].clone();
    let standby = lab.fabric().relay_order("corp")[1].clone();
    let address = lab.host(to).unwrap().config().addresses[0].addr;
    let mut ping = SteadyPing::start(lab.host(from).unwrap(), address).unwrap();
    let steady = wait_until(Duration::from_secs(20), || {
        monitors.poll().unwrap();
        ping.replies().len() >= 10 && monitors.all_on(&primary)
    });
    assert!(steady, "{from} never reached {to} steadily through {primary}");

    let killed = lab.kill(primary.as_str()).unwrap();
    let resumed = wait_until(Duration::from_secs(30), || {
        monitors.poll().unwrap();
        outage_after(ping.replies(), killed).is_some() && monitors.all_on(&standby)
    });
    assert!(resumed, "traffic did not resume within 30 s; moves: {:?}", monitors.switches());
    let outage = outage_after(ping.replies(), killed).unwrap();

    // The live devices agree with the monitors: every spoke's failover routes are on the
    // standby relay now.
    for host in lab.hosts().iter().filter(|host| host.config().failover.is_some()) {
        let routes = &host.config().failover.as_ref().unwrap().routes;
        let standby_key = lab.host(standby.as_str()).unwrap().public_key();
        let live = host.peers().unwrap();
        let peer = live.iter().find(|peer| peer.public_key == standby_key).unwrap();
        for route in routes {
            assert!(peer.allowed_ips.contains(route), "{}: {route} not on {standby}", host.name());
        }
    }
    monitors.stop().unwrap();
    eprintln!(
        "relay failover: {from} -> {to} resumed {} ms after {primary} was killed ({} requests lost)",
        outage.resumed_after.as_millis(),
        outage.lost
    );
    outage.resumed_after
}

#[test]
#[ignore = "needs root and network namespaces"]
fn traffic_between_spokes_resumes_within_ten_seconds_of_the_active_relay_dying() {
    let mut lab = build(wgfabricd());
    let time = failover_time(&mut lab, "laptop-ana", "ci-runner-1");
    assert!(time < FAILOVER_GOAL, "traffic resumed only after {time:?}");
}

/// The monitor drives any implementation through `ping` and `wg` alone; here every host runs
/// wireguard-go (the kernel module offers the same `wg` interface).
#[test]
#[ignore = "needs root and network namespaces"]
fn failover_works_the_same_over_wireguard_go() {
    let Ok(wireguard_go) = which("wireguard-go") else {
        assert!(std::env::var_os("CI").is_none(), "wireguard-go is not installed");
        eprintln!("SKIPPED: wireguard-go is not installed (scripts/test installs it)");
        return;
    };
    let mut lab = build(wireguard_go);
    let time = failover_time(&mut lab, "k8s-node-1", "laptop-ben");
    assert!(time < FAILOVER_GOAL, "traffic resumed only after {time:?}");
}

fn which(program: &str) -> Result<PathBuf, ()> {
    let paths = std::env::var_os("PATH").ok_or(())?;
    std::env::split_paths(&paths).map(|dir| dir.join(program)).find(|p| p.is_file()).ok_or(())
}
