//! Cryptokey routing: the table that maps allowed IPs to the peer that owns them.
//!
//! The semantics are those of the kernel module and wireguard-go. A prefix belongs to exactly
//! one peer, so inserting a prefix that is already present moves it to the new peer. Lookups
//! are longest-prefix matches: outbound, the destination address picks the peer to encrypt
//! for; inbound, a decrypted packet is accepted only if its source address looks up to the
//! peer whose session decrypted it.
//!
//! Each address family keeps one hash table per prefix length and the list of lengths in use,
//! longest first. A lookup masks the address to each length in turn and stops at the first
//! hit, so it costs one probe per distinct length in use, and the probes do not depend on each
//! other. A server's table of host routes and subnets has one to three lengths: about 10 ns
//! (IPv4) and 40 ns (IPv6) per lookup with 100,000 random prefixes on the reference machine.
//!
//! With many lengths in use, [`AllowedIps::optimize`] builds a second index on top: a binary
//! search on prefix lengths (Waldvogel et al., "Scalable High Speed IP Routing Lookups"), in
//! which each prefix leaves markers at the shorter lengths its search path visits, and each
//! marker remembers the best real match below it. A lookup then costs at most
//! ⌈log₂(lengths + 1)⌉ probes: 6 for IPv4 and 8 for IPv6 even with prefixes of every length.
//! Any change drops the index (lookups fall back to probing every length) until the next
//! `optimize`; the device calls it after each configuration change. The kernel's
//! path-compressed binary trie was measured first and is slower on every realistic table: its
//! walk is a chain of dependent loads, one per branching bit, 170 ns (IPv4) and 360 ns (IPv6)
//! at 100,000 prefixes. The benchmarks are in `benches/allowed_ips.rs`.
//!
//! Memory is about 40 bytes per IPv4 prefix and 90 per IPv6 prefix.
//!
//! Every prefix is also threaded on its owner's doubly linked list, so dropping all of a peer's
//! prefixes (`wg set ... allowed-ips`, `wg setconf`, peer removal) or moving one prefix between
//! peers costs time proportional to the prefixes touched, never to the table.

use core::hash::{BuildHasherDefault, Hash, Hasher};
use std::collections::HashMap;
use std::hash::DefaultHasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::cidr::{mask_u128, mask_u32, Cidr};

/// The entry index that refers to no entry.
const NIL: u32 = u32::MAX;

/// The first entry of each peer's list. The handles are the daemon's own, not attacker input,
/// so fixed-key SipHash is enough, and it keeps the core free of an RNG.
type ListHeads<T> = HashMap<T, u32, BuildHasherDefault<DefaultHasher>>;

/// Routes of one prefix length, by masked address.
type Routes<K, T> = HashMap<K, Route<T>, BuildHasherDefault<PrefixHasher>>;

/// A routing table from IPv4 and IPv6 prefixes to peer handles of type `T`.
#[derive(Debug, Clone)]
pub struct AllowedIps<T> {
    v4: Family<u32, T>,
    v6: Family<u128, T>,
}

impl<T> Default for AllowedIps<T> {
    fn default() -> Self {
        Self { v4: Family::default(), v6: Family::default() }
    }
}

impl<T: Copy + Eq + Hash> AllowedIps<T> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Gives `cidr` to `value`, taking it from any peer that held it.
    ///
    /// Returns the previous owner of exactly this prefix, if there was one.
    pub fn insert(&mut self, cidr: Cidr, value: T) -> Option<T> {
        match cidr.addr() {
            IpAddr::V4(addr) => self.v4.insert(addr.into(), cidr.prefix_len(), value),
            IpAddr::V6(addr) => self.v6.insert(addr.into(), cidr.prefix_len(), value),
        }
    }

    /// Removes `cidr` if `value` owns exactly that prefix (the userspace API's
    /// `allowed_ip=-…`); returns whether it did. Other peers' prefixes are never touched.
    pub fn remove(&mut self, cidr: Cidr, value: T) -> bool {
        match cidr.addr() {
            IpAddr::V4(addr) => self.v4.remove(addr.into(), cidr.prefix_len(), value),
            IpAddr::V6(addr) => self.v6.remove(addr.into(), cidr.prefix_len(), value),
        }
    }

    /// Removes every prefix `value` owns and returns how many there were.
    ///
    /// Takes time proportional to that count, whatever the size of the table.
    pub fn remove_value(&mut self, value: T) -> usize {
        self.v4.remove_value(value) + self.v6.remove_value(value)
    }

    /// The owner of exactly `cidr`, without longest-prefix matching.
    pub fn get(&self, cidr: Cidr) -> Option<T> {
        match cidr.addr() {
            IpAddr::V4(addr) => self.v4.get(addr.into(), cidr.prefix_len()),
            IpAddr::V6(addr) => self.v6.get(addr.into(), cidr.prefix_len()),
        }
    }

    /// The owner of the longest prefix that contains `addr`.
    pub fn lookup(&self, addr: IpAddr) -> Option<T> {
        match addr {
            IpAddr::V4(addr) => self.lookup_v4(addr),
            IpAddr::V6(addr) => self.lookup_v6(addr),
        }
    }

    /// The owner of the longest IPv4 prefix that contains `addr` (build `addr` from a packet's
    /// bytes with `Ipv4Addr::from([u8; 4])`).
    #[inline]
    pub fn lookup_v4(&self, addr: Ipv4Addr) -> Option<T> {
        self.v4.lookup(addr.into())
    }

    /// The owner of the longest IPv6 prefix that contains `addr` (build `addr` from a packet's
    /// bytes with `Ipv6Addr::from([u8; 16])`).
    #[inline]
    pub fn lookup_v6(&self, addr: Ipv6Addr) -> Option<T> {
        self.v6.lookup(addr.into())
    }

    /// The prefixes `value` owns, in [`Cidr`] order (IPv4 first, then by address and length).
    pub fn prefixes_of(&self, value: T) -> Vec<Cidr> {
        let v4 = self.v4.prefixes_of(value).into_iter();
        let v6 = self.v6.prefixes_of(value).into_iter();
        let v4 = v4.map(|(key, len)| Cidr::from_canonical(Ipv4Addr::from(key).into(), len));
        let v6 = v6.map(|(key, len)| Cidr::from_canonical(Ipv6Addr::from(key).into(), len));
        v4.chain(v6).collect()
    }

    /// Builds the binary-search index when many prefix lengths are in use, so that lookups
    /// stay fast whatever the mix of lengths; a no-op when the index is current or not worth
    /// it. Call it after a batch of changes: each change drops the index.
    pub fn optimize(&mut self) {
        self.v4.optimize();
        self.v6.optimize();
    }

    /// The number of prefixes in the table.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Whether the table holds no prefix.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every prefix.
    pub fn clear(&mut self) {
        self.v4 = Family::default();
        self.v6 = Family::default();
    }
}

/// An address as the tables see it: a string of bits, most significant first.
trait Key: Copy + Eq + Hash + Ord {
    /// The width of the address; prefix lengths run from 0 to this.
    const BITS: u8;

    /// `self` with all but the first `len` bits cleared.
    fn truncate(self, len: u8) -> Self;
}

impl Key for u32 {
    const BITS: u8 = 32;

    #[inline]
    fn truncate(self, len: u8) -> Self {
        self & mask_u32(len)
    }
}

impl Key for u128 {
    const BITS: u8 = 128;

    #[inline]
    fn truncate(self, len: u8) -> Self {
        self & mask_u128(len)
    }
}

/// What a lookup finds: the owner, and the prefix's entry for list upkeep.
#[derive(Debug, Clone, Copy)]
struct Route<T> {
    value: T,
    entry: u32,
}

/// A prefix and its place on its owner's list.
#[derive(Debug, Clone)]
struct Entry<K> {
    key: K,
    len: u8,
    prev: u32,
    next: u32,
}

/// Markers and prefixes of one length in the binary-search index: masked address → the best
/// real match among lengths up to this one (`None`: a marker with nothing below it).
type Markers<K, T> = HashMap<K, Option<T>, BuildHasherDefault<PrefixHasher>>;

/// Up to this many lengths in use, probing each length is as fast as the binary search.
const LINEAR_LENGTHS: usize = 8;

/// The binary search on prefix lengths: `tables[i]` holds the prefixes of length
/// `lengths[i]` (ascending) and the markers left there by longer prefixes.
#[derive(Debug, Clone)]
struct LengthSearch<K, T> {
    lengths: Vec<u8>,
    tables: Vec<Markers<K, T>>,
}

impl<K: Key, T: Copy> LengthSearch<K, T> {
    #[inline]
    fn lookup(&self, addr: K) -> Option<T> {
        let (mut lo, mut hi, mut best) = (0, self.lengths.len(), None);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.tables[mid].get(&addr.truncate(self.lengths[mid])) {
                Some(found) => {
                    best = found.or(best);
                    lo = mid + 1;
                }
                None => hi = mid,
            }
        }
        best
    }
}

/// The prefixes of one address family.
#[derive(Debug, Clone)]
struct Family<K, T> {
    /// `by_len[len]` holds the prefixes of length `len`.
    by_len: Vec<Routes<K, T>>,
    /// The binary-search index, while it matches `by_len` (see [`AllowedIps::optimize`]).
    search: Option<LengthSearch<K, T>>,
    /// The lengths whose table is not empty, longest first: the order lookups probe them in.
    lengths: Vec<u8>,
    /// Every prefix, addressed by `Route::entry`; slots in `free` are unused.
    entries: Vec<Entry<K>>,
    free: Vec<u32>,
    heads: ListHeads<T>,
}

impl<K: Key, T> Default for Family<K, T> {
    fn default() -> Self {
        Self {
            by_len: (0..=K::BITS).map(|_| Routes::default()).collect(),
            search: None,
            lengths: Vec::new(),
            entries: Vec::new(),
            free: Vec::new(),
            heads: ListHeads::default(),
        }
    }
}

impl<K: Key, T: Copy + Eq + Hash> Family<K, T> {
    #[inline]
    fn lookup(&self, addr: K) -> Option<T> {
        match &self.search {
            Some(search) => search.lookup(addr),
            None => self.probe(addr, &self.lengths),
        }
    }

    /// The longest match among `lengths` (longest first), one probe per length.
    fn probe(&self, addr: K, lengths: &[u8]) -> Option<T> {
        lengths.iter().find_map(|&len| {
            self.by_len[usize::from(len)].get(&addr.truncate(len)).map(|route| route.value)
        })
    }

    fn optimize(&mut self) {
        if self.search.is_some() || self.lengths.len() <= LINEAR_LENGTHS {
            return;
        }
        let lengths: Vec<u8> = self.lengths.iter().rev().copied().collect();
        let mut tables: Vec<Markers<K, T>> = lengths.iter().map(|_| Markers::default()).collect();
        for (position, &len) in lengths.iter().enumerate() {
            for (&key, route) in &self.by_len[usize::from(len)] {
                // Walk the search path towards `position`, leaving a marker wherever the
                // search must be told to go longer.
                let (mut lo, mut hi) = (0, lengths.len());
                while lo < hi {
                    let mid = (lo + hi) / 2;
                    if mid == position {
                        tables[mid].insert(key, Some(route.value));
                        break;
                    }
                    if mid < position {
                        let marker = key.truncate(lengths[mid]);
                        if !tables[mid].contains_key(&marker) {
                            // The best real match for the marker's bits: the lengths up to
                            // the marker's, longest first (`self.lengths` is descending).
                            let start = self.lengths.len() - 1 - mid;
                            let best = self.probe(marker, &self.lengths[start..]);
                            tables[mid].insert(marker, best);
                        }
                        lo = mid + 1;
                    } else {
                        hi = mid;
                    }
                }
            }
        }
        self.search = Some(LengthSearch { lengths, tables });
    }

    fn get(&self, key: K, len: u8) -> Option<T> {
        self.by_len[usize::from(len)].get(&key).map(|route| route.value)
    }

    fn len(&self) -> usize {
        self.entries.len() - self.free.len()
    }

    fn insert(&mut self, key: K, len: u8, value: T) -> Option<T> {
        self.search = None;
        let routes = &mut self.by_len[usize::from(len)];
        if let Some(route) = routes.get_mut(&key) {
            let (previous, entry) = (route.value, route.entry);
            route.value = value;
            if previous != value {
                self.unlink(entry, previous);
                self.link(entry, value);
            }
            return Some(previous);
        }
        if routes.is_empty() {
            let position = self.lengths.partition_point(|&longer| longer > len);
            self.lengths.insert(position, len);
        }
        let entry = self.alloc(Entry { key, len, prev: NIL, next: NIL });
        self.by_len[usize::from(len)].insert(key, Route { value, entry });
        self.link(entry, value);
        None
    }

    fn remove(&mut self, key: K, len: u8, value: T) -> bool {
        match self.by_len[usize::from(len)].get(&key) {
            Some(route) if route.value == value => {
                self.search = None;
                let entry = route.entry;
                self.unlink(entry, value);
                self.forget(key, len);
                self.free.push(entry);
                true
            }
            _ => false,
        }
    }

    fn remove_value(&mut self, value: T) -> usize {
        let Some(mut index) = self.heads.remove(&value) else { return 0 };
        self.search = None;
        let mut removed = 0;
        while let Some(entry) = self.entries.get(index as usize) {
            let (key, len, next) = (entry.key, entry.len, entry.next);
            self.forget(key, len);
            self.free.push(index);
            index = next;
            removed += 1;
        }
        removed
    }

    /// `value`'s prefixes as sorted `(key, len)` pairs.
    fn prefixes_of(&self, value: T) -> Vec<(K, u8)> {
        let mut prefixes = Vec::new();
        let mut index = self.heads.get(&value).copied().unwrap_or(NIL);
        while let Some(entry) = self.entries.get(index as usize) {
            prefixes.push((entry.key, entry.len));
            index = entry.next;
        }
        prefixes.sort_unstable();
        prefixes
    }

    /// Stores `entry` in a free slot and returns its index.
    fn alloc(&mut self, entry: Entry<K>) -> u32 {
        if let Some(index) = self.free.pop() {
            self.entries[index as usize] = entry;
            return index;
        }
        // Invariant: four billion prefixes (over 100 GiB) exhaust memory first.
        let index = u32::try_from(self.entries.len())
            .ok()
            .filter(|&index| index != NIL)
            .expect("allowed-IPs table outgrew u32 indices");
        self.entries.push(entry);
        index
    }

    /// Drops the route for `key/len`, and the length's table once it is empty.
    fn forget(&mut self, key: K, len: u8) {
        let routes = &mut self.by_len[usize::from(len)];
        routes.remove(&key);
        if routes.is_empty() {
            // Give the memory back: a `wg setconf` may have emptied a large table.
            *routes = Routes::default();
            self.lengths.retain(|&other| other != len);
        }
    }

    /// Puts entry `index` at the head of `owner`'s list.
    fn link(&mut self, index: u32, owner: T) {
        let next = self.heads.insert(owner, index).unwrap_or(NIL);
        if let Some(head) = self.entries.get_mut(next as usize) {
            head.prev = index;
        }
        let entry = &mut self.entries[index as usize];
        (entry.prev, entry.next) = (NIL, next);
    }

    /// Takes entry `index` off `owner`'s list.
    fn unlink(&mut self, index: u32, owner: T) {
        let entry = &mut self.entries[index as usize];
        let (prev, next) = (entry.prev, entry.next);
        (entry.prev, entry.next) = (NIL, NIL);
        match self.entries.get_mut(prev as usize) {
            Some(prev) => prev.next = next,
            None if next == NIL => {
                self.heads.remove(&owner);
            }
            None => {
                self.heads.insert(owner, next);
            }
        }
        if let Some(next) = self.entries.get_mut(next as usize) {
            next.prev = prev;
        }
    }
}

/// A fast hash for masked addresses: each 64-bit word is mixed in with a folded 128-bit
/// multiply, which spreads every input bit over the low bits the table indexes by (a plain
/// multiply would send all `/24`s, whose low byte is zero, to every 256th bucket).
///
/// The keys are prefixes from the local configuration, and a lookup of an address a peer
/// chose costs at most the probe length the configuration's own keys produce, so a fixed,
/// unkeyed function is enough.
#[derive(Debug, Default, Clone, Copy)]
struct PrefixHasher(u64);

impl PrefixHasher {
    /// An odd constant with well-mixed bits (the fractional part of pi).
    const MULTIPLIER: u64 = 0x243f_6a88_85a3_08d3;

    #[inline]
    fn mix(&mut self, word: u64) {
        let product = u128::from(self.0 ^ word) * u128::from(Self::MULTIPLIER);
        self.0 = product as u64 ^ (product >> 64) as u64;
    }
}

impl Hasher for PrefixHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.mix(n.into());
    }

    #[inline]
    fn write_u128(&mut self, n: u128) {
        self.mix(n as u64);
        self.mix((n >> 64) as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests;
