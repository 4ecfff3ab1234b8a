//! `etcd_response`: the etcd client's HTTP response decoding (head, `Content-Length`, chunked
//! and read-to-close bodies) and its JSON answers (`range`, `put`, `deleterange`, watch
//! streams), through `wgfabric_fleet::etcd::fuzzing` (built with `--cfg fuzzing`).
//!
//! Input: a byte of split points, then a whole HTTP response. Checked: decoding the response
//! in pieces (as reads return them) gives what decoding it at once gives; a watch stream fed
//! in pieces yields the messages it yields at once.

use wgfabric_fleet::etcd::fuzzing::{response, unary, watch_message};
use wgfabric_fleet::etcd::WatchMessage;

/// Watch messages read from one body, at most.
const MAX_MESSAGES: usize = 64;
/// A response head longer than this may be refused or not depending on how reads split it
/// (the client's own limit, 16 KiB, is checked only while the head is incomplete).
const HEAD_LIMIT: usize = 16 * 1024;

/// How many bytes a piece of `len` bytes of response has: from the split byte, and at least
/// one 64th of the whole, since every read searches what has arrived from its start (each
/// search is traced by the fuzzer, and byte-sized pieces of a long answer would cost
/// quadratic time).
fn step(len: usize, split: u8) -> usize {
    usize::from(split % 64) + 1 + len / 64
}

/// `bytes` cut every [`step`] bytes.
fn pieces(bytes: &[u8], split: u8) -> Vec<&[u8]> {
    bytes.chunks(step(bytes.len(), split)).collect()
}

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
    let Some((&split, bytes)) = data.split_first() else { return };
    let whole = outcome(response([bytes]));
    let cut = pieces(bytes, split);
    let in_pieces = outcome(response(cut.iter().copied()));
    let head_fits =
        bytes.windows(4).position(|w| w == b"\r\n\r\n").is_some_and(|at| at < HEAD_LIMIT);
    if head_fits || bytes.len() <= HEAD_LIMIT {
        assert_eq!(whole, in_pieces, "split every {} bytes", step(bytes.len(), split));
    }
    // The server closing at the end.
    let closed = outcome(response(cut.iter().copied().chain([&[][..]])));
    if let (Ok(open), Ok(closed)) = (&in_pieces, &closed) {
        assert_eq!(open.1, closed.1, "closing changed the body");
    }

    let Ok((status, body, _)) = whole else { return };
    let (get, range, put, delete) = unary(status, &body);
    if let (Ok(first), Ok(range)) = (&get, &range) {
        assert_eq!(first.as_ref(), range.kvs.first(), "get and range disagree");
    }
    let _ = (outcome(put), outcome(delete));

    let at_once = watch(&[&body]);
    // At least 64 bytes a piece: each read parses the stream's buffer from its start.
    let step = 64 + usize::from(split.rotate_left(3) % 128);
    let fed = watch(&body.chunks(step).collect::<Vec<_>>());
    assert_eq!(at_once, fed, "the watch stream read in pieces differs");
}
