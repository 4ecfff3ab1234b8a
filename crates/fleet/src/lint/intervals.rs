//! Nesting among prefixes in O(n log n): sort, then sweep with a stack of the prefixes that
//! are still open. Prefixes never partially overlap, so the stack top, if it still covers a
//! prefix, is the innermost prefix containing it.

use crate::cidr::Cidr;

/// For every prefix that lies inside (or equals) an earlier-sorted one, the pair
/// `(container, contained)`, the container being the innermost one. Items with equal
/// prefixes keep their input order.
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
        if let Some(top) = open.last() {
            pairs.push((top.clone(), item.clone()));
        }
        open.push(item);
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sweep agrees with comparing every pair on which prefixes are nested in another.
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
            let swept: std::collections::BTreeSet<usize> =
                nested(items.clone()).into_iter().map(|(_, (_, inner))| inner).collect();
            let naive: std::collections::BTreeSet<usize> = items
                .iter()
                .filter(|(c, i)| {
                    items.iter().any(|(o, j)| i != j && o.contains_net(c) && (o != c || j < i))
                })
                .map(|(_, i)| *i)
                .collect();
            assert_eq!(swept, naive);
        }
    }
}
