//! The client against a fake server that misbehaves (answers too large, or none at all), and
//! what a dropped watch leaves behind.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::etcd::{Client, Error, Security, DEFAULT_TIMEOUT, MAX_ANSWER};
use wgfabric_model::wallclock::monotonic;

/// A server that reads one request, writes `head`, then repeats `filler` until the client
/// hangs up; the thread returns how many body bytes it managed to send.
fn serve(head: &'static str, first: &'static [u8], filler: u8) -> (String, JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = listener.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        read_request(&mut conn);
        conn.write_all(head.as_bytes()).unwrap();
        conn.write_all(first).unwrap();
        let chunk = vec![filler; 64 * 1024];
        let mut sent = first.len();
        while conn.write_all(&chunk).is_ok() {
            sent += chunk.len();
        }
        sent
    });
    (endpoint, server)
}

/// Reads a request's head and its `Content-Length` body.
fn read_request(conn: &mut TcpStream) {
    let mut request = Vec::new();
    let mut byte = [0u8];
    while !request.ends_with(b"\r\n\r\n") {
        conn.read_exact(&mut byte).unwrap();
        request.push(byte[0]);
    }
    let head = String::from_utf8(request).unwrap().to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map_or(0, |length| length.trim().parse().unwrap());
    conn.read_exact(&mut vec![0; length]).unwrap();
}

/// What the client may have read beyond the bound before refusing: its own buffers and the
/// sockets' (loopback's are a few megabytes).
const SLACK: usize = 16 * 1024 * 1024;

#[test]
fn a_huge_unary_answer_is_refused_without_being_read_whole() {
    // It claims a terabyte.
    let (endpoint, server) = serve(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1099511627776\r\n\r\n",
        b"{\"header\":{},\"kvs\":[{\"key\":\"",
        b'A',
    );
    let client = Client::new(&endpoint, &Security::default()).unwrap();
    let error = client.get(b"/x").unwrap_err();
    assert!(matches!(error, Error::TooLarge { limit: MAX_ANSWER }), "{error:?}");
    assert_eq!(error.to_string(), format!("the answer is larger than {MAX_ANSWER} bytes; refused"));
    drop(client);
    let sent = server.join().unwrap();
    assert!(sent < MAX_ANSWER + SLACK, "the client read {sent} bytes");
}

#[test]
fn a_huge_watch_message_is_refused_without_being_buffered_whole() {
    let (endpoint, server) = serve(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n",
        b"{\"result\":{\"created\":true}}\n{\"result\":{\"cancel_reason\":\"",
        b'A',
    );
    let client = Client::new(&endpoint, &Security::default()).unwrap();
    let mut watch = client.watch(b"/x", false, 1).unwrap();
    let mut messages = Vec::new();
    let error = loop {
        match watch.next(Duration::from_secs(20)) {
            Ok(message) => messages.push(message),
            Err(error) => break error,
        }
    };
    assert_eq!(messages, [Some(crate::etcd::WatchMessage::Created)]);
    assert!(matches!(error, Error::TooLarge { limit: MAX_ANSWER }), "{error:?}");
    drop(watch);
    let sent = server.join().unwrap();
    assert!(sent < MAX_ANSWER + SLACK, "the client read {sent} bytes");
}

#[test]
fn a_huge_response_head_is_refused() {
    let (endpoint, _server) = serve("HTTP/1.1 200 OK\r\nX-Junk: ", b"", b'A');
    let error = Client::new(&endpoint, &Security::default()).unwrap().get(b"/x").unwrap_err();
    assert!(matches!(error, Error::TooLarge { .. }), "{error:?}");
}

#[test]
fn a_silent_server_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = listener.local_addr().unwrap().to_string();
    let client = Client::new(&endpoint, &Security::default()).unwrap();
    let started = monotonic();
    let error = client.get(b"/x").unwrap_err();
    let waited = monotonic().saturating_duration_since(started);
    assert!(matches!(error, Error::Timeout(_)), "{error:?}");
    assert_eq!(error.to_string(), "timed out waiting for the answer");
    assert!(waited >= DEFAULT_TIMEOUT && waited < DEFAULT_TIMEOUT * 2, "waited {waited:?}");
    drop(listener);
}

#[test]
fn a_dropped_watch_closes_its_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = listener.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        read_request(&mut conn);
        conn.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        conn.write_all(b"1b\r\n{\"result\":{\"created\":true}}\r\n").unwrap();
        // The watch is idle; the client hanging up ends this read.
        conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        conn.read(&mut [0u8; 16])
    });
    let client = Client::new(&endpoint, &Security::default()).unwrap();
    let mut watch = client.watch(b"/x", false, 1).unwrap();
    assert_eq!(
        watch.next(Duration::from_secs(5)).unwrap(),
        Some(crate::etcd::WatchMessage::Created)
    );
    assert_eq!(watch.next(Duration::from_millis(100)).unwrap(), None);
    drop(watch);
    assert_eq!(server.join().unwrap().unwrap(), 0, "the client closed the connection");
}
