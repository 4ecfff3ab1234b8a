//! Why a connection to etcd could not be secured, in words an operator can act on: the files
//! that did not load, and what rustls's errors and etcd's alerts mean for this client.

use std::path::{Path, PathBuf};

use rustls::{AlertDescription, CertificateError};

/// What went wrong with TLS.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate or key file could not be read.
    #[error("{}: {cause}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        cause: std::io::Error,
    },
    /// A certificate or key file that is not PEM.
    #[error("{}: {}", path.display(), pem_problem(cause))]
    Pem {
        /// The file.
        path: PathBuf,
        /// What the PEM parser said.
        cause: ureq::Error,
    },
    /// A file without the certificate or key it should hold.
    #[error("{}: no PEM {what} in it", path.display())]
    Missing {
        /// The file.
        path: PathBuf,
        /// `certificate` or `private key`.
        what: &'static str,
    },
    /// etcd's certificate is not signed by the CA.
    #[error("etcd's certificate is not signed by the CA in {}", ca.display())]
    UnknownIssuer {
        /// The CA file.
        ca: PathBuf,
    },
    /// etcd's certificate does not name the host connected to.
    #[error(
        "etcd's certificate is not valid for {host} (not among its subject alternative names)"
    )]
    WrongName {
        /// The host of the endpoint.
        host: String,
    },
    /// etcd's certificate has expired.
    #[error("etcd's certificate has expired")]
    Expired,
    /// etcd's certificate is not valid yet.
    #[error("etcd's certificate is not valid yet (is this host's clock right?)")]
    NotValidYet,
    /// etcd's certificate fails verification for another reason.
    #[error("etcd's certificate does not verify against the CA in {}", ca.display())]
    Unverified {
        /// The CA file.
        ca: PathBuf,
        /// What rustls said.
        cause: CertificateError,
    },
    /// etcd refuses the client certificate, or wants one: it said so with an alert, or
    /// (`hung_up`) closed a fresh connection, which is how it refuses when its alert loses
    /// the race with the request.
    #[error("{}", client_refusal(*hung_up, client.as_deref()))]
    ClientCertificate {
        /// Whether etcd hung up instead of saying why.
        hung_up: bool,
        /// The client certificate given, if any.
        client: Option<PathBuf>,
    },
    /// etcd ended the handshake with another alert.
    #[error("etcd ended the handshake (TLS alert {})", u8::from(*.0))]
    Alert(AlertDescription),
    /// No TLS version or cipher suite in common.
    #[error("etcd and this client share no TLS version or cipher suite")]
    Incompatible,
    /// Another TLS failure.
    #[error(transparent)]
    Other(rustls::Error),
}

impl TlsError {
    /// What `error` means for a client that trusts the CA in `ca`, connecting to `host` with
    /// the client certificate `client`.
    pub(super) fn from_rustls(
        error: rustls::Error,
        ca: &Path,
        host: &str,
        client: Option<&Path>,
    ) -> Self {
        match error {
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
                Self::UnknownIssuer { ca: ca.to_owned() }
            }
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ) => Self::WrongName { host: host.to_owned() },
            rustls::Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. },
            ) => Self::Expired,
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
            ) => Self::NotValidYet,
            rustls::Error::InvalidCertificate(cause) => {
                Self::Unverified { ca: ca.to_owned(), cause }
            }
            rustls::Error::AlertReceived(
                AlertDescription::CertificateRequired
                | AlertDescription::BadCertificate
                | AlertDescription::UnknownCA
                | AlertDescription::CertificateUnknown,
            ) => Self::ClientCertificate { hung_up: false, client: client.map(Path::to_owned) },
            rustls::Error::AlertReceived(alert) => Self::Alert(alert),
            rustls::Error::NoApplicationProtocol | rustls::Error::PeerIncompatible(_) => {
                Self::Incompatible
            }
            other => Self::Other(other),
        }
    }
}

/// What is wrong with the client certificate when etcd wants one: sure when etcd said so,
/// a likely cause when it hung up.
fn client_refusal(hung_up: bool, client: Option<&Path>) -> String {
    let (ended, require, refuse) = if hung_up {
        ("hung up on the connection", "may require", "may refuse")
    } else {
        ("ended the handshake", "requires", "refuses")
    };
    match client {
        None => format!("etcd {ended}: it {require} a client certificate, and none was given"),
        Some(cert) => format!(
            "etcd {ended}: it {refuse} the client certificate in {} (is it signed by a CA etcd \
             trusts?)",
            cert.display()
        ),
    }
}

fn pem_problem(error: &ureq::Error) -> String {
    match error {
        ureq::Error::Pem(_) => "malformed PEM".into(),
        other => other.to_string(),
    }
}
