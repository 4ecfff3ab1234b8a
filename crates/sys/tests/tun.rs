//! The TUN device against the real kernel, each test in a fresh network namespace.
//!
//! The TCP tests route a connection through the TUN and back: a reflector thread reads what
//! the kernel sends into the TUN, segments it, checks every checksum, swaps the addresses so
//! the packet comes back as if from the peer, and writes it back (one by one, or coalesced).
//! The client connects from 10.77.0.1 to 10.77.0.2; the reflector turns that into a packet
//! from 10.77.1.2 to the listener on 10.77.1.1, and the replies the other way round (and
//! likewise from fd77::1 to fd77::2, reflected between fd77:0:0:1::2 and fd77:0:0:1::1).

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown as NetShutdown, TcpListener, TcpStream};
use std::num::NonZeroUsize;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::{checksums, layout, Netns};
use wgfabric_sys::offload::{segment, Coalescer, GsoType, VirtioNetHdr, VNET_HDR_LEN};
use wgfabric_sys::{Error, Shutdown, Tun, TunConfig, UdpSockets};

const HEADROOM: usize = 16;
const TIMEOUT: Duration = Duration::from_secs(10);

fn create(ns: &Netns, shutdown: &Shutdown, queues: usize, offload: bool) -> Tun {
    let config =
        TunConfig { name: "wgt%d".into(), queues: NonZeroUsize::new(queues).unwrap(), offload };
    ns.run(|| Tun::create(&config, shutdown)).unwrap()
}

#[test]
#[ignore = "needs root and network namespaces"]
fn reports_name_index_mtu_and_offloads() {
    let ns = Netns::new("tun-info");
    let shutdown = Shutdown::new().unwrap();
    let tun = create(&ns, &shutdown, 2, true);
    assert!(tun.name().starts_with("wgt") && !tun.name().contains('%'), "{}", tun.name());
    assert_eq!(tun.queues().len(), 2);
    assert!(tun.queues().iter().all(|q| q.has_vnet_hdr()));
    let offloads = tun.offloads();
    assert!(offloads.tso);
    let listing = common::run("ip", &["-n", &ns.name, "-o", "link", "show", tun.name()]);
    assert!(listing.starts_with(&format!("{}: {}:", tun.ifindex(), tun.name())), "{listing}");
    tun.set_mtu(1420).unwrap();
    assert_eq!(tun.mtu().unwrap(), 1420);
    assert!(
        common::run("ip", &["-n", &ns.name, "-o", "link", "show", tun.name()]).contains("mtu 1420")
    );
}

/// What the reflector saw.
#[derive(Debug, Default)]
struct Seen {
    superframes: usize,
    segments: usize,
    bad_checksums: usize,
    coalesced_writes: usize,
}

/// Swaps source and destination and moves both into the other subnet: 10.77.0.x <-> 10.77.1.x,
/// fd77::x <-> fd77:0:0:1::x.
fn reflect(packet: &mut [u8]) {
    let addrs = layout(packet).addrs;
    let half = addrs.len() / 2;
    let (src, dst) = packet[addrs.clone()].split_at_mut(half);
    src.swap_with_slice(dst);
    let flip = if half == 4 { 2 } else { 7 };
    packet[addrs.start + flip] ^= 1;
    packet[addrs.start + half + flip] ^= 1;
    checksums(packet, true);
}

fn reflector(tun: &Tun, coalesce: bool) -> Seen {
    let queue = &tun.queues()[0];
    let mut frame = vec![0u8; wgfabric_sys::tun::MAX_FRAME_LEN];
    let mut bufs = vec![vec![0u8; HEADROOM + 65536]; 64];
    let mut lens = vec![0usize; 64];
    let mut coalescer = Coalescer::new(false);
    let mut seen = Seen::default();
    loop {
        let len = match queue.read(&mut frame) {
            Ok(len) => len,
            Err(Error::Shutdown) => return seen,
            Err(err) => panic!("read: {err}"),
        };
        let hdr = VirtioNetHdr::parse(&frame[..len]).unwrap();
        let count =
            segment(&frame[VNET_HDR_LEN..len], &hdr, &mut bufs, &mut lens, HEADROOM).unwrap();
        if hdr.gso_type != GsoType::None && count > 1 {
            seen.superframes += 1;
        }
        let mut tcp = 0;
        for i in 0..count {
            let packet = &mut bufs[i][HEADROOM..HEADROOM + lens[i]];
            if layout(packet).protocol != 6 {
                continue; // IPv6 router solicitations and the like
            }
            seen.segments += 1;
            seen.bad_checksums += usize::from(!checksums(packet, false));
            reflect(packet);
            bufs.swap(tcp, i);
            lens.swap(tcp, i);
            tcp += 1;
        }
        let frames: Vec<usize> = if coalesce {
            coalescer.coalesce(&mut bufs[..tcp], &mut lens[..tcp], HEADROOM).to_vec()
        } else {
            for (buf, _) in bufs.iter_mut().zip(0..tcp) {
                VirtioNetHdr::VALID
                    .emit((&mut buf[HEADROOM - VNET_HDR_LEN..HEADROOM]).try_into().unwrap());
            }
            (0..tcp).collect()
        };
        for i in frames {
            let out = &bufs[i][HEADROOM - VNET_HDR_LEN..HEADROOM + lens[i]];
            seen.coalesced_writes +=
                usize::from(VirtioNetHdr::parse(out).unwrap().gso_type != GsoType::None);
            match queue.write(out) {
                Ok(()) => {}
                Err(Error::Shutdown) => return seen, // the transfer is over
                Err(err) => panic!("write: {err}"),
            }
        }
    }
}

/// Sends 16 MiB from a client through the reflector to a listener in the namespace.
fn transfer_through_reflector(coalesce: bool, v6: bool) -> Seen {
    let ns = Netns::new("tun-tcp");
    let shutdown = Shutdown::new().unwrap();
    let tun = create(&ns, &shutdown, 1, true);
    tun.set_mtu(1420).unwrap();
    let (local, listen, remote) = if v6 {
        (["fd77::1/64", "fd77:0:0:1::1/64"], "[fd77:0:0:1::1]:5001", "[fd77::2]:5001")
    } else {
        (["10.77.0.1/24", "10.77.1.1/24"], "10.77.1.1:5001", "10.77.0.2:5001")
    };
    for addr in local {
        ns.ip(&["addr", "add", addr, "dev", tun.name(), "nodad"]);
    }
    ns.ip(&["link", "set", tun.name(), "up"]);
    let listener = ns.run(|| TcpListener::bind(listen)).unwrap();
    let total = 16 << 20;
    let pattern = |i: usize| (i % 251) as u8;

    thread::scope(|scope| {
        let reflector = scope.spawn(|| reflector(&tun, coalesce));
        let server = scope.spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream.set_read_timeout(Some(TIMEOUT)).unwrap();
            let mut received = 0;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = stream.read(&mut buf).unwrap();
                if n == 0 {
                    return received;
                }
                for (j, &byte) in buf[..n].iter().enumerate() {
                    assert_eq!(byte, pattern(received + j), "byte {}", received + j);
                }
                received += n;
            }
        });
        let mut client =
            ns.run(|| TcpStream::connect_timeout(&remote.parse().unwrap(), TIMEOUT)).unwrap();
        client.set_write_timeout(Some(TIMEOUT)).unwrap();
        let data: Vec<u8> = (0..total).map(pattern).collect();
        client.write_all(&data).unwrap();
        client.shutdown(NetShutdown::Write).unwrap();
        assert_eq!(server.join().unwrap(), total);
        shutdown.trigger();
        reflector.join().unwrap()
    })
}

fn assert_segmented(seen: &Seen) {
    assert!(seen.superframes > 0, "{seen:?}");
    assert!(seen.segments > (16 << 20) / 1420, "{seen:?}");
    assert_eq!(seen.bad_checksums, 0, "{seen:?}");
}

fn assert_coalesced(seen: &Seen) {
    assert!(seen.coalesced_writes > 0, "{seen:?}");
    assert_eq!(seen.bad_checksums, 0, "{seen:?}");
}

#[test]
#[ignore = "needs root and network namespaces"]
fn tcp_superframes_segment_into_valid_packets_v4() {
    assert_segmented(&transfer_through_reflector(false, false));
}

#[test]
#[ignore = "needs root and network namespaces"]
fn tcp_superframes_segment_into_valid_packets_v6() {
    assert_segmented(&transfer_through_reflector(false, true));
}

#[test]
#[ignore = "needs root and network namespaces"]
fn coalesced_frames_deliver_the_byte_stream_v4() {
    assert_coalesced(&transfer_through_reflector(true, false));
}

#[test]
#[ignore = "needs root and network namespaces"]
fn coalesced_frames_deliver_the_byte_stream_v6() {
    assert_coalesced(&transfer_through_reflector(true, true));
}

#[test]
#[ignore = "needs root and network namespaces"]
fn deleting_the_link_ends_blocked_reads() {
    let ns = Netns::new("tun-del");
    let shutdown = Shutdown::new().unwrap();
    let tun = create(&ns, &shutdown, 2, true);
    ns.ip(&["link", "set", tun.name(), "up"]);
    let (tx, rx) = mpsc::channel();
    thread::scope(|scope| {
        for queue in tun.queues() {
            let tx = tx.clone();
            scope.spawn(move || {
                let mut buf = vec![0u8; wgfabric_sys::tun::MAX_FRAME_LEN];
                let result = loop {
                    match queue.read(&mut buf) {
                        Ok(_) => continue, // IPv6 autoconfiguration noise
                        Err(err) => break err,
                    }
                };
                tx.send(result).unwrap();
            });
        }
        ns.ip(&["link", "del", tun.name()]);
        for _ in tun.queues() {
            let result = rx.recv_timeout(TIMEOUT).expect("reader still blocked");
            assert!(matches!(result, Error::LinkDeleted), "{result:?}");
        }
    });
    let frame = [0u8; VNET_HDR_LEN + 20];
    assert!(matches!(tun.queues()[0].write(&frame), Err(Error::LinkDeleted)));
}

#[test]
#[ignore = "needs root and network namespaces"]
fn shutdown_wakes_tun_and_udp_readers() {
    let ns = Netns::new("tun-wake");
    let shutdown = Shutdown::new().unwrap();
    let tun = create(&ns, &shutdown, 1, false);
    // Down, so nothing arrives to read.
    let udp = ns.run(|| UdpSockets::bind(0, &shutdown)).unwrap();
    let (tx, rx) = mpsc::channel();
    thread::scope(|scope| {
        let tx_tun = tx.clone();
        scope.spawn(move || tx_tun.send(tun.queues()[0].read(&mut [0u8; 2048]).map(drop)).unwrap());
        let udp = &udp;
        scope.spawn(move || {
            let mut batch = wgfabric_sys::RecvBatch::new(4);
            let mut bufs = vec![vec![0u8; 2048]; 4];
            let mut meta = [wgfabric_sys::RecvMeta::default(); 4];
            tx.send(udp.v4().recv(&mut batch, &mut bufs, &mut meta).map(drop)).unwrap();
        });
        let early = rx.recv_timeout(Duration::from_millis(200));
        if early.is_ok() {
            shutdown.trigger(); // let the other reader go before failing
        }
        assert!(early.is_err(), "a reader returned early: {early:?}");
        shutdown.trigger();
        for _ in 0..2 {
            let result = rx.recv_timeout(TIMEOUT).expect("reader still blocked");
            assert!(matches!(result, Err(Error::Shutdown)), "{result:?}");
        }
    });
}
