//! The interface's userspace daemon: adopted when one already answers on the interface's API
//! socket, else started as wg-quick starts a userspace implementation (`wgfabricd IFACE`,
//! which detaches once its interface and socket exist), and stopped as wg-quick stops it, by
//! deleting the interface.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use wgfabric_model::wallclock::monotonic;
use wgfabric_uapi::Device;

use super::record::DaemonUse;
use super::UpError;
use crate::daemon_binary::locate_daemon;
use crate::netlink::{Netlink, NetlinkError};

/// How long a daemon may take to exit once its interface is gone.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How often to look whether it has.
const STOP_POLL: Duration = Duration::from_millis(20);

/// The daemon serving `interface` on `device`: the one running, or `binary` (else
/// `wgfabricd` beside this executable or on `PATH`) started now.
///
/// # Errors
/// [`UpError::Daemon`]: no binary, or one that would not start (with what it said).
pub(crate) fn attach(
    device: &Device,
    interface: &str,
    binary: Option<&Path>,
) -> Result<DaemonUse, UpError> {
    if device.get().is_ok() {
        return Ok(DaemonUse::Adopted);
    }
    let binary = locate_daemon(binary).map_err(|error| UpError::Daemon(error.to_string()))?;
    let output = Command::new(&binary)
        .arg(interface)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| UpError::Daemon(format!("{}: {error}", binary.display())))?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stderr);
        return Err(UpError::Daemon(format!(
            "`{} {interface}` failed ({}): {}",
            binary.display(),
            output.status,
            said.trim()
        )));
    }
    Ok(DaemonUse::Started { binary })
}

/// Stops the daemon of `interface` by deleting the interface, and waits until its API socket
/// is gone. An interface that is gone already is fine.
///
/// # Errors
/// [`UpError::Netlink`]; [`UpError::Daemon`] when the daemon outlives its interface.
pub(crate) fn stop(netlink: &mut Netlink, device: &Device, interface: &str) -> Result<(), UpError> {
    match netlink.delete_link(interface) {
        Ok(()) | Err(NetlinkError::NoSuchInterface(_)) => {}
        Err(error) => return Err(error.into()),
    }
    let deadline = monotonic() + STOP_TIMEOUT;
    while device.socket().exists() {
        if monotonic() >= deadline {
            return Err(UpError::Daemon(format!(
                "the daemon of {interface} still serves {} {} s after its interface was deleted",
                device.socket().display(),
                STOP_TIMEOUT.as_secs()
            )));
        }
        std::thread::sleep(STOP_POLL);
    }
    Ok(())
}
