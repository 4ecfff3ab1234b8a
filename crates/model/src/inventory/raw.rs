//! The inventory exactly as written: serde structures that refuse unknown fields and parse
//! prefixes, endpoints and keys where they stand, so that `toml` reports those mistakes with
//! their line. Cross-references and defaults are resolved in the parent module.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;
use wgfabric_proto::keys::PublicKey;

use super::model::{Role, Topology, Tunnel};
use crate::cidr::Cidr;
use crate::endpoint::Endpoint;
use crate::host_path::HostPath;
use crate::key_source::KeySource;
use crate::names::{Name, Text};
use crate::paths::DirectMode;
use crate::policy::{PortSpec, Selector, Verdict};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInventory {
    #[serde(default)]
    pub(super) defaults: RawDefaults,
    #[serde(default)]
    pub(super) keys: RawKeys,
    #[serde(default)]
    pub(super) network: BTreeMap<Spanned<Name>, Spanned<RawNetwork>>,
    #[serde(default)]
    pub(super) host: BTreeMap<Spanned<Name>, Spanned<RawHost>>,
    #[serde(default)]
    pub(super) external: BTreeMap<Spanned<Name>, Spanned<RawExternal>>,
    #[serde(default)]
    pub(super) policy: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub(super) name: Option<Spanned<Name>>,
    pub(super) from: Spanned<Vec<Spanned<Selector>>>,
    pub(super) to: Spanned<Vec<Spanned<Selector>>>,
    #[serde(default)]
    pub(super) ports: Vec<PortSpec>,
    #[serde(default)]
    pub(super) action: Verdict,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDefaults {
    pub(super) mtu: Option<u16>,
    pub(super) underlay_mtu: Option<u16>,
    pub(super) keepalive: Option<u16>,
    pub(super) key_dir: Option<HostPath>,
    pub(super) key_source: Option<KeySource>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKeys {
    #[serde(default)]
    pub(super) recipients: Vec<Spanned<String>>,
    pub(super) dir: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNetwork {
    pub(super) ipv4: Option<Spanned<Cidr>>,
    pub(super) ipv6: Option<Spanned<Cidr>>,
    #[serde(default)]
    pub(super) topology: Topology,
    pub(super) interface: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) direct: DirectMode,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHost {
    pub(super) network: Option<Spanned<Name>>,
    pub(super) role: Option<Spanned<Role>>,
    pub(super) endpoint: Option<Endpoint>,
    pub(super) listen_port: Option<u16>,
    #[serde(deserialize_with = "crate::serde_keys::deserialize")]
    pub(super) public_key: PublicKey,
    #[serde(default)]
    pub(super) nat: bool,
    #[serde(default)]
    pub(super) routes: Vec<Spanned<Cidr>>,
    #[serde(default)]
    pub(super) groups: Vec<Name>,
    #[serde(default)]
    pub(super) tunnel: Tunnel,
    pub(super) mtu: Option<u16>,
    pub(super) underlay_mtu: Option<u16>,
    pub(super) keepalive: Option<u16>,
    pub(super) priority: Option<Spanned<u32>>,
    pub(super) key_file: Option<Spanned<HostPath>>,
    pub(super) key_source: Option<Spanned<KeySource>>,
    #[serde(default)]
    pub(super) strict_input: bool,
    pub(super) open_ports: Option<Vec<PortSpec>>,
    pub(super) direct: Option<Spanned<DirectMode>>,
    pub(super) site: Option<Spanned<Name>>,
    pub(super) lan: Option<Spanned<Vec<Spanned<IpAddr>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExternal {
    pub(super) cidr: Cidr,
    pub(super) kind: Option<Text>,
    pub(super) host: Option<Spanned<Name>>,
    pub(super) description: Option<Text>,
}
