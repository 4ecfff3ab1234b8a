//! Renderers: pure functions from [`HostConfig`] (or the whole [`Fabric`]) to file contents.
//!
//! Output is deterministic: the same inventory and lock give the same bytes, so a review diff
//! shows exactly what changed. Private keys stay on the hosts (the files point at the key
//! file) unless a decrypted key is passed in, in which case the file is marked secret and
//! written with mode 0600.

mod ansible;
mod export;
pub mod graph;
mod networkd;
mod setconf;
mod wg_quick;

use core::fmt;
use std::fmt::Write as _;
use std::path::PathBuf;

use wgfabric_proto::keys::PrivateKey;
use zeroize::Zeroize;

pub use ansible::ansible_inventory;
pub use export::{fabric_json, terraform_json};
pub use networkd::{networkd_netdev, networkd_network};
pub use setconf::setconf;
pub use wg_quick::wg_quick;

use crate::cidr::Cidr;
use crate::config::{HostConfig, PeerConfig};
use crate::error::Error;
use crate::fabric::Fabric;
use crate::keystore::{Identities, KeyStore};
use crate::plan::RenderedState;

/// An output format of `render`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
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
    let dir = PathBuf::from(config.host.as_str());
    let file = |name: String, contents: String| RenderedFile {
        path: dir.join(name),
        contents,
        secret: key.is_some(),
    };
    let iface = &config.interface;
    match format {
        Format::WgQuick => vec![file(format!("{iface}.conf"), wg_quick(config, key))],
        Format::Networkd => vec![
            file(format!("50-{iface}.netdev"), networkd_netdev(config, key)),
            RenderedFile {
                path: dir.join(format!("50-{iface}.network")),
                contents: networkd_network(config),
                secret: false,
            },
        ],
        Format::Setconf => vec![file(format!("{iface}.setconf"), setconf(config, key))],
        Format::Nftables => config
            .firewall
            .iter()
            .map(|firewall| RenderedFile {
                path: dir.join("nftables.conf"),
                contents: nftables_conf(config, firewall),
                secret: false,
            })
            .collect(),
        Format::Json | Format::Terraform | Format::Ansible => Vec::new(),
    }
}

/// The fabric-wide file of a format, if it has one.
pub fn fabric_files(
    fabric: &Fabric,
    configs: &[HostConfig],
    format: Format,
) -> Option<RenderedFile> {
    let (path, contents) = match format {
        Format::Json => ("fabric.json", fabric_json(fabric, configs)),
        Format::Terraform => ("terraform.json", terraform_json(fabric)),
        Format::Ansible => ("ansible-inventory.yml", ansible_inventory(fabric)),
        Format::WgQuick | Format::Networkd | Format::Setconf | Format::Nftables => return None,
    };
    Some(RenderedFile { path: PathBuf::from(path), contents, secret: false })
}

/// What to render.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// One host, or every host when `None`. Fabric-wide formats always cover every host.
    pub host: Option<&'a str>,
    /// The formats to produce.
    pub formats: &'a [Format],
    /// Central mode: identities that open `keys/HOST.age`, whose keys are then inlined.
    pub identities: Option<&'a Identities>,
}

/// Everything a render produced, not yet written anywhere.
#[derive(Debug)]
pub struct Rendered {
    /// The files, per host in host order then fabric-wide ones.
    pub files: Vec<RenderedFile>,
    /// The configurations of the hosts rendered.
    pub configs: Vec<HostConfig>,
}

/// Renders the requested formats. Nothing is written: a caller writes [`Rendered::files`]
/// only if this succeeded as a whole.
///
/// # Errors
/// [`Error::NotFound`] for an unknown host; in central mode, whatever decrypting a key
/// reports (a missing file, the wrong identity, a key that does not match the inventory).
pub fn render(fabric: &Fabric, request: Request<'_>) -> Result<Rendered, Error> {
    let configs: Vec<HostConfig> = match request.host {
        Some(host) => vec![fabric.host_config(host)?],
        None => fabric.host_configs().collect(),
    };
    let store = request.identities.map(|_| KeyStore::new(fabric.inventory())).transpose()?;
    let mut files = Vec::new();
    for config in &configs {
        let key = match (&store, request.identities) {
            (Some(store), Some(identities)) => {
                Some(store.load(config.host.as_str(), &config.public_key, identities)?)
            }
            _ => None,
        };
        for format in request.formats.iter().filter(|f| f.is_per_host()) {
            files.extend(host_files(config, key.as_ref(), *format));
        }
    }
    let fabric_wide: Vec<Format> =
        request.formats.iter().copied().filter(|f| !f.is_per_host()).collect();
    if !fabric_wide.is_empty() {
        let all: Vec<HostConfig> = match request.host {
            Some(_) => fabric.host_configs().collect(),
            None => configs.clone(),
        };
        files.extend(
            fabric_wide.into_iter().filter_map(|format| fabric_files(fabric, &all, format)),
        );
    }
    Ok(Rendered { files, configs })
}

/// Files a previous render wrote for hosts that are no longer in the fabric, relative to the
/// output directory, so a full render can remove them.
pub fn stale_files(last: &RenderedState, fabric: &Fabric) -> Vec<PathBuf> {
    last.hosts
        .values()
        .filter(|config| !fabric.inventory().hosts.contains_key(&config.host))
        .flat_map(|config| {
            let formats = Format::ALL.into_iter().filter(|f| f.is_per_host());
            formats
                .flat_map(|format| host_files(config, None, format))
                .map(|file| file.path.clone())
        })
        .collect()
}

/// Comma-separated prefixes, as wg-quick and `wg` write them.
pub(crate) fn join_cidrs(cidrs: &[Cidr], separator: &str) -> String {
    cidrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(separator)
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
        let _ = writeln!(out, "# wgfabric:failover-routes {}", join_cidrs(&failover.routes, " "));
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
        let _ = writeln!(out, "AllowedIPs{eq}{}", join_cidrs(&peer.allowed_ips, separator));
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
pub(crate) fn forwards(config: &HostConfig) -> bool {
    config.role == crate::inventory::Role::Relay || !config.routes.is_empty()
}

#[cfg(test)]
mod tests;
