//! One rotation of one host's key, as a state machine driven by agents' statuses and a
//! clock, with no I/O: the driver ([`super::driver`]) publishes what [`Rotation::orders`]
//! says, feeds statuses and timeouts in, and acts on [`Event`]s.
//!
//! ```text
//!  Prepare ─new key reported─► Stage ─every peer staged─► Switch ─host switched─► Verify
//!     │                          │                         │                       │ every peer's new key
//!     │ timeout / agent error    │                         │                       │ handshook and holds
//!     └──────────────────────────┴─────────► Rollback ◄────┴───────────────────────┤ the allowed IPs
//!                                               │                                  ▼
//!                               every involved agent back ──► RolledBack          Retire ─(driver writes the
//!                                                                                  │  inventory, publishes)
//!                                                                    every involved agent runs it
//!                                                                                  ▼
//!                                                                                 Done
//! ```
//!
//! Each step has a deadline ([`Timeouts`]); missing it before `Retire` rolls back
//! everything ordered so far. A rollback that is not
//! confirmed in time, or a retirement not applied in time, ends the rotation as
//! [`Outcome::Failed`] with the hosts that did not answer.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use wgfabric_proto::keys::PublicKey;

use wgfabric_audit::note::Note;
use wgfabric_audit::Action;
use wgfabric_model::durations::human;
use wgfabric_model::names::Name;
use wgfabric_store::state::{Phase, Revision, RotationOrder, Sealed, Status};

/// How long each step may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// For the rotating host to report its new key (default 30 s).
    pub prepare: Duration,
    /// For every peer to stage it (default 30 s).
    pub stage: Duration,
    /// For the rotating host to switch (default 30 s).
    pub switch: Duration,
    /// For a handshake on the new key with every peer, which then holds the allowed IPs
    /// (default 30 s).
    pub verify: Duration,
    /// For every involved agent to apply the inventory with the new key (default 60 s).
    pub retire: Duration,
    /// For every involved agent to confirm a rollback (default 30 s).
    pub rollback: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        let half_minute = Duration::from_secs(30);
        Self {
            prepare: half_minute,
            stage: half_minute,
            switch: half_minute,
            verify: half_minute,
            retire: Duration::from_secs(60),
            rollback: half_minute,
        }
    }
}

/// What a rotation is about.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Its identifier (unique among rotations of the fabric).
    pub id: String,
    /// The rotating host.
    pub host: Name,
    /// Every host that peers with it.
    pub peers: Vec<Name>,
    /// Its key now.
    pub old_key: PublicKey,
    /// Central mode: the new private key sealed for the fabric's recipients, and its public
    /// key.
    pub sealed_new_key: Option<(Sealed, PublicKey)>,
    /// New preshared keys by peer, sealed; empty when they are not rotated.
    pub preshared_keys: BTreeMap<Name, Sealed>,
    /// Deadlines.
    pub timeouts: Timeouts,
}

/// Where a rotation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    /// Waiting for the rotating host's new public key.
    Prepare,
    /// Waiting for every peer to stage it.
    Stage,
    /// Waiting for the rotating host to switch.
    Switch,
    /// Waiting for a handshake on the new key with every peer.
    Verify,
    /// The new key is verified; the inventory gets it and agents retire the old one.
    Retire,
    /// Going back to the old key everywhere.
    Rollback,
    /// Rotated.
    Done,
    /// Back on the old key.
    RolledBack,
    /// Ended without certainty; see the outcome.
    Failed,
}

impl Step {
    /// A word for messages.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Prepare => "prepare",
            Self::Stage => "stage",
            Self::Switch => "switch",
            Self::Verify => "verify",
            Self::Retire => "retire",
            Self::Rollback => "rollback",
            Self::Done => "done",
            Self::RolledBack => "rolled back",
            Self::Failed => "failed",
        }
    }
}

/// How a rotation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The host uses the new key; the inventory has it.
    Rotated {
        /// The new key.
        new_key: PublicKey,
    },
    /// Everything went back to the old key.
    RolledBack {
        /// Why the rotation was abandoned.
        reason: String,
    },
    /// The rotation stopped without confirmation from some hosts.
    Failed {
        /// What is known and what to do.
        reason: String,
    },
}

/// Something the driver shows, records or acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A step started.
    Entered(Step),
    /// A host finished its part of the current step.
    HostDone(Step, Name),
    /// Verification passed: write the new key into the inventory, publish, then call
    /// [`Rotation::handle_retired`] (or [`Rotation::handle_retire_failed`]).
    Retire {
        /// The verified new key.
        new_key: PublicKey,
    },
    /// The rotation ended.
    Finished(Outcome),
}

/// One rotation in progress.
#[derive(Debug)]
pub struct Rotation {
    plan: Plan,
    step: Step,
    deadline: Instant,
    new_key: Option<PublicKey>,
    /// The revision that retired the old key, then any later one the driver published.
    revisions: Vec<Revision>,
    /// Hosts done with the current step.
    done: BTreeSet<Name>,
    /// Hosts that received orders (and must confirm a rollback).
    ordered: BTreeSet<Name>,
    reason: Option<String>,
    events: VecDeque<Event>,
}

impl Rotation {
    /// Starts `plan` at `now`.
    pub fn new(plan: Plan, now: Instant) -> Self {
        let deadline = now + plan.timeouts.prepare;
        let ordered = BTreeSet::from([plan.host.clone()]);
        Self {
            plan,
            step: Step::Prepare,
            deadline,
            new_key: None,
            revisions: Vec::new(),
            done: BTreeSet::new(),
            ordered,
            reason: None,
            events: VecDeque::from([Event::Entered(Step::Prepare)]),
        }
    }

    /// The plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The current step.
    pub fn step(&self) -> Step {
        self.step
    }

    /// The new key, once reported.
    pub fn new_key(&self) -> Option<PublicKey> {
        self.new_key
    }

    /// Whether the rotation has ended.
    pub fn is_finished(&self) -> bool {
        matches!(self.step, Step::Done | Step::RolledBack | Step::Failed)
    }

    /// Whether `host` is the rotating host or one of its peers.
    pub fn involves(&self, host: &Name) -> bool {
        self.plan.host == *host || self.plan.peers.contains(host)
    }

    /// The hosts the current step still waits for.
    pub fn waiting_for(&self) -> Vec<Name> {
        self.expected().into_iter().filter(|host| !self.done.contains(host)).collect()
    }

    /// The hosts whose answer the current step needs.
    fn expected(&self) -> Vec<Name> {
        let host = || vec![self.plan.host.clone()];
        let everyone =
            || core::iter::once(&self.plan.host).chain(&self.plan.peers).cloned().collect();
        match self.step {
            Step::Prepare => host(),
            Step::Stage => self.plan.peers.clone(),
            Step::Switch => host(),
            Step::Verify => self.plan.peers.clone(),
            Step::Retire if self.is_retired() => everyone(),
            Step::Rollback => self.ordered.iter().cloned().collect(),
            Step::Retire | Step::Done | Step::RolledBack | Step::Failed => Vec::new(),
        }
    }

    /// The order each involved host must have in its desired state now; hosts without one
    /// must have none of this rotation.
    pub fn orders(&self) -> Vec<(Name, RotationOrder)> {
        let phase = match self.step {
            Step::Prepare => Phase::Prepare,
            Step::Stage => Phase::Stage,
            Step::Switch => Phase::Switch,
            // Until the inventory has the new key, peers keep it staged and the host uses it.
            Step::Verify => Phase::Verify,
            Step::Retire if !self.is_retired() => Phase::Verify,
            Step::Rollback => Phase::Rollback,
            Step::Retire | Step::Done | Step::RolledBack | Step::Failed => return Vec::new(),
        };
        let order = |host: &Name| {
            let rotating = *host == self.plan.host;
            let preshared_keys = if rotating {
                self.plan.preshared_keys.clone()
            } else {
                self.plan
                    .preshared_keys
                    .get(host)
                    .map(|sealed| BTreeMap::from([(host.clone(), sealed.clone())]))
                    .unwrap_or_default()
            };
            RotationOrder {
                id: self.plan.id.clone(),
                host: self.plan.host.clone(),
                phase,
                old_key: self.plan.old_key,
                new_key: self.new_key,
                sealed_new_key: rotating
                    .then(|| self.plan.sealed_new_key.as_ref().map(|(sealed, _)| sealed.clone()))
                    .flatten(),
                preshared_keys,
            }
        };
        self.ordered.iter().map(|host| (host.clone(), order(host))).collect()
    }

    /// The next deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.step {
            Step::Retire if !self.is_retired() => None,
            Step::Done | Step::RolledBack | Step::Failed => None,
            _ => Some(self.deadline),
        }
    }

    /// The next event, in the order they happened.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Takes in the latest status of a host.
    pub fn handle_status(&mut self, now: Instant, status: &Status) {
        let host = &status.host;
        if !self.involves(host) || self.is_finished() {
            return;
        }
        let report = status.rotation(&self.plan.id);
        if let Some(error) = report.and_then(|report| report.error.as_ref()) {
            if matches!(self.step, Step::Prepare | Step::Stage | Step::Switch | Step::Verify) {
                return self.roll_back(now, format!("{host}: {error}"));
            }
        }
        let finished_part = match (self.step, report) {
            (Step::Prepare, Some(report)) if *host == self.plan.host => {
                match (report.new_key, &self.plan.sealed_new_key) {
                    (Some(key), Some((_, expected))) if key != *expected => {
                        return self.roll_back(
                            now,
                            format!("{host} reported new key {key}, not the sealed one"),
                        );
                    }
                    (Some(key), _) => {
                        self.new_key = Some(key);
                        true
                    }
                    (None, _) => false,
                }
            }
            (Step::Stage, Some(report)) => report.phase == Phase::Stage,
            (Step::Switch, Some(report)) => report.phase == Phase::Switch,
            (Step::Verify, Some(report)) => report.phase == Phase::Verify && report.taken_over,
            (Step::Retire, None) => {
                status.applied.as_ref().is_some_and(|applied| self.revisions.contains(applied))
            }
            (Step::Rollback, Some(report)) => report.phase == Phase::Rollback,
            _ => false,
        };
        if finished_part && self.expected().contains(host) && self.done.insert(host.clone()) {
            self.events.push_back(Event::HostDone(self.step, host.clone()));
        }
        // A step that waits for nobody (retiring before the driver wrote the inventory)
        // moves on by other means.
        if !self.expected().is_empty() && self.waiting_for().is_empty() {
            self.advance(now);
        }
    }

    /// The driver wrote the new key into the inventory; it publishes `revision` next (and
    /// no longer this rotation's orders).
    pub fn handle_retired(&mut self, now: Instant, revision: Revision) {
        if self.step == Step::Retire && !self.is_retired() {
            self.revisions.push(revision);
            self.deadline = now + self.plan.timeouts.retire;
        }
    }

    /// The driver published `revision` after this rotation's retirement (another rotation
    /// retired): hosts that run it have applied this retirement too.
    pub fn handle_published(&mut self, revision: Revision) {
        if self.step == Step::Retire && self.is_retired() && !self.revisions.contains(&revision) {
            self.revisions.push(revision);
        }
    }

    /// Whether the driver has written the new key into the inventory.
    fn is_retired(&self) -> bool {
        !self.revisions.is_empty()
    }

    /// The driver could not write the new key into the inventory: go back to the old one.
    pub fn handle_retire_failed(&mut self, now: Instant, reason: String) {
        if self.step == Step::Retire && !self.is_retired() {
            self.roll_back(now, format!("cannot record the new key: {reason}"));
        }
    }

    /// Acts on a deadline that passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_none_or(|deadline| now < deadline) {
            return;
        }
        let waiting: Vec<String> = self.waiting_for().iter().map(ToString::to_string).collect();
        let waiting = waiting.join(", ");
        match self.step {
            Step::Prepare => {
                let after = self.plan.timeouts.prepare;
                self.roll_back(now, format!("{waiting} did not report a new key within {}", human(after)));
            }
            Step::Stage => {
                let after = self.plan.timeouts.stage;
                self.roll_back(now, format!("{waiting} did not stage the new key within {}", human(after)));
            }
            Step::Switch => {
                let after = self.plan.timeouts.switch;
                self.roll_back(now, format!("{waiting} did not switch to the new key within {}", human(after)));
            }
            Step::Verify => {
                let after = self.plan.timeouts.verify;
                self.roll_back(
                    now,
                    format!(
                        "verification failed: no handshake on the new key with {waiting} within {}",
                        human(after)
                    ),
                );
            }
            Step::Retire => self.finish(Step::Failed, Outcome::Failed {
                reason: format!(
                    "the inventory has the new key and it was verified, but {waiting} did not apply \
                     revision {} within {}; they keep working on both keys until they do",
                    self.revisions.first().map(Revision::as_str).unwrap_or_default(),
                    human(self.plan.timeouts.retire)
                ),
            }),
            Step::Rollback => {
                let reason = self.reason.clone().unwrap_or_default();
                self.finish(Step::Failed, Outcome::Failed {
                    reason: format!(
                        "rolled back ({reason}), but {waiting} did not confirm within {}; \
                         their agents return to the old key when they next read the source",
                        human(self.plan.timeouts.rollback)
                    ),
                });
            }
            Step::Done | Step::RolledBack | Step::Failed => {}
        }
    }

    fn advance(&mut self, now: Instant) {
        let timeouts = self.plan.timeouts;
        match self.step {
            Step::Prepare if self.plan.peers.is_empty() => {
                self.enter(now, Step::Switch, timeouts.switch)
            }
            Step::Prepare => {
                self.ordered.extend(self.plan.peers.iter().cloned());
                self.enter(now, Step::Stage, timeouts.stage);
            }
            Step::Stage => self.enter(now, Step::Switch, timeouts.switch),
            Step::Switch if !self.plan.peers.is_empty() => {
                self.enter(now, Step::Verify, timeouts.verify)
            }
            Step::Switch | Step::Verify => {
                self.enter(now, Step::Retire, timeouts.retire);
                if let Some(new_key) = self.new_key {
                    self.events.push_back(Event::Retire { new_key });
                }
            }
            Step::Retire => {
                let new_key = self.new_key.unwrap_or(self.plan.old_key);
                self.finish(Step::Done, Outcome::Rotated { new_key });
            }
            Step::Rollback => {
                let reason = self.reason.clone().unwrap_or_default();
                self.finish(Step::RolledBack, Outcome::RolledBack { reason });
            }
            Step::Done | Step::RolledBack | Step::Failed => {}
        }
    }

    fn enter(&mut self, now: Instant, step: Step, timeout: Duration) {
        self.step = step;
        self.deadline = now + timeout;
        self.done.clear();
        self.events.push_back(Event::Entered(step));
    }

    fn roll_back(&mut self, now: Instant, reason: String) {
        self.reason = Some(reason);
        self.enter(now, Step::Rollback, self.plan.timeouts.rollback);
    }

    fn finish(&mut self, step: Step, outcome: Outcome) {
        self.step = step;
        self.done.clear();
        self.events.push_back(Event::Finished(outcome));
    }

    /// What to record in the audit log for `event` (see [`wgfabric_audit::note`]).
    pub fn notes(&self, event: &Event) -> Vec<Note> {
        let plan = &self.plan;
        let (host, id) = (plan.host.as_str(), &plan.id);
        let new_key = self.new_key;
        let with_new = |note: Note| match new_key {
            Some(key) => note.after(key),
            None => note,
        };
        match event {
            Event::HostDone(Step::Prepare, _) => vec![with_new(Note::new(
                Action::KeyGenerated,
                host,
                format!("rotation {id} prepare: new key ready on {host}"),
            ))],
            Event::HostDone(Step::Stage, peer) => vec![with_new(Note::new(
                Action::PeerAdded,
                peer.as_str(),
                format!("rotation {id} stage: new key of {host} staged as successor"),
            ))],
            Event::Entered(Step::Switch) => vec![with_new(
                Note::new(Action::ConfigApplied, host, format!("rotation {id} switch: {host} switches to the new key"))
                    .before(plan.old_key),
            )],
            Event::Retire { new_key } => vec![Note::new(
                Action::ConfigApplied,
                host,
                format!(
                    "rotation {id} verify: every peer ({}) handshook on the new key and holds its allowed IPs",
                    plan.peers.len()
                ),
            )
            .before(plan.old_key)
            .after(*new_key)],
            Event::Finished(Outcome::Rotated { new_key }) => {
                let mut notes: Vec<Note> = plan
                    .peers
                    .iter()
                    .map(|peer| {
                        Note::new(Action::PeerRemoved, peer.as_str(), format!("rotation {id} retire: old key of {host} removed"))
                            .before(plan.old_key)
                    })
                    .collect();
                notes.extend(plan.preshared_keys.keys().map(|peer| {
                    Note::new(
                        Action::PresharedKeyRotated,
                        format!("{host}+{peer}"),
                        format!("rotation {id} retire: new preshared key in use"),
                    )
                }));
                notes.push(
                    Note::new(Action::KeyRotated, host, format!("rotation {id} done"))
                        .before(plan.old_key)
                        .after(*new_key),
                );
                notes
            }
            Event::Finished(Outcome::RolledBack { reason }) => {
                let mut notes: Vec<Note> = self
                    .ordered
                    .iter()
                    .filter(|peer| **peer != plan.host)
                    .filter_map(|peer| {
                        let note = Note::new(
                            Action::PeerRemoved,
                            peer.as_str(),
                            format!("rotation {id} rollback: staged key of {host} removed"),
                        );
                        Some(note.before(new_key?))
                    })
                    .collect();
                let back = Note::new(
                    Action::ConfigApplied,
                    host,
                    format!("rotation {id} rollback: back on the old key ({reason})"),
                )
                .after(plan.old_key);
                notes.push(match new_key {
                    Some(key) => back.before(key),
                    None => back,
                });
                notes
            }
            Event::Finished(Outcome::Failed { reason }) => vec![Note::new(
                Action::ConfigApplied,
                host,
                format!("rotation {id} failed: {reason}"),
            )],
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests;
