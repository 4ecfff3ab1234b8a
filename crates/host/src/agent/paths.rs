//! Direct paths in the agent: a relay publishes where its socket sees its peers; a spoke
//! reads that and its peers' candidates, runs [`crate::paths::Pair`] for every other spoke,
//! publishes its own candidates and signals, probes its paths over the tunnel, and hands the
//! direct peers to the reconcile.
//!
//! ```text
//!  relay:  device get (every 2 s) ──► observed/RELAY (on change, at most every 5 s; every 20 s)
//!  spoke:  observed/* (every 2 s), candidates/PEER (every 1 s) ──► Pair::handle_round
//!          probe thread (200 ms over direct paths, 5 s over relays) ──► Pair::handle_probe
//!          Pair::target ──► reconcile::add_direct ──► set     Pair::signal ──► candidates/HOST
//! ```
//!
//! Publications are bounded: a document is written when what it says changes, at most once
//! a second (observations: every 5 s), and rewritten every 20 s so that it outlives no more
//! than its time to live.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wgfabric_proto::keys::PublicKey;
use wgfabric_proto::uapi::{AllowedIpChange, DeviceSnapshot, PeerUpdate, SetRequest};

use crate::netlink::Netlink;
use crate::paths::{candidates, Action, DirectTarget, Pair, Round, Sources};
use crate::probe::{Echoed, Prober};
use wgfabric_model::names::Name;
use wgfabric_model::paths::{is_lan_address, DirectPaths, DirectPeer};
use wgfabric_model::wallclock::system;
use wgfabric_store::state::{
    Candidates, Observed, ObservedPeer, PathMode, PathStatus, FORMAT, TTL,
};
use wgfabric_store::store::{Kind, Store};

/// How often a spoke reads its peers' candidates.
const READ_PEERS: Duration = Duration::from_secs(1);
/// How often while a pair waits for its peer's readiness: the switch instant is agreed
/// [`crate::paths::SWITCH_MARGIN`] after the later end is ready, and both ends must know it
/// by then.
const READ_PEERS_SWITCHING: Duration = Duration::from_millis(250);
/// How often a spoke reads the relays' observations, and a relay its device for them.
const READ_OBSERVED: Duration = Duration::from_secs(2);
/// The least time between two writes of a changed candidates document: a pair's stage
/// changes a few times per attempt, and attempts are themselves rate-limited.
const MIN_PUBLISH: Duration = Duration::from_millis(200);
/// The least time between two writes of changed observations.
const MIN_OBSERVE: Duration = Duration::from_secs(5);
/// Documents are rewritten this often even unchanged: a third of their time to live.
const REFRESH: Duration = Duration::from_secs(TTL / 3);
/// How often the host's own LAN addresses are read again.
const READ_LAN: Duration = Duration::from_secs(30);
/// Before an agreed switch, how long the agent does nothing that may take long (a sync, a
/// write to the store), so that its loop is free to switch at the instant.
const SWITCH_GUARD: Duration = Duration::from_millis(500);
/// How often direct paths are probed, and how long a probe waits.
const PROBE_DIRECT: Duration = Duration::from_millis(200);
/// Relayed pairs are probed once every this many direct rounds (5 s), for their RTT.
const RELAYED_EVERY: u32 = 25;

fn ms(duration: Duration) -> u64 {
    duration.as_millis() as u64
}

/// Milliseconds since the Unix epoch.
pub(super) fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, ms)
}

/// What a spoke's agent knows and runs for its direct paths.
#[derive(Debug, Default)]
pub(super) struct Paths {
    pairs: BTreeMap<Name, (PublicKey, Pair)>,
    observed: Vec<Observed>,
    observed_read_ms: u64,
    peer_docs: BTreeMap<Name, Candidates>,
    peers_read_ms: u64,
    published: Option<(Candidates, u64)>,
    lan: Vec<IpAddr>,
    lan_read_ms: Option<u64>,
    targets: Vec<(Name, DirectTarget)>,
    probes: Option<ProbeTask>,
    /// Whether the last write to the store failed (its warning is logged once).
    failing: bool,
    /// Peers whose addresses move to their direct peer this round.
    switched: Vec<DirectPeer>,
    /// Overlay addresses of peers just demoted: a datagram through the relay re-opens this
    /// host's NAT mapping towards it, in case the mapping went with the direct path.
    nudges: Vec<IpAddr>,
}

/// What a round of [`Paths::round`] reads.
pub(super) struct Context<'a> {
    pub(super) host: &'a Name,
    pub(super) interface: &'a str,
    pub(super) paths: &'a DirectPaths,
    pub(super) endpoints: &'a BTreeMap<Name, SocketAddr>,
    pub(super) live: &'a DeviceSnapshot,
    pub(super) store: &'a dyn Store,
    pub(super) own_key: &'a PublicKey,
    pub(super) now: SystemTime,
}

impl Paths {
    /// Reads what is due from the store, takes the probes' results and steps every pair.
    /// Returns whether the direct peers the interface should have changed.
    pub(super) fn round(&mut self, cx: &Context<'_>) -> bool {
        let now_ms = unix_ms(cx.now);
        let now_s = now_ms / 1_000;
        let results = self.probes.as_ref().map(ProbeTask::take).unwrap_or_default();
        self.pairs.retain(|name, _| cx.paths.peer(name.as_str()).is_some());
        for peer in &cx.paths.peers {
            let entry = self
                .pairs
                .entry(peer.name.clone())
                .or_insert_with(|| (peer.public_key, Pair::new(peer.name.clone(), now_ms)));
            if entry.0 != peer.public_key {
                // A new key is a new peer: its path starts over.
                *entry = (peer.public_key, Pair::new(peer.name.clone(), now_ms));
            }
            let pair = &mut entry.1;
            for (_, rtt) in results.iter().filter(|(name, _)| *name == peer.name) {
                pair.handle_probe(now_ms, *rtt);
            }
            let peer_doc = self.peer_docs.get(&peer.name);
            let list = candidates(&Sources {
                peer_key: &peer.public_key,
                own_key: cx.own_key,
                inventory: cx.endpoints.get(&peer.name).copied(),
                observed: &self.observed,
                peer_doc,
                same_site: cx.paths.same_site(peer),
                now: now_s,
            });
            let handshake_ms = cx
                .live
                .peers
                .iter()
                .find(|live| live.public_key == peer.public_key)
                .and_then(|live| live.last_handshake_time)
                .map(ms);
            pair.handle_round(&Round {
                now_ms,
                never: peer.never,
                candidates: &list,
                handshake_ms,
                peer: peer_doc.map(|doc| doc.signal(cx.host)),
            });
            while let Some(action) = pair.poll_action() {
                log(peer, &action, now_ms);
                match action {
                    Action::MoveBack(_) => {
                        self.nudges.extend(peer.addresses.iter().map(|cidr| cidr.addr()));
                    }
                    Action::MoveAddresses => self.switched.push(peer.clone()),
                    _ => {}
                }
            }
        }
        // After the pairs, and never just before a switch: the store may be slow. A host
        // whose every pair stays relayed has nothing to read or offer.
        let any = cx.paths.peers.iter().any(|peer| peer.never.is_none());
        if any && !self.switch_imminent(now_ms) {
            self.read(cx, now_ms);
            self.publish(cx, now_ms);
        }
        self.probe(cx);
        let targets: Vec<(Name, DirectTarget)> = self
            .pairs
            .iter()
            .filter_map(|(name, (_, pair))| Some((name.clone(), pair.target()?)))
            .collect();
        let changed = targets != self.targets;
        self.targets = targets;
        changed
    }

    /// Reads the peers' candidates and the relays' observations when due.
    fn read(&mut self, cx: &Context<'_>, now_ms: u64) {
        let now_s = now_ms / 1_000;
        let switching = self.pairs.values().any(|(_, pair)| pair.awaits_peer());
        let every = if switching { READ_PEERS_SWITCHING } else { READ_PEERS };
        if now_ms.saturating_sub(self.peers_read_ms) >= ms(every) {
            self.peers_read_ms = now_ms;
            self.peer_docs.clear();
            for peer in cx.paths.peers.iter().filter(|peer| peer.never.is_none()) {
                match cx.store.get(Kind::Candidates, &peer.name) {
                    Ok(Some(bytes)) => match Candidates::from_json(&bytes, &peer.name, now_s) {
                        Ok(doc) => {
                            self.peer_docs.insert(peer.name.clone(), doc);
                        }
                        Err(error) => {
                            tracing::debug!(peer = %peer.name, "candidates ignored: {error}");
                        }
                    },
                    Ok(None) => {}
                    Err(error) => tracing::debug!("cannot read candidates: {error}"),
                }
            }
        }
        if now_ms.saturating_sub(self.observed_read_ms) >= ms(READ_OBSERVED) {
            self.observed_read_ms = now_ms;
            match cx.store.list(Kind::Observed) {
                Ok(docs) => {
                    self.observed = docs
                        .iter()
                        .filter_map(|(relay, bytes)| Observed::from_json(bytes, relay, now_s).ok())
                        .collect();
                }
                Err(error) => tracing::debug!("cannot read observations: {error}"),
            }
        }
        let lan_due = self.lan_read_ms.is_none_or(|at| now_ms.saturating_sub(at) >= ms(READ_LAN));
        if lan_due {
            self.lan_read_ms = Some(now_ms);
            self.lan = if cx.paths.site.is_none() {
                Vec::new()
            } else if cx.paths.lan.is_empty() {
                own_lan_addresses(cx.interface)
            } else {
                cx.paths.lan.clone()
            };
        }
    }

    /// Writes this host's candidates and signals when they changed, or when due.
    fn publish(&mut self, cx: &Context<'_>, now_ms: u64) {
        let mut doc = Candidates {
            format: FORMAT,
            host: cx.host.clone(),
            time: now_ms / 1_000,
            ttl: TTL,
            listen_port: cx.live.listen_port,
            lan: self.lan.clone(),
            pairs: self.pairs.values().filter_map(|(_, pair)| pair.signal()).collect(),
        };
        if let Some((last, at)) = &self.published {
            let elapsed = now_ms.saturating_sub(*at);
            let same = Candidates { time: last.time, ..doc.clone() } == *last;
            if (same && elapsed < ms(REFRESH)) || (!same && elapsed < ms(MIN_PUBLISH)) {
                return;
            }
        }
        doc.time = now_ms / 1_000;
        match cx.store.put(Kind::Candidates, cx.host, &doc.to_json()) {
            Ok(()) => {
                self.published = Some((doc, now_ms));
                self.failing = false;
            }
            // Once per outage: the store is retried every round.
            Err(error) if !self.failing => {
                self.failing = true;
                tracing::warn!("cannot publish direct-path candidates: {error}");
            }
            Err(_) => {}
        }
    }

    /// Gives the probe thread its targets: every pair that may go direct.
    fn probe(&mut self, cx: &Context<'_>) {
        let targets: Vec<ProbeTarget> = cx
            .paths
            .peers
            .iter()
            .filter(|peer| peer.never.is_none())
            .filter_map(|peer| {
                let (_, pair) = self.pairs.get(&peer.name)?;
                let addr = peer.addresses.first()?.addr();
                Some(ProbeTarget { peer: peer.name.clone(), addr, direct: pair.is_direct() })
            })
            .collect();
        if targets.is_empty() {
            if let Some(task) = self.probes.take() {
                task.stop();
            }
            return;
        }
        match &self.probes {
            Some(task) => task.set(targets),
            None => self.probes = Some(ProbeTask::start(cx.interface.to_owned(), targets)),
        }
    }

    /// The direct peers the interface should have, with their configuration.
    pub(super) fn targets<'a>(
        &self,
        paths: &'a DirectPaths,
    ) -> Vec<(&'a DirectPeer, DirectTarget)> {
        self.targets
            .iter()
            .filter_map(|(name, target)| Some((paths.peer(name.as_str())?, *target)))
            .collect()
    }

    /// The keys of the direct peers the interface should have.
    pub(super) fn keys(&self) -> BTreeSet<PublicKey> {
        self.targets
            .iter()
            .filter_map(|(name, _)| self.pairs.get(name).map(|(key, _)| *key))
            .collect()
    }

    /// Whether an agreed switch is due within [`SWITCH_GUARD`] of `now_ms`: the loop then
    /// holds back work that may take long.
    pub(super) fn switch_imminent(&self, now_ms: u64) -> bool {
        self.pairs
            .values()
            .filter_map(|(_, pair)| pair.switch_at())
            .any(|at| at > now_ms && at - now_ms <= ms(SWITCH_GUARD))
    }

    /// The next instant a pair needs a round, in milliseconds since the Unix epoch, and
    /// whether a pair is past relayed (probe results then need a prompt round).
    pub(super) fn wake(&self, now_ms: u64) -> (Option<u64>, bool) {
        let deadline = self.pairs.values().filter_map(|(_, pair)| pair.deadline(now_ms)).min();
        let busy = self.pairs.values().any(|(_, pair)| pair.target().is_some());
        (deadline, busy)
    }

    /// The request that moves the addresses of the peers switched this round to their
    /// direct peers, and nothing else: sent at once, so that both ends switch within a
    /// fraction of a millisecond of the agreed instant rather than after a whole sync.
    pub(super) fn take_switch(&mut self) -> Option<SetRequest> {
        let peers: Vec<PeerUpdate> = self
            .switched
            .drain(..)
            .map(|peer| {
                let mut update = PeerUpdate::new(peer.public_key);
                update.update_only = true;
                update.allowed_ips =
                    peer.addresses.iter().map(|&cidr| AllowedIpChange::Add(cidr.into())).collect();
                update
            })
            .collect();
        (!peers.is_empty()).then(|| SetRequest { peers, ..SetRequest::default() })
    }

    /// Overlay addresses to send a datagram to, through the relay, after a demotion.
    pub(super) fn take_nudges(&mut self) -> Vec<IpAddr> {
        core::mem::take(&mut self.nudges)
    }

    /// Every pair as the status reports it.
    pub(super) fn statuses(&self, live: &DeviceSnapshot, relay: Option<&Name>) -> Vec<PathStatus> {
        self.pairs
            .iter()
            .map(|(name, (key, pair))| {
                let (mode, reason, since_ms) = pair.mode();
                let endpoint = pair
                    .target()
                    .and_then(|_| live.peers.iter().find(|p| p.public_key == *key)?.endpoint);
                PathStatus {
                    peer: name.clone(),
                    mode,
                    via: (mode == PathMode::Relayed).then(|| relay.cloned()).flatten(),
                    reason,
                    since: since_ms / 1_000,
                    endpoint,
                    rtt_us: pair.rtt().map(|rtt| rtt.as_micros() as u64),
                }
            })
            .collect()
    }

    /// Stops the probe thread.
    pub(super) fn stop(&mut self) {
        if let Some(task) = self.probes.take() {
            task.stop();
        }
    }
}

/// A log line for every change of a direct path.
fn log(peer: &DirectPeer, action: &Action, now_ms: u64) {
    let name = &peer.name;
    match action {
        Action::AddPeer(endpoint) => {
            tracing::info!(peer = %name, %endpoint, "direct path to {name}: trying {endpoint}");
        }
        Action::SetEndpoint(endpoint) => {
            tracing::info!(peer = %name, %endpoint, "direct path to {name}: trying {endpoint}");
        }
        Action::Agreed(at_ms) => {
            let within = at_ms.saturating_sub(now_ms);
            tracing::info!(peer = %name, at_ms, "direct path to {name}: both ends ready, switching in {within} ms");
        }
        Action::MoveAddresses => {
            tracing::info!(peer = %name, "direct path to {name}: direct");
        }
        Action::MoveBack(reason) => {
            tracing::warn!(peer = %name, reason = reason.as_str(), "direct path to {name}: relayed again ({})", reason.as_str());
        }
        Action::RemovePeer(reason) => {
            tracing::info!(peer = %name, reason = reason.as_str(), "direct path to {name}: relayed ({})", reason.as_str());
        }
    }
}

/// The host's addresses on interfaces other than the tunnel and loopback, that another host
/// of its LAN could send to.
fn own_lan_addresses(tunnel: &str) -> Vec<IpAddr> {
    let addresses = Netlink::open().and_then(|mut netlink| {
        let tunnel = netlink.link(tunnel).ok().map(|link| link.index);
        Ok(netlink
            .all_addresses()?
            .into_iter()
            .filter(|(index, _)| Some(*index) != tunnel)
            .map(|(_, address)| address.addr)
            .filter(|addr| is_lan_address(*addr))
            .collect())
    });
    addresses.unwrap_or_else(|error| {
        tracing::warn!("cannot list the LAN addresses: {error}");
        Vec::new()
    })
}

/// What a relay's agent publishes of its peers.
#[derive(Debug, Default)]
pub(super) struct Observer {
    published: Option<(Vec<ObservedPeer>, u64)>,
    read_ms: u64,
    /// Whether the last write to the store failed (its warning is logged once).
    failing: bool,
}

impl Observer {
    /// Publishes where the relay's socket sees its peers, when due.
    pub(super) fn round(
        &mut self,
        host: &Name,
        device: &wgfabric_uapi::Device,
        store: &dyn Store,
        now: SystemTime,
    ) {
        let now_ms = unix_ms(now);
        if now_ms.saturating_sub(self.read_ms) < ms(READ_OBSERVED) {
            return;
        }
        self.read_ms = now_ms;
        let live = match device.get() {
            Ok(live) => live,
            Err(error) => return tracing::debug!("observations: {error}"),
        };
        let now_s = now_ms / 1_000;
        let peers: Vec<ObservedPeer> = live
            .peers
            .iter()
            .filter_map(|peer| {
                let handshake = peer.last_handshake_time?.as_secs();
                Some(ObservedPeer {
                    public_key: peer.public_key,
                    endpoint: peer.endpoint?,
                    handshake_age: now_s.saturating_sub(handshake),
                })
            })
            .collect();
        if let Some((last, at)) = &self.published {
            let elapsed = now_ms.saturating_sub(*at);
            let where_ = |peers: &[ObservedPeer]| -> Vec<(PublicKey, SocketAddr)> {
                peers.iter().map(|p| (p.public_key, p.endpoint)).collect()
            };
            let same = where_(last) == where_(&peers);
            if (same && elapsed < ms(REFRESH)) || (!same && elapsed < ms(MIN_OBSERVE)) {
                return;
            }
        }
        let doc = Observed { format: FORMAT, relay: host.clone(), time: now_s, ttl: TTL, peers };
        match store.put(Kind::Observed, host, &doc.to_json()) {
            Ok(()) => {
                self.published = Some((doc.peers, now_ms));
                self.failing = false;
            }
            Err(error) if !self.failing => {
                self.failing = true;
                tracing::warn!("cannot publish observed endpoints: {error}");
            }
            Err(_) => {}
        }
    }
}

/// What the probe thread found: each peer probed and its round-trip time, if it answered.
type Answers = Vec<(Name, Option<Duration>)>;

/// One address the probe thread sends echo requests to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ProbeTarget {
    peer: Name,
    addr: IpAddr,
    /// Over a direct path: probed every round, to demote it quickly when it dies.
    direct: bool,
}

/// The thread that probes the pairs over the tunnel.
#[derive(Debug)]
struct ProbeTask {
    targets: Arc<Mutex<Vec<ProbeTarget>>>,
    results: Arc<Mutex<Answers>>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl ProbeTask {
    fn start(interface: String, targets: Vec<ProbeTarget>) -> Self {
        let targets = Arc::new(Mutex::new(targets));
        let results = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, r, s) = (Arc::clone(&targets), Arc::clone(&results), Arc::clone(&stop));
        let thread = std::thread::spawn(move || probe_loop(&interface, &t, &r, &s));
        Self { targets, results, stop, thread }
    }

    fn set(&self, targets: Vec<ProbeTarget>) {
        *self.targets.lock().unwrap_or_else(PoisonError::into_inner) = targets;
    }

    fn take(&self) -> Answers {
        core::mem::take(&mut *self.results.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        // A probe thread that panicked has nothing more to report.
        let _ = self.thread.join();
    }
}

/// Every [`PROBE_DIRECT`], an echo to each direct path's peer; every [`RELAYED_EVERY`]
/// rounds, to the relayed ones too.
fn probe_loop(
    interface: &str,
    targets: &Mutex<Vec<ProbeTarget>>,
    results: &Mutex<Answers>,
    stop: &AtomicBool,
) {
    let mut open: Option<(Vec<ProbeTarget>, Prober)> = None;
    let mut round: u32 = 0;
    while !stop.load(Ordering::Relaxed) {
        let started = system();
        let all = targets.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let chosen: Vec<ProbeTarget> =
            all.into_iter().filter(|target| target.direct || round % RELAYED_EVERY == 0).collect();
        round = round.wrapping_add(1);
        if !chosen.is_empty() {
            if open.as_ref().is_none_or(|(targets, _)| *targets != chosen) {
                let addrs: Vec<IpAddr> = chosen.iter().map(|target| target.addr).collect();
                open = match Prober::open(None, Some(interface), &addrs) {
                    Ok(prober) => Some((chosen, prober)),
                    Err(error) => {
                        tracing::debug!("path probes: {error}");
                        None
                    }
                };
            }
            if let Some((targets, prober)) = &mut open {
                if let Ok(echoes) = prober.echo(PROBE_DIRECT) {
                    let answers = targets.iter().zip(echoes).map(|(target, echoed)| {
                        let rtt = match echoed {
                            Echoed::Answered(rtt) => Some(rtt),
                            Echoed::Unanswered | Echoed::Unreachable => None,
                        };
                        (target.peer.clone(), rtt)
                    });
                    results.lock().unwrap_or_else(PoisonError::into_inner).extend(answers);
                }
            }
        }
        let spent = system().duration_since(started).unwrap_or_default();
        std::thread::sleep(PROBE_DIRECT.saturating_sub(spent));
    }
}
