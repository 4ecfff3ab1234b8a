//! Nonsense datagrams sprayed at a UDP port from inside a namespace, for robustness tests: the
//! `netprobe garbage` mode of this crate, and the `garbage-relay` binary, run in the
//! background; [`nonsense`] makes the datagrams for both.

use std::net::SocketAddr;
use std::path::Path;

use rand_chacha::ChaCha8Rng;
use rand_core::RngCore;

use crate::transfer::{netprobe_path, testkit_binary};
use wgfabric_netns::{Background, Netns};

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

/// Starts a `garbage-relay` in `ns`: it relays UDP from `listen` (make it the peer's endpoint
/// for the listener at `target`) and, once the tunnel carries data and the file `start` exists,
/// sends `count` datagrams of garbage to `target` from the relay's own socket, some naming the
/// live session's receiver index. It writes what it sent to `report` when done, then relays
/// until dropped.
pub fn garbage_relay(
    ns: &Netns,
    listen: SocketAddr,
    target: SocketAddr,
    count: u64,
    start: &Path,
    report: &Path,
) -> Background {
    let relay = testkit_binary("garbage-relay", "WGFABRIC_GARBAGE_RELAY");
    let seed = std::process::id().to_string();
    ns.spawn(&[
        &relay.to_string_lossy(),
        &listen.to_string(),
        &target.to_string(),
        &count.to_string(),
        &seed,
        &start.to_string_lossy(),
        &report.to_string_lossy(),
    ])
}

/// WireGuard's message types and their exact lengths (transport data: the shortest, a
/// keepalive; longer ones add 16-byte blocks).
pub const MESSAGE_SHAPES: [(u8, usize); 4] = [(1, 148), (2, 92), (3, 64), (4, 32)];

/// The `n`th datagram of nonsense: cycles through random bytes of a random length, each
/// message type at its length with a random body (so only the MACs, indices and tags are
/// wrong), and each message type at a wrong length.
pub fn nonsense(n: u64, rng: &mut ChaCha8Rng, buf: &mut [u8; 1500]) -> usize {
    let kind = (n % 9) as usize;
    let len = match kind {
        0 => 1 + (rng.next_u32() as usize) % buf.len(),
        1..=4 => {
            let (_, len) = MESSAGE_SHAPES[kind - 1];
            // Transport data comes in 16-byte steps up to a full-sized packet.
            if kind == 4 {
                len + 16 * (rng.next_u32() as usize % 90)
            } else {
                len
            }
        }
        _ => {
            let (_, len) = MESSAGE_SHAPES[kind - 5];
            // Anything but the right length: truncated, or a few bytes over.
            let wrong = rng.next_u32() as usize % (len + 8);
            if wrong == len {
                len + 1
            } else {
                wrong.max(1)
            }
        }
    };
    rng.fill_bytes(&mut buf[..len]);
    if kind > 0 {
        let (message_type, _) = MESSAGE_SHAPES[(kind - 1) % 4];
        let header = [message_type, 0, 0, 0];
        let n = len.min(header.len());
        buf[..n].copy_from_slice(&header[..n]);
    }
    len
}

#[cfg(test)]
mod tests {
    use rand_core::SeedableRng;

    use super::*;

    #[test]
    fn nonsense_covers_every_message_shape_and_misshape() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut buf = [0u8; 1500];
        for n in 0..9 * 100 {
            let len = nonsense(n, &mut rng, &mut buf);
            let kind = (n % 9) as usize;
            assert!((1..=buf.len()).contains(&len), "{len}");
            if kind == 0 {
                continue;
            }
            let (message_type, exact) = MESSAGE_SHAPES[(kind - 1) % 4];
            assert_eq!(buf[0], message_type);
            match kind {
                1..=3 => assert_eq!(len, exact),
                4 => assert!(len >= exact && (len - exact) % 16 == 0, "{len}"),
                _ => assert_ne!(len, exact),
            }
        }
    }
}
