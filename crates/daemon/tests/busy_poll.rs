//! Busy polling (`--busy-poll`, on by default) is adaptive and capped: lanes poll only while
//! replies keep coming back within the window, never more than a tenth of a CPU each, and
//! once traffic stops every lane sleeps, so a quiet tunnel costs no CPU.
#![allow(clippy::disallowed_methods, reason = "a system test measures in real time")]

mod common;

use std::time::{Duration, Instant};

use common::wgfabricd;
use wgfabric_testkit::scenarios::{Link, Psk, Side, Tunnel, Underlay, INNER_V4};
use wgfabric_testkit::wait_until;

/// Clock ticks per second in `/proc/…/stat` (`USER_HZ`, 100 on every Linux architecture).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds (user and system, every thread) that process `pid` has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the daemon runs");
    let fields: Vec<&str> =
        stat.rsplit_once(')').expect("a stat line").1.split_whitespace().collect();
    // utime and stime are fields 14 and 15; the list starts at field 3.
    let ticks: u64 = fields[11..13].iter().map(|f| f.parse::<u64>().expect("a tick count")).sum();
    ticks as f64 / TICKS_PER_SECOND
}

/// The state (`R` running, `S` sleeping, …) of every `lane-N` thread of process `pid`.
fn lane_states(pid: u32) -> Vec<char> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the daemon runs");
    tasks
        .filter_map(|task| {
            let dir = task.ok()?.path();
            let name = std::fs::read_to_string(dir.join("comm")).ok()?;
            if !name.starts_with("lane-") {
                return None;
            }
            let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
            stat.rsplit_once(')')?.1.trim_start().chars().next()
        })
        .collect()
}

#[test]
#[ignore = "needs root and network namespaces"]
fn polling_stays_within_its_budget_and_stops_with_the_traffic() {
    let link = Link::new(Underlay::V4);
    let tunnel = Tunnel::new(&link, &wgfabricd(), &wgfabricd(), Psk::None);
    tunnel.assert_connects(&link, INNER_V4[1]);
    let pids = [Side::A, Side::B].map(|side| tunnel.daemon(side).pid().expect("the daemon runs"));
    let lanes = lane_states(pids[0]).len();
    assert!(lanes > 0, "no lane threads found");

    let before = pids.map(cpu_seconds);
    let start = Instant::now();
    let ping = link.a.spawn(&["ping", "-q", "-i", "0.005", "-c", "400", INNER_V4[1]]);
    ping.wait().expect("the pings are answered");
    let wall = start.elapsed().as_secs_f64();
    for (pid, before) in pids.into_iter().zip(before) {
        let used = cpu_seconds(pid) - before;
        // Each lane polls at most a tenth of the time; the packets themselves cost far less
        // than another tenth. (Polling for 10 ms after every packet used one whole CPU.)
        let bound = wall * (0.1 * lanes as f64 + 0.1);
        assert!(used <= bound, "daemon {pid} used {used:.2} CPU-s in {wall:.2} s of pings");
    }

    for pid in pids {
        let asleep = wait_until(Duration::from_secs(5), || {
            lane_states(pid).iter().all(|&state| state == 'S')
        });
        assert!(asleep, "lanes still running after the traffic stopped: {:?}", lane_states(pid));
    }
}
