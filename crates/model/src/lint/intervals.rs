//! Nesting among prefixes: sort, then sweep with a stack of the prefixes that are still open.
//! Prefixes never partially overlap, so once the prefixes that no longer cover the next one
//! are popped, every prefix left on the stack contains it. The stack holds at most one prefix
//! per length (plus duplicates), so the work is O(n log n) plus the pairs reported.

use crate::cidr::Cidr;

/// Every pair `(container, contained)` of prefixes where `contained` lies inside (or equals)
/// `container`, which sorts first: all containers, not only the innermost, so a rule sees
/// every collision at once. Items with equal prefixes keep their input order.
pub(super) fn nested<T>(mut items: Vec<(Cidr, T)>) -> Vec<((Cidr, T), (Cidr, T))>
where
    T: Clone,
{
    items.sort_by_key(|item| item.0);
    let mut open: Vec<(Cidr, T)> = Vec::new();
    let mut pairs = Vec::new();
    for item in items {
        while open.last().is_some_and(|(top, _)| !top.contains_net(&item.0)) {
            open.pop();
        }
        pairs.extend(open.iter().map(|outer| (outer.clone(), item.clone())));
        open.push(item);
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sweep finds exactly the nested pairs that comparing every pair finds.
    #[test]
    fn agrees_with_all_pairs() {
        let mut seed = 7u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            seed >> 33
        };
        for _ in 0..50 {
            let items: Vec<(Cidr, usize)> = (0..40)
                .map(|i| {
                    let addr =
                        std::net::Ipv4Addr::from(((next() as u32) & 0x0fff_0000) | 0x0a00_0000);
                    (Cidr::new(addr.into(), 8 + (next() % 17) as u8).unwrap(), i)
                })
                .collect();
            let swept: std::collections::BTreeSet<(usize, usize)> = nested(items.clone())
                .into_iter()
                .map(|((_, outer), (_, inner))| (outer, inner))
                .collect();
            let naive: std::collections::BTreeSet<(usize, usize)> = items
                .iter()
                .flat_map(|(c, i)| {
                    items
                        .iter()
                        .filter(move |(o, j)| i != j && o.contains_net(c) && (o != c || j < i))
                        .map(move |(_, j)| (*j, *i))
                })
                .collect();
            assert_eq!(swept, naive);
        }
    }
}
