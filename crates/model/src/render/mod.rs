//! Renderers: pure functions from [`HostConfig`] (or the whole [`Fabric`]) to file contents.
//!
//! Output is deterministic: the same inventory and lock give the same bytes, so a review diff
//! shows exactly what changed. Private keys stay on the hosts (the files point at the key
//! file) unless a decrypted key is passed in, in which case the file is marked secret and
//! written with mode 0600.
//!
//! [`render`] returns files in memory; [`render_into`] is the I/O edge that writes them into
//! a directory, host by host and only where they changed (see its module, `write.rs`).

mod ansible;
mod export;
pub mod graph;
mod networkd;
pub mod plan;
mod setconf;
mod wg_quick;
mod write;

use core::fmt;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use wgfabric_proto::keys::{PrivateKey, PublicKey};
use zeroize::Zeroize;

pub use ansible::ansible_inventory;
pub use export::{fabric_json, terraform_json, write_fabric_json};
pub use networkd::{networkd_netdev, networkd_network};
pub use setconf::setconf;
pub use wg_quick::wg_quick;
pub use write::{render_into, HostChange, Output, Report};

use crate::cidr::Cidr;
use crate::config::{HostConfig, PeerConfig};
use crate::error::Error;
use crate::fabric::Fabric;
use crate::files::{PUBLIC_MODE, SECRET_MODE};
use crate::names::Name;
use crate::render::plan::RenderedState;
use crate::sealed_keys::{Identities, KeyStore};

/// An output format of `render`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[non_exhaustive]
pub enum Format {
    /// `HOST/IFACE.conf` for `wg-quick up`.
    WgQuick,
    /// `HOST/50-IFACE.netdev` and `HOST/50-IFACE.network` for systemd-networkd.
    Networkd,
    /// `HOST/IFACE.setconf` for `wg setconf` (or `wg syncconf`).
    Setconf,
    /// `HOST/nftables.conf` for `nft -f`: the host's firewall, for hosts that have one and
    /// run without the agent.
    Nftables,
    /// `fabric.json`: the whole fabric, every host's desired configuration.
    Json,
    /// `terraform.json`: a flat object of strings for Terraform's `external` data source.
    Terraform,
    /// `ansible-inventory.yml`: hosts, groups and overlay addresses as an Ansible inventory.
    Ansible,
}

impl Format {
    /// Every format, in the order `render` writes them.
    pub const ALL: [Self; 7] = [
        Self::WgQuick,
        Self::Networkd,
        Self::Setconf,
        Self::Nftables,
        Self::Json,
        Self::Terraform,
        Self::Ansible,
    ];

    /// Whether the format has one output per host (rather than one for the fabric).
    pub const fn is_per_host(self) -> bool {
        matches!(self, Self::WgQuick | Self::Networkd | Self::Setconf | Self::Nftables)
    }
}

/// One rendered file: a path relative to the output directory and its contents.
pub struct RenderedFile {
    /// Where it goes, relative to the output directory.
    pub path: PathBuf,
    /// What it holds.
    pub contents: String,
    /// Whether `contents` holds a private key (write it 0600, never log it).
    pub secret: bool,
}

impl RenderedFile {
    /// The permission bits to write it with.
    pub const fn mode(&self) -> u32 {
        if self.secret {
            SECRET_MODE
        } else {
            PUBLIC_MODE
        }
    }
}

impl fmt::Debug for RenderedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RenderedFile")
            .field("path", &self.path)
            .field("bytes", &self.contents.len())
            .field("secret", &self.secret)
            .finish()
    }
}

impl Drop for RenderedFile {
    fn drop(&mut self) {
        if self.secret {
            self.contents.zeroize();
        }
    }
}

/// The files of one host in one per-host format. `key` is the decrypted private key in
/// central mode; without it the files point at the key file on the host.
///
/// Fabric-wide formats yield nothing here; see [`fabric_files`].
pub fn host_files(
    config: &HostConfig,
    key: Option<&PrivateKey>,
    format: Format,
) -> Vec<RenderedFile> {
    let secret = key.is_some();
    let contents = match format {
        Format::WgQuick => vec![(wg_quick(config, key), secret)],
        Format::Networkd => {
            vec![(networkd_netdev(config, key), secret), (networkd_network(config), false)]
        }
        Format::Setconf => vec![(setconf(config, key), secret)],
        Format::Nftables => config
            .firewall
            .iter()
            .map(|firewall| (nftables_conf(config, firewall), false))
            .collect(),
        Format::Json | Format::Terraform | Format::Ansible => Vec::new(),
    };
    host_file_paths(&config.host, &config.interface, format)
        .into_iter()
        .zip(contents)
        .map(|(path, (contents, secret))| RenderedFile { path, contents, secret })
        .collect()
}

/// Where [`host_files`] puts a host's files, relative to the output directory.
fn host_file_paths(host: &Name, interface: &str, format: Format) -> Vec<PathBuf> {
    let dir = PathBuf::from(host.as_str());
    match format {
        Format::WgQuick => vec![dir.join(format!("{interface}.conf"))],
        Format::Networkd => vec![
            dir.join(format!("50-{interface}.netdev")),
            dir.join(format!("50-{interface}.network")),
        ],
        Format::Setconf => vec![dir.join(format!("{interface}.setconf"))],
        Format::Nftables => vec![dir.join("nftables.conf")],
        Format::Json | Format::Terraform | Format::Ansible => Vec::new(),
    }
}

/// The fabric-wide file of a format, if it has one.
pub fn fabric_files(
    fabric: &Fabric,
    configs: &[HostConfig],
    format: Format,
) -> Option<RenderedFile> {
    let path = fabric_file_name(format)?;
    let contents = match format {
        Format::Json => fabric_json(fabric, configs),
        Format::Terraform => terraform_json(fabric),
        Format::Ansible => ansible_inventory(fabric),
        Format::WgQuick | Format::Networkd | Format::Setconf | Format::Nftables => return None,
    };
    Some(RenderedFile { path: PathBuf::from(path), contents, secret: false })
}

/// The file of a fabric-wide format, relative to the output directory.
const fn fabric_file_name(format: Format) -> Option<&'static str> {
    match format {
        Format::Json => Some("fabric.json"),
        Format::Terraform => Some("terraform.json"),
        Format::Ansible => Some("ansible-inventory.yml"),
        Format::WgQuick | Format::Networkd | Format::Setconf | Format::Nftables => None,
    }
}

/// Central mode's private keys, decrypted, by host. Zeroized on drop; never printed.
pub struct HostKeys(BTreeMap<Name, PrivateKey>);

impl HostKeys {
    /// Decrypts `keys/HOST.age` of one host, or of every host when `host` is `None`, and
    /// checks each against the host's public key.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown host; whatever decrypting a key reports (a missing
    /// file, the wrong identity, a key that does not match the inventory).
    pub fn decrypt(
        fabric: &Fabric,
        host: Option<&str>,
        identities: &Identities,
    ) -> Result<Self, Error> {
        if let Some(name) = host {
            // Refuses an unknown host the way rendering it would.
            fabric.host_config(name)?;
        }
        let store = KeyStore::new(fabric.inventory())?;
        let keys = fabric
            .inventory()
            .hosts
            .values()
            .filter(|candidate| host.is_none_or(|name| candidate.name.as_str() == name))
            .map(|host| {
                let key = store.load(host.name.as_str(), &host.public_key, identities)?;
                Ok((host.name.clone(), key))
            })
            .collect::<Result<_, Error>>()?;
        Ok(Self(keys))
    }

    /// The key of `host`, if it was decrypted.
    pub fn get(&self, host: &str) -> Option<&PrivateKey> {
        self.0.get(host)
    }

    /// The hosts whose keys were decrypted, in name order, with their public keys.
    pub fn hosts(&self) -> impl Iterator<Item = (&Name, PublicKey)> {
        self.0.iter().map(|(host, key)| (host, key.public_key()))
    }
}

impl fmt::Debug for HostKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostKeys(<{} redacted>)", self.0.len())
    }
}

/// What to render.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// One host, or every host when `None`. Fabric-wide formats always cover every host.
    pub host: Option<&'a str>,
    /// The formats to produce.
    pub formats: &'a [Format],
    /// Central mode: the decrypted keys, which are then inlined.
    pub keys: Option<&'a HostKeys>,
}

impl Request<'_> {
    /// The key to inline for `config`'s host, in central mode.
    fn key(&self, config: &HostConfig) -> Option<&PrivateKey> {
        self.keys.and_then(|keys| keys.get(config.host.as_str()))
    }

    fn per_host_formats(&self) -> impl Iterator<Item = Format> + '_ {
        self.formats.iter().copied().filter(|format| format.is_per_host())
    }

    fn fabric_wide_formats(&self) -> impl Iterator<Item = Format> + '_ {
        self.formats.iter().copied().filter(|format| !format.is_per_host())
    }
}

/// Renders the requested formats in memory, per host in host order then fabric-wide ones.
/// Nothing is written; [`render_into`] renders into a directory.
///
/// # Errors
/// [`Error::NotFound`] for an unknown host.
pub fn render(fabric: &Fabric, request: Request<'_>) -> Result<Vec<RenderedFile>, Error> {
    let configs: Vec<HostConfig> = match request.host {
        Some(host) => vec![fabric.host_config(host)?],
        None => fabric.host_configs().collect(),
    };
    let mut files = Vec::new();
    for config in &configs {
        for format in request.per_host_formats() {
            files.extend(host_files(config, request.key(config), format));
        }
    }
    if request.fabric_wide_formats().next().is_some() {
        let all: Vec<HostConfig> = match request.host {
            Some(_) => fabric.host_configs().collect(),
            None => configs,
        };
        files.extend(request.fabric_wide_formats().filter_map(|f| fabric_files(fabric, &all, f)));
    }
    Ok(files)
}

/// Files a previous render wrote for hosts that are no longer in the fabric, relative to the
/// output directory, so a full render can remove them.
pub fn stale_files(last: &RenderedState, fabric: &Fabric) -> Vec<PathBuf> {
    stale_paths(last.hosts.values().map(|config| (&config.host, config.interface.as_str())), fabric)
}

/// [`stale_files`] of the last render's hosts and their interfaces.
fn stale_paths<'a>(
    last: impl Iterator<Item = (&'a Name, &'a str)>,
    fabric: &Fabric,
) -> Vec<PathBuf> {
    last.filter(|(host, _)| !fabric.inventory().hosts.contains_key(*host))
        .flat_map(|(host, interface)| {
            Format::ALL.into_iter().flat_map(move |format| host_file_paths(host, interface, format))
        })
        .collect()
}

/// Comma-separated prefixes, as wg-quick and `wg` write them.
pub fn join_cidrs(cidrs: &[Cidr], separator: &str) -> String {
    let mut text = String::with_capacity(cidrs.len() * 20);
    write_cidrs(&mut text, cidrs, separator);
    text
}

/// [`join_cidrs`] straight into `out`: a spoke's failover routes hold every subnet router's
/// prefix, and each of its files lists them twice.
fn write_cidrs(out: &mut String, cidrs: &[Cidr], separator: &str) {
    for (index, cidr) in cidrs.iter().enumerate() {
        if index > 0 {
            out.push_str(separator);
        }
        let _ = write!(out, "{cidr}");
    }
}

/// The comment block every per-host file starts with. The `wgfabric:` lines are for
/// machines (the agent reads the relay order from them); the first line is for people.
pub(crate) fn header(out: &mut String, config: &HostConfig, what: &str) {
    let _ = writeln!(
        out,
        "# {what} for {} ({}) in network {}. Generated by wgfabric from fabric.toml; edit that instead.",
        config.host,
        config.role.as_str(),
        config.network
    );
    if let Some(failover) = &config.failover {
        let relays: Vec<&str> = failover.relays.iter().map(|name| name.as_str()).collect();
        let _ = writeln!(out, "# wgfabric:relay-order {}", relays.join(" "));
        out.push_str("# wgfabric:failover-routes ");
        write_cidrs(out, &failover.routes, " ");
        out.push('\n');
    }
}

/// A `[Peer]`-style block, shared by wg-quick, `wg setconf` and networkd (which differ only in
/// the section name and the spacing around `=`).
pub(crate) fn peer_block(out: &mut String, peer: &PeerConfig, section: &str, eq: &str) {
    let _ = writeln!(out, "\n[{section}]");
    let _ = writeln!(out, "# {} ({})", peer.name, peer.role.as_str());
    let _ = writeln!(out, "PublicKey{eq}{}", peer.public_key);
    if let Some(endpoint) = &peer.endpoint {
        let _ = writeln!(out, "Endpoint{eq}{endpoint}");
    }
    if !peer.allowed_ips.is_empty() {
        let separator = if eq == "=" { "," } else { ", " };
        let _ = write!(out, "AllowedIPs{eq}");
        write_cidrs(out, &peer.allowed_ips, separator);
        out.push('\n');
    }
    if let Some(seconds) = peer.persistent_keepalive {
        let _ = writeln!(out, "PersistentKeepalive{eq}{seconds}");
    }
}

/// What follows `wg set IFACE private-key` in a shell: the key file, or a process substitution
/// running `wgfabric fetchkey` for a credential or a command. Every word is plain or quoted
/// ([`crate::key_source`] keeps out what no quoting survives in wg-quick's files).
pub(crate) fn key_argument(config: &HostConfig, interface: &str) -> String {
    match config.key_source.file() {
        Some(path) => path.to_string(),
        None => format!(
            "<(wgfabric fetchkey --host {} --interface {interface} {})",
            config.host,
            config.key_source.shell_words().join(" ")
        ),
    }
}

/// The host's firewall as an `nft -f` file, after the header every per-host file has.
fn nftables_conf(config: &HostConfig, firewall: &crate::policy::Firewall) -> String {
    let mut out = String::new();
    header(&mut out, config, "nftables firewall (load with `nft -f`)");
    out.push_str(&crate::policy::nft::Table::of(firewall).to_text());
    out
}

/// Whether the host forwards packets for others (a relay or a subnet router).
pub fn forwards(config: &HostConfig) -> bool {
    config.role == crate::inventory::Role::Relay || !config.routes.is_empty()
}

#[cfg(test)]
mod tests;
