//! Runs rotations over a source of truth: publishes each rotation's orders inside the
//! desired states, feeds the agents' statuses and the clock to the state machines, and
//! writes the verified new key into the inventory (and, in central mode, the sealed key and
//! preshared keys into the key store) before publishing the retiring revision.
//!
//! Several rotations run at once up to a concurrency limit, never two whose hosts peer with
//! each other (in hub-and-spoke fabrics, spokes rotate side by side and relays one at a
//! time). After a rotation that did not succeed, no new one starts.

use std::collections::{BTreeMap, VecDeque};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand_core::{CryptoRng, RngCore};
use wgfabric_proto::keys::{PresharedKey, PrivateKey, PublicKey};
use zeroize::Zeroizing;

use super::inventory_edit::replace_public_key;
use super::machine::{Event, Outcome, Plan, Rotation, Timeouts};
use crate::apply::{publish, rotations_in_flight, statuses};
use wgfabric_model::error::Error;
use wgfabric_model::fabric::Fabric;
use wgfabric_model::files::{write_all_or_nothing, PendingFile, PUBLIC_MODE};
use wgfabric_model::names::Name;
use wgfabric_model::sealed_keys::KeyStore;
use wgfabric_model::wallclock::{monotonic, system, unix_seconds};
use wgfabric_store::state::{desired_states, DesiredState, KeyMaterial, Revision, Sealed};
use wgfabric_store::store::{Kind, Store, StoreError};

/// How rotations run.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Deadlines of each step.
    pub timeouts: Timeouts,
    /// Rotate the preshared keys between each rotating host and its peers too.
    pub preshared_keys: bool,
    /// How many rotations may run at once (at least 1).
    pub concurrency: usize,
    /// The inventory's commit, for the published desired states.
    pub commit: Option<String>,
}

/// What the caller sees of rotations as they go.
pub trait Observer {
    /// `event` happened to `rotation` (record it, show it).
    fn event(&mut self, rotation: &Rotation, event: &Event);
    /// The rotations still running, at least once a second (for a progress display).
    fn running(&mut self, rotations: &[Rotation]);
}

/// Why rotations could not start or go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RotateError {
    /// The source of truth failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The inventory, lock or key store failed.
    #[error(transparent)]
    Fleet(#[from] Error),
    /// Another rotation is under way.
    #[error(
        "rotation {id} of {host} is under way; wait for it to end, or run \
         `wgfabric apply --force` to abandon it"
    )]
    InFlight {
        /// The rotation.
        id: String,
        /// Its rotating host.
        host: Name,
    },
    /// Some involved hosts do not run the inventory's revision yet.
    #[error(
        "not every involved host runs revision {revision} of the inventory: {}; run \
         `wgfabric apply` first",
        lagging(.store, .behind)
    )]
    Behind {
        /// The revision the rotation starts from.
        revision: Revision,
        /// The source of truth, as it describes itself.
        store: String,
        /// Each host behind, and what it runs instead.
        behind: Vec<(Name, Lag)>,
    },
}

/// What an involved host runs instead of the revision a rotation starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Lag {
    /// No agent reports for it.
    NoAgent,
    /// Its agent runs this revision, or none.
    Runs(Option<Revision>),
}

/// The hosts behind, as [`RotateError::Behind`] lists them.
fn lagging(store: &str, behind: &[(Name, Lag)]) -> String {
    let host = |(host, lag): &(Name, Lag)| match lag {
        Lag::NoAgent => format!("{host} (no agent reports to {store})"),
        Lag::Runs(revision) => {
            format!("{host} (runs {})", revision.as_ref().map_or("nothing", Revision::as_str))
        }
    };
    behind.iter().map(host).collect::<Vec<_>>().join(", ")
}

/// Rotates the keys of `hosts` (in order), publishing to `store`; the inventory at
/// `inventory` gets each new key once verified. Returns each host's outcome.
///
/// Before anything starts, every involved agent must run the inventory's current revision
/// (run `wgfabric apply` first) and no other rotation may be under way.
///
/// # Errors
/// [`RotateError::InFlight`] or [`RotateError::Behind`] before anything changed; store and file errors as they come
/// (rotations under way then stay published for the agents; `wgfabric apply --force` takes
/// every host back to the inventory's keys).
pub fn rotate<R: RngCore + CryptoRng>(
    store: &dyn Store,
    inventory: &Path,
    hosts: &[Name],
    settings: &Settings,
    rng: &mut R,
    observer: &mut dyn Observer,
) -> Result<Vec<(Name, Outcome)>, RotateError> {
    let driver = Driver::load(store, inventory, settings)?;
    driver.check_ready(hosts)?;
    driver.run(hosts, rng, observer)
}

struct Driver<'a> {
    store: &'a dyn Store,
    inventory: PathBuf,
    settings: &'a Settings,
    fabric: Fabric,
    material: KeyMaterial,
    revision: Revision,
    base: BTreeMap<Name, DesiredState>,
    running: Vec<Rotation>,
    outcomes: Vec<(Name, Outcome)>,
    /// What was last published, to skip unchanged publications.
    published: Option<BTreeMap<Name, DesiredState>>,
}

impl<'a> Driver<'a> {
    fn load(
        store: &'a dyn Store,
        inventory: &Path,
        settings: &'a Settings,
    ) -> Result<Self, RotateError> {
        let fabric = Fabric::load_locked(inventory)?;
        let material = KeyMaterial::load(fabric.inventory())?;
        let (revision, base) = desired_states(&fabric, &material, settings.commit.as_deref());
        Ok(Self {
            store,
            inventory: inventory.to_owned(),
            settings,
            fabric,
            material,
            revision,
            base,
            running: Vec::new(),
            outcomes: Vec::new(),
            published: None,
        })
    }

    /// Reads the inventory again (after a retirement) and recomputes the desired states.
    fn reload(&mut self) -> Result<(), Error> {
        self.fabric = Fabric::load_locked(&self.inventory)?;
        self.material = KeyMaterial::load(self.fabric.inventory())?;
        let (revision, base) =
            desired_states(&self.fabric, &self.material, self.settings.commit.as_deref());
        self.revision = revision;
        self.base = base;
        Ok(())
    }

    fn check_ready(&self, hosts: &[Name]) -> Result<(), RotateError> {
        if let Some((id, host)) = rotations_in_flight(self.store)?.into_iter().next() {
            return Err(RotateError::InFlight { id, host });
        }
        let statuses = statuses(self.store)?;
        let mut involved: Vec<Name> = Vec::new();
        for host in hosts {
            let config = self.fabric.host_config(host.as_str())?;
            involved.push(host.clone());
            involved.extend(config.peers.into_iter().map(|peer| peer.name));
        }
        involved.sort();
        involved.dedup();
        let behind: Vec<(Name, Lag)> = involved
            .into_iter()
            .filter_map(|host| {
                let lag = match statuses.get(&host) {
                    None => Lag::NoAgent,
                    Some(status) if status.applied.as_ref() != Some(&self.revision) => {
                        Lag::Runs(status.applied.clone())
                    }
                    Some(_) => return None,
                };
                Some((host, lag))
            })
            .collect();
        if !behind.is_empty() {
            return Err(RotateError::Behind {
                revision: self.revision.clone(),
                store: self.store.describe(),
                behind,
            });
        }
        Ok(())
    }

    fn run<R: RngCore + CryptoRng>(
        mut self,
        hosts: &[Name],
        rng: &mut R,
        observer: &mut dyn Observer,
    ) -> Result<Vec<(Name, Outcome)>, RotateError> {
        let mut watch = self.store.watch(Kind::Status, None)?;
        let mut queue: VecDeque<Name> = hosts.iter().cloned().collect();
        let concurrency = self.settings.concurrency.max(1);
        let mut stop_starting = false;
        loop {
            while !stop_starting && self.running.len() < concurrency {
                let Some(at) = queue.iter().position(|host| !self.conflicts(host)) else { break };
                let Some(host) = queue.remove(at) else { break };
                let plan = self.plan(&host, rng)?;
                self.running.push(Rotation::new(plan, monotonic()));
            }
            self.drain_events(observer)?;
            self.publish()?;
            let before = self.outcomes.len();
            self.running.retain(|rotation| !rotation.is_finished());
            stop_starting |= self.outcomes[before..]
                .iter()
                .any(|(_, outcome)| !matches!(outcome, Outcome::Rotated { .. }));
            if self.running.is_empty() && (queue.is_empty() || stop_starting) {
                return Ok(self.outcomes);
            }
            observer.running(&self.running);
            let now = monotonic();
            let next = self.running.iter().filter_map(Rotation::poll_timeout).min();
            let wait = next
                .map_or(Duration::from_secs(1), |deadline| deadline.saturating_duration_since(now));
            if let Err(error) = watch.wait(wait.min(Duration::from_secs(1))) {
                tracing::warn!("cannot watch statuses: {error}");
                std::thread::sleep(Duration::from_millis(200));
            }
            let statuses = match statuses(self.store) {
                Ok(statuses) => statuses,
                Err(error) => {
                    tracing::warn!("cannot read statuses: {error}");
                    BTreeMap::new()
                }
            };
            let now = monotonic();
            for rotation in &mut self.running {
                for status in statuses.values() {
                    rotation.handle_status(now, status);
                }
                rotation.handle_timeout(now);
            }
        }
    }

    /// Whether `host` may not rotate alongside the running rotations.
    fn conflicts(&self, host: &Name) -> bool {
        let peers: Vec<Name> = self
            .fabric
            .host_config(host.as_str())
            .map(|config| config.peers.into_iter().map(|peer| peer.name).collect())
            .unwrap_or_default();
        self.running
            .iter()
            .any(|rotation| rotation.involves(host) || peers.contains(&rotation.plan().host))
    }

    fn plan<R: RngCore + CryptoRng>(&self, host: &Name, rng: &mut R) -> Result<Plan, RotateError> {
        let config = self.fabric.host_config(host.as_str())?;
        let central = self.material.private_keys.contains_key(host);
        let sealing = (central || self.settings.preshared_keys)
            .then(|| KeyStore::new(self.fabric.inventory()))
            .transpose()?;
        let seal = |secret: &str| -> Result<Sealed, Error> {
            // `sealing` is set whenever something is sealed.
            let store = sealing.as_ref().ok_or_else(|| Error::Refused("no key store".into()))?;
            Ok(Sealed::new(store.seal(secret.as_bytes())?))
        };
        let sealed_new_key = if central {
            let key = PrivateKey::generate(rng);
            Some((seal(&Zeroizing::new(key.to_base64_secret()))?, key.public_key()))
        } else {
            None
        };
        let mut preshared_keys = BTreeMap::new();
        if self.settings.preshared_keys {
            for peer in &config.peers {
                let psk = PresharedKey::generate(rng);
                preshared_keys
                    .insert(peer.name.clone(), seal(&Zeroizing::new(psk.to_base64_secret()))?);
            }
        }
        Ok(Plan {
            id: format!("{host}-{}", unix_seconds(system())),
            host: host.clone(),
            peers: config.peers.into_iter().map(|peer| peer.name).collect(),
            old_key: config.public_key,
            sealed_new_key,
            preshared_keys,
            timeouts: self.settings.timeouts,
        })
    }

    fn drain_events(&mut self, observer: &mut dyn Observer) -> Result<(), RotateError> {
        for index in 0..self.running.len() {
            while let Some(event) = self.running[index].poll_event() {
                observer.event(&self.running[index], &event);
                match &event {
                    Event::Retire { new_key } => {
                        let now = monotonic();
                        match self.record_new_key(index, new_key) {
                            Ok(revision) => {
                                // Retired first, so that what is published next carries the
                                // new key and none of this rotation's orders.
                                self.running[index].handle_retired(now, revision.clone());
                                for rotation in &mut self.running {
                                    rotation.handle_published(revision.clone());
                                }
                                self.publish()?;
                            }
                            Err(error) => {
                                tracing::error!("cannot record the new key: {error}");
                                self.running[index].handle_retire_failed(now, error.to_string());
                            }
                        }
                    }
                    Event::Finished(outcome) => {
                        let host = self.running[index].plan().host.clone();
                        self.outcomes.push((host, outcome.clone()));
                    }
                    Event::Entered(_) | Event::HostDone(..) => {}
                }
            }
        }
        Ok(())
    }

    /// Writes the verified key of rotation `index` into the inventory (and its sealed keys
    /// into the key store), all or nothing, and reads the inventory again. Returns the new
    /// revision, which the caller publishes.
    fn record_new_key(&mut self, index: usize, new_key: &PublicKey) -> Result<Revision, Error> {
        let plan = self.running[index].plan().clone();
        let text =
            std::fs::read_to_string(&self.inventory).map_err(|e| Error::io(&self.inventory, e))?;
        let edited =
            replace_public_key(&self.inventory, &text, plan.host.as_str(), &plan.old_key, new_key)?;
        let mode = std::fs::metadata(&self.inventory)
            .map_or(PUBLIC_MODE, |meta| meta.permissions().mode() & 0o777);
        let inventory = self.fabric.inventory();
        let mut files =
            vec![PendingFile { path: self.inventory.clone(), contents: edited.as_bytes(), mode }];
        if let Some((sealed, _)) = &plan.sealed_new_key {
            let path = KeyMaterial::dir(inventory).join(format!("{}.age", plan.host));
            files.push(PendingFile {
                path,
                contents: sealed.as_str().as_bytes(),
                mode: PUBLIC_MODE,
            });
        }
        for (peer, sealed) in &plan.preshared_keys {
            let path = KeyMaterial::psk_path(inventory, plan.host.as_str(), peer.as_str());
            files.push(PendingFile {
                path,
                contents: sealed.as_str().as_bytes(),
                mode: PUBLIC_MODE,
            });
        }
        write_all_or_nothing(&files)?;
        self.reload()?;
        tracing::info!(
            host = %plan.host,
            %new_key,
            revision = %self.revision,
            "new key written to {}",
            self.inventory.display()
        );
        Ok(self.revision.clone())
    }

    /// Publishes every host's desired state with the orders of the running rotations.
    fn publish(&mut self) -> Result<(), RotateError> {
        let mut docs = self.base.clone();
        for rotation in &self.running {
            for (host, order) in rotation.orders() {
                if let Some(doc) = docs.get_mut(&host) {
                    doc.rotations.push(order);
                }
            }
        }
        for doc in docs.values_mut() {
            doc.rotations.sort_by(|a, b| a.id.cmp(&b.id));
        }
        if self.published.as_ref() != Some(&docs) {
            publish(self.store, &docs)?;
            self.published = Some(docs);
        }
        Ok(())
    }
}
