//! The live state of an interface's peers, as the userspace API reports it.

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
