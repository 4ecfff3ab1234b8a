//! The userspace API's text format (`get=1` / `set=1`), parsed and printed without I/O.
//!
//! This is the line protocol that `wg(8)` speaks over `/var/run/wireguard/IFNAME.sock` to
//! wireguard-go, boringtun and `wgfabricd`:
//!
//! ```text
//! client                                   server
//! set=1\n  key=value\n ... \n        ──►   errno=0\n\n            (set/parse_set, format_status)
//! get=1\n\n                          ──►   key=value\n ... errno=0\n\n   (format_get/parse_get)
//! ```
//!
//! Keys are hex on the wire. Numbers are unsigned decimal digits only (no sign, no spaces), and
//! booleans are the literal `true`, as wireguard-go accepts them. An `allowed_ip` is read into a
//! [`Cidr`] with its host bits cleared, as the kernel stores it.
//!
//! A `set` is parsed whole before anything is applied: [`parse_set`] either returns the complete
//! [`SetRequest`] or the first error, so a server that applies only `Ok` requests changes nothing
//! on bad input. The errno values follow wireguard-go: a line without `=` is
//! [`EPROTO`]; an unknown or misplaced key and a bad value are [`EINVAL`]. On the wire the status
//! is written negated (`errno=-22`), as wireguard-go does and as `wg set` expects to report the
//! right message; [`parse_get`] and [`parse_status`] accept either sign (boringtun writes it
//! positive). Error messages carry the line number and never a key's value.
//!
//! Framing (reading a request up to its blank line) and applying a request belong to the server;
//! see [`SetRequest`] for the order in which a server applies the changes.

use core::fmt;
use core::fmt::Write as _;
use core::str::FromStr;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::cidr::Cidr;

mod get;
mod set;

pub use get::{
    format_get, parse_get, write_get_device, write_get_peer, DeviceSnapshot, PeerSnapshot,
};
pub use set::{
    format_set, parse_set, parse_set_resolving_scopes, AllowedIpChange, PeerUpdate,
    PrivateKeyUpdate, SetParser, SetRequest,
};

/// Where `wg(8)` and the userspace implementations keep their API sockets, one
/// `IFNAME.sock` per interface.
pub const SOCKET_DIR: &str = "/var/run/wireguard";

/// The first line of a set request; the body follows, then a blank line.
pub const SET_REQUEST: &str = "set=1\n";
/// A complete get request.
pub const GET_REQUEST: &str = "get=1\n\n";

/// Linux `EIO`: reading or writing the socket failed.
pub const EIO: i32 = 5;
/// Linux `EINVAL`: an unknown or misplaced key, or a value that does not parse.
pub const EINVAL: i32 = 22;
/// Linux `EPROTO`: a line that is not `key=value`, or an answer that breaks the protocol.
pub const EPROTO: i32 = 71;
/// Linux `EADDRINUSE`: the listen port (or fwmark) could not be applied to the socket.
pub const EADDRINUSE: i32 = 98;

/// Why a request or an answer was refused: the errno to answer with and a message for humans.
///
/// The message names the line and the key but never echoes a key's value, so it is safe to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UapiError {
    errno: i32,
    line: Option<usize>,
    message: String,
}

impl UapiError {
    /// An error not tied to a line, such as a listen port that is in use.
    ///
    /// `errno` is the positive Linux value (for example [`EADDRINUSE`]).
    pub fn new(errno: i32, message: impl Into<String>) -> Self {
        Self { errno, line: None, message: message.into() }
    }

    fn at(line: usize, errno: i32, message: impl Into<String>) -> Self {
        Self { errno, line: Some(line), message: message.into() }
    }

    /// The positive errno value.
    pub fn errno(&self) -> i32 {
        self.errno
    }

    /// The 1-based line of the request body (the line after `set=1` is line 1), if any.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// The human-readable reason, without the line number.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for UapiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        write!(f, "{} (errno {})", self.message, self.errno)
    }
}

impl std::error::Error for UapiError {}

/// The status that ends every answer: `errno=0` and a blank line on success, otherwise the
/// negated errno as wireguard-go writes it.
pub fn format_status(error: Option<&UapiError>) -> String {
    match error {
        None => "errno=0\n\n".to_owned(),
        Some(error) => format!("errno=-{}\n\n", error.errno),
    }
}

/// Reads the answer to a set request (`errno=N` and an optional blank line).
///
/// # Errors
/// The daemon's errno when it is not zero, or [`EPROTO`] when the text is not a status line.
pub fn parse_status(text: &str) -> Result<(), UapiError> {
    let line = text.strip_suffix("\n\n").or_else(|| text.strip_suffix('\n')).unwrap_or(text);
    match line.strip_prefix("errno=") {
        Some(value) => status_result(value, 1),
        None => Err(UapiError::at(1, EPROTO, "expected errno=N")),
    }
}

/// Turns the value of an `errno=` line into the answer's outcome.
fn status_result(value: &str, line: usize) -> Result<(), UapiError> {
    let magnitude = value.strip_prefix('-').unwrap_or(value);
    match parse_decimal::<i32>(magnitude) {
        Some(0) => Ok(()),
        Some(errno) => Err(UapiError::new(errno, format!("the daemon answered errno={value}"))),
        None => Err(UapiError::at(line, EPROTO, format!("bad errno value {}", Shown(value)))),
    }
}

/// Parses an `allowed_ip` value into the network it names: `ADDRESS/PREFIX_LENGTH` with both
/// parts, as `wg` always sends it, and the host bits cleared, as the kernel stores it.
fn parse_allowed_ip(text: &str) -> Option<Cidr> {
    let (addr, prefix_len) = text.split_once('/')?;
    Cidr::new(addr.parse().ok()?, parse_decimal(prefix_len)?).ok()
}

/// What an `allowed_ip` value must look like, for error messages.
const ALLOWED_IP_SYNTAX: &str =
    "an allowed IP is ADDRESS/PREFIX_LENGTH, such as 10.0.0.0/24 or fd00::/64";

/// Parses unsigned decimal digits the way Go's `strconv.ParseUint(s, 10, bits)` does: at least
/// one digit, nothing else (Rust's `parse` would also take a leading `+`).
fn parse_decimal<T: FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Parses `a.b.c.d:port`, `[v6]:port` or `[v6%scope]:port`.
///
/// A numeric scope is the interface index; a named one (what `wg` sends for link-local
/// addresses) is looked up with `scope_index`.
fn parse_endpoint(text: &str, scope_index: &dyn Fn(&str) -> Option<u32>) -> Option<SocketAddr> {
    if let Some(bracketed) = text.strip_prefix('[') {
        let (host, port) = bracketed.split_once("]:")?;
        let (addr, scope_id) = match host.split_once('%') {
            None => (host, 0),
            Some((_, "")) => return None,
            Some((addr, scope)) => (addr, parse_decimal(scope).or_else(|| scope_index(scope))?),
        };
        let addr: Ipv6Addr = addr.parse().ok()?;
        Some(SocketAddrV6::new(addr, parse_decimal(port)?, 0, scope_id).into())
    } else {
        let (host, port) = text.rsplit_once(':')?;
        let addr: Ipv4Addr = host.parse().ok()?;
        Some(SocketAddrV4::new(addr, parse_decimal(port)?).into())
    }
}

/// Appends the line `key=value`.
fn write_line(out: &mut String, key: &str, value: impl fmt::Display) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "{key}={value}");
}

/// Splits `key=value`, or reports the protocol error wireguard-go answers for a bare line.
fn split_line(line_no: usize, line: &str) -> Result<(&str, &str), UapiError> {
    line.split_once('=').ok_or_else(|| {
        UapiError::at(line_no, EPROTO, format!("expected key=value, got {}", Shown(line)))
    })
}

/// Quotes untrusted text for an error message, escaped and cut short.
struct Shown<'a>(&'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const LIMIT: usize = 48;
        let mut chars = self.0.chars();
        let head: String = chars.by_ref().take(LIMIT).collect();
        let more = if chars.next().is_some() { "…" } else { "" };
        write!(f, "\"{}{more}\"", head.escape_debug())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_scopes(_: &str) -> Option<u32> {
        None
    }

    #[test]
    fn decimal_is_digits_only() {
        assert_eq!(parse_decimal::<u16>("51820"), Some(51820));
        assert_eq!(parse_decimal::<u16>("00080"), Some(80));
        assert_eq!(parse_decimal::<u16>("65536"), None);
        assert_eq!(parse_decimal::<u16>("+1"), None);
        assert_eq!(parse_decimal::<u16>("-1"), None);
        assert_eq!(parse_decimal::<u16>(" 1"), None);
        assert_eq!(parse_decimal::<u16>(""), None);
    }

    #[test]
    fn endpoints_of_every_family() {
        let parse = |text| parse_endpoint(text, &no_scopes);
        assert_eq!(parse("192.0.2.1:51820"), Some("192.0.2.1:51820".parse().unwrap()));
        assert_eq!(parse("[2001:db8::1]:443"), Some("[2001:db8::1]:443".parse().unwrap()));
        let scoped = parse("[fe80::1%7]:51820").unwrap();
        assert_eq!(scoped, SocketAddrV6::new("fe80::1".parse().unwrap(), 51820, 0, 7).into());
        assert_eq!(scoped.to_string(), "[fe80::1%7]:51820");
        for bad in [
            "",
            "192.0.2.1",
            "192.0.2.1:",
            "192.0.2.1:65536",
            "192.0.2.1:-1",
            "2001:db8::1:443",
            "[2001:db8::1]",
            "[2001:db8::1]:",
            "[192.0.2.1]:1",
            "[fe80::1%]:1",
            "[fe80::1%eth0]:1",
            "example.com:51820",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn named_scopes_are_resolved_by_the_caller() {
        let resolve = |name: &str| (name == "veth0").then_some(4);
        let addr = parse_endpoint("[fe80::1%veth0]:1", &resolve).unwrap();
        assert_eq!(addr, SocketAddrV6::new("fe80::1".parse().unwrap(), 1, 0, 4).into());
        assert_eq!(parse_endpoint("[fe80::1%eth9]:1", &resolve), None);
    }

    #[test]
    fn allowed_ips_clear_host_bits_and_check_lengths() {
        let ip = parse_allowed_ip("10.1.2.3/8").unwrap();
        assert_eq!(ip.addr(), std::net::IpAddr::from([10, 0, 0, 0]));
        assert_eq!(ip.prefix_len(), 8);
        assert_eq!(ip.to_string(), "10.0.0.0/8");
        assert_eq!(parse_allowed_ip("fd00::/128").unwrap().to_string(), "fd00::/128");
        for bad in ["10.0.0.0/33", "fd00::/129", "10.0.0.0", "10.0.0.0/", "/8", "10.0.0.0/+8"] {
            assert_eq!(parse_allowed_ip(bad), None, "{bad:?}");
        }
        assert_eq!(parse_allowed_ip("fe80::1%2/64"), None);
    }

    #[test]
    fn status_lines_both_ways() {
        assert_eq!(format_status(None), "errno=0\n\n");
        let error = UapiError::new(EADDRINUSE, "port in use");
        assert_eq!(format_status(Some(&error)), "errno=-98\n\n");
        assert_eq!(parse_status("errno=0\n\n"), Ok(()));
        assert_eq!(parse_status("errno=-98\n\n").unwrap_err().errno(), EADDRINUSE);
        assert_eq!(parse_status("errno=22\n").unwrap_err().errno(), EINVAL);
        assert_eq!(parse_status("errno=x\n\n").unwrap_err().errno(), EPROTO);
        assert_eq!(parse_status("listen_port=1\n").unwrap_err().errno(), EPROTO);
    }

    #[test]
    fn error_display_names_the_line() {
        let error = UapiError::at(3, EINVAL, "bad listen_port");
        assert_eq!(error.to_string(), "line 3: bad listen_port (errno 22)");
        assert_eq!(error.line(), Some(3));
        assert_eq!(error.message(), "bad listen_port");
        assert_eq!(UapiError::new(EIO, "gone").to_string(), "gone (errno 5)");
    }

    #[test]
    fn shown_text_is_escaped_and_cut() {
        assert_eq!(Shown("a\nb").to_string(), "\"a\\nb\"");
        let long = "x".repeat(100);
        assert_eq!(Shown(&long).to_string(), format!("\"{}…\"", "x".repeat(48)));
    }
}
