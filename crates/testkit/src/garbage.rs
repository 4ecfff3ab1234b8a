//! Nonsense datagrams sprayed at a UDP port from inside a namespace, for robustness tests: the
//! `netprobe garbage` mode of this crate, run in the background.

use std::net::SocketAddr;

use crate::netns::{Background, Netns};
use crate::transfer::netprobe_path;

/// How many garbage datagrams `netprobe` sends per second.
pub const GARBAGE_PER_SECOND: u64 = 10_000;

/// Starts sending `count` datagrams of nonsense from `sender` to `target`, at
/// [`GARBAGE_PER_SECOND`]: random bytes, and each WireGuard message type with a random body, at
/// its exact length and at wrong ones. The seed is the test's process id, so a run can be
/// replayed. [`Background::wait`] reports how many went out.
pub fn spray_garbage(sender: &Netns, target: SocketAddr, count: u64) -> Background {
    let probe = netprobe_path().to_string_lossy().into_owned();
    let seed = std::process::id().to_string();
    sender.spawn(&[&probe, "garbage", &target.to_string(), &count.to_string(), &seed])
}
