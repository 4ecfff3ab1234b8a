//! `wgfabric exporter`: Prometheus metrics of every userspace WireGuard interface on this
//! host (wgfabricd, wireguard-go, boringtun), read from their API sockets at each scrape.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use wgfabric_host::nftables;
use wgfabric_metrics::{
    policy_families, render, Exporter, FriendlyNames, MetricsServer, RuleCount,
};
use wgfabric_model::Inventory;
use wgfabric_proto::uapi::SOCKET_DIR;

use super::print;

/// Serve Prometheus metrics of every WireGuard interface whose userspace API socket is in
/// the socket directory, under the names of prometheus_wireguard_exporter plus wgfabric's own.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  sudo wgfabric exporter                                 # http://127.0.0.1:9586/metrics\n  \
sudo wgfabric exporter --listen 10.77.0.1:9586 -i fabric.toml   # overlay, host names\n  \
sudo wgfabric exporter --once | promtool check metrics\n\n\
Sockets are found afresh at each scrape. One that does not answer shows as\n\
wgfabric_uapi_up{interface=...} 0. The sockets are root's, so run it as root (or give it\n\
access to the socket directory). See docs/metrics.md for every metric."
)]
pub(crate) struct Args {
    /// Address to serve /metrics on. The metrics name every peer: prefer loopback or the
    /// overlay address over a public one.
    #[arg(long, default_value = "127.0.0.1:9586", value_name = "ADDR:PORT")]
    listen: SocketAddr,
    /// Directory of the userspace API sockets.
    #[arg(long, default_value = SOCKET_DIR, value_name = "DIR")]
    socket_dir: PathBuf,
    /// Inventory whose host names label peers (friendly_name), matched by public key.
    #[arg(short, long, env = "WGFABRIC_INVENTORY", value_name = "FILE")]
    inventory: Option<PathBuf>,
    /// Print one scrape on standard output and exit, instead of serving.
    #[arg(long)]
    once: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let names = match &args.inventory {
        Some(path) => friendly_names(&Inventory::load(path)?),
        None => FriendlyNames::new(),
    };
    let exporter = Exporter::new(&args.socket_dir, names);
    let silent = Mutex::new(BTreeSet::new());
    let scrape = || scrape(&exporter, &silent);
    if args.once {
        print(&scrape())?;
        return Ok(ExitCode::SUCCESS);
    }
    let server =
        MetricsServer::bind(args.listen).with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(
        address = %server.local_addr(),
        socket_dir = %args.socket_dir.display(),
        "serving metrics on http://{}/metrics",
        server.local_addr()
    );
    server.serve(scrape)
}

/// Host names by public key.
fn friendly_names(inventory: &Inventory) -> FriendlyNames {
    inventory.hosts.values().map(|host| (host.public_key, host.name.to_string())).collect()
}

/// One scrape; a socket that stops or starts answering is logged once, not at every scrape.
fn scrape(exporter: &Exporter, silent: &Mutex<BTreeSet<String>>) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let scrape = match exporter.scrape(now) {
        Ok(scrape) => scrape,
        Err(error) => {
            tracing::error!(%error, "cannot list the socket directory");
            return String::new();
        }
    };
    let failing: BTreeSet<String> = scrape.failed.iter().map(|(name, _)| name.clone()).collect();
    let mut silent = silent.lock().unwrap_or_else(PoisonError::into_inner);
    for (interface, error) in &scrape.failed {
        if !silent.contains(interface) {
            tracing::warn!(interface, %error, "{interface}: the userspace API does not answer: {error}");
        }
    }
    let found: BTreeSet<&String> = scrape.interfaces.iter().collect();
    for interface in silent.difference(&failing).filter(|i| found.contains(i)) {
        tracing::info!(interface, "{interface}: the userspace API answers again");
    }
    *silent = failing;
    let mut text = scrape.text;
    text.push_str(&policy_metrics());
    text
}

/// The packets and bytes each rule of this host's firewall (`table inet wgfabric`) counted;
/// nothing when the host has no table or no nft.
fn policy_metrics() -> String {
    let counters = match nftables::counters() {
        Ok(Some(counters)) => counters,
        Ok(None) => return String::new(),
        Err(error) => {
            tracing::debug!(%error, "no policy counters");
            return String::new();
        }
    };
    let counts: Vec<RuleCount<'_>> = counters
        .iter()
        .map(|c| RuleCount {
            chain: &c.chain,
            rule: &c.rule,
            verdict: c.verdict,
            packets: c.packets,
            bytes: c.bytes,
        })
        .collect();
    render(&policy_families(&counts))
}
