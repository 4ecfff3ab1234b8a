//! A tiny HTTP/1.1 responder for Prometheus scrapes: `GET /metrics` (and `HEAD`), one request
//! per connection, each connection on a thread of its own.
//!
//! Prometheus is the only client, so this is deliberately small: no keep-alive, no chunked
//! encoding, no request bodies. It may still face hostile clients (an overlay shared with
//! others, a port opened by mistake), so it bounds what each can hold, with
//! [`crate::limits`]:
//!
//! - A client has [`DEADLINE`] from connecting to send its request head (at most
//!   [`MAX_REQUEST_HEAD`] bytes), and [`DEADLINE`] again to take the answer: deadlines for
//!   the whole, not per read, so trickling a byte at a time does not extend them.
//! - At most [`MAX_CONNECTIONS`] are open at once. One more displaces the oldest that has
//!   not finished its request (see [`Connections`]), so idle or slow connections cannot keep
//!   a scrape out, and the threads stay bounded.
//!
//! The accept loop only accepts, admits and starts a thread: it never waits on a client.

use std::io::{self, Read, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::exposition::CONTENT_TYPE;
use crate::limits::{Connections, Phase, Ticket, Timed};

/// The path metrics are served on.
pub const METRICS_PATH: &str = "/metrics";
/// How long a client has to send its request head, and then again to take the answer.
pub const DEADLINE: Duration = Duration::from_secs(5);
/// The largest request head accepted.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// The most connections open at once; beyond, the oldest unfinished request makes room.
pub const MAX_CONNECTIONS: usize = 64;

/// A bound listening socket, ready to answer scrapes.
#[derive(Debug)]
pub struct MetricsServer {
    listener: TcpListener,
    addr: SocketAddr,
    connections: Connections,
    deadline: Duration,
}

impl MetricsServer {
    /// Binds `addr` (port 0 picks a free port; see [`MetricsServer::local_addr`]).
    ///
    /// # Errors
    /// When the address cannot be bound (in use, not local, no permission).
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        Ok(Self {
            listener,
            addr,
            connections: Connections::new(MAX_CONNECTIONS),
            deadline: DEADLINE,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answers scrapes forever, calling `render` once per scrape (from several threads when
    /// scrapes overlap).
    pub fn serve(&self, render: impl Fn() -> String + Sync) -> ! {
        self.run(&render, &AtomicBool::new(false));
        unreachable!("a server that is never told to stop returned")
    }

    /// Answers scrapes on a background thread until the returned handle is dropped.
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn spawn(self, render: impl Fn() -> String + Send + Sync + 'static) -> io::Result<Running> {
        let stop = Arc::new(AtomicBool::new(false));
        let addr = self.addr;
        let connections = self.connections.clone();
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("metrics".into())
                .spawn(move || self.run(&render, &stop))?
        };
        Ok(Running { addr, stop, connections, thread: Some(thread) })
    }

    /// Accepts and answers until `stop` is set and a connection wakes the loop up; then
    /// interrupts the connections still open and returns once their threads have.
    fn run(&self, render: &(dyn Fn() -> String + Sync), stop: &AtomicBool) {
        std::thread::scope(|scope| {
            while !stop.load(Ordering::Acquire) {
                let stream = match self.listener.accept() {
                    Ok((stream, _)) => Arc::new(stream),
                    // Typically out of descriptors: back off rather than spin.
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                };
                if stop.load(Ordering::Acquire) {
                    break;
                }
                // Refused only while every connection is being rendered for: closed at once.
                let Some(ticket) = self.connections.admit(&stream) else { continue };
                let deadline = self.deadline;
                let spawned = std::thread::Builder::new()
                    .name("metrics-conn".into())
                    // A client that misbehaves only loses its own answer.
                    .spawn_scoped(scope, move || drop(answer(&stream, &ticket, deadline, render)));
                if spawned.is_err() {
                    // Out of threads: the connection was closed; back off like above.
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            self.connections.interrupt_all();
        });
    }
}

/// A server answering on a background thread; dropping it stops the thread, closes the
/// connections still open (waiting for a render under way) and closes the socket.
#[derive(Debug)]
pub struct Running {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    connections: Connections,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    /// The address it answers on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many connections are open and admitted (at most [`MAX_CONNECTIONS`]).
    pub fn open_connections(&self) -> usize {
        self.connections.open()
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
        let woke = TcpStream::connect_timeout(&wake, DEADLINE).is_ok();
        if let (true, Some(thread)) = (woke, self.thread.take()) {
            let _ = thread.join();
        }
    }
}

/// Reads one request from `stream` and answers it, each within `deadline`.
fn answer(
    stream: &TcpStream,
    ticket: &Ticket,
    deadline: Duration,
    render: &(dyn Fn() -> String + Sync),
) -> io::Result<()> {
    let timed = Timed::new(stream, deadline);
    let head = read_head(&mut &timed)?;
    if ticket.is_interrupted() {
        // What looked like the end of the request was the server closing the connection.
        return Err(io::ErrorKind::ConnectionAborted.into());
    }
    ticket.set_phase(Phase::Working);
    let answer = respond(&head, render);
    ticket.set_phase(Phase::Answering);
    timed.restart(deadline);
    (&timed).write_all(&answer)
}

/// Reads up to the blank line that ends a request head.
fn read_head(stream: &mut impl Read) -> io::Result<Vec<u8>> {
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
fn respond(head: &[u8], render: &dyn Fn() -> String) -> Vec<u8> {
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
    use std::sync::atomic::AtomicU64;
    use std::time::Instant;

    use wgfabric_testkit::wait_until;

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
        let scrapes = Arc::new(AtomicU64::new(0));
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

    /// A server with room for `capacity` connections and `deadline` for each exchange, and
    /// how many times it rendered.
    fn limited_server(capacity: usize, deadline: Duration) -> (Running, Arc<AtomicU64>) {
        let server = MetricsServer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let server = MetricsServer { connections: Connections::new(capacity), deadline, ..server };
        let renders = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&renders);
        let running = server
            .spawn(move || {
                counter.fetch_add(1, Ordering::Relaxed);
                "m 1\n".to_owned()
            })
            .unwrap();
        (running, renders)
    }

    /// A connection that sent a request line but not the blank line after the head.
    fn idle(addr: SocketAddr) -> TcpStream {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
        stream
    }

    /// Whether the server closed `stream` within `timeout` without answering.
    fn closed_within(mut stream: &TcpStream, timeout: Duration) -> bool {
        stream.set_read_timeout(Some(timeout)).unwrap();
        match stream.read(&mut [0u8; 1]) {
            Ok(0) => true,
            Ok(_) => panic!("a partial request was answered"),
            Err(error) => {
                !matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
            }
        }
    }

    #[test]
    fn a_trickling_client_is_cut_off_at_the_deadline() {
        let deadline = Duration::from_millis(300);
        let (running, _) = limited_server(4, deadline);
        let started = Instant::now();
        let mut slow = idle(running.local_addr());
        // A byte every 20 ms at most: a timeout per read would never expire.
        let cut_off = loop {
            if slow.write_all(b"x").is_err() || closed_within(&slow, Duration::from_millis(20)) {
                break true;
            }
            if started.elapsed() > Duration::from_secs(10) {
                break false;
            }
        };
        let took = started.elapsed();
        assert!(cut_off, "still open after {took:?}");
        assert!(took >= deadline && took < Duration::from_secs(3), "cut off after {took:?}");
        // Its thread is gone and others are served.
        assert!(wait_until(Duration::from_secs(5), || running.open_connections() == 0));
        assert!(get(running.local_addr(), b"GET /metrics HTTP/1.0\r\n\r\n").ends_with("m 1\n"));
    }

    #[test]
    fn idle_connections_make_room_for_newer_ones_and_scrapes() {
        let (running, renders) = limited_server(2, Duration::from_secs(60));
        let addr = running.local_addr();
        let idle: Vec<TcpStream> = (0..5).map(|_| idle(addr)).collect();
        // Each newcomer displaced the oldest: the first three are closed, the last two not.
        for (n, stream) in idle.iter().enumerate().take(3) {
            assert!(closed_within(stream, Duration::from_secs(10)), "connection {n} still open");
        }
        assert!(!closed_within(&idle[3], Duration::from_millis(50)));
        assert!(!closed_within(&idle[4], Duration::from_millis(50)));
        assert_eq!(running.open_connections(), 2);
        // Being closed is not taken for the end of their heads.
        assert_eq!(renders.load(Ordering::Relaxed), 0);

        let started = Instant::now();
        assert!(get(addr, b"GET /metrics HTTP/1.1\r\n\r\n").ends_with("\r\n\r\nm 1\n"));
        assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
        assert!(closed_within(&idle[3], Duration::from_secs(10)), "the scrape displaced nobody");
        assert_eq!(renders.load(Ordering::Relaxed), 1);
        assert!(!closed_within(&idle[4], Duration::from_millis(50)));
        // Stopping does not wait for the idle connection's deadline.
        let started = Instant::now();
        drop(running);
        assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
        assert!(closed_within(&idle[4], Duration::from_secs(10)));
    }
}
