//! Allowed-IPs table: lookup latency on large tables, bulk insertion, and the `wg setconf`
//! pattern of replacing every peer's allowed IPs in a row.
//!
//! Lookups cycle through a few thousand addresses drawn from the table's own prefixes (with
//! random host bits), so every lookup is a hit and the reported time is per lookup.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wgfabric_proto::allowed_ips::AllowedIps;
use wgfabric_proto::cidr::Cidr;

/// Query addresses per lookup benchmark; a power of two so cycling is a mask.
const QUERIES: usize = 4096;

/// A peer handle shaped like the daemon's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct PeerId(u32);

fn rng() -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(0x5eed)
}

fn random_u128(rng: &mut ChaCha8Rng) -> u128 {
    u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64())
}

/// Picks an element of `choices` with the given weights (out of 100).
fn weighted(rng: &mut ChaCha8Rng, choices: &[(u32, u8)]) -> u8 {
    let mut roll = rng.next_u32() % 100;
    for &(weight, value) in choices {
        match roll.checked_sub(weight) {
            Some(rest) => roll = rest,
            None => return value,
        }
    }
    choices[choices.len() - 1].1
}

/// A random IPv4 network: seven in ten are host routes, the rest /24s.
fn random_v4(rng: &mut ChaCha8Rng) -> Cidr {
    let len = weighted(rng, &[(70, 32), (30, 24)]);
    Cidr::new(Ipv4Addr::from(rng.next_u32()).into(), len).unwrap()
}

/// A random IPv6 network in 2000::/3: half host routes, the rest /64s and /48s.
fn random_v6(rng: &mut ChaCha8Rng) -> Cidr {
    let len = weighted(rng, &[(50, 128), (30, 64), (20, 48)]);
    let bits = random_u128(rng) >> 3 | 1 << 125;
    Cidr::new(Ipv6Addr::from(bits).into(), len).unwrap()
}

/// An address inside `net`, host bits random.
fn address_in(rng: &mut ChaCha8Rng, net: Cidr) -> IpAddr {
    match net.addr() {
        IpAddr::V4(addr) => {
            let host = rng.next_u32().checked_shr(net.prefix_len().into()).unwrap_or(0);
            Ipv4Addr::from(u32::from(addr) | host).into()
        }
        IpAddr::V6(addr) => {
            let host = random_u128(rng).checked_shr(net.prefix_len().into()).unwrap_or(0);
            Ipv6Addr::from(u128::from(addr) | host).into()
        }
    }
}

fn queries(rng: &mut ChaCha8Rng, nets: &[Cidr]) -> Vec<IpAddr> {
    (0..QUERIES)
        .map(|_| {
            let net = nets[rng.next_u32() as usize % nets.len()];
            address_in(rng, net)
        })
        .collect()
}

/// The prefixes that cover `net` except for the `excluded` networks, as few as possible.
fn complement(net: Cidr, excluded: &[Cidr]) -> Vec<Cidr> {
    if excluded.iter().any(|hole| hole.contains_net(&net)) {
        return Vec::new();
    }
    if !excluded.iter().any(|hole| net.overlaps(hole)) {
        return vec![net];
    }
    let IpAddr::V4(addr) = net.addr() else { unreachable!("IPv4 only") };
    let half = 1u32 << (31 - net.prefix_len());
    [u32::from(addr), u32::from(addr) | half]
        .into_iter()
        .flat_map(|low| {
            let half_net = Cidr::new(Ipv4Addr::from(low).into(), net.prefix_len() + 1).unwrap();
            complement(half_net, excluded)
        })
        .collect()
}

/// Times single lookups, cycling through `queries`.
/// Measures lookups of `queries` in `table`, as the device runs them: after `optimize`.
fn bench_lookups(
    c: &mut Criterion,
    name: &str,
    table: &mut AllowedIps<PeerId>,
    queries: &[IpAddr],
) {
    table.optimize();
    let mut next = 0;
    c.benchmark_group("lookup").bench_function(name, |b| {
        b.iter(|| {
            next = (next + 1) % queries.len();
            table.lookup(black_box(queries[next]))
        })
    });
}

/// A hub's table: peer `i` owns `10.0.x.y/32` and `fd00::x:y/128`.
fn hub(peers: u32) -> (AllowedIps<PeerId>, Vec<(PeerId, [Cidr; 2])>) {
    let mut table = AllowedIps::new();
    let mut config = Vec::new();
    for peer in 0..peers {
        let v4 = Cidr::host(Ipv4Addr::from(0x0a00_0000 | peer).into());
        let v6 = Cidr::host(Ipv6Addr::from(0xfd00_u128 << 112 | u128::from(peer)).into());
        table.insert(v4, PeerId(peer));
        table.insert(v6, PeerId(peer));
        config.push((PeerId(peer), [v4, v6]));
    }
    (table, config)
}

fn lookup(c: &mut Criterion) {
    let mut rng = rng();
    let mut table = AllowedIps::new();
    let v4: Vec<Cidr> = (0..100_000).map(|_| random_v4(&mut rng)).collect();
    let v6: Vec<Cidr> = (0..100_000).map(|_| random_v6(&mut rng)).collect();
    for (index, &net) in v4.iter().chain(&v6).enumerate() {
        table.insert(net, PeerId(index as u32 / 4));
    }
    bench_lookups(c, "100k_v4", &mut table, &queries(&mut rng, &v4));
    bench_lookups(c, "100k_v6", &mut table, &queries(&mut rng, &v6));
    let random: Vec<IpAddr> = (0..QUERIES).map(|_| Ipv4Addr::from(rng.next_u32()).into()).collect();
    bench_lookups(c, "100k_v4_random_address", &mut table, &random);

    // The worst case for probing by length: prefixes of every length, as in the kernel's
    // randomized self-test, looked up at random addresses.
    let mut every_length = AllowedIps::new();
    for index in 0..100_000u32 {
        let v4 = Ipv4Addr::from(rng.next_u32()).into();
        let v6 = Ipv6Addr::from(random_u128(&mut rng)).into();
        every_length.insert(Cidr::new(v4, (index % 33) as u8).unwrap(), PeerId(index));
        every_length.insert(Cidr::new(v6, (index % 129) as u8).unwrap(), PeerId(index));
    }
    let random: Vec<IpAddr> = (0..QUERIES)
        .map(|index| match index % 2 {
            0 => Ipv4Addr::from(rng.next_u32()).into(),
            _ => Ipv6Addr::from(random_u128(&mut rng)).into(),
        })
        .collect();
    bench_lookups(c, "100k_every_length_random_address", &mut every_length, &random);

    // A client routing everything but private ranges through one peer: the prefixes that
    // cover the rest of the address space have fifteen different lengths.
    let mut client = AllowedIps::new();
    let private = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"];
    let private: Vec<Cidr> = private.iter().map(|net| net.parse().unwrap()).collect();
    for net in complement("0.0.0.0/0".parse().unwrap(), &private) {
        client.insert(net, PeerId(0));
    }
    let random: Vec<IpAddr> = (0..QUERIES).map(|_| Ipv4Addr::from(rng.next_u32()).into()).collect();
    bench_lookups(c, "client_excluding_private_ranges", &mut client, &random);

    let (mut hub, config) = hub(20_000);
    let hosts: Vec<Cidr> = config.iter().flat_map(|(_, nets)| *nets).collect();
    bench_lookups(c, "20k_peers_x2", &mut hub, &queries(&mut rng, &hosts));
}

fn insert(c: &mut Criterion) {
    let mut rng = rng();
    let nets: Vec<Cidr> =
        (0..10_000).flat_map(|_| [random_v4(&mut rng), random_v6(&mut rng)]).collect();
    let mut group = c.benchmark_group("insert");
    group.throughput(Throughput::Elements(nets.len() as u64));
    group.bench_function("20k_random_prefixes", |b| {
        b.iter_batched(
            AllowedIps::new,
            |mut table| {
                for (index, &net) in nets.iter().enumerate() {
                    table.insert(net, PeerId(index as u32 / 2));
                }
                table
            },
            BatchSize::LargeInput,
        )
    });
}

/// `wg setconf` on a hub: every peer's allowed IPs are dropped and set again, peer by peer.
fn setconf(c: &mut Criterion) {
    let (mut table, config) = hub(10_000);
    let mut group = c.benchmark_group("setconf");
    group.throughput(Throughput::Elements(config.len() as u64));
    group.bench_function("10k_peers_x2", |b| {
        b.iter(|| {
            for &(peer, nets) in &config {
                table.remove_value(peer);
                for net in nets {
                    table.insert(net, peer);
                }
            }
        })
    });
}

criterion_group!(benches, lookup, insert, setconf);
criterion_main!(benches);
