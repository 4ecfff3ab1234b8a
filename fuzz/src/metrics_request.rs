//! `metrics_request`: the metrics HTTP responder (`wgfabric_metrics::http`), through a real
//! server on a loopback port, since its parser is private: each input is sent as a request
//! on a connection of its own.
//!
//! The request is cut after the blank line that ends its head (or at the largest head the
//! server reads), so the server reads all of it and the connection always ends cleanly.
//! Checked: every answer is a well-formed HTTP/1.1 response whose status is the one the
//! request line calls for (200, 400, 404 or 405) and whose `Content-Length` is the body's.

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

use wgfabric_metrics::http::{MetricsServer, MAX_REQUEST_HEAD, METRICS_PATH};

const BODY: &str = "# TYPE wireguard_up gauge\nwireguard_up 1\n";

fn server() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let server = MetricsServer::bind("127.0.0.1:0".parse().expect("an address"))
            .expect("binding a loopback port");
        let running = server.spawn(|| BODY.to_owned()).expect("starting the server");
        let addr = running.local_addr();
        // Serves until the process ends.
        std::mem::forget(running);
        addr
    })
}

/// Where the server stops reading: after the first blank line, or at its limit.
fn request_len(data: &[u8]) -> usize {
    let crlf = data.windows(4).position(|w| w == b"\r\n\r\n").map(|at| at + 4);
    let lf = data.windows(2).position(|w| w == b"\n\n").map(|at| at + 2);
    [crlf, lf].into_iter().flatten().min().unwrap_or(data.len()).min(MAX_REQUEST_HEAD)
}

/// The status a request line calls for, and whether the answer has a body.
fn expected(request: &[u8]) -> (&'static str, bool) {
    let line = request.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let parts: Vec<&str> = line.trim_end_matches('\r').split(' ').collect();
    let [method, target, version] = parts[..] else { return ("400", true) };
    if !version.starts_with("HTTP/1.") {
        return ("400", true);
    }
    let path = target.split('?').next().unwrap_or_default();
    match (method, path) {
        ("GET" | "HEAD", METRICS_PATH) => ("200", method == "GET"),
        ("GET" | "HEAD", _) => ("404", method == "GET"),
        _ => ("405", true),
    }
}

pub fn run(data: &[u8]) {
    let request = &data[..request_len(data)];
    let mut stream = TcpStream::connect(server()).expect("connecting to the server");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("a timeout");
    stream.write_all(request).expect("sending the request");
    stream.shutdown(Shutdown::Write).expect("ending the request");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("reading the answer");

    let text = String::from_utf8(answer).expect("the answer is text");
    let (head, body) = text.split_once("\r\n\r\n").expect("an answer has a head");
    let (status, with_body) = expected(request);
    assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{request:?} got {head:?}");
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("Content-Length: "))
        .expect("a Content-Length")
        .parse()
        .expect("a number");
    if with_body {
        assert_eq!(body.len(), length, "{request:?}: body and Content-Length differ");
    } else {
        assert!(body.is_empty(), "{request:?}: HEAD answered with a body");
    }
    if status == "200" && with_body {
        assert_eq!(body, BODY);
    }
}
