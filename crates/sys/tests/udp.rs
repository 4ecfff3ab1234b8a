//! The UDP sockets against the real kernel: two namespaces joined by a veth pair, 10.78.0.1
//! and fd78::1 on side A, 10.78.0.2 and fd78::2 on side B.

mod common;

use std::mem::size_of;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::mpsc;
use std::time::Duration;

use common::Netns;
use wgfabric_sys::{
    Error, LocalAddr, RecvBatch, RecvMeta, SendBatch, Shutdown, UdpSocket, UdpSockets,
};

const TIMEOUT: Duration = Duration::from_secs(10);

struct Link {
    a: Netns,
    _b: Netns,
    a_socks: UdpSockets,
    b_socks: UdpSockets,
    b_ifindex: u32,
    shutdown: Shutdown,
}

fn link() -> Link {
    let (a, b) = (Netns::new("udp-a"), Netns::new("udp-b"));
    a.ip(&["link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &b.name]);
    for (ns, dev, n) in [(&a, "va", 1), (&b, "vb", 2)] {
        ns.ip(&["addr", "add", &format!("10.78.0.{n}/24"), "dev", dev]);
        ns.ip(&["addr", "add", &format!("fd78::{n}/64"), "dev", dev, "nodad"]);
        ns.ip(&["link", "set", dev, "up"]);
    }
    let listing = common::run("ip", &["-n", &b.name, "-o", "link", "show", "vb"]);
    let b_ifindex = listing.split(':').next().unwrap().parse().unwrap();
    let shutdown = Shutdown::new().unwrap();
    let a_socks = a.run(|| UdpSockets::bind(0, &shutdown)).unwrap();
    let b_socks = b.run(|| UdpSockets::bind(0, &shutdown)).unwrap();
    Link { a, _b: b, a_socks, b_socks, b_ifindex, shutdown }
}

/// 20 datagrams of 1200 bytes and a last one of 500, each filled with its index.
fn datagrams() -> Vec<Vec<u8>> {
    (0..21u8).map(|i| vec![i; if i == 20 { 500 } else { 1200 }]).collect()
}

/// Receives until `count` datagrams arrived; fails after TIMEOUT.
fn receive(sock: &UdpSocket, shutdown: &Shutdown, count: usize) -> Vec<(RecvMeta, Vec<u8>)> {
    let (done, watchdog) = mpsc::channel::<()>();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            if watchdog.recv_timeout(TIMEOUT) == Err(mpsc::RecvTimeoutError::Timeout) {
                shutdown.trigger();
            }
        });
        let mut batch = RecvBatch::new(8);
        let mut bufs = vec![vec![0u8; 65535]; 8];
        let mut meta = [RecvMeta::default(); 8];
        let mut messages = Vec::new();
        let mut datagrams = 0;
        while datagrams < count {
            let n = sock.recv(&mut batch, &mut bufs, &mut meta).expect("datagrams did not arrive");
            for (m, buf) in meta.iter().zip(&bufs).take(n) {
                datagrams += m.datagrams(buf).count();
                messages.push((*m, buf[..m.len].to_vec()));
            }
        }
        drop(done);
        messages
    })
}

fn gso_round_trip(dst_ip: IpAddr, src_ip: IpAddr) {
    let link = link();
    let dst = SocketAddr::new(dst_ip, link.b_socks.port());
    let sender = link.a_socks.for_addr(&dst).unwrap();
    assert!(sender.gso_enabled());
    let receiver = link.b_socks.for_addr(&dst).unwrap();
    assert!(receiver.gro_enabled());
    let sent = datagrams();
    let mut batch = SendBatch::new(64);
    sender.send(&mut batch, dst, None, sent.iter().map(Vec::as_slice)).unwrap();

    let messages = receive(receiver, &link.shutdown, sent.len());
    let received: Vec<&[u8]> = messages.iter().flat_map(|(m, buf)| m.datagrams(buf)).collect();
    assert_eq!(received, sent.iter().map(Vec::as_slice).collect::<Vec<_>>());
    let (first, _) = &messages[0];
    assert!(first.len > 1200 && first.segment_size == 1200, "not coalesced: {first:?}");
    for (meta, _) in &messages {
        assert_eq!(meta.src, SocketAddr::new(src_ip, link.a_socks.port()));
        assert_eq!(meta.dst, Some(LocalAddr { ip: dst_ip, ifindex: link.b_ifindex }));
    }
}

#[test]
#[ignore = "needs root and network namespaces"]
fn gso_batch_arrives_as_gro_batch_v4() {
    gso_round_trip("10.78.0.2".parse().unwrap(), "10.78.0.1".parse().unwrap());
}

#[test]
#[ignore = "needs root and network namespaces"]
fn gso_batch_arrives_as_gro_batch_v6() {
    gso_round_trip("fd78::2".parse().unwrap(), "fd78::1".parse().unwrap());
}

fn sticky_source(own: &str, extra: &str, peer: &str, prefix: &str) {
    let link = link();
    link.a.ip(&["addr", "add", &format!("{extra}/{prefix}"), "dev", "va", "nodad"]);
    let dst = SocketAddr::new(peer.parse().unwrap(), link.b_socks.port());
    let (sender, receiver) =
        (link.a_socks.for_addr(&dst).unwrap(), link.b_socks.for_addr(&dst).unwrap());
    let src = LocalAddr { ip: extra.parse().unwrap(), ifindex: 0 };
    let mut batch = SendBatch::new(8);
    let payload: &[u8] = b"sticky";
    sender.send(&mut batch, dst, Some(&src), [payload]).unwrap();
    let messages = receive(receiver, &link.shutdown, 1);
    assert_eq!(messages[0].0.src.ip(), src.ip);

    link.a.ip(&["addr", "del", &format!("{extra}/{prefix}"), "dev", "va"]);
    let err = sender.send(&mut batch, dst, Some(&src), [payload, payload]).unwrap_err();
    assert_eq!(err.sent, 0);
    assert!(matches!(err.error, Error::SourceUnavailable(_)), "{err}");
    sender.send(&mut batch, dst, None, [payload, payload].into_iter().skip(err.sent)).unwrap();
    let messages = receive(receiver, &link.shutdown, 2);
    assert!(messages.iter().all(|(m, _)| m.src.ip() == own.parse::<IpAddr>().unwrap()));
}

#[test]
#[ignore = "needs root and network namespaces"]
fn chosen_source_is_used_and_its_loss_reported_v4() {
    sticky_source("10.78.0.1", "10.78.0.3", "10.78.0.2", "24");
}

#[test]
#[ignore = "needs root and network namespaces"]
fn chosen_source_is_used_and_its_loss_reported_v6() {
    sticky_source("fd78::1", "fd78::3", "fd78::2", "64");
}

#[test]
#[ignore = "needs root and network namespaces"]
fn refused_gso_falls_back_to_plain_sends() {
    let link = link();
    // Segments larger than the MTU make the kernel refuse GSO (EMSGSIZE); plain sends fragment.
    link.a.ip(&["link", "set", "va", "mtu", "1000"]);
    let dst: SocketAddr = (IpAddr::from([10, 78, 0, 2]), link.b_socks.port()).into();
    let sender = link.a_socks.v4();
    let sent = datagrams();
    sender.send(&mut SendBatch::new(64), dst, None, sent.iter().map(Vec::as_slice)).unwrap();
    let messages = receive(link.b_socks.v4(), &link.shutdown, sent.len());
    assert!(messages.iter().all(|(m, _)| m.segment_size == m.len), "a GSO message got through");
    let received: Vec<&[u8]> = messages.iter().flat_map(|(m, buf)| m.datagrams(buf)).collect();
    assert_eq!(received, sent.iter().map(Vec::as_slice).collect::<Vec<_>>());
    assert!(sender.gso_enabled(), "an MTU refusal must not turn GSO off");
}

#[test]
#[ignore = "needs root and network namespaces"]
fn binds_one_port_for_both_families_and_sets_the_mark() {
    let ns = Netns::new("udp-bind");
    let shutdown = Shutdown::new().unwrap();
    let socks = ns.run(|| UdpSockets::bind(0, &shutdown)).unwrap();
    let v6 = socks.v6().expect("the namespace has IPv6");
    assert_ne!(socks.port(), 0);
    assert_eq!(socks.v4().local_port().unwrap(), socks.port());
    assert_eq!(v6.local_port().unwrap(), socks.port());
    let taken = ns.run(|| UdpSockets::bind(socks.port(), &shutdown)).unwrap_err();
    assert_eq!(taken.kind(), std::io::ErrorKind::AddrInUse);

    socks.set_mark(0x5157).unwrap();
    for sock in [socks.v4(), v6] {
        let mut mark: libc::c_int = 0;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: the pointers describe `mark` and `len`, alive during the call.
        let ret = unsafe {
            libc::getsockopt(
                sock.as_fd().as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_MARK,
                (&mut mark as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!((ret, mark), (0, 0x5157));
    }
}

#[test]
#[ignore = "needs root and network namespaces"]
fn lanes_share_a_port_that_nobody_else_can_take() {
    let ns = Netns::new("udp-lanes");
    let shutdown = Shutdown::new().unwrap();
    let socks = ns.run(|| UdpSockets::bind_lanes(0, 3, &shutdown)).unwrap();
    assert_eq!(socks.lanes(), 3);
    for lane in 0..3 {
        let (v4, v6) = socks.lane(lane).unwrap();
        assert_eq!(v4.local_port().unwrap(), socks.port());
        assert_eq!(v6.unwrap().local_port().unwrap(), socks.port());
    }
    // Neither an exclusive bind nor another reuse group may join the port.
    for lanes in [1, 2] {
        let taken = ns.run(|| UdpSockets::bind_lanes(socks.port(), lanes, &shutdown)).unwrap_err();
        assert_eq!(taken.kind(), std::io::ErrorKind::AddrInUse, "{lanes} lanes");
    }
}

#[test]
#[ignore = "needs root and network namespaces"]
fn answers_to_many_senders_go_out_in_one_batch_each_to_its_own() {
    let link = link();
    let a = link.a_socks.v4();
    // Side B listens on a second socket beside its wgfabricd-style one: two destinations.
    let b_port = SocketAddr::new("10.78.0.2".parse().unwrap(), link.b_socks.port());
    let others = link._b.run(|| UdpSockets::bind(0, &link.shutdown)).unwrap();
    let other = others.v4();
    let other_port = SocketAddr::new("10.78.0.2".parse().unwrap(), others.port());
    let v6_dst: SocketAddr = "[fd78::2]:9".parse().unwrap();
    let answers: Vec<(SocketAddr, Vec<u8>)> =
        (0..10u8).map(|i| (if i % 2 == 0 { b_port } else { other_port }, vec![i; 64])).collect();
    let mut batch = SendBatch::new(4);
    let items = answers.iter().map(|(dst, d)| (*dst, None, d.as_slice()));
    // An IPv6 destination is not this socket's family: skipped, not an error.
    let items = items.chain(std::iter::once((v6_dst, None, &answers[0].1[..])));
    assert_eq!(a.send_each(&mut batch, items).unwrap(), 10);
    let got: Vec<u8> = receive(link.b_socks.v4(), &link.shutdown, 5)
        .iter()
        .flat_map(|(m, buf)| m.datagrams(buf).map(|d| d[0]).collect::<Vec<_>>())
        .collect();
    assert_eq!(got, [0, 2, 4, 6, 8]);
    let got: Vec<u8> = receive(other, &link.shutdown, 5)
        .iter()
        .flat_map(|(m, buf)| m.datagrams(buf).map(|d| d[0]).collect::<Vec<_>>())
        .collect();
    assert_eq!(got, [1, 3, 5, 7, 9]);
}
