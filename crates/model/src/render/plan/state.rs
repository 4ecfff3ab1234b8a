//! `state.json`: what the last render was made from.
//!
//! Every rendered file is a function of this state: the per-host files of the host's
//! [`HostConfig`], the fabric-wide exports (`fabric.json`, `terraform.json`, the Ansible
//! inventory) of the configurations plus the few inventory facts they also show (a host's own
//! endpoint, NAT flag and groups; each network's prefixes, topology, interface and relay
//! order). So two renders write the same bytes exactly when their states are equal, which is
//! what `plan` relies on. Nothing here is secret.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::cidr::Cidr;
use crate::config::HostConfig;
use crate::endpoint::Endpoint;
use crate::error::{Error, SourceError};
use crate::fabric::Fabric;
use crate::inventory::Topology;
use crate::names::Name;
use crate::serde_stream::MapOnce;

/// The state file's name inside the output directory.
pub const STATE_FILE: &str = "state.json";
const VERSION: u32 = 1;

/// What was rendered last: each host's configuration, or (`C`) only the part of it a reader
/// needs, so that the rest is skipped rather than built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderedState<C = HostConfig> {
    version: u32,
    /// Each rendered host's configuration.
    pub hosts: BTreeMap<Name, C>,
    /// What the fabric-wide exports show of each host beyond its configuration.
    #[serde(default)]
    pub exports: BTreeMap<Name, HostExports>,
    /// Every network, as the fabric-wide exports show it.
    #[serde(default)]
    pub networks: BTreeMap<Name, NetworkState>,
}

/// A host's inventory facts that only the fabric-wide exports show.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostExports {
    /// Its own endpoint (its peers' configurations show it too, but a host may have none).
    pub endpoint: Option<Endpoint>,
    /// Whether it is behind NAT.
    pub nat: bool,
    /// Its groups.
    pub groups: Vec<Name>,
}

/// A network as the fabric-wide exports show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkState {
    /// IPv4 overlay prefix.
    pub ipv4: Option<Cidr>,
    /// IPv6 overlay prefix.
    pub ipv6: Option<Cidr>,
    /// How its hosts peer.
    pub topology: Topology,
    /// Interface name on its hosts.
    pub interface: String,
    /// Its relays, most preferred first.
    pub relay_order: Vec<Name>,
}

impl<C> Default for RenderedState<C> {
    /// The state of a directory nothing was rendered into.
    fn default() -> Self {
        Self {
            version: 0,
            hosts: BTreeMap::new(),
            exports: BTreeMap::new(),
            networks: BTreeMap::new(),
        }
    }
}

impl RenderedState {
    /// The state a full render of `fabric` records.
    pub fn of(fabric: &Fabric) -> Self {
        let configs: Vec<HostConfig> = fabric.host_configs().collect();
        Self::default().after_render(fabric, &configs, true)
    }

    /// The state after rendering `configs` of `fabric` on top of this one: a full render
    /// replaces every host, a render of some hosts replaces only theirs. The networks and
    /// every host's exported facts always come from `fabric`, since the fabric-wide exports
    /// cover every host.
    #[must_use]
    pub fn after_render(mut self, fabric: &Fabric, configs: &[HostConfig], full: bool) -> Self {
        if full {
            self.hosts.clear();
        }
        self.hosts.extend(configs.iter().map(|config| (config.host.clone(), config.clone())));
        self.with_facts(fabric)
    }

    /// The state file's text: pretty JSON, sorted, ending in a newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }
}

impl<C> RenderedState<C> {
    /// This state with the networks and every host's exported facts of `fabric` (the
    /// fabric-wide exports cover every host, whichever hosts were rendered).
    #[must_use]
    pub fn with_facts(mut self, fabric: &Fabric) -> Self {
        let inventory = fabric.inventory();
        self.version = VERSION;
        self.exports = inventory
            .hosts
            .values()
            .map(|host| {
                let exports = HostExports {
                    endpoint: host.endpoint.clone(),
                    nat: host.nat,
                    groups: host.groups.clone(),
                };
                (host.name.clone(), exports)
            })
            .collect();
        self.networks = inventory
            .networks
            .values()
            .map(|network| {
                let state = NetworkState {
                    ipv4: network.ipv4,
                    ipv6: network.ipv6,
                    topology: network.topology,
                    interface: network.interface.clone(),
                    relay_order: fabric.relay_order(network.name.as_str()).to_vec(),
                };
                (network.name.clone(), state)
            })
            .collect();
        self
    }

    /// Writes this state with `configs` (in name order) as its hosts, exactly as
    /// [`RenderedState::to_json`] would, without holding them all: a render of a large fabric
    /// streams its state.
    ///
    /// # Errors
    /// Whatever writing to `out` reports.
    pub fn write_json<H>(
        &self,
        configs: impl Iterator<Item = H>,
        mut out: impl std::io::Write,
    ) -> std::io::Result<()>
    where
        H: Borrow<HostConfig> + Serialize,
    {
        #[derive(Serialize)]
        #[serde(bound = "MapOnce<I>: Serialize")]
        struct Streamed<'a, I> {
            version: u32,
            hosts: MapOnce<I>,
            exports: &'a BTreeMap<Name, HostExports>,
            networks: &'a BTreeMap<Name, NetworkState>,
        }
        let hosts = MapOnce::new(configs.map(|config| (config.borrow().host.clone(), config)));
        let streamed = Streamed {
            version: self.version,
            hosts,
            exports: &self.exports,
            networks: &self.networks,
        };
        serde_json::to_writer_pretty(&mut out, &streamed)?;
        out.write_all(b"\n")
    }
}

impl<C: DeserializeOwned> RenderedState<C> {
    /// Reads `state.json`; a missing file is an empty state (nothing rendered yet).
    ///
    /// # Errors
    /// [`Error::Io`], or [`Error::Source`] if the file is not a state file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(Error::io(path, e)),
        };
        let state: Self = serde_json::from_str(&text).map_err(|e| SourceError {
            file: path.to_owned(),
            line: e.line(),
            column: e.column(),
            field: "(state)".into(),
            message: format!("{e}; render again to rewrite it"),
        })?;
        Ok(state)
    }
}
