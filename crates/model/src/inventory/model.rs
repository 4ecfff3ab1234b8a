//! The validated inventory: every cross-reference resolved and every default applied, so the
//! rest of the controller never looks at raw input.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use wgfabric_proto::keys::PublicKey;

use crate::cidr::Cidr;
use crate::endpoint::Endpoint;
use crate::key_source::KeySource;
use crate::names::{Name, Text};
use crate::paths::DirectMode;
use crate::policy::{PortSpec, Rule};
use crate::toml_position::Positions;

/// What a host does in its network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A stable endpoint that peers with every host of its network and forwards between them.
    Relay,
    /// Peers only with the relays.
    Spoke,
    /// Peers directly with every other mesh member, and with the relays.
    Mesh,
}

impl Role {
    /// The inventory spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Relay => "relay",
            Self::Spoke => "spoke",
            Self::Mesh => "mesh",
        }
    }
}

/// Which traffic a host sends into the fabric.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tunnel {
    /// Only the overlay and the routed subnets (the default).
    #[default]
    Split,
    /// Everything (`0.0.0.0/0` and `::/0`) through the primary relay.
    Full,
}

impl Tunnel {
    /// The inventory spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Split => "split",
            Self::Full => "full",
        }
    }
}

/// How the hosts of a network peer with each other.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Topology {
    /// Relays and spokes (the default).
    #[default]
    HubAndSpoke,
    /// Every host peers with every other host.
    Mesh,
    /// Mesh members peer with each other and with the relays; spokes only with the relays.
    Mixed,
}

impl Topology {
    /// The inventory spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::HubAndSpoke => "hub-and-spoke",
            Self::Mesh => "mesh",
            Self::Mixed => "mixed",
        }
    }

    /// Whether hosts of `role` may appear in a network of this topology.
    pub const fn allows(self, role: Role) -> bool {
        match self {
            Self::HubAndSpoke => !matches!(role, Role::Mesh),
            Self::Mesh => matches!(role, Role::Mesh),
            Self::Mixed => true,
        }
    }

    /// The role of a host that does not name one.
    pub const fn default_role(self) -> Role {
        match self {
            Self::Mesh => Role::Mesh,
            Self::HubAndSpoke | Self::Mixed => Role::Spoke,
        }
    }
}

/// An overlay network: one WireGuard interface on each of its hosts.
#[derive(Debug, Clone)]
pub struct Network {
    /// Its name.
    pub name: Name,
    /// IPv4 overlay prefix, if any.
    pub ipv4: Option<Cidr>,
    /// IPv6 overlay prefix, if any.
    pub ipv6: Option<Cidr>,
    /// How its hosts peer.
    pub topology: Topology,
    /// Interface name on every host (default `wg0`).
    pub interface: String,
    /// Whether its spokes may try direct paths (default auto).
    pub direct: DirectMode,
    /// Line of its table in the inventory.
    pub line: usize,
}

impl Network {
    /// The overlay prefixes, IPv4 first.
    pub fn overlays(&self) -> impl Iterator<Item = Cidr> + '_ {
        self.ipv4.iter().chain(self.ipv6.iter()).copied()
    }
}

/// One machine of the fabric, with every default applied.
#[derive(Debug, Clone)]
pub struct Host {
    /// Its name.
    pub name: Name,
    /// The network it belongs to.
    pub network: Name,
    /// What it does there.
    pub role: Role,
    /// Where peers reach it, if anywhere.
    pub endpoint: Option<Endpoint>,
    /// UDP port it listens on (default: the endpoint's port; none means a random port).
    pub listen_port: Option<u16>,
    /// Its identity.
    pub public_key: PublicKey,
    /// Whether it sits behind NAT.
    pub nat: bool,
    /// Subnets reachable through it (VPC or pod CIDRs).
    pub routes: Vec<Cidr>,
    /// Free-form groups (become Ansible groups).
    pub groups: Vec<Name>,
    /// Split or full tunnel.
    pub tunnel: Tunnel,
    /// Interface MTU (default 1420).
    pub mtu: u16,
    /// MTU of the path under the tunnel (default 1500), for the MTU lint.
    pub underlay_mtu: u16,
    /// PersistentKeepalive toward its peers, in seconds; `None` for off.
    pub keepalive: Option<u16>,
    /// Relay priority: lower is preferred (default 100; ties broken by name).
    pub priority: u32,
    /// Where the host reads its private key (default: the file `/etc/wgfabric/private.key`).
    pub key_source: KeySource,
    /// Whether only the WireGuard port, replies, ICMP and `open_ports` may come in on the
    /// underlay.
    pub strict_input: bool,
    /// Ports open on the underlay under `strict_input` (default: `tcp/22`).
    pub open_ports: Vec<PortSpec>,
    /// Whether this spoke tries direct paths to other spokes (default auto).
    pub direct: DirectMode,
    /// Its site: hosts of one site offer each other their LAN addresses.
    pub site: Option<Name>,
    /// LAN addresses to offer same-site hosts, instead of its interfaces' addresses.
    pub lan: Vec<IpAddr>,
    /// Line of its table in the inventory.
    pub line: usize,
}

/// A network outside the overlay the fabric must know about: a cloud VPC, a pod CIDR, a LAN.
#[derive(Debug, Clone)]
pub struct External {
    /// Its name.
    pub name: Name,
    /// Its prefix.
    pub cidr: Cidr,
    /// Free-form kind (`vpc`, `pods`, `lan`, ...).
    pub kind: Option<Text>,
    /// The host it sits behind, when the fabric routes it.
    pub host: Option<Name>,
    /// Free-form description.
    pub description: Option<Text>,
    /// Line of its table in the inventory.
    pub line: usize,
}

/// Settings of central key mode.
#[derive(Debug, Clone)]
pub struct KeySettings {
    /// age recipients (`age1...`) every encrypted private key is readable by.
    pub recipients: Vec<String>,
    /// Directory of the encrypted keys, relative to the inventory (default `keys`).
    pub dir: PathBuf,
}

/// A validated inventory.
#[derive(Debug, Clone)]
pub struct Inventory {
    /// The file it was read from.
    pub path: PathBuf,
    /// Networks by name.
    pub networks: BTreeMap<Name, Network>,
    /// Hosts by name.
    pub hosts: BTreeMap<Name, Host>,
    /// External networks by name.
    pub externals: BTreeMap<Name, External>,
    /// Central key mode settings.
    pub keys: KeySettings,
    /// Access policy rules, in order; empty for none (everything passes).
    pub policy: Vec<Rule>,
    /// Where each field was written, for findings.
    pub(crate) positions: Positions,
}

impl Inventory {
    /// The network a host belongs to. Validation guarantees it exists.
    pub fn network_of(&self, host: &Host) -> &Network {
        &self.networks[&host.network]
    }

    /// The directory holding the inventory (where the lock file and `keys/` live).
    pub fn dir(&self) -> PathBuf {
        self.path.parent().map(PathBuf::from).unwrap_or_default()
    }
}
