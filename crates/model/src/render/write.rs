//! Rendering into a directory, host by host.
//!
//! Each host's files are rendered, compared with what the directory holds and staged in a
//! [`FileSet`] only where they differ, before the next host is rendered; `state.json` and
//! `fabric.json`, which cover every host, are streamed into their files the same way. So a
//! render of thousands of hosts holds one host's files at a time, never the whole output, and
//! a render that changes nothing writes nothing. The set is committed only once every file
//! is staged: all or nothing, as [`crate::files`] describes.

use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{
    ansible_inventory, fabric_file_name, host_files, stale_paths, terraform_json,
    write_fabric_json, Format, RenderedFile, Request,
};
use crate::config::HostConfig;
use crate::error::Error;
use crate::fabric::Fabric;
use crate::files::{FileSet, Staged, PUBLIC_MODE};
use crate::fingerprint::Fingerprint;
use crate::names::Name;
use crate::render::plan::{RenderedState, STATE_FILE};

/// Where a render goes.
#[derive(Debug, Clone, Copy)]
pub struct Output<'a> {
    /// The output directory.
    pub dir: &'a Path,
    /// The lock file and its new text, when the render assigned addresses: written in the
    /// same set as the rendered files.
    pub lock: Option<(&'a Path, &'a str)>,
}

/// What [`render_into`] did.
#[derive(Debug, Default)]
#[must_use]
pub struct Report {
    /// Hosts rendered.
    pub hosts: usize,
    /// Files created or replaced, `state.json` and the lock file included.
    pub written: usize,
    /// Files left alone because they already held what was rendered.
    pub unchanged: usize,
    /// Hosts whose files changed, in name order.
    pub changed: Vec<HostChange>,
    /// Files removed because their host left the fabric, relative to the directory.
    pub removed: Vec<PathBuf>,
    /// The hosts of the last render that have left the fabric (a full render only).
    pub left: Vec<Name>,
}

/// A host whose rendered files changed, fingerprinted for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostChange {
    /// The host.
    pub host: Name,
    /// Its files' paths and contents before (`None` when it had none).
    pub before: Option<Fingerprint>,
    /// After.
    pub after: Fingerprint,
}

/// Renders `request` into `output.dir` with `DIR/state.json` (for `plan`) and the lock file,
/// writing only the files that changed, all or nothing. A full render (no host) then
/// removes the files an earlier render wrote for hosts that have left the fabric.
///
/// The hosts' files are staged on the calling thread while a second thread streams the
/// documents that cover every host (`state.json`, the fabric-wide formats): the two take
/// about as long, each computing the configurations it needs.
///
/// # Errors
/// [`Error::NotFound`] for an unknown host, [`Error::Source`] for an unreadable
/// `state.json`, [`Error::Io`] naming the file that could not be written. Nothing is
/// written then.
pub fn render_into(
    fabric: &Fabric,
    request: Request<'_>,
    output: Output<'_>,
) -> Result<Report, Error> {
    let state_path = output.dir.join(STATE_FILE);
    let (state, configs, stale, left): (NextState, Box<dyn Iterator<Item = _>>, _, _) =
        match request.host {
            Some(host) => {
                let config = fabric.host_config(host)?;
                // The other hosts stay as the last render left them.
                let state: RenderedState = RenderedState::load(&state_path)?;
                let state = state.after_render(fabric, std::slice::from_ref(&config), false);
                let configs = Box::new(core::iter::once(config));
                (NextState::OneHost(state), configs, Vec::new(), Vec::new())
            }
            None => {
                // Every host is rendered again: of the last render, only which hosts it had.
                let mut state: RenderedState<LastHost> = RenderedState::load(&state_path)?;
                let last = state.hosts.values().map(|host| (&host.host, host.interface.as_str()));
                let stale = stale_paths(last, fabric);
                let hosts = &fabric.inventory().hosts;
                let left =
                    state.hosts.keys().filter(|host| !hosts.contains_key(*host)).cloned().collect();
                state.hosts.clear();
                let state = state.with_facts(fabric);
                (NextState::AllHosts(state), Box::new(fabric.host_configs()), stale, left)
            }
        };

    let mut report = Report::default();
    let (hosts, documents) = std::thread::scope(|scope| {
        let documents =
            scope.spawn(|| stage_documents(fabric, request, output, &state_path, &state));
        let hosts = stage_hosts(configs, request, output.dir, &mut report);
        let documents = documents.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (hosts, documents)
    });
    let mut set = hosts?;
    set.absorb(documents?);
    let committed = set.commit()?;
    report.written = committed.written;
    report.unchanged = committed.unchanged;
    report.removed = remove_stale(output.dir, stale)?;
    report.left = left;
    Ok(report)
}

/// The `state.json` a render leaves.
enum NextState {
    /// The last state with one host rendered again.
    OneHost(RenderedState),
    /// The last state's header, for every host of the fabric.
    AllHosts(RenderedState<LastHost>),
}

/// A new set; directories of hosts whose keys are inlined hold secrets.
fn file_set(request: Request<'_>) -> FileSet {
    FileSet::new(if request.keys.is_some() { 0o700 } else { 0o755 })
}

/// Stages the files of each host of `configs`, counting and fingerprinting into `report`.
fn stage_hosts(
    configs: impl Iterator<Item = HostConfig>,
    request: Request<'_>,
    dir: &Path,
    report: &mut Report,
) -> Result<FileSet, Error> {
    let mut set = file_set(request);
    for config in configs {
        let files: Vec<RenderedFile> = request
            .per_host_formats()
            .flat_map(|format| host_files(&config, request.key(&config), format))
            .collect();
        report.hosts += 1;
        report.changed.extend(stage_host_files(&mut set, dir, &config.host, &files)?);
    }
    Ok(set)
}

/// Stages `state.json`, the fabric-wide formats and the lock file.
fn stage_documents(
    fabric: &Fabric,
    request: Request<'_>,
    output: Output<'_>,
    state_path: &Path,
    state: &NextState,
) -> Result<FileSet, Error> {
    let mut set = file_set(request);
    set.stage_streamed(state_path, PUBLIC_MODE, |out| match state {
        NextState::OneHost(state) => state.write_json(state.hosts.values(), out),
        NextState::AllHosts(header) => header.write_json(fabric.host_configs(), out),
    })?;
    for format in request.fabric_wide_formats() {
        let Some(name) = fabric_file_name(format) else { continue };
        let target = output.dir.join(name);
        match format {
            Format::Json => set.stage_streamed(&target, PUBLIC_MODE, |out| {
                write_fabric_json(fabric, fabric.host_configs(), out)
            })?,
            Format::Terraform => {
                set.stage(&target, terraform_json(fabric).as_bytes(), PUBLIC_MODE)?
            }
            Format::Ansible => {
                set.stage(&target, ansible_inventory(fabric).as_bytes(), PUBLIC_MODE)?
            }
            Format::WgQuick | Format::Networkd | Format::Setconf | Format::Nftables => continue,
        };
    }
    if let Some((path, text)) = output.lock {
        set.stage(path, text.as_bytes(), PUBLIC_MODE)?;
    }
    Ok(set)
}

/// What a full render reads of each host in the last `state.json`: the names of its files.
#[derive(Debug, Deserialize)]
struct LastHost {
    host: Name,
    interface: String,
}

/// Stages one host's files; if any changed, fingerprints them before and after. The
/// fingerprints cover paths and contents, so a key inlined in a file is hashed, never kept.
fn stage_host_files(
    set: &mut FileSet,
    dir: &Path,
    host: &Name,
    files: &[RenderedFile],
) -> Result<Option<HostChange>, Error> {
    let staged = files
        .iter()
        .map(|file| set.stage(&dir.join(&file.path), file.contents.as_bytes(), file.mode()))
        .collect::<Result<Vec<Staged>, Error>>()?;
    if staged.iter().all(|staged| matches!(staged, Staged::Unchanged)) {
        return Ok(None);
    }
    let after = Fingerprint::of_parts(files.iter().flat_map(|f| [path(f), f.contents.as_bytes()]));
    let existing: Vec<(&[u8], &[u8])> = files
        .iter()
        .zip(&staged)
        .filter_map(|(file, staged)| match staged {
            Staged::Unchanged => Some((path(file), file.contents.as_bytes())),
            Staged::Changed { previous } => previous.as_ref().map(|bytes| (path(file), &bytes[..])),
        })
        .collect();
    let before = (!existing.is_empty())
        .then(|| Fingerprint::of_parts(existing.iter().flat_map(|(path, c)| [*path, *c])));
    Ok(Some(HostChange { host: host.clone(), before, after }))
}

fn path(file: &RenderedFile) -> &[u8] {
    file.path.as_os_str().as_bytes()
}

/// Removes the files of hosts that left the fabric (and their directories once empty);
/// returns those that were there.
fn remove_stale(dir: &Path, stale: Vec<PathBuf>) -> Result<Vec<PathBuf>, Error> {
    let mut removed = Vec::new();
    for relative in stale {
        let path = dir.join(&relative);
        match std::fs::remove_file(&path) {
            Ok(()) => removed.push(relative),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&path, e)),
        }
        if let Some(parent) = path.parent() {
            // Fails harmlessly while the directory still holds other files.
            let _ = std::fs::remove_dir(parent);
        }
    }
    Ok(removed)
}
