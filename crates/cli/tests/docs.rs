//! The README and the documentation pages, run: every ` ```sh ` block is executed, outputs
//! shown in ` ```text output ` blocks are compared, and links are checked. The conventions
//! are written down in `docs/README.md` ("How these pages are tested").
//!
//! Blocks without a host run everywhere, as the current user, in one scratch directory per
//! page. Blocks tagged `host=NAME` run as root in a network namespace standing for that host,
//! with its own `/etc/wgfabric` and `/var/run/wireguard`; the whole page then runs in order
//! in `pages_run_across_their_hosts_as_root` (ignored: it needs root).

mod util;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use util::{repo, stderr, stdout, Scratch};
use wgfabric_lab::netns::{veth, Netns};

/// The pages whose commands run.
const PAGES: &[&str] = &["README.md", "docs/README.md", "docs/daemon.md"];
/// Pages with ` ```sh ` blocks that are not run here, and why.
const NOT_RUN: &[(&str, &str)] = &[
    ("docs/audit.md", "a script the reader runs on an audit log of their own"),
    ("docs/PERFORMANCE.md", "benchmarks: root, the other implementations and minutes per run"),
];

/// A fenced code block.
#[derive(Debug)]
struct Block {
    /// The info string after the opening fence.
    info: String,
    text: String,
    /// 1-based line of the opening fence.
    line: usize,
    /// The ` ```text output ` block right after it, if any.
    output: Option<String>,
}

impl Block {
    fn is_command(&self) -> bool {
        self.info.split_whitespace().next() == Some("sh")
    }

    /// The host of a `sh host=NAME` block.
    fn host(&self) -> Option<&str> {
        self.info.split_whitespace().find_map(|word| word.strip_prefix("host="))
    }
}

fn blocks(markdown: &str) -> Vec<Block> {
    let mut blocks: Vec<Block> = Vec::new();
    // The open block: info string, line, lines so far, and whether only blank lines
    // separate it from the block before.
    let mut open: Option<(String, usize, Vec<&str>, bool)> = None;
    let mut adjacent = false;
    for (index, line) in markdown.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => {
                open = Some((info.trim().to_owned(), index + 1, Vec::new(), adjacent));
            }
            (Some(_), Some("")) => {
                let (info, line, lines, follows) = open.take().expect("a block is open");
                let text = lines.join("\n") + "\n";
                match blocks.last_mut() {
                    Some(last) if info == "text output" && follows && last.is_command() => {
                        last.output = Some(text);
                    }
                    _ => blocks.push(Block { info, text, line, output: None }),
                }
                adjacent = true;
            }
            (Some((_, _, lines, _)), _) => lines.push(line),
            (None, None) => adjacent &= line.trim().is_empty(),
        }
    }
    blocks
}

fn page(name: &str) -> String {
    std::fs::read_to_string(repo().join(name)).unwrap()
}

/// The directory of the binaries under test, put first on `PATH`.
fn bin_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_wgfabric")).parent().unwrap().to_owned()
}

fn path_with_bin_dir() -> std::ffi::OsString {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    std::env::join_paths(std::iter::once(bin_dir()).chain(std::env::split_paths(&paths))).unwrap()
}

/// A shell running `script` with `-e`, in `dir`, with the binaries under test on `PATH`.
fn shell(mut command: Command, script: &str, dir: &Path) -> Command {
    command
        .args(["sh", "-e", "-c", script])
        .current_dir(dir)
        .env("PATH", path_with_bin_dir())
        .env_remove("WGFABRIC_INVENTORY")
        .env_remove("WGFABRIC_AGE_IDENTITY")
        .env_remove("WGFABRIC_AUDIT_LOG")
        .stdin(Stdio::null());
    command
}

fn check_block(name: &str, block: &Block, output: &Output) {
    let what = format!("{name}:{} ({})", block.line, block.info);
    assert!(
        output.status.success(),
        "{what} failed:\n{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        block.text,
        stdout(output),
        stderr(output)
    );
    if let Some(expected) = &block.output {
        let trim = |text: &str| text.lines().map(str::trim_end).collect::<Vec<_>>().join("\n");
        assert_eq!(trim(&stdout(output)), trim(expected), "output of {what}");
    }
}

/// Stands in, without root, for a host step that only makes a key: `wgfabric keygen HOST >
/// FILE` gets FILE with a fresh public key, as the host would have printed.
fn stand_in_for_host_step(block: &Block, dir: &Path) {
    for line in block.text.lines() {
        let Some((command, file)) = line.split_once('>') else { continue };
        if command.trim_start().starts_with("wgfabric keygen ") {
            let script = format!("wgfabric genkey | wgfabric pubkey > {}", file.trim());
            let output = shell(Command::new("env"), &script, dir).output().unwrap();
            assert!(output.status.success(), "{}", stderr(&output));
        }
    }
}

#[test]
fn pages_run_their_commands_and_show_what_they_print() {
    for name in PAGES {
        let scratch = Scratch::new();
        for block in blocks(&page(name)) {
            if !block.is_command() {
                continue;
            }
            if block.host().is_some() {
                stand_in_for_host_step(&block, &scratch.0);
                continue;
            }
            let output = shell(Command::new("env"), &block.text, &scratch.0).output().unwrap();
            check_block(name, &block, &output);
        }
    }
}

#[test]
fn the_readme_starts_with_the_two_set_up_commands() {
    let readme = page("README.md");
    let first: Vec<&str> = readme.lines().take(2).collect();
    assert_eq!(
        first,
        ["cargo build --release && sudo target/release/wgfabric demo", "sudo scripts/test"]
    );
    // The first runs the demo verb (tested in tests/demo.rs); the second is the test suite.
    assert!(repo().join("scripts/test").exists());
}

#[test]
fn pages_not_run_here_have_no_untested_commands() {
    let docs = std::fs::read_dir(repo().join("docs")).unwrap();
    for entry in docs.flatten() {
        let name = format!("docs/{}", entry.file_name().to_string_lossy());
        if !name.ends_with(".md") || PAGES.contains(&name.as_str()) {
            continue;
        }
        let commands = blocks(&page(&name)).into_iter().filter(Block::is_command).count();
        let excused = NOT_RUN.iter().any(|(page, _)| *page == name);
        assert!(
            commands == 0 || excused,
            "{name} has {commands} ```sh block(s) nothing runs: add the page to PAGES in \
             crates/cli/tests/docs.rs (with what its commands need), or tag output `text`"
        );
    }
}

/// GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut found = BTreeSet::new();
    for line in markdown.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            found.insert(anchor(line.trim_start_matches('#')));
        }
    }
    found
}

/// Relative link targets `](target)` of a page.
fn links(markdown: &str) -> Vec<String> {
    markdown
        .split("](")
        .skip(1)
        .filter_map(|rest| rest.split_once(')').map(|(target, _)| target.to_owned()))
        .filter(|target| !target.contains("://") && !target.starts_with("mailto:"))
        .collect()
}

#[test]
fn links_point_at_pages_and_headings_that_exist() {
    let mut pages = vec![PathBuf::from("README.md")];
    for entry in std::fs::read_dir(repo().join("docs")).unwrap().flatten() {
        if entry.file_name().to_string_lossy().ends_with(".md") {
            pages.push(Path::new("docs").join(entry.file_name()));
        }
    }
    for page_path in pages {
        let text = std::fs::read_to_string(repo().join(&page_path)).unwrap();
        let dir = page_path.parent().unwrap_or(Path::new(""));
        for link in links(&text) {
            let (file, fragment) = link.split_once('#').unwrap_or((link.as_str(), ""));
            let target = if file.is_empty() { page_path.clone() } else { dir.join(file) };
            let full = repo().join(&target);
            assert!(
                full.exists(),
                "{}: link to {link}: no {}",
                page_path.display(),
                full.display()
            );
            if !fragment.is_empty() {
                let headings = anchors(&std::fs::read_to_string(&full).unwrap());
                assert!(
                    headings.contains(fragment),
                    "{}: link to {link}: no such heading; {headings:?}",
                    page_path.display()
                );
            }
        }
    }
}

#[test]
fn the_index_links_every_page() {
    let index = page("docs/README.md");
    let linked: BTreeSet<String> = links(&index)
        .into_iter()
        .map(|link| link.split('#').next().unwrap_or_default().to_owned())
        .collect();
    for entry in std::fs::read_dir(repo().join("docs")).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") && name != "README.md" {
            assert!(linked.contains(&name), "docs/README.md does not link {name}");
        }
    }
}

#[test]
fn the_daemon_page_documents_every_option_and_variable() {
    let daemon = bin_dir().join("wgfabricd");
    assert!(daemon.exists(), "{} is not built: cargo build -p wgfabricd", daemon.display());
    let help = Command::new(&daemon).arg("--help").output().unwrap();
    let help = stdout(&help);
    let documented = page("docs/daemon.md");
    let words = help.split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']');
    let is_variable =
        |v: &str| v.len() > 2 && v.chars().all(|c| c.is_ascii_uppercase() || c == '_');
    for word in words {
        let name = word.split('=').next().unwrap_or_default();
        let name = name.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
        let option = name.starts_with("--") && name.len() > 2;
        let variable = word.contains('=') && is_variable(name);
        let universal = ["--help", "--version"].contains(&name) || name.starts_with("WG_QUICK");
        if (option || variable) && !universal {
            assert!(documented.contains(name), "docs/daemon.md does not mention {name}");
        }
    }
}

#[test]
fn blocks_are_split_and_outputs_paired() {
    let page = "Intro\n\n```sh\necho hi\n```\n\n```text output\nhi\n```\n\n```sh host=hub\nwg show\n```\ntext\n```text output\nnot paired\n```\n";
    let found = blocks(page);
    assert_eq!(found.len(), 3);
    assert_eq!((found[0].line, found[0].output.as_deref()), (3, Some("hi\n")));
    assert_eq!(found[1].host(), Some("hub"));
    assert_eq!(found[1].output, None, "prose between: not its output");
    assert!(!found[2].is_command());
    assert_eq!(anchor(" A three-host fabric in ten minutes"), "a-three-host-fabric-in-ten-minutes");
    assert_eq!(anchor("The `wgfabricd` daemon"), "the-wgfabricd-daemon");
}

/// One host of a page: a namespace on the shared underlay, and a process holding a mount
/// namespace with the host's own `/etc/wgfabric` and `/var/run/wireguard`.
struct Host {
    name: String,
    keeper: Child,
    // Dropped after the keeper is killed: deleting it kills what the blocks started.
    _ns: Netns,
}

impl Host {
    fn command(&self, dir: &Path) -> Command {
        let mut command = Command::new("nsenter");
        command.args(["--target", &self.keeper.id().to_string(), "--mount", "--net"]);
        command.arg(format!("--wd={}", dir.display()));
        command
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.keeper.kill();
        let _ = self.keeper.wait();
    }
}

/// The directories each host gets privately, created on this machine if missing (and
/// removed again afterwards, if still empty).
const PRIVATE_DIRS: [&str; 2] = ["/etc/wgfabric", "/run/wireguard"];

struct CreatedDirs(Vec<PathBuf>);

impl Drop for CreatedDirs {
    fn drop(&mut self) {
        for dir in &self.0 {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// The hosts of a page, in order of first appearance, on one bridge: the first is 192.0.2.1.
fn hosts(names: &[String], prefix: &str) -> (Netns, Vec<Host>) {
    let internet = Netns::create(&format!("{prefix}-internet")).unwrap();
    internet.exec(&["ip", "link", "add", "inet", "type", "bridge"]).unwrap();
    internet.link_up("inet", None).unwrap();
    let mut hosts = Vec::new();
    for (index, name) in names.iter().enumerate() {
        let ns = Netns::create(&format!("{prefix}-{name}")).unwrap();
        let port = format!("h{index}");
        veth(&ns, "uplink", &internet, &port).unwrap();
        internet.exec(&["ip", "link", "set", &port, "master", "inet"]).unwrap();
        ns.add_address("uplink", &format!("192.0.2.{}/24", index + 1)).unwrap();
        let keeper = Command::new("ip")
            .args(["netns", "exec", ns.name(), "unshare", "--mount", "--propagation", "private"])
            .args(["sleep", "infinity"])
            .spawn()
            .unwrap();
        let host = Host { name: name.clone(), keeper, _ns: ns };
        let mounts = PRIVATE_DIRS.map(|dir| format!("mount -t tmpfs -o mode=0700 tmpfs {dir}"));
        let mut mount = host.command(Path::new("/"));
        mount.args(["sh", "-e", "-c", &mounts.join("\n")]);
        // The keeper may not have unshared yet: retry briefly.
        let mounted = (0..50).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            mount.output().is_ok_and(|output| output.status.success())
        });
        assert!(mounted, "could not give {name} its own directories");
        hosts.push(host);
    }
    (internet, hosts)
}

#[test]
#[ignore = "needs root and network namespaces"]
fn pages_run_across_their_hosts_as_root() {
    let created = CreatedDirs(
        PRIVATE_DIRS
            .iter()
            .map(PathBuf::from)
            .filter(|dir| !dir.exists())
            .inspect(|dir| std::fs::create_dir_all(dir).unwrap())
            .collect(),
    );
    for (number, name) in PAGES.iter().enumerate() {
        let page_blocks: Vec<Block> =
            blocks(&page(name)).into_iter().filter(Block::is_command).collect();
        let mut names: Vec<String> = Vec::new();
        for host in page_blocks.iter().filter_map(Block::host) {
            if !names.iter().any(|name| name == host) {
                names.push(host.to_owned());
            }
        }
        if names.is_empty() {
            continue;
        }
        let prefix = format!("wgfd{:x}x{number}", std::process::id());
        let scratch = Scratch::new();
        let (_internet, hosts) = hosts(&names, &prefix);
        for block in &page_blocks {
            let command = match block.host() {
                Some(host) => hosts.iter().find(|h| h.name == host).unwrap().command(&scratch.0),
                None => Command::new("env"),
            };
            let output = shell(command, &block.text, &scratch.0).output().unwrap();
            check_block(name, block, &output);
        }
        drop(hosts);
    }
    drop(created);
}
