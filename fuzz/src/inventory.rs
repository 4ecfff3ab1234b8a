//! `inventory`: inventory TOML to model, lint, addresses, and every renderer, as
//! `wgfabric check` and `wgfabric render` run them.
//!
//! The input is an inventory, optionally followed by a line `%%` and a lock file. Checked:
//! the lock reads back from its own text, before and after addresses are assigned; nothing
//! panics, whatever the findings; and where `check` finds no errors (the only inventories
//! `render` and `apply` accept), every host's wg-quick and `wg setconf` files parse with the
//! INI parser and describe exactly the host's configuration (as the agent compares them).

use std::path::Path;

use wgfabric_model::diff::diff_device;
use wgfabric_model::lint::{check, findings_text, has_errors};
use wgfabric_model::render::graph::{graph, GraphFormat};
use wgfabric_model::render::{fabric_files, host_files, setconf, wg_quick, Format};
use wgfabric_model::{wgconf, Fabric, HostConfig, Inventory, Lock};

fn lock_round_trips(lock: &Lock) {
    let text = lock.to_toml();
    match Lock::parse(Path::new("fabric.lock"), &text) {
        Ok(again) => assert_eq!(&again, lock, "the lock reads differently:\n{text}"),
        Err(error) => panic!("a written lock does not parse: {error}\n{text}"),
    }
}

fn check_rendered(config: &HostConfig) {
    for (form, text) in [("wg-quick", wg_quick(config, None)), ("setconf", setconf(config, None))] {
        let parsed = match wgconf::parse(Path::new("wg0.conf"), &text) {
            Ok(parsed) => parsed,
            Err(error) => panic!("{form} of {} does not parse: {error}\n{text}", config.host),
        };
        let diff = diff_device(config, &parsed);
        assert!(diff.is_empty(), "{form} of {} differs: {diff:?}\n{text}", config.host);
    }
}

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (inventory_text, lock_text) = match text.split_once("\n%%\n") {
        Some((inventory, lock)) => (inventory, Some(lock)),
        None => (text, None),
    };
    let path = Path::new("fabric.toml");
    let inventory = match Inventory::parse(path, inventory_text) {
        Ok(inventory) => inventory,
        Err(error) => {
            let _ = error.to_string();
            return;
        }
    };
    let findings = check(&inventory);
    let _ = findings_text(&findings, "fabric.toml");
    // Two hosts with one key, say, render two `[Peer]` sections with one key: an error
    // `check` reports, and that the renderers need not make into a valid file.
    let accepted = !has_errors(&findings);

    let old = match lock_text.map(|text| Lock::parse(Path::new("fabric.lock"), text)) {
        Some(Ok(lock)) => lock,
        Some(Err(error)) => {
            let _ = error.to_string();
            Lock::default()
        }
        None => Lock::default(),
    };
    lock_round_trips(&old);
    let Ok(lock) = old.update(&inventory) else { return };
    lock_round_trips(&lock);
    let Ok(fabric) = Fabric::new(inventory, lock) else { return };

    let configs: Vec<HostConfig> = fabric.host_configs().collect();
    for config in &configs {
        if accepted {
            check_rendered(config);
        }
        for format in [Format::WgQuick, Format::Networkd, Format::Setconf] {
            let _ = host_files(config, None, format);
        }
        // Failing over to each relay moves routes; what is rendered must still describe it.
        for relay in config.failover.iter().flat_map(|f| f.relays.iter()) {
            if let Some(moved) = config.with_active_relay(relay.as_str()) {
                if accepted {
                    check_rendered(&moved);
                }
            }
        }
    }
    for format in [Format::Json, Format::Terraform, Format::Ansible] {
        let _ = fabric_files(&fabric, &configs, format);
    }
    for format in [GraphFormat::Dot, GraphFormat::Mermaid] {
        let _ = graph(&fabric, &configs, format);
    }
}
