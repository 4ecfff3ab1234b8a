//! The kernel's interfaces, addresses, routes and policy rules over rtnetlink, as `ip` sets
//! them, through one synchronous socket and without running a program.
//!
//! ```text
//!  Netlink::open / open_in(NS) ──► request(what, message) ──► ack or named error
//!                                  dump(what, message)    ──► every answer, parsed
//! ```
//!
//! Every request asks for an acknowledgement, so a refusal comes back as a
//! [`NetlinkError::Refused`] naming what was asked ("add route 10.1.0.0/16 dev wg0") with
//! the kernel's reason. Answers are parsed with bounds checks: a malformed one is an error,
//! never a panic. The objects themselves are in [`link`] and [`route`].

pub mod link;
pub mod route;

use std::io;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::protocols::NETLINK_ROUTE;
use netlink_sys::{Socket, SocketAddr};

pub use link::LinkState;
pub use route::{Route, RouteKind, Rule, MAIN_TABLE};

/// The receive buffer: larger than any one datagram the kernel sends on a dump.
const RECEIVE_BUFFER: usize = 64 * 1024;

/// Why a netlink request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetlinkError {
    /// The socket could not be opened or the exchange broke off.
    #[error("netlink: {0}")]
    Socket(io::Error),
    /// The kernel refused a request.
    #[error("{what}: {cause}{}", hint(cause))]
    Refused {
        /// What was asked, such as `add address 10.0.0.1/24 to wg0`.
        what: String,
        /// The kernel's reason.
        cause: io::Error,
    },
    /// An answer did not parse.
    #[error("{what}: the kernel's answer does not parse: {reason}")]
    Malformed {
        /// What was asked.
        what: String,
        /// Why it does not parse.
        reason: String,
    },
    /// No interface has the name.
    #[error("no interface named `{0}`")]
    NoSuchInterface(String),
}

/// What to check after the common refusals.
fn hint(cause: &io::Error) -> &'static str {
    match cause.raw_os_error() {
        Some(libc_errno::EEXIST) => {
            " (it conflicts with one already there: remove that one, or choose another)"
        }
        Some(libc_errno::EPERM) => " (changing the network needs root, or CAP_NET_ADMIN)",
        _ => "",
    }
}

/// The errno values that matter here (the crate has no libc of its own).
pub(crate) mod libc_errno {
    /// Operation not permitted.
    pub(crate) const EPERM: i32 = 1;
    /// No such file or directory: a rule that is not there.
    pub(crate) const ENOENT: i32 = 2;
    /// No such process: a route that is not there.
    pub(crate) const ESRCH: i32 = 3;
    /// File exists.
    pub(crate) const EEXIST: i32 = 17;
    /// No such device.
    pub(crate) const ENODEV: i32 = 19;
    /// Cannot assign requested address: an address that is not there.
    pub(crate) const EADDRNOTAVAIL: i32 = 99;
    /// Network is unreachable: no route.
    pub(crate) const ENETUNREACH: i32 = 101;
    /// No route to host.
    pub(crate) const EHOSTUNREACH: i32 = 113;
}

impl NetlinkError {
    /// The kernel's errno, when it refused.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Refused { cause, .. } => cause.raw_os_error(),
            _ => None,
        }
    }
}

/// A route netlink socket.
#[derive(Debug)]
pub struct Netlink {
    socket: Socket,
    sequence: u32,
}

impl Netlink {
    /// A socket on this process's network namespace.
    ///
    /// # Errors
    /// [`NetlinkError::Socket`].
    pub fn open() -> Result<Self, NetlinkError> {
        Self::open_in(None)
    }

    /// A socket on the network namespace `namespace` (as `ip netns` names it), or on this
    /// process's own for `None`.
    ///
    /// # Errors
    /// [`NetlinkError::Socket`], also when the namespace cannot be joined.
    pub fn open_in(namespace: Option<&str>) -> Result<Self, NetlinkError> {
        let socket = crate::namespace::enter(namespace, || {
            let mut socket = Socket::new(NETLINK_ROUTE)?;
            socket.bind_auto()?;
            socket.connect(&SocketAddr::new(0, 0))?;
            // Refusals carry the kernel's explanation rather than just an errno.
            socket.set_ext_ack(true)?;
            Ok(socket)
        })
        .map_err(NetlinkError::Socket)?;
        Ok(Self { socket, sequence: 0 })
    }

    /// Sends `message` with an acknowledgement requested, and waits for it.
    ///
    /// # Errors
    /// [`NetlinkError::Refused`] naming `what`.
    fn request(
        &mut self,
        what: &str,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<(), NetlinkError> {
        self.exchange(what, message, NLM_F_REQUEST | NLM_F_ACK | flags).map(drop)
    }

    /// Sends a dump request and returns every answer.
    ///
    /// # Errors
    /// [`NetlinkError`] naming `what`.
    fn dump(
        &mut self,
        what: &str,
        message: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        self.exchange(what, message, NLM_F_REQUEST | NLM_F_DUMP)
    }

    /// Sends a request for one object (answered by it, or by an error).
    ///
    /// # Errors
    /// [`NetlinkError`] naming `what`.
    fn get(
        &mut self,
        what: &str,
        message: RouteNetlinkMessage,
    ) -> Result<Option<RouteNetlinkMessage>, NetlinkError> {
        Ok(self.exchange(what, message, NLM_F_REQUEST)?.into_iter().next())
    }

    fn exchange(
        &mut self,
        what: &str,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        self.sequence = self.sequence.wrapping_add(1);
        let sequence = self.sequence;
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let mut bytes = vec![0; packet.buffer_len()];
        packet.serialize(&mut bytes);
        self.socket.send(&bytes, 0).map_err(NetlinkError::Socket)?;

        let malformed = |reason: String| NetlinkError::Malformed { what: what.to_owned(), reason };
        let multipart = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut answers = Vec::new();
        let mut buffer = Vec::with_capacity(RECEIVE_BUFFER);
        loop {
            buffer.clear();
            let size = self.socket.recv(&mut buffer, 0).map_err(NetlinkError::Socket)?;
            if size > buffer.len() {
                return Err(malformed(format!("a datagram of {size} bytes was truncated")));
            }
            let mut offset = 0;
            while offset < buffer.len() {
                let rest = buffer.get(offset..).unwrap_or_default();
                let answer = NetlinkMessage::<RouteNetlinkMessage>::deserialize(rest)
                    .map_err(|e| malformed(e.to_string()))?;
                let length = usize::try_from(answer.header.length).unwrap_or(0);
                if length == 0 {
                    return Err(malformed("a message of length 0".to_owned()));
                }
                // Netlink messages are 4-byte aligned within a datagram.
                offset += length.next_multiple_of(4);
                if answer.header.sequence_number != sequence {
                    continue;
                }
                match answer.payload {
                    NetlinkPayload::Error(error) => {
                        return match error.code {
                            None => Ok(answers),
                            Some(_) => Err(NetlinkError::Refused {
                                what: what.to_owned(),
                                cause: error.to_io(),
                            }),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(answers),
                    NetlinkPayload::InnerMessage(inner) => {
                        answers.push(inner);
                        if !multipart && flags & NLM_F_ACK == 0 {
                            return Ok(answers);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Whether `result` failed only because the object was not there (`errno`), which for a
/// removal means the wanted state already holds.
fn absent_is_fine(result: Result<(), NetlinkError>, errnos: &[i32]) -> Result<(), NetlinkError> {
    match result {
        Err(error) if error.errno().is_some_and(|errno| errnos.contains(&errno)) => Ok(()),
        other => other,
    }
}
