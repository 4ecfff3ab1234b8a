//! The reference implementations against each other: proves the testkit and the scenarios
//! before they are pointed at wgfabricd. Each scenario runs with both sides initiating where
//! that matters.

use wgfabric_testkit::scenarios;
use wgfabric_testkit::Impl::{Boringtun, WireguardGo};

const TWENTY_MB: u64 = 20 << 20;

#[test]
#[ignore = "needs root and network namespaces"]
fn wireguard_go_initiates_to_boringtun() {
    scenarios::handshake_and_ping(&WireguardGo, &Boringtun);
}

#[test]
#[ignore = "needs root and network namespaces"]
fn boringtun_initiates_to_wireguard_go() {
    scenarios::handshake_and_ping(&Boringtun, &WireguardGo);
}

#[test]
#[ignore = "needs root and network namespaces"]
fn twenty_megabytes_hash_checked_each_way() {
    scenarios::tcp_transfer(&WireguardGo, &Boringtun, TWENTY_MB);
    scenarios::tcp_transfer(&Boringtun, &WireguardGo, TWENTY_MB);
}

#[test]
#[ignore = "needs root and network namespaces"]
fn inner_ipv6() {
    scenarios::inner_ipv6(&WireguardGo, &Boringtun);
}

#[test]
#[ignore = "needs root and network namespaces"]
fn ipv6_underlay() {
    scenarios::ipv6_underlay(&Boringtun, &WireguardGo);
}

#[test]
#[ignore = "needs root and network namespaces"]
fn preshared_key_connects() {
    scenarios::preshared_key_connects(&WireguardGo, &Boringtun);
}

#[test]
#[ignore = "needs root and network namespaces"]
fn preshared_key_mismatch_does_not_connect() {
    scenarios::preshared_key_mismatch_does_not_connect(&WireguardGo, &Boringtun);
}
