//! A 10,000-host hub-and-spoke fabric with 3 relays: parse, assign addresses, lint and render
//! every host's wg-quick file. The target is well under 2 s for lint + render on a 2-core VM.
//!
//! Run with `cargo bench -p wgfabric-model --bench scale`.

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use wgfabric_model::lint::check;
use wgfabric_model::render::{host_files, Format};
use wgfabric_model::{Fabric, Inventory, Lock};
use wgfabric_proto::keys::PublicKey;

const SPOKES: u32 = 10_000;
const RELAYS: u32 = 3;
/// Every hundredth spoke is a subnet router with a declared /24 behind it.
const ROUTER_EVERY: u32 = 100;

fn key(index: u32) -> String {
    let mut bytes = [0u8; 32];
    bytes[..4].copy_from_slice(&index.to_le_bytes());
    bytes[31] = 0x42;
    PublicKey::from_bytes(bytes).to_base64()
}

fn inventory_text() -> String {
    let mut text = String::from(
        "[defaults]\nkeepalive = 25\n\n[network.fleet]\nipv4 = \"10.64.0.0/16\"\nipv6 = \"fd64::/64\"\n",
    );
    for relay in 0..RELAYS {
        let _ = write!(
            text,
            "\n[host.relay-{relay}]\nrole = \"relay\"\npriority = {relay}\nendpoint = \"relay-{relay}.example.net:51820\"\npublic_key = \"{}\"\n",
            key(relay)
        );
    }
    for spoke in 0..SPOKES {
        let _ = write!(
            text,
            "\n[host.spoke-{spoke:05}]\nnat = true\npublic_key = \"{}\"\n",
            key(RELAYS + spoke)
        );
        if spoke % ROUTER_EVERY == 0 {
            let subnet = spoke / ROUTER_EVERY;
            let _ = write!(
                text,
                "routes = [\"172.20.{subnet}.0/24\"]\n\n[external.lan-{subnet}]\ncidr = \"172.20.{subnet}.0/24\"\nhost = \"spoke-{spoke:05}\"\n"
            );
        }
    }
    text
}

fn scale(c: &mut Criterion) {
    let text = inventory_text();
    let path = Path::new("fabric.toml");
    let inventory = Inventory::parse(path, &text).unwrap();
    let lock = Lock::default().update(&inventory).unwrap();
    let fabric = Fabric::new(inventory.clone(), lock.clone()).unwrap();
    assert!(check(&inventory).is_empty(), "the generated fleet is clean");

    let mut group = c.benchmark_group("10k hosts, 3 relays");
    group.sample_size(10);
    group.bench_function("parse inventory", |b| {
        b.iter(|| Inventory::parse(path, black_box(&text)).unwrap())
    });
    group.bench_function("assign addresses", |b| {
        b.iter(|| Lock::default().update(black_box(&inventory)).unwrap())
    });
    group.bench_function("lint", |b| b.iter(|| check(black_box(&inventory))));
    group.bench_function("render wg-quick", |b| {
        b.iter(|| {
            fabric
                .host_configs()
                .map(|config| host_files(&config, None, Format::WgQuick).len())
                .sum::<usize>()
        })
    });
    group.bench_function("parse + lock + lint + render", |b| {
        b.iter(|| {
            let inventory = Inventory::parse(path, black_box(&text)).unwrap();
            let lock = lock.update(&inventory).unwrap();
            let findings = check(&inventory);
            let fabric = Fabric::new(inventory, lock).unwrap();
            let files: usize = fabric
                .host_configs()
                .map(|config| host_files(&config, None, Format::WgQuick).len())
                .sum();
            (findings.len(), files)
        })
    });
    group.finish();
}

criterion_group!(benches, scale);
criterion_main!(benches);
