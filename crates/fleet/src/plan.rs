//! `plan`: host by host, what a render would change compared with the last one.
//!
//! The last render is remembered as `state.json` in the output directory: every rendered
//! host's [`HostConfig`], which holds no secret, so the state can sit next to rendered files
//! in review or in CI artifacts.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::HostConfig;
use crate::diff::{diff_peers, FieldChange, PeerChange, PeerState};
use crate::error::{Error, SourceError};
use crate::names::Name;
use crate::serde_stream::MapOnce;

/// The state file's name inside the output directory.
pub const STATE_FILE: &str = "state.json";
const VERSION: u32 = 1;

/// What was rendered last, per host: its configuration, or (`C`) only the part of it a
/// reader needs, so that the rest is skipped rather than built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderedState<C = HostConfig> {
    version: u32,
    /// Each rendered host's configuration.
    pub hosts: BTreeMap<Name, C>,
}

impl<C> Default for RenderedState<C> {
    /// The state of a directory nothing was rendered into.
    fn default() -> Self {
        Self { version: 0, hosts: BTreeMap::new() }
    }
}

impl RenderedState {
    /// A state holding `configs`.
    pub fn new<'a>(configs: impl IntoIterator<Item = &'a HostConfig>) -> Self {
        Self {
            version: VERSION,
            hosts: configs.into_iter().map(|c| (c.host.clone(), c.clone())).collect(),
        }
    }

    /// The state file's text: pretty JSON, sorted, ending in a newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
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

impl<C> RenderedState<C> {
    /// Writes this state with `configs` (in name order) as its hosts, exactly as
    /// [`Self::to_json`] would, without holding them all: a render of a large fabric streams
    /// its state.
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
        struct Streamed<I> {
            version: u32,
            hosts: MapOnce<I>,
        }
        let hosts = MapOnce::new(configs.map(|config| (config.borrow().host.clone(), config)));
        serde_json::to_writer_pretty(&mut out, &Streamed { version: self.version, hosts })?;
        out.write_all(b"\n")
    }
}

/// An interface setting that changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SettingChange {
    /// Which setting (`addresses`, `listen_port`, `mtu`, ...).
    pub setting: &'static str,
    /// Before, as text.
    pub old: String,
    /// After, as text.
    pub new: String,
}

/// What happens to one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum HostPlan {
    /// A host rendered for the first time.
    Added {
        /// The host.
        host: Name,
        /// Its peers.
        peers: Vec<Name>,
    },
    /// A host that is no longer in the inventory.
    Removed {
        /// The host.
        host: Name,
    },
    /// A host whose configuration changes.
    Changed {
        /// The host.
        host: Name,
        /// Interface settings that change.
        settings: Vec<SettingChange>,
        /// Peers added, removed or changed, by name.
        peers: Vec<PeerChange<Name>>,
    },
}

/// Compares the desired configurations with the last rendered state. Only changed hosts are
/// listed, in name order.
pub fn plan(desired: &[HostConfig], last: &RenderedState) -> Vec<HostPlan> {
    let desired: BTreeMap<&Name, &HostConfig> = desired.iter().map(|c| (&c.host, c)).collect();
    let mut plans = Vec::new();
    let hosts: std::collections::BTreeSet<&Name> =
        desired.keys().copied().chain(last.hosts.keys()).collect();
    for host in hosts {
        match (desired.get(host), last.hosts.get(host)) {
            (Some(new), None) => plans.push(HostPlan::Added {
                host: host.clone(),
                peers: new.peers.iter().map(|peer| peer.name.clone()).collect(),
            }),
            (None, Some(_)) => plans.push(HostPlan::Removed { host: host.clone() }),
            (Some(new), Some(old)) => {
                let settings = setting_changes(old, new);
                let by_name = |config: &HostConfig| -> BTreeMap<Name, PeerState> {
                    config.peers.iter().map(|p| (p.name.clone(), PeerState::from(p))).collect()
                };
                let peers = diff_peers(&by_name(new), &by_name(old));
                if !settings.is_empty() || !peers.is_empty() {
                    plans.push(HostPlan::Changed { host: host.clone(), settings, peers });
                }
            }
            (None, None) => {}
        }
    }
    plans
}

fn setting_changes(old: &HostConfig, new: &HostConfig) -> Vec<SettingChange> {
    let text = |value: &dyn core::fmt::Debug| format!("{value:?}");
    let pairs: [(&'static str, String, String); 7] = [
        ("addresses", text(&old.addresses), text(&new.addresses)),
        ("listen_port", text(&old.listen_port), text(&new.listen_port)),
        ("mtu", old.mtu.to_string(), new.mtu.to_string()),
        ("tunnel", text(&old.tunnel), text(&new.tunnel)),
        ("public_key", old.public_key.to_base64(), new.public_key.to_base64()),
        ("interface", old.interface.clone(), new.interface.clone()),
        (
            "relay_order",
            text(&old.failover.as_ref().map(|f| &f.relays)),
            text(&new.failover.as_ref().map(|f| &f.relays)),
        ),
    ];
    pairs
        .into_iter()
        .filter(|(_, old, new)| old != new)
        .map(|(setting, old, new)| SettingChange { setting, old, new })
        .collect()
}

/// The plan for people: one block per host, `+`/`-`/`~` per peer.
pub fn plan_text(plans: &[HostPlan]) -> String {
    if plans.is_empty() {
        return "No changes: every host matches the last render.\n".into();
    }
    let mut out = String::new();
    for host_plan in plans {
        match host_plan {
            HostPlan::Added { host, peers } => {
                let names: Vec<&str> = peers.iter().map(Name::as_str).collect();
                let _ = writeln!(out, "+ {host}: new host, peers: {}", names.join(", "));
            }
            HostPlan::Removed { host } => {
                let _ = writeln!(out, "- {host}: removed from the inventory");
            }
            HostPlan::Changed { host, settings, peers } => {
                let _ = writeln!(out, "~ {host}:");
                for change in settings {
                    let _ =
                        writeln!(out, "    ~ {}: {} -> {}", change.setting, change.old, change.new);
                }
                for change in peers {
                    peer_line(&mut out, change);
                }
            }
        }
    }
    let _ = writeln!(out, "{} host(s) change.", plans.len());
    out
}

fn peer_line(out: &mut String, change: &PeerChange<Name>) {
    let cidrs = |list: &[crate::cidr::Cidr]| {
        list.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    };
    match change {
        PeerChange::Added { peer, state } => {
            let allowed: Vec<_> = state.allowed_ips.iter().copied().collect();
            let _ = writeln!(out, "    + peer {peer} (allowed {})", cidrs(&allowed));
        }
        PeerChange::Removed { peer, .. } => {
            let _ = writeln!(out, "    - peer {peer}");
        }
        PeerChange::Changed { peer, fields } => {
            let _ = writeln!(out, "    ~ peer {peer}:");
            for field in fields {
                let _ = match field {
                    FieldChange::PublicKey { old, new } => {
                        writeln!(out, "        public key {old} -> {new}")
                    }
                    FieldChange::Endpoint { old, new } => {
                        writeln!(out, "        endpoint {old:?} -> {new:?}")
                    }
                    FieldChange::AllowedIps { added, removed } => {
                        if !added.is_empty() {
                            let _ = writeln!(out, "        + allowed {}", cidrs(added));
                        }
                        if removed.is_empty() {
                            Ok(())
                        } else {
                            writeln!(out, "        - allowed {}", cidrs(removed))
                        }
                    }
                    FieldChange::PersistentKeepalive { old, new } => {
                        writeln!(out, "        keepalive {old:?} -> {new:?}")
                    }
                };
            }
        }
    }
}
