//! `plan` against `render`: for generated inventories and any one change to them, the plan is
//! empty exactly when a render writes the same files, and it never prints Rust's own syntax.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use wgfabric_proto::keys::PrivateKey;

use super::*;
use crate::render::{render, Format, Request};
use crate::{Fabric, Inventory, Lock};

const IPV4: [&str; 3] = ["10.1.0.0/24", "10.2.0.0/24", "10.3.0.0/16"];
const IPV6: [&str; 2] = ["fd01::/64", "fd02::/64"];
const TOPOLOGIES: [&str; 3] = ["hub-and-spoke", "mesh", "mixed"];
const ENDPOINTS: [&str; 3] = ["vpn.example.com:51820", "192.0.2.1:51820", "[2001:db8::1]:51821"];
const ROUTES: [&str; 3] = ["192.168.1.0/24", "192.168.2.0/24", "172.16.0.0/16"];
const GROUPS: [&str; 2] = ["ci", "eng"];
const KEY_FILES: [&str; 2] = ["/etc/wg/a.key", "/etc/wg/b.key"];

#[derive(Debug, Clone)]
struct NetworkParams {
    ipv4: Option<usize>,
    ipv6: Option<usize>,
    topology: usize,
    interface: Option<&'static str>,
}

#[derive(Debug, Clone)]
struct HostParams {
    network: usize,
    role: usize,
    endpoint: Option<usize>,
    listen_port: Option<u16>,
    key: u8,
    nat: bool,
    routes: u8,
    groups: u8,
    full_tunnel: bool,
    mtu: Option<u16>,
    underlay_mtu: Option<u16>,
    keepalive: Option<u16>,
    priority: Option<u32>,
    key_file: Option<usize>,
}

#[derive(Debug, Clone)]
struct Params {
    keepalive: Option<u16>,
    mtu: Option<u16>,
    key_dir: Option<&'static str>,
    networks: Vec<NetworkParams>,
    hosts: Vec<HostParams>,
}

fn network_params() -> impl Strategy<Value = NetworkParams> {
    (
        prop::option::of(0..IPV4.len()),
        prop::option::of(0..IPV6.len()),
        0..TOPOLOGIES.len(),
        prop::option::of(prop::sample::select(vec!["wg0", "wg1"])),
    )
        .prop_map(|(ipv4, ipv6, topology, interface)| NetworkParams {
            ipv4,
            ipv6,
            topology,
            interface,
        })
}

fn host_params() -> impl Strategy<Value = HostParams> {
    (
        (0..2usize, 0..3usize, prop::option::of(0..ENDPOINTS.len())),
        (prop::option::of(prop::sample::select(vec![51820u16, 51821])), 0..2u8, any::<bool>()),
        (0..8u8, 0..4u8, any::<bool>()),
        (
            prop::option::of(prop::sample::select(vec![1280u16, 1420])),
            prop::option::of(prop::sample::select(vec![1400u16, 1500])),
            prop::option::of(prop::sample::select(vec![0u16, 10, 25])),
        ),
        (prop::option::of(prop::sample::select(vec![10u32, 100])), prop::option::of(0..2usize)),
    )
        .prop_map(
            |(
                (network, role, endpoint),
                (listen_port, key, nat),
                (routes, groups, full_tunnel),
                (mtu, underlay_mtu, keepalive),
                (priority, key_file),
            )| HostParams {
                network,
                role,
                endpoint,
                listen_port,
                key,
                nat,
                routes,
                groups,
                full_tunnel,
                mtu,
                underlay_mtu,
                keepalive,
                priority,
                key_file,
            },
        )
}

fn params() -> impl Strategy<Value = Params> {
    (
        prop::option::of(prop::sample::select(vec![0u16, 25])),
        prop::option::of(prop::sample::select(vec![1380u16, 1420])),
        prop::option::of(prop::sample::select(vec!["/etc/wgfabric", "/var/lib/wg"])),
        prop::collection::vec(network_params(), 1..=2),
        prop::collection::vec(host_params(), 1..=5),
    )
        .prop_map(|(keepalive, mtu, key_dir, networks, hosts)| Params {
            keepalive,
            mtu,
            key_dir,
            networks,
            hosts,
        })
}

/// One change to an inventory: field `field` of host or network `index` takes the value it
/// has in `other`, or a host is added or removed, or a default changes.
fn mutate(mut params: Params, other: &Params, field: usize, index: usize) -> Params {
    let h = index % params.hosts.len();
    let source = other.hosts[index % other.hosts.len()].clone();
    let host = &mut params.hosts[h];
    match field {
        0 => host.network = source.network,
        1 => host.role = source.role,
        2 => host.endpoint = source.endpoint,
        3 => host.listen_port = source.listen_port,
        4 => host.key = source.key,
        5 => host.nat = source.nat,
        6 => host.routes = source.routes,
        7 => host.groups = source.groups,
        8 => host.full_tunnel = source.full_tunnel,
        9 => host.mtu = source.mtu,
        10 => host.underlay_mtu = source.underlay_mtu,
        11 => host.keepalive = source.keepalive,
        12 => host.priority = source.priority,
        13 => host.key_file = source.key_file,
        14 if params.hosts.len() > 1 => {
            params.hosts.remove(h);
        }
        14 | 15 => params.hosts.push(source),
        16 => params.keepalive = other.keepalive,
        17 => params.mtu = other.mtu,
        18 => params.key_dir = other.key_dir,
        _ => {
            let n = index % params.networks.len();
            let source = other.networks[index % other.networks.len()].clone();
            let network = &mut params.networks[n];
            match field {
                19 => network.ipv4 = source.ipv4,
                20 => network.ipv6 = source.ipv6,
                21 => network.topology = source.topology,
                _ => network.interface = source.interface,
            }
        }
    }
    params
}

const FIELDS: usize = 23;

/// The inventory text of `params`, made valid: a network without prefixes gets an IPv4 one,
/// a role its topology does not allow becomes one it does, priority only on relays.
fn inventory_text(params: &Params) -> String {
    let mut text = String::from("[defaults]\n");
    if let Some(keepalive) = params.keepalive {
        text.push_str(&format!("keepalive = {keepalive}\n"));
    }
    if let Some(mtu) = params.mtu {
        text.push_str(&format!("mtu = {mtu}\n"));
    }
    if let Some(dir) = params.key_dir {
        text.push_str(&format!("key_dir = \"{dir}\"\n"));
    }
    let mut topologies = Vec::new();
    for (n, network) in params.networks.iter().enumerate() {
        text.push_str(&format!("\n[network.n{n}]\n"));
        let ipv4 = match (network.ipv4, network.ipv6) {
            (None, None) => Some(n),
            (ipv4, _) => ipv4,
        };
        if let Some(i) = ipv4 {
            text.push_str(&format!("ipv4 = \"{}\"\n", IPV4[i % IPV4.len()]));
        }
        if let Some(i) = network.ipv6 {
            text.push_str(&format!("ipv6 = \"{}\"\n", IPV6[i]));
        }
        let topology = TOPOLOGIES[network.topology];
        text.push_str(&format!("topology = \"{topology}\"\n"));
        if let Some(interface) = network.interface {
            text.push_str(&format!("interface = \"{interface}\"\n"));
        }
        topologies.push(topology);
    }
    for (i, host) in params.hosts.iter().enumerate() {
        let n = host.network % params.networks.len();
        let roles: &[&str] = match topologies[n] {
            "hub-and-spoke" => &["relay", "spoke"],
            "mesh" => &["mesh"],
            _ => &["relay", "spoke", "mesh"],
        };
        let role = roles[host.role % roles.len()];
        let key = PrivateKey::from_bytes([u8::try_from(i * 2).unwrap() + host.key + 1; 32]);
        text.push_str(&format!(
            "\n[host.h{i}]\nnetwork = \"n{n}\"\nrole = \"{role}\"\npublic_key = \"{}\"\n",
            key.public_key()
        ));
        let pick = |mask: u8, values: &[&str]| -> String {
            let chosen: Vec<String> = (0..values.len())
                .filter(|bit| mask & (1 << bit) != 0)
                .map(|bit| format!("\"{}\"", values[bit]))
                .collect();
            chosen.join(", ")
        };
        text.push_str(&format!("routes = [{}]\n", pick(host.routes, &ROUTES)));
        text.push_str(&format!("groups = [{}]\n", pick(host.groups, &GROUPS)));
        text.push_str(&format!("nat = {}\n", host.nat));
        if host.full_tunnel {
            text.push_str("tunnel = \"full\"\n");
        }
        let numbers = [
            ("listen_port", host.listen_port),
            ("mtu", host.mtu),
            ("underlay_mtu", host.underlay_mtu),
            ("keepalive", host.keepalive),
        ];
        for (key, value) in numbers {
            if let Some(value) = value {
                text.push_str(&format!("{key} = {value}\n"));
            }
        }
        if let Some(endpoint) = host.endpoint {
            text.push_str(&format!("endpoint = \"{}\"\n", ENDPOINTS[endpoint]));
        }
        if let (Some(priority), "relay") = (host.priority, role) {
            text.push_str(&format!("priority = {priority}\n"));
        }
        if let Some(file) = host.key_file {
            text.push_str(&format!("key_file = \"{}\"\n", KEY_FILES[file]));
        }
    }
    text
}

fn fabric(text: &str, lock: &Lock) -> Fabric {
    let inventory =
        Inventory::parse(Path::new("fabric.toml"), text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    // A renumbered network cannot keep its lock; a fresh one renders just as well.
    let lock = lock.update(&inventory).or_else(|_| Lock::default().update(&inventory)).unwrap();
    Fabric::new(inventory, lock).unwrap()
}

/// Every file a full render into a directory writes, `state.json` included.
fn rendered_files(fabric: &Fabric) -> BTreeMap<PathBuf, String> {
    let request = Request { host: None, formats: &Format::ALL, keys: None };
    let rendered = render(fabric, request).unwrap();
    let mut files: BTreeMap<PathBuf, String> =
        rendered.iter().map(|file| (file.path.clone(), file.contents.clone())).collect();
    files.insert(PathBuf::from(STATE_FILE), RenderedState::of(fabric).to_json());
    files
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn plan_is_empty_exactly_when_render_writes_the_same_files(
        before in params(),
        other in params(),
        field in 0..FIELDS,
        index in 0..8usize,
    ) {
        let after = mutate(before.clone(), &other, field, index);
        let old = fabric(&inventory_text(&before), &Lock::default());
        let new = fabric(&inventory_text(&after), old.lock());
        let last = RenderedState::of(&old);
        let plan = plan(&RenderedState::of(&new), &last);
        let same_files = rendered_files(&old) == rendered_files(&new);
        prop_assert_eq!(plan.is_empty(), same_files, "plan: {}", plan_text(&plan));

        // Whatever changed is said in the inventory's terms, never in Rust's.
        let text = plan_text(&plan);
        for debug in ["Some(", "None", "Split", "Full", "Relay", "Spoke", "Mesh", "[\"", "{"] {
            prop_assert!(!text.contains(debug), "`{}` in:\n{}", debug, text);
        }
    }
}

/// A relay and a laptop; keepalive from `[defaults]`.
fn example_text() -> String {
    let key = |seed: u8| PrivateKey::from_bytes([seed; 32]).public_key();
    format!(
        "[defaults]\nkeepalive = 25\n[network.corp]\nipv4 = \"10.77.0.0/24\"\n\
         [host.relay]\nrole = \"relay\"\nendpoint = \"relay.example.com:51820\"\n\
         public_key = \"{}\"\n[host.laptop]\npublic_key = \"{}\"\n",
        key(1),
        key(2)
    )
}

/// The plan from the example to the example with `edit` applied.
fn plan_after(edit: impl Fn(String) -> String) -> String {
    let before = fabric(&example_text(), &Lock::default());
    let after = fabric(&edit(example_text()), before.lock());
    plan_text(&plan(&RenderedState::of(&after), &RenderedState::of(&before)))
}

#[test]
fn a_key_file_change_is_a_change() {
    let text = plan_after(|text| {
        text.replace("[host.laptop]\n", "[host.laptop]\nkey_file = \"/etc/wg/laptop.key\"\n")
    });
    assert_eq!(
        text,
        "~ laptop:\n    ~ key_source file:/etc/wgfabric/private.key -> file:/etc/wg/laptop.key\n\
         1 host(s) change.\n"
    );
}

#[test]
fn values_are_written_as_the_inventory_writes_them() {
    let text = plan_after(|text| {
        text.replace("[host.laptop]\n", "[host.laptop]\nkeepalive = 10\ntunnel = \"full\"\n")
            .replace("endpoint = \"relay.example.com:51820\"\n", "")
    });
    assert!(text.contains("    ~ tunnel split -> full\n"), "{text}");
    assert!(text.contains("        keepalive 25 -> 10\n"), "{text}");
    assert!(text.contains("        endpoint \"relay.example.com:51820\" -> (none)\n"), "{text}");
    assert!(text.contains("~ relay:\n    ~ listen_port 51820 -> (none)\n"), "{text}");
    assert!(text.contains("    ~ endpoint \"relay.example.com:51820\" -> (none)\n"), "{text}");
    let nothing = plan_after(|text| text);
    assert_eq!(nothing, "No changes: a render would write exactly the files of the last one.\n");
}

#[test]
fn a_policy_change_shows_each_hosts_firewall_rules() {
    let text = plan_after(|text| {
        let text = text.replace("[host.laptop]\n", "[host.laptop]\ngroups = [\"staff\"]\n");
        format!("{text}[[policy]]\nname = \"staff-to-relay\"\nfrom = [\"group:staff\"]\nto = [\"relay\"]\nports = [\"tcp/22\"]\n")
    });
    assert!(text.contains("~ relay:"), "{text}");
    assert!(
        text.contains(
            "firewall_input (none) -> failover-probes (allow from 10.77.0.0/24 to this host, \
             icmp); staff-to-relay (allow from 10.77.0.1/32 to this host, tcp/22); then drop the rest"
        ),
        "{text}"
    );
    assert!(text.contains("firewall_antispoof (none) -> 10.77.0.0/24"), "{text}");
    assert!(
        text.contains("~ laptop:\n    ~ firewall_input (none) -> then drop the rest\n"),
        "{text}"
    );
}
