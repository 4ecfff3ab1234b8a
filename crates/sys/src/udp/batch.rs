//! Batched receive and send: reusable `mmsghdr`, `iovec` and control-message arrays that
//! point into the caller's buffers for the duration of one `recvmmsg` or `sendmmsg`.
//!
//! Sending groups consecutive datagrams of equal size into one GSO message whose iovecs are
//! the datagrams themselves, so nothing is copied. When the kernel refuses GSO (`EIO`: the
//! route's device cannot checksum), the socket stops using it and the datagrams go out one
//! message each, without the caller noticing.

use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};
use std::ptr;

use super::cmsg::{self, CmsgBuf, Encoder, CMSG_BUF_LEN};
use super::{sockaddr, socket_addr, LocalAddr, UdpSocket};
use crate::errno::cvt;
use crate::Error;

/// The most datagrams in one GSO message (`UDP_MAX_SEGMENTS` of older kernels).
const MAX_GSO_SEGMENTS: usize = 64;

/// The most payload bytes in one GSO message: what fits in an IPv4 packet's length field.
const MAX_GSO_BYTES: usize = 65535 - 20 - 8;

/// What a receive reported about one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvMeta {
    /// The sender.
    pub src: SocketAddr,
    /// The local address and interface the message arrived on.
    pub dst: Option<LocalAddr>,
    /// Bytes received into the buffer.
    pub len: usize,
    /// Size of each datagram in a GRO-coalesced message (the last may be shorter); equal to
    /// `len` for a single datagram.
    pub segment_size: usize,
}

impl Default for RecvMeta {
    /// An empty entry, to size the array [`UdpSocket::recv`] fills.
    fn default() -> Self {
        Self { src: (Ipv4Addr::UNSPECIFIED, 0).into(), dst: None, len: 0, segment_size: 0 }
    }
}

impl RecvMeta {
    /// The datagrams of this message within its buffer.
    pub fn datagrams<'b>(&self, buf: &'b [u8]) -> impl Iterator<Item = &'b [u8]> {
        buf[..self.len].chunks(self.segment_size.max(1))
    }
}

/// Reusable arrays for [`UdpSocket::recv`].
#[derive(Debug)]
pub struct RecvBatch {
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_storage>,
    cmsgs: Vec<CmsgBuf>,
}

// SAFETY: the raw pointers inside are written and used only during a `recv` call that
// borrows the buffers they point to; between calls they are stale and never read.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    /// Arrays for receiving up to `capacity` messages per call.
    pub fn new(capacity: usize) -> Self {
        // SAFETY: these C structs are plain integers and pointers, valid when all-zero.
        let (hdr, iov, name) = unsafe { (zeroed(), zeroed(), zeroed()) };
        Self {
            hdrs: vec![hdr; capacity],
            iovs: vec![iov; capacity],
            names: vec![name; capacity],
            cmsgs: vec![CmsgBuf::default(); capacity],
        }
    }
}

/// One message of a send: `count` datagrams of `segment_size` bytes (the last may be shorter)
/// whose iovecs start at `first_iov`.
#[derive(Debug, Clone, Copy)]
struct Message {
    first_iov: usize,
    count: usize,
    bytes: usize,
    segment_size: usize,
}

/// Reusable arrays for [`UdpSocket::send`].
#[derive(Debug)]
pub struct SendBatch {
    capacity: usize,
    messages: Vec<Message>,
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    cmsgs: Vec<CmsgBuf>,
    /// Each message's destination and source, for [`UdpSocket::send_each`].
    names: Vec<(libc::sockaddr_storage, libc::socklen_t, Option<LocalAddr>)>,
}

// SAFETY: as for `RecvBatch`, the pointers inside live only for one `send` call.
unsafe impl Send for SendBatch {}

impl SendBatch {
    /// Arrays for up to `capacity` datagrams per `sendmmsg`; longer sends take several calls.
    ///
    /// # Panics
    ///
    /// If `capacity` is 0.
    pub fn new(capacity: usize) -> Self {
        assert!(capacity > 0, "a send batch holds at least one datagram");
        // SAFETY: mmsghdr is plain integers and pointers, valid when all-zero.
        let hdr = unsafe { zeroed() };
        Self {
            capacity,
            messages: Vec::with_capacity(capacity),
            hdrs: vec![hdr; capacity],
            iovs: Vec::with_capacity(capacity),
            cmsgs: vec![CmsgBuf::default(); capacity],
            names: Vec::with_capacity(capacity),
        }
    }

    /// Adds a datagram, to the last message if GSO allows; false when the batch is full.
    fn push(&mut self, datagram: &[u8], gso: bool) -> bool {
        if self.iovs.len() == self.capacity {
            return false;
        }
        let next = self.iovs.len();
        let len = datagram.len();
        self.iovs.push(libc::iovec { iov_base: datagram.as_ptr() as *mut _, iov_len: len });
        match self.messages.last_mut() {
            Some(msg)
                if gso
                    && len > 0
                    && len <= msg.segment_size
                    && msg.bytes == msg.count * msg.segment_size // no shorter one yet
                    && msg.count < MAX_GSO_SEGMENTS
                    && msg.bytes + len <= MAX_GSO_BYTES =>
            {
                msg.count += 1;
                msg.bytes += len;
            }
            _ => self.messages.push(Message {
                first_iov: next,
                count: 1,
                bytes: len,
                segment_size: len,
            }),
        }
        true
    }

    /// Splits messages `from..` into one message per datagram.
    fn split_from(&mut self, from: usize) {
        let first_iov = self.messages[from].first_iov;
        self.messages.truncate(from);
        for (i, iov) in self.iovs.iter().enumerate().skip(first_iov) {
            self.messages.push(Message {
                first_iov: i,
                count: 1,
                bytes: iov.iov_len,
                segment_size: iov.iov_len,
            });
        }
    }

    /// Points each `mmsghdr` at its datagrams, its destination and its control messages.
    fn prepare(&mut self, destination: &mut Destination<'_>) {
        for (i, msg) in self.messages.iter().enumerate() {
            let (name, name_len, src) = match destination {
                Destination::All { name, name_len, src } => (ptr::from_mut(*name), *name_len, *src),
                Destination::Each => {
                    let (name, name_len, src) = &mut self.names[i];
                    (ptr::from_mut(name), *name_len, src.as_ref())
                }
            };
            let cmsg = &mut self.cmsgs[i];
            let mut encoder = Encoder::new(cmsg);
            if let Some(src) = src {
                encoder.source(src);
            }
            if msg.count > 1 {
                // MAX_GSO_BYTES bounds the segment size.
                encoder.segment_size(msg.segment_size as u16);
            }
            let control_len = encoder.len();
            let hdr = &mut self.hdrs[i];
            hdr.msg_len = 0;
            hdr.msg_hdr.msg_name = name.cast();
            hdr.msg_hdr.msg_namelen = name_len;
            hdr.msg_hdr.msg_iov = self.iovs[msg.first_iov..].as_mut_ptr();
            hdr.msg_hdr.msg_iovlen = msg.count as _;
            hdr.msg_hdr.msg_control =
                if control_len == 0 { ptr::null_mut() } else { cmsg.0.as_mut_ptr().cast() };
            hdr.msg_hdr.msg_controllen = control_len as _;
            hdr.msg_hdr.msg_flags = 0;
        }
    }

    fn clear(&mut self) {
        self.messages.clear();
        self.iovs.clear();
        self.names.clear();
    }
}

/// Where the messages of a send go.
enum Destination<'a> {
    /// All to one address, from one source address if given ([`UdpSocket::send`]).
    All {
        name: &'a mut libc::sockaddr_storage,
        name_len: libc::socklen_t,
        src: Option<&'a LocalAddr>,
    },
    /// Each to its own, as the batch's `names` list them ([`UdpSocket::send_each`]).
    Each,
}

/// A send that stopped early.
#[derive(Debug, thiserror::Error)]
#[error("send failed after {sent} datagrams: {error}")]
pub struct SendError {
    /// Datagrams sent before the failure; the caller may retry the rest.
    pub sent: usize,
    /// Why it stopped: [`Error::SourceUnavailable`] means the chosen source address is gone,
    /// and the datagrams should be retried without one.
    pub error: Error,
}

impl UdpSocket {
    /// Receives up to `bufs.len()` messages (and at most the batch's capacity), blocking until
    /// at least one arrives; returns how many, each described in `meta`.
    ///
    /// With GRO on, a message holds several datagrams from one sender (see
    /// [`RecvMeta::datagrams`]); buffers should then hold 65535 bytes, or the kernel cuts
    /// coalesced messages short.
    ///
    /// # Errors
    ///
    /// [`Error::Shutdown`], or `recvmmsg`'s error.
    pub fn recv<B: AsMut<[u8]>>(
        &self,
        batch: &mut RecvBatch,
        bufs: &mut [B],
        meta: &mut [RecvMeta],
    ) -> Result<usize, Error> {
        self.receive(batch, bufs, meta, true)
    }

    /// Like [`Self::recv`] without waiting: 0 when nothing is queued.
    ///
    /// # Errors
    ///
    /// As [`Self::recv`].
    pub fn try_recv<B: AsMut<[u8]>>(
        &self,
        batch: &mut RecvBatch,
        bufs: &mut [B],
        meta: &mut [RecvMeta],
    ) -> Result<usize, Error> {
        self.receive(batch, bufs, meta, false)
    }

    fn receive<B: AsMut<[u8]>>(
        &self,
        batch: &mut RecvBatch,
        bufs: &mut [B],
        meta: &mut [RecvMeta],
        wait: bool,
    ) -> Result<usize, Error> {
        let count = bufs.len().min(meta.len()).min(batch.hdrs.len());
        let RecvBatch { hdrs, iovs, names, cmsgs } = batch;
        for (i, buf) in bufs.iter_mut().take(count).enumerate() {
            let buf = buf.as_mut();
            iovs[i] = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
            let hdr = &mut hdrs[i].msg_hdr;
            hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as _;
            hdr.msg_iov = &mut iovs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = cmsgs[i].0.as_mut_ptr().cast();
            hdr.msg_controllen = CMSG_BUF_LEN as _;
            hdr.msg_flags = 0;
        }
        let fd = self.fd.as_raw_fd();
        let op = || {
            // SAFETY: the first `count` headers point at live buffers borrowed for this call
            // (`bufs` and the batch's own arrays), each with its true length.
            let ret =
                unsafe { libc::recvmmsg(fd, hdrs.as_mut_ptr(), count as _, 0, ptr::null_mut()) };
            cvt(ret).map(|n| n as usize)
        };
        let received = if wait {
            self.shutdown.retry(self.fd.as_fd(), libc::POLLIN, op)?
        } else {
            self.shutdown.try_once(op)?.unwrap_or(0)
        };
        for (meta, ((hdr, name), cmsg)) in
            meta.iter_mut().zip(hdrs.iter().zip(names.iter()).zip(cmsgs.iter())).take(received)
        {
            let info = cmsg::decode(cmsg, hdr.msg_hdr.msg_controllen as _);
            let len = hdr.msg_len as usize;
            *meta = RecvMeta {
                // An IP socket always reports an IP sender.
                src: socket_addr(name).unwrap_or((Ipv4Addr::UNSPECIFIED, 0).into()),
                dst: info.local,
                len,
                segment_size: info.gro_size.unwrap_or(len),
            };
        }
        Ok(received)
    }

    /// Sends `datagrams` to `dst`, from `src` if given, blocking while the socket buffer is
    /// full. Consecutive datagrams of equal size (the last of a run may be shorter) go out as
    /// one GSO message while the socket has GSO.
    ///
    /// # Errors
    ///
    /// A [`SendError`] telling how many datagrams were sent and why the rest were not:
    /// [`Error::SourceUnavailable`] when `src` is no longer a local address (or cannot reach
    /// `dst`), [`Error::Shutdown`], or the send's error (`EAFNOSUPPORT` when `dst` is of the
    /// other family).
    pub fn send<'d>(
        &self,
        batch: &mut SendBatch,
        dst: SocketAddr,
        src: Option<&LocalAddr>,
        datagrams: impl IntoIterator<Item = &'d [u8]>,
    ) -> Result<(), SendError> {
        let mut sent = 0;
        if dst.is_ipv6() != self.v6 {
            let error = Error::Io(std::io::Error::from_raw_os_error(libc::EAFNOSUPPORT));
            return Err(SendError { sent, error });
        }
        let (mut name, name_len) = sockaddr(&dst);
        let mut datagrams = datagrams.into_iter().peekable();
        while datagrams.peek().is_some() {
            batch.clear();
            while let Some(datagram) = datagrams.peek() {
                if !batch.push(datagram, self.gso_enabled()) {
                    break;
                }
                datagrams.next();
            }
            let mut destination = Destination::All { name: &mut name, name_len, src };
            self.flush(batch, &mut destination, &mut sent)
                .map_err(|error| SendError { sent, error })?;
        }
        Ok(())
    }

    /// Sends each datagram to its own destination, from its own source address if given, in
    /// one `sendmmsg` per batch capacity (answers to many senders, such as cookie replies, go
    /// out together instead of a system call each). Datagrams for the other address family,
    /// and any the kernel refuses (an unreachable destination, a source address that is
    /// gone), are skipped: these are answers that a retry of the request would ask for
    /// again. Returns how many were sent.
    ///
    /// # Errors
    ///
    /// [`Error::Shutdown`].
    pub fn send_each<'d>(
        &self,
        batch: &mut SendBatch,
        datagrams: impl IntoIterator<Item = (SocketAddr, Option<LocalAddr>, &'d [u8])>,
    ) -> Result<usize, Error> {
        let mut datagrams =
            datagrams.into_iter().filter(|(dst, _, _)| dst.is_ipv6() == self.v6).peekable();
        let mut sent = 0;
        while datagrams.peek().is_some() {
            batch.clear();
            for (dst, src, datagram) in datagrams.by_ref().take(batch.capacity) {
                batch.push(datagram, false);
                let (name, name_len) = sockaddr(&dst);
                batch.names.push((name, name_len, src));
            }
            batch.prepare(&mut Destination::Each);
            let mut done = 0;
            while done < batch.messages.len() {
                // SAFETY: the batch was just prepared: its headers point at the caller's
                // datagrams and the batch's names, iovecs and control buffers, all borrowed
                // for this call.
                match unsafe { self.send_prepared(batch, done) } {
                    Ok(n) => {
                        sent += n;
                        done += n;
                    }
                    Err(Error::Io(_)) => done += 1,
                    Err(error) => return Err(error),
                }
            }
        }
        Ok(sent)
    }

    /// Sends every message in `batch`, adding the datagrams sent to `sent`.
    fn flush(
        &self,
        batch: &mut SendBatch,
        destination: &mut Destination<'_>,
        sent: &mut usize,
    ) -> Result<(), Error> {
        batch.prepare(destination);
        let mut done = 0;
        while done < batch.messages.len() {
            // SAFETY: the batch was (re)prepared in this call: its headers point at the
            // caller's datagrams, the batch's iovecs and control buffers, and the destination,
            // all borrowed for this call.
            match unsafe { self.send_prepared(batch, done) } {
                Ok(n) => {
                    *sent += batch.messages[done..done + n].iter().map(|m| m.count).sum::<usize>();
                    done += n;
                }
                Err(Error::Io(err)) if batch.messages[done].count > 1 && is_gso_refusal(&err) => {
                    if err.raw_os_error() == Some(libc::EIO) {
                        self.disable_gso();
                    }
                    batch.split_from(done);
                    batch.prepare(destination);
                }
                Err(Error::Io(err)) if has_source(destination) && is_source_unavailable(&err) => {
                    return Err(Error::SourceUnavailable(err));
                }
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// One `sendmmsg` of the batch's messages from `done` on, waiting while the socket buffer
    /// is full; returns how many the kernel took.
    ///
    /// # Safety
    ///
    /// The headers from `done` on must have been prepared since the batch last changed, and
    /// everything they point at (datagrams, names, iovecs, control buffers) must be alive.
    unsafe fn send_prepared(&self, batch: &mut SendBatch, done: usize) -> Result<usize, Error> {
        let fd = self.fd.as_raw_fd();
        let pending = batch.messages.len() - done;
        let hdrs = batch.hdrs[done..].as_mut_ptr();
        self.shutdown.retry(self.fd.as_fd(), libc::POLLOUT, || {
            // SAFETY: the caller guarantees the `pending` headers from `done` point at live
            // memory of their true lengths.
            cvt(unsafe { libc::sendmmsg(fd, hdrs, pending as _, 0) }).map(|n| n as usize)
        })
    }
}

/// Whether a send names its source address: only then can the kernel refuse it as gone.
fn has_source(destination: &Destination<'_>) -> bool {
    matches!(destination, Destination::All { src: Some(_), .. })
}

/// `EIO`: the device cannot checksum (GSO is off for the socket from then on); `EMSGSIZE`
/// (`EINVAL` before Linux 6.x): a segment does not fit the route's MTU, which plain sends
/// handle by fragmenting.
fn is_gso_refusal(err: &std::io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EIO | libc::EMSGSIZE | libc::EINVAL))
}

/// Errors that, with a source address given, mean it is no longer local: IPv4 routing says
/// `ENETUNREACH` (older kernels `EINVAL`), IPv6 `EADDRNOTAVAIL` or `EINVAL`, a gone interface
/// index `ENODEV`.
fn is_source_unavailable(err: &std::io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::ENETUNREACH | libc::EINVAL | libc::EADDRNOTAVAIL | libc::ENODEV)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(batch: &SendBatch) -> Vec<(usize, usize)> {
        batch.messages.iter().map(|m| (m.count, m.segment_size)).collect()
    }

    fn fill(batch: &mut SendBatch, sizes: &[usize], gso: bool) -> Vec<Vec<u8>> {
        let data: Vec<Vec<u8>> = sizes.iter().map(|&n| vec![0; n]).collect();
        for d in &data {
            assert!(batch.push(d, gso));
        }
        data
    }

    #[test]
    fn groups_runs_of_equal_size_ending_with_a_shorter_one() {
        let mut batch = SendBatch::new(16);
        let _data = fill(&mut batch, &[1200, 1200, 500, 1200, 1300, 0, 0], true);
        assert_eq!(layout(&batch), [(3, 1200), (1, 1200), (1, 1300), (1, 0), (1, 0)]);
        batch.split_from(0);
        assert_eq!(layout(&batch).len(), 7);
        assert!(batch.messages.iter().enumerate().all(|(i, m)| m.first_iov == i && m.count == 1));
    }

    #[test]
    fn without_gso_each_datagram_is_a_message() {
        let mut batch = SendBatch::new(4);
        let data = fill(&mut batch, &[100, 100, 100, 100], false);
        assert_eq!(layout(&batch), [(1, 100); 4]);
        assert!(!batch.push(&data[0], false), "the batch is full");
    }

    #[test]
    fn caps_segments_and_bytes_per_message() {
        let mut batch = SendBatch::new(128);
        let _data = fill(&mut batch, &[1000; 70], true);
        assert_eq!(layout(&batch), [(64, 1000), (6, 1000)]);
        let mut batch = SendBatch::new(128);
        let _data = fill(&mut batch, &[1400; 60], true);
        assert_eq!(layout(&batch), [(46, 1400), (14, 1400)]);
    }
}
