//! Handshakes per second: complete ones (initiation, response, confirmation), and the
//! responder's part alone (consume an initiation, answer it), which is what a relay under a
//! flood of legitimate handshakes spends per peer served.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use wgfabric_proto::session::sealed_len;
use wgfabric_proto::wire::DATA_HEADER_LEN;
use wgfabric_proto::{Encapsulated, Endpoint};

mod common;

fn handshake(c: &mut Criterion) {
    let mut pair = common::Pair::new();
    let mut group = c.benchmark_group("handshake");
    group.throughput(Throughput::Elements(1));
    group.bench_function("initiation_and_response", |b| {
        b.iter(|| {
            // Past REKEY_AFTER_TIME the next packet starts a new handshake.
            pair.now += Duration::from_secs(121);
            pair.send_and_handshake();
        })
    });
    let from_a = Endpoint::new(common::A_ADDR.parse().unwrap());
    // The setup (A's initiation) and the measured routine (B's answer) share the pair.
    let pair = RefCell::new(pair);
    group.bench_function("responder", |b| {
        b.iter_batched(
            || next_initiation(&mut pair.borrow_mut()),
            |(mut initiation, sent)| {
                let pair = &mut *pair.borrow_mut();
                let _ = pair.b.decapsulate(sent, from_a, &mut initiation, false);
                let response = pair.b.poll_transmit().expect("an answer").datagram;
                // A handshake response (type 2), not a cookie reply.
                assert_eq!(response.first(), Some(&2), "the responder did not answer");
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// A's next handshake initiation and when it was sent: its session has expired, so a packet
/// starts one. The response is never delivered, so A keeps initiating. (Criterion prepares a
/// batch of inputs before it measures them, so each carries its own time: B refuses two
/// initiations from one peer at the same instant.)
fn next_initiation(pair: &mut common::Pair) -> (Vec<u8>, Instant) {
    pair.now += Duration::from_secs(181);
    let packet = common::packet(100);
    let mut buf = vec![0u8; sealed_len(packet.len(), 1420)];
    buf[DATA_HEADER_LEN..DATA_HEADER_LEN + packet.len()].copy_from_slice(&packet);
    let sent = pair.a.encapsulate(pair.now, &mut buf, packet.len());
    assert!(!matches!(sent, Encapsulated::Send { .. }), "no session left to send on");
    let initiation = std::iter::from_fn(|| pair.a.poll_transmit()).last();
    (initiation.expect("a handshake initiation").datagram, pair.now)
}

criterion_group!(benches, handshake);
criterion_main!(benches);
