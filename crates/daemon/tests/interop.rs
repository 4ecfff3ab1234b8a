//! wgfabricd against itself, wireguard-go and boringtun-cli, with each side initiating: the
//! testkit's scenarios (handshake and ping, a 20 MB TCP transfer checked by hash, inner IPv6,
//! an IPv6 underlay, preshared keys matching and not) run once per ordered pair.
//!
//! In every scenario `a` initiates and the transfer flows from `b` to `a`, so the two orders of
//! a pair also cover both directions of the transfer. Link-local IPv6 underlays, whose
//! endpoints carry a scope, come last.

mod common;

use std::time::Duration;

use common::wgfabricd;
use wgfabric_testkit::scenarios::{self, Link, Psk, Side, Tunnel, Underlay, INNER_V4, PORTS};
use wgfabric_testkit::Impl::{self, WireguardGo};
use wgfabric_testkit::Netns;

macro_rules! interop {
    ($($pair:ident: $a:expr => $b:expr;)*) => {$(
        mod $pair {
            use wgfabric_testkit::scenarios;
            #[allow(unused_imports)]
            use wgfabric_testkit::Impl::{Boringtun, WireguardGo};

            use super::wgfabricd;

            const TWENTY_MB: u64 = 20 << 20;

            #[test]
            #[ignore = "needs root and network namespaces"]
            fn handshake_and_ping() {
                scenarios::handshake_and_ping(&$a, &$b);
            }

            #[test]
            #[ignore = "needs root and network namespaces"]
            fn twenty_megabytes_hash_checked() {
                scenarios::tcp_transfer(&$a, &$b, TWENTY_MB);
            }

            #[test]
            #[ignore = "needs root and network namespaces"]
            fn inner_ipv6() {
                scenarios::inner_ipv6(&$a, &$b);
            }

            #[test]
            #[ignore = "needs root and network namespaces"]
            fn ipv6_underlay() {
                scenarios::ipv6_underlay(&$a, &$b);
            }

            #[test]
            #[ignore = "needs root and network namespaces"]
            fn preshared_key_connects() {
                scenarios::preshared_key_connects(&$a, &$b);
            }

            #[test]
            #[ignore = "needs root and network namespaces"]
            fn preshared_key_mismatch_does_not_connect() {
                scenarios::preshared_key_mismatch_does_not_connect(&$a, &$b);
            }
        }
    )*};
}

interop! {
    wgfabricd_to_wgfabricd: wgfabricd() => wgfabricd();
    wgfabricd_to_wireguard_go: wgfabricd() => WireguardGo;
    wireguard_go_to_wgfabricd: WireguardGo => wgfabricd();
    wgfabricd_to_boringtun: wgfabricd() => Boringtun;
    boringtun_to_wgfabricd: Boringtun => wgfabricd();
}

/// The link-local IPv6 address of `device`, which the kernel gave it when it came up.
fn link_local(ns: &Netns, device: &str) -> String {
    let listing = ns.run(&["ip", "-6", "-o", "address", "show", "dev", device, "scope", "link"]);
    let cidr = listing.split_whitespace().skip_while(|word| *word != "inet6").nth(1);
    let addr = cidr.and_then(|cidr| cidr.split_once('/')).map(|(addr, _)| addr.to_owned());
    addr.unwrap_or_else(|| panic!("no link-local address on {device}: {listing}"))
}

/// How `implementation`'s `wg show` writes a link-local endpoint: with its scope, except
/// wireguard-go 0.0.2022, which drops it.
fn shown_endpoint(implementation: &Impl, address: &str, scope: &str, port: u16) -> String {
    match implementation {
        WireguardGo => format!("[{address}]:{port}"),
        _ => format!("[{address}%{scope}]:{port}"),
    }
}

/// `a` reaches `b` at a link-local endpoint, `[fe80::…%veth-a]:port`: the scope travels through
/// `wg` and the userspace API as an interface name, and both sides must send on the right
/// link; `b` learns `a`'s endpoint, scope and all.
fn link_local_underlay(a: &Impl, b: &Impl) {
    if !scenarios::available(a, b) {
        return;
    }
    let link = Link::new(Underlay::V6);
    let tunnel = Tunnel::new(&link, a, b, Psk::None);
    let (a_device, b_device) = (Link::device(Side::A), Link::device(Side::B));
    let (a_address, b_address) = (link_local(&link.a, a_device), link_local(&link.b, b_device));
    let b_endpoint = format!("[{b_address}%{a_device}]:{}", PORTS[1]);
    tunnel.a.set(&["peer", &tunnel.b_key.to_base64(), "endpoint", &b_endpoint]);

    let reply = link.a.ping_until_reply(INNER_V4[1], Duration::from_secs(15));
    assert!(reply, "no reply over the link-local underlay");
    assert!(link.a.ping(INNER_V4[1], 5).all_answered());
    let a_view = tunnel.a.dump().peer(&tunnel.b_key).and_then(|p| p.endpoint.clone());
    let expected = shown_endpoint(a, &b_address, a_device, PORTS[1]);
    assert_eq!(a_view, Some(expected), "a's view of b");
    let b_view = tunnel.b.dump().peer(&tunnel.a_key).and_then(|p| p.endpoint.clone());
    let expected = shown_endpoint(b, &a_address, b_device, PORTS[0]);
    assert_eq!(b_view, Some(expected), "b's view of a");
}

#[test]
#[ignore = "needs root and network namespaces"]
fn link_local_underlay_between_wgfabricd() {
    link_local_underlay(&wgfabricd(), &wgfabricd());
}

#[test]
#[ignore = "needs root and network namespaces"]
fn link_local_underlay_with_wireguard_go() {
    link_local_underlay(&wgfabricd(), &WireguardGo);
    link_local_underlay(&WireguardGo, &wgfabricd());
}
