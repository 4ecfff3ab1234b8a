//! `wgfabric keygen HOST`: make a host's key pair where it belongs.

use std::path::PathBuf;
use std::process::ExitCode;

use rand_core::OsRng;
use wgfabric_audit::{Action, Fingerprint};
use wgfabric_model::inventory::PRIVATE_KEY_FILE;
use wgfabric_model::key_file::{generate_key_file, read_key_file};
use wgfabric_model::sealed_keys::KeyStore;
use wgfabric_model::Inventory;
use wgfabric_proto::keys::PrivateKey;

use super::trail::AuditLogArgs;
use super::{print, InventoryFile};

/// Generate a host's key pair. The private key is written 0600 and never printed; standard
/// output gets only the public key, standard error the line to paste into the inventory.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  sudo wgfabric keygen laptop-ana                 # on the host: /etc/wgfabric/private.key\n  \
wgfabric keygen ci-runner-1 --dir ./secrets\n  \
wgfabric keygen ci-runner-1 --central -i fabric.toml   # CI/CD: encrypted to keys/ci-runner-1.age\n\n\
Central mode encrypts the key for the inventory's [keys] recipients (age); it is decrypted\n\
only by `wgfabric render --identity FILE`.\n\n\
Each key generated is recorded in the audit log (DIR/audit.jsonl, or audit.jsonl beside the\n\
inventory in central mode) with its public key's fingerprint; see `wgfabric audit`."
)]
pub(crate) struct Args {
    /// The host the key is for.
    host: String,
    /// Directory of the private key file (written as DIR/private.key).
    #[arg(long, default_value = "/etc/wgfabric", value_name = "DIR", conflicts_with = "central")]
    dir: PathBuf,
    /// Encrypt the key into the inventory's key store instead of writing it in clear.
    #[arg(long)]
    central: bool,
    // The inventory is read in central mode only.
    #[command(flatten)]
    inventory: InventoryFile,
    /// Replace an existing key (the host is cut off until the inventory has the new public key).
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    audit: AuditLogArgs,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let host: wgfabric_model::names::Name = args.host.parse()?;
    let (mut trail, public, previous, path) = if args.central {
        let inventory = Inventory::load(args.inventory.path())?;
        let trail = args.audit.open(&inventory.dir())?;
        let store = KeyStore::new(&inventory)?;
        // The key the inventory knows is the one this replaces.
        let previous = inventory.hosts.get(&host).map(|h| h.public_key);
        let key = PrivateKey::generate(&mut OsRng);
        let path = store.store(host.as_str(), &key, args.force)?;
        let recipients = inventory.keys.recipients.len();
        tracing::info!(
            host = %host,
            path = %path.display(),
            public_key = %key.public_key(),
            recipients,
            "wrote {} (encrypted for {recipients} recipient(s))",
            path.display()
        );
        (trail, key.public_key(), previous, path)
    } else {
        let path = args.dir.join(PRIVATE_KEY_FILE);
        let trail = args.audit.open(&args.dir)?;
        let previous = args.force.then(|| read_key_file(&path).ok()).flatten();
        let key = generate_key_file(&mut OsRng, &path, args.force)?;
        tracing::info!(
            host = %host,
            path = %path.display(),
            public_key = %key.public_key(),
            "wrote {} (mode 0600)",
            path.display()
        );
        (trail, key.public_key(), previous.map(|old| old.public_key()), path)
    };
    let mut entry = trail
        .entry(Action::KeyGenerated, host.as_str())
        .after(Fingerprint::of_public_key(&public))
        .detail(path.display().to_string());
    if let Some(previous) = previous {
        entry = entry.before(Fingerprint::of_public_key(&previous));
    }
    trail.append(entry)?;
    eprintln!("add to fabric.toml:\n\n[host.{host}]\npublic_key = \"{public}\"\n");
    print(&format!("{public}\n"))?;
    Ok(ExitCode::SUCCESS)
}
