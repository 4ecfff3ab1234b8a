//! The source of truth that `agent`, `apply` and `rotate` work through, and how they reach
//! an etcd source: TLS files and a user, as etcdctl's `--cacert`, `--cert`, `--key` and
//! `--user` do. The password never comes from the command line, where `ps` would show it.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _};
use clap::Args;
use wgfabric_store::etcd::{ClientCertificate, Credentials, Security, TlsFiles};
use wgfabric_store::store::{self, Store};
use zeroize::Zeroizing;

use super::InventoryArgs;

/// Where `--help` lists the options of [`EtcdArgs`].
const HEADING: &str = "etcd source (TLS and authentication)";

/// The environment variable that may hold the etcd user's password.
const PASSWORD_VARIABLE: &str = "WGFABRIC_ETCD_PASSWORD";

/// The source of truth that `apply` publishes to and `rotate` works through.
#[derive(Debug, Args)]
pub(crate) struct SourceArgs {
    /// The source of truth: a directory, etcd://HOST:PORT[/PREFIX], or etcds://HOST:PORT[/PREFIX]
    /// for etcd over TLS [default: rendered/ beside the inventory].
    #[arg(long, env = "WGFABRIC_SOURCE", value_name = "SRC")]
    source: Option<String>,
    #[command(flatten)]
    pub(crate) etcd: EtcdArgs,
}

impl SourceArgs {
    /// The source given, or the render directory beside `inventory`.
    pub(crate) fn spec(&self, inventory: &InventoryArgs) -> String {
        self.source.clone().unwrap_or_else(|| inventory.rendered_dir().display().to_string())
    }
}

/// How to reach an etcd source: TLS and a user.
#[derive(Debug, Args)]
pub(crate) struct EtcdArgs {
    /// CA certificate (PEM) that etcd's certificate is verified against; required by etcds://
    /// sources. The system's trusted CAs are not used.
    #[arg(long, env = "WGFABRIC_ETCD_CACERT", value_name = "FILE", help_heading = HEADING)]
    etcd_cacert: Option<PathBuf>,
    /// Client certificate (PEM) for an etcd started with --client-cert-auth. etcd's JSON
    /// gateway refuses certificates whose subject has a common name: issue it without one.
    #[arg(long, env = "WGFABRIC_ETCD_CERT", value_name = "FILE", requires = "etcd_key", help_heading = HEADING)]
    etcd_cert: Option<PathBuf>,
    /// Private key (PEM) of --etcd-cert.
    #[arg(long, env = "WGFABRIC_ETCD_KEY", value_name = "FILE", requires = "etcd_cert", help_heading = HEADING)]
    etcd_key: Option<PathBuf>,
    /// User to sign in as, for an etcd with authentication enabled. The password is read
    /// from --etcd-password-file, else from the WGFABRIC_ETCD_PASSWORD environment variable.
    #[arg(long, env = "WGFABRIC_ETCD_USER", value_name = "NAME", help_heading = HEADING)]
    etcd_user: Option<String>,
    /// File holding the password of --etcd-user on its first line (keep it mode 0600).
    #[arg(long, env = "WGFABRIC_ETCD_PASSWORD_FILE", value_name = "FILE", requires = "etcd_user")]
    etcd_password_file: Option<PathBuf>,
}

impl EtcdArgs {
    /// Opens the store `spec` names, reaching etcd as the options say.
    pub(crate) fn open(&self, spec: &str) -> anyhow::Result<Box<dyn Store>> {
        Ok(store::open(spec, &self.security()?)?)
    }

    fn security(&self) -> anyhow::Result<Security> {
        let client = match (&self.etcd_cert, &self.etcd_key) {
            (Some(cert), Some(key)) => {
                Some(ClientCertificate { cert: cert.clone(), key: key.clone() })
            }
            _ => None,
        };
        let tls = match (&self.etcd_cacert, client) {
            (Some(ca), client) => Some(TlsFiles { ca: ca.clone(), client }),
            (None, None) => None,
            (None, Some(_)) => bail!("--etcd-cert needs --etcd-cacert, the CA to verify etcd with"),
        };
        let credentials = match &self.etcd_user {
            None => None,
            Some(user) if user.contains(':') => bail!(
                "--etcd-user takes a user name only; give the password with \
                 --etcd-password-file or {PASSWORD_VARIABLE}"
            ),
            Some(user) => Some(Credentials::new(user, self.password(user)?)),
        };
        Ok(Security { tls, credentials })
    }

    /// The password of `user`: from the file, else from the environment.
    fn password(&self, user: &str) -> anyhow::Result<Zeroizing<String>> {
        if let Some(path) = &self.etcd_password_file {
            return read_password(path);
        }
        match std::env::var(PASSWORD_VARIABLE) {
            Ok(password) => Ok(Zeroizing::new(password)),
            Err(std::env::VarError::NotUnicode(_)) => bail!("{PASSWORD_VARIABLE} is not UTF-8"),
            Err(std::env::VarError::NotPresent) => bail!(
                "--etcd-user {user} needs a password: --etcd-password-file FILE, or \
                 {PASSWORD_VARIABLE} in the environment"
            ),
        }
    }
}

/// The password on the first line of `path`, without its line ending.
fn read_password(path: &Path) -> anyhow::Result<Zeroizing<String>> {
    let bytes = Zeroizing::new(
        std::fs::read(path)
            .with_context(|| format!("reading the etcd password from {}", path.display()))?,
    );
    let line = bytes.split(|&byte| byte == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let password = std::str::from_utf8(line)
        .map_err(|_| anyhow!("{}: the etcd password is not UTF-8", path.display()))?;
    if password.is_empty() {
        bail!("{}: the etcd password file is empty", path.display());
    }
    Ok(Zeroizing::new(password.to_owned()))
}
