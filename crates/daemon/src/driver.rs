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
//! Until the protocol driver lands, [`start`] returns [`ConfigOnly`], a stand-in that keeps
//! the configuration (so `wg set`, `wg show`, `wg setconf` and `wg syncconf` work against the
//! daemon) but creates no interface and moves no packets.

use std::sync::{Arc, Mutex, PoisonError};

use wgfabric_proto::uapi::{
    AllowedIpChange, DeviceSnapshot, PeerSnapshot, PeerUpdate, PrivateKeyUpdate, SetRequest,
    UapiError,
};

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
    Ok(Arc::new(ConfigOnly { interface: interface.to_owned(), device: Mutex::default() }))
}

/// A stand-in data path that only stores the configuration.
#[derive(Debug)]
struct ConfigOnly {
    interface: String,
    device: Mutex<DeviceSnapshot>,
}

impl Control for ConfigOnly {
    fn get(&self) -> Result<DeviceSnapshot, UapiError> {
        Ok(self.device.lock().unwrap_or_else(PoisonError::into_inner).clone())
    }

    fn set(&self, request: SetRequest) -> Result<(), UapiError> {
        apply(&mut self.device.lock().unwrap_or_else(PoisonError::into_inner), request);
        Ok(())
    }
}

impl Driver for ConfigOnly {
    fn interface_name(&self) -> &str {
        &self.interface
    }

    fn stop(&self) {}
}

/// Applies `request` to a configuration with wireguard-go's semantics (see [`SetRequest`]).
/// Allowed IPs are compared as written; the real routing table canonicalizes them.
fn apply(device: &mut DeviceSnapshot, request: SetRequest) {
    match request.private_key {
        Some(PrivateKeyUpdate::Set(key)) => {
            let own = key.public_key();
            device.peers.retain(|peer| peer.public_key != own);
            device.private_key = Some(key);
        }
        Some(PrivateKeyUpdate::Remove) => device.private_key = None,
        None => {}
    }
    if let Some(port) = request.listen_port {
        device.listen_port = port;
    }
    if let Some(mark) = request.fwmark {
        device.fwmark = mark;
    }
    if request.replace_peers {
        device.peers.clear();
    }
    let own = device.private_key.as_ref().map(|key| key.public_key());
    for update in request.peers {
        if Some(update.public_key) != own {
            apply_peer(device, update);
        }
    }
}

fn apply_peer(device: &mut DeviceSnapshot, update: PeerUpdate) {
    let existing = device.peers.iter().position(|peer| peer.public_key == update.public_key);
    let index = match (existing, update.remove, update.update_only) {
        (Some(index), true, _) => {
            device.peers.remove(index);
            return;
        }
        (None, true, _) | (None, false, true) => return,
        (Some(index), false, _) => index,
        (None, false, false) => {
            device.peers.push(PeerSnapshot::new(update.public_key));
            device.peers.len() - 1
        }
    };
    for change in &update.allowed_ips {
        if let AllowedIpChange::Add(ip) = change {
            for other in &mut device.peers {
                other.allowed_ips.retain(|owned| owned != ip);
            }
        }
    }
    let peer = &mut device.peers[index];
    if let Some(psk) = update.preshared_key {
        peer.preshared_key = (!psk.is_zero()).then_some(psk);
    }
    if let Some(endpoint) = update.endpoint {
        peer.endpoint = Some(endpoint);
    }
    if let Some(interval) = update.persistent_keepalive_interval {
        peer.persistent_keepalive_interval = interval;
    }
    if update.replace_allowed_ips {
        peer.allowed_ips.clear();
    }
    for change in update.allowed_ips {
        match change {
            AllowedIpChange::Add(ip) => peer.allowed_ips.push(ip),
            AllowedIpChange::Remove(ip) => peer.allowed_ips.retain(|owned| *owned != ip),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wgfabric_proto::keys::{PrivateKey, PublicKey};
    use wgfabric_proto::uapi::parse_set;

    fn key(n: u8) -> PublicKey {
        PublicKey::from_bytes([n; 32])
    }

    fn set(device: &mut DeviceSnapshot, lines: &[String]) {
        let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
        apply(device, parse_set(&body).unwrap());
    }

    fn peer(n: u8) -> String {
        format!("public_key={}", key(n).to_hex())
    }

    #[test]
    fn peers_are_created_updated_and_removed() {
        let mut device = DeviceSnapshot::default();
        set(&mut device, &[peer(1), "allowed_ip=10.0.0.1/32".into(), peer(2)]);
        assert_eq!(device.peers.len(), 2);
        set(&mut device, &[peer(3), "update_only=true".into(), peer(1), "remove=true".into()]);
        assert_eq!(device.peers.iter().map(|p| p.public_key).collect::<Vec<_>>(), [key(2)]);
        set(&mut device, &["replace_peers=true".into(), peer(4)]);
        assert_eq!(device.peers.iter().map(|p| p.public_key).collect::<Vec<_>>(), [key(4)]);
    }

    #[test]
    fn allowed_ips_move_between_peers_and_can_be_removed() {
        let mut device = DeviceSnapshot::default();
        set(
            &mut device,
            &[peer(1), "allowed_ip=10.0.0.0/24".into(), "allowed_ip=10.1.0.0/24".into()],
        );
        set(&mut device, &[peer(2), "allowed_ip=10.0.0.0/24".into()]);
        set(&mut device, &[peer(1), "allowed_ip=-10.1.0.0/24".into()]);
        assert!(device.peers[0].allowed_ips.is_empty());
        assert_eq!(device.peers[1].allowed_ips, ["10.0.0.0/24".parse().unwrap()]);
    }

    #[test]
    fn own_public_key_is_never_a_peer() {
        let private = PrivateKey::from_bytes([9; 32]);
        let own = format!("public_key={}", private.public_key().to_hex());
        let mut device = DeviceSnapshot::default();
        set(&mut device, std::slice::from_ref(&own));
        set(&mut device, &[format!("private_key={}", private.to_hex_secret()), own]);
        assert!(device.peers.is_empty());
        assert_eq!(device.private_key, Some(private));
    }
}
