//! `wgfabric agent`: keep this host's interface equal to its desired state in the source of
//! truth, and report its status there.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rand_core::OsRng;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use wgfabric_host::agent::{Agent, Settings};

use super::progress::parse_duration;
use super::{load_identities, print_json, EtcdArgs, OutputFormat, FINDINGS};

/// Run this host's agent: follow its desired state in a source of truth (a directory or
/// etcd), sync the live interface through the userspace API with minimal changes, report
/// status, fail over between relays, and take part in key rotations.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
sudo wgfabric agent --host relay-fra --interface wg0 --source /srv/fabric/rendered\n  \
sudo wgfabric agent --host laptop-ana --interface wg0 --source etcd://10.0.0.5:2379/corp\n  \
sudo wgfabric agent --host ci-runner-1 --interface wg0 --source etcd://etcd:2379 --identity id.txt\n  \
sudo wgfabric agent --host relay-fra --interface wg0 --source etcds://etcd.corp:2379/corp \\\n      \
--etcd-cacert /etc/wgfabric/etcd-ca.pem \\\n      \
--etcd-cert /etc/wgfabric/etcd.pem --etcd-key /etc/wgfabric/etcd.key \\\n      \
--etcd-user relay-fra --etcd-password-file /etc/wgfabric/etcd.password\n  \
sudo wgfabric agent --host k8s-node-1 --interface wg0 --source /srv/fabric/rendered --once\n\n\
The daemon (wgfabricd, wireguard-go, boringtun) must already run the interface. The agent\n\
reads SOURCE/desired/HOST.json (or PREFIX/desired/HOST in etcd) and writes its status to\n\
SOURCE/status/HOST.json (PREFIX/status/HOST). A desired state it cannot validate is\n\
refused and reported; the interface keeps running on the last good one. Stop it with\n\
SIGTERM or Ctrl-C: the interface keeps its configuration. See docs/agent.md.")]
pub(crate) struct Args {
    /// This host's name in the inventory.
    #[arg(long)]
    host: String,
    /// The WireGuard interface to manage.
    #[arg(long, value_name = "IFACE")]
    interface: String,
    /// The source of truth: a directory, etcd://HOST:PORT[/PREFIX], or
    /// etcds://HOST:PORT[/PREFIX] for etcd over TLS (default prefix /wgfabric).
    #[arg(long, env = "WGFABRIC_SOURCE", value_name = "SRC")]
    source: String,
    #[command(flatten)]
    etcd: EtcdArgs,
    /// Private key file [default: the one the desired state names, /etc/wgfabric/private.key].
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// age identity file that opens sealed keys (central mode and preshared keys).
    #[arg(long, env = "WGFABRIC_AGE_IDENTITY", value_name = "FILE")]
    identity: Option<PathBuf>,
    /// Leave addresses, MTU, link state, routes and full-tunnel policy routing alone (wg-quick
    /// or networkd manage them).
    #[arg(long)]
    no_link: bool,
    /// Do not run relay failover, even with several relays.
    #[arg(long)]
    no_failover: bool,
    /// How often to report handshake ages and repair drift: a restarted daemon or an
    /// interface created again is back in its configuration within one interval.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    status_interval: Duration,
    /// How often to look at the interface while a rotating peer's new key has not taken over
    /// (on a daemon without successor keys, the bound on packets lost in the handover).
    #[arg(long, default_value = "50ms", value_parser = parse_duration, value_name = "DURATION")]
    takeover_poll: Duration,
    /// Audit log [default: audit.jsonl beside the private key file].
    #[arg(long, env = "WGFABRIC_AUDIT_LOG", value_name = "FILE")]
    audit_log: Option<PathBuf>,
    /// Apply the current desired state once, report, and exit: 0 applied, 1 refused or
    /// failed.
    #[arg(long)]
    once: bool,
    /// Output of --once.
    #[arg(long, value_enum, default_value_t)]
    format: OutputFormat,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = args.etcd.open(&args.source)?;
    let identities = load_identities(args.identity.as_deref())?;
    let settings = Settings {
        key_file: args.key_file,
        identities,
        manage_link: !args.no_link,
        failover: !args.no_failover,
        status_interval: args.status_interval,
        takeover_poll: args.takeover_poll,
        audit_log: args.audit_log,
        ..Settings::new(args.host.parse()?, args.interface)
    };
    let mut agent = Agent::new(settings, store, Box::new(OsRng));
    if args.once {
        let status = agent.run_once();
        match args.format {
            OutputFormat::Json => print_json(&status)?,
            OutputFormat::Human => {
                let applied = status.applied.as_ref().map_or("nothing", |r| r.as_str());
                eprintln!("{}: applied revision {applied}", status.host);
            }
        }
        let ok = status.refused.is_none() && status.error.is_none() && status.applied.is_some();
        return Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(FINDINGS) });
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM, SIGHUP] {
        // A second signal while stopping ends the process at once.
        signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(&stop))
            .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&stop)))
            .context("installing signal handlers")?;
    }
    agent.run(&stop)?;
    Ok(ExitCode::SUCCESS)
}
