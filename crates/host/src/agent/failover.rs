//! Relay failover inside the agent: hosts with several relays run [`crate::failover`]'s
//! monitor in a thread. The agent stops it around its own changes to the interface (so the
//! two never write at once) and restarts it from the configuration it just applied, with the
//! failover routes where the monitor last put them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use super::Device;
use crate::failover::{watch, Event, Monitor, Policy};
use wgfabric_model::config::HostConfig;
use wgfabric_model::names::Name;

/// A running failover monitor.
#[derive(Debug)]
pub(crate) struct FailoverTask {
    stop: Arc<AtomicBool>,
    active: Arc<Mutex<Name>>,
    thread: JoinHandle<()>,
}

impl FailoverTask {
    /// Starts monitoring `config` (whose failover routes sit on its active relay), or `None`
    /// when the host has fewer than two relays.
    pub(crate) fn start(config: HostConfig, device: Device) -> Option<Self> {
        let monitor = Monitor::new(config, Policy::default()).ok()?;
        let host = monitor.config().host.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let active = Arc::new(Mutex::new(monitor.active().clone()));
        let (thread_stop, thread_active) = (Arc::clone(&stop), Arc::clone(&active));
        let thread = std::thread::spawn(move || {
            let on_event = |event: Event| {
                if let Event::Switched { from, to, reason, .. } = event {
                    tracing::warn!(%host, %from, %to, reason = reason.as_str(), "failover routes moved");
                    *thread_active.lock().unwrap_or_else(PoisonError::into_inner) = to;
                }
            };
            if let Err(error) = watch(monitor, &device, None, &thread_stop, on_event) {
                tracing::error!(%host, "{error}; relay failover stopped");
            }
        });
        Some(Self { stop, active, thread })
    }

    /// The relay carrying the failover routes now.
    pub(crate) fn active(&self) -> Name {
        self.active.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Stops the monitor and returns the relay carrying the failover routes.
    pub(crate) fn stop(self) -> Name {
        self.stop.store(true, Ordering::Relaxed);
        // A monitor that panicked has nothing more to say than its last switch.
        let _ = self.thread.join();
        self.active.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}
