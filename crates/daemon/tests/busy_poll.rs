//! Busy polling (`--busy-poll`, on by default): while packets keep coming, an idle lane polls
//! at `SCHED_IDLE` instead of sleeping, and once traffic stops every lane goes back to sleep
//! at the normal policy, so a quiet tunnel costs no CPU and no thread is left at idle priority.

mod common;

use std::time::Duration;

use common::wgfabricd;
use wgfabric_testkit::scenarios::{Link, Psk, Tunnel, Underlay, INNER_V4};
use wgfabric_testkit::wait_until;

/// Linux's number for `SCHED_IDLE` in `/proc/…/stat`.
const SCHED_IDLE: u32 = 5;
/// Linux's number for the normal policy.
const SCHED_OTHER: u32 = 0;

/// A lane thread's scheduling state, from `/proc/PID/task/TID/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LaneState {
    /// `R` running, `S` sleeping, …
    state: char,
    /// The scheduling policy.
    policy: u32,
}

/// The state of every `lane-N` thread of process `pid`.
fn lanes_of(pid: u32) -> Vec<LaneState> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the daemon runs");
    tasks
        .filter_map(|task| {
            let dir = task.ok()?.path();
            let name = std::fs::read_to_string(dir.join("comm")).ok()?;
            if !name.starts_with("lane-") {
                return None;
            }
            let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
            // Fields after the parenthesised name: state is field 3, policy field 41.
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let state = fields.first()?.chars().next()?;
            let policy = fields.get(41 - 3)?.parse().ok()?;
            Some(LaneState { state, policy })
        })
        .collect()
}

#[test]
#[ignore = "needs root and network namespaces"]
fn lanes_poll_at_idle_priority_during_traffic_and_sleep_normally_after_it() {
    let link = Link::new(Underlay::V4);
    let tunnel = Tunnel::new(&link, &wgfabricd(), &wgfabricd(), Psk::None);
    tunnel.assert_connects(&link, INNER_V4[1]);
    let pid = tunnel.b.pid().expect("b runs");
    assert!(!lanes_of(pid).is_empty(), "no lane threads found");

    let ping = link.a.spawn(&["ping", "-q", "-i", "0.005", "-c", "2000", INNER_V4[1]]);
    let polled = wait_until(Duration::from_secs(5), || {
        lanes_of(pid).iter().any(|lane| lane.policy == SCHED_IDLE)
    });
    assert!(polled, "no lane polled at idle priority between pings: {:?}", lanes_of(pid));
    drop(ping);

    let asleep = wait_until(Duration::from_secs(5), || {
        lanes_of(pid).iter().all(|lane| lane.state == 'S' && lane.policy == SCHED_OTHER)
    });
    assert!(asleep, "lanes still polling after the traffic stopped: {:?}", lanes_of(pid));
}
