//! `wgfabric down [IFACE]`: undo what `wgfabric up` did to an interface.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use wgfabric_host::hostup::{self, DEFAULT_STATE_DIR};

use super::{print, print_json, OutputFormat};

/// Take down an interface that `wgfabric up` brought up: remove the rules, routes and
/// addresses it added, put back the MTU, link state, firewall mark and kernel parameters it
/// changed, and stop the daemon it started. Nothing else is touched.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
sudo wgfabric down\n  \
sudo wgfabric down wg0 --format json\n  \
sudo wgfabric down wg0 --stop-daemon\n\n\
Without IFACE, the one interface recorded in STATE_DIR is taken down (several are an\n\
error that lists them). A daemon that `up` adopted keeps running, with its key and peers,\n\
unless --stop-daemon is given; one that `up` started is stopped by deleting its interface,\n\
as wg-quick does. What cannot be undone stays recorded, and the next `down` tries again.\n\
See docs/cli.md.")]
pub(crate) struct Args {
    /// The interface [default: the only one brought up].
    #[arg(value_name = "IFACE")]
    interface: Option<String>,
    /// Stop the daemon even if `up` adopted it rather than started it.
    #[arg(long)]
    stop_daemon: bool,
    /// Where `up` keeps its records.
    #[arg(long, env = "WGFABRIC_STATE_DIR", value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Output: what was undone, one change a line, or as JSON.
    #[arg(long, value_enum, default_value_t)]
    format: OutputFormat,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let interface = match args.interface {
        Some(interface) => interface,
        None => {
            let mut up = hostup::interfaces_up(&args.state_dir)?;
            match up.len() {
                1 => up.remove(0),
                0 => bail!(
                    "`wgfabric up` brought no interface up (nothing is recorded in {})",
                    args.state_dir.display()
                ),
                _ => bail!("several interfaces are up: {}; name one", up.join(", ")),
            }
        }
    };
    let undone = hostup::down(&args.state_dir, &interface, args.stop_daemon)?;
    match args.format {
        OutputFormat::Json => print_json(&undone)?,
        OutputFormat::Human => {
            let mut text = format!("{interface} down for {}; undone:\n", undone.undone.host);
            for line in undone.undone.lines() {
                text.push_str(&format!("  {line}\n"));
            }
            if !undone.daemon_stopped && undone.undone.daemon.is_some() {
                text.push_str("  (the adopted daemon keeps running)\n");
            }
            print(&text)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
