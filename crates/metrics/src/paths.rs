//! Direct paths between spokes, as their agents report them in their statuses: what
//! `wgfabric exporter --source` adds, so a dashboard shows which pairs go direct, which
//! through a relay and why, and alerts when a pair falls back.

use crate::exposition::{Family, Kind};

/// One pair of spokes, from one end (the `host`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathSample<'a> {
    /// The reporting spoke.
    pub host: &'a str,
    /// The other spoke.
    pub peer: &'a str,
    /// Whether the traffic goes over the direct peer.
    pub direct: bool,
    /// The relay carrying the traffic while relayed; empty when direct or unknown.
    pub via: &'a str,
    /// Why the path is what it is (docs/paths.md lists the reasons).
    pub reason: &'a str,
    /// When the mode or the reason last changed, in seconds since the Unix epoch.
    pub since: u64,
    /// The round-trip time of the latest answered probe over the tunnel, in microseconds.
    pub rtt_us: Option<u64>,
}

/// `wgfabric_path_direct`, `wgfabric_path_info`, `wgfabric_path_since_timestamp_seconds` and
/// `wgfabric_path_rtt_seconds` of `paths`.
pub fn path_families(paths: &[PathSample<'_>]) -> Vec<Family> {
    let mut direct = Family::new(
        "wgfabric_path_direct",
        Kind::Gauge,
        "1 when a pair of spokes talks over its direct peer, 0 when through a relay.",
    );
    let mut info = Family::new(
        "wgfabric_path_info",
        Kind::Gauge,
        "A pair's path: mode, the relay it goes through, and why (always 1).",
    );
    let mut since = Family::new(
        "wgfabric_path_since_timestamp_seconds",
        Kind::Gauge,
        "When a pair's path last changed mode or reason, in seconds since the Unix epoch.",
    );
    let mut rtt = Family::new(
        "wgfabric_path_rtt_seconds",
        Kind::Gauge,
        "Round-trip time of the latest answered probe over the tunnel to the other spoke.",
    );
    for path in paths {
        let pair = [("host", path.host), ("peer", path.peer)];
        direct.push(&pair, u64::from(path.direct));
        let mode = if path.direct { "direct" } else { "relayed" };
        info.push(
            &[
                ("host", path.host),
                ("peer", path.peer),
                ("mode", mode),
                ("via", path.via),
                ("reason", path.reason),
            ],
            1,
        );
        since.push(&pair, path.since);
        if let Some(micros) = path.rtt_us {
            rtt.push_micros(&pair, micros);
        }
    }
    vec![direct, info, since, rtt]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::render;

    #[test]
    fn a_direct_and_a_relayed_pair() {
        let text = render(&path_families(&[
            PathSample {
                host: "laptop-ana",
                peer: "laptop-ben",
                direct: true,
                via: "",
                reason: "handshake",
                since: 1_700_000_000,
                rtt_us: Some(812),
            },
            PathSample {
                host: "laptop-ana",
                peer: "ci-7",
                direct: false,
                via: "relay-fra",
                reason: "symmetric-nat",
                since: 1_700_000_100,
                rtt_us: None,
            },
        ]));
        for line in [
            "wgfabric_path_direct{host=\"laptop-ana\",peer=\"laptop-ben\"} 1\n",
            "wgfabric_path_direct{host=\"laptop-ana\",peer=\"ci-7\"} 0\n",
            "wgfabric_path_info{host=\"laptop-ana\",peer=\"ci-7\",mode=\"relayed\",\
             via=\"relay-fra\",reason=\"symmetric-nat\"} 1\n",
            "wgfabric_path_info{host=\"laptop-ana\",peer=\"laptop-ben\",mode=\"direct\",\
             reason=\"handshake\"} 1\n",
            "wgfabric_path_since_timestamp_seconds{host=\"laptop-ana\",peer=\"ci-7\"} 1700000100\n",
            "wgfabric_path_rtt_seconds{host=\"laptop-ana\",peer=\"laptop-ben\"} 0.000812\n",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert!(!text.contains("wgfabric_path_rtt_seconds{host=\"laptop-ana\",peer=\"ci-7\"}"));
    }
}
