//! A throwaway etcd server on loopback: its own data directory and ports, killed and its data
//! removed when the guard drops.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::poll::wait_until;
use crate::tools::{require_tool, Skip};

/// A running etcd. Dropping it kills the process and removes its data directory.
#[derive(Debug)]
pub struct Etcd {
    child: Child,
    client: SocketAddr,
    dir: PathBuf,
}

impl Etcd {
    /// Starts `etcd` with a fresh data directory on two free loopback ports and waits (20 s at
    /// most) until it reports itself healthy.
    ///
    /// # Errors
    /// [`Skip`] when etcd is not installed outside CI.
    ///
    /// # Panics
    /// When it does not start or never becomes healthy; the message includes its log.
    pub fn start() -> Result<Self, Skip> {
        require_tool("etcd")?;
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("wgfabric-etcd-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating etcd's directory");
        let (client, peer) = (free_port(), free_port());
        let url = |port: u16| format!("http://127.0.0.1:{port}");
        let log = File::create(dir.join("etcd.log")).expect("creating etcd's log");
        let child = Command::new("etcd")
            .args(["--name", "default", "--data-dir"])
            .arg(dir.join("data"))
            .args(["--listen-client-urls", &url(client), "--advertise-client-urls", &url(client)])
            .args(["--listen-peer-urls", &url(peer), "--initial-advertise-peer-urls", &url(peer)])
            .args(["--initial-cluster", &format!("default={}", url(peer))])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("sharing etcd's log"))
            .stderr(log)
            .spawn()
            .expect("starting etcd");
        let mut etcd = Self { child, client: SocketAddr::from((Ipv4Addr::LOCALHOST, client)), dir };
        if !wait_until(Duration::from_secs(20), || etcd.is_healthy()) {
            panic!("etcd did not become healthy:\n{}", etcd.log_text());
        }
        Ok(etcd)
    }

    /// The client endpoint, `127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        self.client.to_string()
    }

    /// What etcd has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default()
    }

    fn is_healthy(&mut self) -> bool {
        if !matches!(self.child.try_wait(), Ok(None)) {
            panic!("etcd exited:\n{}", self.log_text());
        }
        let Ok(mut conn) = TcpStream::connect_timeout(&self.client, Duration::from_secs(1)) else {
            return false;
        };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
        let request =
            format!("GET /health HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.client);
        let mut answer = String::new();
        conn.write_all(request.as_bytes()).is_ok()
            && conn.read_to_string(&mut answer).is_ok()
            && answer.contains("\"health\":\"true\"")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- etcd log ---\n{}", self.log_text());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding a free port");
    listener.local_addr().expect("a bound socket has an address").port()
}
