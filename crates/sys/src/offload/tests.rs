//! Tests of segmentation and coalescing against packets built by hand and checksums computed
//! by an independent, word-by-word implementation.

use super::*;
use proptest::prelude::*;

const HEADROOM: usize = 16;
const BUF_LEN: usize = HEADROOM + 65536;

const ACK: u8 = 0x10;
const PSH: u8 = 0x08;
const FIN: u8 = 0x01;
const CWR: u8 = 0x80;

/// One's-complement sum, word by word, as RFC 1071 describes it.
fn ones_sum(chunks: &[&[u8]]) -> u16 {
    let bytes: Vec<u8> = chunks.concat();
    let mut sum: u32 = 0;
    for pair in bytes.chunks(2) {
        sum += u32::from(pair[0]) << 8 | u32::from(*pair.get(1).unwrap_or(&0));
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Checks the IPv4 header checksum and the TCP/UDP checksum of a standalone packet.
fn checksums_valid(packet: &[u8]) -> bool {
    let (l4, addrs, proto) = match packet[0] >> 4 {
        4 => {
            let ihl = usize::from(packet[0] & 15) * 4;
            if ones_sum(&[&packet[..ihl]]) != 0xffff {
                return false;
            }
            (ihl, &packet[12..20], packet[9])
        }
        _ => (40, &packet[8..40], packet[6]),
    };
    let l4_len = (packet.len() - l4) as u32;
    let pseudo = [&[0, proto][..], &l4_len.to_be_bytes()].concat();
    ones_sum(&[addrs, &pseudo, &packet[l4..]]) == 0xffff
}

/// What a superframe looks like.
#[derive(Debug, Clone)]
struct Spec {
    v6: bool,
    udp: bool,
    payload: Vec<u8>,
    gso_size: u16,
    flags: u8,
    seq: u32,
    id: u16,
    options: usize,
}

/// Builds a superframe the way the kernel hands it to a TUN with offloads: correct lengths and
/// IPv4 header checksum, the pseudo-header sum in the transport checksum field.
fn superframe(spec: &Spec) -> (VirtioNetHdr, Vec<u8>) {
    let ip_len = if spec.v6 { 40 } else { 20 };
    let l4_len = if spec.udp { 8 } else { 20 + 4 * spec.options };
    let total = ip_len + l4_len + spec.payload.len();
    let proto = if spec.udp { 17 } else { 6 };
    let mut p = vec![0u8; total];
    if spec.v6 {
        p[0] = 0x60;
        p[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
        p[6] = proto;
        p[7] = 64;
        p[8..24].copy_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        p[24..40].copy_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    } else {
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[4..6].copy_from_slice(&spec.id.to_be_bytes());
        p[6] = 0x40;
        p[8] = 64;
        p[9] = proto;
        p[12..20].copy_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        let sum = !ones_sum(&[&p[..20]]);
        p[10..12].copy_from_slice(&sum.to_be_bytes());
    }
    let l4 = &mut p[ip_len..];
    l4[..4].copy_from_slice(&[0xc3, 0x50, 0x01, 0xbb]);
    if spec.udp {
        l4[4..6].copy_from_slice(&((l4_len + spec.payload.len()) as u16).to_be_bytes());
    } else {
        l4[4..8].copy_from_slice(&spec.seq.to_be_bytes());
        l4[8..12].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        l4[12] = ((5 + spec.options) as u8) << 4;
        l4[13] = spec.flags;
        l4[14..16].copy_from_slice(&502u16.to_be_bytes());
        for (i, byte) in l4[20..l4_len].iter_mut().enumerate() {
            *byte = if i % 4 == 0 { 1 } else { i as u8 }; // NOPs and junk: opaque to offloads
        }
    }
    l4[l4_len..].copy_from_slice(&spec.payload);
    let addrs = if spec.v6 { &p[8..40] } else { &p[12..20] };
    let len = ((total - ip_len) as u32).to_be_bytes();
    let pseudo = ones_sum(&[addrs, &[0, proto], &len]);
    let csum_offset: u16 = if spec.udp { 6 } else { 16 };
    let at = ip_len + usize::from(csum_offset);
    p[at..at + 2].copy_from_slice(&pseudo.to_be_bytes());
    let hdr = VirtioNetHdr {
        flags: VirtioNetHdr::NEEDS_CSUM,
        gso_type: match (spec.udp, spec.v6) {
            (true, _) => GsoType::UdpL4,
            (false, false) => GsoType::TcpV4,
            (false, true) => GsoType::TcpV6,
        },
        hdr_len: (ip_len + l4_len) as u16,
        gso_size: spec.gso_size,
        csum_start: ip_len as u16,
        csum_offset,
    };
    (hdr, p)
}

fn tcp4(payload_len: usize, gso_size: u16, flags: u8) -> Spec {
    Spec {
        v6: false,
        udp: false,
        payload: (0..payload_len).map(|i| (i * 7) as u8).collect(),
        gso_size,
        flags,
        seq: 0xffff_ff00,
        id: 0xfffe,
        options: 3,
    }
}

fn buffers(count: usize) -> (Vec<Vec<u8>>, Vec<usize>) {
    (vec![vec![0u8; BUF_LEN]; count], vec![0; count])
}

fn segments(spec: &Spec) -> (Vec<Vec<u8>>, Vec<usize>) {
    let (hdr, frame) = superframe(spec);
    let (mut bufs, mut lens) = buffers(64);
    let n = segment(&frame, &hdr, &mut bufs, &mut lens, HEADROOM).unwrap();
    bufs.truncate(n);
    lens.truncate(n);
    (bufs, lens)
}

fn packet(buf: &[u8], len: usize) -> &[u8] {
    &buf[HEADROOM..HEADROOM + len]
}

#[test]
fn tcp_segments_get_their_own_headers() {
    let (bufs, lens) = segments(&tcp4(3000, 1400, ACK | PSH | FIN | CWR));
    assert_eq!(lens, [52 + 1400, 52 + 1400, 52 + 200]);
    for (i, (buf, &len)) in bufs.iter().zip(&lens).enumerate() {
        let p = packet(buf, len);
        assert!(checksums_valid(p), "segment {i}");
        assert_eq!(u16::from_be_bytes([p[2], p[3]]) as usize, len);
        assert_eq!(u16::from_be_bytes([p[4], p[5]]), 0xfffeu16.wrapping_add(i as u16));
        let seq = u32::from_be_bytes(p[24..28].try_into().unwrap());
        assert_eq!(seq, 0xffff_ff00u32.wrapping_add(1400 * i as u32));
        let expected_flags = match i {
            0 => ACK | CWR,
            1 => ACK,
            _ => ACK | PSH | FIN,
        };
        assert_eq!(p[33], expected_flags, "segment {i}");
    }
}

#[test]
fn udp_segments_get_lengths_and_checksums() {
    let spec = Spec { v6: true, udp: true, ..tcp4(2500, 1000, 0) };
    let (bufs, lens) = segments(&spec);
    assert_eq!(lens, [48 + 1000, 48 + 1000, 48 + 500]);
    for (buf, &len) in bufs.iter().zip(&lens) {
        let p = packet(buf, len);
        assert!(checksums_valid(p));
        assert_eq!(usize::from(u16::from_be_bytes([p[4], p[5]])), len - 40);
        assert_eq!(usize::from(u16::from_be_bytes([p[44], p[45]])), len - 40);
    }
}

#[test]
fn single_frame_gets_its_checksum_completed() {
    let spec = tcp4(100, 0, ACK);
    let (mut hdr, frame) = superframe(&spec);
    hdr.gso_type = GsoType::None;
    let (mut bufs, mut lens) = buffers(1);
    assert_eq!(segment(&frame, &hdr, &mut bufs, &mut lens, HEADROOM), Ok(1));
    assert!(checksums_valid(packet(&bufs[0], lens[0])));
    assert!(!checksums_valid(&frame), "the input only held the pseudo-header sum");
}

#[test]
fn segmentation_rejects_bad_frames() {
    let (hdr, frame) = superframe(&tcp4(3000, 1400, ACK));
    let (mut bufs, mut lens) = buffers(3);
    let mut run = |frame: &[u8], hdr: VirtioNetHdr, n: usize| {
        segment(frame, &hdr, &mut bufs[..n], &mut lens[..n], HEADROOM)
    };
    assert_eq!(run(&frame, hdr, 2), Err(OffloadError::OutputTooSmall));
    assert!(matches!(
        run(&frame, VirtioNetHdr { gso_size: 0, ..hdr }, 3),
        Err(OffloadError::Malformed(_))
    ));
    assert!(matches!(
        run(&frame, VirtioNetHdr { csum_start: 24, ..hdr }, 3),
        Err(OffloadError::Malformed(_))
    ));
    assert!(matches!(
        run(&frame, VirtioNetHdr { gso_type: GsoType::UdpL4, ..hdr }, 3),
        Err(OffloadError::Malformed(_))
    ));
    assert!(matches!(
        run(&frame, VirtioNetHdr { gso_type: GsoType::TcpV6, ..hdr }, 3),
        Err(OffloadError::Malformed(_))
    ));
    assert_eq!(run(&frame[..30], hdr, 3), Err(OffloadError::Truncated));
    let mut tiny = vec![vec![0u8; 100]];
    assert_eq!(segment(&frame, &hdr, &mut tiny, &mut [0], 0), Err(OffloadError::OutputTooSmall));
}

/// Copies packets into fresh 64 KiB buffers, as the daemon's receive path provides them.
fn batch(packets: &[&[u8]]) -> (Vec<Vec<u8>>, Vec<usize>) {
    let (mut bufs, mut lens) = buffers(packets.len());
    for ((buf, len), p) in bufs.iter_mut().zip(&mut lens).zip(packets) {
        buf[HEADROOM..HEADROOM + p.len()].copy_from_slice(p);
        *len = p.len();
    }
    (bufs, lens)
}

fn vnet(buf: &[u8]) -> VirtioNetHdr {
    VirtioNetHdr::parse(&buf[HEADROOM - VNET_HDR_LEN..]).unwrap()
}

#[test]
fn coalesces_a_flow_back_into_its_superframe() {
    let spec = tcp4(5000, 1300, ACK | PSH);
    let (hdr, frame) = superframe(&spec);
    let (mut bufs, mut lens) = segments(&spec);
    let frames = Coalescer::new(false).coalesce(&mut bufs, &mut lens, HEADROOM).to_vec();
    assert_eq!(frames, [0]);
    let mut expected = frame.clone();
    expected[4..6].copy_from_slice(&spec.id.to_be_bytes());
    assert_eq!(packet(&bufs[0], lens[0]), &expected[..]);
    assert_eq!(vnet(&bufs[0]), hdr);
}

#[test]
fn flow_breaks_start_new_frames_in_order() {
    let (a, a_lens) = segments(&tcp4(4 * 1000, 1000, ACK));
    let mut other = tcp4(2000, 1000, ACK);
    other.v6 = true;
    let (b, b_lens) = segments(&other);
    let seg = |bufs: &[Vec<u8>], lens: &[usize], i: usize| packet(&bufs[i], lens[i]).to_vec();
    let mut gap = seg(&a, &a_lens, 3);
    gap[24..28].copy_from_slice(&0u32.to_be_bytes()); // not contiguous
    let mut window = seg(&a, &a_lens, 2);
    window[35] ^= 1;
    let icmp = [0x45, 0, 0, 20, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
    let packets = [
        seg(&a, &a_lens, 0),
        seg(&b, &b_lens, 0),
        seg(&a, &a_lens, 1), // joins frame 0
        icmp.to_vec(),
        seg(&b, &b_lens, 1), // joins frame 1
        window,              // same flow, different window: new frame
        gap,                 // out of sequence: new frame
    ];
    let refs: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
    let (mut bufs, mut lens) = batch(&refs);
    let frames = Coalescer::new(false).coalesce(&mut bufs, &mut lens, HEADROOM).to_vec();
    assert_eq!(frames, [0, 1, 3, 5, 6]);
    assert_eq!(vnet(&bufs[0]).gso_type, GsoType::TcpV4);
    assert_eq!(lens[0], 52 + 2000);
    assert_eq!(vnet(&bufs[1]).gso_type, GsoType::TcpV6);
    for i in [3, 5, 6] {
        assert_eq!(vnet(&bufs[i]), VirtioNetHdr::VALID);
        assert_eq!(packet(&bufs[i], lens[i]), &packets[i][..]);
    }
}

#[test]
fn short_or_pushed_segments_close_the_frame() {
    let (segs, lens) = segments(&tcp4(2500, 1000, ACK | PSH));
    let more = segments(&Spec { seq: 0xffff_ff00u32.wrapping_add(2500), ..tcp4(1000, 1000, ACK) });
    let refs = [packet(&segs[0], lens[0]), packet(&segs[1], lens[1]), packet(&segs[2], lens[2])];
    let next = packet(&more.0[0], more.1[0]);
    let (mut bufs, mut blens) = batch(&[refs[0], refs[1], refs[2], next]);
    let frames = Coalescer::new(false).coalesce(&mut bufs, &mut blens, HEADROOM).to_vec();
    assert_eq!(frames, [0, 3], "the short last segment closes frame 0");
    assert_eq!(packet(&bufs[0], blens[0])[33], ACK | PSH);
}

#[test]
fn udp_is_coalesced_only_when_enabled() {
    let spec = Spec { udp: true, ..tcp4(3000, 1000, 0) };
    let (segs, lens) = segments(&spec);
    let (mut bufs, mut blens) = (segs.clone(), lens.clone());
    assert_eq!(Coalescer::new(false).coalesce(&mut bufs, &mut blens, HEADROOM), [0, 1, 2]);
    assert_eq!(vnet(&bufs[0]), VirtioNetHdr::VALID);
    let (mut bufs, mut blens) = (segs, lens);
    assert_eq!(Coalescer::new(true).coalesce(&mut bufs, &mut blens, HEADROOM), [0]);
    assert_eq!(vnet(&bufs[0]).gso_type, GsoType::UdpL4);
    assert_eq!(packet(&bufs[0], blens[0]), &superframe(&spec).1[..]);
}

#[test]
fn gathering_matches_in_place_and_resumes_when_out_is_full() {
    let (a, a_lens) = segments(&tcp4(5000, 1000, ACK));
    let mut other = tcp4(3000, 1000, ACK);
    other.v6 = true;
    let (b, b_lens) = segments(&other);
    let icmp = [0x45, 0, 0, 20, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
    let mut packets: Vec<&[u8]> = vec![&icmp];
    for i in 0..5 {
        packets.push(packet(&a[i], a_lens[i]));
        packets.extend(b.get(i).map(|buf| packet(buf, b_lens[i])));
    }
    let (mut bufs, mut lens) = batch(&packets);
    let in_place = Coalescer::new(false).coalesce(&mut bufs, &mut lens, HEADROOM).to_vec();
    let expected: Vec<&[u8]> =
        in_place.iter().map(|&i| &bufs[i][HEADROOM - VNET_HDR_LEN..HEADROOM + lens[i]]).collect();
    assert_eq!(expected.len(), 3);

    let frame_bytes = |out: &[Vec<u8>], lens: &[usize], i: usize| {
        out[i][HEADROOM - VNET_HDR_LEN..HEADROOM + lens[i]].to_vec()
    };
    let mut coalescer = Coalescer::new(false);
    let (mut out, mut out_lens) = buffers(8);
    let mut input = packets.iter().copied().peekable();
    let frames = coalescer.coalesce_from(&mut input, &mut out, &mut out_lens, HEADROOM).to_vec();
    assert_eq!(frames, [0, 1, 2]);
    assert!(input.next().is_none());
    let gathered: Vec<Vec<u8>> = frames.iter().map(|&i| frame_bytes(&out, &out_lens, i)).collect();
    assert_eq!(gathered, expected);

    // With two frame buffers, the first call stops before the IPv6 flow's first packet.
    let (mut out, mut out_lens) = buffers(2);
    let mut input = packets.iter().copied().peekable();
    assert_eq!(coalescer.coalesce_from(&mut input, &mut out, &mut out_lens, HEADROOM), [0, 1]);
    assert_eq!(out_lens[1], a_lens[0], "the next packet of flow A belongs to the next call");
    assert_eq!(input.peek(), Some(&packets[2]));
    assert_eq!(coalescer.coalesce_from(&mut input, &mut out, &mut out_lens, HEADROOM), [0, 1]);
    assert_eq!(out_lens[0], 72 + 3000);
    assert_eq!(out_lens[1], 52 + 4000);
    assert!(input.next().is_none());
}

fn spec_strategy() -> impl Strategy<Value = Spec> {
    (
        any::<bool>(),
        any::<bool>(),
        1usize..20_000,
        1u16..3000,
        any::<bool>(),
        any::<u32>(),
        any::<u16>(),
        0usize..10,
    )
        .prop_map(|(v6, udp, len, gso, push, seq, id, options)| Spec {
            v6,
            udp,
            payload: (0..len).map(|i| (i % 251) as u8).collect(),
            gso_size: gso.max((len / 60) as u16 + 1), // at most 60 segments
            flags: if push { ACK | PSH } else { ACK },
            seq,
            id,
            options,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn segment_then_coalesce_preserves_the_stream(spec in spec_strategy()) {
        let (_, frame) = superframe(&spec);
        let (mut bufs, mut lens) = segments(&spec);
        for (buf, &len) in bufs.iter().zip(&lens) {
            prop_assert!(checksums_valid(packet(buf, len)));
        }
        let packets: Vec<Vec<u8>> = bufs.iter().zip(&lens).map(|(b, &l)| packet(b, l).to_vec()).collect();
        let frames = Coalescer::new(true).coalesce(&mut bufs, &mut lens, HEADROOM).to_vec();
        prop_assert_eq!(&frames, &[0]);
        let (mut out, mut out_lens) = buffers(1);
        let mut input = packets.iter().map(Vec::as_slice).peekable();
        let gathered = Coalescer::new(true).coalesce_from(&mut input, &mut out, &mut out_lens, HEADROOM).to_vec();
        prop_assert_eq!(&gathered, &[0]);
        prop_assert_eq!(&out[0][..HEADROOM + out_lens[0]], &bufs[0][..HEADROOM + lens[0]]);
        let header_len = frame.len() - spec.payload.len();
        let out = packet(&bufs[0], lens[0]);
        prop_assert_eq!(&out[header_len..], &spec.payload[..]);
        if bufs.len() > 1 {
            let mut expected = frame.clone();
            if !spec.v6 {
                expected[4..6].copy_from_slice(&spec.id.to_be_bytes());
            }
            prop_assert_eq!(out, &expected[..]);
        } else {
            prop_assert!(checksums_valid(out));
        }
    }

    #[test]
    fn segment_never_panics(spec in spec_strategy(),
                            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
                            head in proptest::collection::vec(any::<u8>(), 10),
                            use_head in any::<bool>(),
                            cut in any::<usize>(),
                            out_len in 0usize..2000) {
        // Start from a valid superframe so that the deep checks are reached, then damage it.
        let (valid, mut frame) = superframe(&spec);
        for (at, xor) in flips {
            let at = at % frame.len();
            frame[at] ^= xor;
        }
        frame.truncate(cut % (frame.len() + 1));
        let hdr = if use_head { VirtioNetHdr::parse(&head) } else { Ok(valid) };
        let Ok(hdr) = hdr else { return Ok(()) };
        let mut bufs = vec![vec![0u8; out_len]; 64];
        let mut lens = [0usize; 64];
        if let Ok(n) = segment(&frame, &hdr, &mut bufs, &mut lens, 4) {
            prop_assert!(n <= 64);
        }
    }

    #[test]
    fn coalesce_never_panics(packets in proptest::collection::vec(
                                 proptest::collection::vec(any::<u8>(), 0..200), 0..16),
                             flip in any::<usize>()) {
        // Mutate valid segments too, so that deep checks are reached.
        let (segs, lens) = segments(&tcp4(3000, 100, ACK));
        let mut inputs: Vec<Vec<u8>> = segs.iter().zip(&lens).map(|(b, &l)| packet(b, l).to_vec()).collect();
        let victim = flip % inputs.len();
        let byte = (flip / inputs.len()) % inputs[victim].len();
        inputs[victim][byte] ^= (flip >> 8) as u8 | 1;
        inputs.extend(packets);
        let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
        let (mut bufs, mut blens) = batch(&refs);
        let frames = Coalescer::new(true).coalesce(&mut bufs, &mut blens, HEADROOM).to_vec();
        prop_assert!(frames.windows(2).all(|w| w[0] < w[1]));
        prop_assert!(frames.iter().all(|&i| VirtioNetHdr::parse(&bufs[i][HEADROOM - VNET_HDR_LEN..]).is_ok()));
    }
}
