//! `wgfabric render`: write every host's configuration, or print one host's.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use wgfabric_fleet::files::{write_all_or_nothing, PendingFile, PUBLIC_MODE, SECRET_MODE};
use wgfabric_fleet::keystore::Identities;
use wgfabric_fleet::lint::{check, findings_text, has_errors};
use wgfabric_fleet::plan::{RenderedState, STATE_FILE};
use wgfabric_fleet::render::{render, stale_files, Format, Rendered, RenderedFile, Request};
use wgfabric_fleet::Fabric;

use super::{print, InventoryArgs};

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
`wgfabric plan`). Nothing is rendered while `wgfabric check` reports errors."
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
    /// age identity file that opens keys/HOST.age (central mode): private keys are inlined.
    #[arg(long, env = "WGFABRIC_AGE_IDENTITY", value_name = "FILE")]
    identity: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum FormatArg {
    /// wg-quick's HOST/IFACE.conf.
    WgQuick,
    /// systemd-networkd's HOST/50-IFACE.netdev and .network.
    Networkd,
    /// `wg setconf` form: HOST/IFACE.setconf.
    Setconf,
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
            FormatArg::Setconf => Self::Setconf,
            FormatArg::Json => Self::Json,
            FormatArg::Terraform => Self::Terraform,
            FormatArg::Ansible => Self::Ansible,
        }
    }
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (fabric, lock_changed) = args.inventory.load()?;
    let findings = check(fabric.inventory());
    if has_errors(&findings) {
        eprint!("{}", findings_text(&findings, &args.inventory.path().display().to_string()));
        bail!("not rendering: the inventory has errors");
    }
    if args.identity.is_some() && args.out.is_none() {
        bail!("--identity inlines private keys: give --out DIR, outside the repository, so they land in files created 0600");
    }
    let fabric_wide_only =
        !args.format.is_empty() && args.format.iter().all(|f| !Format::from(*f).is_per_host());
    let out = match (&args.out, &args.host) {
        (Some(out), _) => Some(out.clone()),
        (None, Some(_)) => None,
        (None, None) if fabric_wide_only => None,
        (None, None) => Some(args.inventory.dir().join("rendered")),
    };
    let mut formats: Vec<Format> = args.format.iter().copied().map(Format::from).collect();
    if formats.is_empty() {
        formats = if out.is_none() { vec![Format::WgQuick] } else { Format::ALL.to_vec() };
    }
    formats.sort();
    formats.dedup();
    let identities = args
        .identity
        .as_deref()
        .map(Identities::load)
        .transpose()
        .context("loading the age identity")?;
    let rendered = render(
        &fabric,
        Request { host: args.host.as_deref(), formats: &formats, identities: identities.as_ref() },
    )?;

    match out {
        Some(out) => write_files(&args, &fabric, &rendered, &out, lock_changed)?,
        None => {
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
/// nothing, then removes the files of hosts that left.
fn write_files(
    args: &Args,
    fabric: &Fabric,
    rendered: &Rendered,
    out: &Path,
    lock_changed: bool,
) -> anyhow::Result<()> {
    let state_path = out.join(STATE_FILE);
    let mut state = RenderedState::load(&state_path)?;
    let stale = if args.host.is_none() { stale_files(&state, fabric) } else { Vec::new() };
    if args.host.is_none() {
        state.hosts.clear();
    }
    state.hosts.extend(rendered.configs.iter().map(|c| (c.host.clone(), c.clone())));
    let state_json = state.to_json();
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
    eprintln!(
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
    Ok(())
}

/// Removes what an earlier render wrote for hosts that left the fabric (and their directory
/// once empty).
fn remove_stale(out: &Path, stale: &[PathBuf]) -> anyhow::Result<()> {
    for relative in stale {
        let path = out.join(relative);
        match std::fs::remove_file(&path) {
            Ok(()) => eprintln!("removed {}", path.display()),
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
