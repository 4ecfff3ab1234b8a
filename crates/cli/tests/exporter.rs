//! `wgfabric exporter` against a userspace API socket served by the test: what it prints
//! passes `promtool check metrics`, and a real Prometheus server scraping it on loopback
//! answers PromQL queries over its HTTP API with the expected series (and loads the alert
//! rules of deploy/prometheus/).
#![allow(clippy::disallowed_methods, reason = "a system test waits in real time")]

mod util;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use util::{assert_code, repo, stdout, Scratch};
use wgfabric_proto::keys::{PrivateKey, PublicKey};
use wgfabric_proto::uapi::{format_get, DeviceSnapshot, PeerSnapshot, GET_REQUEST};

/// laptop-ana's public key in examples/fabric.toml.
const LAPTOP_ANA: &str = "lQHoZhX1IH7QKoFVyD+5cYLHkcWE9AgmSIO1FWSncQo=";

/// A userspace API socket `DIR/wg7.sock` answering `get=1` like a daemon with one peer,
/// laptop-ana, that handshook 30 seconds ago. Stops (and removes the socket) on drop.
struct FakeDaemon {
    socket: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeDaemon {
    fn start(dir: &Path) -> Self {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let mut peer = PeerSnapshot::new(PublicKey::from_base64(LAPTOP_ANA).unwrap());
        peer.endpoint = Some("192.0.2.7:51820".parse().unwrap());
        peer.last_handshake_time = Some(now - Duration::from_secs(30));
        peer.tx_bytes = 1234;
        peer.rx_bytes = 5678;
        peer.allowed_ips = vec!["10.77.0.3/32".parse().unwrap()];
        let device = DeviceSnapshot {
            private_key: Some(PrivateKey::from_bytes([9; 32])),
            listen_port: 51820,
            fwmark: 0,
            peers: vec![peer],
        };
        let answer = format_get(&device);
        let socket = dir.join("wg7.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                    let Ok(mut stream) = stream else { continue };
                    let mut request = [0u8; GET_REQUEST.len()];
                    if stream.read_exact(&mut request).is_ok() {
                        let _ = stream.write_all(answer.as_bytes());
                    }
                }
            })
        };
        Self { socket, stop, thread: Some(thread) }
    }
}

impl Drop for FakeDaemon {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = std::os::unix::net::UnixStream::connect(&self.socket);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// A child process killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wgfabric(scratch: &Scratch, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wgfabric"));
    command.args(args).current_dir(&scratch.0).env_remove("WGFABRIC_INVENTORY");
    command
}

#[test]
fn one_scrape_names_peers_by_host_and_passes_promtool() {
    let scratch = Scratch::with_example();
    let sockets = scratch.path("sockets");
    std::fs::create_dir(&sockets).unwrap();
    let _daemon = FakeDaemon::start(&sockets);
    let output =
        wgfabric(&scratch, &["exporter", "--once", "--socket-dir", "sockets", "-i", "fabric.toml"])
            .output()
            .unwrap();
    assert_code(&output, 0);
    let text = stdout(&output);
    let labels = format!(
        "interface=\"wg7\",public_key=\"{LAPTOP_ANA}\",allowed_ips=\"10.77.0.3/32\",friendly_name=\"laptop-ana\""
    );
    for line in [
        format!("wireguard_sent_bytes_total{{{labels}}} 1234"),
        format!("wireguard_received_bytes_total{{{labels}}} 5678"),
        format!("wgfabric_peer_connected{{interface=\"wg7\",public_key=\"{LAPTOP_ANA}\",friendly_name=\"laptop-ana\"}} 1"),
        "wgfabric_uapi_up{interface=\"wg7\"} 1".to_owned(),
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
    }
    let private = PrivateKey::from_bytes([9; 32]);
    assert!(
        !text.contains(&private.to_hex_secret()) && !text.contains(&private.to_base64_secret())
    );

    wgfabric_testkit::assert_promtool_accepts(&text);
}

/// `GET path` on a local HTTP server: the body of a 200 answer, `None` if it is not up yet.
fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.lines().next()?;
    (status.split(' ').nth(1) == Some("200")).then(|| body.to_owned())
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs PromQL `query` until it yields a sample, for at most `timeout`; the sample's value.
fn query(prometheus: &str, query: &str, timeout: Duration) -> Option<String> {
    let encoded = percent_encode(query);
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let answer = http_get(prometheus, &format!("/api/v1/query?query={encoded}"));
        let value = answer
            .and_then(|body| serde_json::from_str::<Value>(&body).ok())
            .and_then(|v| v["data"]["result"][0]["value"][1].as_str().map(str::to_owned));
        if value.is_some() {
            return value;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    None
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn a_prometheus_server_scrapes_the_exporter_and_answers_promql() {
    if wgfabric_testkit::require_tool("prometheus").is_err() {
        return;
    }
    let scratch = Scratch::with_example();
    let sockets = scratch.path("sockets");
    std::fs::create_dir(&sockets).unwrap();
    let _daemon = FakeDaemon::start(&sockets);

    let mut exporter = Running(
        wgfabric(
            &scratch,
            &[
                "exporter",
                "--listen",
                "127.0.0.1:0",
                "--socket-dir",
                "sockets",
                "-i",
                "fabric.toml",
                "--log-format",
                "json",
            ],
        )
        .stderr(Stdio::piped())
        .spawn()
        .unwrap(),
    );
    let mut events = BufReader::new(exporter.0.stderr.take().unwrap()).lines();
    let exporter_addr = loop {
        let line = events.next().expect("the exporter exited before serving").unwrap();
        let event: Value = serde_json::from_str(&line).unwrap();
        if let Some(address) = event["fields"]["address"].as_str() {
            break address.to_owned();
        }
    };

    let alerts = repo().join("deploy/prometheus/alerts.yml");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
         scrape_configs:\n  - job_name: wgfabric\n    static_configs:\n      - targets: [\"{exporter_addr}\"]\n",
        alerts.display()
    );
    std::fs::write(scratch.path("prometheus.yml"), config).unwrap();
    let prometheus_addr = format!("127.0.0.1:{}", free_port());
    let _prometheus = Running(
        Command::new("prometheus")
            .arg(format!("--config.file={}", scratch.path("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", scratch.path("tsdb").display()))
            .arg(format!("--web.listen-address={prometheus_addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    let timeout = Duration::from_secs(60);
    let sent = query(
        &prometheus_addr,
        "wireguard_sent_bytes_total{friendly_name=\"laptop-ana\",interface=\"wg7\"}",
        timeout,
    );
    assert_eq!(sent.as_deref(), Some("1234"), "Prometheus never got the series");
    let connected =
        query(&prometheus_addr, "sum(wgfabric_peer_connected{job=\"wgfabric\"})", timeout);
    assert_eq!(connected.as_deref(), Some("1"));
    let up = query(&prometheus_addr, "up{job=\"wgfabric\"}", timeout);
    assert_eq!(up.as_deref(), Some("1"));

    let rules = http_get(&prometheus_addr, "/api/v1/rules").expect("the rules API answers");
    let rules: Value = serde_json::from_str(&rules).unwrap();
    let loaded: Vec<&str> = rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|group| group["rules"].as_array().unwrap())
        .filter_map(|rule| rule["name"].as_str())
        .collect();
    assert!(loaded.contains(&"WireGuardPeerNoHandshake"), "alert rules not loaded: {loaded:?}");

    // Every query of the Grafana dashboard is valid PromQL, with its variables filled in.
    let dashboard = std::fs::read_to_string(repo().join("deploy/grafana/wgfabric.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&dashboard).unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            let filled = expr
                .replace("$instance", ".*")
                .replace("$interface", ".*")
                .replace("$__rate_interval", "1m");
            let path = format!("/api/v1/query?query={}", percent_encode(&filled));
            let answer = http_get(&prometheus_addr, &path)
                .unwrap_or_else(|| panic!("Prometheus refused the dashboard's {expr}"));
            let answer: Value = serde_json::from_str(&answer).unwrap();
            assert_eq!(answer["status"], "success", "{expr}: {answer}");
        }
    }
}

/// With `--source`, the direct paths the agents report become `wgfabric_path_*` series, for
/// every reporting host or only those of `--host`.
#[test]
fn the_agents_paths_are_exported_from_the_source() {
    let scratch = Scratch::new();
    let status = scratch.path("source/status");
    std::fs::create_dir_all(&status).unwrap();
    let report = |host: &str, paths: &str| {
        format!(
            r#"{{"format": 1, "host": "{host}", "time": 1700000000, "applied": null,
                "agent": {{"version": "0", "interface": "wg0", "successor": true}},
                "paths": [{paths}]}}"#
        )
    };
    let ana = report(
        "laptop-ana",
        r#"{"peer": "laptop-ben", "mode": "direct", "reason": "handshake", "since": 1700000000,
            "endpoint": "198.51.100.2:51820", "rtt_us": 812},
           {"peer": "ci-7", "mode": "relayed", "via": "relay-fra", "reason": "symmetric-nat",
            "since": 1699999000}"#,
    );
    let ben = report(
        "laptop-ben",
        r#"{"peer": "laptop-ana", "mode": "direct", "reason": "handshake", "since": 1700000001}"#,
    );
    std::fs::write(status.join("laptop-ana.json"), ana).unwrap();
    std::fs::write(status.join("laptop-ben.json"), ben).unwrap();
    std::fs::create_dir(scratch.path("sockets")).unwrap();
    let scrape = |extra: &[&str]| {
        let mut args = vec!["exporter", "--once", "--socket-dir", "sockets", "--source", "source"];
        args.extend_from_slice(extra);
        let output = wgfabric(&scratch, &args).output().unwrap();
        assert_code(&output, 0);
        stdout(&output)
    };

    let text = scrape(&[]);
    for line in [
        "wgfabric_path_direct{host=\"laptop-ana\",peer=\"laptop-ben\"} 1",
        "wgfabric_path_direct{host=\"laptop-ana\",peer=\"ci-7\"} 0",
        "wgfabric_path_direct{host=\"laptop-ben\",peer=\"laptop-ana\"} 1",
        "wgfabric_path_info{host=\"laptop-ana\",peer=\"ci-7\",mode=\"relayed\",via=\"relay-fra\",reason=\"symmetric-nat\"} 1",
        "wgfabric_path_since_timestamp_seconds{host=\"laptop-ana\",peer=\"ci-7\"} 1699999000",
        "wgfabric_path_rtt_seconds{host=\"laptop-ana\",peer=\"laptop-ben\"} 0.000812",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
    }
    wgfabric_testkit::assert_promtool_accepts(&text);

    let text = scrape(&["--host", "laptop-ben"]);
    assert!(text.contains("wgfabric_path_direct{host=\"laptop-ben\",peer=\"laptop-ana\"} 1"));
    assert!(!text.contains("host=\"laptop-ana\""), "{text}");
}
