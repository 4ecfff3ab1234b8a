//! The `wg setconf` / `wg syncconf` form: only what `wg` itself understands, preceded by the
//! commands that complete it (private key, addresses, MTU, routes, forwarding), for hosts that
//! bring the interface up without wg-quick (kernel module or wgfabricd alike).

use std::fmt::Write as _;

use wgfabric_proto::keys::PrivateKey;

use super::{forwards, header, key_argument, peer_block};
use crate::config::HostConfig;

/// The `wg setconf` configuration of a host, preceded by the commands that complete it.
pub fn setconf(config: &HostConfig, key: Option<&PrivateKey>) -> String {
    let iface = &config.interface;
    let mut out = String::new();
    header(&mut out, config, "wg setconf configuration");
    out.push_str("# Bring up with:\n");
    let _ = writeln!(
        out,
        "#   ip link add {iface} type wireguard    (or, in userspace: wgfabricd {iface})"
    );
    let _ = writeln!(out, "#   wg setconf {iface} {iface}.setconf");
    if key.is_none() {
        let _ = writeln!(out, "#   wg set {iface} private-key {}", key_argument(config, iface));
    }
    for address in &config.addresses {
        let _ = writeln!(out, "#   ip address add {address} dev {iface}");
    }
    let _ = writeln!(out, "#   ip link set {iface} mtu {} up", config.mtu);
    for route in config.tunnel_routes() {
        if route.is_default_route() {
            let _ = writeln!(
                out,
                "#   (full tunnel: {route} needs policy routing; use wg-quick or networkd)"
            );
        } else {
            let _ = writeln!(out, "#   ip route add {route} dev {iface}");
        }
    }
    if forwards(config) {
        let _ = writeln!(
            out,
            "#   sysctl -w net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 net.ipv4.conf.{iface}.send_redirects=0"
        );
    }
    out.push_str("[Interface]\n");
    if let Some(key) = key {
        let _ = writeln!(out, "PrivateKey = {}", key.to_base64_secret());
    }
    if let Some(port) = config.listen_port {
        let _ = writeln!(out, "ListenPort = {port}");
    }
    for peer in &config.peers {
        peer_block(&mut out, peer, "Peer", " = ");
    }
    out
}
