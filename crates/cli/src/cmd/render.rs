//! `wgfabric render`: write every host's configuration, or print one host's.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
use wgfabric_audit::{Action, Fingerprint};
use wgfabric_model::render::{
    render, render_into, Format, HostKeys, Output, RenderedFile, Request,
};
use wgfabric_model::Fabric;

use super::trail::{AuditLogArgs, Trail};
use super::{load_identities, print, InventoryArgs, OutputFormat};

/// Render configurations: wg-quick, systemd-networkd, `wg setconf`, JSON, Terraform, Ansible.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  wgfabric render                          # every host, every format, into rendered/\n  \
wgfabric render laptop-ana               # print laptop-ana's wg-quick file\n  \
wgfabric render relay-fra --format networkd\n  \
wgfabric render --out /tmp/out --format wg-quick --format setconf\n  \
wgfabric render --format terraform       # flat JSON for Terraform's external data source\n  \
wgfabric render --out /run/bootstrap --identity ci-identity.txt   # central mode, keys inlined\n\n\
Files are written all or nothing, with the inventory's lock file and DIR/state.json (for\n\
`wgfabric plan`); files that already hold what was rendered are left alone. Nothing is\n\
rendered while `wgfabric check` reports errors. The audit log\n\
records each host whose files changed (config.written) and, with --identity, each key\n\
decrypted (key.decrypted)."
)]
pub(crate) struct Args {
    #[command(flatten)]
    inventory: InventoryArgs,
    /// Render only this host. Without --out its file is printed.
    host: Option<String>,
    /// Output directory [default: rendered/ beside the inventory, when no HOST is given].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Formats to produce (repeat for several) [default: all with --out, wg-quick otherwise].
    #[arg(long, value_enum)]
    format: Vec<Format>,
    /// How findings that stop the render are printed: text on standard error, or JSON on
    /// standard output as `wgfabric check --format json` prints them.
    #[arg(long, value_enum, default_value_t, value_name = "FORMAT")]
    message_format: OutputFormat,
    /// age identity file that opens keys/HOST.age (central mode): private keys are inlined.
    #[arg(long, env = "WGFABRIC_AGE_IDENTITY", value_name = "FILE")]
    identity: Option<PathBuf>,
    #[command(flatten)]
    audit: AuditLogArgs,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (fabric, lock_changed) = args.inventory.load_checked("rendering", args.message_format)?;
    if args.identity.is_some() && args.out.is_none() {
        bail!("--identity inlines private keys: give --out DIR, outside the repository, so they land in files created 0600");
    }
    let fabric_wide_only = !args.format.is_empty() && args.format.iter().all(|f| !f.is_per_host());
    let out = match (&args.out, &args.host) {
        (Some(out), _) => Some(out.clone()),
        (None, Some(_)) => None,
        (None, None) if fabric_wide_only => None,
        (None, None) => Some(args.inventory.rendered_dir()),
    };
    let mut formats = args.format.clone();
    if formats.is_empty() {
        formats = if out.is_none() { vec![Format::WgQuick] } else { Format::ALL.to_vec() };
    }
    formats.sort();
    formats.dedup();
    let identities = load_identities(args.identity.as_deref())?;
    // Files are only written with an output directory, and keys only decrypted then.
    let mut trail = out.as_ref().map(|_| args.audit.open(&args.inventory.dir())).transpose()?;
    let keys = identities
        .as_ref()
        .map(|identities| HostKeys::decrypt(&fabric, args.host.as_deref(), identities))
        .transpose()?;
    if let (Some(trail), Some(keys)) = (&mut trail, &keys) {
        let entries = keys.hosts().map(|(host, public_key)| {
            trail
                .entry(Action::KeyDecrypted, host.as_str())
                .after(Fingerprint::of_public_key(&public_key))
                .detail("inlined into the rendered configuration")
        });
        trail.append_all(entries.collect())?;
    }
    let request = Request { host: args.host.as_deref(), formats: &formats, keys: keys.as_ref() };

    match (out, trail) {
        (Some(out), Some(mut trail)) => {
            write_files(&args, &fabric, request, &out, lock_changed, &mut trail)?;
        }
        _ => {
            let files = render(&fabric, request)?;
            if lock_changed {
                eprintln!(
                    "note: new hosts' addresses are not in {} yet; run `wgfabric addresses update`",
                    args.inventory.lock_path().display()
                );
            }
            print_files(&files)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_files(files: &[RenderedFile]) -> anyhow::Result<()> {
    let many = files.len() > 1;
    for file in files {
        if many {
            print(&format!("# ==> {} <==\n", file.path.display()))?;
        }
        print(&file.contents)?;
    }
    Ok(())
}

/// Renders into `out` (only the files that changed, the state for `plan` and the lock if it
/// changed, all or nothing), then records each host whose files changed or were removed.
fn write_files(
    args: &Args,
    fabric: &Fabric,
    request: Request<'_>,
    out: &Path,
    lock_changed: bool,
    trail: &mut Trail,
) -> anyhow::Result<()> {
    let lock_path = args.inventory.lock_path();
    let lock_text = lock_changed.then(|| fabric.lock().to_toml());
    let lock = lock_text.as_deref().map(|text| (lock_path.as_path(), text));
    let report = render_into(fabric, request, Output { dir: out, lock })?;
    for relative in &report.removed {
        let path = out.join(relative);
        tracing::info!(path = %path.display(), "removed {}", path.display());
    }
    tracing::info!(
        hosts = report.hosts,
        written = report.written,
        unchanged = report.unchanged,
        removed = report.removed.len(),
        out = %out.display(),
        lock_updated = lock_changed,
        "rendered {} host(s) into {}: {} file(s) written, {} unchanged{}{}",
        report.hosts,
        out.display(),
        report.written,
        report.unchanged,
        if report.removed.is_empty() {
            String::new()
        } else {
            format!(", {} removed", report.removed.len())
        },
        if lock_changed { format!("; updated {}", lock_path.display()) } else { String::new() }
    );
    let written = report.changed.into_iter().map(|change| {
        let mut entry = trail
            .entry(Action::ConfigWritten, change.host.as_str())
            .after(change.after)
            .detail(out.join(change.host.as_str()).display().to_string());
        entry.before = change.before;
        entry
    });
    let left = report.left.iter().map(|host| {
        let detail =
            format!("removed {}: the host left the inventory", out.join(host.as_str()).display());
        trail.entry(Action::ConfigWritten, host.as_str()).detail(detail)
    });
    let entries: Vec<_> = written.chain(left).collect();
    trail.append_all(entries)?;
    Ok(())
}
