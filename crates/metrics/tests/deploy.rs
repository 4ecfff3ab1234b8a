//! The files of deploy/ agree with what is exported: every metric the alert rules and the
//! Grafana dashboard name exists, promtool accepts the rules and the example configuration,
//! and the alerts' own unit tests (deploy/prometheus/alerts_test.yml) pass.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use wgfabric_metrics::{families, policy_families, Counters, FriendlyNames, Interface, RuleCount};
use wgfabric_proto::keys::PrivateKey;
use wgfabric_proto::uapi::{DeviceSnapshot, PeerSnapshot};
use wgfabric_proto::PeerStats;

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy").join(path)
}

/// Every family name wgfabricd and the exporter can print.
fn exported() -> BTreeSet<&'static str> {
    let peer = PrivateKey::from_bytes([2; 32]).public_key();
    let mut snapshot = DeviceSnapshot::default();
    let mut shown = PeerSnapshot::new(peer);
    shown.endpoint = Some("192.0.2.1:51820".parse().unwrap());
    snapshot.peers.push(shown);
    let mut counters = Counters::default();
    counters.peers.insert(peer, PeerStats::default());
    let interfaces = [
        Interface { name: "wg0", snapshot: Some(&snapshot), counters: Some(&counters) },
        Interface { name: "wg1", snapshot: None, counters: None },
    ];
    let rule =
        RuleCount { chain: "tunnel_forward", rule: "r", verdict: "drop", packets: 1, bytes: 1 };
    families(&interfaces, &FriendlyNames::new(), Duration::ZERO)
        .iter()
        .chain(&policy_families(&[rule]))
        .filter(|f| !f.is_empty())
        .map(|f| f.name())
        .collect()
}

/// The metric names a text mentions: identifiers starting `wireguard_` or `wgfabric_`.
fn mentioned(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut at = 0;
    while at < bytes.len() {
        let starts = (at == 0 || !is_ident(bytes[at - 1]))
            && (text[at..].starts_with("wireguard_") || text[at..].starts_with("wgfabric_"));
        if starts {
            let end = (at..bytes.len()).find(|&i| !is_ident(bytes[i])).unwrap_or(bytes.len());
            names.insert(text[at..end].to_owned());
            at = end;
        } else {
            at += 1;
        }
    }
    names
}

#[test]
fn alerts_and_dashboard_only_use_exported_metrics() {
    let exported = exported();
    assert_eq!(exported.len(), 15, "every family has a sample: {exported:?}");
    let alerts = std::fs::read_to_string(deploy("prometheus/alerts.yml")).unwrap();
    let dashboard = std::fs::read_to_string(deploy("grafana/wgfabric.json")).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let expressions: Vec<&str> = parsed["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|panel| panel["targets"].as_array().into_iter().flatten())
        .map(|target| target["expr"].as_str().unwrap())
        .collect();
    assert!(expressions.len() >= 10, "{expressions:?}");
    for (file, text) in [("alerts.yml", alerts), ("wgfabric.json", expressions.join("\n"))] {
        let names = mentioned(&text);
        assert!(!names.is_empty());
        for name in &names {
            assert!(exported.contains(name.as_str()), "{file} uses {name}, which is not exported");
        }
    }
}

fn promtool(args: &[&str]) {
    let output =
        Command::new("promtool").args(args).current_dir(deploy("prometheus")).output().unwrap();
    assert!(
        output.status.success(),
        "promtool {}:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn promtool_accepts_the_rules_their_tests_and_the_example_configuration() {
    if wgfabric_testkit::require_tool("promtool").is_err() {
        return;
    }
    promtool(&["check", "rules", "alerts.yml"]);
    promtool(&["test", "rules", "alerts_test.yml"]);
    promtool(&["check", "config", "prometheus.yml"]);
}
