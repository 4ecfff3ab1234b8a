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

use crate::os::{context, cvt, get_int_opt, set_int_opt};
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

/// The IPv4 and IPv6 sockets bound to one port.
#[derive(Debug)]
pub struct UdpSockets {
    v4: UdpSocket,
    v6: Option<UdpSocket>,
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
        let mut attempts = 0;
        loop {
            let v4 = UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)), shutdown)?;
            let bound = v4.local_port()?;
            match UdpSocket::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, bound)), shutdown) {
                Ok(v6) => return Ok(Self { v4, v6: Some(v6), port: bound }),
                Err(err) if is_ipv6_unavailable(&err) => {
                    return Ok(Self { v4, v6: None, port: bound })
                }
                Err(err) if err.kind() == io::ErrorKind::AddrInUse && port == 0 => {
                    attempts += 1;
                    if attempts == BIND_ATTEMPTS {
                        return Err(err);
                    }
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// The port both sockets are bound to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The IPv4 socket.
    pub fn v4(&self) -> &UdpSocket {
        &self.v4
    }

    /// The IPv6 socket, unless the host has no IPv6.
    pub fn v6(&self) -> Option<&UdpSocket> {
        self.v6.as_ref()
    }

    /// The socket that sends to `addr`'s family.
    pub fn for_addr(&self, addr: &SocketAddr) -> Option<&UdpSocket> {
        match addr {
            SocketAddr::V4(_) => Some(&self.v4),
            SocketAddr::V6(_) => self.v6.as_ref(),
        }
    }

    /// Sets the firewall mark (`SO_MARK`) of outgoing packets on both sockets; 0 clears it.
    ///
    /// # Errors
    ///
    /// `EPERM` without `CAP_NET_ADMIN`.
    pub fn set_mark(&self, mark: u32) -> io::Result<()> {
        for socket in std::iter::once(&self.v4).chain(&self.v6) {
            set_int_opt(socket.fd.as_fd(), libc::SOL_SOCKET, libc::SO_MARK, mark as libc::c_int)
                .map_err(context("SO_MARK"))?;
        }
        Ok(())
    }
}

impl UdpSocket {
    fn bind(addr: SocketAddr, shutdown: &Shutdown) -> io::Result<Self> {
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
