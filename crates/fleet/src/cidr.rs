//! IP prefixes: overlay networks, routed subnets and AllowedIPs ([`Cidr`]), and interface
//! addresses ([`IfAddr`]).
//!
//! A `Cidr` is canonical (no host bits set), so two equal prefixes are equal values and a
//! sorted list of them is a sorted list of address ranges: the lint rules rely on that to find
//! overlaps with one sort instead of comparing every pair.

use core::fmt;
use core::str::FromStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a prefix or address was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CidrError {
    /// Not of the form `ADDRESS/LENGTH`.
    #[error("`{0}` is not an IP prefix such as 10.0.0.0/16 or fd00::/64")]
    Syntax(String),
    /// The length is longer than the address.
    #[error("prefix length /{prefix} is longer than the address (at most /{max})")]
    Length {
        /// The length given.
        prefix: u8,
        /// 32 or 128.
        max: u8,
    },
    /// Bits are set after the prefix length.
    #[error("`{given}` has host bits set; did you mean {canonical}?")]
    HostBits {
        /// The text given.
        given: String,
        /// The prefix with the host bits cleared.
        canonical: Cidr,
    },
}

/// An IPv4 or IPv6 prefix with its host bits cleared, such as `10.77.0.0/16`.
///
/// Ordered by family (IPv4 first), then start address, then length, so that sorting yields
/// ranges in address order with an enclosing prefix before the prefixes inside it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

const fn max_prefix(addr: &IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn to_bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_bits(v4: bool, bits: u128) -> IpAddr {
    if v4 {
        // Callers only pass values that fit: they come from a 32-bit range.
        IpAddr::V4(Ipv4Addr::from(bits as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(bits))
    }
}

/// The mask of the host bits of a prefix of `prefix` bits in an address of `max` bits.
fn host_mask(prefix: u8, max: u8) -> u128 {
    let host_bits = u32::from(max - prefix);
    if host_bits == 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    }
}

impl Cidr {
    /// A prefix, refusing host bits after `prefix`.
    ///
    /// # Errors
    /// [`CidrError::Length`] or [`CidrError::HostBits`].
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, CidrError> {
        let truncated = Self::new_truncating(addr, prefix)?;
        if truncated.addr == addr {
            Ok(truncated)
        } else {
            Err(CidrError::HostBits { given: format!("{addr}/{prefix}"), canonical: truncated })
        }
    }

    /// A prefix, clearing any host bits after `prefix` (what the kernel does with AllowedIPs).
    ///
    /// # Errors
    /// [`CidrError::Length`] if `prefix` is longer than the address.
    pub fn new_truncating(addr: IpAddr, prefix: u8) -> Result<Self, CidrError> {
        let max = max_prefix(&addr);
        if prefix > max {
            return Err(CidrError::Length { prefix, max });
        }
        let bits = to_bits(addr) & !host_mask(prefix, max);
        Ok(Self { addr: from_bits(addr.is_ipv4(), bits), prefix })
    }

    /// The single-address prefix of `addr` (`/32` or `/128`).
    pub const fn host(addr: IpAddr) -> Self {
        Self { prefix: max_prefix(&addr), addr }
    }

    /// The default route of a family: `0.0.0.0/0` or `::/0`.
    pub const fn default_route(v4: bool) -> Self {
        if v4 {
            Self { addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED), prefix: 0 }
        } else {
            Self { addr: IpAddr::V6(Ipv6Addr::UNSPECIFIED), prefix: 0 }
        }
    }

    /// The first address.
    pub const fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub const fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether this is an IPv4 prefix.
    pub const fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// Whether this prefix covers a whole family (`/0`).
    pub const fn is_default_route(&self) -> bool {
        self.prefix == 0
    }

    /// The first and last address as integers (IPv4 in the low 32 bits). Only comparable
    /// between prefixes of the same family.
    pub fn range(&self) -> (u128, u128) {
        let start = to_bits(self.addr);
        (start, start | host_mask(self.prefix, max_prefix(&self.addr)))
    }

    /// Whether `other` lies entirely inside this prefix (a prefix contains itself).
    pub fn contains(&self, other: &Self) -> bool {
        self.is_ipv4() == other.is_ipv4() && self.prefix <= other.prefix && {
            let (start, end) = self.range();
            let (other_start, _) = other.range();
            start <= other_start && other_start <= end
        }
    }

    /// Whether the address lies inside this prefix.
    pub fn contains_addr(&self, addr: IpAddr) -> bool {
        self.contains(&Self::host(addr))
    }

    /// Whether the two prefixes share an address. Prefixes are either nested or disjoint, so
    /// this is containment one way or the other.
    pub fn overlaps(&self, other: &Self) -> bool {
        self.contains(other) || other.contains(self)
    }

    /// The address `index` positions after the first one, if it is inside the prefix.
    pub fn nth(&self, index: u128) -> Option<IpAddr> {
        let (start, end) = self.range();
        let bits = start.checked_add(index).filter(|bits| *bits <= end)?;
        Some(from_bits(self.is_ipv4(), bits))
    }

    /// The position of `addr` inside the prefix (the inverse of [`Cidr::nth`]).
    pub fn index_of(&self, addr: IpAddr) -> Option<u128> {
        self.contains_addr(addr).then(|| to_bits(addr) - self.range().0)
    }

    /// The number of addresses, saturating at `u128::MAX` for `::/0`.
    pub fn size(&self) -> u128 {
        let (start, end) = self.range();
        (end - start).saturating_add(1)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl fmt::Debug for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Splits `ADDRESS[/LENGTH]`; a missing length means a single address.
fn split_prefix(text: &str) -> Result<(IpAddr, u8), CidrError> {
    let syntax = || CidrError::Syntax(text.to_owned());
    let (addr, prefix) = match text.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (text, None),
    };
    let addr: IpAddr = addr.trim().parse().map_err(|_| syntax())?;
    let prefix = match prefix {
        Some(prefix) => prefix.trim().parse().map_err(|_| syntax())?,
        None => max_prefix(&addr),
    };
    Ok((addr, prefix))
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// Parses `10.0.0.0/16`, `fd00::/64`, or a bare address as a single-address prefix.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = split_prefix(text)?;
        Self::new(addr, prefix)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// An address assigned to an interface together with the length of its on-link prefix, such
/// as `10.77.0.4/16` (host bits are the point here).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IfAddr {
    /// The address.
    pub addr: IpAddr,
    /// The on-link prefix length.
    pub prefix: u8,
}

impl IfAddr {
    /// The address with the prefix of the network it belongs to.
    pub const fn in_network(addr: IpAddr, network: &Cidr) -> Self {
        Self { addr, prefix: network.prefix }
    }
}

impl fmt::Display for IfAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl fmt::Debug for IfAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for IfAddr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = split_prefix(text)?;
        let max = max_prefix(&addr);
        if prefix > max {
            return Err(CidrError::Length { prefix, max });
        }
        Ok(Self { addr, prefix })
    }
}

impl Serialize for IfAddr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IfAddr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap()
    }

    #[test]
    fn parses_and_prints_canonical_prefixes() {
        assert_eq!(cidr("10.77.0.0/16").to_string(), "10.77.0.0/16");
        assert_eq!(cidr("fd77:0::/64").to_string(), "fd77::/64");
        assert_eq!(cidr("10.0.0.1").to_string(), "10.0.0.1/32");
        assert_eq!(cidr("::/0"), Cidr::default_route(false));
    }

    #[test]
    fn rejects_host_bits_with_a_suggestion() {
        let err = "10.77.0.1/16".parse::<Cidr>().unwrap_err();
        assert_eq!(err.to_string(), "`10.77.0.1/16` has host bits set; did you mean 10.77.0.0/16?");
        assert!(matches!("10.0.0.0/33".parse::<Cidr>(), Err(CidrError::Length { max: 32, .. })));
        assert!(matches!("10.0.0/8".parse::<Cidr>(), Err(CidrError::Syntax(_))));
        let truncated = Cidr::new_truncating("10.77.3.4".parse().unwrap(), 16).unwrap();
        assert_eq!(truncated, cidr("10.77.0.0/16"));
    }

    #[test]
    fn containment_is_per_family() {
        assert!(cidr("10.0.0.0/8").contains(&cidr("10.1.0.0/16")));
        assert!(!cidr("10.1.0.0/16").contains(&cidr("10.0.0.0/8")));
        assert!(cidr("10.1.0.0/16").overlaps(&cidr("10.0.0.0/8")));
        assert!(!cidr("10.1.0.0/16").overlaps(&cidr("10.2.0.0/16")));
        assert!(!cidr("0.0.0.0/0").contains(&cidr("::/128")));
        assert!(cidr("::/0").contains(&cidr("fd00::/8")));
    }

    #[test]
    fn nth_and_index_are_inverse() {
        let net = cidr("fd77::/64");
        let addr = net.nth(5).unwrap();
        assert_eq!(addr.to_string(), "fd77::5");
        assert_eq!(net.index_of(addr), Some(5));
        assert_eq!(cidr("10.0.0.0/30").nth(4), None);
        assert_eq!(cidr("10.0.0.0/30").size(), 4);
        assert_eq!(cidr("::/0").size(), u128::MAX);
    }

    #[test]
    fn interface_addresses_keep_host_bits() {
        let addr: IfAddr = "10.77.0.4/16".parse().unwrap();
        assert_eq!(addr.to_string(), "10.77.0.4/16");
        assert_eq!("fd77::4".parse::<IfAddr>().unwrap().prefix, 128);
    }
}
