//! A throwaway etcd server: on free loopback ports, or inside a namespace on an address of
//! it, with its own data directory; killed and its data removed when the guard drops.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::netns::{run_command, Netns};
use crate::poll::wait_until;
use crate::tools::{require_tool, Skip};

/// A running etcd. Dropping it kills the process and removes its data directory.
#[derive(Debug)]
pub struct Etcd {
    child: Child,
    endpoint: String,
    namespace: Option<String>,
    dir: PathBuf,
}

impl Etcd {
    /// Starts `etcd` on two free loopback ports of this namespace.
    ///
    /// # Errors
    /// [`Skip`] when etcd is not installed outside CI.
    ///
    /// # Panics
    /// As [`Etcd::start_in`].
    pub fn start() -> Result<Self, Skip> {
        Self::launch(None, IpAddr::V4(Ipv4Addr::LOCALHOST), free_port(), free_port())
    }

    /// Starts `etcd` inside `ns`, serving clients on `address` (an address of the namespace)
    /// and its loopback, on the standard ports; reach it from commands run in `ns` or in
    /// namespaces routed to `address`.
    ///
    /// # Errors
    /// [`Skip`] when etcd is not installed outside CI.
    ///
    /// # Panics
    /// When it does not start or never becomes healthy (20 s); the message includes its log.
    pub fn start_in(ns: &Netns, address: IpAddr) -> Result<Self, Skip> {
        Self::launch(Some(ns), address, 2379, 2380)
    }

    fn launch(ns: Option<&Netns>, address: IpAddr, client: u16, peer: u16) -> Result<Self, Skip> {
        require_tool("etcd")?;
        require_tool("etcdctl")?;
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("wgfabric-etcd-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating etcd's directory");
        let host = match address {
            IpAddr::V6(v6) => format!("[{v6}]"),
            IpAddr::V4(v4) => v4.to_string(),
        };
        let endpoint = format!("{host}:{client}");
        let mut clients = format!("http://{endpoint}");
        if ns.is_some() && !address.is_loopback() {
            clients.push_str(&format!(",http://127.0.0.1:{client}"));
        }
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = File::create(dir.join("etcd.log")).expect("creating etcd's log");
        let mut command = match ns {
            Some(ns) => ns.command("etcd"),
            None => Command::new("etcd"),
        };
        let child = command
            .args(["--name", "default", "--data-dir"])
            .arg(dir.join("data"))
            .args([
                "--listen-client-urls",
                &clients,
                "--advertise-client-urls",
                &format!("http://{endpoint}"),
            ])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("default={peer_url}")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("sharing etcd's log"))
            .stderr(log)
            .spawn()
            .expect("starting etcd");
        let mut etcd = Self { child, endpoint, namespace: ns.map(|ns| ns.name().to_owned()), dir };
        if !wait_until(Duration::from_secs(20), || etcd.is_healthy()) {
            panic!("etcd did not become healthy:\n{}", etcd.log_text());
        }
        Ok(etcd)
    }

    /// The client endpoint, `ADDRESS:PORT`.
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// What etcd has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default()
    }

    fn is_healthy(&mut self) -> bool {
        if !matches!(self.child.try_wait(), Ok(None)) {
            panic!("etcd exited:\n{}", self.log_text());
        }
        let mut command = match &self.namespace {
            Some(name) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", name, "etcdctl"]);
                command
            }
            None => Command::new("etcdctl"),
        };
        command
            .args(["--endpoints", &self.endpoint, "--dial-timeout", "1s", "endpoint", "health"])
            .env("ETCDCTL_API", "3");
        run_command(&mut command).is_ok()
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
