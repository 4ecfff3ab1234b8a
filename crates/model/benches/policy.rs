//! Access policy at scale: a 10,000-host fabric in 20 groups with 50 `[[policy]]` rules.
//! `compile` turns the policy into a relay's table (the largest: it judges every rule, with
//! sets over every group) as the nft JSON batch the agent loads; `load` loads that batch
//! into a fresh network namespace's kernel, one nft transaction per iteration (root only;
//! skipped otherwise). Targets: compile < 1 s, load < 2 s.
//!
//! Run with `sudo cargo bench -p wgfabric-model --bench policy`.

use std::fmt::Write as _;
use std::hint::black_box;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use wgfabric_model::policy::nft::Table;
use wgfabric_model::{Fabric, Inventory, Lock};
use wgfabric_proto::keys::PublicKey;

const HOSTS: u32 = 10_000;
const GROUPS: u32 = 20;
const RULES: u32 = 50;

fn key(index: u32) -> String {
    let mut bytes = [0u8; 32];
    bytes[..4].copy_from_slice(&index.to_le_bytes());
    bytes[31] = 0x24;
    PublicKey::from_bytes(bytes).to_base64()
}

/// Two relays, `HOSTS` spokes spread over `GROUPS` groups, and `RULES` rules between groups
/// with a mix of ports.
fn inventory_text() -> String {
    let mut text = String::from("[network.fleet]\nipv4 = \"10.64.0.0/16\"\nipv6 = \"fd64::/64\"\n");
    for relay in 0..2 {
        let _ = write!(
            text,
            "\n[host.relay-{relay}]\nrole = \"relay\"\nendpoint = \"192.0.2.{}:51820\"\npublic_key = \"{}\"\n",
            relay + 1,
            key(relay)
        );
    }
    for host in 0..HOSTS {
        let _ = write!(
            text,
            "\n[host.host-{host:05}]\nkeepalive = 25\ngroups = [\"g{}\"]\npublic_key = \"{}\"\n",
            host % GROUPS,
            key(2 + host)
        );
    }
    for rule in 0..RULES {
        let ports = match rule % 3 {
            0 => "ports = [\"tcp/22\", \"tcp/443\"]\n",
            1 => "ports = [\"udp/53\", \"tcp/8000-8999\", \"icmp\"]\n",
            _ => "",
        };
        let _ = write!(
            text,
            "\n[[policy]]\nfrom = [\"group:g{}\"]\nto = [\"group:g{}\", \"group:g{}\"]\n{ports}",
            rule % GROUPS,
            (rule * 7 + 3) % GROUPS,
            (rule * 11 + 5) % GROUPS
        );
    }
    text
}

fn relay_batch(fabric: &Fabric) -> serde_json::Value {
    let config = fabric.host_config("relay-0").expect("relay-0");
    Table::of(config.firewall.as_ref().expect("a firewall")).to_json()
}

/// Loads `batch` in the namespace `ns` and returns how long `nft` took.
#[expect(clippy::disallowed_methods, reason = "a benchmark measures wall time")]
fn load(ns: &str, batch: &[u8]) -> Duration {
    let started = Instant::now();
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-j", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("ip netns exec nft");
    child.stdin.take().expect("piped").write_all(batch).expect("writing to nft");
    assert!(child.wait().expect("nft").success(), "nft refused the table");
    started.elapsed()
}

fn policy(c: &mut Criterion) {
    let text = inventory_text();
    let mut group = c.benchmark_group("policy");
    group.sample_size(10);
    group.bench_function("compile relay table, 10k hosts, 50 rules", |b| {
        b.iter(|| {
            let inventory = Inventory::parse(Path::new("fabric.toml"), black_box(&text)).unwrap();
            let lock = Lock::default().update(&inventory).unwrap();
            let fabric = Fabric::new(inventory, lock).unwrap();
            black_box(relay_batch(&fabric))
        });
    });
    let inventory = Inventory::parse(Path::new("fabric.toml"), &text).unwrap();
    let lock = Lock::default().update(&inventory).unwrap();
    let batch = relay_batch(&Fabric::new(inventory, lock).unwrap()).to_string();
    let ns = format!("wgfabric-bench-{}", std::process::id());
    let created =
        Command::new("ip").args(["netns", "add", &ns]).status().is_ok_and(|s| s.success());
    if created {
        group.bench_function("load relay table into the kernel", |b| {
            b.iter_custom(|iterations| (0..iterations).map(|_| load(&ns, batch.as_bytes())).sum());
        });
        let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    } else {
        eprintln!("policy/load skipped: creating a network namespace needs root");
    }
    group.finish();
}

criterion_group!(benches, policy);
criterion_main!(benches);
