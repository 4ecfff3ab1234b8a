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
    path_families, policy_families, render, Exporter, FriendlyNames, MetricsServer, PathSample,
    RuleCount,
};
use wgfabric_model::names::Name;
use wgfabric_model::Inventory;
use wgfabric_proto::uapi::SOCKET_DIR;
use wgfabric_store::state::{reported_paths, PathMode};
use wgfabric_store::store::{Kind, Store};

use super::print;
use super::EtcdArgs;

/// Serve Prometheus metrics of every WireGuard interface whose userspace API socket is in
/// the socket directory, under the names of prometheus_wireguard_exporter plus wgfabric's own.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  sudo wgfabric exporter                                 # http://127.0.0.1:9586/metrics\n  \
sudo wgfabric exporter --listen 10.77.0.1:9586 -i fabric.toml   # overlay, host names\n  \
sudo wgfabric exporter --once | promtool check metrics\n  \
wgfabric exporter --source etcd://10.0.0.5:2379 --host laptop-ana   # with its direct paths\n\n\
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
    /// Also export the direct paths between spokes that the agents report in this source
    /// (wgfabric_path_*), read at each scrape: a directory, or etcd://HOST:PORT[/PREFIX].
    #[arg(long, value_name = "SRC")]
    source: Option<String>,
    /// With --source, only the pairs these hosts report (repeat for several; the default is
    /// every pair in the source). On a spoke, its own name keeps each pair on one exporter.
    #[arg(long, value_name = "HOST", requires = "source")]
    host: Vec<Name>,
    #[command(flatten)]
    etcd: EtcdArgs,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let names = match &args.inventory {
        Some(path) => friendly_names(&Inventory::load(path)?),
        None => FriendlyNames::new(),
    };
    let exporter = Exporter::new(&args.socket_dir, names);
    let silent = Mutex::new(BTreeSet::new());
    let paths = match &args.source {
        Some(spec) => Some(args.etcd.open(spec)?),
        None => None,
    };
    let scrape = || {
        let mut text = scrape(&exporter, &silent);
        if let Some(store) = &paths {
            text.push_str(&path_metrics(store.as_ref(), &args.host));
        }
        text
    };
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

/// What the agents in `store` report of their direct paths (only `hosts`' when given);
/// nothing when the store cannot be read, which is logged.
fn path_metrics(store: &dyn Store, hosts: &[Name]) -> String {
    let statuses = match store.list(Kind::Status) {
        Ok(statuses) => statuses,
        Err(error) => {
            tracing::warn!(%error, "cannot read the agents' statuses for their paths");
            return String::new();
        }
    };
    let (paths, unreadable) = reported_paths(&statuses);
    for host in unreadable {
        tracing::debug!(%host, "status unreadable; its paths are left out");
    }
    let samples: Vec<PathSample<'_>> = paths
        .iter()
        .filter(|((host, _), _)| hosts.is_empty() || hosts.contains(host))
        .map(|((host, peer), path)| PathSample {
            host: host.as_str(),
            peer: peer.as_str(),
            direct: path.mode == PathMode::Direct,
            via: path.via.as_ref().map_or("", Name::as_str),
            reason: path.reason.as_str(),
            since: path.since,
            rtt_us: path.rtt_us,
        })
        .collect();
    render(&path_families(&samples))
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
