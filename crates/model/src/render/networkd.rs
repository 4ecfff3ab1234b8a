//! systemd-networkd's `.netdev` (the WireGuard device and its peers) and `.network` (its
//! addresses and routing) pair.
//!
//! Routes for the allowed IPs are installed by networkd itself (`RouteTable=main`). A full
//! tunnel does what wg-quick does: the peers' routes go to a table of their own, selected by a
//! policy rule for every packet that does not carry the tunnel's firewall mark, with the main
//! table consulted first for everything more specific than a default route.

use std::fmt::Write as _;

use wgfabric_proto::keys::PrivateKey;

use super::{forwards, header, peer_block};
use crate::config::HostConfig;
use crate::inventory::Tunnel;

/// Table and firewall mark of a full tunnel, wg-quick's default.
const FULL_TUNNEL_TABLE: u32 = 51820;

/// The `.netdev` file of a host. The key file must be readable by `systemd-network`
/// (`chown root:systemd-network`, mode 0640).
pub fn networkd_netdev(config: &HostConfig, key: Option<&PrivateKey>) -> String {
    let mut out = String::new();
    header(&mut out, config, "systemd-networkd netdev");
    out.push_str("[NetDev]\n");
    let _ = writeln!(out, "Name={}", config.interface);
    out.push_str("Kind=wireguard\n");
    let _ = writeln!(out, "MTUBytes={}", config.mtu);
    let _ = writeln!(out, "Description=wgfabric network {}", config.network);
    out.push_str("\n[WireGuard]\n");
    match key {
        Some(key) => {
            let _ = writeln!(out, "PrivateKey={}", key.to_base64_secret());
        }
        None => match config.key_source.file() {
            Some(path) => {
                let _ = writeln!(out, "PrivateKeyFile={path}");
            }
            None => {
                // networkd reads keys from files only; the agent sets this one.
                let _ = writeln!(
                    out,
                    "# PrivateKey: networkd cannot fetch it (key_source = {}); `wgfabric agent` sets it",
                    config.key_source
                );
            }
        },
    }
    if let Some(port) = config.listen_port {
        let _ = writeln!(out, "ListenPort={port}");
    }
    match config.tunnel {
        Tunnel::Split => out.push_str("RouteTable=main\n"),
        Tunnel::Full => {
            let _ = writeln!(out, "FirewallMark={FULL_TUNNEL_TABLE}");
            let _ = writeln!(out, "RouteTable={FULL_TUNNEL_TABLE}");
        }
    }
    for peer in &config.peers {
        peer_block(&mut out, peer, "WireGuardPeer", "=");
    }
    out
}

/// The `.network` file of a host.
pub fn networkd_network(config: &HostConfig) -> String {
    let mut out = String::new();
    header(&mut out, config, "systemd-networkd network");
    out.push_str("[Match]\n");
    let _ = writeln!(out, "Name={}", config.interface);
    out.push_str("\n[Network]\n");
    for address in &config.addresses {
        let _ = writeln!(out, "Address={address}");
    }
    if forwards(config) {
        // networkd has no setting for send_redirects; see the wg-quick form for the sysctl.
        let _ = writeln!(
            out,
            "# Also: sysctl net.ipv4.conf.{}.send_redirects=0 (a relay forwards back out of this link)",
            config.interface
        );
        out.push_str("IPForward=yes\n");
    }
    if config.tunnel == Tunnel::Full {
        let _ = write!(
            out,
            "\n[RoutingPolicyRule]\nFirewallMark={FULL_TUNNEL_TABLE}\nInvertRule=yes\n\
             Table={FULL_TUNNEL_TABLE}\nFamily=both\nPriority=32000\n\
             \n[RoutingPolicyRule]\nTable=main\nSuppressPrefixLength=0\nFamily=both\nPriority=31999\n"
        );
    }
    out
}
