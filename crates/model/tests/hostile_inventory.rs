//! Arbitrary text in every free-text field of the inventory: either the inventory is refused,
//! or every rendered format reads back as exactly the interface and peers intended, with no
//! extra directive (wg-quick and `wg setconf` through the project's parser and, where it is
//! installed, `wg-quick strip`; networkd's files section by section; JSON through serde).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use proptest::prelude::*;
use wgfabric_model::config::HostConfig;
use wgfabric_model::diff::diff_device;
use wgfabric_model::render::{fabric_json, networkd_netdev, networkd_network, setconf, wg_quick};
use wgfabric_model::{wgconf, Fabric, Inventory, Lock};
use wgfabric_testkit::on_path;

const EXAMPLE: &str = wgfabric_model::example::INVENTORY;

/// Where hostile text goes: the line it replaces in the example, and the line it becomes.
const FIELDS: [(&str, &str); 10] = [
    ("[defaults]", "[defaults]\nkey_dir = {}"),
    ("[host.laptop-ana]", "[host.laptop-ana]\nkey_file = {}"),
    ("[host.laptop-ana]", "[host.laptop-ana]\nkey_source = {}"),
    ("[host.laptop-ana]", "[host.laptop-ana]\nkey_source = [\"exec:pass\", \"show\", {}]"),
    ("[host.laptop-ana]", "[host.laptop-ana]\nkey_source = [{}]"),
    ("interface = \"wg0\"", "interface = {}"),
    ("endpoint = \"relay-fra.example.net:51820\"", "endpoint = {}"),
    ("groups = [\"engineers\"]", "groups = [{}]"),
    ("description = \"AWS eu-central-1 production VPC\"", "description = {}"),
    ("kind = \"pods\"", "kind = {}"),
];

/// Text that tries every trick: line breaks, comment and substitution characters, quotes,
/// shell metacharacters, Unicode line separators, and plausible prefixes.
fn hostile_text() -> impl Strategy<Value = String> {
    let nasty = prop::sample::select(vec![
        "\n",
        "\r",
        "\t",
        "\0",
        "\u{85}",
        "\u{2028}",
        "#",
        "%i",
        ";",
        "$(",
        "`",
        "'",
        "\"",
        "\\",
        " ",
        "[Peer]",
        "AllowedIPs = 0.0.0.0/0",
        "PostUp = ",
        "=",
        "/",
        "..",
        "file:",
        "exec:",
        "systemd-credential:",
        "etc",
        "wg0",
        "a",
        "-",
        ":",
        "|",
        "&",
        "<(",
        ")",
        "*",
        "{",
        "}",
    ]);
    prop_oneof![
        prop::collection::vec(nasty, 0..8).prop_map(|parts| parts.concat()),
        any::<String>(),
        "[/a-z:]{1,30}",
    ]
}

fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// Checks that a networkd file holds only the sections and keys it should.
fn check_networkd(text: &str, sections: &[&str], keys: &[&str], peers: usize) {
    let mut seen_peers = 0;
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            assert!(sections.contains(&section), "unexpected section [{section}] in\n{text}");
            seen_peers += usize::from(section == "WireGuardPeer");
            continue;
        }
        let key = line.split_once('=').map(|(key, _)| key).unwrap_or(line);
        assert!(keys.contains(&key), "unexpected line `{line}` in\n{text}");
    }
    assert_eq!(seen_peers, peers, "{text}");
}

/// Every rendered form of `config` reads back as `config`, with nothing added.
fn check_renders(config: &HostConfig) {
    for (form, text) in [("wg-quick", wg_quick(config, None)), ("setconf", setconf(config, None))] {
        assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{form}:\n{text}");
        let parsed = wgconf::parse(Path::new("wg0.conf"), &text)
            .unwrap_or_else(|e| panic!("{form} of {} does not parse: {e}\n{text}", config.host));
        assert!(
            diff_device(config, &parsed).is_empty(),
            "{form} of {} differs:\n{text}",
            config.host
        );
        assert_eq!(parsed.peers.len(), config.peers.len());
        if form == "wg-quick" {
            let hooks: Vec<&str> = parsed.interface.hooks.iter().map(|(_, c)| c.as_str()).collect();
            assert!(
                hooks
                    .iter()
                    .all(|h| h.starts_with("wg set %i private-key ")
                        || h.starts_with("sysctl -q -w ")),
                "{hooks:?}"
            );
            assert_eq!(hooks.iter().filter(|h| h.starts_with("wg set")).count(), 1, "{hooks:?}");
            if let Some(file) = config.key_source.file() {
                assert_eq!(hooks[0], format!("wg set %i private-key {file}"));
            }
        }
    }
    let netdev = networkd_netdev(config, None);
    check_networkd(
        &netdev,
        &["NetDev", "WireGuard", "WireGuardPeer"],
        &[
            "Name",
            "Kind",
            "MTUBytes",
            "Description",
            "PrivateKeyFile",
            "ListenPort",
            "RouteTable",
            "FirewallMark",
            "PublicKey",
            "Endpoint",
            "AllowedIPs",
            "PersistentKeepalive",
        ],
        config.peers.len(),
    );
    let network = networkd_network(config);
    assert!(!network.chars().any(|c| c.is_control() && c != '\n'), "{network}");
}

/// `wg-quick strip` (wg-quick's own reader) keeps exactly the peers of `config`.
fn check_wg_quick_strip(config: &HostConfig) {
    if !on_path("wg-quick") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("wgfabric-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}.conf", config.interface));
    std::fs::write(&path, wg_quick(config, None)).unwrap();
    let out = Command::new("wg-quick").arg("strip").arg(&path).output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stripped = String::from_utf8(out.stdout).unwrap();
    let parsed = wgconf::parse(Path::new("stripped.conf"), &stripped).unwrap();
    assert!(diff_device(config, &parsed).is_empty(), "wg-quick strip differs:\n{stripped}");
    assert_eq!(parsed.peers.len(), config.peers.len());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn hostile_text_is_refused_or_renders_exactly_as_intended(
        field in 0..FIELDS.len(),
        text in hostile_text(),
    ) {
        let (anchor, line) = FIELDS[field];
        let inventory_text = EXAMPLE.replacen(anchor, &line.replace("{}", &toml_string(&text)), 1);
        prop_assume!(inventory_text != EXAMPLE);
        let Ok(inventory) = Inventory::parse(Path::new("fabric.toml"), &inventory_text) else {
            return Ok(());
        };
        let lock = Lock::default().update(&inventory).unwrap();
        let fabric = Fabric::new(inventory, lock).unwrap();
        let configs: Vec<HostConfig> = fabric.host_configs().collect();
        let names: BTreeSet<&str> = configs.iter().map(|c| c.host.as_str()).collect();
        prop_assert_eq!(names.len(), 7);
        for config in &configs {
            check_renders(config);
        }
        let json: serde_json::Value = serde_json::from_str(&fabric_json(&fabric, &configs)).unwrap();
        prop_assert!(json.is_object());
        if field <= 4 {
            check_wg_quick_strip(configs.iter().find(|c| c.host.as_str() == "laptop-ana").unwrap());
        }
    }
}
