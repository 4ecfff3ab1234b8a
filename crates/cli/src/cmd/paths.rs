//! `wgfabric paths`: for each pair of spokes, whether their traffic goes direct or through a
//! relay, and why, as their agents report it in their statuses.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use wgfabric_model::names::Name;
use wgfabric_store::state::{reported_paths, PathMode, PathReason};
use wgfabric_store::store::Kind;

use super::{print, print_json, InventoryArgs, OutputFormat, SourceArgs};

/// Show, for each pair of spokes, whether their traffic goes direct or through a relay, why,
/// since when, and the round-trip time, as the agents last reported.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
wgfabric paths --source etcd://10.0.0.5:2379\n  \
wgfabric paths --host laptop-ana --format json | jq '.pairs[] | select(.mode == \"relayed\")'\n\n\
Each pair is shown once, from the end whose name sorts first; `peer_view` is what the\n\
other end reports. docs/paths.md explains every reason.")]
pub(crate) struct Args {
    #[command(flatten)]
    inventory: InventoryArgs,
    #[command(flatten)]
    source: SourceArgs,
    /// Only the pairs this host is part of; repeat for several.
    #[arg(long, value_name = "HOST")]
    host: Vec<Name>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: OutputFormat,
}

/// One pair, as `--format json` prints it.
#[derive(Debug, Serialize)]
struct Pair {
    host: Name,
    peer: Name,
    mode: PathMode,
    via: Option<Name>,
    reason: PathReason,
    since: u64,
    endpoint: Option<SocketAddr>,
    rtt_us: Option<u64>,
    /// What the peer's agent reports of the same pair, when it reports it.
    peer_view: Option<View>,
}

/// One end's word on a pair.
#[derive(Debug, Serialize)]
struct View {
    mode: PathMode,
    reason: PathReason,
    since: u64,
}

/// What `--format json` prints.
#[derive(Debug, Serialize)]
struct Report {
    source: String,
    pairs: Vec<Pair>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let spec = args.source.spec(&args.inventory);
    let store = args.source.etcd.open(&spec)?;
    let (paths, unreadable) = reported_paths(&store.list(Kind::Status)?);
    for host in unreadable {
        tracing::warn!(%host, "status unreadable; its pairs are left out");
    }
    let wanted = |host: &Name, peer: &Name| {
        args.host.is_empty() || args.host.contains(host) || args.host.contains(peer)
    };
    let pairs: Vec<Pair> = paths
        .iter()
        .filter(|((host, peer), _)| wanted(host, peer))
        // Once per pair: from the end whose name sorts first, or the only one that reports.
        .filter(|((host, peer), _)| {
            host < peer || !paths.contains_key(&(peer.clone(), host.clone()))
        })
        .map(|((host, peer), path)| Pair {
            host: host.clone(),
            peer: peer.clone(),
            mode: path.mode,
            via: path.via.clone(),
            reason: path.reason,
            since: path.since,
            endpoint: path.endpoint,
            rtt_us: path.rtt_us,
            peer_view: paths.get(&(peer.clone(), host.clone())).map(|other| View {
                mode: other.mode,
                reason: other.reason,
                since: other.since,
            }),
        })
        .collect();
    match args.format {
        OutputFormat::Json => print_json(&Report { source: store.describe(), pairs })?,
        OutputFormat::Human => {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
            print(&table(&pairs, now))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The pairs as a table for people.
fn table(pairs: &[Pair], now: u64) -> String {
    if pairs.is_empty() {
        return "no agent reports a pair of spokes\n".to_owned();
    }
    let rows: Vec<[String; 6]> = pairs
        .iter()
        .map(|pair| {
            let mut reason = pair.reason.as_str().to_owned();
            if let Some(view) = pair.peer_view.as_ref().filter(|view| view.reason != pair.reason) {
                let _ = write!(reason, " ({} says {})", pair.peer, view.reason.as_str());
            }
            [
                format!("{} <-> {}", pair.host, pair.peer),
                match pair.mode {
                    PathMode::Direct => {
                        pair.endpoint.map_or("direct".into(), |e| format!("direct {e}"))
                    }
                    PathMode::Relayed => "relayed".into(),
                },
                pair.via.as_ref().map_or("-".into(), ToString::to_string),
                reason,
                format!("{}s ago", now.saturating_sub(pair.since)),
                pair.rtt_us.map_or("-".into(), |us| format!("{:.1} ms", us as f64 / 1000.0)),
            ]
        })
        .collect();
    let header = ["PAIR", "PATH", "VIA", "REASON", "SINCE", "RTT"].map(String::from);
    let widths: Vec<usize> = (0..6)
        .map(|column| rows.iter().chain([&header]).map(|row| row[column].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in [&header].into_iter().chain(&rows) {
        let cells: Vec<String> =
            row.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}
