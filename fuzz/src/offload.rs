//! `offload`: TUN offload segmentation and coalescing (`wgfabric_sys::offload`).
//!
//! The first byte picks the mode: bit 0 clear, the rest is a TUN frame (a 10-byte virtio-net
//! header and an IP packet, usually a TCP or UDP superframe) that is segmented, and its
//! segments are coalesced again; bit 0 set, the rest is a batch of packets, each a 16-bit
//! little-endian length and its bytes, which is coalesced. Bit 1 turns on UDP coalescing.
//!
//! Checked: segmentation fits its output; coalescing in place and by gathering give the same
//! frames; every frame's virtio-net header parses, and the frame segments again into as many
//! packets, of as many bytes, as went into it.

use std::cell::RefCell;

use wgfabric_sys::offload::{complete_checksum, segment, Coalescer, VirtioNetHdr, VNET_HDR_LEN};

/// Room in front of each packet for the virtio-net header (and more, as the daemon keeps).
const HEADROOM: usize = 16;
/// A buffer: headroom and the largest frame.
const BUF_LEN: usize = HEADROOM + 65_536;
/// Buffers per batch, as many as a UDP superframe may have segments.
const BATCH: usize = 64;

struct Buffers {
    segments: Vec<Vec<u8>>,
    gathered: Vec<Vec<u8>>,
    again: Vec<Vec<u8>>,
}

thread_local! {
    static BUFFERS: RefCell<Buffers> = RefCell::new(Buffers {
        segments: vec![vec![0; BUF_LEN]; BATCH],
        gathered: vec![vec![0; BUF_LEN]; BATCH],
        again: vec![vec![0; BUF_LEN]; BATCH],
    });
}

pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let udp = mode & 2 != 0;
    BUFFERS.with(|buffers| {
        let buffers = &mut *buffers.borrow_mut();
        let mut lens = [0usize; BATCH];
        let count = if mode & 1 == 0 {
            match segment_frame(rest, &mut buffers.segments, &mut lens) {
                Some(count) => count,
                None => return,
            }
        } else {
            place_batch(rest, &mut buffers.segments, &mut lens)
        };
        coalesce(buffers, &mut lens, count, udp);
    });
}

/// Segments the frame into `out`; the number of segments, if it could be cut.
fn segment_frame(frame: &[u8], out: &mut [Vec<u8>], lens: &mut [usize]) -> Option<usize> {
    let hdr = VirtioNetHdr::parse(frame).ok()?;
    let packet = &frame[VNET_HDR_LEN..];
    let mut copy = packet.to_vec();
    let completed = complete_checksum(&mut copy, &hdr);
    let count = segment(packet, &hdr, out, lens, HEADROOM).ok()?;
    assert!((1..=out.len()).contains(&count));
    for (buf, &len) in out.iter().zip(&lens[..count]) {
        assert!(HEADROOM + len <= buf.len());
    }
    if hdr.gso_type == wgfabric_sys::offload::GsoType::None {
        // A single packet is copied, its checksum completed as complete_checksum does it.
        assert!(completed.is_ok());
        assert_eq!(count, 1);
        assert_eq!(&out[0][HEADROOM..HEADROOM + lens[0]], &copy[..]);
    }
    Some(count)
}

/// Places length-prefixed packets into `out`; how many.
fn place_batch(mut rest: &[u8], out: &mut [Vec<u8>], lens: &mut [usize]) -> usize {
    let mut count = 0;
    while count < out.len() {
        let Some((&[lo, hi], tail)) = rest.split_first_chunk::<2>() else { break };
        let len = usize::from(u16::from_le_bytes([lo, hi])).min(tail.len());
        let (packet, tail) = tail.split_at(len);
        out[count][HEADROOM..HEADROOM + len].copy_from_slice(packet);
        lens[count] = len;
        count += 1;
        rest = tail;
    }
    count
}

fn frame(buf: &[u8], len: usize) -> &[u8] {
    &buf[HEADROOM - VNET_HDR_LEN..HEADROOM + len]
}

/// Coalesces the `count` packets in `buffers.segments` both ways and checks the frames.
fn coalesce(buffers: &mut Buffers, lens: &mut [usize; BATCH], count: usize, udp: bool) {
    let packets: Vec<Vec<u8>> = buffers.segments[..count]
        .iter()
        .zip(&lens[..count])
        .map(|(buf, &len)| buf[HEADROOM..HEADROOM + len].to_vec())
        .collect();

    let mut in_place_lens = *lens;
    let mut coalescer = Coalescer::new(udp);
    let frames =
        coalescer.coalesce(&mut buffers.segments[..count], &mut in_place_lens[..count], HEADROOM);
    let frames = frames.to_vec();
    assert!(frames.windows(2).all(|w| w[0] < w[1]), "frames out of order: {frames:?}");

    let mut gathered_lens = [0usize; BATCH];
    let mut input = packets.iter().map(Vec::as_slice).peekable();
    let gathered =
        coalescer.coalesce_from(&mut input, &mut buffers.gathered, &mut gathered_lens, HEADROOM);
    assert!(input.peek().is_none(), "gathering stopped with {BATCH} buffers");
    assert_eq!(gathered, (0..frames.len()).collect::<Vec<_>>());
    for (n, &i) in frames.iter().enumerate() {
        assert_eq!(
            frame(&buffers.segments[i], in_place_lens[i]),
            frame(&buffers.gathered[n], gathered_lens[n]),
            "frame {n} differs between in place and gathered"
        );
    }

    // Every frame cuts back into the packets that went into it.
    let (mut segments, mut bytes) = (0, 0);
    for &i in &frames {
        let whole = frame(&buffers.segments[i], in_place_lens[i]);
        let hdr = VirtioNetHdr::parse(whole).expect("a coalesced frame's header parses");
        let mut again_lens = [0usize; BATCH];
        let n =
            segment(&whole[VNET_HDR_LEN..], &hdr, &mut buffers.again, &mut again_lens, HEADROOM)
                .unwrap_or_else(|e| panic!("a coalesced frame ({hdr:?}) does not segment: {e}"));
        segments += n;
        bytes += again_lens[..n].iter().sum::<usize>();
    }
    assert_eq!(segments, count, "segments in and out");
    assert_eq!(bytes, packets.iter().map(Vec::len).sum::<usize>(), "bytes in and out");
}
