//! wg-quick's configuration file (`/etc/wireguard/IFACE.conf`).
//!
//! Without a decrypted key the private key is loaded by `PostUp = wg set %i private-key PATH`,
//! the pattern wg-quick(8) documents, so the file itself holds no secret; a key from a
//! systemd credential or a command comes through `wgfabric fetchkey` in a process
//! substitution (wg-quick runs its hooks with bash). Hosts that forward
//! (relays, subnet routers) turn on IP forwarding in `PostUp`.

use std::fmt::Write as _;

use wgfabric_proto::keys::PrivateKey;

use super::{forwards, header, key_argument, peer_block};
use crate::config::HostConfig;

/// The wg-quick configuration of a host.
pub fn wg_quick(config: &HostConfig, key: Option<&PrivateKey>) -> String {
    let mut out = String::new();
    header(&mut out, config, "wg-quick configuration");
    out.push_str("[Interface]\n");
    let addresses: Vec<String> = config.addresses.iter().map(ToString::to_string).collect();
    let _ = writeln!(out, "Address = {}", addresses.join(", "));
    if let Some(port) = config.listen_port {
        let _ = writeln!(out, "ListenPort = {port}");
    }
    let _ = writeln!(out, "MTU = {}", config.mtu);
    match key {
        Some(key) => {
            let _ = writeln!(out, "PrivateKey = {}", key.to_base64_secret());
        }
        None => {
            let _ = writeln!(out, "PostUp = wg set %i private-key {}", key_argument(config, "%i"));
        }
    }
    if forwards(config) {
        // A relay forwards back out of the interface packets came in on; ICMP redirects would
        // tell spokes to go direct, which WireGuard's cryptokey routing cannot do.
        let mut sysctl = String::from(
            "PostUp = sysctl -q -w net.ipv4.ip_forward=1 net.ipv4.conf.%i.send_redirects=0",
        );
        if config.addresses.iter().any(|a| a.addr.is_ipv6()) {
            sysctl.push_str(" net.ipv6.conf.all.forwarding=1");
        }
        let _ = writeln!(out, "{sysctl}");
    }
    for peer in &config.peers {
        peer_block(&mut out, peer, "Peer", " = ");
    }
    out
}
