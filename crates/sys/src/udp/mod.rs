//! UDP sockets for the WireGuard transport: an IPv4 and an IPv6 socket on one port, each with
//! batched receive (GRO) and send (GSO), local-address reporting and source selection.

mod batch;
mod cmsg;

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

pub use batch::{RecvBatch, RecvMeta, SendBatch, SendError};

use crate::errno::{context, cvt};
use crate::sockopt::{get_int_opt, set_int_opt};
use crate::Shutdown;

/// Socket buffer size asked for, as wireguard-go does; capped by `net.core.*mem_max` unless
/// the process has `CAP_NET_ADMIN`.
const SOCKET_BUFFER: libc::c_int = 7 << 20;

/// How often to retry when the port picked for IPv4 is taken for IPv6.
const BIND_ATTEMPTS: usize = 100;

/// A local address a datagram arrived on, or is to leave from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LocalAddr {
    /// The local IP address (the destination address of a received datagram).
    pub ip: IpAddr,
    /// The interface the datagram arrived on, or 0 to let routing choose when sending.
    pub ifindex: u32,
}

/// A UDP socket of one address family.
#[derive(Debug)]
pub struct UdpSocket {
    fd: OwnedFd,
    v6: bool,
    gso: AtomicBool,
    gro: bool,
    shutdown: Shutdown,
}

/// The IPv4 and IPv6 sockets bound to one port: one pair per lane.
///
/// With several lanes, each family has one socket per lane in an `SO_REUSEPORT` group, and
/// the kernel spreads incoming flows over them by their addresses and ports, so each peer's
/// datagrams always reach the same lane (and are never reordered between threads). Any
/// socket can send.
#[derive(Debug)]
pub struct UdpSockets {
    lanes: Vec<(UdpSocket, Option<UdpSocket>)>,
    port: u16,
}

impl UdpSockets {
    /// Binds the wildcard address of both families to `port`; port 0 picks a port that is free
    /// in both. Hosts without IPv6 get an IPv4 socket only.
    ///
    /// Each socket is non-blocking (blocking calls wait in `poll`, interruptible by
    /// `shutdown`), has 7 MiB buffers (forced if privileged), reports local addresses and
    /// enables UDP GRO where the kernel supports it.
    ///
    /// # Errors
    ///
    /// The failing system call's error, such as `EADDRINUSE` for a taken port.
    pub fn bind(port: u16, shutdown: &Shutdown) -> io::Result<Self> {
        Self::bind_lanes(port, 1, shutdown)
    }

    /// Like [`Self::bind`] with `lanes` sockets per family in an `SO_REUSEPORT` group.
    ///
    /// The port must be free for an exclusive bind first, so a second daemon configured with
    /// the same port fails with `EADDRINUSE` instead of silently sharing the traffic.
    ///
    /// # Errors
    ///
    /// As [`Self::bind`].
    pub fn bind_lanes(port: u16, lanes: usize, shutdown: &Shutdown) -> io::Result<Self> {
        let mut attempts = 0;
        loop {
            let retry = |err: io::Error, attempts: &mut usize| {
                *attempts += 1;
                let again = err.kind() == io::ErrorKind::AddrInUse
                    && port == 0
                    && *attempts < BIND_ATTEMPTS;
                if again {
                    Ok(())
                } else {
                    Err(err)
                }
            };
            // An exclusive bind proves the port free (and picks one for port 0).
            let exclusive = match Self::bind_pair(port, false, shutdown) {
                Ok(pair) => pair,
                Err(err) => {
                    retry(err, &mut attempts)?;
                    continue;
                }
            };
            let bound = exclusive.0.local_port()?;
            if lanes <= 1 {
                return Ok(Self { lanes: vec![exclusive], port: bound });
            }
            drop(exclusive);
            match (0..lanes).map(|_| Self::bind_pair(bound, true, shutdown)).collect() {
                Ok(all) => return Ok(Self { lanes: all, port: bound }),
                Err(err) => retry(err, &mut attempts)?,
            }
        }
    }

    /// One IPv4 socket and, where the host has IPv6, one IPv6 socket on `port`, in the
    /// port's `SO_REUSEPORT` group when `reuse`.
    fn bind_pair(
        port: u16,
        reuse: bool,
        shutdown: &Shutdown,
    ) -> io::Result<(UdpSocket, Option<UdpSocket>)> {
        let v4_addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
        let v4 = UdpSocket::bind(v4_addr, reuse, shutdown)?;
        let bound = v4.local_port()?;
        let v6_addr = SocketAddr::from((Ipv6Addr::UNSPECIFIED, bound));
        match UdpSocket::bind(v6_addr, reuse, shutdown) {
            Ok(v6) => Ok((v4, Some(v6))),
            Err(err) if is_ipv6_unavailable(&err) => Ok((v4, None)),
            Err(err) => Err(err),
        }
    }

    /// The port both sockets are bound to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How many lanes of sockets there are.
    pub fn lanes(&self) -> usize {
        self.lanes.len()
    }

    /// The sockets of lane `lane` (IPv4, and IPv6 where the host has it).
    pub fn lane(&self, lane: usize) -> Option<(&UdpSocket, Option<&UdpSocket>)> {
        self.lanes.get(lane).map(|(v4, v6)| (v4, v6.as_ref()))
    }

    /// The IPv4 socket of lane 0.
    pub fn v4(&self) -> &UdpSocket {
        &self.lanes[0].0
    }

    /// The IPv6 socket of lane 0, unless the host has no IPv6.
    pub fn v6(&self) -> Option<&UdpSocket> {
        self.lanes[0].1.as_ref()
    }

    /// A socket that sends to `addr`'s family.
    pub fn for_addr(&self, addr: &SocketAddr) -> Option<&UdpSocket> {
        self.for_addr_in_lane(addr, 0)
    }

    /// Lane `lane`'s socket for `addr`'s family (lane 0's if there is no such lane).
    pub fn for_addr_in_lane(&self, addr: &SocketAddr, lane: usize) -> Option<&UdpSocket> {
        let (v4, v6) = self.lanes.get(lane).unwrap_or(&self.lanes[0]);
        match addr {
            SocketAddr::V4(_) => Some(v4),
            SocketAddr::V6(_) => v6.as_ref(),
        }
    }

    /// Sets the firewall mark (`SO_MARK`) of outgoing packets on every socket; 0 clears it.
    ///
    /// # Errors
    ///
    /// `EPERM` without `CAP_NET_ADMIN`.
    pub fn set_mark(&self, mark: u32) -> io::Result<()> {
        for (v4, v6) in &self.lanes {
            for socket in std::iter::once(v4).chain(v6) {
                set_int_opt(
                    socket.fd.as_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_MARK,
                    mark as libc::c_int,
                )
                .map_err(context("SO_MARK"))?;
            }
        }
        Ok(())
    }
}

impl UdpSocket {
    fn bind(addr: SocketAddr, reuse: bool, shutdown: &Shutdown) -> io::Result<Self> {
        let v6 = addr.is_ipv6();
        let family = if v6 { libc::AF_INET6 } else { libc::AF_INET };
        let kind = libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
        // SAFETY: socket takes no pointers; the result is checked before use.
        let fd = cvt(unsafe { libc::socket(family, kind, 0) })?;
        // SAFETY: `fd` was just returned by socket and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let sock = fd.as_fd();
        if v6 {
            set_int_opt(sock, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)
                .map_err(context("IPV6_V6ONLY"))?;
            set_int_opt(sock, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)
                .map_err(context("IPV6_RECVPKTINFO"))?;
        } else {
            set_int_opt(sock, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)
                .map_err(context("IP_PKTINFO"))?;
        }
        for (forced, plain) in
            [(libc::SO_RCVBUFFORCE, libc::SO_RCVBUF), (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF)]
        {
            set_int_opt(sock, libc::SOL_SOCKET, forced, SOCKET_BUFFER)
                .or_else(|_| set_int_opt(sock, libc::SOL_SOCKET, plain, SOCKET_BUFFER))
                .map_err(context("socket buffer size"))?;
        }
        // Both offloads are optional: GRO needs Linux 5.0, GSO 4.18.
        let gro = set_int_opt(sock, libc::SOL_UDP, libc::UDP_GRO, 1).is_ok();
        let gso = get_int_opt(sock, libc::SOL_UDP, libc::UDP_SEGMENT).is_ok();
        if reuse {
            set_int_opt(sock, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)
                .map_err(context("SO_REUSEPORT"))?;
        }
        let (storage, len) = sockaddr(&addr);
        // SAFETY: the pointer and length describe `storage`, which outlives the call.
        cvt(unsafe {
            libc::bind(sock.as_raw_fd(), (&storage as *const libc::sockaddr_storage).cast(), len)
        })?;
        Ok(Self { fd, v6, gso: AtomicBool::new(gso), gro, shutdown: shutdown.clone() })
    }

    /// The port the socket is bound to.
    ///
    /// # Errors
    ///
    /// If `getsockname` fails, which it does not for a bound socket.
    pub fn local_port(&self) -> io::Result<u16> {
        // SAFETY: sockaddr_storage is plain integers, for which all-zero bytes are valid.
        let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
        let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: the pointers describe `storage` and `len`, which outlive the call.
        cvt(unsafe {
            libc::getsockname(
                self.fd.as_raw_fd(),
                (&mut storage as *mut libc::sockaddr_storage).cast(),
                &mut len,
            )
        })?;
        socket_addr(&storage)
            .map(|addr| addr.port())
            .ok_or_else(|| io::ErrorKind::InvalidData.into())
    }

    /// Whether sends still use UDP GSO: the kernel supports it and no send was refused.
    pub fn gso_enabled(&self) -> bool {
        self.gso.load(Ordering::Relaxed)
    }

    /// Whether receives may return GRO-coalesced datagrams.
    pub fn gro_enabled(&self) -> bool {
        self.gro
    }

    /// Turns GSO off for good after the kernel refused it.
    fn disable_gso(&self) {
        self.gso.store(false, Ordering::Relaxed);
    }
}

impl AsFd for UdpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Whether a failed IPv6 socket or bind means the host has no IPv6 at all.
fn is_ipv6_unavailable(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL))
}

/// Converts an address to the C form and its length.
fn sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain integers, for which all-zero bytes are valid.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let len = match addr {
        SocketAddr::V4(addr) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr type.
            let sin = unsafe {
                &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = addr.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(addr.ip().octets());
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(addr) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr type.
            let sin6 = unsafe {
                &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = addr.port().to_be();
            sin6.sin6_addr.s6_addr = addr.ip().octets();
            sin6.sin6_flowinfo = addr.flowinfo();
            sin6.sin6_scope_id = addr.scope_id();
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// Converts a C address filled in by the kernel; `None` for families other than IP.
fn socket_addr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it can contain.
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddrV4::new(ip, u16::from_be(sin.sin_port)).into())
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6, which it can contain.
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            Some(SocketAddrV6::new(ip, port, sin6.sin6_flowinfo, sin6.sin6_scope_id).into())
        }
        _ => None,
    }
}
