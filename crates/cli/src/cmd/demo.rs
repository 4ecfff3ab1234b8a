//! `wgfabric demo`: the example fabric on this machine, in network namespaces.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context as _;
use rand_core::OsRng;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use wgfabric_host::failover::Policy;
use wgfabric_lab::demo::{self, Options, Reporter, DEFAULT_PREFIX};

use super::{print, print_json, OutputFormat, FINDINGS};

/// Run the example fabric on this machine: two relays, spokes behind NAT, a subnet router,
/// each in its own network namespace with wgfabricd. Shows the live peer table and a
/// connectivity matrix with the path of every pair, kills the active relay to show the
/// spokes failing over (and back), then removes everything. Needs root.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  cargo build --release && sudo target/release/wgfabric demo   # from a checkout\n  \
sudo wgfabric demo\n  \
sudo wgfabric demo --keep      # leave it running; it says how to look around\n  \
sudo wgfabric demo --clean     # remove what --keep (or a crashed run) left\n  \
sudo wgfabric demo --format json > demo.json\n\n\
Exit status: 0 if every pair answered and traffic resumed within 10 s of the relay's death,\n\
1 if not, 2 if the demo could not run. Ctrl-C removes the fabric before exiting."
)]
pub(crate) struct Args {
    /// Leave the fabric running at the end and print commands to look around with.
    #[arg(long, conflicts_with = "clean")]
    keep: bool,
    /// Only remove what an earlier run left (after --keep or a crash), then exit.
    #[arg(long)]
    clean: bool,
    /// The wgfabricd binary [default: next to this executable, else on PATH].
    #[arg(long, env = "WGFABRIC_DAEMON", value_name = "PATH")]
    daemon: Option<PathBuf>,
    /// Prefix of the namespaces (PREFIX-HOST), interfaces and /run/PREFIX; runs with
    /// different prefixes do not touch each other.
    #[arg(long, default_value = DEFAULT_PREFIX, value_name = "NAME")]
    prefix: String,
    /// Fail instead of installing the nftables package when `nft` is missing (the demo
    /// installs it itself as root on Debian or Ubuntu, after saying so).
    #[arg(long)]
    no_install: bool,
    /// Progress and tables for people, or only a JSON summary on standard output.
    #[arg(long, value_enum, default_value_t)]
    format: OutputFormat,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM, SIGHUP] {
        // A second signal while cleaning up exits at once.
        signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(&stop))
            .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&stop)))
            .context("installing the signal handlers")?;
    }
    if args.clean {
        demo::check_machine()?;
        let removed = demo::clean(&args.prefix)?;
        eprintln!("removed {} namespace(s) of prefix {}", removed.len(), args.prefix);
        return Ok(ExitCode::SUCCESS);
    }
    let json = args.format == OutputFormat::Json;
    let mut reporter = Terminal::new(json);
    let daemon = match args.daemon {
        Some(path) => demo::locate_daemon(Some(&path))?,
        None => {
            reporter.step("finding wgfabricd");
            let path = demo::locate_daemon(None)?;
            reporter.done(&format!("using {}", path.display()));
            path
        }
    };
    let wgfabric = std::env::current_exe().context("finding this executable for the agents")?;
    let options = Options {
        prefix: args.prefix,
        daemon,
        wgfabric,
        keep: args.keep,
        policy: Policy::default(),
        install: !args.no_install,
    };
    let summary = demo::run(&options, &mut OsRng, &mut reporter, &stop)?;
    if json {
        print_json(&summary)?;
    } else {
        print(&summary.text())?;
    }
    Ok(if summary.ok { ExitCode::SUCCESS } else { ExitCode::from(FINDINGS) })
}

/// Progress on standard error; tables on standard output, redrawn in place on a terminal.
/// Elsewhere (a pipe, a log file) the last live table of a step is printed when it ends.
struct Terminal {
    json: bool,
    tty: bool,
    /// Lines of the live block last drawn, directly above the cursor.
    live_lines: usize,
    /// Off a terminal: the live block to print when the step ends.
    pending: Option<String>,
}

impl Terminal {
    fn new(json: bool) -> Self {
        Self { json, tty: std::io::stdout().is_terminal(), live_lines: 0, pending: None }
    }

    fn write(&mut self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
}

impl Reporter for Terminal {
    fn step(&mut self, what: &str) {
        self.live_lines = 0;
        eprintln!("==> {what}");
    }

    fn done(&mut self, result: &str) {
        self.live_lines = 0;
        if let Some(text) = self.pending.take() {
            self.write(&text);
        }
        eprintln!("    {result}");
    }

    fn show(&mut self, text: &str, live: bool) {
        match (self.json, live, self.tty) {
            (true, _, _) => {}
            (false, true, false) => self.pending = Some(text.to_owned()),
            (false, true, true) => {
                if self.live_lines > 0 {
                    // Up over the previous block, then clear to the end of the screen.
                    self.write(&format!("\x1b[{}A\x1b[J", self.live_lines));
                }
                self.write(text);
                self.live_lines = text.lines().count();
            }
            (false, false, _) => {
                self.pending = None;
                self.live_lines = 0;
                self.write(text);
            }
        }
    }
}
