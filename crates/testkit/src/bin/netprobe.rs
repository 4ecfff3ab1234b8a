//! `netprobe`: one end of a hash-checked TCP transfer, run inside a namespace by the testkit.
//!
//! ```text
//! netprobe listen ADDR:PORT BYTES SEED   prints "listening", accepts one connection, reads to
//!                                        the end, and exits 0 only if exactly BYTES arrived
//!                                        and their BLAKE2b hash matches the expected stream
//! netprobe send ADDR:PORT BYTES SEED     connects and writes the stream
//! netprobe garbage ADDR:PORT COUNT SEED  sends COUNT UDP datagrams of nonsense, 10,000 a
//!                                        second: random bytes, and each WireGuard message
//!                                        type with a random body, at its exact length and not
//! ```
//!
//! The stream and the nonsense are ChaCha8 output from SEED, so both ends agree without sharing
//! data and a failure can be replayed.
#![allow(clippy::disallowed_methods, reason = "test tooling runs in real time")]

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use blake2::{Blake2b512, Digest};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use wgfabric_testkit::{nonsense, GARBAGE_PER_SECOND};

/// How long either end waits for the other before giving up.
const PATIENCE: Duration = Duration::from_secs(30);
const CHUNK: usize = 64 * 1024;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match &args[..] {
        [mode, addr, bytes, seed] => addr
            .parse::<SocketAddr>()
            .ok()
            .zip(bytes.parse::<u64>().ok())
            .zip(seed.parse::<u64>().ok())
            .map(|((a, b), s)| (mode.as_str(), a, b, s)),
        _ => None,
    };
    let result = match parsed {
        Some(("listen", addr, bytes, seed)) => listen(addr, bytes, seed),
        Some(("send", addr, bytes, seed)) => send(addr, bytes, seed),
        Some(("garbage", addr, count, seed)) => garbage(addr, count, seed),
        _ => {
            eprintln!("usage: netprobe listen|send ADDR:PORT BYTES SEED");
            eprintln!("       netprobe garbage ADDR:PORT COUNT SEED");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("netprobe: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The expected stream, chunk by chunk.
struct Stream {
    rng: ChaCha8Rng,
    left: u64,
    chunk: Vec<u8>,
}

impl Stream {
    fn new(bytes: u64, seed: u64) -> Self {
        Self { rng: ChaCha8Rng::seed_from_u64(seed), left: bytes, chunk: vec![0; CHUNK] }
    }

    fn next_chunk(&mut self) -> Option<&[u8]> {
        let len = usize::try_from(self.left.min(CHUNK as u64)).ok().filter(|&n| n > 0)?;
        self.rng.fill_bytes(&mut self.chunk[..len]);
        self.left -= len as u64;
        Some(&self.chunk[..len])
    }

    fn hash(mut self) -> Vec<u8> {
        let mut hasher = Blake2b512::new();
        while let Some(chunk) = self.next_chunk() {
            hasher.update(chunk);
        }
        hasher.finalize().to_vec()
    }
}

fn listen(addr: SocketAddr, bytes: u64, seed: u64) -> io::Result<String> {
    let listener = TcpListener::bind(addr)?;
    println!("listening");
    io::stdout().flush()?;
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + PATIENCE;
    let (mut stream, peer) = loop {
        match listener.accept() {
            Ok(accepted) => break accepted,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    };
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(PATIENCE))?;
    let started = Instant::now();
    let mut hasher = Blake2b512::new();
    let mut received = 0u64;
    let mut buf = vec![0; CHUNK];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        received += n as u64;
    }
    let elapsed = started.elapsed();
    if received != bytes {
        return Err(io::Error::other(format!(
            "received {received} bytes from {peer}, expected {bytes}"
        )));
    }
    if hasher.finalize().to_vec() != Stream::new(bytes, seed).hash() {
        return Err(io::Error::other(format!(
            "the {bytes} bytes from {peer} do not match the stream"
        )));
    }
    let mbit = received as f64 * 8.0 / elapsed.as_secs_f64().max(1e-9) / 1e6;
    Ok(format!("verified {received} bytes from {peer} in {elapsed:.2?} ({mbit:.0} Mbit/s)"))
}

fn send(addr: SocketAddr, bytes: u64, seed: u64) -> io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, PATIENCE)?;
    stream.set_write_timeout(Some(PATIENCE))?;
    let mut source = Stream::new(bytes, seed);
    while let Some(chunk) = source.next_chunk() {
        stream.write_all(chunk)?;
    }
    stream.shutdown(std::net::Shutdown::Write)?;
    // Wait for the receiver to close, so the exit status means "all bytes were taken".
    let mut rest = [0u8; 1];
    let _ = stream.read(&mut rest);
    Ok(format!("sent {bytes} bytes"))
}

/// Garbage goes out in bursts this far apart, [`GARBAGE_PER_SECOND`] in all.
const GARBAGE_TICK: Duration = Duration::from_millis(10);
fn garbage(target: SocketAddr, count: u64, seed: u64) -> io::Result<String> {
    let local: SocketAddr = if target.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut buf = [0u8; 1500];
    let per_tick = GARBAGE_PER_SECOND * GARBAGE_TICK.as_millis() as u64 / 1000;
    let started = Instant::now();
    for n in 0..count {
        if n > 0 && n % per_tick == 0 {
            // Pace to the rate: burst `per_tick`, then wait for the next tick.
            let due = started + GARBAGE_TICK * u32::try_from(n / per_tick).unwrap_or(u32::MAX);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        let len = nonsense(n, &mut rng, &mut buf);
        socket.send_to(&buf[..len], target)?;
    }
    Ok(format!("sent {count} garbage datagrams to {target} in {:.2?}", started.elapsed()))
}
