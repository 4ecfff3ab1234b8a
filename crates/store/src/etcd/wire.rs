//! What the JSON gateway sends and expects: keys and values in base64, 64-bit numbers as
//! strings, errors as `{"message": ...}`, and a watch as a stream of JSON messages. Pure
//! decoding; nothing here touches a socket.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Deserializer};

use super::{Error, KeyValue, Range, WatchEvent, WatchMessage};

/// The answer to a unary call to `path`: etcd's error unless the status is 200, else the
/// JSON body as `T`.
pub(super) fn decode<T: for<'de> Deserialize<'de>>(
    path: &str,
    status: u16,
    body: &[u8],
) -> Result<T, Error> {
    if status != 200 {
        return Err(server_error(status, body));
    }
    serde_json::from_slice(body).map_err(|cause| Error::Malformed { what: path.to_owned(), cause })
}

/// etcd's error: its message, or the body's text when it is not the gateway's JSON.
/// Rejected tokens (gRPC `Unauthenticated`, HTTP 401) are [`Error::Unauthenticated`], so
/// that the client signs in again.
pub(super) fn server_error(status: u16, body: &[u8]) -> Error {
    let message = serde_json::from_slice::<GatewayError>(body)
        .map(|error| error.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(body).trim().to_owned());
    match status {
        401 => Error::Unauthenticated(message),
        _ if is_user_required(&message) => Error::UserRequired(message),
        _ => Error::Server { status, message },
    }
}

/// Whether etcd said that it needs a user: what it answers a call without a token when
/// authentication is enabled.
pub(super) fn is_user_required(message: &str) -> bool {
    message.ends_with("user name is empty")
}

pub(super) fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

fn unb64(text: &str) -> Result<Vec<u8>, Error> {
    STANDARD.decode(text).map_err(Error::Base64)
}

/// The first key after every key that starts with `prefix`: the prefix with its last byte
/// below 0xff incremented and the rest dropped (`\0` for "to the end" when there is none).
pub(super) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
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
pub(super) struct Header {
    #[serde(default, deserialize_with = "int64")]
    pub(super) revision: i64,
}

#[derive(Deserialize)]
pub(super) struct HeaderOnly {
    pub(super) header: Header,
}

#[derive(Deserialize)]
pub(super) struct RangeResponse {
    header: Header,
    #[serde(default)]
    kvs: Vec<WireKv>,
}

impl RangeResponse {
    /// The first key, for a single-key read.
    pub(super) fn first(self) -> Result<Option<KeyValue>, Error> {
        self.kvs.into_iter().next().map(WireKv::decode).transpose()
    }

    pub(super) fn into_range(self) -> Result<Range, Error> {
        let kvs = self.kvs.into_iter().map(WireKv::decode).collect::<Result<_, _>>()?;
        Ok(Range { revision: self.header.revision, kvs })
    }
}

#[derive(Deserialize)]
pub(super) struct DeleteResponse {
    #[serde(default, deserialize_with = "int64")]
    pub(super) deleted: i64,
}

/// The answer to `/v3/auth/authenticate`. The token is a secret: it is moved into a
/// zeroizing string at once.
#[derive(Deserialize)]
pub(super) struct AuthenticateResponse {
    pub(super) token: String,
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

/// Takes the first whole message off the front of a watch stream's `body`; `None` while it
/// has not all arrived.
///
/// The message is framed before it is parsed, so a verdict never depends on how the stream
/// was split into reads. Left to serde_json, a cut-off message is sometimes an error rather
/// than "more to come": a number that ends where the bytes so far end (`12` of `123`) reads
/// as whole, and one cut after its `.` in a field the client skips reads as malformed.
pub(super) fn next_message(body: &mut Vec<u8>) -> Result<Option<WatchMessage>, Error> {
    let Some(end) = message_end(body)? else { return Ok(None) };
    let parsed = serde_json::from_slice::<WatchEnvelope>(&body[..end]);
    body.drain(..end);
    let envelope =
        parsed.map_err(|cause| Error::Malformed { what: "watch stream".into(), cause })?;
    envelope.into_message().map(Some)
}

/// Where the JSON object at the front of `body` (after whitespace) ends, once all of it has
/// arrived. Only the nesting is followed (brackets outside strings, and escapes within
/// them); what lies between is left for serde_json to judge. Every watch message is an
/// object, so a stream that starts with anything else is refused at its first byte.
fn message_end(body: &[u8]) -> Result<Option<usize>, Error> {
    let json_whitespace = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let Some(start) = body.iter().position(|b| !json_whitespace(b)) else { return Ok(None) };
    if body.get(start) != Some(&b'{') {
        return Err(Error::Malformed {
            what: "watch stream".into(),
            cause: serde::de::Error::custom("a watch message is not a JSON object"),
        });
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (offset, &byte) in body.iter().enumerate().skip(start) {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Ok(Some(offset + 1));
                }
            }
            _ => {}
        }
    }
    Ok(None)
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
            return Err(Error::WatchFailed(message));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `body` to [`next_message`] in reads of `step` bytes; whether it ends in an
    /// error, and the messages before.
    fn read_in_steps(body: &[u8], step: usize) -> (usize, bool) {
        let (mut buffer, mut messages) = (Vec::new(), 0);
        for piece in body.chunks(step) {
            buffer.extend_from_slice(piece);
            loop {
                match next_message(&mut buffer) {
                    Ok(Some(_)) => messages += 1,
                    Ok(None) => break,
                    Err(_) => return (messages, true),
                }
            }
        }
        (messages, false)
    }

    #[test]
    fn a_malformed_stream_is_refused_however_it_is_split() {
        let skipped_number = b"{\"skipped\":{\"s\":\"x\"},\"n\":0.1331}";
        let bodies = [&b"1111e"[..], b"  -12", b"\"text\"", b"[1]", b"{\"result\":{}}\n7"];
        for body in bodies.into_iter().chain([&skipped_number[..]]) {
            let whole = read_in_steps(body, body.len());
            assert!(whole.1, "{:?} was not refused", String::from_utf8_lossy(body));
            for step in 1..body.len() {
                assert_eq!(read_in_steps(body, step), whole, "split every {step} bytes");
            }
        }
    }

    #[test]
    fn brackets_and_escaped_quotes_in_strings_do_not_end_a_message() {
        let message = br#"{"result":{"canceled":true,"cancel_reason":"} ] \" }"},"error":null}"#;
        let mut body = [&message[..], b"\n{\"result\""].concat();
        assert_eq!(message_end(&body).unwrap(), Some(message.len()));
        let Ok(Some(WatchMessage::Canceled(reason))) = next_message(&mut body) else {
            panic!("the message was not read whole")
        };
        assert_eq!(reason, "} ] \" }");
        assert!(matches!(next_message(&mut body), Ok(None)));
    }

    #[test]
    fn whitespace_between_messages_waits_for_the_next_one() {
        let mut body = b"{\"result\":{\"created\":true}}\r\n \t".to_vec();
        assert!(matches!(next_message(&mut body), Ok(Some(_))));
        assert!(matches!(next_message(&mut body), Ok(None)));
    }
}
