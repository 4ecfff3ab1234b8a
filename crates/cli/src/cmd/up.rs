//! `wgfabric up HOST`: bring this host's interface up from its desired state, without
//! wg-quick, `wg` or `ip`.

use std::path::PathBuf;
use std::process::ExitCode;

use rand_core::OsRng;
use wgfabric_host::hostup::{self, HostSource, UpSettings, DEFAULT_STATE_DIR};
use wgfabric_model::names::Name;

use super::{load_identities, print, print_json, EtcdArgs, OutputFormat};

/// Bring a host's WireGuard interface up from its desired state, as wg-quick brings up its
/// file: start wgfabricd (or adopt the daemon already serving the interface), load the
/// private key through the host's key source, set the peers, addresses, MTU and routes, and
/// for a full tunnel wg-quick's policy routing. Everything done is recorded, and undone by
/// `wgfabric down`; a failed `up` undoes it at once.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
sudo wgfabric up laptop-ben --rendered /etc/wgfabric/rendered\n  \
sudo wgfabric up relay-fra --source /srv/fabric/rendered --format json\n  \
sudo wgfabric up k8s-node-1 --source etcd://10.0.0.5:2379/corp --identity /etc/wgfabric/id.txt\n\n\
The desired state comes from DIR/fabric.json (what `wgfabric render --out DIR` writes) or,\n\
with --source, from SRC/desired/HOST.json or etcd, as the agent reads it.\n\n\
What it sets, in order: the daemon; the private key, listen port and peers (userspace API);\n\
the addresses, MTU and link state; a route into the interface for every allowed IP that\n\
is not on-link. A default route (tunnel = \"full\") goes, as with wg-quick, into a table\n\
numbered like the firewall mark (51820 or the first free one), set on the device, with\n\
`not fwmark M table M` and `table main suppress_prefixlength 0` rules for each family\n\
and net.ipv4.conf.all.src_valid_mark=1: every packet but the tunnel's own goes through\n\
the tunnel. A route that conflicts with one already there is an error, and so is a key\n\
that cannot be fetched (before anything is changed) or a missing daemon binary.\n\n\
The record is STATE_DIR/IFACE.json (0600). To keep the peers in sync afterwards, run\n\
`wgfabric agent --no-link` on the same interface. See docs/cli.md.")]
pub(crate) struct Args {
    /// The host, as the inventory names it.
    host: Name,
    /// The interface [default: the one the host's network names].
    #[arg(long, value_name = "IFACE")]
    interface: Option<String>,
    /// The render directory whose fabric.json holds the host's configuration.
    #[arg(long, value_name = "DIR", default_value = "rendered", conflicts_with = "source")]
    rendered: PathBuf,
    /// Read the desired state from a source of truth instead, as the agent does: a directory,
    /// etcd://HOST:PORT[/PREFIX] or etcds://HOST:PORT[/PREFIX].
    #[arg(long, value_name = "SRC")]
    source: Option<String>,
    #[command(flatten)]
    etcd: EtcdArgs,
    /// The daemon to start when none serves the interface [default: wgfabricd beside this
    /// executable, else on PATH].
    #[arg(long, value_name = "PATH")]
    daemon: Option<PathBuf>,
    /// The private key file, instead of the host's key source.
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// age identity file that opens sealed keys (central mode and preshared keys).
    #[arg(long, env = "WGFABRIC_AGE_IDENTITY", value_name = "FILE")]
    identity: Option<PathBuf>,
    /// Where the record of what was done is kept, for `wgfabric down`.
    #[arg(long, env = "WGFABRIC_STATE_DIR", value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Output: what was done, one change a line, or the record as JSON.
    #[arg(long, value_enum, default_value_t)]
    format: OutputFormat,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let source = match &args.source {
        Some(spec) => HostSource::Store(args.etcd.open(spec)?),
        None => HostSource::Rendered(args.rendered),
    };
    let doc = source.desired_state(&args.host)?;
    let settings = UpSettings {
        interface: args.interface,
        state_dir: args.state_dir,
        daemon: args.daemon,
        key_file: args.key_file,
        identities: load_identities(args.identity.as_deref())?,
    };
    let applied = hostup::up(&doc, settings, Box::new(OsRng))?;
    match args.format {
        OutputFormat::Json => print_json(&applied)?,
        OutputFormat::Human => {
            let mut text = format!("{} up for {}\n", applied.interface, applied.host);
            for line in applied.lines() {
                text.push_str(&format!("  {line}\n"));
            }
            print(&text)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
