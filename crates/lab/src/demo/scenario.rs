//! One run of the demo, step by step: build the lab, wait for the tunnels, run the matrix,
//! then the failover drill (kill the preferred relay under a steady ping, restart it), with
//! the live peer table refreshed while it waits.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand_core::{CryptoRng, RngCore};

use super::{
    all_direct_that_may, check_machine, clean, ensure_nftables, links_text, lost_between, now,
    outage_after, paths_text, unix_now, Error, FailoverReport, KeptSummary, Lab, Link, Monitors,
    Options, Outage, Reply, Reporter, Settings, SteadyPing, Subnet, Summary, SwitchSummary,
};
use wgfabric_host::failover::Reason;
use wgfabric_model::example;
use wgfabric_model::names::Name;

/// How often live tables refresh.
const REFRESH: Duration = Duration::from_millis(500);
/// How long every host may take to reach its relays.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the pairs that may go direct may take to get there.
const DIRECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a failover or a fail-back may take before the run gives up waiting.
const DRILL_TIMEOUT: Duration = Duration::from_secs(30);

/// Checks the stop flag.
fn check(stop: &AtomicBool) -> Result<(), Error> {
    if stop.load(Ordering::Relaxed) {
        Err(Error::Interrupted)
    } else {
        Ok(())
    }
}

/// Refreshes the live peer table until `done` holds (`Ok(true)`) or `timeout` passes
/// (`Ok(false)`).
fn live_wait(
    lab: &Lab,
    monitors: &mut Monitors,
    reporter: &mut dyn Reporter,
    stop: &AtomicBool,
    timeout: Duration,
    mut done: impl FnMut(&[Link], &Monitors) -> bool,
) -> Result<bool, Error> {
    let deadline = now() + timeout;
    loop {
        check(stop)?;
        monitors.poll()?;
        let links = lab.links(unix_now())?;
        reporter.show(&links_text(&links), true);
        if done(&links, monitors) {
            return Ok(true);
        }
        if now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(REFRESH);
    }
}

/// Runs the demo on the bundled example fabric: see the module documentation. `stop` is set
/// by the caller's signal handler.
///
/// # Errors
/// [`Error::Setup`] when the machine is not ready, [`Error::Interrupted`] when `stop` was
/// set, or whatever step failed. The fabric is removed in every case unless kept.
pub fn run<R: RngCore + CryptoRng>(
    options: &Options,
    rng: &mut R,
    reporter: &mut dyn Reporter,
    stop: &AtomicBool,
) -> Result<Summary, Error> {
    // The signal also interrupts whatever system call was under way: the step it broke
    // failed because of the signal.
    steps(options, rng, reporter, stop).map_err(|error| {
        if stop.load(Ordering::Relaxed) {
            Error::Interrupted
        } else {
            error
        }
    })
}

fn steps<R: RngCore + CryptoRng>(
    options: &Options,
    rng: &mut R,
    reporter: &mut dyn Reporter,
    stop: &AtomicBool,
) -> Result<Summary, Error> {
    reporter.step("checking this machine");
    check_machine()?;
    let nft = ensure_nftables(options.install, reporter)?;
    reporter.done(&format!("root; ip is installed; {nft}"));

    reporter.step("removing what an earlier run left");
    let removed = clean(&options.prefix)?;
    reporter.done(&match removed.len() {
        0 => "nothing left over".to_owned(),
        n => format!("removed {n} namespace(s)"),
    });
    check(stop)?;

    let fabric = example::fabric()?;
    let settings = Settings::new(&options.prefix, options.daemon.clone())?;
    let pid_file = settings.run_dir().join("pid");
    std::fs::create_dir_all(settings.run_dir())
        .and_then(|()| std::fs::write(&pid_file, format!("{}\n", std::process::id())))
        .map_err(|cause| Error::File { path: pid_file.clone(), cause })?;
    let total = fabric.inventory().hosts.len();
    reporter.step(&format!(
        "building the example fabric: {total} hosts in namespaces {}-*, wgfabricd on each",
        options.prefix
    ));
    let started = now();
    let mut up = 0;
    let mut lab = Lab::build(&fabric, settings, rng, |_| up += 1)?;
    reporter.done(&format!("{up} hosts up in {:.1} s", started.elapsed().as_secs_f64()));

    let agents = lab.start_agents(&options.wgfabric)?;
    let mut monitors = Monitors::start(&lab, options.policy);
    reporter.step("waiting for every host to handshake with its relays");
    let started = now();
    let shaken = live_wait(&lab, &mut monitors, reporter, stop, HANDSHAKE_TIMEOUT, |links, _| {
        links.iter().filter(|link| link.active.is_some()).all(|link| link.handshake_age.is_some())
    })?;
    if !shaken {
        return Err(Error::Setup(format!(
            "not every host reached its relays in {} s; see the daemon logs in {}",
            HANDSHAKE_TIMEOUT.as_secs(),
            lab.settings().run_dir().display()
        )));
    }
    reporter.done(&format!("every tunnel up in {:.1} s", started.elapsed().as_secs_f64()));

    if !agents.is_empty() {
        let names: Vec<&str> = agents.iter().map(Name::as_str).collect();
        reporter.step(&format!(
            "direct paths: agents on {} try their peers' candidates (same site: the LAN)",
            names.join(", ")
        ));
        let started = now();
        let direct = live_wait(&lab, &mut monitors, reporter, stop, DIRECT_TIMEOUT, |_, _| {
            all_direct_that_may(&lab)
        })?;
        reporter.done(&if direct {
            format!("direct in {:.1} s", started.elapsed().as_secs_f64())
        } else {
            format!(
                "NOT every pair went direct in {} s; see the agent logs in {}",
                DIRECT_TIMEOUT.as_secs(),
                lab.settings().run_dir().display()
            )
        });
    }

    reporter.step(
        "connectivity matrix: every host pings every other host and subnet; the access policy \
         says which must answer",
    );
    let hosts = lab.hosts().len();
    let pairs = hosts * (hosts.saturating_sub(1) + lab.subnets().len());
    let mut tried = 0;
    let matrix = lab.matrix(|cell| {
        tried += 1;
        let answer = match (cell.allowed, cell.answered) {
            (true, true) => "answered",
            (true, false) => "NO ANSWER",
            (false, false) => "denied by the policy, no answer",
            (false, true) => "ANSWERED ALTHOUGH DENIED",
        };
        reporter.show(&format!("{tried}/{pairs}: {} -> {} {answer}\n", cell.from, cell.to), true);
    })?;
    check(stop)?;
    let answered = matrix.cells.iter().filter(|cell| cell.answered).count();
    reporter.show(&matrix.text(), false);
    reporter.done(&format!("{answered}/{tried} pairs answered"));
    let mut summary = Summary::of_lab(&lab, matrix);
    reporter.show(
        &format!(
            "\nPaths between spokes: direct where the policy and the NATs allow (docs/paths.md)\n{}",
            paths_text(&summary.paths)
        ),
        false,
    );
    if let Some(denied) = &summary.denied {
        let path = denied.path.first().map_or("?", |host| host.as_str());
        reporter.show(
            &format!(
                "\nA denied pair, as `wgfabric explain {path} {}` tells it:\n{}",
                denied.to,
                denied.text("examples/fabric.toml")
            ),
            false,
        );
    }

    if let Some(drill) = drill_plan(&lab, &monitors) {
        let report =
            run_drill(&mut lab, &mut monitors, reporter, stop, &drill, options.policy.up_after)?;
        summary.ok &= report.ok();
        summary.failover = Some(report);
    }
    monitors.stop()?;

    if options.keep {
        let probe = lab.subnets().first().map(Subnet::target);
        summary.kept = Some(KeptSummary::new(lab.keep(), &options.prefix, probe));
        let _ = std::fs::remove_file(&pid_file);
    } else {
        reporter.step("removing the fabric");
        drop(lab);
        reporter.done("done");
    }
    Ok(summary)
}

/// Who pings whom while which relay dies.
struct Drill {
    relay: Name,
    from: Name,
    to: Name,
    address: IpAddr,
}

/// The first monitored host pings the first subnet it does not route (or the last monitored
/// host) while the relay every host prefers dies.
fn drill_plan(lab: &Lab, monitors: &Monitors) -> Option<Drill> {
    let (from, _) = monitors.active().iter().next()?;
    let relay = lab.host(from.as_str()).ok()?.config().failover.as_ref()?.relays.first()?.clone();
    let (to, address) = match lab.subnets().iter().find(|subnet| subnet.router() != from) {
        Some(subnet) => (subnet.name().clone(), subnet.target()),
        None => {
            let (to, _) = monitors.active().iter().rev().find(|(host, _)| *host != from)?;
            let address = lab.host(to.as_str()).ok()?.config().addresses.first()?.addr;
            (to.clone(), address)
        }
    };
    Some(Drill { relay, from: from.clone(), to, address })
}

fn run_drill(
    lab: &mut Lab,
    monitors: &mut Monitors,
    reporter: &mut dyn Reporter,
    stop: &AtomicBool,
    drill: &Drill,
    up_after: u32,
) -> Result<FailoverReport, Error> {
    let Drill { relay, from, to, address } = drill;
    reporter.step(&format!("failover: {from} pings {to} ({address}) while {relay} is killed"));
    let mut ping = SteadyPing::start(lab.host(from.as_str())?, *address)?;
    let steady = live_wait(lab, monitors, reporter, stop, DRILL_TIMEOUT, |_, monitors| {
        ping.replies().len() >= 10 && monitors.all_on(relay)
    })?;
    if !steady {
        return Err(Error::Setup(format!(
            "{from} gets no steady answer from {address} through {relay}"
        )));
    }
    let killed = lab.kill(relay.as_str())?;
    // Traffic is back once a gap in the replies has closed; if there was no gap at all, it
    // never stopped (replies kept coming a second past the last move).
    let settled = |replies: &[Reply], monitors: &Monitors| {
        let moved_off = monitors.active().values().all(|active| active != relay);
        let last_move = monitors.switches().last().map(|record| record.at);
        let flowing = replies
            .last()
            .zip(last_move)
            .is_some_and(|(reply, moved)| reply.at > moved + Duration::from_secs(1));
        moved_off && (outage_after(replies, killed).is_some() || flowing)
    };
    let resumed = live_wait(lab, monitors, reporter, stop, DRILL_TIMEOUT, |_, monitors| {
        settled(ping.replies(), monitors)
    })?;
    let outage = outage_after(ping.replies(), killed)
        .or_else(|| resumed.then_some(Outage { resumed_after: Duration::ZERO, lost: 0 }));
    let failovers: Vec<SwitchSummary> = monitors
        .switches()
        .iter()
        .filter(|record| record.reason == Reason::Failover)
        .map(|record| SwitchSummary::new(record, killed))
        .collect();
    reporter.done(&match outage {
        Some(outage) => format!(
            "traffic resumed {:.1} s after the kill ({} request(s) lost); {} host(s) moved",
            outage.resumed_after.as_secs_f64(),
            outage.lost,
            failovers.len()
        ),
        None => format!("traffic did not resume within {} s", DRILL_TIMEOUT.as_secs()),
    });

    reporter.step(&format!(
        "fail-back: restarting {relay}; hosts return after {up_after} healthy probes"
    ));
    lab.restart(relay.as_str())?;
    let restarted = now();
    let all_back = live_wait(lab, monitors, reporter, stop, DRILL_TIMEOUT, |_, monitors| {
        monitors.all_on(relay)
    })?;
    let back_at = monitors.switches().iter().map(|record| record.at).max();
    let all_back_after =
        back_at.filter(|_| all_back).map(|at| at.saturating_duration_since(restarted));
    let lost_during_fail_back = lost_between(ping.replies(), restarted, now());
    drop(ping);
    let mut switches = failovers;
    switches.extend(
        monitors
            .switches()
            .iter()
            .filter(|record| record.reason == Reason::FailBack)
            .map(|record| SwitchSummary::new(record, restarted)),
    );
    reporter.done(&match all_back_after {
        Some(after) => format!(
            "every host back on {relay} {:.1} s after the restart ({lost_during_fail_back} \
             request(s) lost)",
            after.as_secs_f64()
        ),
        None => format!("not every host came back within {} s", DRILL_TIMEOUT.as_secs()),
    });
    Ok(FailoverReport {
        relay: relay.clone(),
        from: from.clone(),
        to: to.clone(),
        address: *address,
        outage,
        switches,
        all_back_after,
        lost_during_fail_back,
    })
}
