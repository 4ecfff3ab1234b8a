//! The agent: keeps one host's WireGuard interface equal to its desired state in the source
//! of truth, reports how it is doing there, and plays its part in key rotations.
//!
//! ```text
//!  store: desired/HOST ──watch──► read ──► DesiredState::from_json ──► KeyRing::resolve
//!                                             │ refused: keep the interface as it is,     │
//!                                             │ report why (status + log)                 ▼
//!  daemon (userspace API) ◄── set: reconcile::changes ◄── reconcile::target ◄── get ◄──── accepted state
//!        │                                        (only what differs)
//!        └── get ──► Status (applied revision, peers, handshake ages, rotation reports) ──► store: status/HOST
//! ```
//!
//! The loop wakes when the desired state changes, every status interval (5 s) to report
//! handshake ages and repair drift (an address or a route removed by hand), every second to
//! look whether the daemon or its interface was replaced (a restarted daemon gets its
//! configuration, the endpoints its predecessor learned and fresh handshakes back), and
//! every 50 ms while a rotating peer's new key has not taken over yet (a stock daemon needs
//! the agent to move the allowed IPs; with wgfabricd the agent reports the handover at once).
//! A desired state that does not parse, fails validation or whose keys do not match is
//! refused: the interface keeps the last good configuration.
//!
//! The agent manages through the userspace API the private key, listen port and peers
//! (keys, endpoints, keepalives, preshared keys, allowed IPs) and, over netlink (the `link` module),
//! addresses, MTU, link state, routes into the tunnel and per-interface forwarding. A host
//! whose desired state routes a default route into the tunnel also gets the full-tunnel
//! policy routing `wgfabric up` sets ([`crate::hostup::tunnel`]): the firewall mark, the
//! table's default routes, its rules and `src_valid_mark`, all read back every round and
//! taken away again (but `src_valid_mark`) when the default route goes. DNS is left to
//! `wgfabric up`, wg-quick or networkd.

mod failover;
mod firewall;
mod identity;
mod link;
mod paths;
mod reconcile;
mod report;
mod secrets;

pub(crate) use self::link::{forward, LinkError};
pub use self::reconcile::initial_request;
pub(crate) use self::reconcile::request_for;
pub(crate) use self::secrets::{KeyRing, Keys};

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, ToSocketAddrs as _, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wgfabric_proto::uapi::{DeviceSnapshot, SetRequest};

pub use secrets::{RngCoreCrypto, SecretsError};
use wgfabric_uapi::{Device, DeviceError};

use self::failover::FailoverTask;
use self::firewall::Firewalls;
use self::identity::Identity;
use self::link::Link;
use self::paths::{unix_ms, Observer, Paths};
use self::report::{applied_notes, peer_statuses, same_state};
use crate::hostup::tunnel;
use crate::netlink::Netlink;
use wgfabric_audit::note::Note;
use wgfabric_audit::{Action, Audit, Timestamp, FILE_NAME};
use wgfabric_model::config::HostConfig;
use wgfabric_model::inventory::Role;
use wgfabric_model::names::Name;
use wgfabric_model::sealed_keys::Identities;
use wgfabric_model::wallclock::{monotonic, system, unix_seconds};
use wgfabric_store::state::{
    AgentInfo, Correction, DesiredState, Phase, Refusal, Revision, RotationReport, Status, FORMAT,
};
use wgfabric_store::store::{Kind, Store};

/// How the agent runs.
#[derive(Debug)]
pub struct Settings {
    /// The host it manages.
    pub host: Name,
    /// The interface (its userspace API socket is `/var/run/wireguard/INTERFACE.sock`).
    pub interface: String,
    /// The private key file, instead of the one the desired state names.
    pub key_file: Option<PathBuf>,
    /// age identities that open sealed keys (central mode, preshared keys).
    pub identities: Option<Identities>,
    /// Whether to manage addresses, MTU, link state, routes and full-tunnel policy routing
    /// (off when wg-quick or networkd brought the interface up).
    pub manage_link: bool,
    /// Whether to run relay failover on hosts with several relays.
    pub failover: bool,
    /// How often to report handshake ages and repair drift (default 10 s).
    pub status_interval: Duration,
    /// How often to look for a first handshake the agent must act on (default 50 ms).
    pub takeover_poll: Duration,
    /// The audit log [default: `audit.jsonl` beside the private key file].
    pub audit_log: Option<PathBuf>,
    /// The userspace API socket, instead of the default path.
    pub socket: Option<PathBuf>,
}

impl Settings {
    /// Defaults for `host` on `interface`.
    pub fn new(host: Name, interface: String) -> Self {
        Self {
            host,
            interface,
            key_file: None,
            identities: None,
            manage_link: true,
            failover: true,
            status_interval: Duration::from_secs(5),
            takeover_poll: Duration::from_millis(50),
            audit_log: None,
            socket: None,
        }
    }
}

/// A desired state the agent accepted, with its secrets.
#[derive(Debug)]
struct Accepted {
    doc: DesiredState,
    keys: Keys,
    endpoints: BTreeMap<Name, SocketAddr>,
    applied: bool,
}

/// What a daemon takes beyond the stock userspace API (wgfabricd's extensions).
#[derive(Debug, Clone, Copy)]
struct Capabilities {
    /// `successor_of`: the daemon moves a rotating peer's allowed IPs at its handshake.
    successors: bool,
    /// `accept_ip`: a switch between relayed and direct paths loses nothing.
    accept_ips: bool,
}

/// The agent of one host.
#[derive(Debug)]
pub struct Agent {
    host: Name,
    interface: String,
    manage_link: bool,
    run_failover: bool,
    status_interval: Duration,
    takeover_poll: Duration,
    audit_log: Option<PathBuf>,
    store: Box<dyn Store>,
    device: Device,
    keys: KeyRing,
    audit: Option<Audit>,
    /// What the daemon behind the socket takes beyond the stock API, once probed.
    capabilities: Option<Capabilities>,
    /// The bytes of the desired state last read, applied or not.
    seen: Option<Vec<u8>>,
    accepted: Option<Accepted>,
    refusal: Option<Refusal>,
    refused_orders: Vec<RotationReport>,
    error: Option<String>,
    link: Link,
    failover: Option<FailoverTask>,
    active_relay: Option<Name>,
    live: Option<DeviceSnapshot>,
    reports: Vec<RotationReport>,
    /// Rotation phases of this host after which handshakes were started.
    nudged: BTreeSet<(String, Phase)>,
    last_written: Option<Status>,
    firewalls: Firewalls,
    /// This agent process, in its statuses.
    boot: String,
    /// Statuses written so far.
    seq: u64,
    /// The daemon and interface the agent last synced.
    identity: Option<Identity>,
    /// The last drift found and corrected.
    corrected: Option<Correction>,
    /// The full-tunnel table (and firewall mark) chosen, while the tunnel is full.
    tunnel_table: Option<u32>,
    /// A spoke's direct paths to the other spokes.
    paths: Paths,
    /// What a relay publishes of where it sees its peers.
    observer: Observer,
}

/// Why a round could not bring the interface to the accepted state.
#[derive(Debug, thiserror::Error)]
enum SyncError {
    /// The daemon's userspace API failed.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// Addresses, routes, link state or kernel parameters could not be read or set.
    #[error(transparent)]
    Link(#[from] LinkError),
}

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The source of truth could not be reached at start.
    #[error(transparent)]
    Store(#[from] wgfabric_store::store::StoreError),
}

impl Agent {
    /// An agent reading from `store`; `rng` makes new keys during rotations.
    pub fn new(settings: Settings, store: Box<dyn Store>, rng: Box<dyn RngCoreCrypto>) -> Self {
        let device = match &settings.socket {
            Some(socket) => Device::at(socket.clone()),
            None => Device::new(&settings.interface),
        };
        Self {
            keys: KeyRing::new(settings.key_file, settings.identities, rng),
            host: settings.host,
            interface: settings.interface,
            manage_link: settings.manage_link,
            run_failover: settings.failover,
            status_interval: settings.status_interval,
            takeover_poll: settings.takeover_poll,
            audit_log: settings.audit_log,
            store,
            device,
            audit: None,
            capabilities: None,
            seen: None,
            accepted: None,
            refusal: None,
            refused_orders: Vec::new(),
            error: None,
            link: Link::default(),
            tunnel_table: None,
            failover: None,
            active_relay: None,
            live: None,
            reports: Vec::new(),
            nudged: BTreeSet::new(),
            last_written: None,
            firewalls: Firewalls::default(),
            boot: format!(
                "{}-{}",
                std::process::id(),
                system().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos()
            ),
            seq: 0,
            identity: None,
            corrected: None,
            paths: Paths::default(),
            observer: Observer::default(),
        }
    }

    /// Runs until `stop` is set: follows the desired state, syncs the interface, reports.
    /// Failures to reach the store or the daemon are logged, reported and retried; the
    /// interface is never torn down.
    ///
    /// # Errors
    /// [`AgentError::Store`] when asked to stop before the store could ever be watched.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<(), AgentError> {
        let mut watch = loop {
            match self.store.watch(Kind::Desired, Some(&self.host)) {
                Ok(watch) => break watch,
                Err(error) if !stop.load(Ordering::Relaxed) => {
                    tracing::warn!("cannot watch the desired state: {error}; retrying");
                    std::thread::sleep(Duration::from_secs(2));
                }
                Err(error) => return Err(error.into()),
            }
        };
        tracing::info!(host = %self.host, interface = %self.interface, source = %self.store.describe(), "agent started");
        self.reload();
        self.report(true);
        let mut next_status = monotonic() + self.status_interval;
        while !stop.load(Ordering::Relaxed) {
            let fast = self.awaits_takeover();
            let until_status = next_status.saturating_duration_since(monotonic());
            let timeout = if fast {
                self.takeover_poll
            } else {
                until_status.min(Duration::from_secs(1)).min(self.paths_wait())
            };
            match watch.wait(timeout) {
                Ok(changed) if changed.contains(&self.host) => self.reload(),
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(source = %self.store.describe(), "cannot watch the desired state: {error}");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
            let paths_changed = self.paths_round();
            // Just before a direct path's agreed switch, the loop stays free for it.
            if self.paths.switch_imminent(unix_ms(system())) && !paths_changed {
                continue;
            }
            let due = monotonic() >= next_status;
            if fast || due || paths_changed || self.error.is_some() || self.daemon_replaced() {
                self.sync();
                self.nudge_demoted();
            }
            self.report(due);
            if due {
                next_status = monotonic() + self.status_interval;
            }
        }
        if let Some(task) = self.failover.take() {
            task.stop();
        }
        self.paths.stop();
        tracing::info!(host = %self.host, "agent stopped; the interface keeps its configuration");
        Ok(())
    }

    /// Reads the desired state once, applies or refuses it, and reports: for scripts and
    /// first boots. Returns the status written.
    pub fn run_once(&mut self) -> Status {
        self.reload();
        self.sync();
        self.report(true);
        self.status()
    }

    fn awaits_takeover(&self) -> bool {
        match (&self.accepted, &self.live) {
            (Some(accepted), Some(live)) => reconcile::awaits_takeover(&accepted.doc, live),
            _ => false,
        }
    }

    /// Reads the desired state and, if it changed, accepts and applies it or refuses it.
    fn reload(&mut self) {
        let bytes = match self.store.get(Kind::Desired, &self.host) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!("cannot read the desired state: {error}");
                return;
            }
        };
        if self.seen.as_ref() == Some(&bytes) {
            return;
        }
        self.seen = Some(bytes.clone());
        let doc = match DesiredState::from_json(&bytes, self.host.as_str()) {
            Ok(doc) => doc,
            Err(invalid) => {
                return self.refuse(invalid.revision, invalid.reason.to_string(), &[]);
            }
        };
        let keys = match self.keys.resolve(&doc, &self.interface) {
            Ok(keys) => {
                if let Some(source) = &keys.fetched_from {
                    let note = Note::new(Action::KeyFetched, self.host.as_str(), source.clone())
                        .after(doc.config.public_key);
                    self.record(&[note], Some(self.keys.key_dir(&doc)));
                }
                keys
            }
            Err(reason) => {
                let orders = doc.rotations.clone();
                return self.refuse(Some(doc.revision), reason.to_string(), &orders);
            }
        };
        tracing::info!(revision = %doc.revision, rotations = doc.rotations.len(), "desired state accepted");
        let endpoints = resolve_endpoints(&doc.config);
        self.refusal = None;
        self.refused_orders.clear();
        self.accepted = Some(Accepted { doc, keys, endpoints, applied: false });
        self.sync();
    }

    fn refuse(
        &mut self,
        revision: Option<Revision>,
        reason: String,
        orders: &[wgfabric_store::state::RotationOrder],
    ) {
        let shown =
            revision.as_ref().map_or_else(|| "(unreadable)".to_owned(), Revision::to_string);
        tracing::error!(revision = %shown, "desired state refused: {reason}; the interface keeps its last good configuration");
        self.refused_orders = orders
            .iter()
            .map(|order| RotationReport {
                id: order.id.clone(),
                host: order.host.clone(),
                role: if order.host == self.host {
                    wgfabric_store::state::Role::Rotating
                } else {
                    wgfabric_store::state::Role::Peer
                },
                phase: order.phase,
                new_key: None,
                takeover: None,
                taken_over: false,
                error: Some(reason.clone()),
            })
            .collect();
        self.refusal = Some(Refusal { revision, reason, time: unix_seconds(system()) });
    }

    /// Brings the interface to the accepted state, with the fewest changes.
    fn sync(&mut self) {
        if self.accepted.is_none() {
            return;
        }
        match self.try_sync() {
            Ok(()) => {
                if self.error.take().is_some() {
                    tracing::info!("the interface is in sync again");
                }
            }
            Err(error) => {
                let error = error.to_string();
                if self.error.as_ref() != Some(&error) {
                    tracing::error!("cannot sync the interface: {error}");
                }
                self.error = Some(error);
                self.capabilities = None;
            }
        }
    }

    fn try_sync(&mut self) -> Result<(), SyncError> {
        let Some(mut accepted) = self.accepted.take() else { return Ok(()) };
        let result = self.sync_accepted(&mut accepted);
        self.accepted = Some(accepted);
        result
    }

    fn sync_accepted(&mut self, accepted: &mut Accepted) -> Result<(), SyncError> {
        let identity = Identity::of(self.device.socket(), &self.interface);
        // The last snapshot of the daemon a restarted one replaced: what it had learned.
        let replaced = self.notice_replacement(identity).then(|| self.live.clone()).flatten();
        let capabilities = match self.capabilities {
            Some(known) => known,
            None => {
                let known = Capabilities {
                    successors: self.device.supports_successors()?,
                    accept_ips: self.device.supports_accept_ips()?,
                };
                tracing::info!(
                    successor = known.successors,
                    accept_ip = known.accept_ips,
                    "daemon capabilities"
                );
                *self.capabilities.insert(known)
            }
        };
        let successors = capabilities.successors;
        let doc = &accepted.doc;
        let mut live = self.device.get()?;
        let mut active = self.active_relay.clone();
        let direct = match &doc.config.paths {
            Some(paths) if doc.rotations.is_empty() => self.paths.targets(paths),
            _ => Vec::new(),
        };
        let relays: BTreeSet<Name> = doc
            .config
            .peers
            .iter()
            .filter(|peer| peer.role == Role::Relay)
            .map(|peer| peer.name.clone())
            .collect();
        let plan_now = |live: &DeviceSnapshot, active: Option<&Name>| {
            let mut target = reconcile::target(
                doc,
                &accepted.keys,
                live,
                &accepted.endpoints,
                successors,
                active,
            );
            reconcile::add_direct(&mut target, &direct);
            if capabilities.accept_ips {
                reconcile::accept_moving_sources(&mut target, &direct, &relays);
            }
            reconcile::changes(&target, live)
        };
        if let Some(mut planned) = plan_now(&live, active.as_ref()) {
            // Direct peers hold no relay's prefix: the failover monitor may keep running,
            // and a switch to a direct path happens at its agreed instant.
            let direct_only = reconcile::only_peers(&planned.1, &self.paths.keys());
            if let Some(task) = self.failover.take_if(|_| !direct_only) {
                // The monitor may have moved the routes since: plan again from where they are.
                active = Some(task.stop());
                self.active_relay.clone_from(&active);
                live = self.device.get()?;
                planned = plan_now(&live, active.as_ref()).unwrap_or_default();
            }
            let (request, changes) = planned;
            if !changes.is_empty() {
                let handovers = reconcile::handovers(doc, &live, &request);
                self.device.set(&request)?;
                for (host, first_handshake) in handovers {
                    let after = system().duration_since(first_handshake).unwrap_or_default();
                    tracing::info!(
                        peer = %host,
                        after_ms = after.as_millis(),
                        "allowed IPs moved to the new key of {host}, {} ms after its first handshake",
                        after.as_millis()
                    );
                }
                for change in &changes {
                    tracing::info!(revision = %doc.revision, "{change}");
                }
                let audit_dir = self.keys.key_dir(doc);
                self.record(&applied_notes(&self.host, &doc.revision, &changes), Some(audit_dir));
                live = self.device.get()?;
            }
        }
        let mut config = active
            .as_ref()
            .and_then(|relay| doc.config.with_active_relay(relay.as_str()))
            .unwrap_or_else(|| doc.config.clone());
        // The failover monitor drives the interface this agent manages.
        config.interface.clone_from(&self.interface);
        if self.manage_link {
            // Every round against what the kernel has, not what was set last: the interface
            // may have been recreated, or changed by hand, in between.
            let table = self.full_tunnel_table(&config, live.fwmark)?;
            let mut drift = self.sync_fwmark(table, live.fwmark)?;
            let wanted = Link::of(&config, table);
            let live = Link::live(&self.interface, table.or(self.link.table()))?;
            drift.extend(live.drift_from(&wanted));
            if !drift.is_empty() || wanted != self.link {
                let changed = live.apply(&wanted, &self.interface)?;
                for parameter in changed.list() {
                    tracing::info!(key = %parameter.key, before = %parameter.before, "kernel parameter changed");
                }
                // Drift is what differs although the desired state did not change.
                if wanted == self.link && !drift.is_empty() {
                    let what = format!("{}: {}; corrected", self.interface, drift.join(", "));
                    tracing::warn!("{what}");
                    self.corrected = Some(Correction { time: unix_seconds(system()), what });
                }
                self.link = wanted;
            }
        }
        if let Some(before) = replaced {
            // After the link is back: the handshakes go out through it.
            self.resume_sessions(&before, &live, doc)?;
        }
        self.nudge_peers(doc);
        let firewall =
            self.firewalls.sync(self.host.as_str(), doc.config.firewall.as_ref(), &self.interface);
        if let Some(note) = firewall {
            self.record(&[note], Some(self.keys.key_dir(doc)));
        }
        if !accepted.applied {
            accepted.applied = true;
            tracing::info!(revision = %doc.revision, "desired state applied");
        }
        self.reports = reconcile::reports(doc, &accepted.keys, &live, successors);
        self.live = Some(live);
        if self.run_failover && self.failover.is_none() && doc.rotations.is_empty() {
            self.failover = FailoverTask::start(config, self.device.clone());
        }
        // Only now: a round that failed half-way notices the replacement again.
        self.identity = Some(identity);
        Ok(())
    }

    /// The table (and firewall mark) of a full tunnel, when `config` routes a default route
    /// into the tunnel: the one chosen before, else the device's mark (`fwmark`), else a free
    /// one. Remembered, because a restarted daemon forgets its mark while the table stays.
    fn full_tunnel_table(
        &mut self,
        config: &HostConfig,
        fwmark: u32,
    ) -> Result<Option<u32>, LinkError> {
        if tunnel::default_routes(config).is_empty() {
            return Ok(None);
        }
        if let Some(table) = self.tunnel_table {
            return Ok(Some(table));
        }
        let table = tunnel::choose_table(&mut Netlink::open()?, fwmark)?;
        Ok(Some(*self.tunnel_table.insert(table)))
    }

    /// Sets the device's firewall mark to `table` (the device's own packets then bypass the
    /// tunnel's rules), or clears the mark this agent set once the tunnel is no longer full.
    /// Must come before the rules. Returns the drift it corrected.
    fn sync_fwmark(&mut self, table: Option<u32>, fwmark: u32) -> Result<Vec<String>, DeviceError> {
        let mark = match (table, self.link.table()) {
            (Some(table), _) if table != fwmark => table,
            (None, Some(before)) if before == fwmark => {
                self.tunnel_table = None;
                0
            }
            _ => return Ok(Vec::new()),
        };
        self.device.set(&SetRequest { fwmark: Some(mark), ..SetRequest::default() })?;
        tracing::info!(interface = %self.interface, "firewall mark {mark:#x}");
        // Drift when the mark was set before and the desired state did not change.
        let was_set = self.link.table() == table && table.is_some();
        Ok(if was_set {
            vec![format!("fwmark {fwmark:#x} instead of {mark:#x}")]
        } else {
            Vec::new()
        })
    }

    /// Whether the daemon or the interface changed since the last sync: cheap enough (a
    /// `stat` and a sysfs read) to look at every wake, so a restarted daemon is configured
    /// within a second rather than at the next round.
    fn daemon_replaced(&self) -> bool {
        self.identity
            .is_some_and(|known| Identity::of(self.device.socket(), &self.interface) != known)
    }

    /// Forgets what the agent knows of the daemon and the link when either was replaced under
    /// it (`now` differs from the identity of the last complete sync), so this round probes
    /// the daemon again and puts the whole link back. Returns whether they were.
    fn notice_replacement(&mut self, now: Identity) -> bool {
        let Some(before) = self.identity else { return false };
        let Some(change) = now.change_from(&before) else { return false };
        let what =
            format!("{change}: capabilities probed again, addresses, MTU and link state restored");
        tracing::warn!(interface = %self.interface, "{what}");
        self.capabilities = None;
        self.link = Link::default();
        self.corrected = Some(Correction { time: unix_seconds(system()), what });
        true
    }

    /// After a restarted daemon got its configuration back: gives it the endpoints its
    /// predecessor had learned from peers that roam, and starts a handshake with every peer.
    /// Its peers still hold sessions it has forgotten, and would only notice after seconds
    /// without replies (or never, for a peer that only receives).
    fn resume_sessions(
        &self,
        before: &DeviceSnapshot,
        live: &DeviceSnapshot,
        doc: &DesiredState,
    ) -> Result<(), DeviceError> {
        let request = reconcile::roamed_endpoints(before, live);
        if !request.peers.is_empty() {
            self.device.set(&request)?;
            tracing::info!(
                peers = request.peers.len(),
                "endpoints learned before the restart given back"
            );
        }
        start_handshakes(&doc.config.peers);
        Ok(())
    }

    /// After this host switched keys (or switched back), starts a handshake with every peer
    /// right away, rather than at the next packet.
    fn nudge_peers(&mut self, doc: &DesiredState) {
        for order in &doc.rotations {
            let key = (order.id.clone(), order.phase);
            if order.host == self.host
                && matches!(order.phase, Phase::Switch | Phase::Rollback)
                && self.nudged.insert(key)
            {
                start_handshakes(&doc.config.peers);
            }
        }
    }

    /// Appends `notes` to the audit log, opening it first if needed (`--audit-log`, else
    /// `audit.jsonl` in `default_dir`).
    fn record(&mut self, notes: &[Note], default_dir: Option<PathBuf>) {
        if notes.is_empty() {
            return;
        }
        if self.audit.is_none() {
            let path = self.audit_log.clone().or_else(|| Some(default_dir?.join(FILE_NAME)));
            let Some(path) = path else { return };
            match Audit::open(&path) {
                Ok(audit) => self.audit = Some(audit),
                Err(error) => return tracing::warn!("audit log: {error}"),
            }
        }
        let Some(audit) = &mut self.audit else { return };
        // As every verb: `$WGFABRIC_ACTOR` when the service sets it, else the agent itself.
        let actor = std::env::var("WGFABRIC_ACTOR")
            .ok()
            .filter(|actor| !actor.trim().is_empty())
            .unwrap_or_else(|| format!("wgfabric-agent@{}", self.host));
        let time = Timestamp::from_system_time(system());
        for note in notes {
            if let Err(error) = audit.append(note.entry(time, &actor)) {
                tracing::warn!("audit log: {error}");
                return;
            }
        }
    }

    /// Writes the status when something in it changed, or when `due`.
    fn report(&mut self, due: bool) {
        let status = self.status();
        let unchanged = self.last_written.as_ref().is_some_and(|last| same_state(last, &status));
        if unchanged && !due {
            return;
        }
        match self.store.put(Kind::Status, &self.host, &status.to_json()) {
            Ok(()) => {
                self.seq += 1;
                self.last_written = Some(status);
            }
            Err(error) => tracing::warn!("cannot report the status: {error}"),
        }
    }

    /// The status as of now.
    pub fn status(&self) -> Status {
        let now = system();
        let doc = self.accepted.as_ref().map(|accepted| &accepted.doc);
        let peers = self
            .live
            .as_ref()
            .map_or_else(Vec::new, |live| peer_statuses(doc, live, unix_seconds(now)));
        let mut rotations = self.refused_orders.clone();
        if rotations.is_empty() {
            rotations.clone_from(&self.reports);
        }
        Status {
            format: FORMAT,
            host: self.host.clone(),
            time: unix_seconds(now),
            seq: self.seq,
            corrected: self.corrected.clone(),
            agent: AgentInfo {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                boot: self.boot.clone(),
                interface: self.interface.clone(),
                successor: self.capabilities.map(|known| known.successors),
            },
            applied: self.accepted.as_ref().filter(|a| a.applied).map(|a| a.doc.revision.clone()),
            refused: self.refusal.clone(),
            error: self.error.clone(),
            policy_error: self.firewalls.error.clone(),
            peers,
            rotations,
            paths: match (&self.live, doc) {
                (Some(live), Some(doc)) if doc.config.paths.is_some() => {
                    let relay = self.active_relay().or(doc
                        .config
                        .failover
                        .as_ref()
                        .map(|f| f.active.clone()));
                    self.paths.statuses(live, relay.as_ref())
                }
                _ => Vec::new(),
            },
        }
    }

    /// The relay carrying the failover routes, as the monitor last moved them.
    fn active_relay(&self) -> Option<Name> {
        self.failover.as_ref().map(FailoverTask::active).or_else(|| self.active_relay.clone())
    }

    /// Runs a round of direct paths (a spoke) or of observations (a relay). Returns whether
    /// the direct peers the interface should have changed.
    fn paths_round(&mut self) -> bool {
        let Some(accepted) = &self.accepted else { return false };
        let now = system();
        let doc = &accepted.doc;
        if doc.config.role == Role::Relay {
            self.observer.round(&self.host, &self.device, self.store.as_ref(), now);
            return false;
        }
        let Some(paths) = doc.config.paths.as_ref() else { return false };
        if !doc.rotations.is_empty() {
            // Direct peers are keyed by the keys a rotation changes: set aside until it ends.
            self.paths.stop();
            let had = !self.paths.keys().is_empty();
            self.paths = Paths::default();
            return had;
        }
        // Handshakes on the direct peers are read afresh while a pair is past relayed.
        let busy = self.paths.wake(unix_ms(now)).1;
        let fresh = if busy { self.device.get().ok() } else { None };
        let Some(live) = fresh.as_ref().or(self.live.as_ref()) else { return false };
        let cx = paths::Context {
            host: &self.host,
            interface: &self.interface,
            paths,
            endpoints: &accepted.endpoints,
            live,
            store: self.store.as_ref(),
            own_key: &doc.config.public_key,
            now,
        };
        let changed = self.paths.round(&cx);
        if let Some(request) = self.paths.take_switch() {
            // The sync that follows finds these already done.
            if let Err(error) = self.device.set(&request) {
                tracing::warn!("cannot move addresses to a direct peer: {error}");
            }
        }
        changed
    }

    /// How long the loop may sleep for the direct paths: until a pair's deadline, and at
    /// most a probe interval while a pair is past relayed.
    fn paths_wait(&self) -> Duration {
        let now = unix_ms(system());
        let (deadline, busy) = self.paths.wake(now);
        let until =
            deadline.map_or(Duration::MAX, |at| Duration::from_millis(at.saturating_sub(now)));
        if busy {
            until.min(Duration::from_millis(200))
        } else {
            until
        }
    }

    /// After a demotion, sends a datagram to the peer through the relay: it re-opens this
    /// host's NAT mapping towards the relay, in case a NAT flush took it with the direct
    /// path, so that the relay can reach this host again at once.
    fn nudge_demoted(&mut self) {
        for addr in self.paths.take_nudges() {
            nudge(addr);
        }
    }
}

/// Starts a handshake with each of `peers`: one datagram to its overlay address (the discard
/// port), which the interface holds until the handshake is done.
fn start_handshakes(peers: &[wgfabric_model::config::PeerConfig]) {
    for peer in peers {
        if let Some(address) = peer.allowed_ips.iter().find(|cidr| cidr.is_host()) {
            nudge(address.addr());
        }
    }
}

/// Sends an empty datagram to `addr`'s discard port, through the tunnel.
fn nudge(addr: std::net::IpAddr) {
    let local: SocketAddr =
        if addr.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let sent = UdpSocket::bind(local).and_then(|socket| socket.send_to(b"", (addr, 9)));
    if let Err(error) = sent {
        tracing::debug!(%addr, "nudge not sent: {error}");
    }
}

/// Resolves the configured endpoints (names as wg does, when the configuration is loaded).
pub(crate) fn resolve_endpoints(config: &HostConfig) -> BTreeMap<Name, SocketAddr> {
    let mut resolved = BTreeMap::new();
    for peer in &config.peers {
        let Some(endpoint) = &peer.endpoint else { continue };
        match (endpoint.host(), endpoint.port()).to_socket_addrs().map(|mut addrs| addrs.next()) {
            Ok(Some(addr)) => {
                resolved.insert(peer.name.clone(), addr);
            }
            Ok(None) | Err(_) => {
                tracing::warn!(peer = %peer.name, %endpoint, "endpoint does not resolve; the peer keeps the one it has");
            }
        }
    }
    resolved
}
