//! The exporter's scrape: every userspace API socket in a directory is asked `get=1` and the
//! answers become the families of [`crate::wireguard`]. wgfabricd, wireguard-go and
//! boringtun all serve that socket, so one exporter watches all of them.
//!
//! Sockets are found afresh at each scrape, so interfaces that come and go need no restart.
//! A socket that does not answer within [`SOCKET_TIMEOUT`] (a stale file left by a killed
//! daemon, a hung process) shows as `wgfabric_uapi_up 0` rather than failing the scrape.

use std::io;
use std::os::unix::fs::FileTypeExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use wgfabric_proto::uapi::DeviceSnapshot;
use wgfabric_uapi::Device;

use crate::exposition::render;
use crate::wireguard::{families, FriendlyNames, Interface};

/// How long one socket may take to take the request and answer it, in all.
pub const SOCKET_TIMEOUT: Duration = Duration::from_secs(2);

/// Scrapes the sockets of one directory.
#[derive(Debug, Clone)]
pub struct Exporter {
    socket_dir: PathBuf,
    names: FriendlyNames,
}

/// What one scrape produced.
#[derive(Debug)]
pub struct Scrape {
    /// The metrics, in the text format.
    pub text: String,
    /// Every interface whose socket was found, sorted.
    pub interfaces: Vec<String>,
    /// The interfaces whose socket did not answer, with why.
    pub failed: Vec<(String, io::Error)>,
}

impl Exporter {
    /// An exporter of the sockets in `socket_dir`, labelling peers with `names`.
    pub fn new(socket_dir: impl Into<PathBuf>, names: FriendlyNames) -> Self {
        Self { socket_dir: socket_dir.into(), names }
    }

    /// Asks every socket and renders the answers; `now` is the wall-clock time since the Unix
    /// epoch. A missing directory means no interface.
    ///
    /// # Errors
    /// When the directory exists but cannot be listed.
    pub fn scrape(&self, now: Duration) -> io::Result<Scrape> {
        let sockets = find_sockets(&self.socket_dir)?;
        let answers: Vec<(String, io::Result<DeviceSnapshot>)> =
            sockets.into_iter().map(|(name, path)| (name, query(&path))).collect();
        let interfaces: Vec<Interface<'_>> = answers
            .iter()
            .map(|(name, answer)| Interface {
                name,
                snapshot: answer.as_ref().ok(),
                counters: None,
            })
            .collect();
        let text = render(&families(&interfaces, &self.names, now));
        let interfaces = answers.iter().map(|(name, _)| name.clone()).collect();
        let failed = answers
            .into_iter()
            .filter_map(|(name, answer)| answer.err().map(|error| (name, error)))
            .collect();
        Ok(Scrape { text, interfaces, failed })
    }
}

/// The `NAME.sock` sockets in `dir`, sorted by interface name.
fn find_sockets(dir: &Path) -> io::Result<Vec<(String, PathBuf)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
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

/// Asks one userspace API socket for its device (`get=1`).
///
/// # Errors
/// When the socket does not answer in time, or answers with an errno or malformed text
/// ([`io::ErrorKind::InvalidData`]).
pub fn query(path: &Path) -> io::Result<DeviceSnapshot> {
    Ok(Device::at(path.to_owned()).with_timeout(SOCKET_TIMEOUT).get()?)
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::os::unix::net::UnixListener;

    use wgfabric_proto::keys::PrivateKey;
    use wgfabric_proto::uapi::{format_get, PeerSnapshot, GET_REQUEST};

    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("wgfabric-metrics-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Serves one `get=1` with `answer`, keeping the connection open afterwards as daemons do.
    fn fake_daemon(path: &Path, answer: String) -> std::thread::JoinHandle<()> {
        let listener = UnixListener::bind(path).unwrap();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; GET_REQUEST.len()];
            stream.read_exact(&mut request).unwrap();
            assert_eq!(&request, GET_REQUEST.as_bytes());
            stream.write_all(answer.as_bytes()).unwrap();
            // Hold the connection until the client has gone.
            let _ = stream.read(&mut [0u8; 1]);
        })
    }

    #[test]
    fn every_socket_is_scraped_and_silent_ones_are_reported() {
        let dir = temp_dir("scrape");
        let mut snapshot = DeviceSnapshot {
            private_key: Some(PrivateKey::from_bytes([1; 32])),
            listen_port: 51820,
            ..DeviceSnapshot::default()
        };
        let peer_key = PrivateKey::from_bytes([2; 32]).public_key();
        let mut peer = PeerSnapshot::new(peer_key);
        peer.tx_bytes = 1234;
        snapshot.peers.push(peer);
        let daemon = fake_daemon(&dir.join("wg0.sock"), format_get(&snapshot));
        // A stale socket nobody listens on, and files that are not sockets.
        drop(UnixListener::bind(dir.join("wg1.sock")).unwrap());
        std::fs::write(dir.join("wg2.sock"), "").unwrap();
        std::fs::write(dir.join("notes.txt"), "").unwrap();

        let names = FriendlyNames::from([(peer_key, "laptop-ana".to_owned())]);
        let scrape = Exporter::new(&dir, names).scrape(Duration::from_secs(1_700_000_000)).unwrap();
        daemon.join().unwrap();
        assert!(scrape.text.contains(&format!(
            "wireguard_sent_bytes_total{{interface=\"wg0\",public_key=\"{peer_key}\",friendly_name=\"laptop-ana\"}} 1234\n"
        )), "{}", scrape.text);
        assert!(scrape.text.contains("wgfabric_uapi_up{interface=\"wg0\"} 1\n"));
        assert!(scrape.text.contains("wgfabric_uapi_up{interface=\"wg1\"} 0\n"));
        assert!(!scrape.text.contains("wg2") && !scrape.text.contains("notes"));
        let private = PrivateKey::from_bytes([1; 32]);
        for secret in [private.to_hex_secret(), private.to_base64_secret()] {
            assert!(!scrape.text.contains(&secret), "the private key leaked");
        }
        assert_eq!(scrape.interfaces, ["wg0", "wg1"]);
        assert_eq!(scrape.failed.len(), 1);
        assert_eq!(scrape.failed[0].0, "wg1");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_socket_that_trickles_its_answer_is_given_up_at_the_deadline() {
        let dir = temp_dir("trickle");
        let path = dir.join("wg0.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let daemon = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            // A byte every 50 ms, until the exporter hangs up.
            for byte in "listen_port=51820\n".bytes().cycle() {
                if stream.write_all(&[byte]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let started = std::time::Instant::now();
        let error = query(&path).unwrap_err();
        let took = started.elapsed();
        daemon.join().unwrap();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut, "{error}");
        assert!(took >= SOCKET_TIMEOUT && took < SOCKET_TIMEOUT * 2, "gave up after {took:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn errno_answers_and_missing_directories() {
        let dir = temp_dir("errno");
        let path = dir.join("wg0.sock");
        let daemon = fake_daemon(&path, "errno=-5\n\n".to_owned());
        let error = query(&path).unwrap_err();
        daemon.join().unwrap();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        let empty = Exporter::new(dir.join("absent"), FriendlyNames::new()).scrape(Duration::ZERO);
        assert_eq!(empty.unwrap().text, "");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
