//! A small etcd v3 client over the JSON gateway etcd serves on its client port
//! (`POST /v3/kv/range`, `/v3/kv/put`, `/v3/kv/deleterange`, `/v3/watch`; keys and values in
//! base64, 64-bit numbers as strings), so the controller and agents need neither gRPC nor an
//! async runtime. The paths are those of etcd 3.4 and later.
//!
//! A watch is one long-lived response whose body is a stream of JSON messages;
//! [`WatchStream::next`] decodes them as they arrive. Watches start from a revision, so a
//! caller that reconnects from the last revision it saw plus one misses nothing, unless
//! etcd compacted that history away, which [`WatchMessage::Compacted`] says.

mod http;

use std::net::{SocketAddr, ToSocketAddrs as _};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Deserializer};
use serde_json::json;

use crate::wallclock::monotonic;

/// How long a unary request may take unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an etcd request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The connection failed or timed out.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// etcd answered with an error.
    #[error("HTTP {status}: {message}")]
    Server {
        /// The HTTP status.
        status: u16,
        /// etcd's message.
        message: String,
    },
    /// The answer was not what the gateway sends.
    #[error("malformed answer: {0}")]
    Protocol(String),
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

/// A client of one etcd endpoint.
#[derive(Debug, Clone)]
pub struct Client {
    endpoint: String,
    addr: SocketAddr,
    timeout: Duration,
}

impl Client {
    /// A client of `endpoint` (`HOST:PORT`), resolved once now.
    ///
    /// # Errors
    /// [`Error::Io`] when the name does not resolve.
    pub fn new(endpoint: &str) -> Result<Self, Error> {
        let addr = endpoint.to_socket_addrs()?.next().ok_or_else(|| {
            Error::Io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("`{endpoint}` resolves to no address"),
            ))
        })?;
        Ok(Self { endpoint: endpoint.to_owned(), addr, timeout: DEFAULT_TIMEOUT })
    }

    /// The endpoint as given.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn call<T: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
        request: serde_json::Value,
    ) -> Result<T, Error> {
        let body = serde_json::to_vec(&request).map_err(|e| Error::Protocol(e.to_string()))?;
        let response = http::post(self.addr, &self.endpoint, path, &body, self.timeout)?;
        let status = response.status;
        let body = response.read_to_end(self.timeout)?;
        decode(path, status, &body)
    }

    /// The value of `key`, if it exists.
    ///
    /// # Errors
    /// When the request fails.
    pub fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, Error> {
        let response: RangeResponse = self.call("/v3/kv/range", json!({ "key": b64(key) }))?;
        response.first()
    }

    /// Every key starting with `prefix`, and the revision they were read at.
    ///
    /// # Errors
    /// When the request fails.
    pub fn range_prefix(&self, prefix: &[u8]) -> Result<Range, Error> {
        let request = json!({ "key": b64(prefix), "range_end": b64(&prefix_end(prefix)) });
        let response: RangeResponse = self.call("/v3/kv/range", request)?;
        response.into_range()
    }

    /// Writes `key`; returns the revision of the write.
    ///
    /// # Errors
    /// When the request fails.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<i64, Error> {
        let response: HeaderOnly =
            self.call("/v3/kv/put", json!({ "key": b64(key), "value": b64(value) }))?;
        Ok(response.header.revision)
    }

    /// Deletes `key`; returns how many keys were deleted (0 or 1).
    ///
    /// # Errors
    /// When the request fails.
    pub fn delete(&self, key: &[u8]) -> Result<i64, Error> {
        let response: DeleteResponse =
            self.call("/v3/kv/deleterange", json!({ "key": b64(key) }))?;
        Ok(response.deleted)
    }

    /// Watches `key` (or every key starting with it, when `prefix`) for changes made at
    /// `start_revision` or later.
    ///
    /// # Errors
    /// When the watch cannot be opened.
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
        let body = serde_json::to_vec(&json!({ "create_request": create }))
            .map_err(|e| Error::Protocol(e.to_string()))?;
        let mut response = http::post(self.addr, &self.endpoint, "/v3/watch", &body, self.timeout)?;
        if response.status != 200 {
            let status = response.status;
            let deadline = monotonic() + self.timeout;
            while !response.is_finished() && response.read_some(deadline)? {}
            return Err(server_error(status, &response.body));
        }
        Ok(WatchStream { response })
    }
}

/// An open watch.
#[derive(Debug)]
pub struct WatchStream {
    response: http::Response,
}

impl WatchStream {
    /// The next message, waiting up to `timeout`; `None` when none came in time.
    ///
    /// # Errors
    /// [`Error::Closed`] when the server ended the stream; I/O or protocol errors. The stream
    /// is unusable afterwards: open a new one from the next revision.
    pub fn next(&mut self, timeout: Duration) -> Result<Option<WatchMessage>, Error> {
        let deadline = monotonic() + timeout;
        loop {
            if let Some(message) = next_message(&mut self.response.body)? {
                return Ok(Some(message));
            }
            if !self.response.read_some(deadline)? {
                return Ok(None);
            }
        }
    }
}

/// Takes the first whole message off the front of a watch stream's `body`; `None` while it
/// has not all arrived.
fn next_message(body: &mut Vec<u8>) -> Result<Option<WatchMessage>, Error> {
    let mut values = serde_json::Deserializer::from_slice(body).into_iter::<WatchEnvelope>();
    match values.next() {
        Some(Ok(envelope)) => {
            let used = values.byte_offset();
            body.drain(..used);
            envelope.into_message().map(Some)
        }
        Some(Err(e)) if !e.is_eof() => Err(Error::Protocol(format!("watch stream: {e}"))),
        _ => Ok(None),
    }
}

/// The answer to a unary call to `path`: etcd's error unless the status is 200, else the
/// JSON body as `T`.
fn decode<T: for<'de> Deserialize<'de>>(path: &str, status: u16, body: &[u8]) -> Result<T, Error> {
    if status != 200 {
        return Err(server_error(status, body));
    }
    serde_json::from_slice(body).map_err(|e| Error::Protocol(format!("{path}: {e}")))
}

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

fn unb64(text: &str) -> Result<Vec<u8>, Error> {
    STANDARD.decode(text).map_err(|e| Error::Protocol(format!("base64: {e}")))
}

/// The first key after every key that starts with `prefix`: the prefix with its last byte
/// below 0xff incremented and the rest dropped (`\0` for "to the end" when there is none).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn server_error(status: u16, body: &[u8]) -> Error {
    let message = serde_json::from_slice::<GatewayError>(body)
        .map(|error| error.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(body).trim().to_owned());
    Error::Server { status, message }
}

/// A 64-bit number, which the gateway writes as a string.
fn int64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number {
        Text(String),
        Value(i64),
    }
    match Number::deserialize(deserializer)? {
        Number::Text(text) => text.parse().map_err(serde::de::Error::custom),
        Number::Value(value) => Ok(value),
    }
}

#[derive(Deserialize)]
struct Header {
    #[serde(default, deserialize_with = "int64")]
    revision: i64,
}

#[derive(Deserialize)]
struct HeaderOnly {
    header: Header,
}

#[derive(Deserialize)]
struct RangeResponse {
    header: Header,
    #[serde(default)]
    kvs: Vec<WireKv>,
}

impl RangeResponse {
    /// The first key, for a single-key read.
    fn first(self) -> Result<Option<KeyValue>, Error> {
        self.kvs.into_iter().next().map(WireKv::decode).transpose()
    }

    fn into_range(self) -> Result<Range, Error> {
        let kvs = self.kvs.into_iter().map(WireKv::decode).collect::<Result<_, _>>()?;
        Ok(Range { revision: self.header.revision, kvs })
    }
}

#[derive(Deserialize)]
struct DeleteResponse {
    #[serde(default, deserialize_with = "int64")]
    deleted: i64,
}

#[derive(Deserialize)]
struct WireKv {
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default, deserialize_with = "int64")]
    mod_revision: i64,
}

impl WireKv {
    fn decode(self) -> Result<KeyValue, Error> {
        Ok(KeyValue {
            key: unb64(&self.key)?,
            value: unb64(&self.value)?,
            mod_revision: self.mod_revision,
        })
    }
}

#[derive(Deserialize)]
struct GatewayError {
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct WatchEnvelope {
    result: Option<WatchResult>,
    error: Option<GatewayError>,
}

#[derive(Deserialize)]
struct WatchResult {
    #[serde(default)]
    created: bool,
    #[serde(default)]
    canceled: bool,
    #[serde(default, deserialize_with = "int64")]
    compact_revision: i64,
    #[serde(default)]
    cancel_reason: String,
    #[serde(default)]
    events: Vec<WireEvent>,
}

#[derive(Deserialize)]
struct WireEvent {
    #[serde(default, rename = "type")]
    kind: String,
    kv: WireKv,
}

impl WatchEnvelope {
    fn into_message(self) -> Result<WatchMessage, Error> {
        let Some(result) = self.result else {
            let message = self.error.map_or_else(|| "empty message".into(), |e| e.message);
            return Err(Error::Protocol(format!("watch: {message}")));
        };
        if result.compact_revision > 0 {
            return Ok(WatchMessage::Compacted { revision: result.compact_revision });
        }
        if result.canceled {
            return Ok(WatchMessage::Canceled(result.cancel_reason));
        }
        if result.created && result.events.is_empty() {
            return Ok(WatchMessage::Created);
        }
        let events = result
            .events
            .into_iter()
            .map(|event| Ok(WatchEvent { deleted: event.kind == "DELETE", kv: event.kv.decode()? }))
            .collect::<Result<_, Error>>()?;
        Ok(WatchMessage::Events(events))
    }
}

/// Entry points for the fuzz targets in `fuzz/`: what a response's bytes decode to, without a
/// socket. Built only by `cargo fuzz` (which sets `--cfg fuzzing`).
#[cfg(fuzzing)]
pub mod fuzzing {
    use super::{
        decode, http, next_message, DeleteResponse, Error, HeaderOnly, KeyValue, Range,
        RangeResponse, WatchMessage,
    };

    /// Decodes an HTTP response arriving in `pieces` (each what one read returned; an empty
    /// one is the server closing the connection): the status, the body received, and whether
    /// it ended.
    ///
    /// # Errors
    /// As a call would fail on these bytes.
    pub fn response<'a>(
        pieces: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<(u16, Vec<u8>, bool), Error> {
        http::decode_pieces(pieces)
    }

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

    /// Takes the first whole watch message off the front of a stream's `body`, as
    /// [`super::WatchStream::next`] does; `None` while it has not all arrived.
    ///
    /// # Errors
    /// As `next` would fail on these bytes.
    pub fn watch_message(body: &mut Vec<u8>) -> Result<Option<WatchMessage>, Error> {
        next_message(body)
    }
}

#[cfg(test)]
mod tests;
