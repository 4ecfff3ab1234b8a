//! Slow clients of a live wgfabricd lock nobody out: a hundred connections to `--metrics`
//! that trickle a request a byte at a time, or stop sending, do not delay a scrape past a
//! second; clients of the userspace API socket that connect and say nothing, or stop halfway
//! through a request, do not lock the stock `wg` out, and the unfinished requests of those
//! closed to make room change nothing.
#![allow(clippy::disallowed_methods, reason = "a system test measures in real time")]

mod common;

use std::io::Write as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::wgfabricd;
use wgfabric_testkit::{
    assert_promtool_accepts, keypair, metric_value, scrape, unique_interface_name, wait_until,
    Daemon, Netns, WithFlags,
};

/// Where the metrics are served, inside the daemon's namespace.
const METRICS_PORT: u16 = 9587;
/// More than the metrics server keeps open at once (64).
const SLOW_METRICS_CLIENTS: usize = 100;

/// A file that a script creates to say it is ready; removed on drop.
struct ReadyFile(PathBuf);

impl ReadyFile {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("wgfabricd-{name}-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        Self(path)
    }
}

impl Drop for ReadyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
#[ignore = "needs root and network namespaces"]
fn metrics_are_scraped_within_a_second_while_a_hundred_slow_clients_hold_connections() {
    let ns = Netns::new("wgfd-loris");
    let binary = Path::new(env!("CARGO_BIN_EXE_wgfabricd"));
    let with_metrics = WithFlags::new(binary, &format!("--metrics 127.0.0.1:{METRICS_PORT}"));
    let daemon = Daemon::start(&ns, with_metrics.implementation(), &unique_interface_name("wgfd"));
    let interface = format!("interface=\"{}\"", daemon.interface());

    // Bash holds the connections inside the namespace: each sent part of a request line, and
    // every other one then gets a byte every 500 ms. Closed ones fail to write, quietly.
    let ready = ReadyFile::new("loris-ready");
    let script = format!(
        r#"trap '' PIPE
fds=()
for i in $(seq {SLOW_METRICS_CLIENTS}); do
  exec {{fd}}<>/dev/tcp/127.0.0.1/{METRICS_PORT} || exit 1
  printf 'GET /metrics HTTP/1.1\r\nX-Slow: ' >&$fd
  fds+=($fd)
done
: > '{ready}'
while sleep 0.5; do
  for ((i = 0; i < ${{#fds[@]}}; i += 2)); do printf x >&${{fds[i]}}; done 2>/dev/null
done"#,
        ready = ready.0.display()
    );
    let mut slow = ns.spawn(&["bash", "-c", &script]);
    assert!(
        wait_until(Duration::from_secs(10), || ready.0.exists()),
        "the clients did not connect"
    );

    for attempt in 0..3 {
        let started = Instant::now();
        let body = scrape(&ns, METRICS_PORT);
        let took = started.elapsed();
        assert!(took < Duration::from_secs(1), "scrape {attempt} took {took:?}");
        assert_eq!(metric_value(&body, "wgfabric_uapi_up", &[&interface]), Some(1), "{body}");
        assert_promtool_accepts(&body);
    }
    assert!(slow.is_running(), "the slow clients gave up early");
}

/// More than the daemon keeps open at once (16), so the oldest are closed to make room.
const IDLE_CLIENTS: usize = 20;

#[test]
#[ignore = "needs root and network namespaces"]
fn wg_is_answered_while_twenty_idle_clients_hold_the_api_socket() {
    let ns = Netns::new("wgfd-idle");
    let daemon = Daemon::start(&ns, wgfabricd(), &unique_interface_name("wgfd"));
    let interface = daemon.interface().to_owned();
    // Every other one sent half a set request, which must not apply when it is cut off.
    let idle: Vec<UnixStream> = (0..IDLE_CLIENTS)
        .map(|n| {
            let mut stream = UnixStream::connect(daemon.socket_path()).unwrap();
            if n % 2 == 0 {
                stream.write_all(b"set=1\nfwmark=7\n").unwrap();
            }
            stream
        })
        .collect();

    let (_, peer) = keypair();
    for round in 0..3 {
        let started = Instant::now();
        let port = (51820 + round).to_string();
        daemon.set(&[
            "listen-port",
            &port,
            "peer",
            &peer.to_base64(),
            "allowed-ips",
            "10.0.0.2/32",
        ]);
        let dump = daemon.dump();
        let took = started.elapsed();
        assert!(took < Duration::from_secs(2), "wg set and wg show took {took:?}");
        assert_eq!(dump.listen_port.to_string(), port);
        assert!(dump.peers.iter().any(|p| p.public_key == peer), "the peer was not added");
        assert_eq!(dump.fwmark, 0, "an unfinished request was applied");
    }
    let started = Instant::now();
    let reply = daemon.uapi("get=1\n\n");
    assert!(started.elapsed() < Duration::from_secs(1), "get=1 took {:?}", started.elapsed());
    assert!(reply.ends_with("errno=0\n\n"), "{reply}");
    // The oldest were closed to make room; the daemon took nothing they had sent for a
    // request of its own.
    let shown = daemon.wg(&["show", &interface, "fwmark"]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(shown.trim(), "off", "an unfinished request was applied");
    drop(idle);
}
