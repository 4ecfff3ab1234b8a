//! The policy's nftables table in the kernel: loaded, listed and removed through `nft`'s JSON
//! API, each change one transaction. The table itself is written by
//! [`wgfabric_model::policy::nft`].

use std::io::Write as _;
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use wgfabric_model::policy::nft::{parse_counters, RuleCounter, TABLE};

/// Whether the kernel has the table (someone may have flushed the ruleset by hand).
///
/// # Errors
/// When `nft` is missing or cannot list tables.
pub fn exists() -> Result<bool, NftError> {
    let out = Command::new("nft")
        .args(["-j", "list", "tables", "inet"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| NftError(format!("cannot run nft ({e}); install the nftables package")))?;
    if !out.status.success() {
        return Err(NftError(
            String::from_utf8_lossy(&out.stderr).lines().next().unwrap_or_default().to_owned(),
        ));
    }
    let listing: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| NftError(format!("unreadable listing: {e}")))?;
    Ok(listing["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|item| item["table"]["name"] == TABLE))
}

/// The counters of this host's table; `None` when there is no table.
///
/// # Errors
/// When `nft` is missing or cannot list the table.
pub fn counters() -> Result<Option<Vec<RuleCounter>>, NftError> {
    let out = Command::new("nft")
        .args(["-j", "list", "table", "inet", TABLE])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| NftError(format!("cannot run nft ({e}); install the nftables package")))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        if said.contains("No such file or directory") {
            return Ok(None);
        }
        return Err(NftError(said.lines().next().unwrap_or_default().chars().take(400).collect()));
    }
    let listing: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| NftError(format!("unreadable listing: {e}")))?;
    Ok(Some(parse_counters(&listing)))
}

/// Why a table could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("nft: {0}")]
pub struct NftError(String);

/// Loads `batch` (as [`wgfabric_model::policy::nft::Table::to_json`] makes it) in one transaction: all of it, or nothing
/// (the table in force stays).
///
/// # Errors
/// When `nft` is missing or refuses the batch, with what it said.
pub fn load(batch: &Value) -> Result<(), NftError> {
    load_in(None, batch)
}

/// [`load`] in the network namespace `namespace` (this process's own for `None`).
///
/// # Errors
/// As [`load`].
pub fn load_in(namespace: Option<&str>, batch: &Value) -> Result<(), NftError> {
    let mut command = match namespace {
        Some(namespace) => crate::namespace::command_in(namespace, "nft"),
        None => Command::new("nft"),
    };
    let mut child = command
        .args(["-j", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| NftError(format!("cannot run nft ({e}); install the nftables package")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(batch.to_string().as_bytes())
            .map_err(|e| NftError(format!("writing to nft: {e}")))?;
    }
    let out = child.wait_with_output().map_err(|e| NftError(format!("waiting for nft: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    let said: String = said.lines().take(3).collect::<Vec<_>>().join("; ");
    Err(NftError(said.chars().take(400).collect()))
}

/// Removes the table, if there is one, in one transaction.
///
/// # Errors
/// As [`load`].
pub fn remove() -> Result<(), NftError> {
    let table = json!({"family": "inet", "name": TABLE});
    load(&json!({"nftables": [{"add": {"table": table}}, {"delete": {"table": table}}]}))
}
