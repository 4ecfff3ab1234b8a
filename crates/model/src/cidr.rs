//! IP prefixes as the controller reads and writes them ([`Cidr`]), and interface addresses
//! ([`IfAddr`]).
//!
//! [`Cidr`] is the protocol's [`wgfabric_proto::Cidr`] (canonical, ordered, with containment)
//! plus what only the controller needs: text that refuses host bits, because in an inventory
//! `10.77.0.1/16` is more likely a typo than a network; serde as that text; and the address
//! arithmetic that assigns overlay addresses. A canonical prefix makes a sorted list of
//! prefixes a sorted list of address ranges: the lint rules rely on that to find overlaps with
//! one sort instead of comparing every pair.

use core::fmt::{self, Write as _};
use core::str::FromStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use wgfabric_proto::cidr::CidrError as ProtoCidrError;

use crate::serde_text::serde_as_text;

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
/// Ordered as [`wgfabric_proto::Cidr`]: by family (IPv4 first), then start address, then
/// length, so that sorting yields ranges in address order with an enclosing prefix before the
/// prefixes inside it. Text is `ADDRESS/LENGTH` or a bare address; parsing refuses host bits
/// (use [`Cidr::parse_truncating`] for text where the kernel would clear them).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr(wgfabric_proto::Cidr);

impl Cidr {
    /// The prefix of `addr` with `prefix_len` leading bits, clearing the host bits after them
    /// (what the kernel does with AllowedIPs).
    ///
    /// # Errors
    /// [`CidrError::Length`] if `prefix_len` is longer than the address.
    pub fn new(addr: IpAddr, prefix_len: u8) -> Result<Self, CidrError> {
        wgfabric_proto::Cidr::new(addr, prefix_len)
            .map(Self)
            .map_err(|_| CidrError::Length { prefix: prefix_len, max: max_prefix_len(addr) })
    }

    /// Parses `ADDRESS/LENGTH` or a bare address, clearing host bits: for configuration that
    /// the kernel reads, such as wg-quick's `AllowedIPs`.
    ///
    /// # Errors
    /// [`CidrError::Syntax`] or [`CidrError::Length`].
    pub fn parse_truncating(text: &str) -> Result<Self, CidrError> {
        let (addr, prefix_len) = split_prefix(text)?;
        Self::new(addr, prefix_len)
    }

    /// The single-address prefix of `addr` (`/32` or `/128`).
    pub fn host(addr: IpAddr) -> Self {
        Self(wgfabric_proto::Cidr::host(addr))
    }

    /// The default route of a family: `0.0.0.0/0` or `::/0`.
    pub fn default_route(v4: bool) -> Self {
        let any =
            if v4 { IpAddr::V4(Ipv4Addr::UNSPECIFIED) } else { IpAddr::V6(Ipv6Addr::UNSPECIFIED) };
        Self::new(any, 0).expect("a /0 prefix fits every address")
    }

    /// The first address.
    pub fn addr(&self) -> IpAddr {
        self.0.addr()
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.0.prefix_len()
    }

    /// Whether this is an IPv4 prefix.
    pub fn is_ipv4(&self) -> bool {
        self.0.is_ipv4()
    }

    /// Whether this prefix is a single address (`/32` or `/128`).
    pub fn is_host(&self) -> bool {
        self.0.is_host()
    }

    /// Whether this prefix covers a whole family (`/0`).
    pub fn is_default_route(&self) -> bool {
        self.prefix_len() == 0
    }

    /// Whether the address lies inside this prefix; always false across families.
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.0.contains(addr)
    }

    /// Whether `other` lies entirely inside this prefix (a prefix contains itself).
    pub fn contains_net(&self, other: &Self) -> bool {
        self.0.contains_net(&other.0)
    }

    /// Whether the two prefixes share an address: one contains the other.
    pub fn overlaps(&self, other: &Self) -> bool {
        self.0.overlaps(&other.0)
    }

    /// The special-use range this prefix overlaps, if any, in words: what makes it wrong as an
    /// overlay or a routed subnet (a default route, loopback, link-local, multicast, reserved,
    /// unspecified or IPv4-mapped addresses).
    pub fn special_use(&self) -> Option<&'static str> {
        if self.is_default_route() {
            return Some("is a default route (every address)");
        }
        const RANGES: [(&str, &str); 10] = [
            ("0.0.0.0/8", "overlaps 0.0.0.0/8, the unspecified range"),
            ("127.0.0.0/8", "overlaps 127.0.0.0/8, the loopback range"),
            ("169.254.0.0/16", "overlaps 169.254.0.0/16, the link-local range"),
            ("224.0.0.0/4", "overlaps 224.0.0.0/4, the multicast range"),
            ("240.0.0.0/4", "overlaps 240.0.0.0/4, the reserved range with the broadcast address"),
            ("::/128", "overlaps ::, the unspecified address"),
            ("::1/128", "overlaps ::1, the loopback address"),
            ("::ffff:0:0/96", "overlaps ::ffff:0:0/96, the IPv4-mapped range"),
            ("fe80::/10", "overlaps fe80::/10, the link-local range"),
            ("ff00::/8", "overlaps ff00::/8, the multicast range"),
        ];
        RANGES.iter().find_map(|(range, why)| {
            let range: Self = range.parse().expect("a valid special-use range");
            self.overlaps(&range).then_some(*why)
        })
    }

    /// The address `index` positions after the first one, if it is inside the prefix.
    pub fn nth(&self, index: u128) -> Option<IpAddr> {
        // The start is canonical, so adding at most the host mask cannot carry out of the prefix.
        let bits = (index <= self.host_mask()).then(|| to_bits(self.addr()) + index)?;
        Some(match self.addr() {
            // The sum lies inside an IPv4 prefix, so it fits 32 bits.
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(bits as u32)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(bits)),
        })
    }

    /// The position of `addr` inside the prefix (the inverse of [`Cidr::nth`]).
    pub fn index_of(&self, addr: IpAddr) -> Option<u128> {
        self.contains(addr).then(|| to_bits(addr) - to_bits(self.addr()))
    }

    /// The number of addresses, saturating at `u128::MAX` for `::/0`.
    pub fn size(&self) -> u128 {
        self.host_mask().saturating_add(1)
    }

    /// The host bits of this prefix, set: the last address's offset from the first.
    fn host_mask(&self) -> u128 {
        let host_bits = u32::from(max_prefix_len(self.addr()) - self.prefix_len());
        u128::MAX.checked_shr(128 - host_bits).unwrap_or(0)
    }
}

impl From<wgfabric_proto::Cidr> for Cidr {
    fn from(cidr: wgfabric_proto::Cidr) -> Self {
        Self(cidr)
    }
}

impl From<Cidr> for wgfabric_proto::Cidr {
    fn from(cidr: Cidr) -> Self {
        cidr.0
    }
}

const fn max_prefix_len(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// The address as an integer, IPv4 in the low 32 bits.
fn to_bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

impl fmt::Display for Cidr {
    /// The same text as the address's own `Display` and the length, but IPv4 is written
    /// without a formatter call per octet: rendering a large fabric writes each subnet
    /// router's prefix into every spoke's files, millions of prefixes in all.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr() {
            IpAddr::V4(addr) => {
                let [a, b, c, d] = addr.octets();
                for (number, separator) in [(a, "."), (b, "."), (c, "."), (d, "/")] {
                    write_decimal(f, number)?;
                    f.write_str(separator)?;
                }
                write_decimal(f, self.prefix_len())
            }
            IpAddr::V6(_) => fmt::Display::fmt(&self.0, f),
        }
    }
}

/// `number` in decimal, without leading zeros.
fn write_decimal(f: &mut fmt::Formatter<'_>, number: u8) -> fmt::Result {
    if number >= 100 {
        f.write_char(char::from(b'0' + number / 100))?;
    }
    if number >= 10 {
        f.write_char(char::from(b'0' + number / 10 % 10))?;
    }
    f.write_char(char::from(b'0' + number % 10))
}

impl fmt::Debug for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Splits `ADDRESS[/LENGTH]` (a missing length means a single address) with the protocol
/// core's grammar, which takes the length in plain decimal only; surrounding whitespace is
/// ignored.
fn split_prefix(text: &str) -> Result<(IpAddr, u8), CidrError> {
    wgfabric_proto::cidr::parse_parts(text.trim()).map_err(|error| match error {
        ProtoCidrError::PrefixLenTooLong { prefix_len, max } => {
            CidrError::Length { prefix: prefix_len, max }
        }
        _ => CidrError::Syntax(text.to_owned()),
    })
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// Parses `10.0.0.0/16`, `fd00::/64`, or a bare address as a single-address prefix,
    /// refusing host bits after the length.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (addr, prefix_len) = split_prefix(text)?;
        let cidr = Self::new(addr, prefix_len)?;
        if cidr.addr() == addr {
            Ok(cidr)
        } else {
            Err(CidrError::HostBits { given: format!("{addr}/{prefix_len}"), canonical: cidr })
        }
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
    pub fn in_network(addr: IpAddr, network: &Cidr) -> Self {
        Self { addr, prefix: network.prefix_len() }
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
        Ok(Self { addr, prefix })
    }
}

serde_as_text!(Cidr, IfAddr);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_text_is_the_standard_text() {
        for octet in 0..=255u8 {
            let addr = Ipv4Addr::new(octet, 255 - octet, octet / 7, 10);
            for prefix_len in [0, 9, 10, 32] {
                let cidr = Cidr::new(IpAddr::V4(addr), prefix_len).unwrap();
                assert_eq!(cidr.to_string(), format!("{}/{prefix_len}", cidr.addr()));
            }
        }
    }

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap()
    }

    #[test]
    fn parses_and_prints_canonical_prefixes() {
        assert_eq!(cidr("10.77.0.0/16").to_string(), "10.77.0.0/16");
        assert_eq!(cidr("fd77:0::/64").to_string(), "fd77::/64");
        assert_eq!(cidr("10.0.0.1").to_string(), "10.0.0.1/32");
        assert_eq!(cidr("::/0"), Cidr::default_route(false));
        assert_eq!(format!("{:?}", cidr("10.0.0.0/8")), "10.0.0.0/8");
    }

    #[test]
    fn rejects_host_bits_with_a_suggestion() {
        let err = "10.77.0.1/16".parse::<Cidr>().unwrap_err();
        assert_eq!(err.to_string(), "`10.77.0.1/16` has host bits set; did you mean 10.77.0.0/16?");
        assert!(matches!("10.0.0.0/33".parse::<Cidr>(), Err(CidrError::Length { max: 32, .. })));
        assert!(matches!("10.0.0/8".parse::<Cidr>(), Err(CidrError::Syntax(_))));
        for odd in ["10.0.0.0/024", "10.0.0.0/+24", "10.0.0.0/ 24", "10.0.0.0/", "fd00::/064"] {
            assert!(matches!(odd.parse::<Cidr>(), Err(CidrError::Syntax(_))), "{odd}");
            assert!(odd.parse::<IfAddr>().is_err(), "{odd}");
        }
        let truncated = Cidr::new("10.77.3.4".parse().unwrap(), 16).unwrap();
        assert_eq!(truncated, cidr("10.77.0.0/16"));
    }

    #[test]
    fn truncating_parse_clears_host_bits() {
        assert_eq!(Cidr::parse_truncating("10.77.3.4/16"), Ok(cidr("10.77.0.0/16")));
        assert_eq!(Cidr::parse_truncating(" fd00::1 "), Ok(cidr("fd00::1/128")));
        assert!(matches!(
            Cidr::parse_truncating("::/129"),
            Err(CidrError::Length { max: 128, .. })
        ));
        assert!(matches!(Cidr::parse_truncating("10.0.0.0/x"), Err(CidrError::Syntax(_))));
    }

    #[test]
    fn containment_is_per_family() {
        assert!(cidr("10.0.0.0/8").contains_net(&cidr("10.1.0.0/16")));
        assert!(!cidr("10.1.0.0/16").contains_net(&cidr("10.0.0.0/8")));
        assert!(cidr("10.1.0.0/16").overlaps(&cidr("10.0.0.0/8")));
        assert!(!cidr("10.1.0.0/16").overlaps(&cidr("10.2.0.0/16")));
        assert!(!cidr("0.0.0.0/0").contains_net(&cidr("::/128")));
        assert!(cidr("::/0").contains_net(&cidr("fd00::/8")));
        assert!(cidr("10.0.0.0/8").contains("10.9.9.9".parse().unwrap()));
    }

    #[test]
    fn nth_and_index_are_inverse() {
        let net = cidr("fd77::/64");
        let addr = net.nth(5).unwrap();
        assert_eq!(addr.to_string(), "fd77::5");
        assert_eq!(net.index_of(addr), Some(5));
        assert_eq!(cidr("10.0.0.0/30").nth(3).unwrap().to_string(), "10.0.0.3");
        assert_eq!(cidr("10.0.0.0/30").nth(4), None);
        assert_eq!(cidr("10.0.0.0/30").size(), 4);
        assert_eq!(cidr("10.0.0.1/32").size(), 1);
        assert_eq!(cidr("::/0").size(), u128::MAX);
        assert_eq!(
            cidr("::/0").nth(u128::MAX).unwrap().to_string(),
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        );
    }

    #[test]
    fn interface_addresses_keep_host_bits() {
        let addr: IfAddr = "10.77.0.4/16".parse().unwrap();
        assert_eq!(addr.to_string(), "10.77.0.4/16");
        assert_eq!("fd77::4".parse::<IfAddr>().unwrap().prefix, 128);
    }
}
