//! The access policy's counters: what each rule of a host's firewall (`table inet wgfabric`)
//! accepted or dropped, as `wgfabric exporter` reads them from nftables.

use crate::exposition::{Family, Kind};

/// What one rule of one chain counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleCount<'a> {
    /// The chain (`tunnel_input`, `tunnel_forward`, `antispoof`, `underlay_input`).
    pub chain: &'a str,
    /// The policy rule, or the table's own (`default-deny`, `antispoof`, ...).
    pub rule: &'a str,
    /// `accept` or `drop`.
    pub verdict: &'a str,
    /// Packets counted.
    pub packets: u64,
    /// Bytes counted.
    pub bytes: u64,
}

/// `wgfabric_policy_packets_total` and `wgfabric_policy_bytes_total` of `counts`.
pub fn policy_families(counts: &[RuleCount<'_>]) -> Vec<Family> {
    let mut packets = Family::new(
        "wgfabric_policy_packets_total",
        Kind::Counter,
        "Packets the host's firewall accepted or dropped, by chain and policy rule.",
    );
    let mut bytes = Family::new(
        "wgfabric_policy_bytes_total",
        Kind::Counter,
        "Bytes the host's firewall accepted or dropped, by chain and policy rule.",
    );
    for count in counts {
        let labels = [("chain", count.chain), ("rule", count.rule), ("verdict", count.verdict)];
        packets.push(&labels, count.packets);
        bytes.push(&labels, count.bytes);
    }
    vec![packets, bytes]
}
