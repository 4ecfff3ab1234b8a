//! The TUN device: creation with virtio-net offloads and several queues, and blocking frame
//! reads and writes that a [`Shutdown`] can interrupt.
//!
//! With offloads on, every frame starts with a [`VirtioNetHdr`](crate::offload::VirtioNetHdr):
//! the kernel hands over TCP (and UDP, where USO is accepted) superframes of up to 64 KiB
//! and accepts such frames back. When the interface is deleted, the kernel marks each queue
//! dead: `poll` reports `POLLERR` and `read` fails with `EBADFD` (a read that was already
//! sleeping in the kernel sees `EFAULT` instead). Both become [`Error::LinkDeleted`].

use std::ffi::CStr;
use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::errno::{context, cvt, cvt_len};
use crate::offload::VNET_HDR_LEN;
use crate::{Error, Shutdown};

/// Largest frame a queue returns with offloads on: a virtio-net header and a 64 KiB packet.
pub const MAX_FRAME_LEN: usize = VNET_HDR_LEN + 65535;

/// How to create or attach to a TUN interface.
#[derive(Debug, Clone)]
pub struct TunConfig {
    /// Interface name, or a pattern such as `wg%d` for the kernel to complete.
    pub name: String,
    /// Queues to open; more than one sets `IFF_MULTI_QUEUE`, so that as many threads can read.
    pub queues: NonZeroUsize,
    /// Whether frames carry a virtio-net header and the kernel may send superframes.
    pub offload: bool,
}

/// The offloads the kernel accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Offloads {
    /// TCP segmentation (and checksum) offload for IPv4 and IPv6: frames carry virtio-net
    /// headers and may be TCP superframes.
    pub tso: bool,
    /// UDP segmentation offload (Linux 6.2 and later): frames may also be UDP superframes, and
    /// the kernel accepts them from [`Coalescer`](crate::offload::Coalescer) with UDP enabled.
    pub uso: bool,
}

/// A TUN interface and its open queues.
#[derive(Debug)]
pub struct Tun {
    name: String,
    ifindex: u32,
    offloads: Offloads,
    /// A datagram socket created alongside the device, so interface ioctls reach the network
    /// namespace the device was created in, whichever thread calls them.
    control: OwnedFd,
    queues: Vec<TunQueue>,
}

/// One queue of a TUN interface; shared by reference between threads.
#[derive(Debug)]
pub struct TunQueue {
    fd: OwnedFd,
    vnet_hdr: bool,
    shutdown: Shutdown,
}

impl Tun {
    /// Creates the interface, or attaches to an existing one of that name, in the calling
    /// thread's network namespace, and opens `config.queues` queues on it.
    ///
    /// With `config.offload`, asks for checksum and TCP segmentation offload, then UDP
    /// segmentation offload where the kernel accepts it; [`Self::offloads`] says what was
    /// enabled. The interface is left down, with its MTU unchanged.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a name longer than 15 bytes or containing NUL; otherwise the failing
    /// system call's error, such as `EBUSY` when the interface exists with other flags.
    pub fn create(config: &TunConfig, shutdown: &Shutdown) -> io::Result<Self> {
        let mut name = config.name.clone();
        let mut flags = libc::IFF_TUN | libc::IFF_NO_PI;
        if config.offload {
            flags |= libc::IFF_VNET_HDR;
        }
        if config.queues.get() > 1 {
            flags |= libc::IFF_MULTI_QUEUE;
        }
        let mut queues = Vec::with_capacity(config.queues.get());
        for _ in 0..config.queues.get() {
            let (fd, actual) = open_queue(&name, flags)?;
            name = actual;
            queues.push(TunQueue { fd, vnet_hdr: config.offload, shutdown: shutdown.clone() });
        }
        let offloads = match queues.first() {
            Some(queue) if config.offload => enable_offloads(queue.fd.as_fd())?,
            _ => Offloads::default(),
        };
        // SAFETY: socket takes no pointers; the result is checked before use.
        let control =
            cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })
                .map_err(context("control socket"))?;
        // SAFETY: `control` was just returned by socket and is owned by nobody else.
        let control = unsafe { OwnedFd::from_raw_fd(control) };
        let mut tun = Self { name, ifindex: 0, offloads, control, queues };
        // SAFETY: SIOCGIFINDEX writes the `ifru_ifindex` member, which is then read.
        tun.ifindex = tun
            .interface_ioctl(libc::SIOCGIFINDEX, 0, |ifr| unsafe { ifr.ifr_ifru.ifru_ifindex })
            .map_err(context("SIOCGIFINDEX"))? as u32;
        Ok(tun)
    }

    /// The interface name the kernel assigned (a pattern such as `wg%d` is filled in).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The interface index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// What [`Self::create`] enabled.
    pub fn offloads(&self) -> Offloads {
        self.offloads
    }

    /// The open queues, one per reading thread.
    pub fn queues(&self) -> &[TunQueue] {
        &self.queues
    }

    /// The interface's current MTU (`SIOCGIFMTU`).
    ///
    /// # Errors
    ///
    /// `ENODEV` once the interface was deleted.
    pub fn mtu(&self) -> io::Result<u32> {
        // SAFETY: SIOCGIFMTU writes the `ifru_mtu` member, which is then read.
        let mtu =
            self.interface_ioctl(libc::SIOCGIFMTU, 0, |ifr| unsafe { ifr.ifr_ifru.ifru_mtu })?;
        Ok(mtu as u32)
    }

    /// Sets the interface's MTU (`SIOCSIFMTU`).
    ///
    /// # Errors
    ///
    /// `EINVAL` for an MTU the device does not accept (68 to 65535 for TUN).
    pub fn set_mtu(&self, mtu: u32) -> io::Result<()> {
        let mtu = libc::c_int::try_from(mtu).map_err(|_| io::ErrorKind::InvalidInput)?;
        self.interface_ioctl(libc::SIOCSIFMTU, mtu, |_| ())
    }

    /// Runs an interface ioctl that sets and/or reads one `c_int` member of `ifreq`.
    fn interface_ioctl<T>(
        &self,
        request: libc::Ioctl,
        value: libc::c_int,
        read: impl FnOnce(&libc::ifreq) -> T,
    ) -> io::Result<T> {
        let mut ifr = ifreq(&self.name)?;
        // The ifindex, MTU and metric members share this int-sized slot.
        ifr.ifr_ifru.ifru_mtu = value;
        // SAFETY: `ifr` is a valid ifreq that outlives the call; the request only reads its
        // name and reads or writes an int-sized member.
        cvt(unsafe { libc::ioctl(self.control.as_raw_fd(), request, &mut ifr) })?;
        Ok(read(&ifr))
    }
}

impl TunQueue {
    /// Reads one frame into `buf` and returns its length, blocking until one arrives.
    ///
    /// With offloads the frame is a virtio-net header and a packet, and `buf` should hold
    /// [`MAX_FRAME_LEN`] bytes (the kernel truncates longer frames); without, a bare packet.
    ///
    /// # Errors
    ///
    /// [`Error::Shutdown`], [`Error::LinkDeleted`], or the read's error.
    pub fn read(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let fd = self.fd.as_raw_fd();
        self.shutdown
            .retry(self.fd.as_fd(), libc::POLLIN, || {
                // SAFETY: the pointer and length describe `buf`, borrowed for the call.
                cvt_len(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })
            })
            .map_err(link_deleted)
    }

    /// Like [`Self::read`] without waiting: `Ok(None)` when no frame is queued.
    ///
    /// # Errors
    ///
    /// As [`Self::read`].
    pub fn try_read(&self, buf: &mut [u8]) -> Result<Option<usize>, Error> {
        let fd = self.fd.as_raw_fd();
        self.shutdown
            .try_once(|| {
                // SAFETY: the pointer and length describe `buf`, borrowed for the call.
                cvt_len(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })
            })
            .map_err(link_deleted)
    }

    /// Writes one frame (virtio-net header included with offloads on).
    ///
    /// # Errors
    ///
    /// [`Error::Shutdown`], [`Error::LinkDeleted`], or the write's error (`EINVAL` for a
    /// frame the kernel rejects, such as one with an inconsistent virtio-net header).
    pub fn write(&self, frame: &[u8]) -> Result<(), Error> {
        let fd = self.fd.as_raw_fd();
        self.shutdown
            .retry(self.fd.as_fd(), libc::POLLOUT, || {
                // SAFETY: the pointer and length describe `frame`, borrowed for the call.
                cvt_len(unsafe { libc::write(fd, frame.as_ptr().cast(), frame.len()) })
            })
            .map(drop)
            .map_err(link_deleted)
    }

    /// Whether frames on this queue start with a virtio-net header.
    pub fn has_vnet_hdr(&self) -> bool {
        self.vnet_hdr
    }
}

impl AsFd for TunQueue {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Maps the errors of a queue whose interface is gone to [`Error::LinkDeleted`].
fn link_deleted(err: Error) -> Error {
    match err {
        Error::Io(io) if matches!(io.raw_os_error(), Some(libc::EBADFD | libc::EFAULT)) => {
            Error::LinkDeleted
        }
        other => other,
    }
}

/// An `ifreq` naming `name`.
fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    let bytes = name.as_bytes();
    if bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "invalid interface name"));
    }
    // SAFETY: ifreq is plain data (a name array and a union of integers, sockaddrs and a
    // pointer), for which all-zero bytes are valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in ifr.ifr_name.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    Ok(ifr)
}

/// Opens `/dev/net/tun` and attaches it to interface `name` with `flags`; returns the queue
/// and the interface's actual name.
fn open_queue(name: &str, flags: libc::c_int) -> io::Result<(OwnedFd, String)> {
    let path = c"/dev/net/tun";
    let open_flags = libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK;
    // SAFETY: `path` is NUL-terminated; the result is checked before use.
    let fd =
        cvt(unsafe { libc::open(path.as_ptr(), open_flags) }).map_err(context("/dev/net/tun"))?;
    // SAFETY: `fd` was just returned by open and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut ifr = ifreq(name)?;
    ifr.ifr_ifru.ifru_flags = flags as libc::c_short;
    // SAFETY: `ifr` is a valid ifreq that outlives the call; TUNSETIFF reads the name and
    // flags and writes back the actual name.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut ifr) })
        .map_err(context("TUNSETIFF"))?;
    // SAFETY: the kernel leaves a NUL-terminated name of at most IFNAMSIZ bytes in
    // `ifr_name`, whose last byte `ifreq` set to NUL anyway.
    let actual = unsafe { CStr::from_ptr(ifr.ifr_name.as_ptr()) };
    Ok((fd, actual.to_string_lossy().into_owned()))
}

/// Sets the virtio-net header size and enables the offloads the kernel accepts.
fn enable_offloads(fd: BorrowedFd<'_>) -> io::Result<Offloads> {
    let size = VNET_HDR_LEN as libc::c_int;
    // SAFETY: TUNSETVNETHDRSZ reads an int through the pointer, which outlives the call.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETVNETHDRSZ, &size) })
        .map_err(context("TUNSETVNETHDRSZ"))?;
    let tso = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
    let uso = libc::TUN_F_USO4 | libc::TUN_F_USO6;
    let set = |features: libc::c_uint| {
        // SAFETY: TUNSETOFFLOAD takes its argument by value, not through a pointer.
        cvt(unsafe {
            libc::ioctl(fd.as_raw_fd(), libc::TUNSETOFFLOAD, libc::c_ulong::from(features))
        })
    };
    match set(tso | uso) {
        Ok(_) => Ok(Offloads { tso: true, uso: true }),
        Err(err) if err.raw_os_error() == Some(libc::EINVAL) => {
            set(tso).map_err(context("TUNSETOFFLOAD"))?;
            Ok(Offloads { tso: true, uso: false })
        }
        Err(err) => Err(context("TUNSETOFFLOAD")(err)),
    }
}
