//! The endpoints to try for a direct path to one peer, in order, from what the store says.
//!
//! 1. The peer's inventory endpoint: a host with a stable address.
//! 2. Where the relays' own sockets see the peer: its NAT's mapping towards them, which an
//!    endpoint-independent NAT (most home routers, port-preserving masquerade) also uses
//!    towards this host. Two relays that see different ports for one host mean its NAT maps
//!    each destination apart (*symmetric*): a direct packet would find no mapping, so none
//!    is tried. Two relays that see different addresses contradict each other, and neither
//!    is tried either.
//! 3. The peer's LAN addresses with its listen port, for a peer of this host's site only.
//!
//! Observations older than their time to live, or whose handshake is older than a session
//! lives (180 s), are ignored.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use wgfabric_model::paths::is_lan_address;
use wgfabric_proto::keys::PublicKey;
use wgfabric_store::state::{Candidates, Observed};

/// How old a relay's handshake with a peer may be for its endpoint to count: WireGuard's
/// session lifetime (REJECT_AFTER_TIME), after which the mapping may have moved.
const OBSERVATION_MAX_AGE: u64 = 180;

/// The endpoints to try, and whether a symmetric NAT ruled the relays' observations out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CandidateList {
    /// In the order to try them, without repeats.
    pub endpoints: Vec<SocketAddr>,
    /// The peer or this host is behind a NAT that maps each destination apart.
    pub symmetric: bool,
}

/// What the store says that bears on one pair.
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    /// The peer's key.
    pub peer_key: &'a PublicKey,
    /// This host's key.
    pub own_key: &'a PublicKey,
    /// The peer's inventory endpoint, resolved.
    pub inventory: Option<SocketAddr>,
    /// Every relay's fresh observations.
    pub observed: &'a [Observed],
    /// The peer's fresh candidates document.
    pub peer_doc: Option<&'a Candidates>,
    /// Whether the two hosts share a site (LAN addresses are tried only then).
    pub same_site: bool,
    /// Now, in seconds since the Unix epoch.
    pub now: u64,
}

/// Where the relays see `key` lately: one endpoint per relay that had a recent handshake.
fn sightings(observed: &[Observed], key: &PublicKey, now: u64) -> BTreeSet<SocketAddr> {
    observed
        .iter()
        .filter_map(|doc| {
            let peer = doc.peer(key)?;
            let age = peer.handshake_age.saturating_add(now.saturating_sub(doc.time));
            (age <= OBSERVATION_MAX_AGE).then_some(peer.endpoint)
        })
        .collect()
}

/// What several relays' sightings of one host say: the endpoint when they agree, and whether
/// they disagree on the port only (a symmetric NAT).
fn agree(seen: &BTreeSet<SocketAddr>) -> (Option<SocketAddr>, bool) {
    let mut all = seen.iter();
    let Some(first) = all.next() else { return (None, false) };
    if seen.len() == 1 {
        return (Some(*first), false);
    }
    let same_address = seen.iter().all(|addr| addr.ip() == first.ip());
    (None, same_address)
}

/// The candidate endpoints of a peer, in order.
pub fn candidates(sources: &Sources<'_>) -> CandidateList {
    let mut endpoints: Vec<SocketAddr> = sources.inventory.into_iter().collect();
    let (peer_at, peer_symmetric) =
        agree(&sightings(sources.observed, sources.peer_key, sources.now));
    let (_, own_symmetric) = agree(&sightings(sources.observed, sources.own_key, sources.now));
    let symmetric = peer_symmetric || own_symmetric;
    if !symmetric {
        endpoints.extend(peer_at);
    }
    if let Some(doc) = sources.peer_doc.filter(|_| sources.same_site) {
        endpoints.extend(
            doc.lan
                .iter()
                .filter(|ip| is_lan_address(**ip))
                .map(|ip| SocketAddr::new(*ip, doc.listen_port)),
        );
    }
    let mut seen = BTreeSet::new();
    endpoints.retain(|endpoint| endpoint.port() != 0 && seen.insert(*endpoint));
    CandidateList { endpoints, symmetric }
}

#[cfg(test)]
mod tests {
    use super::*;

    use wgfabric_proto::keys::PrivateKey;
    use wgfabric_store::state::{ObservedPeer, FORMAT, TTL};

    fn key(seed: u8) -> PublicKey {
        PrivateKey::from_bytes([seed; 32]).public_key()
    }

    fn relay(name: &str, time: u64, seen: &[(PublicKey, &str, u64)]) -> Observed {
        Observed {
            format: FORMAT,
            relay: name.parse().unwrap(),
            time,
            ttl: TTL,
            peers: seen
                .iter()
                .map(|(public_key, endpoint, handshake_age)| ObservedPeer {
                    public_key: *public_key,
                    endpoint: endpoint.parse().unwrap(),
                    handshake_age: *handshake_age,
                })
                .collect(),
        }
    }

    fn lan_doc() -> Candidates {
        Candidates {
            format: FORMAT,
            host: "b".parse().unwrap(),
            time: 1_000,
            ttl: TTL,
            listen_port: 51821,
            lan: vec!["192.168.1.7".parse().unwrap(), "127.0.0.1".parse().unwrap()],
            pairs: Vec::new(),
        }
    }

    fn list(sources: &Sources<'_>) -> Vec<String> {
        candidates(sources).endpoints.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn inventory_then_relays_then_the_lan_of_the_same_site() {
        let (a, b) = (key(1), key(2));
        let observed = [
            relay("r1", 1_000, &[(b, "198.51.100.2:51821", 5), (a, "198.51.100.1:40000", 5)]),
            relay("r2", 1_000, &[(b, "198.51.100.2:51821", 9)]),
        ];
        let doc = lan_doc();
        let mut sources = Sources {
            peer_key: &b,
            own_key: &a,
            inventory: Some("203.0.113.9:51820".parse().unwrap()),
            observed: &observed,
            peer_doc: Some(&doc),
            same_site: true,
            now: 1_010,
        };
        assert_eq!(
            list(&sources),
            ["203.0.113.9:51820", "198.51.100.2:51821", "192.168.1.7:51821"],
            "loopback LAN addresses are never tried"
        );
        sources.same_site = false;
        sources.inventory = None;
        assert_eq!(list(&sources), ["198.51.100.2:51821"], "no LAN address to another site");
    }

    #[test]
    fn two_relays_seeing_two_ports_mean_a_symmetric_nat() {
        let (a, b) = (key(1), key(2));
        let observed = [
            relay("r1", 1_000, &[(b, "198.51.100.2:1111", 5)]),
            relay("r2", 1_000, &[(b, "198.51.100.2:2222", 5)]),
        ];
        let sources = Sources {
            peer_key: &b,
            own_key: &a,
            inventory: None,
            observed: &observed,
            peer_doc: None,
            same_site: false,
            now: 1_000,
        };
        assert_eq!(candidates(&sources), CandidateList { endpoints: vec![], symmetric: true });
        // This host's own NAT rules out the relays' view of the peer just as well.
        let observed = [
            relay("r1", 1_000, &[(b, "198.51.100.2:1111", 5), (a, "198.51.100.1:1", 5)]),
            relay("r2", 1_000, &[(a, "198.51.100.1:2", 5)]),
        ];
        let sources = Sources { peer_key: &b, own_key: &a, observed: &observed, ..sources };
        assert!(candidates(&sources).symmetric);
        assert!(candidates(&sources).endpoints.is_empty());
    }

    #[test]
    fn old_or_contradictory_sightings_are_ignored() {
        let (a, b) = (key(1), key(2));
        let old = [relay("r1", 1_000, &[(b, "198.51.100.2:1111", 170)])];
        let sources = Sources {
            peer_key: &b,
            own_key: &a,
            inventory: None,
            observed: &old,
            peer_doc: None,
            same_site: false,
            now: 1_011,
        };
        assert_eq!(candidates(&sources), CandidateList::default(), "181 s since the handshake");
        let contradictory = [
            relay("r1", 1_000, &[(b, "198.51.100.2:1111", 5)]),
            relay("r2", 1_000, &[(b, "198.51.100.3:1111", 5)]),
        ];
        let sources = Sources { observed: &contradictory, ..sources };
        assert_eq!(candidates(&sources), CandidateList::default());
    }
}
