//! Tests of reading the inventory: defaults, and errors that name the file, line and field.

use super::*;
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
    assert_eq!(relay.key_file, Path::new("/etc/wgfabric/private.key"));
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
