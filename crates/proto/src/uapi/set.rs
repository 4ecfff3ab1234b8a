//! `set=1`: the configuration changes a client asks for, validated as a whole.

use std::net::SocketAddr;

use super::{
    parse_allowed_ip, parse_decimal, parse_endpoint, split_line, write_line, Shown, UapiError,
    ALLOWED_IP_SYNTAX, EINVAL, EPROTO, SET_REQUEST,
};
use crate::cidr::Cidr;
use crate::keys::{PresharedKey, PrivateKey, PublicKey};

/// A validated `set=1` request.
///
/// A server applies it in this order, which is the order wireguard-go applies the lines in:
///
/// 1. `private_key`, `listen_port`, `fwmark`, then `replace_peers` (remove every peer).
/// 2. Each [`PeerUpdate`] in order (the same key may appear twice; the later one wins):
///    - a peer whose public key is the device's own is ignored;
///    - `remove`: remove the peer if it exists and ignore the rest of its update;
///    - `update_only` and no such peer: ignore the update; otherwise create the peer if needed;
///    - set the preshared key, endpoint and persistent keepalive; turning the keepalive from 0
///      to a non-zero interval sends one keepalive at once;
///    - `replace_allowed_ips`: drop all of the peer's allowed IPs, then apply
///      [`PeerUpdate::allowed_ips`] in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetRequest {
    /// `private_key`: a new identity, or its removal (all-zero hex).
    pub private_key: Option<PrivateKeyUpdate>,
    /// `listen_port`: 0 asks for any free port.
    pub listen_port: Option<u16>,
    /// `fwmark`: the `SO_MARK` of outgoing packets; 0 clears it.
    pub fwmark: Option<u32>,
    /// `replace_peers=true`: remove every peer before applying [`Self::peers`].
    pub replace_peers: bool,
    /// The peer sections, in request order.
    pub peers: Vec<PeerUpdate>,
}

/// What a `private_key` line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrivateKeyUpdate {
    /// Use this key (already clamped).
    Set(PrivateKey),
    /// All-zero hex: remove the private key, which stops the device from handshaking.
    Remove,
}

/// The changes to one peer, introduced by a `public_key` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerUpdate {
    /// The peer's identity.
    pub public_key: PublicKey,
    /// `remove=true`: delete the peer.
    pub remove: bool,
    /// `update_only=true`: change the peer only if it already exists.
    pub update_only: bool,
    /// `preshared_key`: the all-zero key means none.
    pub preshared_key: Option<PresharedKey>,
    /// `endpoint`: where to send to until the peer roams.
    pub endpoint: Option<SocketAddr>,
    /// `persistent_keepalive_interval` in seconds; 0 turns it off.
    pub persistent_keepalive_interval: Option<u16>,
    /// `replace_allowed_ips=true`: drop the current allowed IPs before applying
    /// [`Self::allowed_ips`].
    pub replace_allowed_ips: bool,
    /// `allowed_ip` lines in order: additions, and removals (`allowed_ip=-PREFIX`).
    pub allowed_ips: Vec<AllowedIpChange>,
    /// `successor_of` (a wgfabricd extension): this peer is a new key of the peer with the
    /// given public key, and takes over that peer's allowed IPs the moment its first
    /// handshake completes, so a key rotation loses no packet. Other implementations answer
    /// this key with `EINVAL`.
    pub successor_of: Option<PublicKey>,
    /// `replace_accept_ips=true` (a wgfabricd extension): drop the peer's accepted sources
    /// before applying [`Self::accept_ips`].
    pub replace_accept_ips: bool,
    /// `accept_ip` lines (a wgfabricd extension): source prefixes that packets from this
    /// peer may also carry, without traffic to them being routed to the peer. A path that
    /// moves between two peers (a relay and a direct peer) is accepted on both while the two
    /// ends switch, so no packet is lost to the source check. Other implementations answer
    /// this key with `EINVAL`.
    pub accept_ips: Vec<Cidr>,
}

impl PeerUpdate {
    /// An update that changes nothing (it creates the peer if missing).
    pub fn new(public_key: PublicKey) -> Self {
        Self {
            public_key,
            remove: false,
            update_only: false,
            preshared_key: None,
            endpoint: None,
            persistent_keepalive_interval: None,
            replace_allowed_ips: false,
            allowed_ips: Vec::new(),
            successor_of: None,
            replace_accept_ips: false,
            accept_ips: Vec::new(),
        }
    }
}

/// One `allowed_ip` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllowedIpChange {
    /// `allowed_ip=PREFIX`: route the prefix to this peer (taking it from any other peer).
    Add(Cidr),
    /// `allowed_ip=-PREFIX`: stop routing the prefix to this peer, if it routes there.
    Remove(Cidr),
}

/// Parses the body of a set request: the lines after `set=1`, up to the blank line that ends
/// it (the blank line itself may be included or not). Named endpoint scopes are refused; see
/// [`parse_set_resolving_scopes`].
///
/// # Errors
/// The first bad line: [`EPROTO`] for a line that is not `key=value` or for text after the
/// blank line, [`EINVAL`] for an unknown or misplaced key or a value that does not parse.
pub fn parse_set(body: &str) -> Result<SetRequest, UapiError> {
    parse_set_resolving_scopes(body, &|_| None)
}

/// Like [`parse_set`], looking up the interface index of a named IPv6 scope
/// (`[fe80::1%eth0]:51820`, as `wg` sends link-local endpoints) with `scope_index`.
///
/// # Errors
/// As [`parse_set`]; a scope that `scope_index` does not know is [`EINVAL`].
pub fn parse_set_resolving_scopes(
    body: &str,
    scope_index: &dyn Fn(&str) -> Option<u32>,
) -> Result<SetRequest, UapiError> {
    let mut parser = SetParser::new(scope_index);
    let mut lines = body.split_terminator('\n').enumerate().map(|(i, line)| (i + 1, line));
    for (_, line) in lines.by_ref() {
        if line.is_empty() {
            break;
        }
        parser.line(line)?;
    }
    if let Some((line_no, _)) = lines.find(|(_, line)| !line.is_empty()) {
        return Err(UapiError::at(
            line_no,
            EPROTO,
            "text after the blank line that ends the request",
        ));
    }
    Ok(parser.finish())
}

/// A set request parsed a line at a time, so that a large one (a million peers) never has to
/// be held as text: the daemon feeds it each line as it reads it.
pub struct SetParser<'a> {
    request: SetRequest,
    line_no: usize,
    scope_index: &'a dyn Fn(&str) -> Option<u32>,
}

impl core::fmt::Debug for SetParser<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SetParser").field("line_no", &self.line_no).finish_non_exhaustive()
    }
}

impl<'a> SetParser<'a> {
    /// A parser for one request, looking up named IPv6 scopes with `scope_index`.
    pub fn new(scope_index: &'a dyn Fn(&str) -> Option<u32>) -> Self {
        Self { request: SetRequest::default(), line_no: 0, scope_index }
    }

    /// Parses the next line of the body (without its newline; not the blank line that ends
    /// the request).
    ///
    /// # Errors
    /// As [`parse_set`], with this line's number. The request is then worthless: read the
    /// rest of it and answer with the error.
    pub fn line(&mut self, line: &str) -> Result<(), UapiError> {
        self.line_no += 1;
        let line_no = self.line_no;
        let (key, value) = split_line(line_no, line)?;
        let invalid = |what: &str| UapiError::at(line_no, EINVAL, format!("{key}: {what}"));
        if key == "public_key" {
            let key = PublicKey::from_hex(value).map_err(|e| invalid(&e.to_string()))?;
            self.request.peers.push(PeerUpdate::new(key));
            return Ok(());
        }
        match self.request.peers.last_mut() {
            None => apply_device_line(&mut self.request, key, value),
            Some(peer) => apply_peer_line(peer, key, value, self.scope_index),
        }
        .map_err(|what| invalid(&what))
    }

    /// The request parsed so far: the whole of it once every line was fed.
    pub fn finish(self) -> SetRequest {
        self.request
    }
}

const PEER_KEYS: [&str; 11] = [
    "remove",
    "update_only",
    "preshared_key",
    "endpoint",
    "persistent_keepalive_interval",
    "replace_allowed_ips",
    "allowed_ip",
    "protocol_version",
    "successor_of",
    "replace_accept_ips",
    "accept_ip",
];

fn apply_device_line(request: &mut SetRequest, key: &str, value: &str) -> Result<(), String> {
    match key {
        "private_key" => {
            request.private_key = Some(if !value.is_empty() && value.bytes().all(|b| b == b'0') {
                // Checked before decoding: clamping would turn zeros into a valid-looking key.
                if value.len() != 64 {
                    return Err("a key is 64 hexadecimal digits".to_owned());
                }
                PrivateKeyUpdate::Remove
            } else {
                PrivateKeyUpdate::Set(PrivateKey::from_hex(value).map_err(|e| e.to_string())?)
            });
        }
        "listen_port" => request.listen_port = Some(number(value, "a port from 0 to 65535")?),
        "fwmark" => request.fwmark = Some(number(value, "a mark from 0 to 4294967295")?),
        "replace_peers" => request.replace_peers = flag(value)?,
        _ if PEER_KEYS.contains(&key) => {
            return Err("this is a peer key: it must follow a public_key line".to_owned())
        }
        _ => return Err("unknown device key".to_owned()),
    }
    Ok(())
}

fn apply_peer_line(
    peer: &mut PeerUpdate,
    key: &str,
    value: &str,
    scope_index: &dyn Fn(&str) -> Option<u32>,
) -> Result<(), String> {
    match key {
        "remove" => peer.remove = flag(value)?,
        "update_only" => peer.update_only = flag(value)?,
        "preshared_key" => {
            peer.preshared_key = Some(PresharedKey::from_hex(value).map_err(|e| e.to_string())?);
        }
        "endpoint" => {
            let endpoint = parse_endpoint(value, scope_index).ok_or_else(|| {
                format!(
                    "{} is not IPV4:PORT, [IPV6]:PORT or [IPV6%SCOPE]:PORT with a known scope",
                    Shown(value)
                )
            })?;
            peer.endpoint = Some(endpoint);
        }
        "persistent_keepalive_interval" => {
            peer.persistent_keepalive_interval = Some(number(value, "seconds from 0 to 65535")?);
        }
        "replace_allowed_ips" => {
            // Everything this peer section added so far is dropped too, as it would be when
            // the lines are applied one by one.
            peer.replace_allowed_ips = flag(value)?;
            peer.allowed_ips.clear();
        }
        "allowed_ip" => {
            let (change, prefix): (fn(Cidr) -> AllowedIpChange, _) = match value.strip_prefix('-') {
                Some(prefix) => (AllowedIpChange::Remove, prefix),
                None => (AllowedIpChange::Add, value),
            };
            let ip = parse_allowed_ip(prefix)
                .ok_or_else(|| format!("{} {ALLOWED_IP_SYNTAX}", Shown(value)))?;
            peer.allowed_ips.push(change(ip));
        }
        "successor_of" => {
            peer.successor_of = Some(PublicKey::from_hex(value).map_err(|e| e.to_string())?);
        }
        "replace_accept_ips" => {
            peer.replace_accept_ips = flag(value)?;
            peer.accept_ips.clear();
        }
        "accept_ip" => {
            let ip = parse_allowed_ip(value)
                .ok_or_else(|| format!("{} {ALLOWED_IP_SYNTAX}", Shown(value)))?;
            peer.accept_ips.push(ip);
        }
        "protocol_version" => {
            if value != "1" {
                return Err(format!("{} is not supported: only version 1 exists", Shown(value)));
            }
        }
        "private_key" | "listen_port" | "fwmark" | "replace_peers" => {
            return Err("this is a device key: it must come before the first public_key".to_owned())
        }
        _ => return Err("unknown peer key".to_owned()),
    }
    Ok(())
}

fn number<T: core::str::FromStr>(value: &str, expected: &str) -> Result<T, String> {
    parse_decimal(value).ok_or_else(|| format!("{} is not {expected}", Shown(value)))
}

fn flag(value: &str) -> Result<bool, String> {
    match value {
        "true" => Ok(true),
        _ => Err(format!("{} is not the only accepted value \"true\"", Shown(value))),
    }
}

/// Writes a complete set request (`set=1`, the lines, the blank line) that [`parse_set`] reads
/// back as `request`, in the order `wg(8)` writes its lines.
pub fn format_set(request: &SetRequest) -> String {
    let mut out = String::from(SET_REQUEST);
    match &request.private_key {
        Some(PrivateKeyUpdate::Set(key)) => {
            write_line(&mut out, "private_key", key.to_hex_secret())
        }
        Some(PrivateKeyUpdate::Remove) => write_line(&mut out, "private_key", "0".repeat(64)),
        None => {}
    }
    if let Some(port) = request.listen_port {
        write_line(&mut out, "listen_port", port);
    }
    if let Some(mark) = request.fwmark {
        write_line(&mut out, "fwmark", mark);
    }
    if request.replace_peers {
        write_line(&mut out, "replace_peers", "true");
    }
    for peer in &request.peers {
        write_line(&mut out, "public_key", peer.public_key.to_hex());
        if peer.remove {
            write_line(&mut out, "remove", "true");
        }
        if peer.update_only {
            write_line(&mut out, "update_only", "true");
        }
        if let Some(psk) = &peer.preshared_key {
            write_line(&mut out, "preshared_key", psk.to_hex_secret());
        }
        if let Some(endpoint) = peer.endpoint {
            write_line(&mut out, "endpoint", endpoint);
        }
        if let Some(interval) = peer.persistent_keepalive_interval {
            write_line(&mut out, "persistent_keepalive_interval", interval);
        }
        if peer.replace_allowed_ips {
            write_line(&mut out, "replace_allowed_ips", "true");
        }
        for change in &peer.allowed_ips {
            match change {
                AllowedIpChange::Add(ip) => write_line(&mut out, "allowed_ip", ip),
                AllowedIpChange::Remove(ip) => {
                    write_line(&mut out, "allowed_ip", format_args!("-{ip}"))
                }
            }
        }
        if let Some(predecessor) = &peer.successor_of {
            write_line(&mut out, "successor_of", predecessor.to_hex());
        }
        if peer.replace_accept_ips {
            write_line(&mut out, "replace_accept_ips", "true");
        }
        for ip in &peer.accept_ips {
            write_line(&mut out, "accept_ip", ip);
        }
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests;
