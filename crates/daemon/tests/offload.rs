//! The offloads keep every byte: four TCP streams at once, and UDP traffic whose datagrams
//! straddle the segmentation boundaries (application GSO superframes with a short last
//! segment, datagrams of exactly the largest size that fits, and IP fragments).

mod common;

use std::net::{IpAddr, SocketAddr};
use std::thread;

use common::wgfabricd;
use wgfabric_testkit::scenarios::{Link, Psk, Side, Tunnel, Underlay, INNER_V4};
use wgfabric_testkit::{require_tool, transfer, Netns};

const STREAM_BYTES: u64 = 16 << 20;

fn connected_pair(link: &Link) -> Tunnel<'_> {
    let tunnel = Tunnel::new(link, &wgfabricd(), &wgfabricd(), Psk::None);
    tunnel.assert_connects(link, INNER_V4[1]);
    tunnel
}

#[test]
#[ignore = "needs root and network namespaces"]
fn four_parallel_streams_arrive_intact() {
    let link = Link::new(Underlay::V4);
    let _tunnel = connected_pair(&link);
    let receiver: IpAddr = INNER_V4[0].parse().unwrap();
    thread::scope(|scope| {
        let streams: Vec<_> = (0..4u16)
            .map(|i| {
                let (a, b) = (&link.a, &link.b);
                let listen = SocketAddr::new(receiver, 7100 + i);
                scope.spawn(move || transfer(a, listen, b, STREAM_BYTES))
            })
            .collect();
        for (i, stream) in streams.into_iter().enumerate() {
            let report = stream.join().expect("transfer thread");
            assert!(report.is_ok(), "stream {i}: {report:?}");
        }
    });
}

/// Sends datagrams over UDP from `ns` to `target`: with `gso > 0` each send is one buffer of
/// `count` datagrams of `gso` bytes cut by the kernel (UDP_SEGMENT), the last one `tail` bytes
/// shorter (datagrams are at least 8 bytes); with `gso == 0`, `count` plain datagrams of
/// `size` bytes. Every datagram carries
/// its sequence number, its length and a pattern derived from both.
const SENDER: &str = r#"
import socket, struct, sys
host, port, gso, count, size, tail, first = sys.argv[1], int(sys.argv[2]), *map(int, sys.argv[3:])
def datagram(seq, length):
    body = bytes((seq * 7 + i) & 0xff for i in range(length))
    return struct.pack("!II", seq, length) + body[8:]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
if gso:
    s.setsockopt(socket.SOL_UDP, 103, gso)  # UDP_SEGMENT
    lengths = [gso] * (count - 1) + [gso - tail]
    s.sendto(b"".join(datagram(first + i, n) for i, n in enumerate(lengths)), (host, port))
else:
    for i in range(count):
        s.sendto(datagram(first + i, size), (host, port))
"#;

/// Receives until `expected` datagrams came or the socket is quiet for two seconds; prints
/// how many arrived and how many were damaged.
const RECEIVER: &str = r#"
import socket, struct, sys
host, port, expected = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((host, port))
print("listening", flush=True)
s.settimeout(10)
good = bad = 0
while good + bad < expected:
    try:
        data, _ = s.recvfrom(65535)
    except socket.timeout:
        break
    s.settimeout(2)
    seq, length = struct.unpack("!II", data[:8])
    body = bytes((seq * 7 + i) & 0xff for i in range(length))[8:]
    if len(data) == length and data[8:] == body:
        good += 1
    else:
        bad += 1
        print("damaged: seq", seq, "length", length, "received", len(data), flush=True)
print(good, bad, flush=True)
"#;

#[test]
#[ignore = "needs root and network namespaces"]
fn udp_across_offload_boundaries_arrives_intact() {
    if require_tool("python3").is_err() {
        return;
    }
    let link = Link::new(Underlay::V4);
    let _tunnel = connected_pair(&link);
    // The inner MTU is 1420: 1392 bytes is the largest UDP payload that fits one IPv4 packet.
    // (gso, count, size, tail): GSO runs with short tails, exact fits, and fragments.
    let cases: [(u32, u32, u32, u32); 6] = [
        (1392, 40, 0, 0),
        (1392, 45, 0, 391),
        (1000, 33, 0, 17),
        (200, 64, 0, 191),
        (0, 50, 1392, 0),
        (0, 30, 3000, 0),
    ];
    let expected: u32 = cases.iter().map(|c| c.1).sum();
    let receiver_ip = INNER_V4[0];
    let port = "7200";
    let listener =
        link.a.spawn(&["python3", "-c", RECEIVER, receiver_ip, port, &expected.to_string()]);
    wait_for_listener(&link.a, port);
    let mut first = 0;
    for (gso, count, size, tail) in cases {
        let args = [gso, count, size, tail, first].map(|n| n.to_string());
        let mut argv = vec!["python3", "-c", SENDER, receiver_ip, port];
        argv.extend(args.iter().map(String::as_str));
        link.ns(Side::B).run(&argv);
        first += count;
    }
    let report = listener.wait().expect("the receiver finishes");
    let counts: Vec<u32> = report
        .lines()
        .last()
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    assert_eq!(counts.len(), 2, "receiver said: {report}");
    let (good, bad) = (counts[0], counts[1]);
    assert_eq!(bad, 0, "damaged datagrams: {report}");
    assert_eq!(good, expected, "every datagram arrives (a quiet link drops none): {report}");
}

/// Waits until a UDP socket is bound to `port` in `ns`.
fn wait_for_listener(ns: &Netns, port: &str) {
    let bound = wgfabric_testkit::wait_until(std::time::Duration::from_secs(10), || {
        ns.run(&["ss", "-uln"]).contains(&format!(":{port} "))
    });
    assert!(bound, "the UDP receiver did not start");
}
