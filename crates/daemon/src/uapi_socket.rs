//! The userspace API socket's life: `/var/run/wireguard/IFNAME.sock`, bound once, watched,
//! served by one thread per connection, and removed on the way out.
//!
//! The socket is root's, but a stuck or careless client must not lock `wg` out, so the
//! connections live within [`wgfabric_metrics::limits`]: a client has [`REQUEST_DEADLINE`] to
//! send each request (from connecting, or from the end of the previous answer) and again to
//! take its answer, and at most [`MAX_CONNECTIONS`] are open. One more closes the oldest still
//! waiting for or sending a request, whose unfinished request then changes nothing.

use std::cell::Cell;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::{bail, Context as _};
use wgfabric_metrics::limits::{Connections, Phase, Ticket, Timed};
use wgfabric_proto::uapi::{DeviceSnapshot, SetRequest, UapiError};

use crate::connection;
use crate::control::Control;
use crate::shutdown::{Reason, Shutdown};

/// Where `wg(8)` looks for userspace implementations.
pub(crate) use wgfabric_proto::uapi::SOCKET_DIR;

/// How often the socket file is checked for removal.
const WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// How long a client has to send a request, from connecting or from the end of the previous
/// answer, and then again to take the answer: deadlines for the whole, not per read.
pub(crate) const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// The most connections open at once; one more closes the oldest without a complete request.
pub(crate) const MAX_CONNECTIONS: usize = 16;

/// The bound socket. Dropping it stops serving, closes the connections still open and
/// removes the file, unless something else has replaced it.
#[derive(Debug)]
pub(crate) struct UapiSocket {
    listener: UnixListener,
    path: PathBuf,
    identity: (u64, u64),
    connections: Connections,
}

impl UapiSocket {
    /// Binds `SOCKET_DIR/IFNAME.sock`, creating the directory (mode 0755) if needed.
    ///
    /// A socket file that no daemon answers on is stale and replaced.
    ///
    /// # Errors
    /// When a live daemon already answers on the socket, when the path exists but is not a
    /// socket, or on any I/O error.
    pub(crate) fn bind(interface: &str) -> anyhow::Result<Self> {
        Self::bind_in(Path::new(SOCKET_DIR), interface)
    }

    fn bind_in(dir: &Path, interface: &str) -> anyhow::Result<Self> {
        ensure_directory(dir)?;
        let path = dir.join(format!("{interface}.sock"));
        let listener = match UnixListener::bind(&path) {
            Err(error) if error.kind() == io::ErrorKind::AddrInUse => {
                replace_stale(&path)?;
                UnixListener::bind(&path)
            }
            bound => bound,
        }
        .with_context(|| format!("binding {}", path.display()))?;
        // Root only; the umask made it so already, this makes it so whatever the umask.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", path.display()))?;
        let metadata = fs::symlink_metadata(&path)?;
        let identity = (metadata.dev(), metadata.ino());
        Ok(Self { listener, path, identity, connections: Connections::new(MAX_CONNECTIONS) })
    }

    /// The socket's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Serves `control` from a background thread (one more thread per connection) until
    /// `shutdown` is triggered and the socket dropped, and triggers `shutdown` when the socket
    /// file is removed or replaced.
    ///
    /// # Errors
    /// When a thread cannot be started.
    pub(crate) fn serve<C>(&self, control: Arc<C>, shutdown: &Shutdown) -> anyhow::Result<()>
    where
        C: Control + ?Sized + 'static,
    {
        let listener = self.listener.try_clone().context("sharing the listening socket")?;
        let (connections, accept_shutdown) = (self.connections.clone(), shutdown.clone());
        thread::Builder::new()
            .name("uapi-accept".into())
            .spawn(move || accept_loop(&listener, &control, &connections, &accept_shutdown))
            .context("starting the userspace API thread")?;
        let (path, identity, shutdown) = (self.path.clone(), self.identity, shutdown.clone());
        thread::Builder::new()
            .name("uapi-watch".into())
            .spawn(move || watch(&path, identity, &shutdown))
            .context("starting the socket watcher")?;
        Ok(())
    }

    fn is_still_ours(&self) -> bool {
        identity_of(&self.path) == Some(self.identity)
    }
}

impl Drop for UapiSocket {
    fn drop(&mut self) {
        if self.is_still_ours() {
            // Wakes the accept loop, if any, to see the shutdown and close the connections.
            drop(UnixStream::connect(&self.path));
            if let Err(error) = fs::remove_file(&self.path) {
                tracing::warn!(path = %self.path.display(), %error, "could not remove the socket");
            }
        }
    }
}

fn ensure_directory(dir: &Path) -> anyhow::Result<()> {
    match fs::create_dir(dir) {
        // World-readable like wireguard-go's, whatever the umask; the sockets inside are not.
        Ok(()) => fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("setting the mode of {}", dir.display())),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error).with_context(|| format!("creating {}", dir.display())),
    }
}

/// Removes `path` if it is a socket that nobody answers on.
fn replace_stale(path: &Path) -> anyhow::Result<()> {
    let metadata = fs::symlink_metadata(path)?;
    if !metadata.file_type().is_socket() {
        bail!("{} exists and is not a socket; refusing to replace it", path.display());
    }
    if UnixStream::connect(path).is_ok() {
        bail!("another daemon is serving {} (is the interface already up?)", path.display());
    }
    tracing::info!(path = %path.display(), "replacing a stale socket");
    fs::remove_file(path).with_context(|| format!("removing the stale {}", path.display()))
}

fn identity_of(path: &Path) -> Option<(u64, u64)> {
    fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

fn watch(path: &Path, identity: (u64, u64), shutdown: &Shutdown) {
    while shutdown.wait_timeout(WATCH_INTERVAL).is_none() {
        if identity_of(path) != Some(identity) {
            shutdown.trigger(Reason::SocketRemoved);
        }
    }
}

fn accept_loop<C: Control + ?Sized + 'static>(
    listener: &UnixListener,
    control: &Arc<C>,
    connections: &Connections,
    shutdown: &Shutdown,
) {
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(stream) => Arc::new(stream),
            Err(error) => {
                // Typically out of descriptors: back off rather than spin.
                tracing::warn!(%error, "accepting a userspace API connection failed");
                if shutdown.wait_timeout(Duration::from_millis(100)).is_some() {
                    break;
                }
                continue;
            }
        };
        if shutdown.wait_timeout(Duration::ZERO).is_some() {
            break;
        }
        let Some(ticket) = connections.admit(&stream) else {
            tracing::warn!("closing a userspace API connection: every other one is being served");
            continue;
        };
        let control = Arc::clone(control);
        let spawned = thread::Builder::new().name("uapi-conn".into()).spawn(move || {
            if let Err(error) = serve_stream(&stream, &ticket, &*control) {
                tracing::debug!(%error, "userspace API connection ended with an error");
            }
        });
        if let Err(error) = spawned {
            tracing::warn!(%error, "could not start a userspace API connection thread");
        }
    }
    connections.interrupt_all();
}

fn serve_stream<C: Control + ?Sized>(
    stream: &UnixStream,
    ticket: &Ticket,
    control: &C,
) -> io::Result<()> {
    serve_within(stream, ticket, control, REQUEST_DEADLINE)
}

/// Serves one connection, giving each request and each answer `budget`.
fn serve_within<C: Control + ?Sized>(
    stream: &UnixStream,
    ticket: &Ticket,
    control: &C,
    budget: Duration,
) -> io::Result<()> {
    let timed = Timed::new(stream, budget);
    let turns = Turns { timed, budget, ticket, answering: Cell::new(false) };
    // Buffered, so a short answer leaves in one write; pages of a long one pass straight on.
    let (reader, writer) = (io::BufReader::new(&turns), io::BufWriter::new(&turns));
    connection::serve(reader, writer, &Tracked { control, ticket })
}

/// A connection's deadlines, restarted whenever it turns from reading a request to writing
/// the answer and back, so each request and each answer gets `budget`.
struct Turns<'a> {
    timed: Timed<'a, UnixStream>,
    budget: Duration,
    ticket: &'a Ticket,
    answering: Cell<bool>,
}

impl io::Read for &Turns<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.answering.replace(false) {
            self.timed.restart(self.budget);
            self.ticket.set_phase(Phase::Waiting);
        }
        match (&self.timed).read(buf)? {
            // Not the client's end of input, after which a set request cut short is applied:
            // the connection was closed to make room for another, or the daemon stops.
            0 if self.ticket.is_interrupted() => Err(io::ErrorKind::ConnectionAborted.into()),
            read => Ok(read),
        }
    }
}

impl io::Write for &Turns<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.answering.replace(true) {
            self.timed.restart(self.budget);
        }
        (&self.timed).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The device, with the connection marked as working while it computes an answer, so that
/// newcomers do not close it then.
struct Tracked<'a, C: ?Sized> {
    control: &'a C,
    ticket: &'a Ticket,
}

impl<C: Control + ?Sized> Tracked<'_, C> {
    fn working<T>(&self, work: impl FnOnce(&C) -> T) -> T {
        self.ticket.set_phase(Phase::Working);
        let result = work(self.control);
        self.ticket.set_phase(Phase::Answering);
        result
    }
}

impl<C: Control + ?Sized> Control for Tracked<'_, C> {
    fn get(&self, page: &mut dyn FnMut(&DeviceSnapshot) -> io::Result<()>) -> io::Result<()> {
        self.working(|control| control.get(page))
    }

    fn set(&self, request: SetRequest) -> Result<(), UapiError> {
        self.working(|control| control.set(request))
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::time::Instant;

    use wgfabric_proto::uapi::parse_get;

    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wgfabricd-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn binds_root_only_in_a_world_readable_directory_and_cleans_up() {
        let dir = temp_dir("bind");
        let socket = UapiSocket::bind_in(&dir, "wgt0").unwrap();
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o755);
        assert_eq!(mode(socket.path()), 0o600);
        let path = socket.path().to_owned();
        drop(socket);
        assert!(!path.exists());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn replaces_stale_sockets_and_refuses_live_ones() {
        let dir = temp_dir("stale");
        let live = UapiSocket::bind_in(&dir, "wgt0").unwrap();
        let error = UapiSocket::bind_in(&dir, "wgt0").unwrap_err();
        assert!(format!("{error:#}").contains("another daemon"), "{error:#}");
        drop(live);
        // A socket file whose listener is gone, as a killed daemon leaves it.
        drop(UnixListener::bind(dir.join("wgt2.sock")).unwrap());
        let replacement = UapiSocket::bind_in(&dir, "wgt2").unwrap();
        assert!(UnixStream::connect(replacement.path()).is_ok());
        drop(replacement);
        fs::write(dir.join("wgt1.sock"), "not a socket").unwrap();
        let error = UapiSocket::bind_in(&dir, "wgt1").unwrap_err();
        assert!(format!("{error:#}").contains("not a socket"), "{error:#}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_replaced_file_is_left_alone_and_noticed() {
        let dir = temp_dir("watch");
        let socket = UapiSocket::bind_in(&dir, "wgt0").unwrap();
        let shutdown = Shutdown::default();
        let (path, identity) = (socket.path().to_owned(), socket.identity);
        let watcher = {
            let shutdown = shutdown.clone();
            thread::spawn(move || watch(&path, identity, &shutdown))
        };
        fs::remove_file(socket.path()).unwrap();
        fs::write(socket.path(), "someone else's").unwrap();
        assert_eq!(shutdown.wait_timeout(Duration::from_secs(10)), Some(Reason::SocketRemoved));
        watcher.join().unwrap();
        let path = socket.path().to_owned();
        drop(socket);
        assert_eq!(fs::read_to_string(&path).unwrap(), "someone else's");
        fs::remove_dir_all(dir).unwrap();
    }

    /// A device on port 51820 that counts the changes it is asked for.
    #[derive(Default)]
    struct Fixed(std::sync::atomic::AtomicUsize);

    impl Control for Fixed {
        fn get(&self, page: &mut dyn FnMut(&DeviceSnapshot) -> io::Result<()>) -> io::Result<()> {
            page(&DeviceSnapshot { listen_port: 51820, ..DeviceSnapshot::default() })
        }

        fn set(&self, _: SetRequest) -> Result<(), UapiError> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        }
    }

    /// `get=1` on a connection of its own, as `wg show` asks.
    fn get(path: &Path) -> DeviceSnapshot {
        let mut stream = UnixStream::connect(path).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.write_all(b"get=1\n\n").unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        parse_get(&answer).unwrap()
    }

    /// Whether the daemon closed `stream` within `timeout` without answering.
    fn closed_within(mut stream: &UnixStream, timeout: Duration) -> bool {
        stream.set_read_timeout(Some(timeout)).unwrap();
        match stream.read(&mut [0u8; 1]) {
            Ok(0) => true,
            Ok(_) => panic!("an incomplete request was answered"),
            Err(error) => !matches!(error.kind(), io::ErrorKind::WouldBlock),
        }
    }

    #[test]
    fn idle_connections_do_not_lock_out_requests() {
        let dir = temp_dir("idle");
        let socket = UapiSocket::bind_in(&dir, "wgt0").unwrap();
        let shutdown = Shutdown::default();
        let device = Arc::new(Fixed::default());
        socket.serve(Arc::clone(&device), &shutdown).unwrap();
        // Twenty clients that connect and say nothing, every other one after half a request:
        // a set whose end has not come yet, and must not be applied when it is closed.
        let idle: Vec<UnixStream> = (0..21)
            .map(|n| {
                let mut stream = UnixStream::connect(socket.path()).unwrap();
                if n % 2 == 0 {
                    stream.write_all(b"set=1\nlisten_port=7\n").unwrap();
                }
                stream
            })
            .collect();
        // All were taken in turn, each closing the oldest once the table was full.
        let displaced = idle.len() - MAX_CONNECTIONS;
        assert!(closed_within(&idle[displaced - 1], Duration::from_secs(10)), "not displaced");
        assert!(!closed_within(&idle[displaced], Duration::from_millis(10)));
        assert_eq!(socket.connections.open(), MAX_CONNECTIONS);

        for _ in 0..3 {
            let started = Instant::now();
            assert_eq!(get(socket.path()).listen_port, 51820);
            assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
        }
        assert!(!closed_within(&idle[20], Duration::from_millis(10)), "the newest was closed");

        // Going down closes the connections still open.
        let connections = socket.connections.clone();
        shutdown.trigger(Reason::Signal(libc::SIGTERM));
        drop(socket);
        assert!(connections.wait_all_closed(Duration::from_secs(10)));
        assert!(closed_within(&idle[20], Duration::from_secs(10)));
        assert_eq!(device.0.load(std::sync::atomic::Ordering::Relaxed), 0, "a cut set applied");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn each_request_has_a_deadline_that_trickling_does_not_extend() {
        let (server, mut client) = UnixStream::pair().unwrap();
        let server = Arc::new(server);
        let connections = Connections::new(1);
        let ticket = connections.admit(&server).unwrap();
        let budget = Duration::from_millis(300);
        let serving =
            thread::spawn(move || serve_within(&server, &ticket, &Fixed::default(), budget));

        // A request in time is answered, and the connection stays open for another.
        client.write_all(b"get=1\n\n").unwrap();
        let mut answer = [0u8; 64];
        let read = client.read(&mut answer).unwrap();
        assert!(answer[..read].starts_with(b"listen_port=51820\n"));
        // The next one, a line every 20 ms, never ends: it is cut off at its own deadline.
        let started = Instant::now();
        client.write_all(b"set=1\n").unwrap();
        while client.write_all(b"fwmark=0\n").is_ok()
            && !closed_within(&client, Duration::from_millis(20))
        {
            assert!(started.elapsed() < Duration::from_secs(10), "never cut off");
        }
        let took = started.elapsed();
        let error = serving.join().unwrap().unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut, "{error}");
        assert!(took >= budget && took < Duration::from_secs(3), "cut off after {took:?}");
        assert_eq!(connections.open(), 0);
    }
}
