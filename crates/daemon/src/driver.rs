//! The seam where the data path plugs into the daemon.
//!
//! [`start`] is called once the userspace API socket is bound and before the daemon reports
//! readiness (so after the fork: threads are allowed). The data path it returns must, by then:
//! - have created the TUN device (`wgfabric_sys::Tun::create`) and bound its UDP sockets;
//! - run its own worker threads, which stop when [`Driver::stop`] is called (for example by
//!   triggering the `wgfabric_sys::Shutdown` its queues and sockets were given);
//! - call `shutdown.trigger(Reason::InterfaceGone)` when a TUN read returns
//!   `wgfabric_sys::Error::LinkDeleted`;
//! - implement [`Control`] over its `wgfabric_proto` device, applying each `SetRequest`
//!   whole under the device lock.
//!
//! The implementation is [`crate::datapath::Datapath`].

use std::sync::Arc;

use crate::cli::Threads;
use crate::control::Control;
use crate::shutdown::Shutdown;

/// A running data path.
pub(crate) trait Driver: Control {
    /// The interface's actual name, reported through `WG_TUN_NAME_FILE`.
    fn interface_name(&self) -> &str;

    /// Stops the worker threads and closes the interface; called once, at shutdown.
    fn stop(&self);

    /// The counters the userspace API does not report, for metrics.
    fn counters(&self) -> wgfabric_metrics::Counters;
}

/// Brings up the data path for `interface`.
///
/// # Errors
/// When the interface or the sockets cannot be created; the daemon reports the error to the
/// process that started it and exits.
pub(crate) fn start(
    interface: &str,
    threads: Threads,
    shutdown: &Shutdown,
) -> anyhow::Result<Arc<dyn Driver>> {
    let datapath: Arc<dyn Driver> = crate::datapath::Datapath::start(interface, threads, shutdown)?;
    Ok(datapath)
}
