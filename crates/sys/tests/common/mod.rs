//! Helpers for the tests that need root: network namespaces with drop guards, and an
//! independent checksum implementation to judge what the crate produces.
#![allow(dead_code, unreachable_pub)] // each test binary uses its own subset
#![allow(clippy::disallowed_methods, reason = "system tests wait in real time")]

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A network namespace named after the test process, deleted on drop even after a panic.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("wgfsys-{tag}-{}-{n}", std::process::id());
        run("ip", &["netns", "add", &name]);
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Runs `ip -n <ns> <args>`, panicking on failure.
    pub fn ip(&self, args: &[&str]) {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        run("ip", &full);
    }

    /// Runs `f` on a thread inside the namespace; sockets and TUN devices it creates belong
    /// to the namespace and may then be used from any thread.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|scope| scope.spawn(|| self.enter_then(f)).join().unwrap())
    }

    fn enter_then<T>(&self, f: impl FnOnce() -> T) -> T {
        let file = File::open(format!("/run/netns/{}", self.name)).unwrap();
        // SAFETY: setns takes a valid namespace descriptor and switches only this thread.
        let ret = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(ret, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Polls `condition` until it holds or `timeout` passes.
pub fn wait_for(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    condition()
}

/// One's-complement sum, word by word, as RFC 1071 describes it.
pub fn ones_sum(chunks: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let bytes = chunks.concat();
    for pair in bytes.chunks(2) {
        sum += u32::from(pair[0]) << 8 | u32::from(*pair.get(1).unwrap_or(&0));
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Where the fields of an IPv4 or IPv6 packet without options or extension headers are.
pub struct IpLayout {
    pub l4: usize,
    pub protocol: u8,
    pub addrs: std::ops::Range<usize>,
}

pub fn layout(packet: &[u8]) -> IpLayout {
    match packet[0] >> 4 {
        4 => IpLayout { l4: usize::from(packet[0] & 15) * 4, protocol: packet[9], addrs: 12..20 },
        _ => IpLayout { l4: 40, protocol: packet[6], addrs: 8..40 },
    }
}

/// Recomputes (`fix`) or checks the IPv4 header checksum and the TCP/UDP checksum of an
/// IPv4 or IPv6 packet; returns whether they were valid beforehand.
pub fn checksums(packet: &mut [u8], fix: bool) -> bool {
    let IpLayout { l4, protocol, addrs } = layout(packet);
    let v4 = packet[0] >> 4 == 4;
    let ip_ok = !v4 || ones_sum(&[&packet[..l4]]) == 0xffff;
    let csum_at = l4 + if protocol == 6 { 16 } else { 6 };
    let l4_len = ((packet.len() - l4) as u32).to_be_bytes();
    let pseudo = [&packet[addrs], &[0, 0, 0, protocol], &l4_len[..]].concat();
    let l4_ok = ones_sum(&[&pseudo, &packet[l4..]]) == 0xffff;
    if fix {
        if v4 {
            packet[10..12].fill(0);
            let sum = !ones_sum(&[&packet[..l4]]);
            packet[10..12].copy_from_slice(&sum.to_be_bytes());
        }
        packet[csum_at..csum_at + 2].fill(0);
        let sum = !ones_sum(&[&pseudo, &packet[l4..]]);
        packet[csum_at..csum_at + 2].copy_from_slice(&sum.to_be_bytes());
    }
    ip_ok && l4_ok
}
