//! The peer table: every tunnel of the lab once, as the devices report it right now.
//!
//! A link is shown from the side that is not a relay (a spoke's view of its relays), and
//! between two relays, two mesh members or two spokes on a direct path from the first by
//! name. The `routes` column says
//! which relay carries the host's failover routes, read from the live allowed IPs, so a
//! failover shows up here the moment `wg set` lands.

use std::fmt::Write as _;
use std::net::SocketAddr;

use serde::Serialize;

use super::lab::{Lab, LabHost};
use super::Error;
use wgfabric_model::inventory::Role;
use wgfabric_model::names::Name;

/// One tunnel between two hosts, seen from `host`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    /// The host whose device is read.
    pub host: Name,
    /// The peer.
    pub peer: Name,
    /// Where `host` sends to.
    pub endpoint: Option<SocketAddr>,
    /// Seconds since the latest handshake, if there was one.
    pub handshake_age: Option<u64>,
    /// Bytes received from the peer.
    pub rx_bytes: u64,
    /// Bytes sent to the peer.
    pub tx_bytes: u64,
    /// For a host with failover and a relay peer: whether this relay carries its failover
    /// routes.
    pub active: Option<bool>,
}

fn shows(host: &LabHost, peer_name: &Name, peer_role: Role) -> bool {
    match (host.role() == Role::Relay, peer_role == Role::Relay) {
        (false, true) => true,
        (true, false) => false,
        _ => host.name() < peer_name,
    }
}

impl Lab {
    /// Every link once; `unix_now` (seconds since the epoch) dates the handshakes. Hosts
    /// whose daemon is down are skipped.
    ///
    /// # Errors
    /// When a running device cannot be read.
    pub fn links(&self, unix_now: u64) -> Result<Vec<Link>, Error> {
        let mut links = Vec::new();
        for host in self.hosts().iter().filter(|host| host.is_running()) {
            let live = host.peers()?;
            let failover = host.config().failover.as_ref();
            // The configured peers, and the direct peers an agent added for other spokes.
            let config = host.config();
            let configured = config.peers.iter().map(|p| (&p.name, p.public_key, p.role));
            let direct = config.paths.iter().flat_map(|paths| &paths.peers);
            let peers = configured.chain(direct.map(|p| (&p.name, p.public_key, Role::Spoke)));
            for (name, key, role) in peers.filter(|(name, _, role)| shows(host, name, *role)) {
                let Some(state) = live.iter().find(|state| state.public_key == key) else {
                    continue;
                };
                links.push(Link {
                    host: host.name().clone(),
                    peer: name.clone(),
                    endpoint: state.endpoint,
                    handshake_age: state.latest_handshake.map(|t| unix_now.saturating_sub(t)),
                    rx_bytes: state.rx_bytes,
                    tx_bytes: state.tx_bytes,
                    active: failover.filter(|_| role == Role::Relay).map(|failover| {
                        failover.routes.iter().all(|route| state.allowed_ips.contains(route))
                    }),
                });
            }
        }
        Ok(links)
    }
}

/// The links as an aligned table.
pub fn links_text(links: &[Link]) -> String {
    let rows: Vec<[String; 7]> = links
        .iter()
        .map(|link| {
            [
                link.host.to_string(),
                link.peer.to_string(),
                link.endpoint.map_or_else(|| "-".to_owned(), |e| e.to_string()),
                link.handshake_age.map_or_else(|| "never".to_owned(), |s| format!("{s} s ago")),
                bytes(link.rx_bytes),
                bytes(link.tx_bytes),
                match link.active {
                    Some(true) => "active".to_owned(),
                    Some(false) => "standby".to_owned(),
                    None => String::new(),
                },
            ]
        })
        .collect();
    let header = ["HOST", "PEER", "ENDPOINT", "HANDSHAKE", "RX", "TX", "ROUTES"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (index, (cell, width)) in row.iter().zip(widths).enumerate() {
            // Numbers right-aligned, text left-aligned.
            if matches!(index, 4 | 5) {
                let _ = write!(line, "{cell:>width$}  ");
            } else {
                let _ = write!(line, "{cell:width$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Bytes with a binary unit: `532 B`, `12.3 KiB`, `4.0 MiB`.
fn bytes(count: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if count < 1024 {
        return format!("{count} B");
    }
    #[expect(clippy::cast_precision_loss, reason = "a rounded display value")]
    let mut value = count as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_are_readable() {
        assert_eq!(bytes(532), "532 B");
        assert_eq!(bytes(12_595), "12.3 KiB");
        assert_eq!(bytes(4 * 1024 * 1024), "4.0 MiB");
    }

    #[test]
    fn the_table_aligns_and_marks_the_active_relay() {
        let link = |peer: &str, active: bool, age: Option<u64>| Link {
            host: "laptop-ana".parse().unwrap(),
            peer: peer.parse().unwrap(),
            endpoint: Some("192.0.2.1:51820".parse().unwrap()),
            handshake_age: age,
            rx_bytes: 92,
            tx_bytes: 2048,
            active: Some(active),
        };
        let text = links_text(&[link("relay-fra", true, Some(3)), link("relay-iad", false, None)]);
        assert_eq!(
            text,
            "HOST        PEER       ENDPOINT         HANDSHAKE    RX       TX  ROUTES\n\
             laptop-ana  relay-fra  192.0.2.1:51820  3 s ago    92 B  2.0 KiB  active\n\
             laptop-ana  relay-iad  192.0.2.1:51820  never      92 B  2.0 KiB  standby\n"
        );
    }
}
