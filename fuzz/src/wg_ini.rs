//! `wg_ini`: the wg-quick / `wg setconf` / `wg showconf` INI parser (`wgfabric_model::wgconf`).
//!
//! Checked: a file that parses is written back in a canonical form (one `[Interface]`, keys in
//! a fixed order, keys in base64, lists joined) that parses to the same configuration, apart
//! from the line numbers of the `[Peer]` headers.

use std::fmt::Write as _;
use std::path::Path;

use wgfabric_model::wgconf::{self, WgConfig};

/// The configuration as a file, in a canonical form.
fn write(config: &WgConfig) -> String {
    let mut out = String::new();
    for (key, value) in &config.annotations {
        let _ = writeln!(out, "# wgfabric:{key} {value}");
    }
    let i = &config.interface;
    out.push_str("[Interface]\n");
    if let Some(key) = &i.private_key {
        let _ = writeln!(out, "PrivateKey = {}", key.to_base64_secret());
    }
    if let Some(port) = i.listen_port {
        let _ = writeln!(out, "ListenPort = {port}");
    }
    if let Some(mark) = i.fwmark {
        let _ = writeln!(out, "FwMark = {mark:#x}");
    }
    for address in &i.addresses {
        let _ = writeln!(out, "Address = {address}");
    }
    if !i.dns.is_empty() {
        let _ = writeln!(out, "DNS = {}", i.dns.join(", "));
    }
    if let Some(mtu) = i.mtu {
        let _ = writeln!(out, "MTU = {mtu}");
    }
    if let Some(table) = &i.table {
        let _ = writeln!(out, "Table = {table}");
    }
    for (hook, command) in &i.hooks {
        let _ = writeln!(out, "{hook} = {command}");
    }
    if let Some(save) = i.save_config {
        let _ = writeln!(out, "SaveConfig = {save}");
    }
    for peer in &config.peers {
        let _ = writeln!(out, "\n[Peer]\nPublicKey = {}", peer.public_key.to_base64());
        if let Some(psk) = &peer.preshared_key {
            let _ = writeln!(out, "PresharedKey = {}", psk.to_base64_secret());
        }
        if let Some(endpoint) = &peer.endpoint {
            let _ = writeln!(out, "Endpoint = {endpoint}");
        }
        for ip in &peer.allowed_ips {
            let _ = writeln!(out, "AllowedIPs = {ip}");
        }
        if let Some(seconds) = peer.persistent_keepalive {
            let _ = writeln!(out, "PersistentKeepalive = {seconds}");
        }
    }
    out
}

pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let config = match wgconf::parse(Path::new("wg0.conf"), &text) {
        Ok(config) => config,
        Err(error) => {
            assert!(error.line >= 1, "{error}");
            let _ = error.to_string();
            return;
        }
    };
    let written = write(&config);
    let mut again = match wgconf::parse(Path::new("wg0.conf"), &written) {
        Ok(again) => again,
        Err(error) => panic!("the canonical form does not parse: {error}\n{written}"),
    };
    for (peer, original) in again.peers.iter_mut().zip(&config.peers) {
        peer.line = original.line;
    }
    assert_eq!(again, config, "the canonical form reads differently:\n{written}");
}
