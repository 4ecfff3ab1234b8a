//! The one client of a WireGuard daemon's userspace API socket
//! (`/var/run/wireguard/IFACE.sock`), as `wg(8)` uses it: one connection per request, `get=1`
//! answered by the configuration and `errno=0`, `set=1` answered by `errno=N`. It works the
//! same with wgfabricd, wireguard-go and boringtun; the agent, the failover monitor, the
//! metrics exporter and the system tests all use it.
//!
//! An answer ends with its `errno=N` line: implementations keep the connection open for more
//! requests, and some follow the status with a blank line, some not yet. The whole exchange
//! has one deadline, so a daemon that trickles its answer gets no more time than one that
//! says nothing.
//!
//! A set request may hold private and preshared keys, and a get answer holds the private
//! key: both live only in zeroized memory, and are never logged or echoed in an error.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::io::{Read as _, Write as _};
use std::os::unix::fs::FileTypeExt as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wgfabric_proto::keys::PublicKey;
use wgfabric_proto::uapi::{
    format_set, parse_get, parse_status, DeviceSnapshot, PeerUpdate, SetRequest, UapiError, EINVAL,
    GET_REQUEST, SOCKET_DIR,
};
use zeroize::{Zeroize as _, Zeroizing};

/// How long a daemon may take to take a request and answer it, in all, unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest answer accepted (a `get` of tens of thousands of peers).
const MAX_ANSWER: usize = 64 * 1024 * 1024;

/// Why talking to the daemon failed. Each cause is part of the message rather than a separate
/// `source()`, so that printing the error chain does not repeat it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// The socket could not be reached or the exchange broke off.
    #[error("{}: {cause}{}", socket.display(), io_hint(cause))]
    Io {
        /// The socket.
        socket: PathBuf,
        /// What the system said.
        cause: std::io::Error,
    },
    /// The daemon refused the request or answered something malformed.
    #[error("{}: {cause}", socket.display())]
    Refused {
        /// The socket.
        socket: PathBuf,
        /// The daemon's errno and message (never a key).
        cause: UapiError,
    },
}

/// What to check when the socket cannot be reached.
fn io_hint(error: &std::io::Error) -> &'static str {
    match error.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            " (is a daemon, such as wgfabricd, wireguard-go or boringtun, running the interface?)"
        }
        std::io::ErrorKind::PermissionDenied => " (the API socket is root's: run as root)",
        _ => "",
    }
}

impl DeviceError {
    /// The daemon's errno, when it answered with one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Refused { cause, .. } => Some(cause.errno()),
            Self::Io { .. } => None,
        }
    }
}

/// The API socket of `interface` in [`SOCKET_DIR`].
pub fn socket_path(interface: &str) -> PathBuf {
    Path::new(SOCKET_DIR).join(format!("{interface}.sock"))
}

/// The `IFACE.sock` sockets in `dir` (usually [`SOCKET_DIR`]), as `(IFACE, path)` sorted by
/// interface name: every userspace interface on the machine, since their sockets share one
/// directory whatever the network namespace. A missing directory holds none.
///
/// # Errors
/// When the directory exists but cannot be listed.
pub fn find_sockets(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let mut sockets = Vec::new();
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        let Some(name) =
            path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".sock"))
        else {
            continue;
        };
        if !name.is_empty() && entry.file_type().is_ok_and(|t| t.is_socket()) {
            sockets.push((name.to_owned(), path));
        }
    }
    sockets.sort();
    Ok(sockets)
}

/// One interface's userspace API.
#[derive(Debug, Clone)]
pub struct Device {
    socket: PathBuf,
    timeout: Duration,
}

impl Device {
    /// The API of `interface` in [`SOCKET_DIR`].
    pub fn new(interface: &str) -> Self {
        Self::at(socket_path(interface))
    }

    /// The API at `socket`.
    pub fn at(socket: PathBuf) -> Self {
        Self { socket, timeout: DEFAULT_TIMEOUT }
    }

    /// The same API with `timeout` for each whole exchange instead of [`DEFAULT_TIMEOUT`].
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The socket's path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The device's configuration and counters.
    ///
    /// # Errors
    /// [`DeviceError`].
    pub fn get(&self) -> Result<DeviceSnapshot, DeviceError> {
        let answer = self.exchange(GET_REQUEST.as_bytes())?;
        parse_get(&answer).map_err(|source| self.refused(source))
    }

    /// Applies `request`.
    ///
    /// # Errors
    /// [`DeviceError::Refused`] with the daemon's errno; [`DeviceError::Io`].
    pub fn set(&self, request: &SetRequest) -> Result<(), DeviceError> {
        let text = Zeroizing::new(format_set(request));
        let answer = self.exchange(text.as_bytes())?;
        parse_status(&answer).map_err(|source| self.refused(source))
    }

    /// Whether the daemon takes `successor_of` (wgfabricd does; others answer `EINVAL`).
    ///
    /// # Errors
    /// When the daemon cannot be reached or fails otherwise.
    pub fn supports_successors(&self) -> Result<bool, DeviceError> {
        self.supports(|probe| probe.successor_of = Some(PublicKey::from_bytes([0xa5; 32])))
    }

    /// Whether the daemon takes `accept_ip` (wgfabricd does; others answer `EINVAL`).
    ///
    /// # Errors
    /// When the daemon cannot be reached or fails otherwise.
    pub fn supports_accept_ips(&self) -> Result<bool, DeviceError> {
        self.supports(|probe| probe.replace_accept_ips = true)
    }

    /// Whether the daemon takes a peer update with an extension that `extend` sets. The probe
    /// changes nothing: it names a peer that does not exist, with `update_only`.
    fn supports(&self, extend: impl FnOnce(&mut PeerUpdate)) -> Result<bool, DeviceError> {
        let mut probe = PeerUpdate::new(PublicKey::from_bytes([0x5a; 32]));
        probe.update_only = true;
        extend(&mut probe);
        match self.set(&SetRequest { peers: vec![probe], ..SetRequest::default() }) {
            Ok(()) => Ok(true),
            Err(error) if error.errno() == Some(EINVAL) => Ok(false),
            Err(error) => Err(error),
        }
    }

    fn refused(&self, source: UapiError) -> DeviceError {
        DeviceError::Refused { socket: self.socket.clone(), cause: source }
    }

    /// Sends `request` as it is and returns the answer up to and including its `errno=N`
    /// line: for requests that [`Device::get`] and [`Device::set`] do not make.
    ///
    /// # Errors
    /// [`DeviceError::Io`] when the exchange breaks off or outlasts the timeout
    /// ([`std::io::ErrorKind::TimedOut`]), or the answer is not UTF-8 or too long.
    #[expect(clippy::disallowed_methods, reason = "the exchange is bounded in real time")]
    pub fn exchange(&self, request: &[u8]) -> Result<Zeroizing<String>, DeviceError> {
        let io = |cause| DeviceError::Io { socket: self.socket.clone(), cause };
        let deadline = Instant::now() + self.timeout;
        // The time left before the deadline, as a socket timeout (which must not be zero).
        let left = || {
            deadline
                .checked_duration_since(Instant::now())
                .filter(|left| !left.is_zero())
                .ok_or_else(|| io(std::io::ErrorKind::TimedOut.into()))
        };
        let mut stream = UnixStream::connect(&self.socket).map_err(io)?;
        stream.set_write_timeout(Some(left()?)).map_err(io)?;
        stream.write_all(request).map_err(|cause| io(timed_out(cause)))?;
        // The answer to a get holds the private key.
        let mut answer = Zeroizing::new(Vec::new());
        let mut chunk = Zeroizing::new([0u8; 8192]);
        while !is_complete(&answer) {
            stream.set_read_timeout(Some(left()?)).map_err(io)?;
            let n = stream.read(&mut chunk[..]).map_err(|cause| io(timed_out(cause)))?;
            if n == 0 {
                return Err(io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            answer.extend_from_slice(&chunk[..n]);
            if answer.len() > MAX_ANSWER {
                return Err(io(std::io::Error::other("the answer is too long")));
            }
        }
        // Moved, not copied, so that the key leaves no copy behind.
        match String::from_utf8(std::mem::take(&mut *answer)) {
            Ok(text) => Ok(Zeroizing::new(text)),
            Err(error) => {
                error.into_bytes().zeroize();
                Err(io(std::io::Error::other("the answer is not UTF-8")))
            }
        }
    }
}

/// Whether an answer has reached its `errno=N` line, with or without the blank line after it.
fn is_complete(answer: &[u8]) -> bool {
    let body = answer.strip_suffix(b"\n\n").or_else(|| answer.strip_suffix(b"\n"));
    let Some(body) = body else { return false };
    let last_line = body.rsplit(|&b| b == b'\n').next().unwrap_or(body);
    last_line.starts_with(b"errno=")
}

/// A socket timeout as what it is: Linux reports one as `WouldBlock`.
fn timed_out(error: std::io::Error) -> std::io::Error {
    if error.kind() == std::io::ErrorKind::WouldBlock {
        std::io::ErrorKind::TimedOut.into()
    } else {
        error
    }
}

impl From<DeviceError> for std::io::Error {
    /// The system's own error for a broken exchange; [`std::io::ErrorKind::InvalidData`] with
    /// the daemon's errno for a refusal or a malformed answer.
    fn from(error: DeviceError) -> Self {
        match error {
            DeviceError::Io { cause, .. } => cause,
            DeviceError::Refused { cause, .. } => Self::new(std::io::ErrorKind::InvalidData, cause),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    /// A fake daemon that answers each connection with the next of `answers` and returns the
    /// requests it got.
    fn fake(answers: Vec<&'static str>) -> (Device, std::thread::JoinHandle<Vec<String>>) {
        let path = std::env::temp_dir().join(format!(
            "wgfabric-uapi-{}-{}.sock",
            std::process::id(),
            answers.len()
        ));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let mut requests = Vec::new();
            for answer in answers {
                let (mut conn, _) = listener.accept().unwrap();
                let mut request = Vec::new();
                let mut byte = [0u8; 1];
                while !request.ends_with(b"\n\n") {
                    conn.read_exact(&mut byte).unwrap();
                    request.push(byte[0]);
                }
                // The client may hang up as soon as it has read `errno=`, before the blank
                // line that follows: a write that fails then is no failure of the test.
                for piece in answer.as_bytes().chunks(5) {
                    if conn.write_all(piece).is_err() {
                        break;
                    }
                }
                requests.push(String::from_utf8(request).unwrap());
            }
            requests
        });
        (Device::at(path), server)
    }

    #[test]
    fn gets_sets_and_the_extension_probes() {
        let peer = "58402e695ba1772b1cc9309755f043251ea77fdcf10fbe63989ceb7e19321376";
        let get = Box::leak(
            format!("listen_port=51820\npublic_key={peer}\nallowed_ip=10.0.0.2/32\nerrno=0\n\n")
                .into_boxed_str(),
        );
        let (device, server) =
            fake(vec![get, "errno=0\n\n", "errno=-22\n\n", "errno=0\n\n", "errno=0\n\n"]);
        let snapshot = device.get().unwrap();
        assert_eq!(snapshot.listen_port, 51820);
        assert_eq!(snapshot.peers[0].allowed_ips.len(), 1);
        device.set(&SetRequest { listen_port: Some(1), ..SetRequest::default() }).unwrap();
        assert!(!device.supports_successors().unwrap(), "EINVAL: a stock daemon");
        assert!(device.supports_successors().unwrap());
        assert!(device.supports_accept_ips().unwrap());
        let requests = server.join().unwrap();
        assert_eq!(requests[0], "get=1\n\n");
        assert_eq!(requests[1], "set=1\nlisten_port=1\n\n");
        assert!(requests[2].contains("update_only=true\nsuccessor_of="), "{}", requests[2]);
        assert!(requests[4].contains("update_only=true\nreplace_accept_ips=true"));
        let _ = std::fs::remove_file(device.socket());
    }

    #[test]
    fn refusals_carry_the_errno() {
        let (device, server) = fake(vec!["errno=-98\n\n"]);
        let error = device.set(&SetRequest::default()).unwrap_err();
        assert_eq!(error.errno(), Some(98));
        server.join().unwrap();
        let _ = std::fs::remove_file(device.socket());
        let error = device.get().unwrap_err();
        assert!(matches!(error, DeviceError::Io { .. }), "no daemon");
        assert!(error.to_string().contains("running the interface?"), "{error}");
    }

    #[test]
    fn finds_sockets_only_sorted_by_interface() {
        let dir = std::env::temp_dir().join(format!("wgfabric-uapi-dir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let _wg1 = UnixListener::bind(dir.join("wg1.sock")).unwrap();
        let _wg0 = UnixListener::bind(dir.join("wg0.sock")).unwrap();
        let _other = UnixListener::bind(dir.join("wg2.socket")).unwrap();
        std::fs::write(dir.join("wg3.sock"), "a file, not a socket").unwrap();
        let found = find_sockets(&dir).unwrap();
        let names: Vec<&str> = found.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["wg0", "wg1"]);
        assert_eq!(found[0].1, dir.join("wg0.sock"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(find_sockets(&dir).unwrap().is_empty(), "a missing directory holds none");
    }

    #[test]
    fn answers_end_after_the_errno_line() {
        assert!(is_complete(b"errno=0\n\n"));
        assert!(is_complete(b"public_key=ab\nerrno=0\n\n"));
        assert!(is_complete(b"errno=0\n"), "without the blank line");
        assert!(!is_complete(b"public_key=ab\n\n"));
        assert!(!is_complete(b"public_key=ab\nerrno=0"), "the status line is not over yet");
    }
}
