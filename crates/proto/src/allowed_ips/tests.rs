//! Tests of the allowed-IPs table: the kernel's self-test cases, semantics, and a comparison
//! against a linear scan under random operations.

use super::*;

fn cidr(text: &str) -> Cidr {
    text.parse().unwrap()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// An IPv6 address from four 32-bit words, most significant first.
fn v6(words: [u32; 4]) -> IpAddr {
    let bits = words.iter().fold(0u128, |acc, &word| acc << 32 | u128::from(word));
    Ipv6Addr::from(bits).into()
}

fn v6_net(words: [u32; 4], prefix_len: u8) -> Cidr {
    Cidr::new(v6(words), prefix_len).unwrap()
}

/// Checks the tables' invariants: each route's entry names it, the lengths in use are listed
/// longest first, every route is on its owner's list exactly once, and no slot leaks.
fn assert_well_formed<K: Key + core::fmt::Debug, T: Copy + Eq + Hash + core::fmt::Debug>(
    family: &Family<K, T>,
) {
    let mut routes = 0;
    for (len, table) in family.by_len.iter().enumerate() {
        for (&key, route) in table {
            let entry = &family.entries[route.entry as usize];
            assert_eq!((entry.key, usize::from(entry.len)), (key, len));
            assert_eq!(key, key.truncate(entry.len), "host bits set");
            routes += 1;
        }
    }
    let in_use: Vec<u8> =
        (0..=K::BITS).rev().filter(|&len| !family.by_len[usize::from(len)].is_empty()).collect();
    assert_eq!(family.lengths, in_use);
    let listed: usize = family
        .heads
        .iter()
        .map(|(&owner, &head)| {
            let (mut count, mut prev, mut index) = (0, NIL, head);
            while let Some(entry) = family.entries.get(index as usize) {
                let route = family.by_len[usize::from(entry.len)][&entry.key];
                assert_eq!((route.value, route.entry, entry.prev), (owner, index, prev));
                (count, prev, index) = (count + 1, index, entry.next);
            }
            assert!(count > 0, "empty list kept");
            count
        })
        .sum();
    assert_eq!(listed, routes);
    assert_eq!(family.len(), routes);
}

fn assert_table_well_formed<T: Copy + Eq + Hash + core::fmt::Debug>(table: &AllowedIps<T>) {
    assert_well_formed(&table.v4);
    assert_well_formed(&table.v6);
}

// Peers of the kernel's allowed-IPs self-test.
const A: u8 = 1;
const B: u8 = 2;
const C: u8 = 3;
const D: u8 = 4;
const E: u8 = 5;
const F: u8 = 6;
const G: u8 = 7;
const H: u8 = 8;

/// The lookups the kernel's self-test expects after its first series of inserts.
#[test]
fn kernel_selftest_longest_prefix_match() {
    let mut table = AllowedIps::new();
    for (peer, net) in [
        (A, cidr("192.168.4.0/24")),
        (B, cidr("192.168.4.4/32")),
        (C, cidr("192.168.0.0/16")),
        (D, cidr("192.95.5.64/27")),
        (C, cidr("192.95.5.65/27")), // the same network as D's: moves it to C
        (D, v6_net([0x26075300, 0x60006b00, 0, 0xc05f0543], 128)),
        (C, v6_net([0x26075300, 0x60006b00, 0, 0], 64)),
        (E, cidr("0.0.0.0/0")),
        (E, cidr("::/0")),
        (F, cidr("::/0")), // moves the IPv6 default route to F
        (G, v6_net([0x24046800, 0, 0, 0], 32)),
        (H, v6_net([0x24046800, 0x40040800, 0xdeadbeef, 0xdeadbeef], 64)),
        (A, v6_net([0x24046800, 0x40040800, 0xdeadbeef, 0xdeadbeef], 128)),
        (C, v6_net([0x24446800, 0x40e40800, 0xdeaebeef, 0xdefbeef], 128)),
        (B, v6_net([0x24446800, 0xf0e40800, 0xeeaebeef, 0], 98)),
        (G, cidr("64.15.112.0/20")),
        (H, cidr("64.15.123.211/25")),
        (A, cidr("10.0.0.0/25")),
        (B, cidr("10.0.0.128/25")),
        (A, cidr("10.1.0.0/30")),
        (B, cidr("10.1.0.4/30")),
        (C, cidr("10.1.0.8/29")),
        (D, cidr("10.1.0.16/29")),
    ] {
        table.insert(net, peer);
    }
    assert_table_well_formed(&table);
    assert_eq!(table.len(), 21);

    for (peer, addr) in [
        (A, ip("192.168.4.20")),
        (A, ip("192.168.4.0")),
        (B, ip("192.168.4.4")),
        (C, ip("192.168.200.182")),
        (C, ip("192.95.5.68")),
        (E, ip("192.95.5.96")),
        (D, v6([0x26075300, 0x60006b00, 0, 0xc05f0543])),
        (C, v6([0x26075300, 0x60006b00, 0, 0xc02e01ee])),
        (F, v6([0x26075300, 0x60006b01, 0, 0])),
        (G, v6([0x24046800, 0x40040806, 0, 0x1006])),
        (G, v6([0x24046800, 0x40040806, 0x1234, 0x5678])),
        (F, v6([0x240467ff, 0x40040806, 0x1234, 0x5678])),
        (F, v6([0x24046801, 0x40040806, 0x1234, 0x5678])),
        (H, v6([0x24046800, 0x40040800, 0x1234, 0x5678])),
        (H, v6([0x24046800, 0x40040800, 0, 0])),
        (H, v6([0x24046800, 0x40040800, 0x10101010, 0x10101010])),
        (A, v6([0x24046800, 0x40040800, 0xdeadbeef, 0xdeadbeef])),
        (G, ip("64.15.116.26")),
        (G, ip("64.15.127.3")),
        (G, ip("64.15.123.1")),
        (H, ip("64.15.123.128")),
        (H, ip("64.15.123.129")),
        (A, ip("10.0.0.52")),
        (B, ip("10.0.0.220")),
        (A, ip("10.1.0.2")),
        (B, ip("10.1.0.6")),
        (C, ip("10.1.0.10")),
        (D, ip("10.1.0.20")),
    ] {
        assert_eq!(table.lookup(addr), Some(peer), "{addr}");
    }

    // The kernel's next step: a peer's prefixes all go at once.
    for net in ["1.0.0.0/32", "64.0.0.0/32", "128.0.0.0/32", "192.0.0.0/32", "255.0.0.0/32"] {
        table.insert(cidr(net), A);
    }
    let owned_by_a = table.prefixes_of(A).len();
    assert_eq!(table.remove_value(A), owned_by_a);
    assert!(table.prefixes_of(A).is_empty());
    for addr in ["1.0.0.0", "64.0.0.0", "128.0.0.0", "192.0.0.0", "255.0.0.0", "10.1.0.2"] {
        assert_eq!(table.lookup(ip(addr)), Some(E), "{addr}");
    }
    assert_eq!(table.lookup(v6([0x24046800, 0x40040800, 0xdeadbeef, 0xdeadbeef])), Some(H));
    assert_table_well_formed(&table);
}

/// The kernel's removal of single prefixes: exact network and owner, or nothing.
#[test]
fn kernel_selftest_exact_removal() {
    let mut table = AllowedIps::new();
    let host_v6 = v6_net([0x24446801, 0x40e40800, 0xdeaebeef, 0xdefbeef], 128);
    let net_v6 = v6_net([0x24446800, 0xf0e40800, 0xeeaebeef, 0], 98);
    let probe_v6 = v6([0x24446800, 0xf0e40800, 0xeeaebeef, 0x10101010]);
    for net in [cidr("1.0.0.0/32"), cidr("192.0.0.0/24"), host_v6, net_v6] {
        table.insert(net, A);
    }
    assert_eq!(table.lookup(ip("1.0.0.0")), Some(A));
    assert_eq!(table.lookup(ip("192.0.0.1")), Some(A));
    assert_eq!(table.lookup(host_v6.addr()), Some(A));
    assert_eq!(table.lookup(probe_v6), Some(A));

    assert!(!table.remove(cidr("192.0.0.0/32"), A), "not the exact network");
    assert!(!table.remove(cidr("192.0.0.0/24"), B), "not the owner");
    assert_eq!(table.lookup(ip("192.0.0.1")), Some(A));
    assert!(table.remove(cidr("192.0.0.0/24"), A));
    assert_eq!(table.lookup(ip("192.0.0.1")), None);
    assert!(table.remove(cidr("1.0.0.0/32"), A));
    assert_eq!(table.lookup(ip("1.0.0.0")), None);

    assert!(!table.remove(v6_net([0x24446801, 0x40e40800, 0xdeaebeef, 0xdefbeef], 96), A));
    assert!(!table.remove(host_v6, B));
    assert_eq!(table.lookup(host_v6.addr()), Some(A));
    assert!(table.remove(host_v6, A));
    assert_eq!(table.lookup(host_v6.addr()), None);
    assert!(!table.remove(net_v6, B));
    assert_eq!(table.lookup(probe_v6), Some(A));
    assert!(table.remove(net_v6, A));
    assert_eq!(table.lookup(probe_v6), None);
    assert!(table.is_empty());
    assert_table_well_formed(&table);
}

/// The kernel removes a peer that owns a network and a subnet of it.
#[test]
fn kernel_selftest_nested_removal() {
    let mut table = AllowedIps::new();
    table.insert(cidr("192.168.0.0/16"), A);
    table.insert(cidr("192.168.0.0/24"), A);
    assert_eq!(table.remove_value(A), 2);
    assert_eq!(table.lookup(ip("192.168.0.1")), None);
    assert!(table.v4.heads.is_empty() && table.v4.lengths.is_empty());
}

/// The kernel's 128 host routes, each all ones but for one bit, built and torn down.
#[test]
fn kernel_selftest_deep_host_routes() {
    let mut table = AllowedIps::new();
    let hosts: Vec<IpAddr> = (0..128).map(|bit| Ipv6Addr::from(!(1u128 << bit)).into()).collect();
    for &host in &hosts {
        table.insert(Cidr::host(host), A);
    }
    assert_table_well_formed(&table);
    assert!(hosts.iter().all(|&host| table.lookup(host) == Some(A)));
    assert_eq!(table.lookup(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")), None);
    assert_eq!(table.remove_value(A), 128);
    assert_eq!(table.v6.free.len(), table.v6.entries.len());
    assert_table_well_formed(&table);
}

/// The kernel reads a peer's prefixes back canonical: host bits cleared.
#[test]
fn kernel_selftest_readback() {
    let mut table = AllowedIps::new();
    let raw = [0x26075300, 0x6d8a6bf8, 0xdab1f1df, 0xc05f1523];
    table.insert(Cidr::new(ip("192.95.5.93"), 27).unwrap(), A);
    table.insert(v6_net([0x26075300, 0x60006b00, 0, 0xc05f0543], 128), A);
    table.insert(Cidr::new(ip("10.1.0.20"), 29).unwrap(), A);
    table.insert(Cidr::new(v6(raw), 83).unwrap(), A);
    table.insert(Cidr::new(v6(raw), 21).unwrap(), A);
    let printed: Vec<String> = table.prefixes_of(A).iter().map(Cidr::to_string).collect();
    assert_eq!(
        printed,
        [
            "10.1.0.16/29",
            "192.95.5.64/27",
            "2607:5000::/21",
            "2607:5300:6000:6b00::c05f:543/128",
            "2607:5300:6d8a:6bf8:dab1:e000::/83",
        ]
    );
}

#[test]
fn inserting_an_owned_prefix_moves_it() {
    let mut table = AllowedIps::new();
    assert_eq!(table.insert(cidr("10.0.0.0/24"), A), None);
    assert_eq!(table.insert(cidr("10.0.0.0/24"), A), Some(A));
    assert_eq!(table.insert(cidr("10.0.0.7/24"), B), Some(A));
    assert_eq!(table.get(cidr("10.0.0.0/24")), Some(B));
    assert_eq!(table.lookup(ip("10.0.0.1")), Some(B));
    assert!(table.prefixes_of(A).is_empty());
    assert_eq!(table.prefixes_of(B), [cidr("10.0.0.0/24")]);
    assert!(!table.remove(cidr("10.0.0.0/24"), A), "A no longer owns it");
    assert_eq!(table.remove_value(A), 0);
    assert_eq!(table.len(), 1);
    assert_table_well_formed(&table);
}

#[test]
fn readback_is_sorted_and_per_peer() {
    let mut table = AllowedIps::new();
    for (net, peer) in [
        ("fd00::2/128", A),
        ("10.0.0.2/32", A),
        ("10.0.0.3/32", B),
        ("fd00::/64", A),
        ("10.0.0.0/8", A),
        ("0.0.0.0/0", A),
        ("10.0.0.0/24", A),
    ] {
        table.insert(cidr(net), peer);
    }
    let expected =
        ["0.0.0.0/0", "10.0.0.0/8", "10.0.0.0/24", "10.0.0.2/32", "fd00::/64", "fd00::2/128"];
    assert_eq!(table.prefixes_of(A), expected.map(cidr));
    assert_eq!(table.prefixes_of(B), [cidr("10.0.0.3/32")]);
    assert_eq!(table.prefixes_of(C), []);
}

#[test]
fn lookups_do_not_cross_families() {
    let mut table = AllowedIps::new();
    table.insert(cidr("0.0.0.0/0"), A);
    assert_eq!(table.lookup(ip("::ffff:10.0.0.1")), None);
    table.insert(cidr("::/0"), B);
    assert_eq!(table.lookup(ip("::ffff:10.0.0.1")), Some(B));
    assert_eq!(table.lookup(ip("10.0.0.1")), Some(A));
    assert_eq!(table.get(cidr("::/1")), None);
}

#[test]
fn clear_empties_the_table() {
    let mut table = AllowedIps::new();
    table.insert(cidr("10.0.0.0/8"), A);
    table.insert(cidr("fd00::/8"), B);
    table.clear();
    assert!(table.is_empty());
    assert_eq!(table.lookup(ip("10.0.0.1")), None);
    assert_eq!(table.prefixes_of(B), []);
}

mod model {
    use proptest::prelude::*;

    use super::*;

    /// The obvious table: a list scanned for the longest match.
    #[derive(Default)]
    struct Naive(Vec<(Cidr, u8)>);

    impl Naive {
        fn insert(&mut self, net: Cidr, peer: u8) {
            self.0.retain(|&(other, _)| other != net);
            self.0.push((net, peer));
        }
        fn lookup(&self, addr: IpAddr) -> Option<u8> {
            let matches = self.0.iter().filter(|(net, _)| net.contains(addr));
            matches.max_by_key(|(net, _)| net.prefix_len()).map(|&(_, peer)| peer)
        }
        fn prefixes_of(&self, peer: u8) -> Vec<Cidr> {
            let mut nets: Vec<Cidr> =
                self.0.iter().filter(|&&(_, p)| p == peer).map(|&(net, _)| net).collect();
            nets.sort();
            nets
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(Cidr, u8),
        Remove(Cidr, u8),
        RemoveValue(u8),
    }

    /// Addresses clustered under a few prefixes so that networks nest and collide.
    fn addr() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            (0..4u32, any::<u16>()).prop_map(|(high, low)| {
                let bases = [0x0a00_0000, 0xc0a8_0000, 0x0a01_0000, 0xffff_0000];
                Ipv4Addr::from(bases[high as usize] | u32::from(low) & 0x0f0f).into()
            }),
            (0..3u32, any::<u16>()).prop_map(|(high, low)| {
                let top: u128 = [0xfd00, 0x2001_0db8, 0xfd00_0000_0000_0001][high as usize];
                Ipv6Addr::from(top << 64 | u128::from(low) << (low % 97)).into()
            }),
        ]
    }

    fn network() -> impl Strategy<Value = Cidr> {
        (addr(), any::<u8>()).prop_map(|(addr, len)| {
            let max = if addr.is_ipv4() { 33 } else { 129 };
            Cidr::new(addr, len % max).unwrap()
        })
    }

    fn op() -> impl Strategy<Value = Op> {
        let peer = 0..6u8;
        prop_oneof![
            6 => (network(), peer.clone()).prop_map(|(net, peer)| Op::Insert(net, peer)),
            2 => (network(), peer.clone()).prop_map(|(net, peer)| Op::Remove(net, peer)),
            1 => peer.prop_map(Op::RemoveValue),
        ]
    }

    /// Mirrors the kernel's randomized self-test at a smaller scale: random routes, each
    /// followed by routes that keep a random number of its leading bits, owned by random
    /// peers; then the peers are removed one by one, comparing lookups before each removal.
    #[test]
    fn kernel_randomized_selftest() {
        use rand_chacha::rand_core::{RngCore, SeedableRng};

        const PEERS: u8 = 100;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut random_u128 = move || u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64());
        let (mut table, mut naive) = (AllowedIps::new(), Naive::default());
        let mut inserted = Vec::new();
        for width in [32, 128] {
            for _ in 0..30 {
                // Addresses are drawn left-aligned in 128 bits; IPv4 keeps the top 32.
                let base = random_u128();
                for mutation in 0..=20 {
                    let kept = if mutation == 0 { width } else { random_u128() % width };
                    let random_bits = u128::MAX.checked_shr(kept as u32).unwrap_or(0);
                    let bits = base & !random_bits | random_u128() & random_bits;
                    let addr: IpAddr = match width {
                        32 => Ipv4Addr::from((bits >> 96) as u32).into(),
                        _ => Ipv6Addr::from(bits).into(),
                    };
                    let len = (random_u128() % width) as u8 + 1;
                    let peer = (random_u128() % u128::from(PEERS)) as u8;
                    let net = Cidr::new(addr, len).unwrap();
                    table.insert(net, peer);
                    naive.insert(net, peer);
                    inserted.push(net);
                }
            }
        }
        assert_eq!(table.len(), naive.0.len());
        assert_table_well_formed(&table);
        for peer in 0..PEERS {
            // Every other round goes through the binary-search index.
            if peer % 2 == 0 {
                table.optimize();
            }
            for query in 0..100 {
                let addr = match query % 3 {
                    0 => Ipv4Addr::from(random_u128() as u32).into(),
                    1 => Ipv6Addr::from(random_u128()).into(),
                    _ => inserted[random_u128() as usize % inserted.len()].addr(),
                };
                assert_eq!(table.lookup(addr), naive.lookup(addr), "{addr}");
            }
            assert_eq!(table.remove_value(peer), naive.prefixes_of(peer).len());
            naive.0.retain(|&(_, owner)| owner != peer);
        }
        assert!(table.is_empty());
        assert_table_well_formed(&table);
    }

    proptest! {
        #[test]
        fn matches_a_linear_scan(
            ops in proptest::collection::vec(op(), 1..120),
            probes in proptest::collection::vec(addr(), 32),
        ) {
            let (mut table, mut naive) = (AllowedIps::new(), Naive::default());
            for op in &ops {
                match *op {
                    Op::Insert(net, peer) => {
                        let previous = naive.0.iter().find(|(n, _)| *n == net).map(|&(_, p)| p);
                        prop_assert_eq!(table.insert(net, peer), previous);
                        naive.insert(net, peer);
                    }
                    Op::Remove(net, peer) => {
                        let owned = naive.0.contains(&(net, peer));
                        prop_assert_eq!(table.remove(net, peer), owned);
                        naive.0.retain(|&entry| entry != (net, peer));
                    }
                    Op::RemoveValue(peer) => {
                        let owned = naive.prefixes_of(peer).len();
                        prop_assert_eq!(table.remove_value(peer), owned);
                        naive.0.retain(|&(_, p)| p != peer);
                    }
                }
                prop_assert_eq!(table.len(), naive.0.len());
            }
            assert_table_well_formed(&table);
            let nets: Vec<IpAddr> = naive.0.iter().map(|(net, _)| net.addr()).collect();
            for addr in probes.iter().copied().chain(nets.iter().copied()) {
                prop_assert_eq!(table.lookup(addr), naive.lookup(addr), "{}", addr);
            }
            // The same answers through the binary-search index.
            table.optimize();
            for addr in probes.iter().copied().chain(nets.iter().copied()) {
                prop_assert_eq!(table.lookup(addr), naive.lookup(addr), "optimized: {}", addr);
            }
            for peer in 0..6 {
                prop_assert_eq!(table.prefixes_of(peer), naive.prefixes_of(peer));
            }
            for &(net, peer) in &naive.0 {
                prop_assert_eq!(table.get(net), Some(peer));
            }
        }
    }
}

/// Through the binary-search index, lookups agree with a linear scan even where the answer
/// comes only from a marker's remembered best match: one region has prefixes at a few lengths,
/// others fill every length, and queries share a random number of leading bits with the first.
#[test]
fn the_length_search_agrees_on_every_length() {
    use rand_chacha::rand_core::{RngCore, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let mut table = AllowedIps::new();
    let mut naive: Vec<(Cidr, u8)> = Vec::new();
    let mut add = |net: Cidr, peer: u8| {
        table.insert(net, peer);
        naive.retain(|&(n, _)| n != net);
        naive.push((net, peer));
    };
    let base = rng.next_u32();
    for (peer, len) in [0u8, 8, 13, 21, 32].into_iter().enumerate() {
        add(Cidr::new(Ipv4Addr::from(base).into(), len).unwrap(), peer as u8);
    }
    for len in 0..=32u8 {
        add(Cidr::new(Ipv4Addr::from(rng.next_u32()).into(), len).unwrap(), 40 + len);
    }
    table.optimize();
    assert!(table.v4.search.is_some(), "33 lengths are worth the index");
    for _ in 0..5_000 {
        let kept = rng.next_u32() % 33;
        let noise = rng.next_u32().checked_shr(kept).unwrap_or(0);
        let addr: IpAddr = Ipv4Addr::from(base ^ noise).into();
        let expected = naive
            .iter()
            .filter(|(net, _)| net.contains(addr))
            .max_by_key(|(net, _)| net.prefix_len())
            .map(|&(_, peer)| peer);
        assert_eq!(table.lookup(addr), expected, "{addr}");
    }
    // Any change drops the index; lookups stay right without it.
    table.insert(cidr("10.0.0.0/8"), 99);
    assert!(table.v4.search.is_none());
    assert_eq!(table.lookup(ip("10.1.2.3")), Some(99));
}
