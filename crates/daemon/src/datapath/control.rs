//! The userspace API's view of the data path: `get` reads the device, `set` changes it.
//!
//! A set request is applied whole or not at all. Everything that can fail (binding a new
//! listen port, setting the firewall mark) happens first, on new sockets; only when it all
//! worked are the device changes applied and the new sockets swapped in, in one step under the
//! device lock.

use std::io;
use std::sync::{Arc, PoisonError};
use std::time::Instant;

use wgfabric_proto::uapi::{DeviceSnapshot, SetRequest, UapiError, EADDRINUSE, EIO};
use wgfabric_proto::PeerCursor;
use wgfabric_sys::SendBatch;

use super::send::flush;
use super::{bind_sockets, Datapath, Sockets};
use crate::control::Control;

/// Peers read per hold of the device lock when answering `get=1`: about half a millisecond
/// when the peers' memory is cold, so a `wg show` or a metrics scrape of a million peers
/// delays packets by no more than that, not by the second a whole snapshot takes.
const GET_PAGE: usize = 512;

/// Peers in a set request from which the heap is trimmed afterwards (see
/// [`wgfabric_sys::trim_heap`]).
const LARGE_REQUEST: usize = 256;

fn uapi_error(what: &str, error: &anyhow::Error) -> UapiError {
    let in_use = error.chain().any(|cause| {
        cause.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::AddrInUse)
    });
    let errno = if in_use { EADDRINUSE } else { EIO };
    UapiError::new(errno, format!("{what}: {error:#}"))
}

impl Control for Datapath {
    fn get(&self, page: &mut dyn FnMut(&DeviceSnapshot) -> io::Result<()>) -> io::Result<()> {
        let mut snapshot = {
            let state = self.shared.lock();
            DeviceSnapshot {
                listen_port: state.listen_port,
                fwmark: state.fwmark,
                ..state.device.snapshot_device()
            }
        };
        let mut cursor = Some(PeerCursor::default());
        while let Some(from) = cursor {
            cursor = self.shared.lock().device.snapshot_peers(from, GET_PAGE, &mut snapshot.peers);
            // The lock is released before the page is written to a client that may be slow.
            page(&snapshot)?;
            snapshot = DeviceSnapshot::default();
        }
        Ok(())
    }

    fn set(&self, request: SetRequest) -> Result<(), UapiError> {
        let current = self.shared.sockets();
        let (port, fwmark) = {
            let state = self.shared.lock();
            (state.listen_port, state.fwmark)
        };
        // Fallible work first, on sockets nobody uses yet.
        let rebind = request.listen_port.filter(|&p| p != port);
        let fresh = match rebind {
            Some(p) => {
                Some(bind_sockets(p, self.lanes()).map_err(|e| uapi_error("listen_port", &e))?)
            }
            None => None,
        };
        let target: &Sockets = fresh.as_ref().unwrap_or(&current);
        let mark = request.fwmark.unwrap_or(fwmark);
        if fresh.is_some() || request.fwmark.is_some_and(|m| m != fwmark) {
            target.udp.set_mark(mark).map_err(|e| uapi_error("fwmark", &e.into()))?;
        }

        let fresh = fresh.map(Arc::new);
        let outbox = {
            let mut state = self.shared.lock();
            state.device.apply(Instant::now(), &request);
            self.shared.gate().admission.set_public_key(state.device.public_key());
            state.fwmark = mark;
            if let Some(sockets) = &fresh {
                state.listen_port = sockets.udp.port();
                *self.shared.sockets.write().unwrap_or_else(PoisonError::into_inner) =
                    Arc::clone(sockets);
            }
            self.shared.drain(&mut state)
        };
        if let Some(sockets) = fresh {
            // Lane 0 notices and moves to the new sockets.
            current.retire.trigger();
            tracing::info!(port = sockets.udp.port(), "listening");
        }
        flush(&self.shared, 0, &mut SendBatch::new(4), outbox);
        if request.peers.len() >= LARGE_REQUEST {
            drop(request);
            wgfabric_sys::trim_heap();
        }
        Ok(())
    }
}
