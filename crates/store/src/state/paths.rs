//! The documents agents exchange to set up direct paths between spokes.
//!
//! ```text
//!  relay agent ──put(Observed, RELAY)──► observed/RELAY: per peer key, the endpoint the
//!                                        relay's own socket sees, and the handshake age
//!  spoke agent ──put(Candidates, HOST)─► candidates/HOST: its listen port, LAN addresses
//!                                        (for hosts of its site), its readiness per pair
//! ```
//!
//! Both carry the time they were written and a time to live: a reader ignores a document
//! older than its TTL, so an agent that stopped cannot hold a pair on stale information.
//! Neither is trusted for more than a hint: a direct path is used only after a WireGuard
//! handshake with the peer's key, so a wrong or hostile document can only keep a pair
//! relayed.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};
use wgfabric_proto::keys::PublicKey;

use super::FORMAT;
use wgfabric_model::names::Name;
use wgfabric_model::paths::Never;

/// How long an observation or a candidate list stays usable after it was written, in
/// seconds: a few publication intervals, so one missed write does not expire it.
pub const TTL: u64 = 60;

/// What a relay's WireGuard socket sees of its peers (`observed/RELAY`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    /// [`FORMAT`].
    pub format: u32,
    /// The relay.
    pub relay: Name,
    /// When it was written, in seconds since the Unix epoch.
    pub time: u64,
    /// Seconds after `time` during which it may be used.
    pub ttl: u64,
    /// Every peer with an endpoint and a handshake.
    pub peers: Vec<ObservedPeer>,
}

/// One peer as a relay sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedPeer {
    /// The peer's public key.
    #[serde(with = "wgfabric_model::serde_keys")]
    pub public_key: PublicKey,
    /// Where its packets come from: its NAT's public mapping, for a host behind NAT.
    pub endpoint: SocketAddr,
    /// Seconds between its latest handshake and `time`.
    pub handshake_age: u64,
}

/// What a spoke offers for direct paths, and where it stands with each peer
/// (`candidates/HOST`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidates {
    /// [`FORMAT`].
    pub format: u32,
    /// The host.
    pub host: Name,
    /// When it was written, in seconds since the Unix epoch.
    pub time: u64,
    /// Seconds after `time` during which it may be used.
    pub ttl: u64,
    /// The port its WireGuard socket listens on.
    pub listen_port: u16,
    /// Its LAN addresses, for hosts of its site only (empty for a host without a site).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lan: Vec<IpAddr>,
    /// Where it stands with each peer it is trying or using a direct path with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pairs: Vec<PairSignal>,
}

/// One end's progress with a direct path, for the other end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairSignal {
    /// The peer host.
    pub peer: Name,
    /// How far this end is.
    pub stage: Stage,
    /// Since when, in milliseconds since the Unix epoch.
    pub since_ms: u64,
}

/// How far one end of a pair is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// It has the direct peer on its interface and tries candidates: the other end joins
    /// at once, so that both send within the same window.
    Trying,
    /// Its direct peer completed a handshake: it moves the pair's addresses to it at the
    /// later of both ends' `since_ms`, plus a margin, so both switch at one instant.
    Ready,
    /// It carries the pair's addresses on the direct peer.
    Direct,
}

/// Where the traffic between a spoke and another stands, as its agent reports it in its
/// status (`paths`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathStatus {
    /// The other spoke.
    pub peer: Name,
    /// Direct or relayed.
    pub mode: PathMode,
    /// The relay carrying the traffic while relayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<Name>,
    /// What the path is doing, or why it is not direct.
    pub reason: PathReason,
    /// Since when (seconds since the Unix epoch): the mode's start, or the reason's event
    /// (the probe that failed, the demotion).
    pub since: u64,
    /// The direct peer's endpoint, while one is tried or used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<SocketAddr>,
    /// The round-trip time of the latest answered probe over the tunnel, in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_us: Option<u64>,
}

/// Which way the traffic goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathMode {
    /// Over the direct peer.
    Direct,
    /// Through a relay.
    Relayed,
}

/// Why a path is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PathReason {
    /// Direct: the direct peer completed its handshake and both ends moved to it.
    Handshake,
    /// A candidate endpoint is being tried.
    Trying,
    /// The direct peer works; both ends move to it at an agreed instant.
    Switching,
    /// The direct peer works here; the peer's agent has not said so yet.
    WaitingForPeer,
    /// No endpoint to try: no inventory endpoint, no fresh relay observation, no LAN address
    /// of the same site.
    NoCandidate,
    /// Two relays see the peer (or this host) at different ports: its NAT maps each
    /// destination apart, and a direct packet would find no mapping.
    SymmetricNat,
    /// Every candidate was tried and no handshake came back; retried later.
    ProbeFailed,
    /// The direct path stopped answering and the traffic went back to the relay.
    Demoted,
    /// The access policy restricts this pair, and relays enforce it.
    Policy,
    /// This host says `direct = "never"`.
    DirectNeverHost,
    /// The peer says `direct = "never"`.
    DirectNeverPeer,
    /// The network says `direct = "never"`.
    DirectNeverNetwork,
}

impl PathReason {
    /// Whether the desired state keeps the pair relayed (not a condition met at run time).
    pub const fn is_never(self) -> bool {
        matches!(
            self,
            Self::Policy | Self::DirectNeverHost | Self::DirectNeverPeer | Self::DirectNeverNetwork
        )
    }

    /// The reason as shown.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Handshake => "handshake",
            Self::Trying => "trying",
            Self::Switching => "switching",
            Self::WaitingForPeer => "waiting-for-peer",
            Self::NoCandidate => "no-candidate",
            Self::SymmetricNat => "symmetric-nat",
            Self::ProbeFailed => "probe-failed",
            Self::Demoted => "demoted",
            Self::Policy => "policy",
            Self::DirectNeverHost => "direct-never-host",
            Self::DirectNeverPeer => "direct-never-peer",
            Self::DirectNeverNetwork => "direct-never-network",
        }
    }
}

impl From<Never> for PathReason {
    fn from(never: Never) -> Self {
        match never {
            Never::Host => Self::DirectNeverHost,
            Never::Peer => Self::DirectNeverPeer,
            Never::Network => Self::DirectNeverNetwork,
            Never::Policy => Self::Policy,
        }
    }
}

/// Bytes that are not a document of this version, or one whose time to live is over.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PathDocError {
    /// Not JSON of the document's shape.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A format this version does not read.
    #[error("format {0} (this wgfabric reads {FORMAT})")]
    Format(u32),
    /// Written by an agent for another host than the one it is filed under.
    #[error("written for {0}")]
    Owner(Name),
    /// Older than its time to live (or from the future, beyond it).
    #[error("expired: written at {time}, {ttl} s to live")]
    Expired {
        /// When it was written.
        time: u64,
        /// Its time to live.
        ttl: u64,
    },
}

/// Whether a document written at `time` with `ttl` is still usable `now` (seconds since the
/// Unix epoch); a clock ahead of ours by more than the TTL counts as expired as well.
fn fresh(time: u64, ttl: u64, now: u64) -> Result<(), PathDocError> {
    let ttl = ttl.min(TTL);
    if now.saturating_sub(time) > ttl || time.saturating_sub(now) > ttl {
        return Err(PathDocError::Expired { time, ttl });
    }
    Ok(())
}

impl Observed {
    /// Reads the observations filed under `relay`, usable at `now`.
    ///
    /// # Errors
    /// [`PathDocError`] when the bytes are not such a document, belong to another relay or
    /// expired.
    pub fn from_json(bytes: &[u8], relay: &Name, now: u64) -> Result<Self, PathDocError> {
        let doc: Self = serde_json::from_slice(bytes)?;
        if doc.format != FORMAT {
            return Err(PathDocError::Format(doc.format));
        }
        if doc.relay != *relay {
            return Err(PathDocError::Owner(doc.relay));
        }
        fresh(doc.time, doc.ttl, now)?;
        Ok(doc)
    }

    /// The document as JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("observations serialize")
    }

    /// Where the relay sees `key`, with the handshake age at `time`.
    pub fn peer(&self, key: &PublicKey) -> Option<&ObservedPeer> {
        self.peers.iter().find(|peer| peer.public_key == *key)
    }
}

impl Candidates {
    /// Reads the candidates filed under `host`, usable at `now`.
    ///
    /// # Errors
    /// [`PathDocError`] when the bytes are not such a document, belong to another host or
    /// expired.
    pub fn from_json(bytes: &[u8], host: &Name, now: u64) -> Result<Self, PathDocError> {
        let doc: Self = serde_json::from_slice(bytes)?;
        if doc.format != FORMAT {
            return Err(PathDocError::Format(doc.format));
        }
        if doc.host != *host {
            return Err(PathDocError::Owner(doc.host));
        }
        fresh(doc.time, doc.ttl, now)?;
        Ok(doc)
    }

    /// The document as JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("candidates serialize")
    }

    /// Where this host stands with `peer`, if it tries or uses a direct path with it.
    pub fn signal(&self, peer: &Name) -> Option<&PairSignal> {
        self.pairs.iter().find(|signal| signal.peer == *peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use wgfabric_proto::keys::PrivateKey;

    fn name(text: &str) -> Name {
        text.parse().unwrap()
    }

    fn observed(time: u64) -> Observed {
        Observed {
            format: FORMAT,
            relay: name("relay-fra"),
            time,
            ttl: TTL,
            peers: vec![ObservedPeer {
                public_key: PrivateKey::from_bytes([3; 32]).public_key(),
                endpoint: "192.0.2.100:51820".parse().unwrap(),
                handshake_age: 4,
            }],
        }
    }

    #[test]
    fn observations_round_trip_and_expire() {
        let doc = observed(1_000);
        let bytes = doc.to_json();
        assert_eq!(Observed::from_json(&bytes, &name("relay-fra"), 1_030).unwrap(), doc);
        let late = Observed::from_json(&bytes, &name("relay-fra"), 1_000 + TTL + 1);
        assert!(matches!(late, Err(PathDocError::Expired { .. })), "{late:?}");
        let early = Observed::from_json(&bytes, &name("relay-fra"), 1_000 - TTL - 1);
        assert!(matches!(early, Err(PathDocError::Expired { .. })), "{early:?}");
        let filed_wrong = Observed::from_json(&bytes, &name("relay-iad"), 1_000);
        assert!(matches!(filed_wrong, Err(PathDocError::Owner(_))), "{filed_wrong:?}");
        assert!(Observed::from_json(b"{\"format\":1", &name("relay-fra"), 1_000).is_err());
    }

    #[test]
    fn a_long_ttl_is_cut_to_the_fabrics() {
        let mut doc = observed(1_000);
        doc.ttl = 86_400;
        let bytes = doc.to_json();
        assert!(Observed::from_json(&bytes, &name("relay-fra"), 1_000 + TTL + 1).is_err());
    }

    #[test]
    fn candidates_say_where_a_host_stands_with_each_peer() {
        let doc = Candidates {
            format: FORMAT,
            host: name("laptop-ana"),
            time: 50,
            ttl: TTL,
            listen_port: 51820,
            lan: vec!["192.168.1.5".parse().unwrap()],
            pairs: vec![PairSignal {
                peer: name("laptop-ben"),
                stage: Stage::Ready,
                since_ms: 49_500,
            }],
        };
        let read = Candidates::from_json(&doc.to_json(), &name("laptop-ana"), 60).unwrap();
        let ben = read.signal(&name("laptop-ben")).unwrap();
        assert_eq!((ben.stage, ben.since_ms), (Stage::Ready, 49_500));
        assert_eq!(read.signal(&name("ci-runner-1")), None);
        assert!(Candidates::from_json(&doc.to_json(), &name("laptop-ben"), 60).is_err());
    }
}
