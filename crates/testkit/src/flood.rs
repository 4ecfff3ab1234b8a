//! A handshake flood sent from inside a namespace: the `handshake-flood` binary of this crate,
//! run in the background.

use std::net::{IpAddr, SocketAddr};

use wgfabric_proto::keys::PublicKey;

use crate::transfer::testkit_binary;
use wgfabric_netns::{Background, Netns};

/// Starts sending handshake initiations with a valid `mac1` for `key` from `sender` to
/// `target`, `rate` a second for `seconds`, from 64 sockets spread over `sources` (addresses
/// of `sender`; none: the address the route picks). [`Background::wait`] reports
/// `sent N in S s (R/s)` as its last line; `$WGFABRIC_HANDSHAKE_FLOOD` overrides the binary.
pub fn flood_handshakes(
    sender: &Netns,
    target: SocketAddr,
    key: &PublicKey,
    rate: u64,
    seconds: u64,
    sources: &[IpAddr],
) -> Background {
    let flood = testkit_binary("handshake-flood", "WGFABRIC_HANDSHAKE_FLOOD");
    let mut argv = vec![
        flood.to_string_lossy().into_owned(),
        target.to_string(),
        key.to_base64(),
        rate.to_string(),
        seconds.to_string(),
    ];
    argv.extend(sources.iter().map(ToString::to_string));
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    sender.spawn(&argv)
}
