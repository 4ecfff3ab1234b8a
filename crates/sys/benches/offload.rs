//! Throughput of the two offload hot paths: cutting a 64 KiB TCP superframe read from the TUN
//! into MTU-sized segments, and merging 44 decrypted segments back into one frame, in place or
//! gathered from read-only buffers.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use wgfabric_sys::offload::{segment, Coalescer, GsoType, VirtioNetHdr};

/// Room for the WireGuard data header in front of each packet.
const HEADROOM: usize = 16;
/// MTU 1420 less 20 bytes of IPv4 and 32 of TCP with timestamps.
const MSS: usize = 1368;
const SEGMENTS: usize = 44;

/// A TSO superframe as the kernel writes it: IPv4, TCP with the timestamp option, checksum
/// field holding the pseudo-header sum (its value does not change the work done).
fn superframe() -> (VirtioNetHdr, Vec<u8>) {
    let headers = 20 + 32;
    let len = headers + SEGMENTS * MSS;
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = 6;
    p[12..20].copy_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
    p[32] = 8 << 4;
    p[33] = 0x10;
    p[34..36].copy_from_slice(&512u16.to_be_bytes());
    p[40..52].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
    for (i, byte) in p[headers..].iter_mut().enumerate() {
        *byte = i as u8;
    }
    let hdr = VirtioNetHdr {
        flags: VirtioNetHdr::NEEDS_CSUM,
        gso_type: GsoType::TcpV4,
        hdr_len: headers as u16,
        gso_size: MSS as u16,
        csum_start: 20,
        csum_offset: 16,
    };
    (hdr, p)
}

fn offload(c: &mut Criterion) {
    let (hdr, frame) = superframe();
    let mut bufs = vec![vec![0u8; HEADROOM + 65536]; SEGMENTS];
    let mut lens = vec![0usize; SEGMENTS];

    let mut group = c.benchmark_group("offload");
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function("segment_64k_tcp_mtu1420", |b| {
        b.iter(|| segment(&frame, &hdr, &mut bufs, &mut lens, HEADROOM).unwrap())
    });

    // Coalescing in place only rewrites the first buffer and the lengths; restoring those
    // before each run costs one segment's copy.
    let segments = bufs.clone();
    let segment_lens = lens.clone();
    let first = segments[0][..HEADROOM + segment_lens[0]].to_vec();
    let mut coalescer = Coalescer::new(true);
    group.bench_function("coalesce_44_tcp_segments", |b| {
        b.iter(|| {
            bufs[0][..first.len()].copy_from_slice(&first);
            lens.copy_from_slice(&segment_lens);
            assert_eq!(coalescer.coalesce(&mut bufs, &mut lens, HEADROOM).len(), 1)
        })
    });

    let packets: Vec<&[u8]> = segments
        .iter()
        .zip(&segment_lens)
        .map(|(buf, &len)| &buf[HEADROOM..HEADROOM + len])
        .collect();
    let mut out = vec![vec![0u8; HEADROOM + 65536]; 4];
    let mut out_lens = vec![0usize; 4];
    group.bench_function("coalesce_from_44_tcp_segments", |b| {
        b.iter(|| {
            let mut input = packets.iter().copied().peekable();
            assert_eq!(
                coalescer.coalesce_from(&mut input, &mut out, &mut out_lens, HEADROOM).len(),
                1
            )
        })
    });
    group.finish();
}

criterion_group!(benches, offload);
criterion_main!(benches);
