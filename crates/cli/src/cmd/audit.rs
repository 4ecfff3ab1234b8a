//! `wgfabric audit`: verify the audit log's hash chain, or show its records.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{bail, Context as _};
use wgfabric_audit::verify::verify;
use wgfabric_audit::{Filter, Record, Timestamp, FILE_NAME};

use super::{print, print_json, InventoryFile, OutputFormat, FINDINGS};

/// Check or read the audit log: every key generated, decrypted or rotated, every
/// configuration written or applied, every peer added or removed, with who and when.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  wgfabric audit verify                         # audit.jsonl beside fabric.toml\n  \
wgfabric audit verify --log /etc/wgfabric/audit.jsonl --head 3b1f...   # and a head kept earlier\n  \
wgfabric audit show --host laptop-ana --since 7d\n  \
wgfabric audit show --action key --format json\n\n\
`verify` exits 1 and names the first line that does not fit when a line was edited, removed,\n\
reordered or inserted. Keep the head hash it prints elsewhere and pass it back with --head to\n\
detect lines cut off the end too. See docs/audit.md."
)]
pub(crate) struct Args {
    #[command(subcommand)]
    action: AuditAction,
}

#[derive(Debug, clap::Subcommand)]
enum AuditAction {
    /// Check the hash chain: exit 0 if intact, 1 at the first line that breaks it.
    Verify(VerifyArgs),
    /// Print records, optionally filtered (the chain is not checked: use verify).
    Show(ShowArgs),
}

/// Where the log is.
#[derive(Debug, clap::Args)]
struct LogArgs {
    /// The audit log [default: audit.jsonl beside the inventory].
    #[arg(long, env = "WGFABRIC_AUDIT_LOG", value_name = "FILE")]
    log: Option<PathBuf>,
    #[command(flatten)]
    inventory: InventoryFile,
}

impl LogArgs {
    fn path(&self) -> PathBuf {
        self.log.clone().unwrap_or_else(|| self.inventory.dir().join(FILE_NAME))
    }

    fn read(&self) -> anyhow::Result<(PathBuf, String)> {
        let path = self.path();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the audit log {}", path.display()))?;
        Ok((path, text))
    }
}

#[derive(Debug, clap::Args)]
struct VerifyArgs {
    #[command(flatten)]
    log: LogArgs,
    /// A head hash printed by an earlier verify: it must still be the hash of some line.
    #[arg(long, value_name = "HASH")]
    head: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: OutputFormat,
}

#[derive(Debug, clap::Args)]
struct ShowArgs {
    #[command(flatten)]
    log: LogArgs,
    /// Only records about this host.
    #[arg(long, value_name = "HOST")]
    host: Option<String>,
    /// Only this action, or a family of them: `key` selects key.generated, key.rotated and
    /// key.decrypted.
    #[arg(long, value_name = "ACTION")]
    action: Option<String>,
    /// Not before this time: 2026-05-01T12:00:00Z, 2026-05-01 (UTC), or an age: 30m, 12h, 7d.
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Not after this time (same forms as --since).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: OutputFormat,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.action {
        AuditAction::Verify(args) => run_verify(&args),
        AuditAction::Show(args) => run_show(&args),
    }
}

fn run_verify(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let (path, text) = args.log.read()?;
    let log = path.display().to_string();
    let head = args.head.as_deref().map(|h| h.trim().to_ascii_lowercase());
    let outcome = verify(&text, head.as_deref());
    match (&outcome, args.format) {
        (Ok(verified), OutputFormat::Json) => print_json(&serde_json::json!({
            "log": log, "intact": true, "records": verified.entries, "head": verified.head,
        }))?,
        (Err(broken), OutputFormat::Json) => print_json(&serde_json::json!({
            "log": log, "intact": false, "line": broken.line, "problem": broken.problem,
        }))?,
        (Ok(verified), OutputFormat::Human) => print(&format!(
            "{log}: {} record(s), chain intact\nhead {}\n",
            verified.entries, verified.head
        ))?,
        (Err(broken), OutputFormat::Human) => print(&format!("{log}: {broken}\n"))?,
    }
    Ok(if outcome.is_ok() { ExitCode::SUCCESS } else { ExitCode::from(FINDINGS) })
}

fn run_show(args: &ShowArgs) -> anyhow::Result<ExitCode> {
    let now = Timestamp::from_system_time(SystemTime::now());
    let time = |text: &Option<String>| {
        text.as_deref().map(|t| Timestamp::parse_relative(t, now)).transpose()
    };
    let filter = Filter {
        target: args.host.clone(),
        action: args.action.clone(),
        since: time(&args.since)?,
        until: time(&args.until)?,
    };
    let (path, text) = args.log.read()?;
    let mut records = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let Ok(record) = Record::parse(line) else {
            bail!(
                "{}: line {} is not an audit record (run `wgfabric audit verify`)",
                path.display(),
                index + 1
            );
        };
        if filter.matches(&record) {
            records.push(record);
        }
    }
    match args.format {
        OutputFormat::Json => {
            /// Keeps each record's fields in the order of the log.
            #[derive(serde::Serialize)]
            struct Shown<'a> {
                records: &'a [Record],
            }
            print_json(&Shown { records: &records })?;
        }
        OutputFormat::Human => print(&table(&records))?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Control characters from the log are shown escaped, so a forged line cannot drive the
/// terminal.
fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> =
                if c.is_control() { c.escape_default().collect() } else { vec![c] };
            escaped
        })
        .collect()
}

fn table(records: &[Record]) -> String {
    let dash = |value: &Option<String>| printable(value.as_deref().unwrap_or("-"));
    let mut out = format!(
        "{:>5}  {:<20}  {:<18}  {:<16}  {:<20}  {:<16}  {:<16}  {}\n",
        "SEQ", "TIME", "ACTION", "TARGET", "ACTOR", "BEFORE", "AFTER", "DETAIL"
    );
    for r in records {
        out.push_str(&format!(
            "{:>5}  {:<20}  {:<18}  {:<16}  {:<20}  {:<16}  {:<16}  {}\n",
            r.seq,
            printable(&r.time),
            printable(&r.action),
            printable(&r.target),
            printable(&r.actor),
            dash(&r.before),
            dash(&r.after),
            printable(r.detail.as_deref().unwrap_or(""))
        ));
    }
    out
}
