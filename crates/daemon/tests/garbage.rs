//! A million datagrams of garbage, sent as fast as a socket takes them from the very address
//! and port wgfabricd knows its peer by, some naming the live session's receiver index: a
//! transfer through the tunnel completes hash-checked meanwhile, memory stays flat, every
//! datagram is accounted for (counted by reason in the metrics, or dropped by the kernel's
//! socket buffer before wgfabricd saw it), and the log does not grow a line per packet.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use wgfabric_testkit::scenarios::{self, Link, Psk, Side, Tunnel, Underlay, INNER_V4, PORTS};
use wgfabric_testkit::{garbage_relay, scrape, transfer, wait_until, Netns, WithFlags};

const GARBAGE: u64 = 1_000_000;
const TWENTY_MB: u64 = 20 << 20;
const METRICS_PORT: u16 = 9589;
/// Where the relay listens, on the peer's side: the peer's endpoint for wgfabricd.
const RELAY_PORT: u16 = 40_000;

/// Every `wgfabric_packets_dropped_total` sample, added up.
fn drops_counted(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|line| line.starts_with("wgfabric_packets_dropped_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Datagrams the kernel dropped on `ns`'s UDP sockets bound to `port` (a full receive buffer).
fn kernel_drops(ns: &Netns, port: u16) -> u64 {
    let local_port = format!(":{port:04X}");
    ["/proc/net/udp", "/proc/net/udp6"]
        .iter()
        .flat_map(|table| ns.run(&["cat", table]).lines().map(str::to_owned).collect::<Vec<_>>())
        .filter(|line| line.split_whitespace().nth(1).is_some_and(|a| a.ends_with(&local_port)))
        .filter_map(|line| line.split_whitespace().last()?.parse::<u64>().ok())
        .sum()
}

/// Packets the kernel dropped on every CPU's input backlog (`netdev_max_backlog` overflows),
/// before any socket saw them: machine-wide, so other traffic counts too.
fn backlog_drops() -> u64 {
    let stat = std::fs::read_to_string("/proc/net/softnet_stat").unwrap_or_default();
    stat.lines()
        .filter_map(|line| u64::from_str_radix(line.split_whitespace().nth(1)?, 16).ok())
        .sum()
}

/// The relay's start and report files, removed on drop.
struct RelayFiles {
    start: PathBuf,
    report: PathBuf,
}

impl RelayFiles {
    fn new() -> Self {
        let name =
            |what| std::env::temp_dir().join(format!("garbage-{what}-{}", std::process::id()));
        Self { start: name("start"), report: name("report") }
    }
}

impl Drop for RelayFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.start);
        let _ = std::fs::remove_file(&self.report);
    }
}

#[test]
#[ignore = "needs root and network namespaces"]
fn a_million_datagrams_of_garbage_from_the_peers_own_endpoint_change_nothing() {
    let daemon = Path::new(env!("CARGO_BIN_EXE_wgfabricd"));
    let server = WithFlags::new(daemon, &format!("--metrics 127.0.0.1:{METRICS_PORT}"));
    let peer = common::wgfabricd();
    if !scenarios::available(&peer, &server.implementation()) {
        return;
    }
    let link = Link::new(Underlay::V4);
    let mut tunnel = Tunnel::new(&link, &peer, &server.implementation(), Psk::None);
    let relay_at = SocketAddr::new(link.underlay_addr(Side::A), RELAY_PORT);
    let target = SocketAddr::new(link.underlay_addr(Side::B), PORTS[1]);
    let files = RelayFiles::new();
    let _relay = garbage_relay(&link.a, relay_at, target, GARBAGE, &files.start, &files.report);
    tunnel.a.set(&["peer", &tunnel.b_key.to_base64(), "endpoint", &relay_at.to_string()]);
    assert!(
        link.a.ping_until_reply(INNER_V4[1], Duration::from_secs(15)),
        "no tunnel via the relay"
    );

    let before = scrape(&link.b, METRICS_PORT);
    let kernel_before = kernel_drops(&link.b, PORTS[1]);
    let backlog_before = backlog_drops();
    let rss_before = tunnel.b.resident_kib().expect("wgfabricd runs");
    let log_before = tunnel.b.log_text().lines().count();
    // Only now, with every baseline taken, does the garbage start.
    std::fs::write(&files.start, "").expect("writing the relay's start file");

    let listen = SocketAddr::new(INNER_V4[1].parse().unwrap(), 5201);
    let mut transfers = 0;
    while !files.report.exists() {
        let done = transfer(&link.b, listen, &link.a, TWENTY_MB)
            .unwrap_or_else(|e| panic!("transfer {transfers} failed under garbage: {e}"));
        eprintln!("under garbage: {}", done.trim());
        transfers += 1;
    }
    assert!(transfers > 0);
    let sent_line = std::fs::read_to_string(&files.report).unwrap();
    eprintln!("garbage: {}", sent_line.trim());
    let sent: u64 = sent_line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap();
    assert!(sent > GARBAGE * 9 / 10, "{sent_line}");

    // The tunnel still works, and the last counts reach the metrics.
    let stats = link.a.ping(INNER_V4[1], 5);
    assert!(stats.all_answered(), "the tunnel suffered: {stats:?}");
    assert!(!tunnel.b.has_exited(), "wgfabricd died");
    let kernel = kernel_drops(&link.b, PORTS[1]) - kernel_before;
    let backlog = backlog_drops() - backlog_before;
    let mut counted = 0;
    let accounted = wait_until(Duration::from_secs(5), || {
        counted = drops_counted(&scrape(&link.b, METRICS_PORT)) - drops_counted(&before);
        counted + kernel + backlog >= sent
    });
    eprintln!(
        "accounted: {counted} counted, {kernel} socket-buffer drops, {backlog} backlog drops"
    );
    assert!(
        accounted && counted + kernel <= sent + 1000,
        "{sent} sent: {counted} counted by wgfabricd, {kernel} dropped by its sockets' buffers, \
         {backlog} by the machine's input backlogs"
    );
    let growth = tunnel.b.resident_kib().unwrap_or(0) - rss_before;
    assert!(growth.abs() <= 5 * 1024, "wgfabricd's memory moved by {growth} KiB");
    let log_lines = tunnel.b.log_text().lines().count() - log_before;
    assert!(log_lines < 100, "{log_lines} log lines for {sent} bad datagrams");
}
