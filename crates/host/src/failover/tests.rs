//! Tests of the failover monitor, round by round: probes, when the routes move, fail-back,
//! and the `wg set` a switch runs.

use super::*;
use wgfabric_model::example::fabric as example_fabric;

fn monitor(host: &str, policy: Policy) -> Monitor {
    Monitor::new(example_fabric().unwrap().host_config(host).unwrap(), policy).unwrap()
}

/// Feeds `rounds` of (relay-fra alive, relay-iad alive) and returns the switches, by round.
fn run(monitor: &mut Monitor, rounds: &[(bool, bool)]) -> Vec<(usize, String, Reason)> {
    rounds
        .iter()
        .enumerate()
        .filter_map(|(n, (fra, iad))| {
            let switch = monitor.handle_round(&[*fra, *iad])?;
            Some((n + 1, switch.to.to_string(), switch.reason))
        })
        .collect()
}

#[test]
fn probes_each_relay_at_its_own_overlay_address_in_relay_order() {
    let monitor = monitor("laptop-ana", Policy::default());
    let probes: Vec<String> =
        monitor.probes().map(|(relay, addr)| format!("{relay}@{addr}")).collect();
    assert_eq!(probes, ["relay-fra@10.77.0.5", "relay-iad@10.77.0.6"]);
    assert_eq!(monitor.active().as_str(), "relay-fra");
}

#[test]
fn relays_and_single_relay_hosts_cannot_fail_over() {
    let fabric = example_fabric().unwrap();
    let relay = fabric.host_config("relay-fra").unwrap();
    assert_eq!(Monitor::new(relay, Policy::default()).unwrap_err().0, "relay-fra");
    let mut lonely = fabric.host_config("laptop-ana").unwrap();
    lonely.peers.retain(|peer| peer.name.as_str() != "relay-iad");
    assert!(Monitor::new(lonely, Policy::default()).is_err());
}

#[test]
fn the_active_relay_is_down_after_three_dead_rounds_and_routes_move_to_the_next() {
    let mut monitor = monitor("laptop-ana", Policy::default());
    let up = (true, true);
    let fra_dead = (false, true);
    let switches = run(&mut monitor, &[up, up, fra_dead, fra_dead, fra_dead, fra_dead]);
    assert_eq!(switches, [(5, "relay-iad".to_owned(), Reason::Failover)]);
    assert_eq!(monitor.active().as_str(), "relay-iad");
    let routes = &monitor.config().failover.as_ref().unwrap().routes;
    let iad = monitor.config().peer("relay-iad").unwrap();
    assert!(routes.iter().all(|route| iad.allowed_ips.contains(route)));
}

#[test]
fn a_dead_round_between_live_ones_is_forgiven() {
    let mut monitor = monitor("laptop-ana", Policy::default());
    let flaky = [(true, true), (false, true), (false, true), (true, true), (false, true)];
    assert!(run(&mut monitor, &flaky).is_empty());
    assert_eq!(monitor.active().as_str(), "relay-fra");
}

#[test]
fn nothing_moves_while_every_relay_is_dead_and_the_first_to_return_wins() {
    let mut monitor = monitor("laptop-ana", Policy::default());
    let dead = (false, false);
    let switches = run(&mut monitor, &[dead, dead, dead, dead, (false, true)]);
    assert_eq!(switches, [(5, "relay-iad".to_owned(), Reason::Failover)]);
}

#[test]
fn the_preferred_relay_takes_the_routes_back_after_five_live_rounds() {
    let mut monitor = monitor("laptop-ana", Policy::default());
    let mut rounds = vec![(false, true); 3];
    rounds.extend([(true, true); 5]);
    let switches = run(&mut monitor, &rounds);
    assert_eq!(
        switches,
        [
            (3, "relay-iad".to_owned(), Reason::Failover),
            (8, "relay-fra".to_owned(), Reason::FailBack)
        ]
    );
    assert_eq!(
        monitor.config(),
        &example_fabric().unwrap().host_config("laptop-ana").unwrap(),
        "failing back restores the rendered configuration exactly"
    );
}

#[test]
fn without_fail_back_the_host_stays_on_the_standby() {
    let mut monitor = monitor("laptop-ana", Policy { fail_back: false, ..Policy::default() });
    let mut rounds = vec![(false, true); 3];
    rounds.extend([(true, true); 20]);
    assert_eq!(run(&mut monitor, &rounds).len(), 1);
    assert_eq!(monitor.active().as_str(), "relay-iad");
}

#[test]
fn a_switch_is_one_request_that_gives_the_routes_to_the_new_relay_first() {
    let mut monitor = monitor("ci-runner-1", Policy::default());
    let switch = run_to_switch(&mut monitor);
    let fabric = example_fabric().unwrap();
    let text = wgfabric_proto::uapi::format_set(&switch.set_request());
    let hex = |host: &str| fabric.inventory().hosts[host].public_key.to_hex();
    let allowed =
        |list: &str| list.split(',').map(|cidr| format!("allowed_ip={cidr}\n")).collect::<String>();
    let expected = format!(
        "set=1\npublic_key={}\nupdate_only=true\nreplace_allowed_ips=true\n{}\
         public_key={}\nupdate_only=true\nreplace_allowed_ips=true\n{}\n",
        hex("relay-iad"),
        allowed("10.20.0.0/16,10.77.0.0/16,10.77.0.6/32,10.244.1.0/24,fd77:77::/64,fd77:77::6/128"),
        hex("relay-fra"),
        allowed("10.77.0.5/32,fd77:77::5/128"),
    );
    assert_eq!(text, expected);
    assert_eq!(switch.from.as_str(), "relay-fra");
}

fn run_to_switch(monitor: &mut Monitor) -> Switch {
    (0..10).find_map(|_| monitor.handle_round(&[false, true])).unwrap()
}

#[test]
fn a_full_tunnel_host_moves_its_default_routes() {
    let mut monitor = monitor("laptop-ben", Policy::default());
    let switch = run_to_switch(&mut monitor);
    let iad = switch.config.peer("relay-iad").unwrap();
    let iad: Vec<String> = iad.allowed_ips.iter().map(ToString::to_string).collect();
    assert!(iad.contains(&"0.0.0.0/0".to_owned()) && iad.contains(&"::/0".to_owned()), "{iad:?}");
}
