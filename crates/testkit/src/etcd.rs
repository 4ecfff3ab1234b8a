//! A throwaway etcd server: on free loopback ports (plain, or with TLS, client certificates
//! and authentication), or inside a namespace on an address of it, with its own data
//! directory; it can be stopped and started again on the same data, and is killed and its
//! data removed when the guard drops.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::pki::{CertFiles, TestCa};
use crate::tools::{require_tool, Skip};
use wgfabric_netns::wait_until;
use wgfabric_netns::{run_command, Netns};

/// A running etcd. Dropping it kills the process and removes its data directory.
#[derive(Debug)]
pub struct Etcd {
    child: Child,
    endpoint: String,
    namespace: Option<String>,
    dir: PathBuf,
    /// etcd's arguments, to start it again on the same ports and data.
    args: Vec<OsString>,
    tls: Option<EtcdTls>,
    auth_enabled: bool,
}

/// The TLS files of an etcd started by [`Etcd::start_secure`].
#[derive(Debug, Clone)]
pub struct EtcdTls {
    /// The CA that signed etcd's certificate and the clients' it accepts.
    pub ca: PathBuf,
    /// A client certificate etcd accepts.
    pub client: CertFiles,
    /// A CA that signed none of etcd's certificates.
    pub stranger_ca: PathBuf,
    /// A client certificate signed by the stranger CA, which etcd refuses.
    pub stranger_client: CertFiles,
}

impl Etcd {
    /// The user of an etcd started by [`Etcd::start_secure`] (etcd's superuser).
    pub const USER: &'static str = "root";
    /// That user's password.
    pub const PASSWORD: &'static str = "correct horse battery staple";

    /// Starts `etcd` on two free loopback ports of this namespace.
    ///
    /// # Errors
    /// [`Skip`] when etcd is not installed outside CI.
    ///
    /// # Panics
    /// As [`Etcd::start_in`].
    pub fn start() -> Result<Self, Skip> {
        Self::launch(None, IpAddr::V4(Ipv4Addr::LOCALHOST), free_port(), free_port(), false)
    }

    /// Starts `etcd` on two free loopback ports with TLS on the client port (a certificate
    /// for 127.0.0.1 from a fresh CA; clients must present one from the same CA) and
    /// authentication enabled for [`Etcd::USER`] with [`Etcd::PASSWORD`].
    ///
    /// # Errors
    /// [`Skip`] when etcd is not installed outside CI.
    ///
    /// # Panics
    /// As [`Etcd::start_in`], and when authentication cannot be enabled.
    pub fn start_secure() -> Result<Self, Skip> {
        let mut etcd =
            Self::launch(None, IpAddr::V4(Ipv4Addr::LOCALHOST), free_port(), free_port(), true)?;
        let password = format!("--new-user-password={}", Self::PASSWORD);
        for args in [
            &["user", "add", Self::USER, &password, "--interactive=false"][..],
            &["auth", "enable"],
        ] {
            if let Err(error) = run_command(etcd.etcdctl().args(args)) {
                panic!("{error}\n{}", etcd.log_text());
            }
        }
        etcd.auth_enabled = true;
        Ok(etcd)
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
        Self::launch(Some(ns), address, 2379, 2380, false)
    }

    fn launch(
        ns: Option<&Netns>,
        address: IpAddr,
        client: u16,
        peer: u16,
        secure: bool,
    ) -> Result<Self, Skip> {
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
        let scheme = if secure { "https" } else { "http" };
        let mut clients = format!("{scheme}://{endpoint}");
        if ns.is_some() && !address.is_loopback() {
            clients.push_str(&format!(",{scheme}://127.0.0.1:{client}"));
        }
        let peer_url = format!("http://127.0.0.1:{peer}");
        let mut args: Vec<OsString> = vec!["--name".into(), "default".into(), "--data-dir".into()];
        args.push(dir.join("data").into());
        for arg in [
            "--listen-client-urls",
            &clients,
            "--advertise-client-urls",
            &format!("{scheme}://{endpoint}"),
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
            "--initial-cluster",
            &format!("default={peer_url}"),
        ] {
            args.push(arg.into());
        }
        let tls = secure.then(|| {
            let (tls, server) = write_pki(&dir);
            for (flag, path) in [
                ("--cert-file", &server.cert),
                ("--key-file", &server.key),
                ("--trusted-ca-file", &tls.ca),
            ] {
                args.push(flag.into());
                args.push(path.into());
            }
            args.push("--client-cert-auth".into());
            tls
        });
        let mut etcd = Self {
            child: spawn(ns.map(Netns::name), &args, &dir),
            endpoint,
            namespace: ns.map(|ns| ns.name().to_owned()),
            dir,
            args,
            tls,
            auth_enabled: false,
        };
        etcd.wait_healthy();
        Ok(etcd)
    }

    /// The client endpoint, `ADDRESS:PORT`.
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// The TLS files, for an etcd started by [`Etcd::start_secure`].
    pub fn tls(&self) -> Option<&EtcdTls> {
        self.tls.as_ref()
    }

    /// `etcdctl` aimed at this etcd (in its namespace, with its TLS files and user).
    pub fn etcdctl(&self) -> Command {
        let mut command = in_namespace(self.namespace.as_deref(), "etcdctl");
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        command.env("ETCDCTL_API", "3").arg(format!("--endpoints={scheme}://{}", self.endpoint));
        if let Some(tls) = &self.tls {
            command.arg("--cacert").arg(&tls.ca);
            command.arg("--cert").arg(&tls.client.cert).arg("--key").arg(&tls.client.key);
        }
        if self.auth_enabled {
            command.arg(format!("--user={}:{}", Self::USER, Self::PASSWORD));
        }
        command
    }

    /// Makes etcd forget every token it handed out, as when they expire: authentication is
    /// disabled and enabled again.
    ///
    /// # Panics
    /// When etcd was not started by [`Etcd::start_secure`], or etcdctl fails.
    pub fn forget_tokens(&self) {
        assert!(self.auth_enabled, "authentication is not enabled");
        for args in [["auth", "disable"], ["auth", "enable"]] {
            run_command(self.etcdctl().args(args)).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    /// Stops etcd (SIGKILL, as a crash would) and keeps its data.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts etcd again after [`Etcd::stop`], on the same ports and data.
    ///
    /// # Panics
    /// When it does not start or never becomes healthy (20 s).
    pub fn start_again(&mut self) {
        self.child = spawn(self.namespace.as_deref(), &self.args, &self.dir);
        self.wait_healthy();
    }

    /// What etcd has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default()
    }

    fn wait_healthy(&mut self) {
        if !wait_until(Duration::from_secs(20), || self.is_healthy()) {
            panic!("etcd did not become healthy:\n{}", self.log_text());
        }
    }

    fn is_healthy(&mut self) -> bool {
        if !matches!(self.child.try_wait(), Ok(None)) {
            panic!("etcd exited:\n{}", self.log_text());
        }
        run_command(self.etcdctl().args(["--dial-timeout", "1s", "endpoint", "health"])).is_ok()
    }
}

/// Starts etcd with `args`, in namespace `ns` if given, logging to `dir/etcd.log`.
fn spawn(ns: Option<&str>, args: &[OsString], dir: &Path) -> Child {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("etcd.log"))
        .expect("opening etcd's log");
    in_namespace(ns, "etcd")
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("sharing etcd's log"))
        .stderr(log)
        .spawn()
        .expect("starting etcd")
}

/// `program`, to run in the namespace called `ns` if given.
fn in_namespace(ns: Option<&str>, program: &str) -> Command {
    match ns {
        Some(name) => {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", name, program]);
            command
        }
        None => Command::new(program),
    }
}

/// Writes a CA, etcd's server certificate, a client certificate, and a stranger CA with a
/// client certificate of its own, into `dir/tls`; returns the clients' files and the
/// server's.
fn write_pki(dir: &Path) -> (EtcdTls, CertFiles) {
    let tls_dir = dir.join("tls");
    std::fs::create_dir_all(&tls_dir).expect("creating the TLS directory");
    let ca = TestCa::new("wgfabric test etcd CA");
    let stranger = TestCa::new("a stranger CA");
    let tls = EtcdTls {
        ca: ca.write_cert(&tls_dir.join("ca.pem")),
        client: ca.client(&tls_dir, "client"),
        stranger_ca: stranger.write_cert(&tls_dir.join("stranger-ca.pem")),
        stranger_client: stranger.client(&tls_dir, "stranger-client"),
    };
    (tls, ca.server(&tls_dir, "server"))
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
