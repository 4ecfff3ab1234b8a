//! The userspace API socket's life: `/var/run/wireguard/IFNAME.sock`, bound once, watched,
//! served by one thread per connection, and removed on the way out.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::connection;
use crate::control::Control;
use crate::shutdown::{Reason, Shutdown};

/// Where `wg(8)` looks for userspace implementations.
pub(crate) const SOCKET_DIR: &str = "/var/run/wireguard";

/// How often the socket file is checked for removal.
const WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// How long a connection may sit idle before it is dropped.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The bound socket. Dropping it removes the file, unless something else has replaced it.
#[derive(Debug)]
pub(crate) struct UapiSocket {
    listener: UnixListener,
    path: PathBuf,
    identity: (u64, u64),
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
        Ok(Self { listener, path, identity: (metadata.dev(), metadata.ino()) })
    }

    /// The socket's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Serves `control` from a background thread (one more thread per connection), and
    /// triggers `shutdown` when the socket file is removed or replaced.
    ///
    /// # Errors
    /// When a thread cannot be started.
    pub(crate) fn serve<C>(&self, control: Arc<C>, shutdown: &Shutdown) -> anyhow::Result<()>
    where
        C: Control + ?Sized + 'static,
    {
        let listener = self.listener.try_clone().context("sharing the listening socket")?;
        let accept_shutdown = shutdown.clone();
        thread::Builder::new()
            .name("uapi-accept".into())
            .spawn(move || accept_loop(&listener, &control, &accept_shutdown))
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
    shutdown: &Shutdown,
) {
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(stream) => stream,
            Err(error) => {
                // Typically out of descriptors: back off rather than spin.
                tracing::warn!(%error, "accepting a userspace API connection failed");
                if shutdown.wait_timeout(Duration::from_millis(100)).is_some() {
                    return;
                }
                continue;
            }
        };
        let control = Arc::clone(control);
        let spawned = thread::Builder::new().name("uapi-conn".into()).spawn(move || {
            if let Err(error) = serve_stream(&stream, &*control) {
                tracing::debug!(%error, "userspace API connection ended with an error");
            }
        });
        if let Err(error) = spawned {
            tracing::warn!(%error, "could not start a userspace API connection thread");
        }
    }
}

fn serve_stream<C: Control + ?Sized>(stream: &UnixStream, control: &C) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    stream.set_write_timeout(Some(IDLE_TIMEOUT))?;
    connection::serve(io::BufReader::new(stream), stream, control)
}

#[cfg(test)]
mod tests {
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
}
