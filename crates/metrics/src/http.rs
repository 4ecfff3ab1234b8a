//! A tiny HTTP/1.1 responder for Prometheus scrapes: `GET /metrics` (and `HEAD`), one request
//! per connection, answered on one thread.
//!
//! Prometheus is the only client, so this is deliberately small: no keep-alive, no chunked
//! encoding, no request bodies. A client gets [`IO_TIMEOUT`] to send its request head (at
//! most [`MAX_REQUEST_HEAD`] bytes) and to take the answer, so a stuck client delays other
//! scrapes by that much at worst.

use std::io::{self, Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::exposition::CONTENT_TYPE;

/// The path metrics are served on.
pub const METRICS_PATH: &str = "/metrics";
/// How long a client may take to send its request and to read the answer.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest request head accepted.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// A bound listening socket, ready to answer scrapes.
#[derive(Debug)]
pub struct MetricsServer {
    listener: TcpListener,
    addr: SocketAddr,
}

impl MetricsServer {
    /// Binds `addr` (port 0 picks a free port; see [`MetricsServer::local_addr`]).
    ///
    /// # Errors
    /// When the address cannot be bound (in use, not local, no permission).
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        Ok(Self { listener, addr })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answers scrapes on the calling thread, forever, calling `render` once per scrape.
    pub fn serve(&self, render: impl Fn() -> String) -> ! {
        loop {
            self.answer_next(&render);
        }
    }

    /// Answers scrapes on a background thread until the returned handle is dropped.
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn spawn(self, render: impl Fn() -> String + Send + 'static) -> io::Result<Running> {
        let stop = Arc::new(AtomicBool::new(false));
        let addr = self.addr;
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new().name("metrics".into()).spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    self.answer_next(&render);
                }
            })?
        };
        Ok(Running { addr, stop, thread: Some(thread) })
    }

    fn answer_next(&self, render: &impl Fn() -> String) {
        match self.listener.accept() {
            // A client that misbehaves only loses its own answer.
            Ok((stream, _)) => drop(answer(stream, render)),
            // Typically out of descriptors: back off rather than spin.
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// A server answering on a background thread; dropping it stops the thread and closes the
/// socket.
#[derive(Debug)]
pub struct Running {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    /// The address it answers on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // The thread is blocked in accept(): a connection of our own wakes it to see the flag.
        let wake = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => Ipv4Addr::LOCALHOST.into(),
            IpAddr::V6(ip) if ip.is_unspecified() => Ipv6Addr::LOCALHOST.into(),
            ip => ip,
        };
        let wake = SocketAddr::new(wake, self.addr.port());
        // The connection is closed at once, so answering it does not wait for a request.
        let woke = TcpStream::connect_timeout(&wake, IO_TIMEOUT).is_ok();
        if let (true, Some(thread)) = (woke, self.thread.take()) {
            let _ = thread.join();
        }
    }
}

fn answer(mut stream: TcpStream, render: &impl Fn() -> String) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let head = read_head(&mut stream)?;
    stream.write_all(&respond(&head, render))?;
    stream.flush()
}

/// Reads up to the blank line that ends a request head.
fn read_head(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        if head.len() >= MAX_REQUEST_HEAD {
            break;
        }
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..read]);
    }
    Ok(head)
}

/// The complete answer to a request head.
fn respond(head: &[u8], render: &impl Fn() -> String) -> Vec<u8> {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return response("400 Bad Request", "text/plain", "malformed request line\n", true);
    };
    if !version.starts_with("HTTP/1.") {
        return response("400 Bad Request", "text/plain", "only HTTP/1.x is spoken here\n", true);
    }
    let path = target.split('?').next().unwrap_or_default();
    match (method, path) {
        ("GET" | "HEAD", METRICS_PATH) => {
            response("200 OK", CONTENT_TYPE, &render(), method == "GET")
        }
        ("GET" | "HEAD", _) => response(
            "404 Not Found",
            "text/plain",
            &format!("not found: metrics are at {METRICS_PATH}\n"),
            method == "GET",
        ),
        _ => response("405 Method Not Allowed", "text/plain", "use GET\n", true),
    }
}

fn response(status: &str, content_type: &str, body: &str, with_body: bool) -> Vec<u8> {
    let allow = if status.starts_with("405") { "Allow: GET, HEAD\r\n" } else { "" };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if with_body {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer_to(request: &str) -> String {
        String::from_utf8(respond(request.as_bytes(), &|| "m 1\n".to_owned())).unwrap()
    }

    #[test]
    fn metrics_are_served_with_their_content_type() {
        let ok = answer_to("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains(&format!("Content-Type: {CONTENT_TYPE}\r\n")), "{ok}");
        assert!(ok.ends_with("Content-Length: 4\r\nConnection: close\r\n\r\nm 1\n"), "{ok}");
        let query = answer_to("GET /metrics?name[]=x HTTP/1.0\r\n\r\n");
        assert!(query.starts_with("HTTP/1.1 200 OK\r\n"), "{query}");
        let head = answer_to("HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(head.ends_with("Content-Length: 4\r\nConnection: close\r\n\r\n"), "{head}");
    }

    #[test]
    fn everything_else_is_refused() {
        assert!(answer_to("GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(answer_to("GET /metricsx HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
        let post = answer_to("POST /metrics HTTP/1.1\r\n\r\n");
        assert!(post.starts_with("HTTP/1.1 405 ") && post.contains("Allow: GET, HEAD\r\n"));
        for garbage in ["", "GET\r\n\r\n", "GET /metrics SPDY/3\r\n\r\n", "\u{1}\u{2}\n\n"] {
            assert!(answer_to(garbage).starts_with("HTTP/1.1 400 "), "{garbage:?}");
        }
    }

    fn get(addr: SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(request).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    }

    #[test]
    fn a_running_server_answers_each_scrape_fresh_and_stops_when_dropped() {
        let server = MetricsServer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let scrapes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = Arc::clone(&scrapes);
        let running = server
            .spawn(move || format!("scrapes {}\n", counter.fetch_add(1, Ordering::Relaxed) + 1))
            .unwrap();
        let addr = running.local_addr();
        assert!(get(addr, b"GET /metrics HTTP/1.1\r\n\r\n").ends_with("\r\n\r\nscrapes 1\n"));
        assert!(get(addr, b"GET /metrics HTTP/1.1\r\n\r\n").ends_with("\r\n\r\nscrapes 2\n"));
        // An oversized head is cut off and answered rather than read forever.
        let huge = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(2 * MAX_REQUEST_HEAD));
        let mut stream = TcpStream::connect(addr).unwrap();
        let _ = stream.write_all(huge.as_bytes());
        drop(stream);
        assert!(get(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200"));
        drop(running);
        assert!(TcpStream::connect(addr).is_err(), "still listening after drop");
    }
}
