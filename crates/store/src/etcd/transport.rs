//! HTTP/1.1 to etcd's gateway through `ureq`, over TLS (rustls with the ring provider) when
//! the endpoint asks for it: the files that secure the connection, the time and size bounds
//! of every answer, and the translation of what fails into words an operator can act on.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};
use ureq::{Agent, Body, Timeout};
use zeroize::Zeroizing;

use super::tls::TlsError;
use super::{wire, Error};

/// The largest answer accepted: a unary body, or one message of a watch. Ranges over every
/// host of a large fleet fit many times over; a broken or hostile server cannot make the
/// client buffer more.
pub const MAX_ANSWER: usize = 64 * 1024 * 1024;

/// The files that put a connection under TLS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificates of the authorities that may sign etcd's certificate
    /// (`--trusted-ca-file` on the etcd side).
    pub ca: PathBuf,
    /// A client certificate, for an etcd started with `--client-cert-auth`.
    pub client: Option<ClientCertificate>,
}

/// A client certificate and its key, both PEM.
#[derive(Debug, Clone)]
pub struct ClientCertificate {
    /// The certificate, optionally followed by its intermediates.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The HTTP side of a client: one agent for unary calls, whose connections are kept alive
/// between calls, and the configuration each watch starts its own agent from.
#[derive(Debug, Clone)]
pub(super) struct Transport {
    /// `http://HOST:PORT` or `https://HOST:PORT`.
    base: String,
    unary: Agent,
    watch: ureq::config::Config,
    /// The host part of the endpoint, and the TLS files, for messages.
    host: String,
    tls: Option<TlsFiles>,
}

impl Transport {
    /// The transport to `endpoint` (`HOST:PORT`), plain or under `tls`; unary calls are
    /// bounded by `timeout`, connecting to a watch too.
    ///
    /// # Errors
    /// [`Error::Tls`] when a TLS file cannot be read or holds no certificate or key.
    pub(super) fn new(
        endpoint: &str,
        tls: Option<&TlsFiles>,
        timeout: Duration,
    ) -> Result<Self, Error> {
        let tls_config = tls.map(tls_config).transpose()?;
        let config = |unary: bool| {
            let mut builder = Agent::config_builder()
                .http_status_as_error(false)
                .proxy(None)
                .max_redirects(0)
                .user_agent(concat!("wgfabric/", env!("CARGO_PKG_VERSION")))
                .timeout_connect(Some(timeout))
                .timeout_send_request(Some(timeout))
                .timeout_send_body(Some(timeout))
                .timeout_recv_response(Some(timeout))
                // The body of a watch is open-ended; a unary answer arrives whole in time.
                .timeout_recv_body(unary.then_some(timeout));
            if let Some(tls_config) = &tls_config {
                builder = builder.tls_config(tls_config.clone());
            }
            builder.build()
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        Ok(Self {
            base: format!("{scheme}://{endpoint}"),
            unary: config(true).new_agent(),
            watch: config(false),
            host: endpoint.rsplit_once(':').map_or(endpoint, |(host, _)| host).to_owned(),
            tls: tls.cloned(),
        })
    }

    pub(super) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Posts a JSON `body` to `path` and reads the whole answer: its status and body.
    pub(super) fn post(
        &self,
        path: &str,
        body: &[u8],
        token: Option<&str>,
    ) -> Result<(u16, Vec<u8>), Error> {
        let mut response = self.send(&self.unary, path, body, token)?;
        let status = response.status().as_u16();
        let body = read_limited(response.body_mut()).map_err(|e| self.error(e))?;
        Ok((status, body))
    }

    /// Posts a JSON `body` to `path` on an agent of its own, and returns that agent (whose
    /// `shutdown` ends the stream from another thread) and the body as it arrives.
    ///
    /// # Errors
    /// etcd's error when the status is not 200.
    pub(super) fn open_stream(
        &self,
        path: &str,
        body: &[u8],
        token: Option<&str>,
    ) -> Result<(Agent, impl Read + Send + 'static), Error> {
        let agent = self.watch.new_agent();
        let mut response = self.send(&agent, path, body, token)?;
        let status = response.status().as_u16();
        if status != 200 {
            let body = read_limited(response.body_mut()).map_err(|e| self.error(e))?;
            return Err(wire::server_error(status, &body));
        }
        Ok((agent, response.into_body().into_reader()))
    }

    fn send(
        &self,
        agent: &Agent,
        path: &str,
        body: &[u8],
        token: Option<&str>,
    ) -> Result<ureq::http::Response<Body>, Error> {
        let mut request =
            agent.post(format!("{}{path}", self.base)).content_type("application/json");
        if let Some(token) = token {
            request = request.header("Authorization", token);
        }
        request.send(body).map_err(|e| match e {
            // Hanging up on a fresh TLS connection is how etcd refuses a client certificate
            // when its alert loses the race with our request.
            ureq::Error::Io(e) if self.tls.is_some() && is_hang_up(&e) => {
                Error::Tls(TlsError::ClientCertificate { hung_up: true, client: self.client() })
            }
            e => self.error(e),
        })
    }

    /// The client certificate, if one is given.
    fn client(&self) -> Option<PathBuf> {
        self.tls.as_ref().and_then(|tls| tls.client.as_ref()).map(|client| client.cert.clone())
    }

    /// What went wrong, in an operator's words.
    pub(super) fn error(&self, error: ureq::Error) -> Error {
        match error {
            ureq::Error::Io(e) => match e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>())
            {
                Some(tls) => self.tls_error(tls.clone()),
                None => Error::Io(e),
            },
            ureq::Error::Rustls(e) => self.tls_error(e),
            ureq::Error::Timeout(Timeout::Connect | Timeout::Resolve) => {
                Error::Timeout("connecting")
            }
            ureq::Error::Timeout(_) => Error::Timeout("waiting for the answer"),
            ureq::Error::HostNotFound => Error::Io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the host name does not resolve",
            )),
            ureq::Error::BodyExceedsLimit(_) | ureq::Error::LargeResponseHeader(..) => {
                Error::TooLarge { limit: MAX_ANSWER }
            }
            other => Error::Http(other),
        }
    }

    fn tls_error(&self, error: rustls::Error) -> Error {
        let ca = self.tls.as_ref().map_or_else(PathBuf::new, |tls| tls.ca.clone());
        Error::Tls(TlsError::from_rustls(error, &ca, &self.host, self.client().as_deref()))
    }
}

/// Whether the server closed or reset the connection.
fn is_hang_up(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    matches!(error.kind(), BrokenPipe | ConnectionReset | ConnectionAborted | UnexpectedEof)
}

/// Reads a body whole, refusing one larger than [`MAX_ANSWER`] without buffering it.
fn read_limited(body: &mut Body) -> Result<Vec<u8>, ureq::Error> {
    body.with_config().limit(MAX_ANSWER as u64).read_to_vec()
}

/// The TLS configuration `tls` describes: only its CA is trusted, never the system's.
fn tls_config(tls: &TlsFiles) -> Result<TlsConfig, Error> {
    let roots = certificates(&tls.ca)?;
    let client = match &tls.client {
        None => None,
        Some(client) => {
            let chain = certificates(&client.cert)?;
            Some(ClientCert::new_with_certs(&chain, private_key(&client.key)?))
        }
    };
    Ok(TlsConfig::builder()
        .root_certs(RootCerts::Specific(Arc::new(roots)))
        .client_cert(client)
        .build())
}

/// Reads a file that may hold a secret into a buffer wiped when dropped.
fn read_pem(path: &Path) -> Result<Zeroizing<Vec<u8>>, Error> {
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|cause| Error::Tls(TlsError::Read { path: path.to_owned(), cause }))
}

fn certificates(path: &Path) -> Result<Vec<Certificate<'static>>, Error> {
    let pem = read_pem(path)?;
    let mut certificates = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(certificate)) => certificates.push(certificate),
            Ok(_) => {}
            Err(cause) => return Err(Error::Tls(TlsError::Pem { path: path.to_owned(), cause })),
        }
    }
    if certificates.is_empty() {
        let what = "certificate";
        return Err(Error::Tls(TlsError::Missing { path: path.to_owned(), what }));
    }
    Ok(certificates)
}

fn private_key(path: &Path) -> Result<PrivateKey<'static>, Error> {
    let pem = read_pem(path)?;
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::PrivateKey(key)) => return Ok(key),
            Ok(_) => {}
            Err(cause) => return Err(Error::Tls(TlsError::Pem { path: path.to_owned(), cause })),
        }
    }
    Err(Error::Tls(TlsError::Missing { path: path.to_owned(), what: "private key" }))
}
