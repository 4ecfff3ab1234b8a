//! `wgfabric show [IFACE]`: interfaces as `wg show` prints them, read through the userspace
//! API, so that a host needs no wireguard-tools to look at its tunnels. Keys that are secret
//! are never printed, only whether they are set.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use serde::Serialize;
use wgfabric_model::inventory::is_interface_name;
use wgfabric_proto::uapi::{DeviceSnapshot, PeerSnapshot, SOCKET_DIR};
use wgfabric_uapi::{find_sockets, Device};

use super::{print, print_json, OutputFormat};

/// Show WireGuard interfaces as `wg show` does: the interface's public key, listening port
/// and firewall mark, then each peer's endpoint, allowed IPs, latest handshake, transfer and
/// keepalive. Read from the daemon's userspace API socket; private and preshared keys are
/// never shown.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
sudo wgfabric show wg0\n  \
sudo wgfabric show\n  \
sudo ip netns exec spoke wgfabric show wg0 --format json\n\n\
Without IFACE every interface with a socket in /var/run/wireguard is shown, whatever its\n\
network namespace (the sockets share one directory). Peers are listed newest handshake\n\
first, as wg lists them. Works with wgfabricd, wireguard-go and boringtun; kernel\n\
interfaces, which have no socket, are not seen. Root only (the sockets are root's).\n\
See docs/cli.md for the JSON shape.")]
pub(crate) struct Args {
    /// The interface [default: every one with a socket].
    #[arg(value_name = "IFACE", value_parser = interface_name)]
    interface: Option<String>,
    /// Output: `wg show`'s layout, or JSON.
    #[arg(long, value_enum, default_value_t)]
    format: OutputFormat,
}

fn interface_name(name: &str) -> Result<String, String> {
    if is_interface_name(name) {
        Ok(name.to_owned())
    } else {
        Err("not an interface name (1 to 15 letters, digits, `-`, `_` or `.`)".to_owned())
    }
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut shown = Vec::new();
    let mut failed = Vec::new();
    match args.interface {
        Some(name) => {
            let device = Device::new(&name).get().with_context(|| format!("reading {name}"))?;
            shown.push(InterfaceView::new(name, &device));
        }
        None => {
            let dir = std::path::Path::new(SOCKET_DIR);
            let sockets = find_sockets(dir).with_context(|| format!("listing {SOCKET_DIR}"))?;
            for (name, socket) in sockets {
                match Device::at(socket).get() {
                    Ok(device) => shown.push(InterfaceView::new(name, &device)),
                    Err(error) => failed.push(format!("{name}: {error}")),
                }
            }
        }
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    match args.format {
        OutputFormat::Json => print_json(&Shown { interfaces: shown })?,
        OutputFormat::Human => print(&human(&shown, now))?,
    }
    if !failed.is_empty() {
        bail!("could not read {}", failed.join("; "));
    }
    Ok(ExitCode::SUCCESS)
}

/// The JSON document.
#[derive(Debug, Serialize)]
struct Shown {
    interfaces: Vec<InterfaceView>,
}

/// What is shown of an interface: nothing secret.
#[derive(Debug, PartialEq, Serialize)]
struct InterfaceView {
    interface: String,
    /// Derived from the private key; `None` when the device has none.
    public_key: Option<String>,
    listening_port: Option<u16>,
    fwmark: Option<u32>,
    /// Newest handshake first, then those that never had one, in the daemon's order.
    peers: Vec<PeerView>,
}

#[derive(Debug, PartialEq, Serialize)]
struct PeerView {
    public_key: String,
    has_preshared_key: bool,
    endpoint: Option<String>,
    allowed_ips: Vec<String>,
    /// Seconds since the Unix epoch; `None` before the first handshake.
    latest_handshake: Option<u64>,
    rx_bytes: u64,
    tx_bytes: u64,
    /// Seconds; `None` when off.
    persistent_keepalive: Option<u16>,
}

impl InterfaceView {
    fn new(interface: String, device: &DeviceSnapshot) -> Self {
        let mut peers: Vec<PeerView> = device.peers.iter().map(PeerView::new).collect();
        // Stable: peers without a handshake keep the daemon's order, after the others.
        peers.sort_by_key(|peer| std::cmp::Reverse(peer.latest_handshake));
        Self {
            interface,
            public_key: device.private_key.as_ref().map(|key| key.public_key().to_base64()),
            listening_port: (device.listen_port != 0).then_some(device.listen_port),
            fwmark: (device.fwmark != 0).then_some(device.fwmark),
            peers,
        }
    }
}

impl PeerView {
    fn new(peer: &PeerSnapshot) -> Self {
        Self {
            public_key: peer.public_key.to_base64(),
            has_preshared_key: peer.preshared_key.is_some(),
            endpoint: peer.endpoint.map(|endpoint| endpoint.to_string()),
            allowed_ips: peer.allowed_ips.iter().map(ToString::to_string).collect(),
            latest_handshake: peer.last_handshake_time.map(|time| time.as_secs()),
            rx_bytes: peer.rx_bytes,
            tx_bytes: peer.tx_bytes,
            persistent_keepalive: (peer.persistent_keepalive_interval != 0)
                .then_some(peer.persistent_keepalive_interval),
        }
    }
}

/// `wg show`'s layout: a block per interface, a blank line before each peer and between
/// interfaces. `now` is the wall-clock time since the Unix epoch.
fn human(interfaces: &[InterfaceView], now: Duration) -> String {
    let blocks: Vec<String> = interfaces.iter().map(|view| interface_block(view, now)).collect();
    blocks.join("\n")
}

fn interface_block(view: &InterfaceView, now: Duration) -> String {
    let mut out = format!("interface: {}\n", view.interface);
    if let Some(key) = &view.public_key {
        let _ = writeln!(out, "  public key: {key}\n  private key: (hidden)");
    }
    if let Some(port) = view.listening_port {
        let _ = writeln!(out, "  listening port: {port}");
    }
    if let Some(mark) = view.fwmark {
        let _ = writeln!(out, "  fwmark: {mark:#x}");
    }
    for peer in &view.peers {
        let _ = writeln!(out, "\npeer: {}", peer.public_key);
        if peer.has_preshared_key {
            out.push_str("  preshared key: (hidden)\n");
        }
        if let Some(endpoint) = &peer.endpoint {
            let _ = writeln!(out, "  endpoint: {endpoint}");
        }
        let allowed = if peer.allowed_ips.is_empty() {
            "(none)".to_owned()
        } else {
            peer.allowed_ips.join(", ")
        };
        let _ = writeln!(out, "  allowed ips: {allowed}");
        if let Some(handshake) = peer.latest_handshake {
            let _ = writeln!(out, "  latest handshake: {}", ago(now.as_secs(), handshake));
        }
        if peer.rx_bytes != 0 || peer.tx_bytes != 0 {
            let (rx, tx) = (bytes(peer.rx_bytes), bytes(peer.tx_bytes));
            let _ = writeln!(out, "  transfer: {rx} received, {tx} sent");
        }
        if let Some(seconds) = peer.persistent_keepalive {
            let _ = writeln!(out, "  persistent keepalive: every {}", span(seconds.into()));
        }
    }
    out
}

/// How long ago `then` was, both in seconds since the Unix epoch.
fn ago(now: u64, then: u64) -> String {
    match now.checked_sub(then) {
        Some(0) => "Now".to_owned(),
        Some(elapsed) => format!("{} ago", span(elapsed)),
        None => "in the future (the system clock is behind the peer's handshake)".to_owned(),
    }
}

/// A number of seconds in years, days, hours, minutes and seconds, leaving out the units that
/// are zero: `1 hour, 5 seconds`.
fn span(seconds: u64) -> String {
    const UNITS: [(u64, &str); 5] =
        [(365 * 86_400, "year"), (86_400, "day"), (3_600, "hour"), (60, "minute"), (1, "second")];
    let mut left = seconds;
    let mut parts = Vec::new();
    for (size, name) in UNITS {
        let count = left / size;
        left %= size;
        if count != 0 {
            parts.push(format!("{count} {name}{}", if count == 1 { "" } else { "s" }));
        }
    }
    parts.join(", ")
}

/// A byte count in binary units with two decimals, as wg prints it: `512 B`, `1.50 KiB`.
fn bytes(count: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if count < 1024 {
        return format!("{count} B");
    }
    let mut value = count as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use wgfabric_proto::keys::{PresharedKey, PrivateKey, PublicKey};

    use super::*;

    const NOW: u64 = 1_700_000_000;

    fn device() -> DeviceSnapshot {
        let quiet = PeerSnapshot::new(PublicKey::from_bytes([1; 32]));
        let mut busy = PeerSnapshot::new(PublicKey::from_bytes([2; 32]));
        busy.preshared_key = Some(PresharedKey::from_bytes([9; 32]));
        busy.endpoint = Some("[2001:db8::1]:51820".parse().unwrap());
        busy.allowed_ips = vec!["10.99.0.1/32".parse().unwrap(), "fd99::1/128".parse().unwrap()];
        busy.last_handshake_time = Some(Duration::from_secs(NOW - 65));
        busy.rx_bytes = 1536;
        busy.tx_bytes = 92;
        busy.persistent_keepalive_interval = 25;
        DeviceSnapshot {
            private_key: Some(PrivateKey::from_bytes([7; 32])),
            listen_port: 51820,
            fwmark: 51820,
            peers: vec![quiet, busy],
        }
    }

    #[test]
    fn the_layout_is_wg_shows_and_hides_every_secret() {
        let device = device();
        let view = InterfaceView::new("wg0".to_owned(), &device);
        let public = device.private_key.as_ref().unwrap().public_key().to_base64();
        let (quiet, busy) = (
            PublicKey::from_bytes([1; 32]).to_base64(),
            PublicKey::from_bytes([2; 32]).to_base64(),
        );
        let expected = format!(
            "interface: wg0\n  public key: {public}\n  private key: (hidden)\n  \
             listening port: 51820\n  fwmark: 0xca6c\n\n\
             peer: {busy}\n  preshared key: (hidden)\n  endpoint: [2001:db8::1]:51820\n  \
             allowed ips: 10.99.0.1/32, fd99::1/128\n  \
             latest handshake: 1 minute, 5 seconds ago\n  \
             transfer: 1.50 KiB received, 92 B sent\n  persistent keepalive: every 25 seconds\n\n\
             peer: {quiet}\n  allowed ips: (none)\n"
        );
        let text = human(&[view], Duration::from_secs(NOW));
        assert_eq!(text, expected);
        let json = serde_json::to_string(&InterfaceView::new("wg0".to_owned(), &device)).unwrap();
        for secret in [
            device.private_key.as_ref().unwrap().to_base64_secret(),
            PresharedKey::from_bytes([9; 32]).to_base64_secret(),
        ] {
            assert!(!text.contains(&secret) && !json.contains(&secret), "a secret is shown");
        }
    }

    #[test]
    fn an_empty_device_shows_only_its_name_and_interfaces_are_apart() {
        let empty =
            DeviceSnapshot { private_key: None, listen_port: 0, fwmark: 0, peers: Vec::new() };
        let views = [
            InterfaceView::new("wg0".to_owned(), &empty),
            InterfaceView::new("wg1".to_owned(), &empty),
        ];
        assert_eq!(human(&views, Duration::ZERO), "interface: wg0\n\ninterface: wg1\n");
    }

    #[test]
    fn json_names_every_field() {
        let view = InterfaceView::new("wg0".to_owned(), &device());
        let json = serde_json::to_value(&Shown { interfaces: vec![view] }).unwrap();
        let interface = &json["interfaces"][0];
        assert_eq!(interface["listening_port"], 51820);
        assert_eq!(interface["fwmark"], 51820);
        let busy = &interface["peers"][0];
        assert_eq!(busy["has_preshared_key"], true);
        assert_eq!(busy["endpoint"], "[2001:db8::1]:51820");
        assert_eq!(busy["allowed_ips"], serde_json::json!(["10.99.0.1/32", "fd99::1/128"]));
        assert_eq!(busy["latest_handshake"], NOW - 65);
        assert_eq!((busy["rx_bytes"].as_u64(), busy["tx_bytes"].as_u64()), (Some(1536), Some(92)));
        assert_eq!(busy["persistent_keepalive"], 25);
        let quiet = &interface["peers"][1];
        assert!(quiet["latest_handshake"].is_null() && quiet["endpoint"].is_null());
        assert!(quiet["persistent_keepalive"].is_null());
    }

    #[test]
    fn times_and_sizes_read_as_wg_prints_them() {
        assert_eq!(ago(NOW, NOW), "Now");
        assert_eq!(ago(NOW, NOW - 1), "1 second ago");
        assert_eq!(ago(NOW, NOW - 3_600 - 2), "1 hour, 2 seconds ago");
        assert!(ago(NOW, NOW + 5).contains("system clock"));
        assert_eq!(span(2 * 365 * 86_400 + 86_400 + 120), "2 years, 1 day, 2 minutes");
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.00 KiB");
        assert_eq!(bytes(5 * 1024 * 1024 + 512 * 1024), "5.50 MiB");
        assert_eq!(bytes(3 << 40), "3.00 TiB");
        assert_eq!(bytes(u64::MAX), "16777216.00 TiB");
    }

    #[test]
    fn interface_names_cannot_reach_outside_the_socket_directory() {
        assert_eq!(interface_name("wg0"), Ok("wg0".to_owned()));
        for bad in ["../etc/x", "", "a-name-far-too-long", ".hidden"] {
            assert!(interface_name(bad).is_err(), "{bad}");
        }
    }
}
