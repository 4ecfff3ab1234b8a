//! `etcd_response`: what the etcd client makes of an answer's body: the JSON of `range`,
//! `put`, `deleterange` and errors, and a watch stream's messages, through
//! `wgfabric_store::etcd::fuzzing` (built with `--cfg fuzzing`). HTTP and TLS are `ureq`'s
//! and rustls's.
//!
//! Input: a byte of split points, a byte choosing the status (200, 400, 401 or 404), then
//! the body. Checked: `get` and `range` agree; a watch stream fed in pieces yields the
//! messages it yields at once.

use wgfabric_store::etcd::fuzzing::{unary, watch_message};
use wgfabric_store::etcd::WatchMessage;

/// Watch messages read from one body, at most.
const MAX_MESSAGES: usize = 64;
/// The statuses the gateway answers with.
const STATUSES: [u16; 4] = [200, 400, 401, 404];

fn outcome<T, E: std::fmt::Display>(result: Result<T, E>) -> Result<T, String> {
    result.map_err(|e| e.to_string())
}

/// The watch messages in `body` fed in `pieces`, and whether the stream ended in an error
/// (its text may differ: serde_json places some errors by what followed).
fn watch(pieces: &[&[u8]]) -> (Vec<WatchMessage>, bool) {
    let mut body = Vec::new();
    let mut messages = Vec::new();
    for piece in pieces {
        body.extend_from_slice(piece);
        loop {
            if messages.len() >= MAX_MESSAGES {
                return (messages, false);
            }
            match watch_message(&mut body) {
                Ok(Some(message)) => messages.push(message),
                Ok(None) => break,
                Err(_) => return (messages, true),
            }
        }
    }
    (messages, false)
}

pub fn run(data: &[u8]) {
    let [split, status, body @ ..] = data else { return };
    let status = STATUSES[usize::from(*status) % STATUSES.len()];
    let (get, range, put, delete) = unary(status, body);
    if let (Ok(first), Ok(range)) = (&get, &range) {
        assert_eq!(first.as_ref(), range.kvs.first(), "get and range disagree");
    }
    let _ = (outcome(put), outcome(delete));

    let at_once = watch(&[body]);
    // At least 64 bytes a piece: each read parses the stream's buffer from its start.
    let step = 64 + usize::from(split.rotate_left(3) % 128);
    let fed = watch(&body.chunks(step).collect::<Vec<_>>());
    assert_eq!(at_once, fed, "the watch stream read in pieces differs");
}
