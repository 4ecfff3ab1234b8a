//! ICMP echo probes sent from this process, as `ping -c 1 -W T -I IFACE` sends them: one
//! request per target, all answered within one deadline.
//!
//! Each target gets its own socket, bound to the interface (so that a probe only ever goes
//! through the tunnel) and connected to the target before each request (so that the kernel
//! hands it only that target's answers). A socket is an unprivileged "ping socket" (`SOCK_DGRAM`, allowed by
//! `net.ipv4.ping_group_range`, which the kernel then matches answers for), or else, for root,
//! a raw one, whose answers are matched here by identifier and sequence number. An echo
//! request is eight bytes of header and a short payload; the checksum is the Internet
//! checksum for IPv4 and computed by the kernel for ICMPv6.

use std::io::{self, Read as _, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// ICMP echo request and reply types: IPv4 (RFC 792), then IPv6 (RFC 4443).
const ECHO_V4: (u8, u8) = (8, 0);
const ECHO_V6: (u8, u8) = (128, 129);
/// The payload, repeated to the size asked for: recognisable in a packet capture.
const PAYLOAD: &[u8; 8] = b"wgfabric";
/// The largest payload: an answer must fit the receive buffer (1500 bytes) with its headers.
const MAX_PAYLOAD: usize = 1400;

/// One target's socket.
#[derive(Debug)]
struct Echo {
    target: IpAddr,
    socket: Socket,
    /// A raw socket: answers carry the IPv4 header and are not matched by the kernel.
    raw: bool,
}

/// Probes for a fixed list of targets.
#[derive(Debug)]
pub struct Prober {
    echoes: Vec<Echo>,
    identifier: u16,
    sequence: u16,
    payload: Vec<u8>,
}

/// The monotonic clock: probes wait in real time.
#[expect(clippy::disallowed_methods, reason = "probes wait for answers in real time")]
fn now() -> Instant {
    Instant::now()
}

impl Prober {
    /// Sockets for `targets`, opened in the network namespace `namespace` (this process's own
    /// for `None`) and bound to `interface` when given.
    ///
    /// # Errors
    /// When a socket cannot be opened (neither a ping socket is allowed nor is this process
    /// root), the namespace cannot be joined, or the interface does not exist.
    pub fn open(
        namespace: Option<&str>,
        interface: Option<&str>,
        targets: &[IpAddr],
    ) -> io::Result<Self> {
        let echoes = crate::namespace::enter(namespace, || {
            targets.iter().map(|&target| Echo::open(target, interface)).collect()
        })?;
        Ok(Self {
            echoes,
            identifier: std::process::id() as u16,
            sequence: 0,
            payload: PAYLOAD.to_vec(),
        })
    }

    /// Sends `size` payload bytes (at most 1400) per request instead of 8, as `ping -s`
    /// does: large enough a probe tests that the path carries full-sized packets.
    #[must_use]
    pub fn with_payload(mut self, size: usize) -> Self {
        self.payload = PAYLOAD.iter().copied().cycle().take(size.min(MAX_PAYLOAD)).collect();
        self
    }

    /// Sends one echo request to every target and waits up to `timeout` for the answers.
    /// Returns whether each target (in the order given to [`Prober::open`]) answered.
    ///
    /// # Errors
    /// When a request cannot be sent for a reason other than the target being unreachable.
    pub fn probe(&mut self, timeout: Duration) -> io::Result<Vec<bool>> {
        self.sequence = self.sequence.wrapping_add(1);
        let (identifier, sequence) = (self.identifier, self.sequence);
        let mut sent = Vec::with_capacity(self.echoes.len());
        for echo in &self.echoes {
            sent.push(echo.send(identifier, sequence, &self.payload)?);
        }
        let deadline = now() + timeout;
        self.echoes
            .iter()
            .zip(sent)
            .map(|(echo, sent)| Ok(sent && echo.answered(identifier, sequence, deadline)?))
            .collect()
    }
}

impl Echo {
    fn open(target: IpAddr, interface: Option<&str>) -> io::Result<Self> {
        let (domain, protocol) = match target {
            IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4),
            IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6),
        };
        let (socket, raw) = match Socket::new(domain, Type::DGRAM, Some(protocol)) {
            Ok(socket) => (socket, false),
            Err(error) if error.kind() == io::ErrorKind::PermissionDenied => {
                let raw = Socket::new(domain, Type::RAW, Some(protocol)).map_err(|raw| {
                    io::Error::new(
                        raw.kind(),
                        format!(
                            "ICMP probe socket: {raw} (ping sockets are not allowed for this \
                             group by net.ipv4.ping_group_range, and raw sockets need root)"
                        ),
                    )
                })?;
                (raw, true)
            }
            Err(error) => return Err(error),
        };
        if let Some(interface) = interface {
            socket.bind_device(Some(interface.as_bytes())).map_err(|error| {
                io::Error::new(error.kind(), format!("binding a probe to {interface}: {error}"))
            })?;
        }
        Ok(Self { target, socket, raw })
    }

    /// Sends the request; `false` when the kernel already knows the target is unreachable.
    fn send(&self, identifier: u16, sequence: u16, payload: &[u8]) -> io::Result<bool> {
        let request_type = if self.target.is_ipv4() { ECHO_V4.0 } else { ECHO_V6.0 };
        let mut packet = vec![request_type, 0, 0, 0];
        packet.extend_from_slice(&identifier.to_be_bytes());
        packet.extend_from_slice(&sequence.to_be_bytes());
        packet.extend_from_slice(payload);
        if self.target.is_ipv4() {
            let checksum = internet_checksum(&packet);
            packet[2..4].copy_from_slice(&checksum.to_be_bytes());
        }
        // Connected anew each time: the route to the target may have come or gone.
        let sent = self
            .socket
            .connect(&SockAddr::from(SocketAddr::new(self.target, 0)))
            .and_then(|()| (&self.socket).write(&packet));
        match sent {
            Ok(_) => Ok(true),
            Err(error) if is_unreachable(&error) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Reads answers until the one to `sequence` or `deadline`.
    fn answered(&self, identifier: u16, sequence: u16, deadline: Instant) -> io::Result<bool> {
        let mut buffer = [0u8; 1500];
        loop {
            let left = deadline.saturating_duration_since(now());
            if left.is_zero() {
                return Ok(false);
            }
            self.socket.set_read_timeout(Some(left))?;
            let length = match (&self.socket).read(&mut buffer) {
                Ok(length) => length,
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) || is_unreachable(&error) =>
                {
                    continue
                }
                Err(error) => return Err(error),
            };
            let packet = buffer.get(..length).unwrap_or_default();
            if self.is_answer(packet, identifier, sequence) {
                return Ok(true);
            }
        }
    }

    /// Whether `packet` is the echo reply to `sequence`.
    fn is_answer(&self, packet: &[u8], identifier: u16, sequence: u16) -> bool {
        let icmp = if self.raw && self.target.is_ipv4() {
            // A raw IPv4 socket receives the IP header too.
            let header = packet.first().map_or(0, |byte| usize::from(byte & 0x0f) * 4);
            packet.get(header..).unwrap_or_default()
        } else {
            packet
        };
        let reply_type = if self.target.is_ipv4() { ECHO_V4.1 } else { ECHO_V6.1 };
        let field = |range: core::ops::Range<usize>| icmp.get(range).unwrap_or_default();
        let ours = !self.raw || field(4..6) == identifier.to_be_bytes();
        icmp.first() == Some(&reply_type) && ours && field(6..8) == sequence.to_be_bytes()
    }
}

/// Errors that only say the target cannot be reached now (an ICMP error, no route).
fn is_unreachable(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::AddrNotAvailable
    )
}

/// The Internet checksum (RFC 1071) of `data`.
fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_of_a_packet_with_its_checksum_is_zero() {
        let mut packet = *b"\x08\x00\x00\x00\x12\x34\x00\x01wgfabric";
        let checksum = internet_checksum(&packet);
        packet[2..4].copy_from_slice(&checksum.to_be_bytes());
        assert_eq!(internet_checksum(&packet), 0);
        assert_eq!(internet_checksum(b"\x00\x01\xf2"), !0xf201);
    }

    #[test]
    #[ignore = "needs root and network namespaces"]
    fn loopback_answers_and_an_unrouted_address_does_not() {
        let ns = wgfabric_testkit::Netns::new("wgf-probe");
        let targets =
            ["127.0.0.1".parse().unwrap(), "::1".parse().unwrap(), "192.0.2.1".parse().unwrap()];
        let mut prober = Prober::open(Some(ns.name()), None, &targets).unwrap();
        let started = now();
        assert_eq!(prober.probe(Duration::from_millis(300)).unwrap(), [true, true, false]);
        assert!(now() - started < Duration::from_millis(600), "one deadline for all");
        assert_eq!(prober.probe(Duration::from_millis(300)).unwrap(), [true, true, false]);
        let mut large =
            Prober::open(Some(ns.name()), None, &targets[..2]).unwrap().with_payload(1000);
        assert_eq!(large.probe(Duration::from_millis(300)).unwrap(), [true, true], "1000 bytes");
        let error = Prober::open(Some(ns.name()), Some("wgf-missing"), &targets).unwrap_err();
        assert!(error.to_string().contains("wgf-missing"), "{error}");
    }
}
