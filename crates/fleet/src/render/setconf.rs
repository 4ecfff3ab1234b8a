//! The `wg setconf` / `wg syncconf` form: only what `wg` itself understands, with the
//! interface addresses and MTU given as the `ip` commands to run, for hosts that bring the
//! interface up without wg-quick (kernel module or wgfabricd alike).

use std::fmt::Write as _;

use wgfabric_proto::keys::PrivateKey;

use super::{header, peer_block};
use crate::config::HostConfig;

/// The `wg setconf` configuration of a host, preceded by the commands that complete it.
pub fn setconf(config: &HostConfig, key: Option<&PrivateKey>) -> String {
    let iface = &config.interface;
    let mut out = String::new();
    header(&mut out, config, "wg setconf configuration");
    out.push_str("# Bring up with:\n");
    let _ = writeln!(out, "#   wg setconf {iface} {iface}.setconf");
    if key.is_none() {
        let _ =
            writeln!(out, "#   wg set {iface} private-key {}", config.private_key_file.display());
    }
    for address in &config.addresses {
        let _ = writeln!(out, "#   ip address add {address} dev {iface}");
    }
    let _ = writeln!(out, "#   ip link set {iface} mtu {} up", config.mtu);
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
