//! The metrics server under a slow-loris attack on loopback: a hundred connections that send
//! part of a request line and then a byte every 500 ms, or nothing at all, do not keep a
//! scrape from being answered within a second, with a valid exposition.
#![allow(clippy::disallowed_methods, reason = "a system test measures in real time")]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wgfabric_metrics::http::MAX_CONNECTIONS;
use wgfabric_metrics::{families, render, Counters, FriendlyNames, Interface, MetricsServer};
use wgfabric_proto::keys::PrivateKey;
use wgfabric_proto::uapi::{DeviceSnapshot, PeerSnapshot};
use wgfabric_testkit::{assert_promtool_accepts, wait_until};

const SLOW_CLIENTS: usize = 100;

/// What wgfabricd would serve for an interface with one peer.
fn exposition() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let mut peer = PeerSnapshot::new(PrivateKey::from_bytes([2; 32]).public_key());
    peer.endpoint = Some("192.0.2.7:51820".parse().unwrap());
    peer.last_handshake_time = Some(now - Duration::from_secs(30));
    peer.tx_bytes = 1234;
    peer.allowed_ips = vec!["10.77.0.3/32".parse().unwrap()];
    let snapshot = DeviceSnapshot {
        private_key: Some(PrivateKey::from_bytes([1; 32])),
        listen_port: 51820,
        fwmark: 0,
        peers: vec![peer],
    };
    let counters = Counters::default();
    let interface = Interface { name: "wg0", snapshot: Some(&snapshot), counters: Some(&counters) };
    render(&families(&[interface], &FriendlyNames::new(), now))
}

/// Slow clients: each sent part of a request line; every other one then trickles a byte
/// every 500 ms from a thread of the test, the rest send nothing more. All closed on drop.
struct SlowLoris {
    streams: Vec<TcpStream>,
    stop: Option<mpsc::Sender<()>>,
    trickler: Option<JoinHandle<()>>,
}

impl SlowLoris {
    fn start(addr: SocketAddr, count: usize) -> Self {
        let streams: Vec<TcpStream> = (0..count)
            .map(|_| {
                let mut stream = TcpStream::connect(addr).unwrap();
                stream.write_all(b"GET /metrics HTTP/1.1\r\nX-Slow: ").unwrap();
                stream
            })
            .collect();
        let mut trickling: Vec<TcpStream> =
            streams.iter().step_by(2).map(|stream| stream.try_clone().unwrap()).collect();
        let (stop, stopped) = mpsc::channel();
        let trickler = std::thread::spawn(move || {
            while let Err(RecvTimeoutError::Timeout) =
                stopped.recv_timeout(Duration::from_millis(500))
            {
                // Those the server closed fail to write, and stop.
                trickling.retain_mut(|stream| stream.write_all(b"x").is_ok());
            }
        });
        Self { streams, stop: Some(stop), trickler: Some(trickler) }
    }

    /// Whether the server closed the `n`th connection within `timeout` without answering.
    fn closed_within(&self, n: usize, timeout: Duration) -> bool {
        let mut stream = &self.streams[n];
        stream.set_read_timeout(Some(timeout)).unwrap();
        match stream.read(&mut [0u8; 1]) {
            Ok(0) => true,
            Ok(_) => panic!("slow client {n} was answered"),
            Err(error) => !matches!(
                error.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    }
}

impl Drop for SlowLoris {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(trickler) = self.trickler.take() {
            let _ = trickler.join();
        }
    }
}

/// `GET /metrics`: the status line and headers, and the body.
fn scrape(addr: SocketAddr) -> (String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    (head.to_owned(), body.to_owned())
}

#[test]
fn a_scrape_is_answered_within_a_second_while_a_hundred_slow_clients_hold_connections() {
    let server = MetricsServer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let running = server.spawn(exposition).unwrap();
    let addr = running.local_addr();
    let slow = SlowLoris::start(addr, SLOW_CLIENTS);
    // The server took every one: it holds as many as it may, and has closed the oldest to
    // make room for the newest (it accepts in order).
    assert!(wait_until(Duration::from_secs(10), || {
        running.open_connections() == MAX_CONNECTIONS
    }));
    let displaced = SLOW_CLIENTS - MAX_CONNECTIONS;
    assert!(slow.closed_within(displaced - 1, Duration::from_secs(10)), "not displaced");
    assert!(!slow.closed_within(SLOW_CLIENTS - 1, Duration::from_millis(10)));

    for attempt in 0..3 {
        let started = Instant::now();
        let (head, body) = scrape(addr);
        let took = started.elapsed();
        assert!(took < Duration::from_secs(1), "scrape {attempt} took {took:?}");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("Content-Type: text/plain; version=0.0.4"), "{head}");
        assert!(body.contains("wgfabric_uapi_up{interface=\"wg0\"} 1\n"), "{body}");
        assert!(body.contains("wireguard_sent_bytes_total{interface=\"wg0\""), "{body}");
        assert_promtool_accepts(&body);
    }
    // The newest slow client is still held; stopping the server does not wait for it.
    assert!(!slow.closed_within(SLOW_CLIENTS - 1, Duration::from_millis(10)));
    let started = Instant::now();
    drop(running);
    assert!(started.elapsed() < Duration::from_secs(5), "stopping took {:?}", started.elapsed());
    assert!(slow.closed_within(SLOW_CLIENTS - 1, Duration::from_secs(5)));
}
