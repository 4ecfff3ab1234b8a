//! The command line and environment: the wireguard-go contract (`[-f] IFNAME`,
//! `WG_PROCESS_FOREGROUND`, `WG_TUN_NAME_FILE`, `LOG_LEVEL`) plus our logging and metrics
//! flags (`--metrics` also reads `WGFABRICD_METRICS`, since wg-quick passes no flags).
//!
//! Parsing happens in two steps: clap reads the arguments into [`Args`], then
//! [`Args::resolve`] folds in the environment and validates everything into a [`Config`]
//! without touching the system.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Parser, ValueEnum};
use tracing::level_filters::LevelFilter;

const AFTER_HELP: &str = "\
The daemon creates the TUN interface IFNAME, serves the WireGuard userspace API on
/var/run/wireguard/IFNAME.sock (root only) and detaches once both exist. Configure it
with the stock tools, exactly as wireguard-go:

  wgfabricd wg0 && wg setconf wg0 /etc/wireguard/wg0.conf && ip link set wg0 up
  WG_QUICK_USERSPACE_IMPLEMENTATION=wgfabricd wg-quick up wg0

It exits, removing its socket, on SIGINT or SIGTERM, when the interface is deleted
(ip link del IFNAME) and when the socket file is removed.

Prometheus metrics (see docs/metrics.md), on a loopback or overlay address:

  wgfabricd --metrics 127.0.0.1:9587 wg0 && curl -s http://127.0.0.1:9587/metrics
  WGFABRICD_METRICS=127.0.0.1:9587 WG_QUICK_USERSPACE_IMPLEMENTATION=wgfabricd wg-quick up wg0

Environment:
  WG_PROCESS_FOREGROUND=1   same as --foreground
  WG_TUN_NAME_FILE=PATH     write the interface's name to PATH once it exists
  LOG_LEVEL=LEVEL           error, warn, info (default), debug, verbose or silent;
                            -v overrides it
  WGFABRICD_METRICS=ADDR    same as --metrics ADDR (the flag wins)
  WGFABRICD_LANES=N         same as --lanes N
  WGFABRICD_PIN_CPUS=true   same as --pin-cpus
  WGFABRICD_BUSY_POLL=DUR   same as --busy-poll DUR
  WGFABRICD_GATHER=CPU      same as --gather CPU
  WGFABRICD_LANE_NICE=N     same as --lane-nice N";

/// The command line, as typed.
#[derive(Debug, Parser)]
#[command(
    name = "wgfabricd",
    version,
    about = "Userspace WireGuard daemon, driven by the stock wg and wg-quick tools.",
    after_help = AFTER_HELP
)]
pub(crate) struct Args {
    /// Stay in the foreground instead of detaching; logs go to stderr.
    #[arg(short, long)]
    foreground: bool,

    /// Log more: -v for debug, -vv for every packet-level event (overrides LOG_LEVEL).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,

    /// How log lines look: human-readable, or one JSON object per line for collectors.
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,

    /// Serve Prometheus metrics on http://ADDR:PORT/metrics (off by default). The metrics
    /// name every peer: bind a loopback or overlay address, not a public one.
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<SocketAddr>,

    /// Worker threads ("lanes"), each serving its own TUN queue and UDP sockets; peers are
    /// spread over them by the kernel. Default: one per CPU.
    #[arg(long, value_name = "N", env = "WGFABRICD_LANES")]
    lanes: Option<NonZeroUsize>,

    /// Pin lane N to the N-th CPU the daemon may use (off by default: the scheduler
    /// places threads). Worth trying on hosts dedicated to forwarding, with network
    /// interrupts steered to the same CPUs.
    #[arg(long, env = "WGFABRICD_PIN_CPUS")]
    pin_cpus: bool,

    /// The longest an idle lane polls for its next packet instead of sleeping: 1ms, 500us,
    /// at most 5ms, or 0 to always sleep. A lane polls only while it pays: just before
    /// packets that keep a steady period (pings, health checks) are due, waking on a precise
    /// timer, when the window that takes fits within this long; polls that come up empty
    /// make it back off. A lane busy for most of the last 10 ms (a bulk
    /// transfer) does not poll, nor one whose packets polling noticed late, behind other
    /// threads' time slices.
    /// Cost: at most 10% of one CPU per lane, at idle priority; see docs/PERFORMANCE.md for
    /// the CPU time per round trip it costs and the latency it saves (a thread wake-up, tens
    /// of microseconds on a VM, per packet).
    #[arg(
        long,
        value_name = "DURATION",
        env = "WGFABRICD_BUSY_POLL",
        default_value = "1ms",
        value_parser = parse_busy_poll
    )]
    busy_poll: Duration,

    /// Where lanes gather while their traffic is light: auto (the first CPU the daemon may
    /// use), a CPU number, or off. A lane that carries little moves to that CPU and runs
    /// there at idle priority (SCHED_IDLE), so the application a delivery wakes runs there
    /// too, at once: no wake-up has to rouse a halted CPU (tens of microseconds on a VM),
    /// and the other CPUs stay idle. A lane returns to every CPU, at the normal priority, as
    /// soon as it is busy for an eighth of 10 ms or is kept waiting for that CPU (10 ms once, or
    /// 250 us twice in a row: another busy thread there), and stays away for 1 s to a
    /// minute after the latter. Cost: less CPU time, not more (a ping every 5 ms cost both
    /// daemons 50-95 us of CPU per round trip gathered, boringtun 95-170); light traffic
    /// gets one CPU's capacity, which is why load spreads out; a thread that starts to spin
    /// on that CPU holds the next packet until the scheduler gives idle-priority work a turn
    /// (22-86 ms measured), then the lanes spread out. Needs CAP_SYS_NICE, to leave
    /// SCHED_IDLE. Off with --pin-cpus. See docs/PERFORMANCE.md.
    #[arg(
        long,
        value_name = "CPU",
        env = "WGFABRICD_GATHER",
        default_value = "auto",
        value_parser = parse_gather
    )]
    gather: Gather,

    /// The nice value of the lanes, from -20 to 19 (0: the same share of a CPU as any other
    /// thread). Below 0, a lane writing a batch to the TUN is not preempted by the
    /// application each write wakes on its CPU, and keeps the larger share of a contended CPU
    /// while it has packets to move, as the kernel's own network processing does. Measured
    /// with TCP between two namespaces on 2 CPUs, -10 against 0: preemptions of the receiving
    /// lane fell from 3,700 to 600 a second; one stream moved 4% more per second, four
    /// streams 10%, and 5% more per CPU-second (see docs/PERFORMANCE.md). Cost: while the
    /// tunnel is busy, other threads on the same CPU get less of it and wait for a lane's
    /// batch before they run (0.3 ms on average in that test, against 0.03); an idle lane
    /// takes nothing. Needs CAP_SYS_NICE below 0; without it lanes keep 0. Light traffic
    /// gathered at idle priority (--gather) is unaffected.
    #[arg(
        long,
        value_name = "N",
        env = "WGFABRICD_LANE_NICE",
        default_value_t = -10,
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(i32).range(-20..=19)
    )]
    lane_nice: i32,

    /// The interface to create (at most 15 bytes, as Linux allows).
    #[arg(value_name = "IFNAME")]
    interface: String,
}

/// The shape of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Plain text, one event per line.
    Human,
    /// One JSON object per line.
    Json,
}

/// Everything the daemon needs to know before it starts, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Config {
    /// The interface name; safe to use in a path.
    pub(crate) interface: String,
    /// Whether to stay attached to the terminal.
    pub(crate) foreground: bool,
    /// The most detailed events to log.
    pub(crate) log_level: LevelFilter,
    /// The shape of log lines.
    pub(crate) log_format: LogFormat,
    /// Where to write the interface's name once it exists (`WG_TUN_NAME_FILE`).
    pub(crate) tun_name_file: Option<PathBuf>,
    /// Where to serve Prometheus metrics, if anywhere.
    pub(crate) metrics: Option<SocketAddr>,
    /// How the data path uses the CPUs.
    pub(crate) threads: Threads,
}

/// How many lanes run, where, and how they wait for packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Threads {
    /// Lanes; `None` for one per CPU.
    pub(crate) lanes: Option<NonZeroUsize>,
    /// Whether lane N is pinned to the N-th allowed CPU.
    pub(crate) pin_cpus: bool,
    /// The longest an idle lane polls before it sleeps.
    pub(crate) busy_poll: Duration,
    /// Where lanes with light traffic gather.
    pub(crate) gather: Gather,
    /// The lanes' nice value.
    pub(crate) lane_nice: i32,
}

/// Where lanes with light traffic gather (`--gather`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gather {
    /// On the first CPU the daemon may use.
    Auto,
    /// On this CPU.
    Cpu(usize),
    /// Nowhere: lanes run wherever the scheduler puts them.
    Off,
}

/// The environment variables the daemon reads, so that resolution is a pure function.
#[derive(Debug, Default)]
pub(crate) struct Env {
    pub(crate) process_foreground: Option<String>,
    pub(crate) tun_name_file: Option<PathBuf>,
    pub(crate) log_level: Option<String>,
    pub(crate) metrics: Option<String>,
}

impl Env {
    /// Reads the variables from the process environment.
    pub(crate) fn from_process() -> Self {
        Self {
            process_foreground: std::env::var("WG_PROCESS_FOREGROUND").ok(),
            tun_name_file: std::env::var_os("WG_TUN_NAME_FILE").map(PathBuf::from),
            log_level: std::env::var("LOG_LEVEL").ok(),
            metrics: std::env::var("WGFABRICD_METRICS").ok(),
        }
    }
}

impl Args {
    /// Folds the environment in and validates.
    ///
    /// # Errors
    /// An interface name Linux would refuse or that cannot be part of a path, an unknown
    /// `LOG_LEVEL`, or a `WGFABRICD_METRICS` that is not `ADDR:PORT`.
    pub(crate) fn resolve(self, env: Env) -> anyhow::Result<Config> {
        validate_interface_name(&self.interface)?;
        let log_level = match self.verbose {
            0 => match env.log_level.as_deref() {
                None | Some("") => LevelFilter::INFO,
                Some(level) => parse_log_level(level).context("reading LOG_LEVEL")?,
            },
            1 => LevelFilter::DEBUG,
            _ => LevelFilter::TRACE,
        };
        let metrics = match (self.metrics, env.metrics.as_deref()) {
            (Some(addr), _) => Some(addr),
            (None, None | Some("")) => None,
            (None, Some(text)) => Some(text.parse().with_context(|| {
                format!(
                    "reading WGFABRICD_METRICS={text:?}: expected ADDR:PORT like 127.0.0.1:9587"
                )
            })?),
        };
        Ok(Config {
            interface: self.interface,
            // wireguard-go's test is exactly "1".
            foreground: self.foreground || env.process_foreground.as_deref() == Some("1"),
            log_level,
            log_format: self.log_format,
            tun_name_file: env.tun_name_file.filter(|path| !path.as_os_str().is_empty()),
            metrics,
            threads: Threads {
                lanes: self.lanes,
                pin_cpus: self.pin_cpus,
                busy_poll: self.busy_poll,
                gather: if self.pin_cpus { Gather::Off } else { self.gather },
                lane_nice: self.lane_nice,
            },
        })
    }
}

/// Maps wireguard-go's `LOG_LEVEL` values (and `warn`, `info`) onto tracing levels.
fn parse_log_level(text: &str) -> anyhow::Result<LevelFilter> {
    Ok(match text.to_ascii_lowercase().as_str() {
        "silent" => LevelFilter::OFF,
        "error" => LevelFilter::ERROR,
        "warn" | "warning" => LevelFilter::WARN,
        "info" => LevelFilter::INFO,
        "debug" => LevelFilter::DEBUG,
        "verbose" | "trace" => LevelFilter::TRACE,
        _ => bail!("unknown log level {text:?}: use error, warn, info, debug, verbose or silent"),
    })
}

/// Parses `--busy-poll`: a duration in humantime's grammar (`500us`, `1ms`, `0`), at most
/// 5 ms (the most polling time a lane can save up).
fn parse_busy_poll(text: &str) -> Result<Duration, String> {
    const MAX: Duration = Duration::from_millis(5);
    let text = text.trim();
    let duration = humantime::parse_duration(text)
        .map_err(|error| format!("{text:?} is not a duration like 10ms or 500us, or 0: {error}"))?;
    if duration > MAX {
        return Err(format!("{text:?} is longer than the 5ms limit"));
    }
    Ok(duration)
}

/// Parses `--gather`: `auto`, `off` or a CPU number.
fn parse_gather(text: &str) -> Result<Gather, String> {
    match text.trim() {
        "auto" => Ok(Gather::Auto),
        "off" => Ok(Gather::Off),
        number => number.parse().map(Gather::Cpu).map_err(|_| {
            format!("{number:?} is not a CPU number, auto (the first CPU allowed) or off")
        }),
    }
}

/// Linux interface names are 1 to 15 bytes without `/`, `:` or whitespace, and not `.`/`..`;
/// the name also becomes part of the socket's path.
fn validate_interface_name(name: &str) -> anyhow::Result<()> {
    const IFNAMSIZ: usize = 16;
    if name.is_empty() || name.len() >= IFNAMSIZ {
        bail!("interface name {name:?} must be 1 to {} bytes long", IFNAMSIZ - 1);
    }
    if name == "."
        || name == ".."
        || name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        bail!("interface name {name:?} may not be . or .. nor contain '/', ':' or spaces");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    fn resolve(argv: &[&str], env: Env) -> anyhow::Result<Config> {
        Args::try_parse_from(argv)?.resolve(env)
    }

    #[test]
    fn lanes_pinning_and_busy_polling() {
        let config = resolve(&["wgfabricd", "wg0"], Env::default()).unwrap();
        let default = Threads {
            lanes: None,
            pin_cpus: false,
            busy_poll: Duration::from_millis(1),
            gather: Gather::Auto,
            lane_nice: -10,
        };
        assert_eq!(config.threads, default);
        let argv = ["wgfabricd", "--lanes", "3", "--pin-cpus", "--busy-poll", "250us", "wg0"];
        let config = resolve(&argv, Env::default()).unwrap();
        assert_eq!(
            config.threads,
            Threads {
                lanes: NonZeroUsize::new(3),
                pin_cpus: true,
                busy_poll: Duration::from_micros(250),
                gather: Gather::Off,
                lane_nice: -10,
            },
            "pinned lanes do not gather"
        );
        let config = resolve(&["wgfabricd", "--gather", "1", "wg0"], Env::default()).unwrap();
        assert_eq!(config.threads.gather, Gather::Cpu(1));
        let config = resolve(&["wgfabricd", "--gather", "off", "wg0"], Env::default()).unwrap();
        assert_eq!(config.threads.gather, Gather::Off);
        let error = resolve(&["wgfabricd", "--gather", "first", "wg0"], Env::default());
        assert!(error.unwrap_err().to_string().contains("not a CPU number"));
        assert!(resolve(&["wgfabricd", "--lanes", "0", "wg0"], Env::default()).is_err());
    }

    #[test]
    fn lane_nice_values() {
        for (text, nice) in [("-20", -20), ("-5", -5), ("0", 0), ("19", 19)] {
            let config = resolve(&["wgfabricd", "--lane-nice", text, "wg0"], Env::default());
            assert_eq!(config.unwrap().threads.lane_nice, nice, "{text}");
        }
        for bad in ["-21", "20", "high", ""] {
            let error = resolve(&["wgfabricd", "--lane-nice", bad, "wg0"], Env::default());
            assert!(error.is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn busy_poll_durations() {
        assert_eq!(parse_busy_poll("0"), Ok(Duration::ZERO));
        assert_eq!(parse_busy_poll("0ms"), Ok(Duration::ZERO));
        assert_eq!(parse_busy_poll("500us"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_busy_poll("5ms"), Ok(Duration::from_millis(5)));
        assert_eq!(parse_busy_poll("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_busy_poll("1.5ms"), Ok(Duration::from_micros(1500)));
        assert_eq!(parse_busy_poll("250µs"), Ok(Duration::from_micros(250)));
        for bad in ["", "10", "ms", "-1ms", "10 min", "6ms", "1s", "5001us"] {
            let error = parse_busy_poll(bad).unwrap_err();
            assert!(error.contains(&format!("{:?}", bad.trim())), "{bad:?}: {error}");
        }
    }

    #[test]
    fn the_wireguard_go_command_line() {
        let config = resolve(&["wgfabricd", "wg0"], Env::default()).unwrap();
        assert_eq!(config.interface, "wg0");
        assert!(!config.foreground);
        assert_eq!(config.log_level, LevelFilter::INFO);
        assert_eq!(config.log_format, LogFormat::Human);
        assert!(resolve(&["wgfabricd", "-f", "wg0"], Env::default()).unwrap().foreground);
        assert!(resolve(&["wgfabricd", "--foreground", "wg0"], Env::default()).unwrap().foreground);
        assert!(resolve(&["wgfabricd"], Env::default()).is_err());
    }

    #[test]
    fn environment_like_wireguard_go() {
        let env = Env {
            process_foreground: Some("1".into()),
            tun_name_file: Some("/run/name".into()),
            log_level: Some("verbose".into()),
            metrics: None,
        };
        let config = resolve(&["wgfabricd", "wg0"], env).unwrap();
        assert!(config.foreground);
        assert_eq!(config.tun_name_file, Some(PathBuf::from("/run/name")));
        assert_eq!(config.log_level, LevelFilter::TRACE);
        let env = Env { process_foreground: Some("yes".into()), ..Env::default() };
        assert!(!resolve(&["wgfabricd", "wg0"], env).unwrap().foreground);
        let env = Env { log_level: Some("loud".into()), ..Env::default() };
        assert!(resolve(&["wgfabricd", "wg0"], env).is_err());
    }

    #[test]
    fn verbosity_flags_beat_log_level() {
        let quiet = || Env { log_level: Some("error".into()), ..Env::default() };
        assert_eq!(resolve(&["wgfabricd", "wg0"], quiet()).unwrap().log_level, LevelFilter::ERROR);
        assert_eq!(
            resolve(&["wgfabricd", "-v", "wg0"], quiet()).unwrap().log_level,
            LevelFilter::DEBUG
        );
        assert_eq!(
            resolve(&["wgfabricd", "-vv", "wg0"], quiet()).unwrap().log_level,
            LevelFilter::TRACE
        );
        let json = resolve(&["wgfabricd", "--log-format", "json", "wg0"], quiet()).unwrap();
        assert_eq!(json.log_format, LogFormat::Json);
    }

    #[test]
    fn metrics_are_off_unless_asked_for_and_the_flag_beats_the_environment() {
        assert_eq!(resolve(&["wgfabricd", "wg0"], Env::default()).unwrap().metrics, None);
        let flag = resolve(&["wgfabricd", "--metrics", "127.0.0.1:9587", "wg0"], Env::default());
        assert_eq!(flag.unwrap().metrics, Some("127.0.0.1:9587".parse().unwrap()));
        let env = || Env { metrics: Some("[::1]:9588".into()), ..Env::default() };
        assert_eq!(
            resolve(&["wgfabricd", "wg0"], env()).unwrap().metrics,
            Some("[::1]:9588".parse().unwrap())
        );
        let both = resolve(&["wgfabricd", "--metrics", "127.0.0.1:1", "wg0"], env()).unwrap();
        assert_eq!(both.metrics, Some("127.0.0.1:1".parse().unwrap()));
        assert!(resolve(&["wgfabricd", "--metrics", "localhost", "wg0"], Env::default()).is_err());
        let bad = Env { metrics: Some("9587".into()), ..Env::default() };
        let error = resolve(&["wgfabricd", "wg0"], bad).unwrap_err();
        assert!(format!("{error:#}").contains("WGFABRICD_METRICS"), "{error:#}");
    }

    #[test]
    fn interface_names_linux_accepts() {
        for good in ["wg0", "a", "wgfabric-test15"] {
            assert!(resolve(&["wgfabricd", good], Env::default()).is_ok(), "{good}");
        }
        for bad in ["", "wgfabric-test-16", "../etc", "a/b", "wg 0", ".", "..", "eth0:1"] {
            assert!(resolve(&["wgfabricd", bad], Env::default()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn help_teaches_the_contract() {
        Args::command().debug_assert();
        let help = Args::command().render_long_help().to_string();
        for needle in [
            "/var/run/wireguard/IFNAME.sock",
            "WG_TUN_NAME_FILE",
            "LOG_LEVEL",
            "wg-quick",
            "--metrics",
        ] {
            assert!(help.contains(needle), "help lacks {needle}");
        }
    }
}
