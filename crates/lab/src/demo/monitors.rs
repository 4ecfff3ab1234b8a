//! One failover monitor per host of the lab that has relays to choose from and no agent
//! (an agent runs its host's failover itself), each running
//! [`wgfabric_host::failover::watch`] in its own thread against the host's namespace, as the agent
//! runs it on a real host.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use serde::Serialize;

use super::lab::Lab;
use super::Error;
use wgfabric_host::failover::{watch, Event, Monitor, Policy, Reason, WatchError};
use wgfabric_model::names::Name;
use wgfabric_uapi::Device;

/// A move of one host's failover routes, as a monitor applied it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SwitchRecord {
    /// The host.
    pub host: Name,
    /// The relay that carried its routes.
    pub from: Name,
    /// The relay that carries them now.
    pub to: Name,
    /// Why.
    pub reason: Reason,
    /// When the device took the change.
    #[serde(skip)]
    pub at: Instant,
}

/// The running monitors; stopped (and joined) when dropped.
#[derive(Debug)]
pub struct Monitors {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Result<Monitor, WatchError>>>,
    events: Receiver<Event>,
    active: BTreeMap<Name, Name>,
    switches: Vec<SwitchRecord>,
}

impl Monitors {
    /// Starts a monitor for every host of `lab` that can fail over and has no agent.
    pub fn start(lab: &Lab, policy: Policy) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (sender, events) = channel();
        let mut threads = Vec::new();
        let mut active = BTreeMap::new();
        for host in lab.hosts().iter().filter(|host| !host.has_agent()) {
            let Ok(monitor) = Monitor::new(host.config().clone(), policy) else { continue };
            active.insert(host.name().clone(), monitor.active().clone());
            let (stop, sender) = (Arc::clone(&stop), sender.clone());
            let namespace = host.namespace().to_owned();
            threads.push(std::thread::spawn(move || {
                let device = Device::new(&monitor.config().interface);
                watch(monitor, &device, Some(&namespace), &stop, |event| {
                    let _ = sender.send(event);
                })
            }));
        }
        Self { stop, threads, events, active, switches: Vec::new() }
    }

    /// Takes in what the monitors reported since the last call.
    ///
    /// # Errors
    /// When a monitor has stopped on its own (its host's device failed).
    pub fn poll(&mut self) -> Result<(), Error> {
        self.take_events();
        match self.threads.iter().position(JoinHandle::is_finished) {
            Some(index) => Err(joined(self.threads.remove(index))
                .err()
                .unwrap_or_else(|| Error::Setup("a failover monitor stopped early".into()))),
            None => Ok(()),
        }
    }

    fn take_events(&mut self) {
        for event in self.events.try_iter() {
            if let Event::Switched { host, from, to, reason, at } = event {
                self.active.insert(host.clone(), to.clone());
                self.switches.push(SwitchRecord { host, from, to, reason, at });
            }
        }
    }

    /// Each monitored host's active relay, as last switched.
    pub fn active(&self) -> &BTreeMap<Name, Name> {
        &self.active
    }

    /// Whether every monitored host's routes are on `relay`.
    pub fn all_on(&self, relay: &Name) -> bool {
        self.active.values().all(|active| active == relay)
    }

    /// Every switch so far, in order.
    pub fn switches(&self) -> &[SwitchRecord] {
        &self.switches
    }

    /// Stops every monitor and waits for them.
    ///
    /// # Errors
    /// The first monitor that stopped on an error.
    pub fn stop(mut self) -> Result<(), Error> {
        self.halt()
    }

    fn halt(&mut self) -> Result<(), Error> {
        self.stop.store(true, Ordering::Relaxed);
        let results: Vec<Result<(), Error>> = self.threads.drain(..).map(joined).collect();
        self.take_events();
        results.into_iter().collect()
    }
}

/// Waits for a monitor thread; a panic in it is re-raised here.
fn joined(thread: JoinHandle<Result<Monitor, WatchError>>) -> Result<(), Error> {
    match thread.join() {
        Ok(result) => result.map(drop).map_err(Error::Monitor),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

impl Drop for Monitors {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = self.halt();
        } else {
            self.stop.store(true, Ordering::Relaxed);
        }
    }
}
