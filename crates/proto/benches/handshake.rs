//! Complete handshakes (initiation, response, confirmation) per second.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

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
    group.finish();
}

criterion_group!(benches, handshake);
criterion_main!(benches);
