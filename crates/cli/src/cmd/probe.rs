//! `wgfabric probe ADDR`: ICMP echo requests sent from this process, as `ping` sends them, so
//! that a host needs no iputils to check a path through its tunnels.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;
use wgfabric_host::probe::{Echoed, Prober, MAX_PAYLOAD};

use super::progress::parse_duration;
use super::{print, print_json, OutputFormat, FINDINGS};

/// Send ICMP echo requests to an address and report each answer's round-trip time, then a
/// summary, as ping does. The exit status is 0 when at least one request was answered, 1
/// when none was, 2 on an error (no ICMP socket, a bad argument).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
wgfabric probe 10.99.0.1\n  \
wgfabric probe fd99::1 -c 10 -i 200ms\n  \
sudo ip netns exec spoke wgfabric probe 10.20.0.2 -c 3 --size 1372 --format json\n\n\
Requests go one at a time: each waits up to --timeout for its answer (a later answer\n\
counts as lost), and the next leaves --interval after the one before. An address that\n\
has no route gets no request and counts as lost. A large --size checks that the path,\n\
tunnel included, carries full-sized packets.\n\n\
The socket is an unprivileged ICMP socket where net.ipv4.ping_group_range allows it,\n\
else a raw one, which needs root. See docs/cli.md for the JSON shape.")]
pub(crate) struct Args {
    /// The address to probe, IPv4 or IPv6.
    #[arg(value_name = "ADDR")]
    address: IpAddr,
    /// How many requests to send.
    #[arg(short, long, default_value_t = 4, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    count: u32,
    /// Time from one request to the next.
    #[arg(short, long, default_value = "1s", value_parser = parse_duration,
          value_name = "INTERVAL")]
    interval: Duration,
    /// How long to wait for each answer.
    #[arg(short = 'W', long, default_value = "1s", value_parser = parse_duration,
          value_name = "DURATION")]
    timeout: Duration,
    /// Payload bytes per request, after the 8-byte ICMP header (as ping -s).
    #[arg(short, long, default_value_t = 56, value_name = "BYTES", value_parser = payload_size)]
    size: usize,
    /// Output: a line per request and ping's summary, or JSON at the end.
    #[arg(long, value_enum, default_value_t)]
    format: OutputFormat,
}

fn payload_size(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(size) if size <= MAX_PAYLOAD => Ok(size),
        _ => Err(format!("`{text}` is not a size from 0 to {MAX_PAYLOAD} bytes")),
    }
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut prober = Prober::open(None, None, &[args.address])
        .with_context(|| format!("probing {}", args.address))?
        .with_payload(args.size);
    let human = args.format == OutputFormat::Human;
    if human {
        print(&format!("probe {}: {} bytes per request\n", args.address, prober.request_len()))?;
    }
    let mut replies = Vec::new();
    for sequence in 1..=args.count {
        let sent = Instant::now();
        let echoed = prober.echo(args.timeout).context("sending an echo request")?;
        let reply =
            Reply { sequence, echoed: echoed.first().copied().unwrap_or(Echoed::Unanswered) };
        if human {
            print(&reply_line(&reply, args.address, prober.request_len(), args.timeout))?;
        }
        replies.push(reply);
        if sequence < args.count {
            std::thread::sleep((sent + args.interval).saturating_duration_since(Instant::now()));
        }
    }
    let report = Report::new(args.address, prober.request_len(), &replies);
    match args.format {
        OutputFormat::Json => print_json(&report)?,
        OutputFormat::Human => print(&summary_text(&report))?,
    }
    Ok(if report.received == 0 { ExitCode::from(FINDINGS) } else { ExitCode::SUCCESS })
}

/// One request and what became of it.
#[derive(Debug, Clone, Copy)]
struct Reply {
    sequence: u32,
    echoed: Echoed,
}

impl Reply {
    fn rtt(&self) -> Option<Duration> {
        match self.echoed {
            Echoed::Answered(rtt) => Some(rtt),
            Echoed::Unanswered | Echoed::Unreachable => None,
        }
    }
}

/// The JSON document, and what the human summary says.
#[derive(Debug, PartialEq, Serialize)]
struct Report {
    address: IpAddr,
    /// ICMP bytes per request: header and payload.
    bytes: usize,
    replies: Vec<ReplyView>,
    sent: u32,
    received: u32,
    /// Requests the kernel refused at once: no route, or an ICMP error.
    unreachable: u32,
    loss_percent: f64,
    /// `None` when nothing answered.
    rtt_ms: Option<RttStats>,
}

#[derive(Debug, PartialEq, Serialize)]
struct ReplyView {
    sequence: u32,
    outcome: Outcome,
    /// `None` without an answer.
    rtt_ms: Option<f64>,
}

#[derive(Debug, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Outcome {
    Answered,
    Unanswered,
    Unreachable,
}

#[derive(Debug, PartialEq, Serialize)]
struct RttStats {
    min: f64,
    avg: f64,
    max: f64,
}

impl Report {
    fn new(address: IpAddr, bytes: usize, replies: &[Reply]) -> Self {
        let rtts: Vec<f64> = replies.iter().filter_map(Reply::rtt).map(millis).collect();
        let sent = replies.len() as u32;
        let received = rtts.len() as u32;
        let unreachable =
            replies.iter().filter(|reply| reply.echoed == Echoed::Unreachable).count() as u32;
        let loss_percent = match sent {
            0 => 0.0,
            _ => f64::from(sent - received) * 100.0 / f64::from(sent),
        };
        let rtt_ms = (!rtts.is_empty()).then(|| RttStats {
            min: rtts.iter().copied().fold(f64::INFINITY, f64::min),
            avg: rtts.iter().sum::<f64>() / rtts.len() as f64,
            max: rtts.iter().copied().fold(0.0, f64::max),
        });
        let replies = replies
            .iter()
            .map(|reply| ReplyView {
                sequence: reply.sequence,
                outcome: match reply.echoed {
                    Echoed::Answered(_) => Outcome::Answered,
                    Echoed::Unanswered => Outcome::Unanswered,
                    Echoed::Unreachable => Outcome::Unreachable,
                },
                rtt_ms: reply.rtt().map(millis),
            })
            .collect();
        Self { address, bytes, replies, sent, received, unreachable, loss_percent, rtt_ms }
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// ping's line for an answer; for a request without one, why.
fn reply_line(reply: &Reply, address: IpAddr, bytes: usize, timeout: Duration) -> String {
    let sequence = reply.sequence;
    match reply.echoed {
        Echoed::Answered(rtt) => {
            format!(
                "{bytes} bytes from {address}: icmp_seq={sequence} time={:.3} ms\n",
                millis(rtt)
            )
        }
        Echoed::Unanswered => {
            format!("no answer from {address}: icmp_seq={sequence} (waited {timeout:?})\n")
        }
        Echoed::Unreachable => {
            format!("{address} is unreachable: icmp_seq={sequence} (no route, or an ICMP error)\n")
        }
    }
}

/// ping's summary: counts and loss, then the round-trip times if anything answered.
fn summary_text(report: &Report) -> String {
    let mut out = format!("\n--- {} probe statistics ---\n", report.address);
    let loss = format!("{:.1}", report.loss_percent);
    let loss = loss.strip_suffix(".0").unwrap_or(&loss);
    let unreachable = match report.unreachable {
        0 => String::new(),
        count => format!(", +{count} unreachable"),
    };
    let (sent, received) = (report.sent, report.received);
    let _ = writeln!(out, "{sent} sent, {received} received{unreachable}, {loss}% loss");
    if let Some(rtt) = &report.rtt_ms {
        let _ = writeln!(out, "rtt min/avg/max = {:.3}/{:.3}/{:.3} ms", rtt.min, rtt.avg, rtt.max);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replies(echoed: &[Echoed]) -> Vec<Reply> {
        (1..).zip(echoed).map(|(sequence, &echoed)| Reply { sequence, echoed }).collect()
    }

    fn answered(micros: u64) -> Echoed {
        Echoed::Answered(Duration::from_micros(micros))
    }

    #[test]
    fn the_summary_counts_losses_and_times_the_answers() {
        let address: IpAddr = "10.99.0.1".parse().unwrap();
        let report = Report::new(
            address,
            64,
            &replies(&[answered(1500), Echoed::Unanswered, answered(500)]),
        );
        assert_eq!((report.sent, report.received), (3, 2));
        assert_eq!(report.rtt_ms, Some(RttStats { min: 0.5, avg: 1.0, max: 1.5 }));
        assert_eq!(
            summary_text(&report),
            "\n--- 10.99.0.1 probe statistics ---\n3 sent, 2 received, 33.3% loss\n\
             rtt min/avg/max = 0.500/1.000/1.500 ms\n"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(
            json["replies"][1],
            serde_json::json!({"sequence": 2, "outcome": "unanswered", "rtt_ms": null})
        );
        assert_eq!(json["replies"][2]["outcome"], "answered");
        assert_eq!(json["replies"][2]["rtt_ms"], 0.5);
        assert_eq!(json["rtt_ms"]["avg"], 1.0);
        assert_eq!(json["bytes"], 64);
        assert_eq!(json["address"], "10.99.0.1");
    }

    #[test]
    fn nothing_answered_is_total_loss_without_times() {
        let address: IpAddr = "fd99::9".parse().unwrap();
        let report = Report::new(address, 64, &replies(&[Echoed::Unanswered, Echoed::Unreachable]));
        assert_eq!(report.loss_percent, 100.0);
        assert_eq!(report.rtt_ms, None);
        assert_eq!(
            summary_text(&report),
            "\n--- fd99::9 probe statistics ---\n2 sent, 0 received, +1 unreachable, 100% loss\n"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert!(json["rtt_ms"].is_null());
        assert_eq!(
            (json["unreachable"].as_u64(), json["replies"][1]["outcome"].as_str()),
            (Some(1), Some("unreachable"))
        );
    }

    #[test]
    fn each_request_gets_a_line() {
        let address: IpAddr = "10.99.0.1".parse().unwrap();
        let [reply, lost, refused] =
            replies(&[answered(1234), Echoed::Unanswered, Echoed::Unreachable])[..]
        else {
            unreachable!()
        };
        let timeout = Duration::from_secs(1);
        assert_eq!(
            reply_line(&reply, address, 64, timeout),
            "64 bytes from 10.99.0.1: icmp_seq=1 time=1.234 ms\n"
        );
        assert_eq!(
            reply_line(&lost, address, 64, timeout),
            "no answer from 10.99.0.1: icmp_seq=2 (waited 1s)\n"
        );
        assert!(reply_line(&refused, address, 64, timeout)
            .starts_with("10.99.0.1 is unreachable: icmp_seq=3 "));
    }

    #[test]
    fn payload_sizes_are_bounded() {
        assert_eq!(payload_size("0"), Ok(0));
        assert_eq!(payload_size("1400"), Ok(1400));
        assert!(payload_size("1401").unwrap_err().contains("0 to 1400"));
        assert!(payload_size("-1").is_err());
    }
}
