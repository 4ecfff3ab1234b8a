//! wgfabricd against itself, wireguard-go and boringtun-cli, with each side initiating: the
//! testkit's scenarios (handshake and ping, a 20 MB TCP transfer checked by hash, inner IPv6,
//! an IPv6 underlay, preshared keys matching and not) run once per ordered pair.
//!
//! In every scenario `a` initiates and the transfer flows from `b` to `a`, so the two orders of
//! a pair also cover both directions of the transfer.

mod common;

macro_rules! interop {
    ($($pair:ident: $a:expr => $b:expr;)*) => {$(
        mod $pair {
            use wgfabric_testkit::scenarios;
            #[allow(unused_imports)]
            use wgfabric_testkit::Impl::{Boringtun, WireguardGo};

            use crate::common::wgfabricd;

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
