//! `wgfabric apply` without the command line: publish desired states to a source of truth,
//! then follow the agents' statuses until each targeted host runs the new revision, refused
//! it, or the time is up.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use wgfabric_model::names::Name;
use wgfabric_model::wallclock::monotonic;
use wgfabric_store::state::{DesiredState, Revision, Status, StatusMark};
use wgfabric_store::store::{Kind, Store, StoreError};

/// Where one host is with a revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum HostState {
    /// Its agent has not reported the revision yet.
    Waiting {
        /// The revision it reports, if any.
        applied: Option<Revision>,
        /// Its agent's current problem, if it reports one.
        error: Option<String>,
    },
    /// Its agent runs the revision.
    Applied,
    /// Its agent refused the revision and keeps the previous one.
    Refused {
        /// Why.
        reason: String,
    },
}

impl HostState {
    /// Whether the host will not change its answer by waiting longer.
    pub fn is_final(&self) -> bool {
        !matches!(self, Self::Waiting { .. })
    }

    /// Where `status` (if any) puts its host with `revision`, counting only a status written
    /// after the one `before` marks (the host's status when the revision was published): an
    /// older one, such as an agent's last words before it restarted, says nothing about this
    /// publication. A host that runs it but still reports the refusal of another document
    /// has not read the publication yet.
    pub fn of(status: Option<&Status>, revision: &Revision, before: Option<&StatusMark>) -> Self {
        let Some(status) = status else { return Self::Waiting { applied: None, error: None } };
        if before.is_some_and(|before| !status.is_newer_than(before)) {
            return Self::Waiting { applied: status.applied.clone(), error: status.error.clone() };
        }
        match &status.refused {
            Some(refusal) if refusal.revision.as_ref() == Some(revision) => {
                Self::Refused { reason: refusal.reason.clone() }
            }
            // The interface runs it, but the firewall in force is an older one.
            None if status.applied.as_ref() == Some(revision) => match &status.policy_error {
                Some(error) => Self::Refused { reason: format!("firewall: {error}") },
                None => Self::Applied,
            },
            _ => Self::Waiting { applied: status.applied.clone(), error: status.error.clone() },
        }
    }
}

/// Every targeted host's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// The revision waited for.
    pub revision: Revision,
    /// Each host's state.
    pub hosts: BTreeMap<Name, HostState>,
}

impl Progress {
    /// Whether no host is waiting any more.
    pub fn is_done(&self) -> bool {
        self.hosts.values().all(HostState::is_final)
    }

    /// Hosts in each state: applied, refused, still waiting.
    pub fn counts(&self) -> (usize, usize, usize) {
        self.hosts.values().fold((0, 0, 0), |(a, r, w), state| match state {
            HostState::Applied => (a + 1, r, w),
            HostState::Refused { .. } => (a, r + 1, w),
            HostState::Waiting { .. } => (a, r, w + 1),
        })
    }

    /// The hosts still waiting.
    pub fn waiting(&self) -> impl Iterator<Item = &Name> {
        self.hosts.iter().filter(|(_, state)| !state.is_final()).map(|(name, _)| name)
    }
}

/// Writes the desired state of each host in `docs`; returns the hosts whose document
/// changed.
///
/// # Errors
/// The first write that failed; earlier hosts are published.
pub fn publish(
    store: &dyn Store,
    docs: &BTreeMap<Name, DesiredState>,
) -> Result<Vec<Name>, StoreError> {
    let mut changed = Vec::new();
    for (host, doc) in docs {
        let bytes = doc.to_json();
        if store.get(Kind::Desired, host)?.as_deref() != Some(&bytes[..]) {
            store.put(Kind::Desired, host, &bytes)?;
            changed.push(host.clone());
        }
    }
    Ok(changed)
}

/// The rotations under way according to the published desired states: `(id, rotating
/// host)`, each once.
///
/// # Errors
/// When the store cannot be read.
pub fn rotations_in_flight(store: &dyn Store) -> Result<Vec<(String, Name)>, StoreError> {
    let mut found = Vec::new();
    for bytes in store.list(Kind::Desired)?.values() {
        let Ok(doc) = serde_json::from_slice::<DesiredState>(bytes) else { continue };
        for order in doc.rotations {
            let entry = (order.id, order.host);
            if !found.contains(&entry) {
                found.push(entry);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The statuses of `hosts` as the store has them now (unreadable ones count as missing).
///
/// # Errors
/// When the store cannot be read.
pub fn statuses(store: &dyn Store) -> Result<BTreeMap<Name, Status>, StoreError> {
    Ok(store
        .list(Kind::Status)?
        .into_iter()
        .filter_map(|(host, bytes)| Some((host, Status::from_json(&bytes).ok()?)))
        .collect())
}

/// Follows the statuses of `hosts` until every one applied or refused `revision` in a status
/// newer than its mark in `before` (see [`HostState::of`]), or `timeout` passed. `on_progress` sees each new state of affairs (and the first).
///
/// # Errors
/// When the store cannot be watched; a store that fails while waiting is retried.
pub fn wait_for(
    store: &dyn Store,
    revision: &Revision,
    hosts: &[Name],
    before: &BTreeMap<Name, StatusMark>,
    timeout: Duration,
    mut on_progress: impl FnMut(&Progress),
) -> Result<Progress, StoreError> {
    let deadline = monotonic() + timeout;
    let mut watch = store.watch(Kind::Status, None)?;
    let mut last: Option<Progress> = None;
    loop {
        let progress = match statuses(store) {
            Ok(statuses) => Progress {
                revision: revision.clone(),
                hosts: hosts
                    .iter()
                    .map(|host| {
                        let state = HostState::of(statuses.get(host), revision, before.get(host));
                        (host.clone(), state)
                    })
                    .collect(),
            },
            Err(error) => {
                tracing::warn!("cannot read statuses: {error}");
                last.clone().unwrap_or_else(|| Progress {
                    revision: revision.clone(),
                    hosts: hosts
                        .iter()
                        .map(|h| (h.clone(), HostState::of(None, revision, None)))
                        .collect(),
                })
            }
        };
        if last.as_ref() != Some(&progress) {
            on_progress(&progress);
        }
        let left = deadline.saturating_duration_since(monotonic());
        if progress.is_done() || left.is_zero() {
            return Ok(progress);
        }
        last = Some(progress);
        if let Err(error) = watch.wait(left.min(Duration::from_secs(1))) {
            tracing::warn!("cannot watch statuses: {error}");
            std::thread::sleep(Duration::from_millis(500).min(left));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wgfabric_store::state::{AgentInfo, Refusal, FORMAT};

    fn status(applied: Option<&str>, refused: Option<&str>) -> Status {
        Status {
            format: FORMAT,
            host: "a".parse().unwrap(),
            time: 0,
            seq: 0,
            agent: AgentInfo {
                version: "0".into(),
                boot: "1-1".into(),
                interface: "wg0".into(),
                successor: None,
            },
            applied: applied.map(Revision::new),
            refused: refused.map(|r| Refusal {
                revision: Some(Revision::new(r)),
                reason: "bad".into(),
                time: 0,
            }),
            error: None,
            policy_error: None,
            corrected: None,
            peers: Vec::new(),
            rotations: Vec::new(),
            paths: Vec::new(),
        }
    }

    #[test]
    fn host_states_follow_their_status() {
        let r2 = Revision::new("r2");
        let waiting = HostState::Waiting { applied: None, error: None };
        assert_eq!(HostState::of(None, &r2, None), waiting);
        assert_eq!(HostState::of(Some(&status(Some("r2"), None)), &r2, None), HostState::Applied);
        let refused = HostState::of(Some(&status(Some("r1"), Some("r2"))), &r2, None);
        assert_eq!(refused, HostState::Refused { reason: "bad".into() });
        let older_refusal = HostState::of(Some(&status(Some("r1"), Some("r0"))), &r2, None);
        assert!(!older_refusal.is_final(), "a refusal of another revision says nothing");
        let not_read_yet = HostState::of(Some(&status(Some("r2"), Some("r0"))), &r2, None);
        assert!(!not_read_yet.is_final(), "runs r2 but has not read the latest publication");
    }

    #[test]
    fn only_a_status_written_since_the_publication_counts() {
        let r2 = Revision::new("r2");
        let old = status(Some("r2"), None);
        let before = old.mark();
        assert!(!HostState::of(Some(&old), &r2, Some(&before)).is_final(), "its last words");
        let next = Status { seq: 1, ..old.clone() };
        assert_eq!(HostState::of(Some(&next), &r2, Some(&before)), HostState::Applied);
        let mut restarted = old.clone();
        restarted.agent.boot = "2-2".into();
        assert_eq!(HostState::of(Some(&restarted), &r2, Some(&before)), HostState::Applied);
    }

    #[test]
    fn waiting_ends_when_every_host_answered() {
        let dir = std::env::temp_dir().join(format!("wgfabric-apply-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = wgfabric_store::store::DirStore::new(dir.clone());
        let (a, b): (Name, Name) = ("a".parse().unwrap(), "b".parse().unwrap());
        let revision = Revision::new("r2");
        store.put(Kind::Status, &a, &status(Some("r2"), None).to_json()).unwrap();
        let mut seen = Vec::new();
        let hosts = [a.clone(), b.clone()];
        let none = BTreeMap::new();
        let progress =
            wait_for(&store, &revision, &hosts, &none, Duration::from_secs(10), |progress| {
                seen.push(progress.counts());
                if seen.len() == 1 {
                    // b's agent answers once the first state of affairs was shown.
                    let refused = status(Some("r1"), Some("r2")).to_json();
                    store.put(Kind::Status, &b, &refused).unwrap();
                }
            })
            .unwrap();
        assert!(progress.is_done());
        assert_eq!(seen, [(1, 0, 1), (1, 1, 0)]);

        let timed_out =
            wait_for(&store, &Revision::new("r3"), &[a], &none, Duration::from_millis(300), |_| {})
                .unwrap();
        assert_eq!(timed_out.waiting().count(), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
