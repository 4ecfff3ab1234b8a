//! Machine-readable exports of the whole fabric: a structured JSON document, and the flat
//! object of strings that Terraform's `external` data source requires.
//!
//! The `external` data source runs a program, writes a JSON query to its standard input and
//! accepts only a single JSON object whose values are all strings. `terraform.json` is exactly
//! that, with keys `HOST.FIELD` (`laptop-ana.ipv4`) and `NETWORK.relay_order`, so it can be
//! produced by `wgfabric render --format terraform` as the data source's program.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::io::{self, Write};

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::config::HostConfig;
use crate::fabric::Fabric;
use crate::serde_stream::MapOnce;

/// `fabric.json`: networks (with their relay order) and every host with its addresses and
/// desired configuration. Contains no secret.
pub fn fabric_json(fabric: &Fabric, configs: &[HostConfig]) -> String {
    let mut text = Vec::new();
    // Writing to memory cannot fail, nor can serializing maps with string keys.
    let _ = write_fabric_json(fabric, configs.iter(), &mut text);
    String::from_utf8(text).unwrap_or_default()
}

/// Writes [`fabric_json`] of `configs` (in name order) to `out` host by host, never holding
/// the whole document: in a fabric of thousands of hosts it runs to tens of megabytes.
///
/// # Errors
/// Whatever writing to `out` reports.
pub fn write_fabric_json<C: Borrow<HostConfig>>(
    fabric: &Fabric,
    configs: impl Iterator<Item = C>,
    mut out: impl Write,
) -> io::Result<()> {
    // Keys in sorted order, as in every object of the document (`serde_json::Map` sorts).
    #[derive(Serialize)]
    #[serde(bound = "MapOnce<I>: Serialize")]
    struct Document<'a, I> {
        hosts: MapOnce<I>,
        networks: BTreeMap<&'a str, Value>,
        version: u32,
    }
    let inventory = fabric.inventory();
    let networks = inventory
        .networks
        .values()
        .map(|network| {
            let relays: Vec<&str> =
                fabric.relay_order(network.name.as_str()).iter().map(|n| n.as_str()).collect();
            let value = json!({
                "ipv4": network.ipv4.map(|c| c.to_string()),
                "ipv6": network.ipv6.map(|c| c.to_string()),
                "topology": network.topology.as_str(),
                "interface": network.interface,
                "relay_order": relays,
            });
            (network.name.as_str(), value)
        })
        .collect();
    let hosts = configs.map(|config| {
        let config = config.borrow();
        let host = &inventory.hosts[&config.host];
        let addresses = fabric.addresses(config.host.as_str());
        let value = json!({
            "ipv4": addresses.and_then(|a| a.ipv4).map(|a| a.to_string()),
            "ipv6": addresses.and_then(|a| a.ipv6).map(|a| a.to_string()),
            "endpoint": host.endpoint.as_ref().map(ToString::to_string),
            "nat": host.nat,
            "groups": host.groups,
            "config": config,
        });
        (config.host.clone(), value)
    });
    let document = Document { hosts: MapOnce::new(hosts), networks, version: 1 };
    serde_json::to_writer_pretty(&mut out, &document)?;
    out.write_all(b"\n")
}

/// `terraform.json`: one flat JSON object of strings (absent values are empty strings).
pub fn terraform_json(fabric: &Fabric) -> String {
    let inventory = fabric.inventory();
    let mut flat = Map::new();
    let mut put = |key: String, value: String| {
        flat.insert(key, Value::String(value));
    };
    let names = |names: &mut dyn Iterator<Item = &str>| names.collect::<Vec<_>>().join(",");
    put("networks".into(), names(&mut inventory.networks.keys().map(|n| n.as_str())));
    put("hosts".into(), names(&mut inventory.hosts.keys().map(|n| n.as_str())));
    for network in inventory.networks.values() {
        let name = &network.name;
        put(format!("{name}.ipv4"), network.ipv4.map(|c| c.to_string()).unwrap_or_default());
        put(format!("{name}.ipv6"), network.ipv6.map(|c| c.to_string()).unwrap_or_default());
        let relays = fabric.relay_order(name.as_str());
        put(format!("{name}.relay_order"), names(&mut relays.iter().map(|n| n.as_str())));
    }
    for host in inventory.hosts.values() {
        let name = &host.name;
        let addresses = fabric.addresses(name.as_str());
        let text = |value: Option<String>| value.unwrap_or_default();
        put(format!("{name}.network"), host.network.to_string());
        put(format!("{name}.role"), host.role.as_str().into());
        put(format!("{name}.public_key"), host.public_key.to_base64());
        put(format!("{name}.ipv4"), text(addresses.and_then(|a| a.ipv4).map(|a| a.to_string())));
        put(format!("{name}.ipv6"), text(addresses.and_then(|a| a.ipv6).map(|a| a.to_string())));
        put(format!("{name}.endpoint"), text(host.endpoint.as_ref().map(ToString::to_string)));
        put(format!("{name}.listen_port"), text(host.listen_port.map(|p| p.to_string())));
    }
    let mut text = serde_json::to_string_pretty(&Value::Object(flat)).unwrap_or_default();
    text.push('\n');
    text
}
