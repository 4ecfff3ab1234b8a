//! A small etcd v3 client over the JSON gateway etcd serves on its client port
//! (`POST /v3/kv/range`, `/v3/kv/put`, `/v3/kv/deleterange`, `/v3/watch`; keys and values in
//! base64, 64-bit numbers as strings), so the controller and agents need neither gRPC nor an
//! async runtime. The paths are those of etcd 3.4 and later.
//!
//! ```text
//!  Client ──POST /v3/auth/authenticate──► etcd   a token, when a user is given; signed in
//!         ──POST /v3/kv/* + token ──────►        again when etcd refuses it
//!         ──POST /v3/watch + token ─────►        one long response: JSON messages
//!  WatchStream ◄── channel ◄── reader thread ◄──┘
//! ```
//!
//! HTTP/1.1 and TLS are `ureq`'s and rustls's (module `transport`): connections are verified
//! against the operator's CA only, may present a client certificate, and every answer is
//! bounded in time (unary calls) and size ([`MAX_ANSWER`]).
//!
//! Watches start from a revision, so a caller that reconnects from the last revision it saw
//! plus one misses nothing, unless etcd compacted that history away, which
//! [`WatchMessage::Compacted`] says.

mod auth;
mod tls;
mod transport;
mod watch;
mod wire;

use std::time::Duration;

use serde_json::json;
use zeroize::Zeroizing;

pub use auth::Credentials;
pub use tls::TlsError;
pub use transport::{ClientCertificate, TlsFiles, MAX_ANSWER};
pub use watch::WatchStream;

use auth::Token;
use transport::Transport;
use wire::{
    b64, decode, prefix_end, AuthenticateResponse, DeleteResponse, HeaderOnly, RangeResponse,
};

/// How long a unary request may take unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an etcd request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The endpoint is not `HOST:PORT`.
    #[error("`{0}` is not HOST:PORT")]
    Endpoint(String),
    /// Connecting, sending or receiving failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// etcd did not answer in time.
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// The TLS files could not be used, or the handshake failed.
    #[error("TLS: {0}")]
    Tls(TlsError),
    /// etcd answered with an error.
    #[error("{message} (HTTP {status})")]
    Server {
        /// The HTTP status.
        status: u16,
        /// etcd's message.
        message: String,
    },
    /// etcd refused the user name and password.
    #[error("signing in as `{user}` failed: {message}")]
    Authentication {
        /// The user.
        user: String,
        /// etcd's message.
        message: String,
    },
    /// etcd has authentication enabled, and no user was given.
    #[error("etcd requires a user name and password ({0})")]
    UserRequired(String),
    /// etcd refused the token (expired, or forgotten by a restart) even after signing in
    /// again.
    #[error("etcd refused the token: {0}")]
    Unauthenticated(String),
    /// etcd canceled a watch as it was created (the user may not read the keys, say).
    #[error("watch canceled: {0}")]
    Canceled(String),
    /// An answer, or a watch message, larger than the client accepts.
    #[error("the answer is larger than {limit} bytes; refused")]
    TooLarge {
        /// The bound, [`MAX_ANSWER`].
        limit: usize,
    },
    /// An answer, or a watch message, that is not the JSON the gateway sends.
    #[error("malformed answer: {what}: {cause}")]
    Malformed {
        /// The call (`/v3/kv/range`) or `watch stream`.
        what: String,
        /// What the JSON parser said.
        cause: serde_json::Error,
    },
    /// A key or value that is not base64.
    #[error("malformed answer: base64: {0}")]
    Base64(base64::DecodeError),
    /// etcd reported an error on a watch stream.
    #[error("the watch failed: {0}")]
    WatchFailed(String),
    /// HTTP failed in a way none of the other variants describes.
    #[error("HTTP: {0}")]
    Http(ureq::Error),
    /// The server ended a stream.
    #[error("the server closed the connection")]
    Closed,
}

/// A key and its value as etcd stores them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: Vec<u8>,
    /// The value (empty for a deletion event).
    pub value: Vec<u8>,
    /// The revision that last changed it.
    pub mod_revision: i64,
}

/// The keys under a prefix at one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// The store's revision when it was read.
    pub revision: i64,
    /// The keys, in key order.
    pub kvs: Vec<KeyValue>,
}

/// What a watch stream delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchMessage {
    /// The watch is established.
    Created,
    /// Keys changed.
    Events(Vec<WatchEvent>),
    /// The start revision was compacted: changes from before `revision` are lost; read the
    /// current state and watch again from `revision`.
    Compacted {
        /// The oldest revision still available.
        revision: i64,
    },
    /// etcd canceled the watch.
    Canceled(String),
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// Whether the key was written or deleted.
    pub deleted: bool,
    /// The key, its new value and the revision of the change.
    pub kv: KeyValue,
}

/// How a client reaches etcd beyond its address: TLS, and a user to sign in as.
#[derive(Debug, Clone, Default)]
pub struct Security {
    /// TLS with these files; `None` for plain HTTP.
    pub tls: Option<TlsFiles>,
    /// The user, for an etcd with authentication enabled.
    pub credentials: Option<Credentials>,
}

/// A client of one etcd endpoint. Clones share the connections and the sign-in.
#[derive(Debug, Clone)]
pub struct Client {
    endpoint: String,
    transport: Transport,
    timeout: Duration,
    credentials: Option<Credentials>,
    token: Token,
}

impl Client {
    /// A client of `endpoint` (`HOST:PORT`), secured as `security` says. Nothing is sent
    /// until the first call.
    ///
    /// # Errors
    /// [`Error::Endpoint`] when the endpoint is not `HOST:PORT`; [`Error::Tls`] when a TLS
    /// file cannot be read or holds no certificate or key.
    pub fn new(endpoint: &str, security: &Security) -> Result<Self, Error> {
        let valid = endpoint
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !valid {
            return Err(Error::Endpoint(endpoint.to_owned()));
        }
        Ok(Self {
            endpoint: endpoint.to_owned(),
            transport: Transport::new(endpoint, security.tls.as_ref(), DEFAULT_TIMEOUT)?,
            timeout: DEFAULT_TIMEOUT,
            credentials: security.credentials.clone(),
            token: Token::default(),
        })
    }

    /// The endpoint as given.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Whether the connection is under TLS.
    pub fn is_tls(&self) -> bool {
        self.transport.is_tls()
    }

    /// Runs `call` with the current token (signing in first if there is none). When etcd
    /// refuses the token, signs in again and runs `call` once more.
    fn authorized<T>(&self, call: impl Fn(Option<&str>) -> Result<T, Error>) -> Result<T, Error> {
        let Some(credentials) = &self.credentials else { return call(None) };
        let token = match self.token.current() {
            Some(token) => token,
            None => self.sign_in(credentials)?,
        };
        match call(Some(&token)) {
            Err(Error::Unauthenticated(_)) => {
                self.token.forget(&token);
                let token = self.sign_in(credentials)?;
                call(Some(&token))
            }
            other => other,
        }
    }

    fn sign_in(
        &self,
        credentials: &Credentials,
    ) -> Result<std::sync::Arc<Zeroizing<String>>, Error> {
        const PATH: &str = "/v3/auth/authenticate";
        let (status, answer) = self.transport.post(PATH, &credentials.request_body(), None)?;
        let answer = Zeroizing::new(answer);
        match decode::<AuthenticateResponse>(PATH, status, &answer) {
            Ok(response) => Ok(self.token.set(Zeroizing::new(response.token))),
            Err(Error::Server { message, .. } | Error::Unauthenticated(message)) => {
                Err(Error::Authentication { user: credentials.user().to_owned(), message })
            }
            Err(error) => Err(error),
        }
    }

    fn call<T: for<'de> serde::Deserialize<'de>>(
        &self,
        path: &str,
        request: &serde_json::Value,
    ) -> Result<T, Error> {
        let body = request.to_string().into_bytes();
        self.authorized(|token| {
            let (status, answer) = self.transport.post(path, &body, token)?;
            decode(path, status, &answer)
        })
    }

    /// The value of `key`, if it exists.
    ///
    /// # Errors
    /// When the request fails.
    pub fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, Error> {
        let response: RangeResponse = self.call("/v3/kv/range", &json!({ "key": b64(key) }))?;
        response.first()
    }

    /// Every key starting with `prefix`, and the revision they were read at.
    ///
    /// # Errors
    /// When the request fails.
    pub fn range_prefix(&self, prefix: &[u8]) -> Result<Range, Error> {
        let request = json!({ "key": b64(prefix), "range_end": b64(&prefix_end(prefix)) });
        let response: RangeResponse = self.call("/v3/kv/range", &request)?;
        response.into_range()
    }

    /// Writes `key`; returns the revision of the write.
    ///
    /// # Errors
    /// When the request fails.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<i64, Error> {
        let response: HeaderOnly =
            self.call("/v3/kv/put", &json!({ "key": b64(key), "value": b64(value) }))?;
        Ok(response.header.revision)
    }

    /// Deletes `key`; returns how many keys were deleted (0 or 1).
    ///
    /// # Errors
    /// When the request fails.
    pub fn delete(&self, key: &[u8]) -> Result<i64, Error> {
        let response: DeleteResponse =
            self.call("/v3/kv/deleterange", &json!({ "key": b64(key) }))?;
        Ok(response.deleted)
    }

    /// Watches `key` (or every key starting with it, when `prefix`) for changes made at
    /// `start_revision` or later. Returns once etcd has answered the request; its first
    /// message ([`WatchMessage::Created`]) is the stream's first.
    ///
    /// # Errors
    /// When the watch cannot be opened, or etcd cancels it at once ([`Error::Canceled`]).
    pub fn watch(
        &self,
        key: &[u8],
        prefix: bool,
        start_revision: i64,
    ) -> Result<WatchStream, Error> {
        let mut create = json!({ "key": b64(key), "start_revision": start_revision });
        if prefix {
            create["range_end"] = b64(&prefix_end(key)).into();
        }
        let body = json!({ "create_request": create }).to_string().into_bytes();
        self.authorized(|token| {
            let (agent, stream) = self.transport.open_stream("/v3/watch", &body, token)?;
            let transport = self.transport.clone();
            WatchStream::start(agent, stream, move |e| transport.error(e), self.timeout)
        })
    }
}

/// Entry points for the fuzz targets in `fuzz/`: what an answer's body decodes to, without a
/// socket. Built only by `cargo fuzz` (which sets `--cfg fuzzing`).
#[cfg(fuzzing)]
pub mod fuzzing {
    use super::wire::{decode, next_message, DeleteResponse, HeaderOnly, RangeResponse};
    use super::{Error, KeyValue, Range, WatchMessage};

    /// What each unary call makes of a complete answer: `get`, `range_prefix`, `put` and
    /// `delete`.
    #[allow(clippy::type_complexity)]
    pub fn unary(
        status: u16,
        body: &[u8],
    ) -> (
        Result<Option<KeyValue>, Error>,
        Result<Range, Error>,
        Result<i64, Error>,
        Result<i64, Error>,
    ) {
        let range = || decode::<RangeResponse>("/v3/kv/range", status, body);
        (
            range().and_then(RangeResponse::first),
            range().and_then(RangeResponse::into_range),
            decode::<HeaderOnly>("/v3/kv/put", status, body).map(|r| r.header.revision),
            decode::<DeleteResponse>("/v3/kv/deleterange", status, body).map(|r| r.deleted),
        )
    }

    /// Takes the first whole watch message off the front of a stream's `body`, as the
    /// watch's reader does; `None` while it has not all arrived.
    ///
    /// # Errors
    /// As the reader would fail on these bytes.
    pub fn watch_message(body: &mut Vec<u8>) -> Result<Option<WatchMessage>, Error> {
        next_message(body)
    }
}

#[cfg(test)]
pub(crate) mod tests;
