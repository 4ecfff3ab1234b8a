//! A parser for WireGuard's INI configuration: wg-quick files, the `wg setconf` form and
//! `wg showconf` output.
//!
//! Keys are matched case-insensitively as `wg` does; `#` starts a comment. Comment lines of
//! the form `# wgfabric:KEY VALUE`, which the renderers write (such as the relay order), are
//! kept as annotations. Errors name the file and line; a private key's text is never echoed.

use std::collections::BTreeMap;
use std::path::Path;

use wgfabric_proto::keys::{PresharedKey, PrivateKey, PublicKey};

use crate::cidr::{Cidr, CidrError, IfAddr};
use crate::error::SourceError;

/// A parsed configuration file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WgConfig {
    /// The `[Interface]` section.
    pub interface: InterfaceSection,
    /// The `[Peer]` sections, in file order.
    pub peers: Vec<PeerSection>,
    /// `# wgfabric:KEY VALUE` comment lines.
    pub annotations: BTreeMap<String, String>,
}

/// The `[Interface]` section. wg-quick-only keys are kept so a file round-trips in meaning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceSection {
    /// `PrivateKey`.
    pub private_key: Option<PrivateKey>,
    /// `ListenPort`.
    pub listen_port: Option<u16>,
    /// `FwMark` (`off` is `None`).
    pub fwmark: Option<u32>,
    /// `Address` (wg-quick).
    pub addresses: Vec<IfAddr>,
    /// `DNS` (wg-quick), as written.
    pub dns: Vec<String>,
    /// `MTU` (wg-quick).
    pub mtu: Option<u16>,
    /// `Table` (wg-quick), as written.
    pub table: Option<String>,
    /// `PreUp`, `PostUp`, `PreDown`, `PostDown` (wg-quick) with their commands, in order.
    pub hooks: Vec<(String, String)>,
    /// `SaveConfig` (wg-quick).
    pub save_config: Option<bool>,
}

/// A `[Peer]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSection {
    /// `PublicKey`.
    pub public_key: PublicKey,
    /// `PresharedKey`.
    pub preshared_key: Option<PresharedKey>,
    /// `Endpoint`, as written (a name or an address with a port).
    pub endpoint: Option<String>,
    /// `AllowedIPs`, host bits cleared as the kernel does.
    pub allowed_ips: Vec<Cidr>,
    /// `PersistentKeepalive` (`off` and `0` are `None`).
    pub persistent_keepalive: Option<u16>,
    /// 1-based line of the `[Peer]` header.
    pub line: usize,
}

enum Section {
    None,
    Interface,
    Peer { line: usize, fields: PeerFields },
}

#[derive(Default)]
struct PeerFields {
    public_key: Option<PublicKey>,
    preshared_key: Option<PresharedKey>,
    endpoint: Option<String>,
    allowed_ips: Vec<Cidr>,
    persistent_keepalive: Option<u16>,
}

/// Parses configuration text; `file` is used in error messages.
///
/// # Errors
/// The first malformed line, with its file, line number and key.
pub fn parse(file: &Path, text: &str) -> Result<WgConfig, SourceError> {
    let mut config = WgConfig::default();
    let mut section = Section::None;
    for (index, raw_line) in text.lines().enumerate() {
        let number = index + 1;
        let error = |field: &str, message: String| SourceError {
            file: file.to_owned(),
            line: number,
            column: 1,
            field: field.to_owned(),
            message,
        };
        if let Some(annotation) = raw_line.trim().strip_prefix("# wgfabric:") {
            let (key, value) = annotation.split_once(' ').unwrap_or((annotation, ""));
            config.annotations.insert(key.to_owned(), value.trim().to_owned());
            continue;
        }
        let line = raw_line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            finish_peer(&mut config, section, file)?;
            section = match line.to_ascii_lowercase().as_str() {
                "[interface]" => Section::Interface,
                "[peer]" => Section::Peer { line: number, fields: PeerFields::default() },
                _ => return Err(error(line, "expected [Interface] or [Peer]".into())),
            };
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .map(|(key, value)| (key.trim(), value.trim()))
            .ok_or_else(|| error(line, "expected KEY = VALUE".into()))?;
        let lower = key.to_ascii_lowercase();
        let invalid = |what: &str| error(key, format!("invalid {what}"));
        match &mut section {
            Section::None => return Err(error(key, "key outside of a section".into())),
            Section::Interface => {
                let interface = &mut config.interface;
                match lower.as_str() {
                    "privatekey" => {
                        // The message never contains the text (it may be a key with a typo);
                        // the parse error only names what is wrong.
                        interface.private_key = Some(
                            PrivateKey::from_base64(value)
                                .map_err(|e| error(key, format!("invalid private key: {e}")))?,
                        );
                    }
                    "listenport" => {
                        interface.listen_port = Some(value.parse().map_err(|_| invalid("port"))?)
                    }
                    "fwmark" => {
                        interface.fwmark =
                            parse_fwmark(value).ok_or_else(|| invalid("firewall mark"))?;
                    }
                    "address" => {
                        for item in list(value) {
                            interface
                                .addresses
                                .push(item.parse().map_err(|e| error(key, format!("{e}")))?);
                        }
                    }
                    "dns" => interface.dns.extend(list(value).map(str::to_owned)),
                    "mtu" => interface.mtu = Some(value.parse().map_err(|_| invalid("MTU"))?),
                    "table" => interface.table = Some(value.to_owned()),
                    "preup" | "postup" | "predown" | "postdown" => {
                        interface.hooks.push((key.to_owned(), value.to_owned()));
                    }
                    "saveconfig" => {
                        interface.save_config = Some(value.eq_ignore_ascii_case("true"))
                    }
                    _ => return Err(error(key, "unknown key in [Interface]".into())),
                }
            }
            Section::Peer { fields, .. } => match lower.as_str() {
                "publickey" => {
                    fields.public_key =
                        Some(PublicKey::from_base64(value).map_err(|e| error(key, e.to_string()))?);
                }
                "presharedkey" => {
                    fields.preshared_key = Some(
                        PresharedKey::from_base64(value)
                            .map_err(|e| error(key, format!("invalid preshared key: {e}")))?,
                    );
                }
                "endpoint" => fields.endpoint = Some(value.to_owned()),
                "allowedips" => {
                    for item in list(value) {
                        let cidr = Cidr::parse_truncating(item).map_err(|e| match e {
                            CidrError::Syntax(_) => invalid("allowed IP"),
                            e => error(key, e.to_string()),
                        })?;
                        fields.allowed_ips.push(cidr);
                    }
                }
                "persistentkeepalive" => {
                    fields.persistent_keepalive = match value {
                        "off" => None,
                        seconds => Some(seconds.parse::<u16>().map_err(|_| invalid("keepalive"))?)
                            .filter(|s| *s != 0),
                    };
                }
                _ => return Err(error(key, "unknown key in [Peer]".into())),
            },
        }
    }
    finish_peer(&mut config, section, file)?;
    Ok(config)
}

fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|item| !item.is_empty())
}

fn parse_fwmark(value: &str) -> Option<Option<u32>> {
    if value == "off" {
        return Some(None);
    }
    let mark = match value.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
        None => value.parse().ok()?,
    };
    Some(Some(mark).filter(|mark| *mark != 0))
}

fn finish_peer(config: &mut WgConfig, section: Section, file: &Path) -> Result<(), SourceError> {
    let Section::Peer { line, fields } = section else { return Ok(()) };
    let error = |message: String| SourceError {
        file: file.to_owned(),
        line,
        column: 1,
        field: "Peer".into(),
        message,
    };
    let public_key = fields.public_key.ok_or_else(|| error("[Peer] without PublicKey".into()))?;
    if let Some(first) = config.peers.iter().find(|peer| peer.public_key == public_key) {
        return Err(error(format!("peer {public_key} is already declared on line {}", first.line)));
    }
    config.peers.push(PeerSection {
        public_key,
        preshared_key: fields.preshared_key,
        endpoint: fields.endpoint,
        allowed_ips: fields.allowed_ips,
        persistent_keepalive: fields.persistent_keepalive,
        line,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUBLIC: &str = "vreiV32Fc+3EMQo3WGmmfRJ6Vy8WHQDgv9matssdIXo=";
    const PRIVATE: &str = "2FkIUyxNcXlS+5AKQHncW+pwQIlPBsqVsInFxiWGpWw=";

    #[test]
    fn parses_a_wg_quick_file() {
        let text = format!(
            "# wgfabric:relay-order a b\n[Interface]\nAddress = 10.0.0.2/24, fd00::2/64\n\
             privatekey = {PRIVATE}\nListenPort=51820\nMTU = 1420\nFwMark = 0xca6c\n\
             PostUp = wg set %i private-key /k # comment\n\n[Peer]\nPublicKey = {PUBLIC}\n\
             AllowedIPs = 10.0.0.0/24,fd00::1/64\nEndpoint = relay.example.com:51820\n\
             PersistentKeepalive = 25\n"
        );
        let config = parse(Path::new("wg0.conf"), &text).unwrap();
        assert_eq!(config.annotations["relay-order"], "a b");
        assert_eq!(config.interface.addresses.len(), 2);
        assert_eq!(config.interface.listen_port, Some(51820));
        assert_eq!(config.interface.fwmark, Some(0xca6c));
        assert_eq!(config.interface.hooks[0].1, "wg set %i private-key /k");
        assert_eq!(config.interface.private_key.as_ref().unwrap().public_key().to_base64(), PUBLIC);
        let peer = &config.peers[0];
        assert_eq!(peer.allowed_ips[1].to_string(), "fd00::/64", "host bits cleared");
        assert_eq!((peer.persistent_keepalive, peer.line), (Some(25), 10));
    }

    #[test]
    fn errors_name_the_line_and_never_the_secret() {
        let bad_key = format!("[Interface]\nPrivateKey = {}x\n", &PRIVATE[..43]);
        let err = parse(Path::new("wg0.conf"), &bad_key).unwrap_err();
        assert_eq!((err.line, err.field.as_str()), (2, "PrivateKey"));
        assert!(!err.to_string().contains(&PRIVATE[..20]), "{err}");

        let err = parse(Path::new("wg0.conf"), "[Peer]\nAllowedIPs = 10.0.0.0/8\n").unwrap_err();
        assert_eq!((err.line, err.message.as_str()), (1, "[Peer] without PublicKey"));
        let err = parse(Path::new("wg0.conf"), "[Interface]\nBogus = 1\n").unwrap_err();
        assert!(err.to_string().starts_with("wg0.conf:2:1: Bogus: unknown key"), "{err}");
        let twice = format!("[Peer]\nPublicKey = {PUBLIC}\n[Peer]\nPublicKey = {PUBLIC}\n");
        assert!(parse(Path::new("x"), &twice).unwrap_err().message.contains("line 1"));
        assert!(parse(Path::new("x"), "ListenPort = 1\n").is_err());
    }
}
