//! Cryptokey routing: the table that maps allowed IPs to the peer that owns them.
//!
//! The semantics are those of the kernel module and wireguard-go. A prefix belongs to exactly
//! one peer, so inserting a prefix that is already present moves it to the new peer. Lookups
//! are longest-prefix matches: outbound, the destination address picks the peer to encrypt
//! for; inbound, a decrypted packet is accepted only if its source address looks up to the
//! peer whose session decrypted it.
//!
//! Each address family has its own path-compressed binary trie, the structure the kernel
//! uses: a node stands for a prefix, a child extends its parent's prefix by at least one bit,
//! and chains of single-child nodes without a value are never kept, so a trie of `n` prefixes
//! has fewer than `2n` nodes and a lookup follows at most one node per bit. Nodes live in an
//! arena and refer to each other by `u32` index, which keeps them small (36 bytes for IPv4,
//! 48 for IPv6, with a 4-byte peer handle) and keeps the code free of `unsafe`.
//!
//! Every node with a value is also threaded on its peer's doubly linked list, so dropping all
//! of a peer's prefixes (`wg set ... allowed-ips`, `wg setconf`, peer removal) costs time
//! proportional to that peer's prefixes, not to the table.

use core::hash::{BuildHasherDefault, Hash};
use std::collections::HashMap;
use std::hash::DefaultHasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::cidr::{mask_u128, mask_u32, Cidr};

/// The arena index that refers to no node.
const NIL: u32 = u32::MAX;

/// The first node of each peer's list. The handles are the daemon's own, not attacker input,
/// so fixed-key SipHash is enough, and it keeps the core free of an RNG.
type ListHeads<T> = HashMap<T, u32, BuildHasherDefault<DefaultHasher>>;

/// A routing table from IPv4 and IPv6 prefixes to peer handles of type `T`.
#[derive(Debug, Clone)]
pub struct AllowedIps<T> {
    v4: Trie<u32, T>,
    v6: Trie<u128, T>,
}

impl<T> Default for AllowedIps<T> {
    fn default() -> Self {
        Self { v4: Trie::default(), v6: Trie::default() }
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

    /// The number of prefixes in the table.
    pub fn len(&self) -> usize {
        self.v4.len + self.v6.len
    }

    /// Whether the table holds no prefix.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every prefix.
    pub fn clear(&mut self) {
        self.v4 = Trie::default();
        self.v6 = Trie::default();
    }
}

/// An address as the trie sees it: a string of bits, most significant first.
trait Key: Copy + Ord {
    /// The number of leading bits `self` and `other` share (all of them when equal).
    fn common_len(self, other: Self) -> u8;

    /// Bit `index`, counted from the most significant; an index past the end wraps.
    fn bit(self, index: u8) -> usize;

    /// `self` with all but the first `len` bits cleared.
    fn truncate(self, len: u8) -> Self;
}

impl Key for u32 {
    #[inline]
    fn common_len(self, other: Self) -> u8 {
        (self ^ other).leading_zeros() as u8
    }

    #[inline]
    fn bit(self, index: u8) -> usize {
        (self.wrapping_shl(index.into()) >> 31) as usize
    }

    fn truncate(self, len: u8) -> Self {
        self & mask_u32(len)
    }
}

impl Key for u128 {
    #[inline]
    fn common_len(self, other: Self) -> u8 {
        (self ^ other).leading_zeros() as u8
    }

    #[inline]
    fn bit(self, index: u8) -> usize {
        (self.wrapping_shl(index.into()) >> 127) as usize
    }

    fn truncate(self, len: u8) -> Self {
        self & mask_u128(len)
    }
}

/// One prefix of the trie, with or without an owner.
#[derive(Debug, Clone)]
struct Node<K, T> {
    /// The prefix's bits, host bits zero.
    key: K,
    len: u8,
    /// The owner; `None` only for a branch node, which then has two children.
    value: Option<T>,
    /// Children by the bit at index `len`: each extends `key/len` by at least that bit.
    children: [u32; 2],
    parent: u32,
    /// Neighbours on the owner's list, meaningful while `value` is `Some`.
    prev: u32,
    next: u32,
}

/// A path-compressed binary trie over one address family.
#[derive(Debug, Clone)]
struct Trie<K, T> {
    nodes: Vec<Node<K, T>>,
    /// Arena slots free for reuse.
    free: Vec<u32>,
    root: u32,
    lists: ListHeads<T>,
    /// The number of nodes with a value.
    len: usize,
}

impl<K, T> Default for Trie<K, T> {
    fn default() -> Self {
        Self { nodes: Vec::new(), free: Vec::new(), root: NIL, lists: ListHeads::default(), len: 0 }
    }
}

impl<K: Key, T: Copy + Eq + Hash> Trie<K, T> {
    #[inline]
    fn lookup(&self, addr: K) -> Option<T> {
        let mut best = None;
        let mut index = self.root;
        // A host route has no children, so the walk ends on `NIL` without a length check.
        while let Some(node) = self.nodes.get(index as usize) {
            if addr.common_len(node.key) < node.len {
                break;
            }
            best = node.value.or(best);
            index = node.children[addr.bit(node.len)];
        }
        best
    }

    /// The index of the node for exactly `key/len`, or `NIL`.
    fn find(&self, key: K, len: u8) -> u32 {
        let mut index = self.root;
        while let Some(node) = self.nodes.get(index as usize) {
            if node.len > len || key.common_len(node.key) < node.len {
                return NIL;
            }
            if node.len == len {
                return index;
            }
            index = node.children[key.bit(node.len)];
        }
        NIL
    }

    fn get(&self, key: K, len: u8) -> Option<T> {
        self.nodes.get(self.find(key, len) as usize).and_then(|node| node.value)
    }

    fn insert(&mut self, key: K, len: u8, value: T) -> Option<T> {
        // Walk down to the node for `key/len`, or to the edge where it belongs.
        let (mut parent, mut slot, mut index) = (NIL, 0, self.root);
        while let Some(node) = self.nodes.get(index as usize) {
            let common = key.common_len(node.key).min(len).min(node.len);
            if common == node.len && node.len == len {
                return self.assign(index, value);
            }
            if common == node.len {
                (parent, slot, index) =
                    (index, key.bit(node.len), node.children[key.bit(node.len)]);
                continue;
            }
            // `node` is not inside `key/len`'s parent: a new node goes between them.
            let node_key = node.key;
            let (top, target) = if common == len {
                // `key/len` is a prefix of `node`, which becomes its child.
                let target = self.alloc(key, len, parent);
                (target, target)
            } else {
                // They part at bit `common`: a branch node takes both.
                let branch = self.alloc(key.truncate(common), common, parent);
                let leaf = self.alloc(key, len, branch);
                self.nodes[branch as usize].children[key.bit(common)] = leaf;
                (branch, leaf)
            };
            self.nodes[top as usize].children[node_key.bit(common)] = index;
            self.nodes[index as usize].parent = top;
            self.set_child(parent, slot, top);
            return self.assign(target, value);
        }
        let leaf = self.alloc(key, len, parent);
        self.set_child(parent, slot, leaf);
        self.assign(leaf, value)
    }

    fn remove(&mut self, key: K, len: u8, value: T) -> bool {
        let index = self.find(key, len);
        match self.nodes.get(index as usize) {
            Some(node) if node.value == Some(value) => {
                self.unlink(index, value);
                self.len -= 1;
                self.prune(index);
                true
            }
            _ => false,
        }
    }

    fn remove_value(&mut self, value: T) -> usize {
        let Some(mut index) = self.lists.remove(&value) else { return 0 };
        let mut removed = 0;
        while let Some(node) = self.nodes.get_mut(index as usize) {
            let next = node.next;
            (node.value, node.prev, node.next) = (None, NIL, NIL);
            // Pruning frees only nodes without a value, never the rest of this list.
            self.prune(index);
            index = next;
            removed += 1;
        }
        self.len -= removed;
        removed
    }

    /// `value`'s prefixes as sorted `(key, len)` pairs.
    fn prefixes_of(&self, value: T) -> Vec<(K, u8)> {
        let mut prefixes = Vec::new();
        let mut index = self.lists.get(&value).copied().unwrap_or(NIL);
        while let Some(node) = self.nodes.get(index as usize) {
            prefixes.push((node.key, node.len));
            index = node.next;
        }
        prefixes.sort_unstable();
        prefixes
    }

    /// A fresh node without a value or children.
    fn alloc(&mut self, key: K, len: u8, parent: u32) -> u32 {
        let node = Node { key, len, value: None, children: [NIL; 2], parent, prev: NIL, next: NIL };
        if let Some(index) = self.free.pop() {
            self.nodes[index as usize] = node;
            return index;
        }
        // Invariant: a trie has fewer than two nodes per prefix, and four billion prefixes
        // (over 100 GiB) exhaust memory long before the index space.
        let index = u32::try_from(self.nodes.len())
            .ok()
            .filter(|&index| index != NIL)
            .expect("allowed-IPs trie outgrew u32 indices");
        self.nodes.push(node);
        index
    }

    /// Makes `value` the owner of node `index`, returning the previous owner.
    fn assign(&mut self, index: u32, value: T) -> Option<T> {
        let previous = self.nodes[index as usize].value;
        match previous {
            Some(owner) if owner == value => return previous,
            Some(owner) => self.unlink(index, owner),
            None => self.len += 1,
        }
        let next = self.lists.insert(value, index).unwrap_or(NIL);
        if let Some(head) = self.nodes.get_mut(next as usize) {
            head.prev = index;
        }
        let node = &mut self.nodes[index as usize];
        (node.value, node.prev, node.next) = (Some(value), NIL, next);
        previous
    }

    /// Takes node `index` off `owner`'s list and clears its value.
    fn unlink(&mut self, index: u32, owner: T) {
        let node = &mut self.nodes[index as usize];
        let (prev, next) = (node.prev, node.next);
        (node.value, node.prev, node.next) = (None, NIL, NIL);
        match self.nodes.get_mut(prev as usize) {
            Some(prev) => prev.next = next,
            None if next == NIL => {
                self.lists.remove(&owner);
            }
            None => {
                self.lists.insert(owner, next);
            }
        }
        if let Some(next) = self.nodes.get_mut(next as usize) {
            next.prev = prev;
        }
    }

    /// Frees node `index`, which has just lost its value, and any branch node left with a
    /// single child, restoring the rule that a node without a value has two children.
    fn prune(&mut self, mut index: u32) {
        while let Some(node) = self.nodes.get(index as usize) {
            if node.value.is_some() {
                return;
            }
            let parent = node.parent;
            match node.children {
                [NIL, NIL] => {
                    self.replace_child(parent, index, NIL);
                    self.free.push(index);
                    index = parent;
                }
                [NIL, only] | [only, NIL] => {
                    self.replace_child(parent, index, only);
                    self.nodes[only as usize].parent = parent;
                    self.free.push(index);
                    return;
                }
                _ => return,
            }
        }
    }

    fn set_child(&mut self, parent: u32, slot: usize, child: u32) {
        match self.nodes.get_mut(parent as usize) {
            Some(parent) => parent.children[slot] = child,
            None => self.root = child,
        }
    }

    fn replace_child(&mut self, parent: u32, old: u32, new: u32) {
        let slot = match self.nodes.get(parent as usize) {
            Some(node) => usize::from(node.children[1] == old),
            None => 0,
        };
        self.set_child(parent, slot, new);
    }
}

#[cfg(test)]
mod tests;
