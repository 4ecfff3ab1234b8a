//! The pair machine driven from both ends over a simulated underlay: a virtual clock, each
//! end's signals handed to the other as the store would, and a handshake whenever both ends
//! have the direct peer and one of them sends to an endpoint that reaches the other.

use std::net::SocketAddr;
use std::time::Duration;

use super::*;
use wgfabric_model::names::Name;
use wgfabric_model::paths::Never;
use wgfabric_store::state::{PairSignal, PathMode, PathReason, Stage};

const START: u64 = 1_800_000_000_000;
const STEP: u64 = 250;

fn name(text: &str) -> Name {
    text.parse().unwrap()
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

/// Two ends of a pair and the underlay between them.
struct World {
    now: u64,
    a: Pair,
    b: Pair,
    /// Candidates each end has for the other.
    for_a: CandidateList,
    for_b: CandidateList,
    /// Endpoints that reach the end they name.
    reachable: Vec<SocketAddr>,
    /// The direct peers' latest handshake (shared: a handshake completes at both ends).
    handshake: Option<u64>,
    /// Whether the direct path carries packets (a NAT flush breaks it).
    up: bool,
    /// When each end moved the addresses to the direct peer, or back.
    moved: Vec<(char, u64, Action)>,
}

impl World {
    fn new(candidates: &[&str], reachable: &[&str]) -> Self {
        let list = CandidateList {
            endpoints: candidates.iter().map(|c| addr(c)).collect(),
            symmetric: false,
        };
        Self {
            now: START,
            a: Pair::new(name("b"), START),
            b: Pair::new(name("a"), START),
            for_a: list.clone(),
            for_b: list,
            reachable: reachable.iter().map(|c| addr(c)).collect(),
            handshake: None,
            up: true,
            moved: Vec::new(),
        }
    }

    /// One round at both ends, `b` reading what `a` signalled this round (the store's lag is
    /// well within a round), then the underlay.
    fn round(&mut self) {
        let (a_signal, b_signal) = (self.a.signal(), self.b.signal());
        let a_sees = Some(b_signal.as_ref());
        let b_sees = Some(a_signal.as_ref());
        let round = |candidates, handshake_ms, peer| Round {
            now_ms: self.now,
            never: None,
            candidates,
            handshake_ms,
            peer,
        };
        let a_handshake = self.a.target().and(self.handshake);
        let b_handshake = self.b.target().and(self.handshake);
        self.a.handle_round(&round(&self.for_a, a_handshake, a_sees));
        self.b.handle_round(&round(&self.for_b, b_handshake, b_sees));
        self.underlay();
        self.collect();
    }

    fn underlay(&mut self) {
        let (Some(a), Some(b)) = (self.a.target(), self.b.target()) else {
            self.handshake = None;
            return;
        };
        let reaches = |target: DirectTarget| {
            target.endpoint.is_none_or(|endpoint| self.reachable.contains(&endpoint))
        };
        if self.up && (reaches(a) || reaches(b)) {
            // Keepalives and handshakes: fresh while the path works.
            self.handshake = Some(self.now);
        }
    }

    fn collect(&mut self) {
        for (end, pair) in [('a', &mut self.a), ('b', &mut self.b)] {
            while let Some(action) = pair.poll_action() {
                self.moved.push((end, self.now, action));
            }
        }
    }

    fn probe(&mut self) {
        let rtt = self.up.then_some(Duration::from_millis(3));
        self.a.handle_probe(self.now, rtt);
        self.b.handle_probe(self.now, rtt);
        self.collect();
    }

    /// Runs rounds every `STEP` (and at each end's deadline) until `done` or `limit`.
    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Self) -> bool) -> bool {
        let end = self.now + limit.as_millis() as u64;
        while self.now < end {
            self.round();
            if done(self) {
                return true;
            }
            let next = self.now + STEP;
            let deadline = [self.a.deadline(self.now), self.b.deadline(self.now)]
                .into_iter()
                .flatten()
                .filter(|at| *at > self.now)
                .min()
                .unwrap_or(next);
            self.now = next.min(deadline);
        }
        false
    }

    fn moves(&self, action: &Action) -> Vec<(char, u64)> {
        self.moved.iter().filter(|(_, _, a)| a == action).map(|(end, at, _)| (*end, *at)).collect()
    }
}

fn direct(world: &World) -> bool {
    world.a.mode().0 == PathMode::Direct && world.b.mode().0 == PathMode::Direct
}

#[test]
fn both_ends_go_direct_and_switch_at_one_instant() {
    let mut world = World::new(&["198.51.100.2:51820"], &["198.51.100.2:51820"]);
    assert!(world.run_until(Duration::from_secs(30), direct), "direct within 30 s");
    let moves = world.moves(&Action::MoveAddresses);
    assert_eq!(moves.len(), 2, "{:?}", world.moved);
    assert_eq!(moves[0].1, moves[1].1, "both ends move at the agreed instant: {moves:?}");
    // Nothing moved before both were ready and the margin had passed.
    let ready = START + u64::from(GOOD_ROUNDS - 1) * STEP;
    assert!(moves[0].1 >= ready + SWITCH_MARGIN.as_millis() as u64, "{moves:?}");
    let (_, reason, _) = world.a.mode();
    assert_eq!(reason, PathReason::Handshake);
    assert_eq!(
        world.a.target(),
        Some(DirectTarget { endpoint: None, keepalive: 25, carries: true })
    );
}

#[test]
fn the_addresses_stay_on_the_relay_until_the_handshake() {
    let mut world = World::new(&["198.51.100.2:51820"], &[]);
    world.round();
    let target = world.a.target().unwrap();
    assert_eq!(target.endpoint, Some(addr("198.51.100.2:51820")));
    assert!(!target.carries, "no allowed IP before a handshake");
    assert_eq!(world.a.mode().1, PathReason::Trying);
    assert_eq!(world.a.signal().map(|s| s.stage), Some(Stage::Trying));
}

#[test]
fn candidates_are_tried_in_order_and_one_that_answers_wins() {
    let order = ["203.0.113.9:51820", "198.51.100.2:51820", "192.168.1.7:51820"];
    let mut world = World::new(&order, &["192.168.1.7:51820"]);
    assert!(world.run_until(Duration::from_secs(40), direct));
    let tried: Vec<Action> = world
        .moved
        .iter()
        .filter(|(end, _, _)| *end == 'a')
        .map(|(_, _, action)| action.clone())
        .take(3)
        .collect();
    assert_eq!(
        tried,
        [
            Action::AddPeer(addr(order[0])),
            Action::SetEndpoint(addr(order[1])),
            Action::SetEndpoint(addr(order[2]))
        ]
    );
}

#[test]
fn a_roamed_endpoint_is_never_overwritten_once_a_handshake_came_back() {
    let mut world = World::new(&["198.51.100.2:51820"], &["198.51.100.2:51820"]);
    world.round();
    assert!(world.a.target().unwrap().endpoint.is_some());
    world.now += STEP;
    world.round();
    assert_eq!(world.a.target().unwrap().endpoint, None, "left to roam after a handshake");
}

#[test]
fn failed_attempts_back_off_doubling_and_say_when_they_failed() {
    let mut world = World::new(&["198.51.100.2:51820", "198.51.100.3:51820"], &[]);
    let failed = |w: &World| w.a.mode().1 == PathReason::ProbeFailed;
    assert!(world.run_until(Duration::from_secs(30), failed));
    let (mode, _, since) = world.a.mode();
    assert_eq!(mode, PathMode::Relayed);
    assert_eq!(since, world.now, "probe failed at T");
    let first = world.now;
    assert_eq!(world.a.deadline(world.now), Some(first + FIRST_BACKOFF.as_millis() as u64));
    assert!(world.a.target().is_none(), "the direct peer is removed");
    // The next attempt starts after the backoff, fails again, and waits twice as long.
    let trying = |w: &World| w.a.mode().1 == PathReason::Trying;
    assert!(world.run_until(Duration::from_secs(90), trying));
    assert!(world.now >= first + FIRST_BACKOFF.as_millis() as u64, "not before the backoff");
    assert!(world.run_until(Duration::from_secs(30), failed));
    assert_eq!(world.a.deadline(world.now), Some(world.now + 2 * FIRST_BACKOFF.as_millis() as u64));
}

#[test]
fn a_dead_direct_path_is_demoted_at_both_ends_within_a_second() {
    let mut world = World::new(&["198.51.100.2:51820"], &["198.51.100.2:51820"]);
    assert!(world.run_until(Duration::from_secs(30), direct));
    world.up = false;
    let broke = world.now;
    // Probes every 200 ms, as the agent sends them over a direct path.
    while world.a.mode().0 == PathMode::Direct || world.b.mode().0 == PathMode::Direct {
        world.now += 200;
        world.probe();
        world.round();
        assert!(world.now - broke < 5_000, "still direct: {:?}", world.moved);
    }
    let back = world.moves(&Action::MoveBack(PathReason::Demoted));
    assert_eq!(back.len(), 2, "{:?}", world.moved);
    assert!(back.iter().all(|(_, at)| at - broke <= 1_000), "{back:?}");
    assert_eq!(world.a.mode().1, PathReason::Demoted);
    assert!(world.a.target().is_none() && world.b.target().is_none());
}

#[test]
fn a_stale_handshake_demotes_and_the_peer_follows() {
    let mut world = World::new(&["198.51.100.2:51820"], &["198.51.100.2:51820"]);
    assert!(world.run_until(Duration::from_secs(30), direct));
    world.up = false;
    let stale = |w: &World| w.a.mode().0 == PathMode::Relayed && w.b.mode().0 == PathMode::Relayed;
    assert!(world.run_until(STALE_HANDSHAKE + Duration::from_secs(2), stale));
    assert_eq!(world.a.mode().1, PathReason::Demoted);
}

#[test]
fn an_end_follows_when_its_peer_gave_the_path_up() {
    let mut world = World::new(&["198.51.100.2:51820"], &["198.51.100.2:51820"]);
    assert!(world.run_until(Duration::from_secs(30), direct));
    let candidates = CandidateList::default();
    world.a.handle_round(&Round {
        now_ms: world.now,
        never: None,
        candidates: &candidates,
        handshake_ms: Some(world.now),
        peer: Some(None),
    });
    assert_eq!(world.a.mode(), (PathMode::Relayed, PathReason::Demoted, world.now));
    // A peer whose document cannot be read is no reason to leave a working path.
    world.b.handle_round(&Round {
        now_ms: world.now,
        never: None,
        candidates: &candidates,
        handshake_ms: Some(world.now),
        peer: None,
    });
    assert_eq!(world.b.mode().0, PathMode::Direct);
}

#[test]
fn an_end_in_backoff_joins_a_newer_attempt_only() {
    let list = CandidateList { endpoints: vec![addr("198.51.100.2:51820")], symmetric: false };
    let mut pair = Pair::new(name("b"), START);
    let mut round =
        Round { now_ms: START, never: None, candidates: &list, handshake_ms: None, peer: None };
    pair.handle_round(&round);
    let failed_at = START + 8_000;
    round.now_ms = failed_at;
    pair.handle_round(&round);
    assert_eq!(pair.mode().1, PathReason::ProbeFailed);
    let old = PairSignal { peer: name("a"), stage: Stage::Trying, since_ms: START + 1_000 };
    round.now_ms += 1_000;
    round.peer = Some(Some(&old));
    pair.handle_round(&round);
    assert_eq!(pair.mode().1, PathReason::ProbeFailed, "an attempt older than the failure");
    let new = PairSignal { since_ms: round.now_ms, ..old.clone() };
    round.peer = Some(Some(&new));
    pair.handle_round(&round);
    assert_eq!(pair.mode().1, PathReason::Trying, "the peer's new attempt is joined");
}

#[test]
fn reasons_say_why_a_pair_stays_relayed() {
    let none = CandidateList::default();
    let symmetric = CandidateList { endpoints: Vec::new(), symmetric: true };
    let mut pair = Pair::new(name("b"), START);
    let mut round =
        Round { now_ms: START, never: None, candidates: &none, handshake_ms: None, peer: None };
    pair.handle_round(&round);
    assert_eq!(pair.mode(), (PathMode::Relayed, PathReason::NoCandidate, START));
    assert_eq!(pair.deadline(START), None, "nothing to wait for but candidates");
    round.candidates = &symmetric;
    round.now_ms += 1_000;
    pair.handle_round(&round);
    assert_eq!(pair.mode(), (PathMode::Relayed, PathReason::SymmetricNat, START + 1_000));
    round.never = Some(Never::Policy);
    pair.handle_round(&round);
    assert_eq!(pair.mode().1, PathReason::Policy);
    assert_eq!(pair.deadline(round.now_ms), None);
    assert!(pair.target().is_none() && pair.signal().is_none());
    // When the desired state lets the pair go direct, it tries at once.
    let list = CandidateList { endpoints: vec![addr("198.51.100.2:51820")], symmetric: false };
    round.never = None;
    round.candidates = &list;
    pair.handle_round(&round);
    assert_eq!(pair.mode().1, PathReason::Trying);
    assert_eq!(pair.poll_action(), Some(Action::AddPeer(addr("198.51.100.2:51820"))));
}

#[test]
fn a_failed_attempt_is_explained_by_a_symmetric_nat_found_later() {
    // One relay has seen the peer, so its mapping is tried; the second relay's sighting,
    // at another port, arrives only after the attempt failed.
    let early = CandidateList { endpoints: vec![addr("198.51.100.2:40001")], symmetric: false };
    let symmetric = CandidateList { endpoints: Vec::new(), symmetric: true };
    let mut pair = Pair::new(name("c"), START);
    let mut round =
        Round { now_ms: START, never: None, candidates: &early, handshake_ms: None, peer: None };
    pair.handle_round(&round);
    assert_eq!(pair.mode().1, PathReason::Trying);
    round.now_ms += CANDIDATE_WINDOW.as_millis() as u64;
    pair.handle_round(&round);
    assert_eq!(pair.mode().1, PathReason::ProbeFailed);
    let retry = pair.deadline(round.now_ms);
    round.candidates = &symmetric;
    round.now_ms += 1_000;
    pair.handle_round(&round);
    assert_eq!(pair.mode(), (PathMode::Relayed, PathReason::SymmetricNat, round.now_ms));
    assert_eq!(pair.deadline(round.now_ms), retry, "the failure's backoff stands");
}

#[test]
fn a_ready_end_gives_up_when_its_peer_never_is() {
    let list = CandidateList { endpoints: vec![addr("198.51.100.2:51820")], symmetric: false };
    let mut pair = Pair::new(name("b"), START);
    let mut round =
        Round { now_ms: START, never: None, candidates: &list, handshake_ms: None, peer: None };
    pair.handle_round(&round);
    for _ in 0..GOOD_ROUNDS {
        round.now_ms += 1_000;
        round.handshake_ms = Some(round.now_ms);
        pair.handle_round(&round);
    }
    assert_eq!(pair.mode().1, PathReason::WaitingForPeer);
    round.now_ms += READY_WAIT.as_millis() as u64 + 1;
    round.handshake_ms = Some(round.now_ms);
    pair.handle_round(&round);
    assert_eq!(pair.mode().1, PathReason::ProbeFailed);
}
