//! The paths between spokes, as the demo shows them after the matrix: direct or through a
//! relay, and why. Where a pair may go direct the word is its agents' (their statuses in the
//! lab's source); where it may not, the desired state's (the access policy, or
//! `direct = "never"`).

use std::fmt::Write as _;
use std::net::SocketAddr;

use serde::Serialize;

use super::lab::{Lab, LabHost};
use wgfabric_model::inventory::Role;
use wgfabric_model::names::Name;
use wgfabric_store::state::{PathMode, PathReason};

/// One pair of spokes, once, from the end whose name sorts first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpokePath {
    /// The end whose view this is.
    pub host: Name,
    /// The other end.
    pub peer: Name,
    /// Direct or relayed.
    pub mode: PathMode,
    /// The relay carrying a relayed pair.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<Name>,
    /// Why (docs/paths.md lists the reasons).
    pub reason: PathReason,
    /// The direct peer's endpoint, while one is tried or used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<SocketAddr>,
}

/// Every pair of spokes of the lab.
pub fn spoke_paths(lab: &Lab) -> Vec<SpokePath> {
    let mut pairs = Vec::new();
    for host in lab.hosts() {
        let Some(paths) = &host.config().paths else { continue };
        let reported = lab.reported_paths(host.name());
        for peer in paths.peers.iter().filter(|peer| peer.name > *host.name()) {
            let pair = match reported.iter().find(|path| path.peer == peer.name) {
                Some(path) => SpokePath {
                    host: host.name().clone(),
                    peer: peer.name.clone(),
                    mode: path.mode,
                    via: path.via.clone(),
                    reason: path.reason,
                    endpoint: path.endpoint,
                },
                None => SpokePath {
                    host: host.name().clone(),
                    peer: peer.name.clone(),
                    mode: PathMode::Relayed,
                    via: active_relay(host),
                    reason: peer.never.map_or(PathReason::Trying, PathReason::from),
                    endpoint: None,
                },
            };
            pairs.push(pair);
        }
    }
    pairs
}

/// The relay that carries `host`'s traffic to the rest of the overlay.
fn active_relay(host: &LabHost) -> Option<Name> {
    let config = host.config();
    match &config.failover {
        Some(failover) => Some(failover.active.clone()),
        None => config.peers.iter().find(|p| p.role == Role::Relay).map(|p| p.name.clone()),
    }
}

/// Whether every pair that may go direct is direct at both ends.
pub fn all_direct_that_may(lab: &Lab) -> bool {
    lab.hosts().iter().filter(|host| host.has_agent()).all(|host| {
        let reported = lab.reported_paths(host.name());
        let may = host.config().paths.iter().flat_map(|paths| &paths.peers);
        may.filter(|peer| peer.never.is_none()).all(|peer| {
            reported.iter().any(|path| path.peer == peer.name && path.mode == PathMode::Direct)
        })
    })
}

/// The pairs as a table: the direct ones first.
pub fn paths_text(pairs: &[SpokePath]) -> String {
    let mut sorted: Vec<&SpokePath> = pairs.iter().collect();
    sorted.sort_by_key(|pair| pair.mode != PathMode::Direct);
    let rows: Vec<[String; 3]> = sorted
        .iter()
        .map(|pair| {
            let path = match (pair.mode, &pair.endpoint, &pair.via) {
                (PathMode::Direct, Some(endpoint), _) => format!("direct to {endpoint}"),
                (PathMode::Direct, None, _) => "direct".to_owned(),
                (PathMode::Relayed, _, Some(relay)) => format!("through {relay}"),
                (PathMode::Relayed, _, None) => "relayed".to_owned(),
            };
            [format!("{} <-> {}", pair.host, pair.peer), path, pair.reason.as_str().to_owned()]
        })
        .collect();
    let width = |column: usize| rows.iter().map(|row| row[column].len()).max().unwrap_or(0);
    let (first, second) = (width(0), width(1));
    let mut out = String::new();
    for [pair, path, reason] in rows {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "  {pair:first$}  {path:second$}  {reason}");
    }
    out
}
