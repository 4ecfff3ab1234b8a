//! `wgfabric up` and `wgfabric down`: one host's interface brought up from its desired state
//! the way wg-quick would bring up its file, without wg-quick, `wg` or `ip`, and taken down
//! again leaving the host as it was.
//!
//! ```text
//!  desired state ──► private key (key source) ──► daemon (adopted, or started)
//!  (fabric.json or      │ cannot: nothing done        │
//!   a source of truth)  ▼                             ▼
//!            userspace API: key, port, peers, fwmark ──► netlink: addresses, MTU, up,
//!            routes, full-tunnel rules and table ──► /proc/sys: src_valid_mark
//!
//!  every change is recorded in STATE_DIR/IFACE.json before the next one is made
//!  a failure undoes the record, newest first; `down` undoes it from the file
//! ```
//!
//! `up` changes only what is not so already: an address the interface has is not added (nor
//! removed by `down`), a parameter with the wanted value is not recorded. Routes go into the
//! main table, except the default routes of a full tunnel, which get wg-quick's policy
//! routing ([`tunnel`]). `down` stops the daemon that `up` started by deleting its
//! interface, as wg-quick does; an adopted daemon keeps running, with its peers and key,
//! unless asked to stop.

mod daemon;
mod record;
mod source;
pub mod tunnel;

use std::path::{Path, PathBuf};

use wgfabric_proto::uapi::SetRequest;

pub use record::{Applied, DaemonUse, FwMark, LinkBefore, RECORD_FORMAT};
pub use source::{DesiredStateError, HostSource, FABRIC_JSON};

use self::record::Journal;
use wgfabric_model::cidr::Cidr;
use wgfabric_model::config::HostConfig;
use wgfabric_model::inventory::{is_interface_name, Role};
use wgfabric_model::names::Name;
use wgfabric_model::sealed_keys::Identities;
use wgfabric_store::state::DesiredState;
use wgfabric_uapi::{Device, DeviceError};

use crate::agent::{forward, request_for, KeyRing, Keys, LinkError, RngCoreCrypto, SecretsError};
use crate::netlink::{Netlink, NetlinkError, Route, MAIN_TABLE};
use crate::sysctl::{self, SysctlError};

/// Where the records of interfaces brought up are kept unless told otherwise.
pub const DEFAULT_STATE_DIR: &str = "/run/wgfabric";

/// Why `up` or `down` failed. Never holds a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpError {
    /// The interface name asked for is not one.
    #[error(
        "`{}` is not an interface name (1 to 15 letters, digits, `-`, `_` or `.`)",
        .0.escape_debug()
    )]
    InterfaceName(String),
    /// The private key could not be fetched, or is not the host's.
    #[error("the private key of `{host}`: {reason}")]
    Key {
        /// The host.
        host: Name,
        /// Why.
        reason: SecretsError,
    },
    /// The daemon is missing, would not start or would not stop.
    #[error("{0}")]
    Daemon(String),
    /// The daemon refused a request.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The kernel refused a request.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// A kernel parameter could not be read or written.
    #[error(transparent)]
    Sysctl(#[from] SysctlError),
    /// The record of what was done could not be read or written.
    #[error("{}: {cause}", path.display())]
    Record {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        cause: String,
    },
    /// A record that does not parse as one.
    #[error("{}", located(.path, .cause))]
    MalformedRecord {
        /// The record.
        path: PathBuf,
        /// Where and why it does not parse.
        cause: serde_json::Error,
    },
    /// The interface was brought up already.
    #[error(
        "{interface} is up already ({} records it): run `wgfabric down {interface}` first",
        record.display()
    )]
    AlreadyUp {
        /// The interface.
        interface: String,
        /// Its record.
        record: PathBuf,
    },
    /// `down` of an interface that `up` did not bring up.
    #[error("`wgfabric up` brought no interface `{interface}` up (there is no {})", record.display())]
    NotUp {
        /// The interface.
        interface: String,
        /// Where its record would be.
        record: PathBuf,
    },
    /// A step failed, and undoing what came before it failed too.
    #[error(
        "{error}; undoing what was done failed too: {undo}. What is left is recorded in {}: \
         run `wgfabric down {interface}` once the cause is fixed",
        record.display()
    )]
    Stuck {
        /// The first failure.
        error: Box<Self>,
        /// The failures of the undoing.
        undo: String,
        /// The interface.
        interface: String,
        /// Its record.
        record: PathBuf,
    },
}

impl From<LinkError> for UpError {
    fn from(error: LinkError) -> Self {
        match error {
            LinkError::Netlink(error) => Self::Netlink(error),
            LinkError::Sysctl(error) => Self::Sysctl(error),
        }
    }
}

/// A JSON error as `FILE:LINE:COLUMN: what`, the position said once.
fn located(path: &Path, error: &serde_json::Error) -> String {
    let (line, column) = (error.line(), error.column());
    let text = error.to_string();
    let what = text.strip_suffix(&format!(" at line {line} column {column}")).unwrap_or(&text);
    format!("{}:{line}:{column}: {what}", path.display())
}

/// How `up` works.
#[derive(Debug)]
pub struct UpSettings {
    /// The interface, instead of the one the network names.
    pub interface: Option<String>,
    /// Where records are kept ([`DEFAULT_STATE_DIR`]).
    pub state_dir: PathBuf,
    /// The daemon to start [default: `wgfabricd` beside this executable, else on `PATH`].
    pub daemon: Option<PathBuf>,
    /// The private key file, instead of the host's key source.
    pub key_file: Option<PathBuf>,
    /// age identities that open sealed keys (central mode, preshared keys).
    pub identities: Option<Identities>,
}

impl UpSettings {
    /// The defaults.
    pub fn new() -> Self {
        Self {
            interface: None,
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            daemon: None,
            key_file: None,
            identities: None,
        }
    }
}

impl Default for UpSettings {
    fn default() -> Self {
        Self::new()
    }
}

/// Brings up `doc`'s interface. `rng` makes a next key only when `doc` orders a rotation of
/// this host, as the agent would.
///
/// # Errors
/// The first step that failed, after everything done before it was undone; or
/// [`UpError::Stuck`] when undoing failed too. A key that cannot be fetched fails before
/// anything is changed.
pub fn up(
    doc: &DesiredState,
    settings: UpSettings,
    rng: Box<dyn RngCoreCrypto>,
) -> Result<Applied, UpError> {
    let renamed;
    let doc = match settings.interface {
        Some(name) if !is_interface_name(&name) => return Err(UpError::InterfaceName(name)),
        Some(name) => {
            renamed = DesiredState {
                config: HostConfig { interface: name, ..doc.config.clone() },
                ..doc.clone()
            };
            &renamed
        }
        None => doc,
    };
    let config = &doc.config;
    let interface = config.interface.as_str();
    let record = record::path(&settings.state_dir, interface);
    if record.exists() {
        return Err(UpError::AlreadyUp { interface: interface.to_owned(), record });
    }
    let keys = KeyRing::new(settings.key_file, settings.identities, rng)
        .resolve(doc, interface)
        .map_err(|reason| UpError::Key { host: config.host.clone(), reason })?;
    let mut journal =
        Journal::create(record.clone(), Applied::new(config.host.clone(), interface.to_owned()))?;
    let device = Device::new(interface);
    let steps = (|| {
        let daemon = daemon::attach(&device, interface, settings.daemon.as_deref())?;
        journal.note(|applied| applied.daemon = Some(daemon))?;
        let live = device.get()?;
        let mut request = request_for(doc, &keys, &live);
        let mut netlink = Netlink::open()?;
        let full = !tunnel::default_routes(config).is_empty();
        let table =
            if full { Some(tunnel::choose_table(&mut netlink, live.fwmark)?) } else { None };
        if let Some(mark) = table.filter(|mark| *mark != live.fwmark) {
            request.fwmark = Some(mark);
            journal.note(|applied| applied.fwmark = Some(FwMark { mark, before: live.fwmark }))?;
        }
        set_device(&device, &request, &mut journal, &keys)?;
        journal.note(|applied| applied.peers = config.peers.len())?;
        configure_link(&mut netlink, doc, table, &mut journal)
    })();
    match steps {
        Ok(()) => Ok(journal.into_applied()),
        Err(error) => {
            let (left, failures) = undo(journal.applied().clone(), false);
            let settled = journal.settle(left);
            if failures.is_empty() && settled.is_ok() {
                return Err(error);
            }
            let mut undo = failures;
            undo.extend(settled.err().map(|error| error.to_string()));
            Err(UpError::Stuck {
                error: Box::new(error),
                undo: undo.join("; "),
                interface: interface.to_owned(),
                record,
            })
        }
    }
}

/// Sends `request` and records the key it set.
fn set_device(
    device: &Device,
    request: &SetRequest,
    journal: &mut Journal,
    keys: &Keys,
) -> Result<(), UpError> {
    device.set(request)?;
    let public_key = keys.current.public_key().to_base64();
    let source = keys.fetched_from.clone().unwrap_or_else(|| "the sealed private key".to_owned());
    journal.note(|applied| {
        applied.public_key = Some(public_key);
        applied.key_source = Some(source);
    })
}

/// Addresses, MTU, link state, routes and, for a full tunnel in `table`, its rules and
/// `src_valid_mark`: each recorded as soon as it is made.
fn configure_link(
    netlink: &mut Netlink,
    doc: &DesiredState,
    table: Option<u32>,
    journal: &mut Journal,
) -> Result<(), UpError> {
    let config = &doc.config;
    let interface = config.interface.as_str();
    let link = netlink.link(interface)?;
    let present = netlink.addresses(link.index)?;
    for address in config.addresses.iter().filter(|address| !present.contains(address)) {
        netlink.add_address(interface, link.index, *address)?;
        journal.note(|applied| applied.addresses.push(*address))?;
    }
    let mtu = u32::from(config.mtu);
    if link.mtu != mtu || !link.up {
        netlink.set_link(interface, (link.mtu != mtu).then_some(mtu), Some(true))?;
        journal.note(|applied| {
            applied.link_before = Some(LinkBefore { mtu: link.mtu, up: link.up });
        })?;
    }
    let main = netlink.routes(MAIN_TABLE)?;
    for destination in config.tunnel_routes() {
        let route = match table.filter(|_| destination.is_default_route()) {
            Some(table) => tunnel::table_route(destination, table, link.index),
            None => Route::via(destination, link.index),
        };
        if main.contains(&route) {
            continue;
        }
        netlink.add_route(&route, interface)?;
        journal.note(|applied| applied.routes.push(route))?;
    }
    if config.role == Role::Relay || !config.routes.is_empty() {
        let ipv6 = config.addresses.iter().any(|address| address.addr.is_ipv6());
        let (mut per_interface, mut host_wide) = Default::default();
        let subnets = config.routes.iter().copied();
        let forwarded =
            forward(netlink, interface, subnets, ipv6, &mut per_interface, &mut host_wide);
        journal.note(|applied| {
            applied.sysctls.extend(per_interface.list().iter().cloned());
            applied.sysctls.extend(host_wide.list().iter().cloned());
        })?;
        forwarded?;
    }
    let Some(table) = table else { return Ok(()) };
    let families: Vec<bool> = tunnel::default_routes(config).iter().map(Cidr::is_ipv4).collect();
    for &ipv4 in &families {
        for rule in tunnel::rules(table, ipv4) {
            // Another tunnel's identical rule serves this one too, and stays its.
            if tunnel::add_rule(netlink, &rule)? {
                journal.note(|applied| applied.rules.push(rule))?;
            }
        }
    }
    if families.contains(&true) {
        let mut changes = sysctl::Changes::default();
        changes.set(tunnel::SRC_VALID_MARK, "1")?;
        journal.note(|applied| applied.sysctls.extend(changes.list().iter().cloned()))?;
    }
    Ok(())
}

/// Undoes `applied`, newest change first, stopping the daemon when `up` started it (or,
/// with `stop_adopted`, in any case). Returns what could not be undone, and why.
fn undo(mut applied: Applied, stop_adopted: bool) -> (Applied, Vec<String>) {
    let mut netlink = match Netlink::open() {
        Ok(netlink) => netlink,
        Err(error) => return (applied, vec![error.to_string()]),
    };
    let interface = applied.interface.clone();
    let mut failures = Vec::new();
    // Whether a change stays recorded: its undoing failed (and the failure is noted).
    let mut keep = |result: Result<(), UpError>| match result {
        Ok(()) => false,
        Err(error) => {
            failures.push(error.to_string());
            true
        }
    };
    applied.rules.reverse();
    applied.rules.retain(|rule| keep(netlink.delete_rule(rule).map_err(UpError::from)));
    applied.rules.reverse();
    applied.routes.reverse();
    applied
        .routes
        .retain(|route| keep(netlink.delete_route(route, &interface).map_err(UpError::from)));
    applied.routes.reverse();
    match netlink.link(&interface) {
        Ok(link) => {
            applied.addresses.retain(|address| {
                keep(
                    netlink.delete_address(&interface, link.index, *address).map_err(UpError::from),
                )
            });
            if let Some(before) = applied.link_before {
                let mtu = (before.mtu != link.mtu).then_some(before.mtu);
                let restored = netlink.set_link(&interface, mtu, Some(before.up));
                if !keep(restored.map_err(UpError::from)) {
                    applied.link_before = None;
                }
            }
        }
        // Gone with the interface.
        Err(NetlinkError::NoSuchInterface(_)) => {
            applied.addresses.clear();
            applied.link_before = None;
        }
        Err(error) => {
            keep(Err(error.into()));
        }
    }
    let device = Device::new(&interface);
    if let Some(fwmark) = applied.fwmark {
        let request = SetRequest { fwmark: Some(fwmark.before), ..SetRequest::default() };
        let gone = !device.socket().exists();
        if gone || !keep(device.set(&request).map_err(UpError::from)) {
            applied.fwmark = None;
        }
    }
    let mut sysctls = sysctl::Changes::from(std::mem::take(&mut applied.sysctls));
    keep(sysctls.restore().map_err(UpError::from));
    applied.sysctls = sysctls.list().to_vec();
    let stop = match &applied.daemon {
        Some(DaemonUse::Started { .. }) => true,
        Some(DaemonUse::Adopted) => stop_adopted,
        None => false,
    };
    if stop {
        if !keep(daemon::stop(&mut netlink, &device, &interface)) {
            applied.daemon = None;
        }
    } else {
        applied.daemon = None;
    }
    (applied, failures)
}

/// What `down` did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Undone {
    /// What `up` had done, all of it now undone.
    pub undone: Applied,
    /// Whether the daemon was stopped.
    pub daemon_stopped: bool,
}

/// Takes down `interface` as [`up`] recorded it in `state_dir`: removes the rules, routes
/// and addresses it added, puts back the MTU, link state, firewall mark and kernel parameters
/// it changed, and stops the daemon it started (an adopted one too with `stop_adopted`).
///
/// # Errors
/// [`UpError::NotUp`] when there is no record; otherwise every step is tried, and what
/// could not be undone stays recorded for the next `down`.
pub fn down(state_dir: &Path, interface: &str, stop_adopted: bool) -> Result<Undone, UpError> {
    let mut journal = Journal::open(state_dir, interface)?;
    let applied = journal.applied().clone();
    let daemon_stopped = match &applied.daemon {
        Some(DaemonUse::Started { .. }) => true,
        Some(DaemonUse::Adopted) => stop_adopted,
        None => false,
    };
    let (left, failures) = undo(applied.clone(), stop_adopted);
    journal.settle(left)?;
    if failures.is_empty() {
        return Ok(Undone { undone: applied, daemon_stopped });
    }
    Err(UpError::Daemon(format!(
        "{interface} is partly down: {}. What is left stays recorded in {}: run `wgfabric down \
         {interface}` again once the cause is fixed",
        failures.join("; "),
        record::path(state_dir, interface).display()
    )))
}

/// The interfaces with a record in `state_dir`, sorted.
///
/// # Errors
/// [`UpError::Record`] when the directory cannot be read (one that does not exist holds none).
pub fn interfaces_up(state_dir: &Path) -> Result<Vec<String>, UpError> {
    let entries = match std::fs::read_dir(state_dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => {
            return Err(UpError::Record { path: state_dir.to_owned(), cause: error.to_string() })
        }
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            name.strip_suffix(".json").map(str::to_owned)
        })
        .collect();
    names.sort();
    Ok(names)
}
