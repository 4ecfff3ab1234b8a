//! `wgfabric apply`: publish every (or some) host's desired state to the source of truth and
//! wait until their agents run it.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde::Serialize;
use wgfabric_audit::Action;
use wgfabric_model::names::Name;
use wgfabric_model::Fabric;
use wgfabric_ops::apply::{publish, rotations_in_flight, statuses, wait_for, HostState, Progress};
use wgfabric_store::state::{desired_states, DesiredState, KeyMaterial, Revision, StatusMark};
use wgfabric_store::store::Store;

use wgfabric_model::durations::human;

use super::progress::{parse_duration, ProgressLine};
use super::trail::AuditLogArgs;
use super::{print, print_json, InventoryArgs, OutputFormat, SourceArgs, FINDINGS};

/// Publish the desired state of every host (or of --host) to the source of truth, then wait
/// until each targeted agent reports it runs the new revision.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  wgfabric apply                                  # every host, to rendered/ by the inventory\n  \
wgfabric apply --source etcd://10.0.0.5:2379      # etcd, prefix /wgfabric\n  \
wgfabric apply --source etcds://etcd.corp:2379/corp --etcd-cacert ca.pem --etcd-user fabric --etcd-password-file pw\n  \
wgfabric apply --host laptop-ana --timeout 2m\n  \
wgfabric apply --no-wait --format json\n\n\
Nothing is published while `wgfabric check` reports errors. Exit status: 0 every targeted\n\
host applied the revision, 1 some refused it or did not report it in time (they are\n\
named), 2 errors. Each host whose desired state changed is recorded in the audit log\n\
(config.written). See docs/agent.md."
)]
pub(crate) struct Args {
    #[command(flatten)]
    inventory: InventoryArgs,
    #[command(flatten)]
    source: SourceArgs,
    /// Publish only this host (repeat for several).
    #[arg(long = "host", value_name = "HOST")]
    hosts: Vec<String>,
    /// How long to wait for the agents.
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    timeout: Duration,
    /// Publish and return without waiting.
    #[arg(long)]
    no_wait: bool,
    /// Publish even while a rotation is under way (abandoning it: agents go back to the
    /// inventory's keys).
    #[arg(long)]
    force: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: OutputFormat,
    #[command(flatten)]
    audit: AuditLogArgs,
}

/// What `--format json` prints.
#[derive(Debug, Serialize)]
struct Report<'a> {
    revision: &'a Revision,
    source: String,
    published: &'a [Name],
    hosts: &'a BTreeMap<Name, HostState>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (fabric, lock_changed) = args.inventory.load_checked("applying", args.format)?;
    let source = args.source.spec(&args.inventory);
    let store = args.source.etcd.open(&source)?;
    let mut trail = args.audit.open(&args.inventory.dir())?;
    if lock_changed {
        args.inventory.write_lock(fabric.lock())?;
    }
    let (revision, docs) = publication(&fabric, &args.inventory.dir())?;
    let targets = targets(&args.hosts, &docs)?;
    if !args.force {
        if let Some((id, host)) = rotations_in_flight(store.as_ref())?.into_iter().next() {
            bail!(
                "rotation {id} of {host} is under way; wait for it, or pass --force to abandon it"
            );
        }
    }
    let selected: BTreeMap<Name, DesiredState> =
        targets.iter().map(|host| (host.clone(), docs[host].clone())).collect();
    // What each agent said last, so that only what they say after this counts.
    let before = statuses(store.as_ref())?.into_iter().map(|(host, s)| (host, s.mark())).collect();
    let published = publish(store.as_ref(), &selected)?;
    for host in &published {
        let entry = trail
            .entry(Action::ConfigWritten, host.as_str())
            .detail(format!("desired state revision {revision} published to {source}"));
        trail.append(entry)?;
    }
    tracing::info!(%revision, source = %store.describe(), changed = published.len(), "desired state published");
    if args.no_wait {
        let hosts = BTreeMap::new();
        return output(&args, &revision, store.as_ref(), &published, &hosts)
            .map(|()| ExitCode::SUCCESS);
    }
    let progress = wait(store.as_ref(), &revision, &targets, &before, args.timeout)?;
    output(&args, &revision, store.as_ref(), &published, &progress.hosts)?;
    let (_, refused, waiting) = progress.counts();
    Ok(if refused + waiting == 0 { ExitCode::SUCCESS } else { ExitCode::from(FINDINGS) })
}

/// The desired states of every host and their revision, with the inventory's commit.
pub(crate) fn publication(
    fabric: &Fabric,
    dir: &Path,
) -> anyhow::Result<(Revision, BTreeMap<Name, DesiredState>)> {
    let material = KeyMaterial::load(fabric.inventory()).context("reading sealed keys")?;
    Ok(desired_states(fabric, &material, commit(dir).as_deref()))
}

/// The inventory directory's Git commit, `-dirty` when it has uncommitted changes; `None`
/// outside Git.
pub(crate) fn commit(dir: &Path) -> Option<String> {
    let git = |args: &[&str]| {
        let output = Command::new("git").arg("-C").arg(dir).args(args).output().ok()?;
        output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    let head = git(&["rev-parse", "--short=12", "HEAD"])?;
    let dirty = !git(&["status", "--porcelain", "--untracked-files=no", "--", "."])?.is_empty();
    Some(if dirty { format!("{head}-dirty") } else { head })
}

fn targets(hosts: &[String], docs: &BTreeMap<Name, DesiredState>) -> anyhow::Result<Vec<Name>> {
    if hosts.is_empty() {
        return Ok(docs.keys().cloned().collect());
    }
    hosts
        .iter()
        .map(|host| {
            let name: Name = host.parse()?;
            if !docs.contains_key(&name) {
                bail!("no host named `{name}` in the inventory");
            }
            Ok(name)
        })
        .collect()
}

/// Waits for the agents with a progress display.
fn wait(
    store: &dyn Store,
    revision: &Revision,
    hosts: &[Name],
    before: &BTreeMap<Name, StatusMark>,
    timeout: Duration,
) -> anyhow::Result<Progress> {
    let mut line = ProgressLine::new();
    let started = std::time::Instant::now();
    let progress = wait_for(store, revision, hosts, before, timeout, |progress| {
        let (applied, refused, waiting) = progress.counts();
        let mut text = format!("revision {revision}: {applied}/{} applied", hosts.len());
        if refused > 0 {
            text.push_str(&format!(", {refused} refused"));
        }
        if waiting > 0 {
            let names: Vec<&str> = progress.waiting().map(Name::as_str).take(5).collect();
            text.push_str(&format!(", waiting for {}", names.join(" ")));
            if waiting > names.len() {
                text.push_str(&format!(" and {} more", waiting - names.len()));
            }
        }
        text.push_str(&format!(" ({})", human(started.elapsed())));
        line.show(&text);
    })?;
    line.finish();
    Ok(progress)
}

fn output(
    args: &Args,
    revision: &Revision,
    store: &dyn Store,
    published: &[Name],
    hosts: &BTreeMap<Name, HostState>,
) -> anyhow::Result<()> {
    if args.format == OutputFormat::Json {
        return print_json(&Report { revision, source: store.describe(), published, hosts });
    }
    let mut text = format!(
        "revision {revision} published to {} ({} host(s) changed)\n",
        store.describe(),
        published.len()
    );
    for (host, state) in hosts {
        match state {
            HostState::Applied => {}
            HostState::Refused { reason } => {
                text.push_str(&format!("  {host}: refused: {reason}\n"))
            }
            HostState::Waiting { applied, error } => {
                let running =
                    applied.as_ref().map_or("nothing yet".to_owned(), |r| format!("revision {r}"));
                text.push_str(&format!(
                    "  {host}: did not report revision {revision} in time (runs {running})"
                ));
                if let Some(error) = error {
                    text.push_str(&format!("; its agent reports: {error}"));
                }
                text.push('\n');
            }
        }
    }
    let applied = hosts.values().filter(|state| **state == HostState::Applied).count();
    if !hosts.is_empty() {
        text.push_str(&format!("{applied}/{} host(s) run revision {revision}\n", hosts.len()));
    }
    print(&text)
}
