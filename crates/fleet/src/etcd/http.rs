//! Just enough HTTP/1.1 for etcd's JSON gateway: a POST with a JSON body, and a response read
//! whole (unary calls) or bit by bit (a watch's stream), with `Content-Length`, chunked or
//! read-to-close bodies. One connection per call; the gateway serves them on loopback or the
//! LAN, where connecting costs little next to a round of consensus.

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::Error;
use crate::wallclock::monotonic;

/// The longest response head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// The longest unary body accepted.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// A response: its status and what has been decoded of its body.
#[derive(Debug)]
pub(super) struct Response {
    /// The HTTP status code.
    pub(super) status: u16,
    stream: TcpStream,
    decoder: Decoder,
    /// Decoded body bytes not yet consumed.
    pub(super) body: Vec<u8>,
}

/// The body's framing, and what has arrived of it.
#[derive(Debug)]
struct Decoder {
    framing: Framing,
    /// Raw bytes received after the head, not yet decoded.
    raw: Vec<u8>,
    finished: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// Sends `POST path` with a JSON `body` and reads the response head.
pub(super) fn post(
    addr: SocketAddr,
    host: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<Response, Error> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(timeout))?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let deadline = monotonic() + timeout;
    let mut raw = Vec::new();
    let (status, framing) = loop {
        if let Some((status, framing, head_len)) = parse_head(&raw)? {
            raw.drain(..head_len);
            break (status, framing);
        }
        let before = raw.len();
        if !read_into(&mut stream, &mut raw, deadline)? {
            return Err(Error::Io(ErrorKind::TimedOut.into()));
        }
        if raw.len() == before {
            // Closed before the head ended.
            return Err(Error::Closed);
        }
    };
    let mut response = Response {
        status,
        stream,
        decoder: Decoder { framing, raw, finished: false },
        body: Vec::new(),
    };
    response.decoder.decode(&mut response.body)?;
    Ok(response)
}

/// Reads a response head from the start of `raw`: the status, the body's framing and the
/// head's length with its blank line; `None` while the blank line has not arrived.
fn parse_head(raw: &[u8]) -> Result<Option<(u16, Framing, usize)>, Error> {
    let Some(head_end) = find(raw, b"\r\n\r\n") else {
        if raw.len() > MAX_HEAD {
            return Err(Error::Protocol("response head too long".into()));
        }
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| Error::Protocol(format!("bad status line in `{head}`")))?;
    let mut framing = Framing::UntilClose;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let length = value.parse().map_err(|_| Error::Protocol("bad Content-Length".into()))?;
            framing = Framing::Length(length);
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && value.eq_ignore_ascii_case("chunked")
        {
            framing = Framing::Chunked;
        }
    }
    Ok(Some((status, framing, head_end + 4)))
}

impl Response {
    /// Reads the rest of the body.
    pub(super) fn read_to_end(mut self, timeout: Duration) -> Result<Vec<u8>, Error> {
        let deadline = monotonic() + timeout;
        while !self.decoder.finished {
            if self.body.len() > MAX_BODY {
                return Err(Error::Protocol("response body too long".into()));
            }
            if !self.read_some(deadline)? {
                return Err(Error::Io(ErrorKind::TimedOut.into()));
            }
        }
        Ok(self.body)
    }

    /// Reads what arrives until `deadline` and decodes it into [`Response::body`]. `false`
    /// when the deadline passed first.
    ///
    /// # Errors
    /// [`Error::Closed`] when the body had already ended or the server closed the connection
    /// in the middle of it; I/O errors.
    pub(super) fn read_some(&mut self, deadline: Instant) -> Result<bool, Error> {
        if self.decoder.finished {
            return Err(Error::Closed);
        }
        let before = self.decoder.raw.len();
        if !read_into(&mut self.stream, &mut self.decoder.raw, deadline)? {
            return Ok(false);
        }
        if self.decoder.raw.len() == before {
            self.decoder.closed()?;
        } else {
            self.decoder.decode(&mut self.body)?;
        }
        Ok(true)
    }

    /// Whether the whole body has been received.
    pub(super) fn is_finished(&self) -> bool {
        self.decoder.finished
    }
}

impl Decoder {
    /// The server closed the connection: the end of a read-to-close body, else an error.
    fn closed(&mut self) -> Result<(), Error> {
        if self.framing != Framing::UntilClose {
            return Err(Error::Closed);
        }
        self.finished = true;
        Ok(())
    }

    /// Moves complete body bytes from `raw` to `body`.
    fn decode(&mut self, body: &mut Vec<u8>) -> Result<(), Error> {
        match self.framing {
            Framing::UntilClose => body.append(&mut self.raw),
            Framing::Length(length) => {
                let take = self.raw.len().min(length - body.len().min(length));
                body.extend(self.raw.drain(..take));
                self.finished = body.len() >= length;
            }
            Framing::Chunked => {
                while let Some(line_end) = find(&self.raw, b"\r\n") {
                    let size_text = String::from_utf8_lossy(&self.raw[..line_end]);
                    let size_text = size_text.split(';').next().unwrap_or_default().trim();
                    let size = usize::from_str_radix(size_text, 16)
                        .map_err(|_| Error::Protocol(format!("bad chunk size `{size_text}`")))?;
                    if size == 0 {
                        self.finished = true;
                        self.raw.clear();
                        break;
                    }
                    let start = line_end + 2;
                    // The chunk and its CRLF must have arrived; a size near `usize::MAX` (from a
                    // broken or hostile server) must not overflow on the way.
                    let arrived = |end: &usize| self.raw.len().saturating_sub(*end) >= 2;
                    let Some(end) = start.checked_add(size).filter(arrived) else {
                        break;
                    };
                    if self.raw[end..end + 2] != *b"\r\n" {
                        return Err(Error::Protocol("chunk without its CRLF".into()));
                    }
                    body.extend_from_slice(&self.raw[start..end]);
                    self.raw.drain(..end + 2);
                }
            }
        }
        Ok(())
    }
}

/// Decodes a response that arrives in `pieces`, each one what a read returned (an empty one:
/// the server closed the connection), as [`post`] and [`Response::read_some`] do; stops
/// reading when the body ends, as callers do. The status, the body, and whether it ended.
#[cfg(fuzzing)]
pub(super) fn decode_pieces<'a>(
    pieces: impl IntoIterator<Item = &'a [u8]>,
) -> Result<(u16, Vec<u8>, bool), Error> {
    let mut pieces = pieces.into_iter();
    let mut raw = Vec::new();
    let (status, framing) = loop {
        if let Some((status, framing, head_len)) = parse_head(&raw)? {
            raw.drain(..head_len);
            break (status, framing);
        }
        match pieces.next() {
            Some(piece) if !piece.is_empty() => raw.extend_from_slice(piece),
            _ => return Err(Error::Closed),
        }
    };
    let mut decoder = Decoder { framing, raw, finished: false };
    let mut body = Vec::new();
    decoder.decode(&mut body)?;
    for piece in pieces {
        if decoder.finished {
            break;
        }
        if piece.is_empty() {
            decoder.closed()?;
        } else {
            decoder.raw.extend_from_slice(piece);
            decoder.decode(&mut body)?;
        }
    }
    Ok((status, body, decoder.finished))
}

/// Reads once into `buffer`, waiting until `deadline`. `Ok(false)` on timeout; `Ok(true)`
/// when the read returned (nothing appended means the peer closed).
fn read_into(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
    deadline: Instant,
) -> Result<bool, Error> {
    let left = deadline.saturating_duration_since(monotonic());
    if left.is_zero() {
        return Ok(false);
    }
    stream.set_read_timeout(Some(left))?;
    let mut chunk = [0u8; 8192];
    loop {
        match stream.read(&mut chunk) {
            Ok(n) => {
                buffer.extend_from_slice(&chunk[..n]);
                return Ok(true);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Ok(false);
            }
            // A signal: not the peer closing, so read again.
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Io(e)),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;
    use std::net::TcpListener;

    use super::*;

    /// Serves one connection with `answer` and returns the request it received.
    fn serve_once(answer: &[u8]) -> (SocketAddr, std::thread::JoinHandle<String>) {
        let answer = answer.to_vec();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut chunk = [0u8; 4096];
            while !String::from_utf8_lossy(&request).contains("{}") {
                let n = conn.read(&mut chunk).unwrap();
                request.extend_from_slice(&chunk[..n]);
            }
            // Dribble the answer out in small pieces to exercise incremental decoding.
            for piece in answer.chunks(7) {
                conn.write_all(piece).unwrap();
                conn.flush().unwrap();
            }
            String::from_utf8(request).unwrap()
        });
        (addr, server)
    }

    #[test]
    fn chunked_bodies_are_reassembled() {
        let (addr, server) = serve_once(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n",
        );
        let response = post(addr, "etcd", "/v3/kv/range", b"{}", Duration::from_secs(5)).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.read_to_end(Duration::from_secs(5)).unwrap(), b"hello, world");
        let request = server.join().unwrap();
        assert!(request.starts_with("POST /v3/kv/range HTTP/1.1\r\nHost: etcd\r\n"), "{request}");
        assert!(request.contains("Content-Length: 2\r\n"), "{request}");
    }

    #[test]
    fn length_delimited_bodies_and_errors() {
        let (addr, _server) =
            serve_once(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 4\r\n\r\noops");
        let response = post(addr, "etcd", "/x", b"{}", Duration::from_secs(5)).unwrap();
        assert_eq!(response.status, 400);
        assert_eq!(response.read_to_end(Duration::from_secs(5)).unwrap(), b"oops");

        let (addr, _server) =
            serve_once(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
        let body = post(addr, "etcd", "/x", b"{}", Duration::from_secs(5))
            .and_then(|response| response.read_to_end(Duration::from_secs(5)));
        assert!(matches!(body, Err(Error::Protocol(_))), "{body:?}");
    }

    #[test]
    fn a_server_closing_before_the_head_ends_is_closed_at_once() {
        let (addr, _server) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Len");
        let started = monotonic();
        let response = post(addr, "etcd", "/x", b"{}", Duration::from_secs(5));
        assert!(matches!(response, Err(Error::Closed)), "{response:?}");
        let waited = monotonic().saturating_duration_since(started);
        assert!(waited < Duration::from_secs(2), "waited {waited:?}, as for a timeout");
    }

    #[test]
    fn a_chunk_size_near_the_limit_is_an_error_not_a_panic() {
        // 18 bytes into the buffer, this size ends the chunk at usize::MAX.
        let size = format!("{:x}", usize::MAX - 18);
        let answer =
            format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{size:0>16}\r\nabc");
        let (addr, _server) = serve_once(answer.as_bytes());
        let body = post(addr, "etcd", "/x", b"{}", Duration::from_secs(5))
            .and_then(|response| response.read_to_end(Duration::from_secs(5)));
        assert!(matches!(body, Err(Error::Closed)), "{body:?}");
    }
}
