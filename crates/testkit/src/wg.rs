//! Configuring through the stock `wg` tool: config files for `wg setconf`, and
//! `wg show dump` parsed.

use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use rand_core::OsRng;
use wgfabric_proto::keys::{PresharedKey, PrivateKey, PublicKey};

/// A fresh key pair.
pub fn keypair() -> (PrivateKey, PublicKey) {
    let private = PrivateKey::generate(&mut OsRng);
    let public = private.public_key();
    (private, public)
}

/// A fresh preshared key.
pub fn preshared_key() -> PresharedKey {
    PresharedKey::generate(&mut OsRng)
}

/// An interface configuration in `wg setconf` form.
#[derive(Debug, Clone)]
pub struct WgConfig {
    /// `PrivateKey`.
    pub private_key: PrivateKey,
    /// `ListenPort`, if fixed.
    pub listen_port: Option<u16>,
    /// `FwMark`, if any.
    pub fwmark: Option<u32>,
    /// The `[Peer]` sections.
    pub peers: Vec<WgPeer>,
}

/// One `[Peer]` section.
#[derive(Debug, Clone)]
pub struct WgPeer {
    /// `PublicKey`.
    pub public_key: PublicKey,
    /// `PresharedKey`, if any.
    pub preshared_key: Option<PresharedKey>,
    /// `Endpoint`, if known.
    pub endpoint: Option<SocketAddr>,
    /// `AllowedIPs`, as CIDRs.
    pub allowed_ips: Vec<String>,
    /// `PersistentKeepalive` in seconds, if on.
    pub persistent_keepalive: Option<u16>,
}

impl WgPeer {
    /// A peer with only its key.
    pub fn new(public_key: PublicKey) -> Self {
        Self {
            public_key,
            preshared_key: None,
            endpoint: None,
            allowed_ips: Vec::new(),
            persistent_keepalive: None,
        }
    }
}

impl WgConfig {
    /// The file's text. It contains secrets: write it only where [`Self::write_temp`] does.
    pub fn to_conf_secret(&self) -> String {
        let mut text = String::from("[Interface]\n");
        let line = |text: &mut String, key: &str, value: &dyn std::fmt::Display| {
            // Writing to a String cannot fail.
            let _ = writeln!(text, "{key} = {value}");
        };
        line(&mut text, "PrivateKey", &self.private_key.to_base64_secret());
        if let Some(port) = self.listen_port {
            line(&mut text, "ListenPort", &port);
        }
        if let Some(mark) = self.fwmark {
            line(&mut text, "FwMark", &mark);
        }
        for peer in &self.peers {
            text.push_str("\n[Peer]\n");
            line(&mut text, "PublicKey", &peer.public_key);
            if let Some(psk) = &peer.preshared_key {
                line(&mut text, "PresharedKey", &psk.to_base64_secret());
            }
            if let Some(endpoint) = peer.endpoint {
                line(&mut text, "Endpoint", &endpoint);
            }
            if !peer.allowed_ips.is_empty() {
                line(&mut text, "AllowedIPs", &peer.allowed_ips.join(", "));
            }
            if let Some(interval) = peer.persistent_keepalive {
                line(&mut text, "PersistentKeepalive", &interval);
            }
        }
        text
    }

    /// Writes the config to a new 0600 file in the temporary directory, deleted on drop.
    ///
    /// # Panics
    /// When the file cannot be written.
    pub fn write_temp(&self, name: &str) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("wgfabric-{name}-{}.conf", std::process::id()));
        let _ = fs::remove_file(&path);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        file.write_all(self.to_conf_secret().as_bytes())
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        TempFile(path)
    }
}

/// A file removed on drop.
#[derive(Debug)]
pub struct TempFile(PathBuf);

impl TempFile {
    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// `wg show IFNAME dump`, without the private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgDump {
    /// The interface's public key, if it has a private key.
    pub public_key: Option<PublicKey>,
    /// The listening port (0 if none).
    pub listen_port: u16,
    /// The fwmark (0 if off).
    pub fwmark: u32,
    /// The peers, in `wg`'s order.
    pub peers: Vec<DumpPeer>,
}

/// One peer line of the dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpPeer {
    /// The peer's key.
    pub public_key: PublicKey,
    /// Whether a preshared key is set.
    pub has_preshared_key: bool,
    /// The endpoint, if known.
    pub endpoint: Option<String>,
    /// The allowed IPs as `wg` prints them.
    pub allowed_ips: Vec<String>,
    /// Seconds since the epoch of the latest handshake; 0 for never.
    pub latest_handshake: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Persistent keepalive in seconds, if on.
    pub persistent_keepalive: Option<u16>,
}

impl WgDump {
    /// Parses the tab-separated dump: one interface line, then one line per peer.
    ///
    /// # Errors
    /// A description of the first line that does not fit the format.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut lines = text.lines();
        let interface = lines.next().ok_or("empty dump")?;
        let fields: Vec<&str> = interface.split('\t').collect();
        let [_private, public, port, fwmark] = fields[..] else {
            return Err(format!("interface line has {} fields, not 4", fields.len()));
        };
        let mut dump = Self {
            public_key: optional(public)
                .map(PublicKey::from_base64)
                .transpose()
                .map_err(|e| e.to_string())?,
            listen_port: number(port)?,
            fwmark: match fwmark {
                "off" => 0,
                hex => u32::from_str_radix(hex.trim_start_matches("0x"), 16)
                    .map_err(|_| format!("{hex:?} is not a hex fwmark"))?,
            },
            peers: Vec::new(),
        };
        for line in lines {
            let fields: Vec<&str> = line.split('\t').collect();
            let [public, psk, endpoint, allowed, handshake, rx, tx, keepalive] = fields[..] else {
                return Err(format!("peer line has {} fields, not 8", fields.len()));
            };
            dump.peers.push(DumpPeer {
                public_key: PublicKey::from_base64(public).map_err(|e| e.to_string())?,
                has_preshared_key: optional(psk).is_some(),
                endpoint: optional(endpoint).map(str::to_owned),
                allowed_ips: optional(allowed)
                    .map(|list| list.split(',').map(str::to_owned).collect())
                    .unwrap_or_default(),
                latest_handshake: number(handshake)?,
                rx_bytes: number(rx)?,
                tx_bytes: number(tx)?,
                persistent_keepalive: if keepalive == "off" {
                    None
                } else {
                    Some(number(keepalive)?)
                },
            });
        }
        Ok(dump)
    }

    /// The peer with `key`.
    pub fn peer(&self, key: &PublicKey) -> Option<&DumpPeer> {
        self.peers.iter().find(|peer| peer.public_key == *key)
    }
}

fn optional(field: &str) -> Option<&str> {
    (field != "(none)").then_some(field)
}

fn number<T: std::str::FromStr>(field: &str) -> Result<T, String> {
    field.parse().map_err(|_| format!("{field:?} is not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_of_wg_1_0_20210914() {
        let (_, a) = keypair();
        let (_, b) = keypair();
        let text = format!(
            "(hidden)\t{a}\t51820\t0x1f\n\
             {b}\t(hidden)\t192.0.2.2:51820\t10.0.0.2/32,fd00::2/128\t1700000000\t1184\t2144\t25\n\
             {a}\t(none)\t(none)\t(none)\t0\t0\t0\toff\n"
        );
        let dump = WgDump::parse(&text).unwrap();
        assert_eq!((dump.public_key, dump.listen_port, dump.fwmark), (Some(a), 51820, 31));
        let peer = dump.peer(&b).unwrap();
        assert!(peer.has_preshared_key);
        assert_eq!(peer.endpoint.as_deref(), Some("192.0.2.2:51820"));
        assert_eq!(peer.allowed_ips, ["10.0.0.2/32", "fd00::2/128"]);
        assert_eq!(
            (peer.latest_handshake, peer.rx_bytes, peer.tx_bytes),
            (1_700_000_000, 1184, 2144)
        );
        assert_eq!(peer.persistent_keepalive, Some(25));
        let idle = &dump.peers[1];
        assert!(!idle.has_preshared_key && idle.endpoint.is_none() && idle.allowed_ips.is_empty());
        assert_eq!(idle.persistent_keepalive, None);
        assert!(WgDump::parse("a\tb\n").is_err());
        assert!(WgDump::parse("").is_err());
    }

    #[test]
    fn config_files_are_private_and_complete() {
        let (private, _) = keypair();
        let (_, peer_key) = keypair();
        let mut peer = WgPeer::new(peer_key);
        peer.preshared_key = Some(preshared_key());
        peer.endpoint = Some("[2001:db8::1]:51820".parse().unwrap());
        peer.allowed_ips = vec!["10.0.0.2/32".into(), "fd00::2/128".into()];
        peer.persistent_keepalive = Some(25);
        let config = WgConfig {
            private_key: private,
            listen_port: Some(51820),
            fwmark: None,
            peers: vec![peer],
        };
        let file = config.write_temp("unit");
        let text = fs::read_to_string(file.path()).unwrap();
        assert_eq!(text, config.to_conf_secret());
        for needle in [
            "ListenPort = 51820",
            "Endpoint = [2001:db8::1]:51820",
            "AllowedIPs = 10.0.0.2/32, fd00::2/128",
            "PersistentKeepalive = 25",
            "PresharedKey = ",
        ] {
            assert!(text.contains(needle), "{needle}");
        }
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(fs::metadata(file.path()).unwrap().permissions().mode() & 0o777, 0o600);
        let path = file.path().to_owned();
        drop(file);
        assert!(!path.exists());
        assert!(!format!("{config:?}").contains(&config.private_key.to_base64_secret()));
    }
}
