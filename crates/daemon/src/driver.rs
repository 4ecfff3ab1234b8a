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
//! Until the protocol driver lands, [`start`] returns [`ConfigOnly`]: the protocol core's
//! `Device`, configured through the API (so `wg set`, `wg show`, `wg setconf` and
//! `wg syncconf` work against the daemon) but never driven: no interface, no packets.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::anyhow;
use rand_core::{OsRng, RngCore as _};
use wgfabric_proto::uapi::{DeviceSnapshot, SetRequest, UapiError};
use wgfabric_proto::Device;

use crate::control::Control;
use crate::shutdown::Shutdown;

/// A running data path.
pub(crate) trait Driver: Control {
    /// The interface's actual name, reported through `WG_TUN_NAME_FILE`.
    fn interface_name(&self) -> &str;

    /// Stops the worker threads and closes the interface; called once, at shutdown.
    fn stop(&self);
}

/// Brings up the data path for `interface`.
///
/// # Errors
/// When the interface or the sockets cannot be created; the daemon reports the error to the
/// process that started it and exits.
pub(crate) fn start(interface: &str, shutdown: &Shutdown) -> anyhow::Result<Arc<dyn Driver>> {
    // The data path will hand `shutdown` to its TUN reader.
    let _ = shutdown;
    tracing::warn!("no data path yet: keeping the configuration only; no interface is created");
    Ok(Arc::new(ConfigOnly { interface: interface.to_owned(), state: Mutex::new(State::new()?) }))
}

/// A stand-in data path: the protocol core's device, configured but never driven.
#[derive(Debug)]
struct ConfigOnly {
    interface: String,
    state: Mutex<State>,
}

/// The device plus what belongs to the sockets, which the device leaves to its caller.
#[derive(Debug)]
struct State {
    device: Device,
    listen_port: u16,
    fwmark: u32,
}

impl State {
    fn new() -> anyhow::Result<Self> {
        let mut seed = [0u8; 32];
        OsRng.try_fill_bytes(&mut seed).map_err(|e| anyhow!("seeding the device: {e}"))?;
        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Ok(Self {
            device: Device::new(seed, Instant::now(), since_epoch),
            listen_port: 0,
            fwmark: 0,
        })
    }
}

impl Control for ConfigOnly {
    fn get(&self) -> Result<DeviceSnapshot, UapiError> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(DeviceSnapshot {
            listen_port: state.listen_port,
            fwmark: state.fwmark,
            ..state.device.snapshot()
        })
    }

    fn set(&self, request: SetRequest) -> Result<(), UapiError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.device.apply(Instant::now(), &request);
        state.listen_port = request.listen_port.unwrap_or(state.listen_port);
        state.fwmark = request.fwmark.unwrap_or(state.fwmark);
        Ok(())
    }
}

impl Driver for ConfigOnly {
    fn interface_name(&self) -> &str {
        &self.interface
    }

    fn stop(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use wgfabric_proto::keys::PublicKey;
    use wgfabric_proto::uapi::parse_set;

    #[test]
    fn configuration_round_trips_through_the_device() {
        let driver =
            ConfigOnly { interface: "wg0".into(), state: Mutex::new(State::new().unwrap()) };
        let peer = PublicKey::from_bytes([1; 32]);
        let body = format!(
            "listen_port=51820\nfwmark=7\npublic_key={}\nallowed_ip=10.0.0.0/24\n",
            peer.to_hex()
        );
        driver.set(parse_set(&body).unwrap()).unwrap();
        driver.set(parse_set("fwmark=0\n").unwrap()).unwrap();
        let device = driver.get().unwrap();
        assert_eq!((device.listen_port, device.fwmark), (51820, 0));
        assert_eq!(device.peers.len(), 1);
        assert_eq!(device.peers[0].public_key, peer);
        assert_eq!(device.peers[0].allowed_ips, ["10.0.0.0/24".parse().unwrap()]);
    }
}
