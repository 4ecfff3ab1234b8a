//! Tests of address assignment: lowest free address in name order, addresses held for
//! removed hosts, renumbering refused, and the lock file's text.

use std::collections::BTreeSet;

use proptest::prelude::*;
use wgfabric_proto::keys::PrivateKey;

use super::*;

/// An inventory with one network and the given hosts, in the given order.
fn inventory(hosts: &[&str], ipv6: bool) -> Inventory {
    let mut text = String::from("[network.corp]\nipv4 = \"10.77.0.0/24\"\n");
    if ipv6 {
        text.push_str("ipv6 = \"fd77::/64\"\n");
    }
    for (i, host) in hosts.iter().enumerate() {
        let key = PrivateKey::from_bytes([i as u8 + 1; 32]).public_key();
        text.push_str(&format!("[host.{host}]\npublic_key = \"{key}\"\n"));
    }
    Inventory::parse(Path::new("fabric.toml"), &text).unwrap()
}

fn ipv4(lock: &Lock, host: &str) -> String {
    lock.hosts[host].ipv4.unwrap().to_string()
}

#[test]
fn assigns_lowest_free_in_name_order_with_matching_families() {
    let lock = Lock::default().update(&inventory(&["b", "a"], true)).unwrap();
    assert_eq!(ipv4(&lock, "a"), "10.77.0.1");
    assert_eq!(ipv4(&lock, "b"), "10.77.0.2");
    assert_eq!(lock.hosts["b"].ipv6.unwrap().to_string(), "fd77::2");
}

#[test]
fn removed_addresses_are_held_until_released() {
    let lock = Lock::default().update(&inventory(&["a", "b", "c"], false)).unwrap();
    let lock = lock.update(&inventory(&["a", "c"], false)).unwrap();
    assert_eq!(lock.removed.len(), 1);
    let lock = lock.update(&inventory(&["a", "c", "d"], false)).unwrap();
    assert_eq!(ipv4(&lock, "d"), "10.77.0.4", "b's address is held");

    let mut released = lock.clone();
    assert!(matches!(released.release("a"), Err(Error::Refused(_))));
    assert!(matches!(released.release("zz"), Err(Error::NotFound(_))));
    assert_eq!(released.release("b").unwrap()[0].assignment.ipv4.unwrap().to_string(), "10.77.0.2");
    let released = released.update(&inventory(&["a", "c", "d", "e"], false)).unwrap();
    assert_eq!(ipv4(&released, "e"), "10.77.0.2");
}

#[test]
fn a_returning_host_gets_its_addresses_back() {
    let lock = Lock::default().update(&inventory(&["a", "b"], false)).unwrap();
    let lock = lock.update(&inventory(&["b"], false)).unwrap();
    let lock = lock.update(&inventory(&["b", "a0", "a"], false)).unwrap();
    assert_eq!(ipv4(&lock, "a"), "10.77.0.1");
    assert_eq!(ipv4(&lock, "a0"), "10.77.0.3");
    assert!(lock.removed.is_empty());
}

#[test]
fn a_gained_family_is_filled_at_the_same_index() {
    let lock = Lock::default().update(&inventory(&["a", "b"], false)).unwrap();
    let lock = lock.update(&inventory(&["a", "b"], true)).unwrap();
    assert_eq!(lock.hosts["b"].ipv6.unwrap().to_string(), "fd77::2");
}

#[test]
fn full_networks_and_renumbering_are_errors() {
    let mut text = String::from("[network.tiny]\nipv4 = \"10.0.0.0/30\"\n");
    for i in 0..3u8 {
        let key = PrivateKey::from_bytes([i + 1; 32]).public_key();
        text.push_str(&format!("[host.h{i}]\npublic_key = \"{key}\"\n"));
    }
    let tiny = Inventory::parse(Path::new("fabric.toml"), &text).unwrap();
    let err = Lock::default().update(&tiny).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no overlay address left for host `h2` in network `tiny`: ipv4 10.0.0.0/30 has 2 \
         usable address(es), 2 in use; give [network.tiny] a larger prefix, such as \
         ipv4 = \"10.0.0.0/29\""
    );

    let lock = Lock::default().update(&inventory(&["a"], false)).unwrap();
    let renumbered = Inventory::parse(
        Path::new("fabric.toml"),
        &format!(
            "[network.corp]\nipv4 = \"10.88.0.0/24\"\n[host.a]\npublic_key = \"{}\"\n",
            PrivateKey::from_bytes([1; 32]).public_key()
        ),
    )
    .unwrap();
    let err = lock.update(&renumbered).unwrap_err();
    assert!(err.to_string().contains("outside network `corp`"), "{err}");
}

/// Addresses held for removed hosts count as used, and the error says they can be freed.
#[test]
fn a_full_network_names_held_addresses_and_a_prefix_that_fits() {
    let text = |hosts: &[&str]| {
        let mut text =
            String::from("[network.tiny]\nipv4 = \"10.0.0.0/30\"\nipv6 = \"fd00::/126\"\n");
        for (i, host) in hosts.iter().enumerate() {
            let key = PrivateKey::from_bytes([i as u8 + 1; 32]).public_key();
            text.push_str(&format!("[host.{host}]\npublic_key = \"{key}\"\n"));
        }
        Inventory::parse(Path::new("fabric.toml"), &text).unwrap()
    };
    let lock = Lock::default().update(&text(&["a", "b"])).unwrap();
    let err = lock.update(&text(&["a", "c"])).unwrap_err().to_string();
    assert!(err.starts_with("no overlay address left for host `c` in network `tiny`: "), "{err}");
    assert!(err.contains("ipv4 10.0.0.0/30 has 2 usable address(es), 2 in use"), "{err}");
    assert!(err.contains("ipv6 fd00::/126 has 3 usable address(es), 2 in use"), "{err}");
    assert!(err.contains("such as ipv4 = \"10.0.0.0/29\""), "{err}");
    assert!(err.ends_with("or free the 1 address(es) held for removed hosts with `wgfabric addresses release HOST`"), "{err}");
}

#[test]
fn text_round_trips_and_duplicates_are_refused() {
    let lock = Lock::default().update(&inventory(&["a", "b", "c"], true)).unwrap();
    let lock = lock.update(&inventory(&["a", "c"], true)).unwrap();
    let text = lock.to_toml();
    assert_eq!(Lock::parse(Path::new("fabric.lock"), &text).unwrap(), lock);
    assert_eq!(lock.to_toml(), text);

    let doubled = text.replace("10.77.0.3", "10.77.0.1");
    let err = Lock::parse(Path::new("fabric.lock"), &doubled).unwrap_err();
    assert!(err.message.contains("given twice"), "{err}");
    assert_eq!(err.field, "host.c");
}

fn host_names() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::btree_set("[a-z]{1,6}", 0..24).prop_map(|s| s.into_iter().collect())
}

fn names(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever is added, removed or reordered, surviving hosts keep their addresses, no
    /// address is shared, and no held address is handed to someone else.
    #[test]
    fn survivors_never_move(
        before in host_names(),
        added in host_names(),
        keep in proptest::collection::vec(any::<bool>(), 24),
        seed in any::<u64>(),
    ) {
        let first = Lock::default().update(&inventory(&names(&before), true)).unwrap();

        let mut after: Vec<String> = before
            .iter()
            .zip(keep.iter().cycle())
            .filter(|(_, keep)| **keep)
            .map(|(name, _)| name.clone())
            .collect();
        after.extend(added.iter().filter(|name| !before.contains(name)).cloned());
        // Reorder deterministically from the seed.
        after.sort_by_key(|name| {
            name.bytes().fold(seed, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
        });
        let second = first.update(&inventory(&names(&after), true)).unwrap();

        for name in &after {
            if let Some(old) = first.hosts.get(name.as_str()) {
                prop_assert_eq!(old, &second.hosts[name.as_str()]);
            }
        }
        let mut seen = BTreeSet::new();
        for assignment in second.hosts.values().chain(second.removed.iter().map(|r| &r.assignment)) {
            for addr in assignment.addresses() {
                prop_assert!(seen.insert(addr), "{} given twice", addr);
            }
        }
        for removed in &second.removed {
            prop_assert!(!after.contains(&removed.host.to_string()));
        }
    }
}

#[test]
fn a_lock_that_hands_out_a_reserved_address_is_refused() {
    let inventory = inventory(&["a"], true);
    for (field, addr, what) in [
        ("ipv4", "10.77.0.255", "the broadcast address of"),
        ("ipv4", "10.77.0.0", "the network address of"),
        ("ipv6", "fd77::", "the subnet-router anycast address of"),
        ("ipv4", "10.78.0.1", "outside"),
    ] {
        let other = if field == "ipv4" { "ipv6 = \"fd77::1\"" } else { "ipv4 = \"10.77.0.1\"" };
        let text =
            format!("version = 1\n[host.a]\nnetwork = \"corp\"\n{field} = \"{addr}\"\n{other}\n");
        let lock = Lock::parse(Path::new("fabric.lock"), &text).unwrap();
        let error = lock.update(&inventory).unwrap_err().to_string();
        assert!(
            error.contains(&format!("host.a: locked address {addr} is {what} network `corp`")),
            "{error}"
        );
        assert!(error.contains("delete the host's entry in fabric.lock"), "{error}");
    }
}
