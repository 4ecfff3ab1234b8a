//! IP networks written as `address/prefix-length`, the unit of WireGuard's allowed IPs.
//!
//! A [`Cidr`] is always canonical: the host bits below the prefix are zero, so two values that
//! describe the same network are equal, hash alike and print alike. Parsing therefore accepts
//! `10.0.0.1/24` and keeps `10.0.0.0/24`, as `wg` and the kernel do when they store an allowed
//! IP; only text that is not an address, or a prefix length beyond the family's width, is an
//! error. A bare address (`10.0.0.1`, `fd00::1`) is a host route, as in `wg`'s `AllowedIPs`.
//!
//! The order is the one `wg show` output should use: IPv4 before IPv6, then by network
//! address, then shorter prefixes before longer ones.

use core::fmt;
use core::str::FromStr;
use std::net::IpAddr;

/// Why a network was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CidrError {
    /// The part before the `/` is not an IPv4 or IPv6 address.
    InvalidAddress,
    /// The part after the `/` is not a number from 0 to 255 in plain decimal: digits only,
    /// without sign or leading zeros.
    InvalidPrefixLen,
    /// The prefix length is longer than the address (32 bits for IPv4, 128 for IPv6).
    PrefixLenTooLong {
        /// The prefix length that was given.
        prefix_len: u8,
        /// The address family's width in bits.
        max: u8,
    },
}

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidAddress => f.write_str("not an IPv4 or IPv6 address"),
            Self::InvalidPrefixLen => f.write_str("the prefix length is not a decimal number"),
            Self::PrefixLenTooLong { prefix_len, max } => {
                write!(f, "prefix length {prefix_len} is longer than the address ({max} bits)")
            }
        }
    }
}

impl std::error::Error for CidrError {}

/// An IPv4 or IPv6 network: a canonical address (host bits zero) and a prefix length.
///
/// `Ord` sorts IPv4 before IPv6, then by address, then shorter prefixes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix_len: u8,
}

impl Cidr {
    /// The network of `addr` with `prefix_len` leading bits; host bits are cleared.
    ///
    /// # Errors
    ///
    /// [`CidrError::PrefixLenTooLong`] if `prefix_len` exceeds 32 (IPv4) or 128 (IPv6).
    pub fn new(addr: IpAddr, prefix_len: u8) -> Result<Self, CidrError> {
        let max = max_prefix_len(addr);
        if prefix_len > max {
            return Err(CidrError::PrefixLenTooLong { prefix_len, max });
        }
        let addr = match addr {
            IpAddr::V4(a) => IpAddr::V4((u32::from(a) & mask_u32(prefix_len)).into()),
            IpAddr::V6(a) => IpAddr::V6((u128::from(a) & mask_u128(prefix_len)).into()),
        };
        Ok(Self { addr, prefix_len })
    }

    /// The route to the single host `addr`: a `/32` or a `/128`.
    pub fn host(addr: IpAddr) -> Self {
        Self { addr, prefix_len: max_prefix_len(addr) }
    }

    /// A network the caller guarantees canonical: host bits zero and `prefix_len` in range.
    pub(crate) fn from_canonical(addr: IpAddr, prefix_len: u8) -> Self {
        debug_assert_eq!(Self::new(addr, prefix_len), Ok(Self { addr, prefix_len }));
        Self { addr, prefix_len }
    }

    /// The network address: the first address of the network.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The number of leading bits that identify the network.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Whether this is an IPv4 network.
    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// Whether this is an IPv6 network.
    pub fn is_ipv6(&self) -> bool {
        self.addr.is_ipv6()
    }

    /// Whether this network is a single host (`/32` or `/128`).
    pub fn is_host(&self) -> bool {
        self.prefix_len == max_prefix_len(self.addr)
    }

    /// Whether `addr` lies in this network; always false across address families.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let common_bits = match (self.addr, addr) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => (u32::from(net) ^ u32::from(ip)).leading_zeros(),
            (IpAddr::V6(net), IpAddr::V6(ip)) => (u128::from(net) ^ u128::from(ip)).leading_zeros(),
            _ => return false,
        };
        common_bits >= u32::from(self.prefix_len)
    }

    /// Whether every address of `other` lies in this network (a network contains itself).
    pub fn contains_net(&self, other: &Self) -> bool {
        self.prefix_len <= other.prefix_len && self.contains(other.addr)
    }

    /// Whether the two networks share any address: one of them contains the other.
    pub fn overlaps(&self, other: &Self) -> bool {
        self.contains_net(other) || other.contains_net(self)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// Parses `address/prefix-length` or a bare address (a host route), canonicalizing.
    fn from_str(text: &str) -> Result<Self, CidrError> {
        let (addr, prefix_len) = parse_parts(text)?;
        Self::new(addr, prefix_len)
    }
}

/// Splits `address/prefix-length`, or a bare address (the full length), into its parts,
/// keeping any host bits: the one grammar of prefixes, for [`Cidr`] and for interface
/// addresses such as `10.0.0.4/16`.
///
/// # Errors
/// [`CidrError`] when the address or the length does not parse, or the length is longer than
/// the address.
pub fn parse_parts(text: &str) -> Result<(IpAddr, u8), CidrError> {
    let (addr, prefix_len) = match text.split_once('/') {
        Some((addr, len)) => (addr, Some(len)),
        None => (text, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| CidrError::InvalidAddress)?;
    let max = max_prefix_len(addr);
    match prefix_len.map(parse_prefix_len).transpose()? {
        Some(prefix_len) if prefix_len > max => {
            Err(CidrError::PrefixLenTooLong { prefix_len, max })
        }
        Some(prefix_len) => Ok((addr, prefix_len)),
        None => Ok((addr, max)),
    }
}

/// A decimal `u8` written the plain way: digits only, no sign, no leading zeros.
fn parse_prefix_len(text: &str) -> Result<u8, CidrError> {
    let plain = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if !plain {
        return Err(CidrError::InvalidPrefixLen);
    }
    text.parse().map_err(|_| CidrError::InvalidPrefixLen)
}

fn max_prefix_len(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// The netmask of a `prefix_len`-bit IPv4 prefix; `prefix_len` is at most 32.
pub(crate) fn mask_u32(prefix_len: u8) -> u32 {
    u32::MAX.checked_shl(32u32.saturating_sub(prefix_len.into())).unwrap_or(0)
}

/// The netmask of a `prefix_len`-bit IPv6 prefix; `prefix_len` is at most 128.
pub(crate) fn mask_u128(prefix_len: u8) -> u128 {
    u128::MAX.checked_shl(128u32.saturating_sub(prefix_len.into())).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap()
    }

    #[test]
    fn parsing_canonicalizes_host_bits() {
        assert_eq!(cidr("10.0.0.1/24").to_string(), "10.0.0.0/24");
        assert_eq!(cidr("192.95.5.65/27").to_string(), "192.95.5.64/27");
        assert_eq!(cidr("fd00::1:2/64").to_string(), "fd00::/64");
        assert_eq!(
            cidr("2607:5300:6d8a:6bf8:dab1:f1df:c05f:1523/21").to_string(),
            "2607:5000::/21"
        );
        assert_eq!(cidr("255.255.255.255/0").to_string(), "0.0.0.0/0");
        assert_eq!(cidr("ffff::ffff/0").to_string(), "::/0");
        assert_eq!(cidr("10.0.0.1/24"), cidr("10.0.0.0/24"));
    }

    #[test]
    fn a_bare_address_is_a_host_route() {
        assert_eq!(cidr("10.0.0.1"), cidr("10.0.0.1/32"));
        assert_eq!(cidr("fd00::1"), cidr("fd00::1/128"));
        assert!(cidr("fd00::1").is_host());
        assert!(!cidr("fd00::1/127").is_host());
        assert_eq!(Cidr::host("10.1.2.3".parse().unwrap()), cidr("10.1.2.3/32"));
    }

    #[test]
    fn parsing_rejects_malformed_text() {
        for (text, error) in [
            ("", CidrError::InvalidAddress),
            ("10.0.0/8", CidrError::InvalidAddress),
            ("010.0.0.0/8", CidrError::InvalidAddress),
            ("fe80::1%eth0/64", CidrError::InvalidAddress),
            (" 10.0.0.0/8", CidrError::InvalidAddress),
            ("10.0.0.0/", CidrError::InvalidPrefixLen),
            ("10.0.0.0/+8", CidrError::InvalidPrefixLen),
            ("10.0.0.0/08", CidrError::InvalidPrefixLen),
            ("10.0.0.0/-1", CidrError::InvalidPrefixLen),
            ("10.0.0.0/8/8", CidrError::InvalidPrefixLen),
            ("10.0.0.0/256", CidrError::InvalidPrefixLen),
            ("10.0.0.0/33", CidrError::PrefixLenTooLong { prefix_len: 33, max: 32 }),
            ("::/129", CidrError::PrefixLenTooLong { prefix_len: 129, max: 128 }),
        ] {
            assert_eq!(text.parse::<Cidr>(), Err(error), "{text:?}");
        }
        assert_eq!(cidr("10.0.0.0/0").prefix_len(), 0);
    }

    #[test]
    fn new_validates_and_masks() {
        let addr: IpAddr = "192.168.4.4".parse().unwrap();
        assert_eq!(Cidr::new(addr, 24), Ok(cidr("192.168.4.0/24")));
        assert_eq!(
            Cidr::new(addr, 33),
            Err(CidrError::PrefixLenTooLong { prefix_len: 33, max: 32 })
        );
        assert_eq!(Cidr::new(addr, 0).unwrap().addr(), "0.0.0.0".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn containment_respects_prefix_and_family() {
        let net = cidr("192.168.0.0/16");
        assert!(net.contains("192.168.255.1".parse().unwrap()));
        assert!(!net.contains("192.169.0.1".parse().unwrap()));
        assert!(!net.contains("::ffff:192.168.0.1".parse().unwrap()));
        assert!(cidr("0.0.0.0/0").contains("1.2.3.4".parse().unwrap()));
        assert!(!cidr("0.0.0.0/0").contains("::".parse().unwrap()));
        assert!(cidr("::/0").contains("2001:db8::1".parse().unwrap()));
        assert!(cidr("fd00::/64").contains("fd00::ffff:1".parse().unwrap()));
        assert!(!cidr("fd00::/64").contains("fd00:0:0:1::1".parse().unwrap()));

        assert!(net.contains_net(&cidr("192.168.4.0/24")));
        assert!(net.contains_net(&net));
        assert!(!cidr("192.168.4.0/24").contains_net(&net));
        assert!(!net.contains_net(&cidr("::/0")));

        assert!(net.overlaps(&cidr("192.168.4.4/32")));
        assert!(cidr("192.168.4.4/32").overlaps(&net));
        assert!(!net.overlaps(&cidr("192.169.0.0/16")));
        assert!(!cidr("0.0.0.0/0").overlaps(&cidr("::/0")));
    }

    #[test]
    fn order_is_family_then_address_then_length() {
        let mut nets: Vec<Cidr> =
            ["fd00::/64", "10.1.0.0/16", "10.0.0.0/24", "::/0", "10.0.0.0/8", "9.0.0.0/32"]
                .iter()
                .map(|text| cidr(text))
                .collect();
        nets.sort();
        let printed: Vec<String> = nets.iter().map(Cidr::to_string).collect();
        assert_eq!(
            printed,
            ["9.0.0.0/32", "10.0.0.0/8", "10.0.0.0/24", "10.1.0.0/16", "::/0", "fd00::/64"]
        );
    }

    #[test]
    fn accessors_report_family() {
        assert!(cidr("10.0.0.0/8").is_ipv4() && !cidr("10.0.0.0/8").is_ipv6());
        assert!(cidr("::/0").is_ipv6() && !cidr("::/0").is_ipv4());
    }
}
