//! `wgfabric addresses`: show, update and release overlay addresses in the lock file.

use std::process::ExitCode;

use anyhow::Context as _;
use wgfabric_audit::Action;
use wgfabric_model::{Inventory, Lock};

use super::trail::AuditLogArgs;
use super::{print, print_json, InventoryArgs, OutputFormat};

/// Show the overlay addresses of every host, write new assignments to the lock file, or
/// release the addresses held for a removed host.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  wgfabric addresses                    # list (assigning new hosts in memory only)\n  \
wgfabric addresses --format json\n  wgfabric addresses update             # write fabric.lock\n  \
wgfabric addresses release old-ci-7   # let old-ci-7's addresses be reused\n\n\
Hosts keep their addresses for as long as they stay in their network; a removed host's\n\
addresses are held until released. Releases are recorded in the audit log."
)]
pub(crate) struct Args {
    #[command(flatten)]
    inventory: InventoryArgs,
    #[command(subcommand)]
    action: Option<LockAction>,
    /// Output format of the listing.
    #[arg(long, value_enum, default_value_t)]
    format: OutputFormat,
}

#[derive(Debug, clap::Subcommand)]
enum LockAction {
    /// Assign addresses to new hosts and write the lock file.
    Update,
    /// Free the addresses held for a removed host.
    Release {
        /// The removed host.
        host: String,
        #[command(flatten)]
        audit: AuditLogArgs,
    },
}

#[derive(serde::Serialize)]
struct Row<'a> {
    host: &'a str,
    network: &'a str,
    ipv4: Option<String>,
    ipv6: Option<String>,
    removed: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.action {
        None => list(&args.inventory, args.format),
        Some(LockAction::Update) => {
            let (fabric, changed) = args.inventory.load()?;
            if changed {
                args.inventory.write_lock(fabric.lock())?;
                let lock = args.inventory.lock_path();
                tracing::info!(lock = %lock.display(), "updated {}", lock.display());
            } else {
                let lock = args.inventory.lock_path();
                tracing::info!(lock = %lock.display(), "{} is up to date", lock.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(LockAction::Release { host, audit }) => {
            let inventory = Inventory::load(args.inventory.path())?;
            let mut trail = audit.open(&args.inventory.dir())?;
            let lock_path = args.inventory.lock_path();
            let mut lock =
                Lock::load(&lock_path)?.update(&inventory).context("updating the lock first")?;
            let released = lock.release(&host)?;
            args.inventory.write_lock(&lock)?;
            for released in released {
                let addresses: Vec<String> =
                    released.assignment.addresses().map(|a| a.to_string()).collect();
                let addresses = addresses.join(", ");
                tracing::info!(
                    host,
                    network = %released.assignment.network,
                    addresses,
                    "released {addresses} of removed host {host}"
                );
                trail.append(trail.entry(Action::AddressesReleased, &host).detail(addresses))?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn list(inventory: &InventoryArgs, format: OutputFormat) -> anyhow::Result<ExitCode> {
    let (fabric, changed) = inventory.load()?;
    let lock = fabric.lock();
    let text = |addr: Option<std::net::IpAddr>| addr.map(|a| a.to_string());
    let live = lock.hosts.iter().map(|(host, a)| Row {
        host: host.as_str(),
        network: a.network.as_str(),
        ipv4: text(a.ipv4),
        ipv6: text(a.ipv6),
        removed: false,
    });
    let held = lock.removed.iter().map(|r| Row {
        host: r.host.as_str(),
        network: r.assignment.network.as_str(),
        ipv4: text(r.assignment.ipv4),
        ipv6: text(r.assignment.ipv6),
        removed: true,
    });
    let rows: Vec<Row<'_>> = live.chain(held).collect();
    match format {
        OutputFormat::Json => {
            print_json(&serde_json::json!({ "addresses": rows, "lock_changed": changed }))?
        }
        OutputFormat::Human => {
            let mut out = format!("{:<24} {:<12} {:<16} {}\n", "HOST", "NETWORK", "IPV4", "IPV6");
            for row in &rows {
                let host = if row.removed {
                    format!("{} (removed)", row.host)
                } else {
                    row.host.to_owned()
                };
                out.push_str(&format!(
                    "{host:<24} {:<12} {:<16} {}\n",
                    row.network,
                    row.ipv4.as_deref().unwrap_or("-"),
                    row.ipv6.as_deref().unwrap_or("-")
                ));
            }
            if changed {
                out.push_str("(new hosts shown with addresses not yet in fabric.lock: run `wgfabric addresses update`)\n");
            }
            print(&out)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
