//! The direct-path state machine of one pair of spokes, seen from one end.
//!
//! ```text
//!            candidates, not in backoff           handshake for GOOD_ROUNDS rounds
//!  Relayed ───────────────────────────► Trying ─────────────────────────────────► Ready
//!     ▲  ▲   each candidate CANDIDATE_WINDOW         │ all candidates tried              │ peer ready:
//!     │  └────────────────────────────────────────────┘ (probe-failed, backoff)          │ switch at
//!     │                                                                                  ▼ max(both)+margin
//!     └──────── handshake stale, probes fail, the peer left (demoted, backoff) ─────── Direct
//! ```
//!
//! Pure: time (milliseconds since the Unix epoch, since the switch instant is agreed between
//! two hosts) and observations come in as arguments; the caller applies [`Pair::target`] to
//! the interface and logs [`Pair::poll_action`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use super::candidates::CandidateList;
use wgfabric_model::names::Name;
use wgfabric_model::paths::Never;
use wgfabric_store::state::{PairSignal, PathMode, PathReason, Stage};

/// The keepalive of a direct peer: keeps the NAT mappings at both ends open (UDP mappings
/// last 30 s or more) and gives a handshake at least every two minutes.
pub const DIRECT_KEEPALIVE: u16 = 25;
/// How long each candidate is tried: the first handshake initiation and one retransmission
/// (WireGuard retries after 5 s, plus jitter).
pub const CANDIDATE_WINDOW: Duration = Duration::from_secs(7);
/// Rounds in a row with a handshake on the direct peer before this end is ready.
pub const GOOD_ROUNDS: u32 = 2;
/// Added to the later of both ends' readiness to give the switch instant: time for each
/// to read the other's signal from the store.
pub const SWITCH_MARGIN: Duration = Duration::from_secs(2);
/// How long a ready end waits for the other before giving up the attempt.
pub const READY_WAIT: Duration = Duration::from_secs(20);
/// A direct peer whose latest handshake is older than this is dead: with traffic or the
/// keepalive, WireGuard makes a new handshake every two minutes (REKEY_AFTER_TIME), so 135 s
/// leaves one retry's worth of slack.
pub const STALE_HANDSHAKE: Duration = Duration::from_secs(135);
/// Unanswered probes in a row over the direct path that demote it.
pub const DEMOTE_AFTER_FAILED_PROBES: u32 = 3;
/// The first wait before trying a pair again after a failure; it doubles with each failure
/// in a row, up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(60);
/// The longest wait between attempts, and the wait after finding a symmetric NAT.
pub const MAX_BACKOFF: Duration = Duration::from_secs(16 * 60);

const fn ms(duration: Duration) -> u64 {
    duration.as_millis() as u64
}

/// What the caller observed this round for the pair.
#[derive(Debug, Clone, Copy)]
pub struct Round<'a> {
    /// Now, in milliseconds since the Unix epoch.
    pub now_ms: u64,
    /// Why the pair never goes direct, per the desired state.
    pub never: Option<Never>,
    /// The endpoints to try.
    pub candidates: &'a CandidateList,
    /// The direct peer's latest handshake, in milliseconds since the Unix epoch, when the
    /// interface has the peer and it had one.
    pub handshake_ms: Option<u64>,
    /// The peer's signal about this host, when its candidates document is fresh: `Some(None)`
    /// when the document is fresh but says nothing of this host.
    pub peer: Option<Option<&'a PairSignal>>,
}

/// How the direct peer should be on the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectTarget {
    /// The endpoint to set; `None` leaves the one the peer roamed to.
    pub endpoint: Option<SocketAddr>,
    /// Persistent keepalive.
    pub keepalive: u16,
    /// Whether it carries the peer's overlay addresses.
    pub carries: bool,
}

/// A change to make to the interface, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Add the direct peer with this endpoint and a keepalive.
    AddPeer(SocketAddr),
    /// Try another endpoint.
    SetEndpoint(SocketAddr),
    /// Both ends are ready: the addresses move at this instant (milliseconds since the
    /// Unix epoch).
    Agreed(u64),
    /// Move the peer's addresses from the relay to the direct peer.
    MoveAddresses,
    /// Move them back to the relay.
    MoveBack(PathReason),
    /// Remove the direct peer.
    RemovePeer(PathReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Relayed { reason: PathReason, since_ms: u64, retry_at_ms: u64 },
    Trying { started_ms: u64, index: usize, window_ms: u64, endpoint: SocketAddr, good: u32 },
    Ready { since_ms: u64, switch_at_ms: Option<u64> },
    Direct { since_ms: u64, failed_probes: u32 },
}

/// One pair's direct path, from this end.
#[derive(Debug, Clone)]
pub struct Pair {
    peer: Name,
    state: State,
    /// Failed attempts in a row, for the backoff.
    failures: u32,
    /// When the last attempt failed: the peer's attempts started before it are not joined.
    failed_ms: u64,
    /// The latest round-trip time measured over the tunnel.
    rtt: Option<Duration>,
    actions: VecDeque<Action>,
}

impl Pair {
    /// A pair that starts relayed, with no candidate known yet.
    pub fn new(peer: Name, now_ms: u64) -> Self {
        Self {
            peer,
            state: State::Relayed {
                reason: PathReason::NoCandidate,
                since_ms: now_ms,
                retry_at_ms: now_ms,
            },
            failures: 0,
            failed_ms: 0,
            rtt: None,
            actions: VecDeque::new(),
        }
    }

    /// The other spoke.
    pub fn peer(&self) -> &Name {
        &self.peer
    }

    /// Takes one round of observations.
    pub fn handle_round(&mut self, round: &Round<'_>) {
        let now = round.now_ms;
        if let Some(never) = round.never {
            return self.relay(now, never.into(), u64::MAX, false);
        }
        let handshake_since = |start: u64| round.handshake_ms.is_some_and(|at| at >= start);
        let stale =
            round.handshake_ms.is_none_or(|at| now.saturating_sub(at) > ms(STALE_HANDSHAKE));
        match self.state {
            State::Relayed { reason, retry_at_ms, .. } => {
                // A pair the desired state kept relayed may go direct at once when it allows.
                let due = now >= retry_at_ms || reason.is_never();
                let joins = round.peer.flatten().is_some_and(|signal| {
                    signal.stage == Stage::Trying && signal.since_ms > self.failed_ms
                });
                match round.candidates.endpoints.first() {
                    Some(&endpoint) if due || joins => {
                        self.state = State::Trying {
                            started_ms: now,
                            index: 0,
                            window_ms: now,
                            endpoint,
                            good: 0,
                        };
                        self.actions.push_back(Action::AddPeer(endpoint));
                    }
                    None if due => {
                        let reason = if round.candidates.symmetric {
                            PathReason::SymmetricNat
                        } else {
                            PathReason::NoCandidate
                        };
                        self.relay(now, reason, now, false);
                    }
                    // A failed attempt whose candidate the relays have since ruled out (the
                    // second relay's sighting came after the first one's): the NAT is why,
                    // and the backoff stands.
                    None if round.candidates.symmetric && reason == PathReason::ProbeFailed => {
                        self.relay(now, PathReason::SymmetricNat, retry_at_ms, false);
                    }
                    // Waiting out the backoff, which the reason's time explains.
                    _ => {}
                }
            }
            State::Trying { started_ms, index, window_ms, endpoint, good } => {
                if handshake_since(started_ms) {
                    let good = good + 1;
                    self.state = if good >= GOOD_ROUNDS {
                        State::Ready { since_ms: now, switch_at_ms: None }
                    } else {
                        State::Trying { started_ms, index, window_ms, endpoint, good }
                    };
                } else if now.saturating_sub(window_ms) >= ms(CANDIDATE_WINDOW) {
                    match round.candidates.endpoints.get(index + 1) {
                        Some(&next) => {
                            self.state = State::Trying {
                                started_ms,
                                index: index + 1,
                                window_ms: now,
                                endpoint: next,
                                good: 0,
                            };
                            self.actions.push_back(Action::SetEndpoint(next));
                        }
                        None => self.fail(now, PathReason::ProbeFailed),
                    }
                }
            }
            State::Ready { since_ms, switch_at_ms } => {
                let peer_ready =
                    round.peer.flatten().filter(|signal| signal.stage != Stage::Trying);
                if stale {
                    self.fail(now, PathReason::ProbeFailed);
                } else if let Some(signal) = peer_ready {
                    let at = since_ms.max(signal.since_ms) + ms(SWITCH_MARGIN);
                    if now >= at || signal.stage == Stage::Direct {
                        self.state = State::Direct { since_ms: now, failed_probes: 0 };
                        self.failures = 0;
                        self.actions.push_back(Action::MoveAddresses);
                    } else if switch_at_ms != Some(at) {
                        self.state = State::Ready { since_ms, switch_at_ms: Some(at) };
                        self.actions.push_back(Action::Agreed(at));
                    }
                } else if now.saturating_sub(since_ms) > ms(READY_WAIT) {
                    self.fail(now, PathReason::ProbeFailed);
                }
            }
            State::Direct { .. } => {
                let peer_left = round
                    .peer
                    .is_some_and(|signal| signal.is_none_or(|s| s.stage == Stage::Trying));
                if stale || peer_left {
                    self.fail(now, PathReason::Demoted);
                }
            }
        }
    }

    /// Takes the result of a probe over the tunnel to the peer's overlay address.
    pub fn handle_probe(&mut self, now_ms: u64, rtt: Option<Duration>) {
        if rtt.is_some() {
            self.rtt = rtt;
        }
        if let State::Direct { since_ms, failed_probes } = self.state {
            let failed_probes = if rtt.is_some() { 0 } else { failed_probes + 1 };
            self.state = State::Direct { since_ms, failed_probes };
            if failed_probes >= DEMOTE_AFTER_FAILED_PROBES {
                self.rtt = None;
                self.fail(now_ms, PathReason::Demoted);
            }
        }
    }

    /// How the direct peer should be on the interface; `None`: not at all.
    pub fn target(&self) -> Option<DirectTarget> {
        let keepalive = DIRECT_KEEPALIVE;
        match self.state {
            State::Relayed { .. } => None,
            State::Trying { endpoint, good, .. } => Some(DirectTarget {
                // Once a handshake came back, the peer's endpoint is wherever it came from.
                endpoint: (good == 0).then_some(endpoint),
                keepalive,
                carries: false,
            }),
            State::Ready { .. } => Some(DirectTarget { endpoint: None, keepalive, carries: false }),
            State::Direct { .. } => Some(DirectTarget { endpoint: None, keepalive, carries: true }),
        }
    }

    /// What this end tells the other through its candidates document.
    pub fn signal(&self) -> Option<PairSignal> {
        let (stage, since_ms) = match self.state {
            State::Relayed { .. } => return None,
            State::Trying { started_ms, .. } => (Stage::Trying, started_ms),
            State::Ready { since_ms, .. } => (Stage::Ready, since_ms),
            State::Direct { since_ms, .. } => (Stage::Direct, since_ms),
        };
        Some(PairSignal { peer: self.peer.clone(), stage, since_ms })
    }

    /// When, after `now_ms`, the pair next needs a round (milliseconds since the Unix
    /// epoch): the agreed switch instant, the end of a candidate's window, the end of a
    /// backoff. `None` when only new observations can move it.
    pub fn deadline(&self, now_ms: u64) -> Option<u64> {
        let at = match self.state {
            State::Relayed { retry_at_ms, .. } => Some(retry_at_ms),
            State::Trying { window_ms, .. } => Some(window_ms + ms(CANDIDATE_WINDOW)),
            State::Ready { switch_at_ms, .. } => switch_at_ms,
            State::Direct { .. } => None,
        };
        at.filter(|at| *at > now_ms && *at != u64::MAX)
    }

    /// Direct or relayed, why, and since when (milliseconds since the Unix epoch).
    pub fn mode(&self) -> (PathMode, PathReason, u64) {
        match self.state {
            State::Relayed { reason, since_ms, .. } => (PathMode::Relayed, reason, since_ms),
            State::Trying { started_ms, .. } => (PathMode::Relayed, PathReason::Trying, started_ms),
            State::Ready { since_ms, switch_at_ms: None } => {
                (PathMode::Relayed, PathReason::WaitingForPeer, since_ms)
            }
            State::Ready { since_ms, switch_at_ms: Some(_) } => {
                (PathMode::Relayed, PathReason::Switching, since_ms)
            }
            State::Direct { since_ms, .. } => (PathMode::Direct, PathReason::Handshake, since_ms),
        }
    }

    /// The agreed instant the addresses move at, once both ends are ready.
    pub fn switch_at(&self) -> Option<u64> {
        match self.state {
            State::Ready { switch_at_ms, .. } => switch_at_ms,
            _ => None,
        }
    }

    /// Whether this end is ready and waits for the other, or for the agreed instant: the
    /// peer's signal is then worth reading often.
    pub fn awaits_peer(&self) -> bool {
        matches!(self.state, State::Ready { .. })
    }

    /// Whether the pair's traffic goes over the direct peer.
    pub fn is_direct(&self) -> bool {
        matches!(self.state, State::Direct { .. })
    }

    /// The latest round-trip time over the tunnel to the peer.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// The next change to log.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Gives an attempt or a direct path up, and waits before the next attempt.
    fn fail(&mut self, now: u64, reason: PathReason) {
        self.failures = self.failures.saturating_add(1);
        self.failed_ms = now;
        let doubled = ms(FIRST_BACKOFF).saturating_mul(1 << (self.failures - 1).min(16));
        self.relay(now, reason, now.saturating_add(doubled.min(ms(MAX_BACKOFF))), true);
    }

    /// Goes relayed for `reason`, to try again at `retry_at_ms`.
    fn relay(&mut self, now: u64, reason: PathReason, retry_at_ms: u64, failed: bool) {
        match self.state {
            State::Relayed { reason: before, .. } if before == reason && !failed => {
                // Keep the time the reason started, and the backoff.
                if let State::Relayed { retry_at_ms: at, .. } = &mut self.state {
                    *at = (*at).min(retry_at_ms);
                }
                return;
            }
            State::Relayed { .. } => {}
            State::Direct { .. } => {
                self.actions.push_back(Action::MoveBack(reason));
                self.actions.push_back(Action::RemovePeer(reason));
            }
            State::Trying { .. } | State::Ready { .. } => {
                self.actions.push_back(Action::RemovePeer(reason));
            }
        }
        self.state = State::Relayed { reason, since_ms: now, retry_at_ms };
    }
}
