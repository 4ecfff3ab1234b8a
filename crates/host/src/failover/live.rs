//! The live state of an interface's peers, read from `wg show IFACE dump` (the one format the
//! kernel module, wireguard-go and wgfabricd all print) or from the userspace API.
//!
//! The dump's first line holds the interface's private key. It is recognised by its field
//! count and skipped without being kept or quoted in an error.

use core::fmt;
use std::net::SocketAddr;

use serde::Serialize;
use wgfabric_proto::keys::PublicKey;
use wgfabric_proto::uapi::PeerSnapshot;

use wgfabric_model::cidr::Cidr;

/// One peer as the device reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LivePeer {
    /// Its public key.
    #[serde(with = "wgfabric_model::serde_keys")]
    pub public_key: PublicKey,
    /// The address packets are sent to (configured or learned), if any.
    pub endpoint: Option<SocketAddr>,
    /// Its allowed IPs, in the device's order.
    pub allowed_ips: Vec<Cidr>,
    /// Seconds since the Unix epoch of the latest completed handshake, if any.
    pub latest_handshake: Option<u64>,
    /// Bytes received from it.
    pub rx_bytes: u64,
    /// Bytes sent to it.
    pub tx_bytes: u64,
    /// PersistentKeepalive in seconds, if on.
    pub persistent_keepalive: Option<u16>,
}

impl From<&PeerSnapshot> for LivePeer {
    fn from(peer: &PeerSnapshot) -> Self {
        Self {
            public_key: peer.public_key,
            endpoint: peer.endpoint,
            allowed_ips: peer.allowed_ips.iter().map(|&cidr| cidr.into()).collect(),
            latest_handshake: peer.last_handshake_time.map(|time| time.as_secs()),
            rx_bytes: peer.rx_bytes,
            tx_bytes: peer.tx_bytes,
            persistent_keepalive: (peer.persistent_keepalive_interval != 0)
                .then_some(peer.persistent_keepalive_interval),
        }
    }
}

/// A dump line that is not what `wg` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpError {
    /// 1-based line number.
    pub line: usize,
    /// Which field, and why.
    pub reason: String,
}

impl fmt::Display for DumpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`wg show dump` line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for DumpError {}

/// Fields of the interface line: private key, public key, listen port, fwmark.
const INTERFACE_FIELDS: usize = 4;
/// Fields of a peer line.
const PEER_FIELDS: usize = 8;

/// Parses the output of `wg show IFACE dump` into its peers, in the device's order.
///
/// # Errors
/// [`DumpError`] naming the line and field that does not parse (never quoting the interface
/// line).
pub fn parse_dump(text: &str) -> Result<Vec<LivePeer>, DumpError> {
    let mut peers = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split('\t').collect();
        let error = |reason: String| DumpError { line: index + 1, reason };
        match fields.len() {
            1 if line.trim().is_empty() => {}
            INTERFACE_FIELDS => {}
            PEER_FIELDS => peers.push(parse_peer(&fields).map_err(error)?),
            n => return Err(error(format!("{n} tab-separated fields, expected 4 or 8"))),
        }
    }
    Ok(peers)
}

fn parse_peer(fields: &[&str]) -> Result<LivePeer, String> {
    let number = |name: &str, text: &str| -> Result<u64, String> {
        text.parse().map_err(|_| format!("{name} `{text}` is not a number"))
    };
    let public_key = PublicKey::from_base64(fields[0])
        .map_err(|_| format!("public key `{}` is not base64 of 32 bytes", fields[0]))?;
    let endpoint = match fields[2] {
        "(none)" => None,
        text => Some(text.parse().map_err(|_| format!("endpoint `{text}` is not HOST:PORT"))?),
    };
    let allowed_ips = match fields[3] {
        "(none)" => Vec::new(),
        list => list
            .split(',')
            .map(|ip| {
                Cidr::parse_truncating(ip).map_err(|_| format!("allowed IP `{ip}` is not a prefix"))
            })
            .collect::<Result<_, _>>()?,
    };
    let latest_handshake = Some(number("latest handshake", fields[4])?).filter(|t| *t != 0);
    let persistent_keepalive = match fields[7] {
        "off" => None,
        text => Some(text.parse().map_err(|_| format!("keepalive `{text}` is not a number"))?),
    };
    Ok(LivePeer {
        public_key,
        endpoint,
        allowed_ips,
        latest_handshake,
        rx_bytes: number("rx bytes", fields[5])?,
        tx_bytes: number("tx bytes", fields[6])?,
        persistent_keepalive,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIVATE: &str = "cLPKjyD88vvnDS99MIdLaspyFvZk7kgZd0stwPeyS2U=";
    const PEER_A: &str = "GiO8SX1rIOT3aaL+LL7A71yKmAvCDKO3nMud36Vs8zM=";
    const PEER_B: &str = "Z0PkuJM/hFCGoobZz1XUI/iXsTnOSucy5amyOgBCu0o=";

    fn dump() -> String {
        format!(
            "{PRIVATE}\t{PEER_B}\t51820\toff\n\
             {PEER_A}\t(none)\t192.0.2.2:51820\t10.9.0.2/32,fd00::/64\t1795637190\t476\t532\t25\n\
             {PEER_B}\t(none)\t(none)\t(none)\t0\t0\t0\toff\n"
        )
    }

    #[test]
    fn peers_with_and_without_state() {
        let peers = parse_dump(&dump()).unwrap();
        assert_eq!(peers.len(), 2);
        let a = &peers[0];
        assert_eq!(a.public_key.to_base64(), PEER_A);
        assert_eq!(a.endpoint, Some("192.0.2.2:51820".parse().unwrap()));
        assert_eq!(a.allowed_ips, ["10.9.0.2/32".parse().unwrap(), "fd00::/64".parse().unwrap()]);
        assert_eq!((a.latest_handshake, a.rx_bytes, a.tx_bytes), (Some(1795637190), 476, 532));
        assert_eq!(a.persistent_keepalive, Some(25));
        let b = &peers[1];
        assert_eq!((b.endpoint, b.latest_handshake, b.persistent_keepalive), (None, None, None));
        assert!(b.allowed_ips.is_empty());
    }

    #[test]
    fn errors_name_the_line_and_never_the_private_key() {
        let bad = dump().replace("\t476\t", "\tmany\t");
        let error = parse_dump(&bad).unwrap_err();
        assert_eq!(error.line, 2);
        assert!(error.reason.contains("rx bytes"), "{error}");
        let truncated = format!("{PRIVATE}\t{PEER_B}\t51820\n");
        let error = parse_dump(&truncated).unwrap_err();
        assert!(!error.to_string().contains(PRIVATE), "{error}");
    }
}
