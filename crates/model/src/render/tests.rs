//! Tests of the renderers: round trips through the wg-quick parser, inlined keys, determinism,
//! the exports, plans and stale files.

use std::path::Path;

use super::*;
use crate::diff::{diff_device, diff_peers, peers_by_key, PeerChange};
use crate::inventory::Inventory;
use crate::lock::Lock;
use crate::render::plan::{plan, plan_text, HostPlan, RenderedState};
use crate::wgconf;

const EXAMPLE: &str = crate::example::INVENTORY;

fn example_with(text: &str) -> (Fabric, Vec<HostConfig>) {
    let inventory = Inventory::parse(Path::new("fabric.toml"), text).unwrap();
    let lock = Lock::default().update(&inventory).unwrap();
    let fabric = Fabric::new(inventory, lock).unwrap();
    let configs = fabric.host_configs().collect();
    (fabric, configs)
}

#[test]
fn wg_quick_round_trips_through_the_parser() {
    let (_, configs) = example_with(EXAMPLE);
    for config in &configs {
        for (text, form) in
            [(wg_quick(config, None), "wg-quick"), (setconf(config, None), "setconf")]
        {
            let parsed = wgconf::parse(Path::new("wg0.conf"), &text).unwrap();
            assert!(diff_device(config, &parsed).is_empty(), "{form} of {} differs", config.host);
            assert_eq!(parsed.interface.listen_port, config.listen_port);
            assert!(parsed.interface.private_key.is_none());
            if form == "wg-quick" {
                assert_eq!(parsed.interface.addresses, config.addresses);
                assert_eq!(parsed.interface.mtu, Some(config.mtu));
            }
            let relays = config
                .failover
                .as_ref()
                .map(|f| f.relays.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(" "));
            assert_eq!(parsed.annotations.get("relay-order").cloned(), relays);
        }
    }
}

#[test]
fn central_keys_are_inlined_and_marked_secret() {
    let (_, configs) = example_with(EXAMPLE);
    let key = PrivateKey::from_bytes([9; 32]);
    for format in [Format::WgQuick, Format::Setconf] {
        let files = host_files(&configs[0], Some(&key), format);
        assert!(files[0].secret);
        assert!(!format!("{files:?}").contains(&key.to_base64_secret()));
        let parsed = wgconf::parse(Path::new("x"), &files[0].contents).unwrap();
        assert_eq!(parsed.interface.private_key.as_ref(), Some(&key));
    }
    let networkd = host_files(&configs[0], Some(&key), Format::Networkd);
    assert!(networkd[0].contents.contains("PrivateKey="));
    assert!(!networkd[1].secret, "the .network file holds no key");
    assert!(host_files(&configs[0], None, Format::Networkd)[0]
        .contents
        .contains("PrivateKeyFile=/etc/wgfabric/private.key"));
}

#[test]
fn rendering_is_deterministic() {
    let (fabric, configs) = example_with(EXAMPLE);
    let (again, again_configs) = example_with(EXAMPLE);
    for format in Format::ALL {
        for (a, b) in configs.iter().zip(&again_configs) {
            let a: Vec<String> =
                host_files(a, None, format).iter().map(|f| f.contents.clone()).collect();
            let b: Vec<String> =
                host_files(b, None, format).iter().map(|f| f.contents.clone()).collect();
            assert_eq!(a, b);
        }
        let a = fabric_files(&fabric, &configs, format).map(|f| f.contents.clone());
        let b = fabric_files(&again, &again_configs, format).map(|f| f.contents.clone());
        assert_eq!(a, b);
    }
}

#[test]
fn terraform_export_is_a_flat_object_of_strings() {
    let (fabric, _) = example_with(EXAMPLE);
    let value: serde_json::Value = serde_json::from_str(&terraform_json(&fabric)).unwrap();
    let object = value.as_object().unwrap();
    assert!(object.values().all(serde_json::Value::is_string));
    assert_eq!(object["corp.relay_order"], "relay-fra,relay-iad");
    assert_eq!(object["laptop-ana.endpoint"], "");
}

#[test]
fn full_tunnel_networkd_uses_a_policy_table() {
    let (_, configs) = example_with(EXAMPLE);
    let ben = configs.iter().find(|c| c.host.as_str() == "laptop-ben").unwrap();
    assert!(networkd_netdev(ben, None).contains("RouteTable=51820"));
    assert!(networkd_network(ben).contains("SuppressPrefixLength=0"));
    let relay = configs.iter().find(|c| c.host.as_str() == "relay-fra").unwrap();
    assert!(networkd_network(relay).contains("IPForward=yes"));
    assert!(wg_quick(relay, None).contains("net.ipv4.ip_forward=1"));
}

#[test]
fn device_diff_lists_what_to_change() {
    let (_, configs) = example_with(EXAMPLE);
    let config = &configs[0];
    let mut live = wgconf::parse(Path::new("live"), &setconf(config, None)).unwrap();
    live.peers[0].allowed_ips.pop();
    live.peers.remove(1);
    let diff = diff_device(config, &live);
    assert_eq!(diff.peers.len(), 2);
    assert!(diff.peers.iter().any(|c| matches!(c, PeerChange::Added { .. })));
    assert!(diff.peers.iter().any(|c| matches!(c, PeerChange::Changed { .. })));
    let by_key = diff_peers(&peers_by_key(&config.peers), &peers_by_key(&config.peers));
    assert!(by_key.is_empty());
}

#[test]
fn plan_shows_host_and_peer_changes() {
    let (before, _) = example_with(EXAMPLE);
    let state = RenderedState::of(&before);
    assert!(plan(&state, &state).is_empty());

    let changed = EXAMPLE
        .replace("routes = [\"10.244.1.0/24\"]", "routes = [\"10.244.2.0/24\"]")
        .replace("[host.ci-runner-1]", "[host.ci-runner-2]");
    let (after, _) = example_with(&changed);
    let plans = plan(&RenderedState::of(&after), &state).hosts;
    assert!(plans.contains(&HostPlan::Removed { host: "ci-runner-1".parse().unwrap() }));
    assert!(plans
        .iter()
        .any(|p| matches!(p, HostPlan::Added { host, .. } if host.as_str() == "ci-runner-2")));
    let text = plan_text(&plan(&RenderedState::of(&after), &state));
    assert!(text.contains("~ laptop-ana:"), "{text}");
    assert!(text.contains("+ allowed 10.244.2.0/24"), "{text}");
    assert!(text.contains("- allowed 10.244.1.0/24"), "{text}");

    let reloaded: RenderedState = serde_json::from_str(&state.to_json()).unwrap();
    assert_eq!(reloaded, state);
}

#[test]
fn files_of_removed_hosts_are_stale() {
    let (before, _) = example_with(EXAMPLE);
    let state = RenderedState::of(&before);
    let (fabric, _) = example_with(&EXAMPLE.replace("[host.ci-runner-1]", "[host.ci-runner-2]"));
    let stale: Vec<String> =
        stale_files(&state, &fabric).iter().map(|p| p.display().to_string()).collect();
    assert_eq!(
        stale,
        [
            "ci-runner-1/wg0.conf",
            "ci-runner-1/50-wg0.netdev",
            "ci-runner-1/50-wg0.network",
            "ci-runner-1/wg0.setconf",
            "ci-runner-1/nftables.conf"
        ]
    );
}

#[test]
fn setconf_lists_the_routes_wg_quick_would_install() {
    let (_, configs) = example_with(EXAMPLE);
    let ana = configs.iter().find(|c| c.host.as_str() == "laptop-ana").unwrap();
    let routes: Vec<String> = ana.tunnel_routes().iter().map(ToString::to_string).collect();
    assert_eq!(routes, ["10.20.0.0/16", "10.244.1.0/24"], "overlay addresses are on-link");
    let text = setconf(ana, None);
    assert!(text.contains("#   ip route add 10.20.0.0/16 dev wg0\n"), "{text}");
    let router = configs.iter().find(|c| c.host.as_str() == "router-aws").unwrap();
    assert!(setconf(router, None).contains("net.ipv4.ip_forward=1"));
    let ben = configs.iter().find(|c| c.host.as_str() == "laptop-ben").unwrap();
    assert!(setconf(ben, None).contains("(full tunnel: 0.0.0.0/0 needs policy routing"));
}
