//! Tests of the fabric model: relay order, what each kind of host routes where, failover
//! moves, topologies, and properties over random fabrics.

use std::path::Path;

use super::*;

const EXAMPLE: &str = crate::example::INVENTORY;

fn example() -> Fabric {
    let inventory = Inventory::parse(Path::new("examples/fabric.toml"), EXAMPLE).unwrap();
    let lock = Lock::default().update(&inventory).unwrap();
    Fabric::new(inventory, lock).unwrap()
}

fn allowed(config: &HostConfig, peer: &str) -> Vec<String> {
    config.peer(peer).unwrap().allowed_ips.iter().map(ToString::to_string).collect()
}

#[test]
fn relays_come_in_priority_order() {
    let fabric = example();
    let order: Vec<&str> = fabric.relay_order("corp").iter().map(Name::as_str).collect();
    assert_eq!(order, ["relay-fra", "relay-iad"]);
}

#[test]
fn a_spoke_routes_the_overlay_through_its_primary_relay() {
    let config = example().host_config("laptop-ana").unwrap();
    let peers: Vec<&str> = config.peers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(peers, ["relay-fra", "relay-iad"]);
    let fra = allowed(&config, "relay-fra");
    for route in ["10.77.0.0/16", "fd77:77::/64", "10.20.0.0/16", "10.244.1.0/24"] {
        assert!(fra.contains(&route.to_owned()), "{route} missing from {fra:?}");
    }
    let iad = allowed(&config, "relay-iad");
    assert_eq!(iad.len(), 2, "only relay-iad's own addresses: {iad:?}");
    assert!(iad.iter().all(|cidr| cidr.ends_with("/32") || cidr.ends_with("/128")));
    assert_eq!(config.peer("relay-fra").unwrap().persistent_keepalive, Some(25));
    let failover = config.failover.as_ref().unwrap();
    assert_eq!(failover.active.as_str(), "relay-fra");
}

#[test]
fn a_subnet_router_does_not_route_its_own_subnet_into_the_tunnel() {
    let config = example().host_config("router-aws").unwrap();
    assert!(!allowed(&config, "relay-fra").contains(&"10.20.0.0/16".to_owned()));
    assert!(allowed(&config, "relay-fra").contains(&"10.244.1.0/24".to_owned()));
}

#[test]
fn a_full_tunnel_spoke_sends_everything_to_its_primary_relay() {
    let config = example().host_config("laptop-ben").unwrap();
    let fra = allowed(&config, "relay-fra");
    assert!(fra.contains(&"0.0.0.0/0".to_owned()) && fra.contains(&"::/0".to_owned()));
    assert!(!fra.contains(&"10.77.0.0/16".to_owned()), "covered by the default route");
}

#[test]
fn relays_reach_every_host_directly() {
    let config = example().host_config("relay-fra").unwrap();
    assert_eq!(config.peers.len(), 6);
    assert_eq!(config.peers[0].name.as_str(), "relay-iad");
    assert!(config.failover.is_none());
    assert!(allowed(&config, "router-aws").contains(&"10.20.0.0/16".to_owned()));
    assert_eq!(config.peer("router-aws").unwrap().persistent_keepalive, None);
    assert_eq!(config.listen_port, Some(51820));
}

#[test]
fn failing_over_moves_only_the_failover_routes() {
    let config = example().host_config("laptop-ana").unwrap();
    let moved = config.with_active_relay("relay-iad").unwrap();
    let routes = &config.failover.as_ref().unwrap().routes;
    for route in routes {
        assert!(moved.peer("relay-iad").unwrap().allowed_ips.contains(route));
        assert!(!moved.peer("relay-fra").unwrap().allowed_ips.contains(route));
    }
    assert_eq!(allowed(&moved, "relay-fra").len(), 2);
    assert_eq!(moved.with_active_relay("relay-fra").unwrap(), config);
    assert!(config.with_active_relay("laptop-ben").is_none());
    // Moving to the relay that already carries them (a monitor that failed back) keeps them.
    assert_eq!(config.with_active_relay("relay-fra").unwrap(), config);
}

#[test]
fn mesh_and_mixed_topologies() {
    let key = |seed: u8| wgfabric_proto::keys::PrivateKey::from_bytes([seed; 32]).public_key();
    let text = format!(
        r#"[network.lab]
ipv4 = "10.9.0.0/24"
topology = "mixed"
[host.r]
role = "relay"
endpoint = "r.example.com:51820"
public_key = "{}"
[host.m1]
role = "mesh"
endpoint = "m1.example.com:51820"
routes = ["192.168.1.0/24"]
public_key = "{}"
[host.m2]
role = "mesh"
endpoint = "m2.example.com:51820"
public_key = "{}"
[host.s]
routes = ["192.168.2.0/24"]
public_key = "{}"
"#,
        key(1),
        key(2),
        key(3),
        key(4)
    );
    let inventory = Inventory::parse(Path::new("lab.toml"), &text).unwrap();
    let lock = Lock::default().update(&inventory).unwrap();
    let fabric = Fabric::new(inventory, lock).unwrap();

    let m2 = fabric.host_config("m2").unwrap();
    let peers: Vec<&str> = m2.peers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(peers, ["r", "m1"]);
    assert!(allowed(&m2, "m1").contains(&"192.168.1.0/24".to_owned()));
    assert!(allowed(&m2, "r").contains(&"192.168.2.0/24".to_owned()), "spoke routes via relay");
    assert!(!allowed(&m2, "r").contains(&"192.168.1.0/24".to_owned()), "mesh routes direct");

    let s = fabric.host_config("s").unwrap();
    assert_eq!(s.peers.len(), 1);
    assert!(allowed(&s, "r").contains(&"192.168.1.0/24".to_owned()));
    assert!(!allowed(&s, "r").contains(&"192.168.2.0/24".to_owned()), "own routes stay local");
}

#[test]
fn a_stale_lock_is_refused() {
    let inventory = Inventory::parse(Path::new("examples/fabric.toml"), EXAMPLE).unwrap();
    assert!(matches!(Fabric::new(inventory, Lock::default()), Err(Error::Address(_))));
}

mod properties {
    use std::collections::HashSet;
    use std::fmt::Write as _;

    use proptest::prelude::*;

    use super::*;
    use crate::diff::diff_device;
    use crate::render::wg_quick;
    use crate::wgconf;

    /// A random valid fabric: up to 3 relays, mesh members and spokes, distinct /24 routes on
    /// some hosts, some full tunnels.
    fn fabric_text() -> impl Strategy<Value = String> {
        let hosts =
            proptest::collection::vec((0u8..3, any::<bool>(), any::<bool>(), any::<bool>()), 1..14);
        (0usize..3, 0usize..4, hosts).prop_map(|(topology, relays, hosts)| {
            let topology = ["hub-and-spoke", "mesh", "mixed"][topology];
            let mut text = format!("[network.n]\nipv4 = \"10.1.0.0/24\"\nipv6 = \"fd01::/64\"\ntopology = \"{topology}\"\n");
            let relays = if topology == "mesh" { 0 } else { relays.max(1) };
            for (i, (kind, routed, full, endpoint)) in hosts.iter().enumerate() {
                let role = match (topology, kind) {
                    ("mesh", _) => "mesh",
                    (_, _) if i < relays => "relay",
                    ("mixed", 0) => "mesh",
                    _ => "spoke",
                };
                let key = wgfabric_proto::keys::PublicKey::from_bytes([i as u8 + 1; 32]);
                let _ = write!(text, "[host.h{i:02}]\nrole = \"{role}\"\npublic_key = \"{key}\"\n");
                if role == "relay" {
                    // Priorities against name order, so the relay order is not just the name order.
                    let _ = writeln!(text, "endpoint = \"h{i}.example.com:51820\"\npriority = {}", 20 - i);
                } else if *endpoint {
                    let _ = writeln!(text, "endpoint = \"h{i}.example.com:51820\"");
                }
                if *routed {
                    let _ = writeln!(text, "routes = [\"192.168.{i}.0/24\"]");
                }
                if *full && role != "relay" && topology != "mesh" {
                    let _ = writeln!(text, "tunnel = \"full\"");
                }
            }
            text
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// In every host's configuration an allowed IP belongs to one peer only, the host's own
        /// addresses and routes never point into the tunnel, and the wg-quick file parses back
        /// to the same device.
        #[test]
        fn every_rendered_config_is_consistent(text in fabric_text()) {
            let inventory = Inventory::parse(Path::new("p.toml"), &text).unwrap();
            let lock = Lock::default().update(&inventory).unwrap();
            let fabric = Fabric::new(inventory, lock).unwrap();
            for config in fabric.host_configs() {
                let mut seen = HashSet::new();
                let own: HashSet<Cidr> = fabric
                    .addresses(config.host.as_str())
                    .unwrap()
                    .addresses()
                    .map(Cidr::host)
                    .chain(config.routes.iter().copied())
                    .collect();
                for peer in &config.peers {
                    prop_assert!(peer.name != config.host);
                    for cidr in &peer.allowed_ips {
                        prop_assert!(seen.insert(*cidr), "{} twice in {}", cidr, config.host);
                        prop_assert!(!own.contains(cidr), "{} routes its own {} away", config.host, cidr);
                    }
                }
                let parsed = wgconf::parse(Path::new("wg0.conf"), &wg_quick(&config, None)).unwrap();
                prop_assert!(diff_device(&config, &parsed).is_empty());
            }
        }
    }
}

#[test]
fn spokes_learn_which_spokes_they_may_go_direct_with() {
    let fabric = example();
    let ana = fabric.host_config("laptop-ana").unwrap();
    let paths = ana.paths.as_ref().expect("a spoke has direct paths");
    let reasons: Vec<(&str, Option<&str>)> =
        paths.peers.iter().map(|p| (p.name.as_str(), p.never.map(Never::as_str))).collect();
    // Engineers reach everything both ways; the CI runner may not open connections to Ana,
    // and only relays would hold it to that.
    assert_eq!(
        reasons,
        [
            ("ci-runner-1", Some("policy")),
            ("k8s-node-1", Some("policy")),
            ("laptop-ben", None),
            ("router-aws", Some("policy")),
        ]
    );
    let ben = paths.peer("laptop-ben").unwrap();
    let addresses: Vec<String> = ben.addresses.iter().map(ToString::to_string).collect();
    assert!(addresses.iter().all(|a| a.ends_with("/32") || a.ends_with("/128")), "{addresses:?}");
    assert_eq!(addresses.len(), 2);
    assert!(fabric.host_config("relay-fra").unwrap().paths.is_none());
}

#[test]
fn direct_never_and_an_open_policy_decide_each_pair() {
    let open = EXAMPLE.split("[[policy]]").next().unwrap();
    let text = open.replace("groups = [\"ci\"]", "groups = [\"ci\"]\ndirect = \"never\"");
    let inventory = Inventory::parse(Path::new("fabric.toml"), &text).unwrap();
    let lock = Lock::default().update(&inventory).unwrap();
    let fabric = Fabric::new(inventory, lock).unwrap();
    let ana = fabric.host_config("laptop-ana").unwrap();
    let never = |config: &HostConfig, peer: &str| {
        config.paths.as_ref().unwrap().peer(peer).unwrap().never.map(Never::as_str)
    };
    assert_eq!(never(&ana, "k8s-node-1"), None, "no policy: every pair may go direct");
    assert_eq!(never(&ana, "ci-runner-1"), Some("direct-never-peer"));
    let ci = fabric.host_config("ci-runner-1").unwrap();
    assert_eq!(never(&ci, "laptop-ana"), Some("direct-never-host"));

    let text = open.replace("interface = \"wg0\"", "interface = \"wg0\"\ndirect = \"never\"");
    let inventory = Inventory::parse(Path::new("fabric.toml"), &text).unwrap();
    let lock = Lock::default().update(&inventory).unwrap();
    let ana = Fabric::new(inventory, lock).unwrap().host_config("laptop-ana").unwrap();
    assert_eq!(never(&ana, "laptop-ben"), Some("direct-never-network"));
}
