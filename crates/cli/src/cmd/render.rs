//! `wgfabric render`: write every host's configuration, or print one host's.

use std::collections::BTreeSet;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use wgfabric_fleet::audit::{Action, Fingerprint};
use wgfabric_fleet::files::{write_all_or_nothing, PendingFile, PUBLIC_MODE, SECRET_MODE};
use wgfabric_fleet::plan::{RenderedState, STATE_FILE};
use wgfabric_fleet::render::{render, stale_files, Format, Rendered, RenderedFile, Request};
use wgfabric_fleet::Fabric;
use zeroize::Zeroizing;

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
`wgfabric plan`). Nothing is rendered while `wgfabric check` reports errors. The audit log\n\
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
    format: Vec<FormatArg>,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum FormatArg {
    /// wg-quick's HOST/IFACE.conf.
    WgQuick,
    /// systemd-networkd's HOST/50-IFACE.netdev and .network.
    Networkd,
    /// `wg setconf` form: HOST/IFACE.setconf.
    Setconf,
    /// nft -f form of the host's firewall: HOST/nftables.conf (hosts with a policy).
    Nftables,
    /// fabric.json: every host's desired configuration.
    Json,
    /// terraform.json: flat object of strings for Terraform's external data source.
    Terraform,
    /// ansible-inventory.yml.
    Ansible,
}

impl From<FormatArg> for Format {
    fn from(format: FormatArg) -> Self {
        match format {
            FormatArg::WgQuick => Self::WgQuick,
            FormatArg::Networkd => Self::Networkd,
            FormatArg::Nftables => Self::Nftables,
            FormatArg::Setconf => Self::Setconf,
            FormatArg::Json => Self::Json,
            FormatArg::Terraform => Self::Terraform,
            FormatArg::Ansible => Self::Ansible,
        }
    }
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (fabric, lock_changed) = args.inventory.load_checked("rendering", args.message_format)?;
    if args.identity.is_some() && args.out.is_none() {
        bail!("--identity inlines private keys: give --out DIR, outside the repository, so they land in files created 0600");
    }
    let fabric_wide_only =
        !args.format.is_empty() && args.format.iter().all(|f| !Format::from(*f).is_per_host());
    let out = match (&args.out, &args.host) {
        (Some(out), _) => Some(out.clone()),
        (None, Some(_)) => None,
        (None, None) if fabric_wide_only => None,
        (None, None) => Some(args.inventory.rendered_dir()),
    };
    let mut formats: Vec<Format> = args.format.iter().copied().map(Format::from).collect();
    if formats.is_empty() {
        formats = if out.is_none() { vec![Format::WgQuick] } else { Format::ALL.to_vec() };
    }
    formats.sort();
    formats.dedup();
    let identities = load_identities(args.identity.as_deref())?;
    // Files are only written with an output directory, and keys only decrypted then.
    let mut trail = out.as_ref().map(|_| args.audit.open(&args.inventory.dir())).transpose()?;
    let rendered = render(
        &fabric,
        Request { host: args.host.as_deref(), formats: &formats, identities: identities.as_ref() },
    )?;
    if let (Some(trail), Some(_)) = (&mut trail, &identities) {
        for config in &rendered.configs {
            let entry = trail
                .entry(Action::KeyDecrypted, config.host.as_str())
                .after(Fingerprint::of_public_key(&config.public_key))
                .detail("inlined into the rendered configuration");
            trail.append(entry)?;
        }
    }

    match (out, trail) {
        (Some(out), Some(mut trail)) => {
            write_files(&args, &fabric, &rendered, &out, lock_changed, &mut trail)?;
        }
        _ => {
            if lock_changed {
                eprintln!(
                    "note: new hosts' addresses are not in {} yet; run `wgfabric addresses update`",
                    args.inventory.lock_path().display()
                );
            }
            print_files(&rendered.files)?;
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

/// Writes the rendered files, the state for `plan` and the lock (if it changed) all or
/// nothing, then removes the files of hosts that left; records each host whose files
/// changed.
fn write_files(
    args: &Args,
    fabric: &Fabric,
    rendered: &Rendered,
    out: &Path,
    lock_changed: bool,
    trail: &mut Trail,
) -> anyhow::Result<()> {
    let fingerprints = host_fingerprints(out, rendered);
    let state_path = out.join(STATE_FILE);
    let state = RenderedState::load(&state_path)?;
    let stale = if args.host.is_none() { stale_files(&state, fabric) } else { Vec::new() };
    let state_json = state.after_render(fabric, &rendered.configs, args.host.is_none()).to_json();
    let lock_text = fabric.lock().to_toml();
    let mut pending: Vec<PendingFile<'_>> = rendered
        .files
        .iter()
        .map(|file| PendingFile {
            path: out.join(&file.path),
            contents: file.contents.as_bytes(),
            mode: if file.secret { SECRET_MODE } else { PUBLIC_MODE },
        })
        .collect();
    pending.push(PendingFile {
        path: state_path,
        contents: state_json.as_bytes(),
        mode: PUBLIC_MODE,
    });
    if lock_changed {
        pending.push(PendingFile {
            path: args.inventory.lock_path(),
            contents: lock_text.as_bytes(),
            mode: PUBLIC_MODE,
        });
    }
    write_all_or_nothing(&pending)?;
    remove_stale(out, &stale)?;
    tracing::info!(
        files = rendered.files.len(),
        hosts = rendered.configs.len(),
        out = %out.display(),
        lock_updated = lock_changed,
        "wrote {} file(s) for {} host(s) to {}{}",
        rendered.files.len(),
        rendered.configs.len(),
        out.display(),
        if lock_changed {
            format!(" and updated {}", args.inventory.lock_path().display())
        } else {
            String::new()
        }
    );
    for (host, before, after) in fingerprints {
        if before.as_ref() != Some(&after) {
            let mut entry = trail
                .entry(Action::ConfigWritten, &host)
                .after(after)
                .detail(out.join(&host).display().to_string());
            entry.before = before;
            trail.append(entry)?;
        }
    }
    let left: BTreeSet<&str> = stale.iter().filter_map(|path| host_of(path)).collect();
    for host in left {
        let detail = format!("removed {}: the host left the inventory", out.join(host).display());
        trail.append(trail.entry(Action::ConfigWritten, host).detail(detail))?;
    }
    Ok(())
}

/// The host a rendered file belongs to: its first path component.
fn host_of(path: &Path) -> Option<&str> {
    match path.components().next()? {
        Component::Normal(first) if path.components().count() > 1 => first.to_str(),
        _ => None,
    }
}

/// For each host rendered: the fingerprint of its files as they are in `out` now (`None`
/// when it has none there yet) and as rendered. The fingerprints cover paths and contents;
/// files holding a private key are hashed, never logged.
fn host_fingerprints(
    out: &Path,
    rendered: &Rendered,
) -> Vec<(String, Option<Fingerprint>, Fingerprint)> {
    rendered
        .configs
        .iter()
        .map(|config| {
            let host = config.host.as_str();
            let files: Vec<&RenderedFile> =
                rendered.files.iter().filter(|f| host_of(&f.path) == Some(host)).collect();
            let after = Fingerprint::of_parts(
                files.iter().flat_map(|f| [f.path.as_os_str().as_bytes(), f.contents.as_bytes()]),
            );
            let existing: Vec<(&Path, Zeroizing<Vec<u8>>)> = files
                .iter()
                .filter_map(|f| {
                    let contents = std::fs::read(out.join(&f.path)).ok()?;
                    Some((f.path.as_path(), Zeroizing::new(contents)))
                })
                .collect();
            let before = (!existing.is_empty()).then(|| {
                Fingerprint::of_parts(
                    existing.iter().flat_map(|(path, c)| [path.as_os_str().as_bytes(), &c[..]]),
                )
            });
            (host.to_owned(), before, after)
        })
        .collect()
}

/// Removes what an earlier render wrote for hosts that left the fabric (and their directory
/// once empty).
fn remove_stale(out: &Path, stale: &[PathBuf]) -> anyhow::Result<()> {
    for relative in stale {
        let path = out.join(relative);
        match std::fs::remove_file(&path) {
            Ok(()) => tracing::info!(path = %path.display(), "removed {}", path.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
        if let Some(dir) = path.parent() {
            // Fails harmlessly while the directory still holds other files.
            let _ = std::fs::remove_dir(dir);
        }
    }
    Ok(())
}
