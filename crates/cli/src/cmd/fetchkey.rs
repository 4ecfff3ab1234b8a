//! `wgfabric fetchkey SOURCE...`: print a host's private key from its key source, for
//! `wg set IFACE private-key <(...)` in the hooks that wgfabric renders.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use wgfabric_audit::{Action, Fingerprint};
use wgfabric_model::inventory::DEFAULT_KEY_DIR;
use wgfabric_model::key_source::{KeySource, DEFAULT_TIMEOUT};
use wgfabric_model::names::Name;
use zeroize::Zeroizing;

use super::print;
use super::trail::AuditLogArgs;

/// Print a host's private key from its key source: a file, a systemd credential or a
/// command (a secrets manager's CLI). The key goes to standard output only, for a pipe or a
/// process substitution; each fetch is recorded in the audit log (source and host, never the
/// key).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
wg set wg0 private-key <(wgfabric fetchkey --host laptop-ana --interface wg0 exec:pass show wgfabric/laptop-ana)\n  \
wgfabric fetchkey --host relay-fra systemd-credential:wgfabric.key\n  \
wgfabric fetchkey --host ci-runner-1 exec:vault kv get -field=private_key secret/wgfabric/ci-runner-1\n\n\
SOURCE is written as in fabric.toml's key_source: file:PATH, systemd-credential:NAME, or\n\
exec:PROGRAM followed by its arguments (run directly, not through a shell, with\n\
WGFABRIC_HOST and WGFABRIC_INTERFACE in its environment). Rendered wg-quick files call this\n\
verb for hosts whose key_source is not a file.")]
pub(crate) struct Args {
    /// The host the key belongs to (passed to a command as WGFABRIC_HOST, and recorded).
    #[arg(long)]
    host: Name,
    /// The interface the key is for (passed to a command as WGFABRIC_INTERFACE).
    #[arg(long, default_value = "wg0")]
    interface: String,
    /// How long a command may take, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_TIMEOUT.as_secs())]
    timeout: u64,
    /// The key source and, for `exec:`, the command's arguments.
    #[arg(required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true, value_name = "SOURCE")]
    source: Vec<String>,
    #[command(flatten)]
    audit: AuditLogArgs,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let source = KeySource::from_words(&args.source)?;
    let mut trail = args.audit.open(&PathBuf::from(DEFAULT_KEY_DIR))?;
    let timeout = Duration::from_secs(args.timeout);
    let key = source
        .fetch(args.host.as_str(), &args.interface, timeout)
        .with_context(|| format!("fetching the private key of `{}`", args.host))?;
    let entry = trail
        .entry(Action::KeyFetched, args.host.as_str())
        .after(Fingerprint::of_public_key(&key.public_key()))
        .detail(source.to_string());
    trail.append(entry)?;
    let secret = Zeroizing::new(key.to_base64_secret());
    print(&Zeroizing::new(format!("{}\n", secret.as_str())))?;
    Ok(ExitCode::SUCCESS)
}
