//! `handshake-flood`: sends WireGuard handshake initiations with a valid `mac1` at a steady
//! rate, the cheapest attack on a port whose public key is known (the key of a relay is in
//! Git). Run inside a namespace by the flood tests and `scripts/flood-bench`.
//!
//! ```text
//! handshake-flood TARGET PUBLIC_KEY RATE SECONDS [SOURCE...]
//!     TARGET      ADDR:PORT of the WireGuard listener
//!     PUBLIC_KEY  its public key, base64 (the mac1 key is derived from it)
//!     RATE        initiations per second
//!     SECONDS     how long to send
//!     SOURCE      local addresses to send from (each must be on an interface of the
//!                 namespace); default: the one the route to TARGET picks
//! ```
//!
//! It sends from 64 sockets in all, spread over the sources, so the flood arrives from many
//! ports as it would from a botnet or through NAT. The initiations name no configured peer:
//! each costs the receiver a Diffie-Hellman unless it is turned away first. Their `mac2` is
//! zero: the flooder never reads the cookie replies. Every second, and on exit, it prints
//! `sent N in S.SSS s (R/s)`, so a flood stopped early still tells what rate it reached.
#![allow(clippy::disallowed_methods, reason = "test tooling runs in real time")]

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use blake2::digest::consts::U16;
use blake2::digest::{FixedOutput, KeyInit, Mac as _};
use blake2::{Blake2s256, Blake2sMac, Digest};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use wgfabric_proto::keys::PublicKey;
use wgfabric_proto::wire::{INITIATION_LEN, TYPE_INITIATION};

/// Sockets the flood is sent from, in all.
const SOCKETS: usize = 64;
/// Distinct messages cycled through (they differ in sender index and ephemeral key).
const MESSAGES: usize = 1024;
/// Where `mac1` starts in an initiation: after type, sender index, ephemeral key, encrypted
/// static key and encrypted timestamp (4 + 4 + 32 + 48 + 28 bytes).
const MAC1_AT: usize = 116;
/// The pacing step: each step sends what the rate allows up to its end.
const STEP: Duration = Duration::from_millis(1);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse(&args).and_then(|flood| flood.run()) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("handshake-flood: {error}");
            eprintln!("usage: handshake-flood TARGET PUBLIC_KEY RATE SECONDS [SOURCE...]");
            ExitCode::from(2)
        }
    }
}

struct Flood {
    target: SocketAddr,
    key: PublicKey,
    rate: u64,
    duration: Duration,
    sources: Vec<IpAddr>,
}

fn parse(args: &[String]) -> Result<Flood, String> {
    let [target, key, rate, seconds, sources @ ..] = args else {
        return Err("expected at least four arguments".into());
    };
    let target = target.parse().map_err(|e| format!("TARGET {target:?}: {e}"))?;
    let key = PublicKey::from_base64(key).map_err(|e| format!("PUBLIC_KEY: {e}"))?;
    let rate = rate.parse().map_err(|e| format!("RATE {rate:?}: {e}"))?;
    let seconds: f64 = seconds.parse().map_err(|e| format!("SECONDS {seconds:?}: {e}"))?;
    let duration = Duration::try_from_secs_f64(seconds).map_err(|e| format!("SECONDS: {e}"))?;
    let sources = sources
        .iter()
        .map(|s| s.parse().map_err(|e| format!("SOURCE {s:?}: {e}")))
        .collect::<Result<_, _>>()?;
    Ok(Flood { target, key, rate, duration, sources })
}

impl Flood {
    fn run(self) -> Result<String, String> {
        let sockets = self.sockets().map_err(|e| format!("binding the sockets: {e}"))?;
        let messages = messages(&self.key);
        let start = Instant::now();
        let mut sent: u64 = 0;
        let mut next = 0usize;
        let mut reported = Duration::ZERO;
        while start.elapsed() < self.duration {
            if start.elapsed() >= reported + Duration::from_secs(1) {
                reported = start.elapsed();
                println!("{}", report(sent, reported));
            }
            let step_end = start.elapsed() + STEP;
            let due = u64::try_from(u128::from(self.rate) * step_end.as_nanos() / 1_000_000_000)
                .unwrap_or(u64::MAX);
            while sent < due {
                let socket = &sockets[next % sockets.len()];
                let message = &messages[next % messages.len()];
                next = next.wrapping_add(1);
                // A full socket buffer or an unreachable port is the target's problem.
                let _ = socket.send_to(message, self.target);
                sent += 1;
            }
            if let Some(wait) = step_end.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        Ok(report(sent, start.elapsed()))
    }

    fn sockets(&self) -> std::io::Result<Vec<UdpSocket>> {
        let any: IpAddr = if self.target.is_ipv4() {
            std::net::Ipv4Addr::UNSPECIFIED.into()
        } else {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        };
        let sources = if self.sources.is_empty() { vec![any] } else { self.sources.clone() };
        (0..SOCKETS.max(sources.len()))
            .map(|i| UdpSocket::bind(SocketAddr::new(sources[i % sources.len()], 0)))
            .collect()
    }
}

fn report(sent: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    format!("sent {sent} in {secs:.3} s ({:.0}/s)", sent as f64 / secs)
}

/// Initiations to `key` with random bodies and a valid `mac1` (written here from the
/// whitepaper, independently of the protocol crate).
fn messages(key: &PublicKey) -> Vec<[u8; INITIATION_LEN]> {
    let mut hasher = Blake2s256::new();
    Digest::update(&mut hasher, b"mac1----");
    Digest::update(&mut hasher, key.as_bytes());
    let mac1_key = hasher.finalize();
    let mut rng = ChaCha8Rng::seed_from_u64(u64::from(std::process::id()));
    (0..MESSAGES)
        .map(|_| {
            let mut message = [0; INITIATION_LEN];
            message[0] = TYPE_INITIATION;
            rng.fill_bytes(&mut message[4..MAC1_AT]);
            let mut mac = <Blake2sMac<U16> as KeyInit>::new_from_slice(&mac1_key)
                .expect("a 32-byte BLAKE2s key is valid");
            mac.update(&message[..MAC1_AT]);
            message[MAC1_AT..MAC1_AT + 16].copy_from_slice(&mac.finalize_fixed());
            message
        })
        .collect()
}
