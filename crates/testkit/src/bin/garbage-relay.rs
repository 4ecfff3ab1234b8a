//! `garbage-relay`: a UDP relay in front of a WireGuard listener that, once the tunnel through
//! it carries data and the caller says go, sprays the listener with garbage from the relay's own socket: the very
//! address and port the listener knows its peer by.
//!
//! ```text
//! garbage-relay LISTEN TARGET COUNT SEED START REPORT
//!     LISTEN  ADDR:PORT the peer is configured to send to (its "endpoint")
//!     TARGET  ADDR:PORT of the WireGuard listener
//!     COUNT   garbage datagrams to send, as fast as the socket takes them
//!     SEED    seeds the garbage, so a failure can be replayed
//!     START   a file whose creation starts the garbage (after the caller's baseline counts)
//!     REPORT  a file written when the garbage is all sent: "sent N ...", by kind
//! ```
//!
//! The garbage mixes what [`nonsense`] makes (random bytes, every message type with a random
//! body, every message type at a wrong length) with transport data that names the receiver
//! index of a live session, learned from the relayed traffic, under a wrong tag. The relay
//! keeps relaying until it is killed.
#![allow(clippy::disallowed_methods, reason = "test tooling runs in real time")]

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use wgfabric_proto::wire::{DATA_MIN_LEN, TYPE_DATA};
use wgfabric_testkit::nonsense;

/// How long the relay waits for the first data packet before giving up.
const PATIENCE: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, target, count, seed, start, report] = &args[..] else {
        eprintln!("usage: garbage-relay LISTEN TARGET COUNT SEED START REPORT");
        return ExitCode::from(2);
    };
    let parsed = (listen.parse(), target.parse(), count.parse(), seed.parse());
    let (Ok(listen), Ok(target), Ok(count), Ok(seed)) = parsed else {
        eprintln!("garbage-relay: LISTEN and TARGET are ADDR:PORT, COUNT and SEED numbers");
        return ExitCode::from(2);
    };
    match run(listen, target, count, seed, Path::new(start), report) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("garbage-relay: {error}");
            ExitCode::FAILURE
        }
    }
}

/// What the relay learned from the traffic it carries.
#[derive(Default)]
struct Learned {
    /// The receiver index the listener gave the live session (0: none seen yet).
    live_index: AtomicU32,
    /// Datagrams relayed from the peer.
    relayed: AtomicU64,
}

fn run(
    listen: SocketAddr,
    target: SocketAddr,
    count: u64,
    seed: u64,
    start: &Path,
    report: &str,
) -> Result<(), String> {
    let inner = UdpSocket::bind(listen).map_err(|e| format!("binding {listen}: {e}"))?;
    let local = SocketAddr::new(listen.ip(), 0);
    let outer = UdpSocket::bind(local).map_err(|e| format!("binding {local}: {e}"))?;
    outer.connect(target).map_err(|e| format!("connecting to {target}: {e}"))?;
    let learned = Arc::new(Learned::default());
    let (peer_tx, peer_rx) = std::sync::mpsc::channel::<SocketAddr>();

    // Peer → listener, learning the listener's receiver index from transport data.
    let (inner_in, outer_out, seen) = (clone(&inner)?, clone(&outer)?, Arc::clone(&learned));
    std::thread::spawn(move || {
        let mut buf = [0u8; 65535];
        let mut known = None;
        while let Ok((n, from)) = inner_in.recv_from(&mut buf) {
            if known != Some(from) {
                known = Some(from);
                let _ = peer_tx.send(from);
            }
            let datagram = &buf[..n];
            if n >= DATA_MIN_LEN && datagram[0] == TYPE_DATA {
                let index =
                    u32::from_le_bytes([datagram[4], datagram[5], datagram[6], datagram[7]]);
                seen.live_index.store(index, Ordering::Relaxed);
            }
            seen.relayed.fetch_add(1, Ordering::Relaxed);
            let _ = outer_out.send(datagram);
        }
    });
    // Listener → peer.
    let (outer_in, inner_out) = (clone(&outer)?, clone(&inner)?);
    std::thread::spawn(move || {
        let mut buf = [0u8; 65535];
        let mut peer = None;
        loop {
            while let Ok(latest) = peer_rx.try_recv() {
                peer = Some(latest);
            }
            match outer_in.recv(&mut buf) {
                Ok(n) => {
                    if let Some(peer) = peer {
                        let _ = inner_out.send_to(&buf[..n], peer);
                    }
                }
                // A connected UDP socket reports ICMP errors; the listener may come back.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                Err(_) => return,
            }
        }
    });

    let started = Instant::now();
    while learned.live_index.load(Ordering::Relaxed) == 0 || !start.exists() {
        if started.elapsed() > PATIENCE {
            return Err(format!(
                "no transport data came through the relay, or {} never appeared",
                start.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let sent = spray(&outer, &learned, count, seed);
    std::fs::write(report, sent + "\n").map_err(|e| format!("writing {report}: {e}"))?;
    loop {
        std::thread::park();
    }
}

fn clone(socket: &UdpSocket) -> Result<UdpSocket, String> {
    socket.try_clone().map_err(|e| format!("cloning a socket: {e}"))
}

/// Sends `count` datagrams of garbage to the listener; a line that says what went out.
fn spray(outer: &UdpSocket, learned: &Learned, count: u64, seed: u64) -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut buf = [0u8; 1500];
    let (mut live, mut failed) = (0u64, 0u64);
    let started = Instant::now();
    for n in 0..count {
        // Every tenth datagram: a live receiver index under a random (so wrong) tag.
        let len = if n % 10 == 9 {
            let len = DATA_MIN_LEN + 16 * (rng.next_u32() as usize % 90);
            rng.fill_bytes(&mut buf[..len]);
            buf[..4].copy_from_slice(&[TYPE_DATA, 0, 0, 0]);
            buf[4..8].copy_from_slice(&learned.live_index.load(Ordering::Relaxed).to_le_bytes());
            live += 1;
            len
        } else {
            nonsense(n, &mut rng, &mut buf)
        };
        if outer.send(&buf[..len]).is_err() {
            failed += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    format!(
        "sent {} in {secs:.2} s ({:.0}/s): {live} with a live index; {failed} refused by the socket; relayed {}",
        count - failed,
        (count - failed) as f64 / secs,
        learned.relayed.load(Ordering::Relaxed)
    )
}
