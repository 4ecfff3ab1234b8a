//! Sending datagrams to a peer's endpoint, from its sticky source address when we have one.
//!
//! When that source address has disappeared (the interface lost it, the host roamed), the
//! send is retried without it, so the kernel picks a valid one, and the device forgets it
//! until the peer's next packet teaches a new one.

use wgfabric_proto::{Endpoint, PeerId};
use wgfabric_sys::{Error, LocalAddr, SendBatch, SendError};

use super::events::emit_all;
use super::{Outbox, Shared, Sockets};

/// Sends `datagrams` to `endpoint`; returns how many went out.
pub(super) fn send<'d, I>(
    shared: &Shared,
    sockets: &Sockets,
    lane: usize,
    batch: &mut SendBatch,
    peer: Option<PeerId>,
    endpoint: Endpoint,
    datagrams: I,
) -> usize
where
    I: Iterator<Item = &'d [u8]> + Clone,
{
    let Some(socket) = sockets.udp.for_addr_in_lane(&endpoint.addr, lane) else {
        tracing::debug!(endpoint = %endpoint.addr, "no socket of that address family");
        return 0;
    };
    let src = endpoint.src.map(|s| LocalAddr { ip: s.ip, ifindex: s.ifindex });
    let total = datagrams.clone().count();
    match socket.send(batch, endpoint.addr, src.as_ref(), datagrams.clone()) {
        Ok(()) => total,
        Err(SendError { sent, error: Error::SourceUnavailable(_) }) => {
            if let Some(peer) = peer {
                shared.lock().device.clear_endpoint_source(peer);
            }
            match socket.send(batch, endpoint.addr, None, datagrams.skip(sent)) {
                Ok(()) => total,
                Err(e) => {
                    tracing::debug!(endpoint = %endpoint.addr, error = %e.error, "send failed");
                    sent + e.sent
                }
            }
        }
        Err(SendError { sent, error: Error::Shutdown }) => sent,
        Err(SendError { sent, error }) => {
            tracing::debug!(endpoint = %endpoint.addr, %error, "send failed");
            sent
        }
    }
}

/// Sends what the device produced (from lane `lane`'s sockets) and logs its events.
pub(super) fn flush(shared: &Shared, lane: usize, batch: &mut SendBatch, outbox: Outbox) {
    emit_all(&outbox.events);
    if outbox.transmits.is_empty() {
        return;
    }
    let sockets = shared.sockets();
    for transmit in &outbox.transmits {
        let datagram = std::iter::once(transmit.datagram.as_slice());
        send(shared, &sockets, lane, batch, transmit.peer, transmit.endpoint, datagram);
    }
}
