//! Sealing and opening 1420-byte packets, against raw ChaCha20-Poly1305 from ring.
//!
//! Goal: `seal` and `open` within 10% of the raw AEAD, i.e. no extra copies.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use wgfabric_proto::session::sealed_len;
use wgfabric_proto::wire::{DataHeader, DATA_HEADER_LEN};

mod common;

const LEN: usize = 1420;

fn transport(c: &mut Criterion) {
    let mut pair = common::Pair::new();
    let peer_b = pair.a.peer_ids().next().unwrap();
    let out = pair.a.prepare_send(pair.now, peer_b, 0).expect("session established");
    let session = out.session;
    let p = common::packet(LEN);
    let mut buf = vec![0u8; sealed_len(LEN, 1420)];

    let mut group = c.benchmark_group("transport");
    group.throughput(Throughput::Bytes(LEN as u64));

    group.bench_function("raw_ring_seal_1420", |b| {
        let key = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &[7; 32]).unwrap());
        let mut data = p.clone();
        let mut counter = 0u64;
        b.iter(|| {
            counter += 1;
            let mut n = [0u8; 12];
            n[4..].copy_from_slice(&counter.to_le_bytes());
            key.seal_in_place_separate_tag(Nonce::assume_unique_for_key(n), Aad::empty(), &mut data)
                .unwrap()
        })
    });

    group.bench_function("seal_1420", |b| {
        b.iter(|| {
            buf[DATA_HEADER_LEN..DATA_HEADER_LEN + LEN].copy_from_slice(&p);
            session.seal(&mut buf, LEN, 1420).unwrap()
        })
    });

    // Opening consumes counters, so each iteration opens a freshly sealed datagram; sealing
    // happens in the untimed setup.
    let first = {
        buf[DATA_HEADER_LEN..DATA_HEADER_LEN + LEN].copy_from_slice(&p);
        let n = session.seal(&mut buf, LEN, 1420).unwrap();
        DataHeader::parse(&buf[..n]).unwrap()
    };
    let receiver = pair.b.session(pair.now, first.receiver).expect("receiving session");
    group.bench_function("open_1420", |b| {
        b.iter_batched_ref(
            || {
                let mut d = vec![0u8; sealed_len(LEN, 1420)];
                d[DATA_HEADER_LEN..DATA_HEADER_LEN + LEN].copy_from_slice(&p);
                session.seal(&mut d, LEN, 1420).unwrap();
                d
            },
            |d| receiver.open(d).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, transport);
criterion_main!(benches);
