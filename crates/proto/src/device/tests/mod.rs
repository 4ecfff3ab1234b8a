//! Scenario tests: two devices joined by an in-memory link under a virtual clock.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::constants::*;
use crate::keys::{PresharedKey, PrivateKey};
use crate::session::sealed_len;
use crate::wire::{self, DATA_HEADER_LEN};
use crate::Cidr;
use wgfabric_testkit::packet::ipv4;

const A_ADDR: &str = "192.0.2.1:51820";
const B_ADDR: &str = "198.51.100.2:51820";
const A_IP: [u8; 4] = [10, 0, 0, 1];
const B_IP: [u8; 4] = [10, 0, 0, 2];

/// Two devices, a link between them, and a clock.
struct Pair {
    now: Instant,
    a: Device,
    b: Device,
    a_addr: SocketAddr,
    b_addr: SocketAddr,
    /// Packets delivered to each side's TUN, in order.
    a_inbox: Vec<Vec<u8>>,
    b_inbox: Vec<Vec<u8>>,
    /// Datagrams seen on the wire, as (sender is A, bytes).
    wire_log: Vec<(bool, Vec<u8>)>,
    /// Drop everything sent by A / by B.
    cut_a: bool,
    cut_b: bool,
    a_under_load: bool,
    b_under_load: bool,
    events_a: Vec<Event>,
    events_b: Vec<Event>,
}

fn key(seed: u8) -> PrivateKey {
    PrivateKey::from_bytes([seed; 32])
}

impl Pair {
    fn new() -> Self {
        Self::with_psk(PresharedKey::zero(), PresharedKey::zero())
    }

    fn with_psk(psk_a: PresharedKey, psk_b: PresharedKey) -> Self {
        let now = Instant::now();
        let epoch = Duration::from_secs(1_700_000_000);
        let mut a = Device::new([1; 32], now, epoch);
        let mut b = Device::new([2; 32], now, epoch);
        let (ka, kb) = (key(0x11), key(0x22));
        let (pa, pb) = (ka.public_key(), kb.public_key());
        a.set_private_key(Some(ka));
        b.set_private_key(Some(kb));
        let a_addr: SocketAddr = A_ADDR.parse().unwrap();
        let b_addr: SocketAddr = B_ADDR.parse().unwrap();
        let peer_b = a.add_peer(pb).unwrap();
        a.set_endpoint(peer_b, b_addr);
        a.add_allowed_ip(peer_b, "10.0.0.2/32".parse().unwrap());
        a.set_preshared_key(peer_b, psk_a);
        let peer_a = b.add_peer(pa).unwrap();
        b.set_endpoint(peer_a, a_addr);
        b.add_allowed_ip(peer_a, "10.0.0.1/32".parse().unwrap());
        b.set_preshared_key(peer_a, psk_b);
        Self {
            now,
            a,
            b,
            a_addr,
            b_addr,
            a_inbox: Vec::new(),
            b_inbox: Vec::new(),
            wire_log: Vec::new(),
            cut_a: false,
            cut_b: false,
            a_under_load: false,
            b_under_load: false,
            events_a: Vec::new(),
            events_b: Vec::new(),
        }
    }

    fn peer_b(&self) -> PeerId {
        self.a.peer_ids().next().unwrap()
    }

    fn peer_a(&self) -> PeerId {
        self.b.peer_ids().next().unwrap()
    }

    /// Sends a packet from A's TUN (to B's inner address) with a payload tag.
    fn send_from_a(&mut self, tag: u8) -> Encapsulated {
        let mut packet = ipv4(A_IP, B_IP, 40);
        packet[30] = tag;
        self.send(true, &packet)
    }

    fn send_from_b(&mut self, tag: u8) -> Encapsulated {
        let mut packet = ipv4(B_IP, A_IP, 40);
        packet[30] = tag;
        self.send(false, &packet)
    }

    fn send(&mut self, from_a: bool, packet: &[u8]) -> Encapsulated {
        let dev = if from_a { &mut self.a } else { &mut self.b };
        let mut buf = vec![0u8; sealed_len(packet.len(), dev.mtu())];
        buf[DATA_HEADER_LEN..DATA_HEADER_LEN + packet.len()].copy_from_slice(packet);
        let result = dev.encapsulate(self.now, &mut buf, packet.len());
        if let Encapsulated::Send { len, .. } = result {
            self.deliver(from_a, buf[..len].to_vec());
        }
        self.drive();
        result
    }

    fn deliver(&mut self, from_a: bool, mut datagram: Vec<u8>) {
        self.wire_log.push((from_a, datagram.clone()));
        if (from_a && self.cut_a) || (!from_a && self.cut_b) {
            return;
        }
        let (dev, from, load, inbox) = if from_a {
            (&mut self.b, self.a_addr, self.b_under_load, &mut self.b_inbox)
        } else {
            (&mut self.a, self.b_addr, self.a_under_load, &mut self.a_inbox)
        };
        if let Decapsulated::Packet(range) =
            dev.decapsulate(self.now, Endpoint::new(from), &mut datagram, load)
        {
            inbox.push(datagram[range].to_vec());
        }
    }

    /// Delivers queued datagrams back and forth until both sides are quiet.
    fn drive(&mut self) {
        loop {
            let mut moved = false;
            while let Some(t) = self.a.poll_transmit() {
                assert_eq!(t.endpoint.addr, self.b_addr);
                self.deliver(true, t.datagram);
                moved = true;
            }
            while let Some(t) = self.b.poll_transmit() {
                assert_eq!(t.endpoint.addr, self.a_addr);
                self.deliver(false, t.datagram);
                moved = true;
            }
            self.events_a.extend(core::iter::from_fn(|| self.a.poll_event()));
            self.events_b.extend(core::iter::from_fn(|| self.b.poll_event()));
            if !moved {
                break;
            }
        }
    }

    /// Moves the clock forward by `by`, firing every timer on the way.
    fn advance(&mut self, by: Duration) {
        let target = self.now + by;
        loop {
            let next = [self.a.poll_timeout(), self.b.poll_timeout()]
                .into_iter()
                .flatten()
                .filter(|t| *t <= target)
                .min();
            let Some(at) = next else { break };
            self.now = self.now.max(at);
            self.a.handle_timeout(self.now);
            self.b.handle_timeout(self.now);
            self.drive();
        }
        self.now = target;
    }

    fn count_on_wire(&self, from_a: bool, kind: MessageTypeFilter) -> usize {
        self.wire_log.iter().filter(|(a, d)| *a == from_a && kind.matches(d)).count()
    }

    fn completed(events: &[Event]) -> usize {
        events.iter().filter(|e| matches!(e, Event::HandshakeCompleted { .. })).count()
    }
}

#[derive(Clone, Copy)]
enum MessageTypeFilter {
    Initiation,
    Response,
    Cookie,
    Keepalive,
}

impl MessageTypeFilter {
    fn matches(self, d: &[u8]) -> bool {
        use crate::wire::MessageType as M;
        match (self, M::of(d)) {
            (Self::Initiation, Some(M::Initiation)) => true,
            (Self::Response, Some(M::Response)) => true,
            (Self::Cookie, Some(M::CookieReply)) => true,
            (Self::Keepalive, Some(M::Data)) => d.len() == wire::DATA_MIN_LEN,
            _ => false,
        }
    }
}

use MessageTypeFilter as W;

#[test]
fn first_packet_triggers_handshake_and_arrives() {
    let mut p = Pair::new();
    assert_eq!(p.send_from_a(1), Encapsulated::Queued);
    assert_eq!(p.b_inbox.len(), 1, "staged packet flushed after the handshake");
    assert_eq!(p.b_inbox[0][30], 1);
    assert_eq!(p.count_on_wire(true, W::Initiation), 1);
    assert_eq!(p.count_on_wire(false, W::Response), 1);
    assert!(matches!(p.send_from_a(2), Encapsulated::Send { .. }));
    assert!(matches!(p.send_from_b(3), Encapsulated::Send { .. }));
    assert_eq!(p.a_inbox.len(), 1);
    assert_eq!(Pair::completed(&p.events_a), 1);
    assert_eq!(Pair::completed(&p.events_b), 1);
    let info = p.a.peer_info(p.peer_b()).unwrap();
    assert_eq!(info.last_handshake, Some(Duration::from_secs(1_700_000_000)));
    assert!(info.stats.tx_bytes > 0 && info.stats.rx_bytes > 0);
}

#[test]
fn responder_initiated_handshake_works_too() {
    let mut p = Pair::new();
    assert_eq!(p.send_from_b(9), Encapsulated::Queued);
    assert_eq!(p.a_inbox.len(), 1);
    assert_eq!(p.count_on_wire(false, W::Initiation), 1);
    assert!(matches!(p.send_from_a(1), Encapsulated::Send { .. }));
    assert_eq!(p.b_inbox.len(), 1);
}

#[test]
fn matching_preshared_keys_connect() {
    let psk = PresharedKey::from_bytes([5; 32]);
    let mut p = Pair::with_psk(psk.clone(), psk);
    p.send_from_a(1);
    assert_eq!(p.b_inbox.len(), 1);
}

#[test]
fn mismatched_preshared_keys_never_connect() {
    let mut p =
        Pair::with_psk(PresharedKey::from_bytes([5; 32]), PresharedKey::from_bytes([6; 32]));
    p.send_from_a(1);
    p.advance(Duration::from_secs(30));
    assert!(p.b_inbox.is_empty());
    assert_eq!(Pair::completed(&p.events_a), 0);
    assert!(p.a.stats().dropped(DropReason::HandshakeInvalid) > 0);
    assert!(p.count_on_wire(true, W::Initiation) > 1, "initiator keeps retrying");
}

#[test]
fn ten_minutes_of_traffic_rekeys_on_time_and_loses_nothing() {
    let mut p = Pair::new();
    let mut sent = 0u32;
    // A packet each way every 500 ms for ten simulated minutes.
    for i in 0..1200u32 {
        p.send_from_a((i % 250) as u8);
        p.send_from_b((i % 250) as u8);
        sent += 1;
        p.advance(Duration::from_millis(500));
    }
    assert_eq!(p.b_inbox.len() as u32, sent);
    assert_eq!(p.a_inbox.len() as u32, sent);
    // A rekey roughly every REKEY_AFTER_TIME: 600 s / 120 s = 5, give or take the initial one
    // and the occasional one from B's side.
    let handshakes = p.count_on_wire(true, W::Initiation) + p.count_on_wire(false, W::Initiation);
    assert!((5..=8).contains(&handshakes), "{handshakes} handshakes in 10 minutes");
    assert_eq!(p.a.stats().dropped(DropReason::Replay), 0);
}

#[test]
fn sessions_expire_after_reject_after_time() {
    let mut p = Pair::new();
    p.send_from_a(1);
    assert_eq!(p.b_inbox.len(), 1);
    // Cut both directions: no rekey can succeed.
    p.cut_a = true;
    p.cut_b = true;
    p.advance(REJECT_AFTER_TIME + Duration::from_secs(1));
    let peer = p.peer_b();
    assert!(matches!(p.a.prepare_send(p.now, peer, 100), Err(NotReady::NoSession)));
    // B no longer accepts the old session either.
    assert!(p
        .b
        .session(
            p.now,
            p.a.slots[peer.slot as usize]
                .peer
                .as_ref()
                .unwrap()
                .sessions
                .current
                .as_ref()
                .unwrap()
                .remote_index
        )
        .is_none());
}

#[test]
fn keys_are_zeroed_after_three_reject_after_times() {
    let mut p = Pair::new();
    p.send_from_a(1);
    let peer = p.peer_b();
    p.cut_a = true;
    p.cut_b = true;
    p.advance(REJECT_AFTER_TIME * 3 + Duration::from_secs(1));
    assert!(p.events_a.contains(&Event::KeysZeroed { peer }));
    let state = p.a.peer(peer).unwrap();
    assert!(
        state.sessions.current.is_none()
            && state.sessions.previous.is_none()
            && state.sessions.next.is_none()
    );
    assert!(state.handshake.is_none());
    assert!(p.a.indices.is_empty(), "no index survives the zeroing");
}

#[test]
fn keepalive_after_receiving_without_replying() {
    let mut p = Pair::new();
    p.send_from_a(1);
    let before = p.count_on_wire(false, W::Keepalive);
    p.advance(KEEPALIVE_TIMEOUT - Duration::from_millis(100));
    assert_eq!(p.count_on_wire(false, W::Keepalive), before);
    p.advance(Duration::from_millis(500));
    assert_eq!(p.count_on_wire(false, W::Keepalive), before + 1);
    // No traffic, no further keepalives.
    p.advance(Duration::from_secs(60));
    assert_eq!(p.count_on_wire(false, W::Keepalive), before + 1);
    // Data arriving while a keepalive is owed earns one more after it, as in the kernel.
    p.send_from_a(2);
    p.send_from_a(3);
    p.advance(KEEPALIVE_TIMEOUT * 2 + Duration::from_millis(100));
    assert_eq!(p.count_on_wire(false, W::Keepalive), before + 3);
    // Sending data ourselves cancels a keepalive that is owed.
    p.send_from_a(4);
    p.send_from_b(5);
    p.advance(Duration::from_secs(60));
    assert_eq!(p.count_on_wire(false, W::Keepalive), before + 3);
}

#[test]
fn unanswered_data_triggers_a_new_handshake_after_15_seconds() {
    let mut p = Pair::new();
    p.send_from_a(1);
    let initiations = p.count_on_wire(true, W::Initiation);
    p.cut_b = true;
    p.send_from_a(2);
    p.advance(KEEPALIVE_TIMEOUT + REKEY_TIMEOUT - Duration::from_millis(10));
    assert_eq!(p.count_on_wire(true, W::Initiation), initiations);
    p.advance(REKEY_TIMEOUT_JITTER_MAX + Duration::from_millis(20));
    assert_eq!(p.count_on_wire(true, W::Initiation), initiations + 1);
}

#[test]
fn retransmits_with_jitter_then_gives_up() {
    let mut p = Pair::new();
    p.cut_a = true;
    p.send_from_a(1);
    let peer = p.peer_b();
    p.advance(Duration::from_secs(200));
    let initiations = p.count_on_wire(true, W::Initiation);
    // The first send plus MAX_TIMER_HANDSHAKES + 1 retries, then silence.
    assert_eq!(initiations, MAX_TIMER_HANDSHAKES as usize + 2);
    assert!(p.events_a.contains(&Event::HandshakeTimedOut { peer }));
    assert!(p.a.peer(peer).unwrap().staged.is_empty(), "queued packets dropped on give-up");
    assert_eq!(p.a.peer_info(peer).unwrap().stats.handshakes_timed_out, 1);
}

#[test]
fn persistent_keepalive_keeps_the_path_warm() {
    let mut p = Pair::new();
    let peer = p.peer_b();
    p.a.set_persistent_keepalive(p.now, peer, 25);
    p.drive();
    // Turning it on sends at once (after a handshake).
    assert_eq!(Pair::completed(&p.events_a), 1);
    let at_start = p.count_on_wire(true, W::Keepalive);
    assert!(at_start >= 1);
    p.advance(Duration::from_secs(100));
    let later = p.count_on_wire(true, W::Keepalive);
    assert!((at_start + 3..=at_start + 5).contains(&later), "{at_start} then {later}");
}

#[test]
fn cookie_exchange_under_load_then_success() {
    let mut p = Pair::new();
    p.b_under_load = true;
    p.send_from_a(1);
    assert_eq!(p.count_on_wire(false, W::Cookie), 1);
    assert!(p.b_inbox.is_empty());
    assert_eq!(p.b.stats().cookie_replies_sent, 1);
    // The retransmission carries a valid mac2 and goes through.
    p.advance(REKEY_TIMEOUT + REKEY_TIMEOUT_JITTER_MAX);
    assert_eq!(p.b_inbox.len(), 1);
    assert_eq!(p.count_on_wire(false, W::Cookie), 1);
}

#[test]
fn replayed_initiations_are_refused() {
    let mut p = Pair::new();
    p.send_from_a(1);
    let initiation =
        p.wire_log.iter().find(|(a, d)| *a && W::Initiation.matches(d)).unwrap().1.clone();
    p.advance(Duration::from_secs(1));
    let before = p.b.stats().dropped(DropReason::HandshakeReplay);
    p.deliver(true, initiation);
    assert_eq!(p.b.stats().dropped(DropReason::HandshakeReplay), before + 1);
    assert_eq!(p.b.peer_info(p.peer_a()).unwrap().stats.handshakes_replayed, 1);
    assert_eq!(p.count_on_wire(false, W::Response), 1);
}

#[test]
fn rejected_responses_are_counted_and_reported_once_per_initiation() {
    let mut p =
        Pair::with_psk(PresharedKey::from_bytes([5; 32]), PresharedKey::from_bytes([6; 32]));
    let peer = p.peer_b();
    let reported =
        |p: &Pair| p.events_a.iter().filter(|e| **e == Event::HandshakeRejected { peer }).count();
    p.send_from_a(1);
    assert_eq!(reported(&p), 1);
    // The same bad response again is counted but not reported again.
    let response =
        p.wire_log.iter().find(|(a, d)| !*a && W::Response.matches(d)).unwrap().1.clone();
    p.deliver(false, response);
    p.drive();
    assert_eq!(p.a.peer_info(peer).unwrap().stats.handshakes_rejected, 2);
    assert_eq!(reported(&p), 1);
    // The retransmitted initiation gets its own report.
    p.advance(REKEY_TIMEOUT + REKEY_TIMEOUT_JITTER_MAX);
    assert_eq!(reported(&p), 2);
    assert_eq!(p.a.peer_info(peer).unwrap().stats.handshakes_rejected, 3);
}

#[test]
fn configuration_changes_are_events() {
    let mut dev = Device::new([0; 32], Instant::now(), Duration::ZERO);
    let drain = |dev: &mut Device| core::iter::from_fn(|| dev.poll_event()).collect::<Vec<_>>();
    dev.set_private_key(Some(key(1)));
    dev.set_private_key(Some(key(1)));
    let public_key = key(2).public_key();
    let peer = dev.add_peer(public_key).unwrap();
    dev.add_peer(public_key);
    dev.set_preshared_key(peer, PresharedKey::from_bytes([7; 32]));
    dev.set_preshared_key(peer, PresharedKey::from_bytes([7; 32]));
    dev.set_preshared_key(peer, PresharedKey::zero());
    dev.remove_peer(peer);
    dev.set_private_key(None);
    assert_eq!(
        drain(&mut dev),
        [
            Event::PrivateKeyChanged { public_key: Some(key(1).public_key()) },
            Event::PeerAdded { public_key },
            Event::PresharedKeyChanged { peer, set: true },
            Event::PresharedKeyChanged { peer, set: false },
            Event::PeerRemoved { public_key },
            Event::PrivateKeyChanged { public_key: None },
        ],
        "each change once; repeating a setting is not a change"
    );
}

#[test]
fn initiation_floods_are_limited() {
    let mut p = Pair::new();
    let peer = p.peer_b();
    p.send_from_a(1);
    // Two fresh initiations 10 ms apart: the second is refused as a flood.
    p.advance(Duration::from_secs(6));
    p.a.peer_mut(peer).unwrap().last_initiation_sent = None;
    p.a.send_initiation(p.now, peer, false);
    p.drive();
    p.advance(Duration::from_millis(10));
    p.a.peer_mut(peer).unwrap().last_initiation_sent = None;
    p.a.send_initiation(p.now, peer, false);
    p.drive();
    assert_eq!(p.b.stats().dropped(DropReason::HandshakeReplay), 1);
}

#[test]
fn roaming_follows_authenticated_packets_only() {
    let mut p = Pair::new();
    p.send_from_a(1);
    let peer_a = p.peer_a();
    // A moves: B learns the new address from the next data packet.
    let moved: SocketAddr = "203.0.113.9:40000".parse().unwrap();
    let mut packet = ipv4(A_IP, B_IP, 10);
    let mut buf = vec![0u8; 128];
    buf[16..16 + packet.len()].copy_from_slice(&packet);
    let Encapsulated::Send { len, .. } = p.a.encapsulate(p.now, &mut buf, packet.len()) else {
        panic!()
    };
    let mut forged = buf[..len].to_vec();
    forged[20] ^= 1;
    // A forged packet from elsewhere moves nothing.
    let evil: SocketAddr = "203.0.113.66:1".parse().unwrap();
    assert!(matches!(
        p.b.decapsulate(p.now, Endpoint::new(evil), &mut forged, false),
        Decapsulated::Dropped(DropReason::Decrypt)
    ));
    assert_eq!(p.b.peer_info(peer_a).unwrap().endpoint.unwrap().addr, p.a_addr);
    assert!(matches!(
        p.b.decapsulate(p.now, Endpoint::new(moved), &mut buf[..len], false),
        Decapsulated::Packet(_)
    ));
    assert_eq!(p.b.peer_info(peer_a).unwrap().endpoint.unwrap().addr, moved);
    p.drive();
    assert!(p
        .events_b
        .contains(&Event::EndpointChanged { peer: peer_a, endpoint: Endpoint::new(moved) }));
    // A cookie reply is not authentication: it never moves an endpoint.
    packet.clear();
    let reply = wire::emit_cookie_reply(1, &[0; 24], &[0; 32]);
    p.b.decapsulate(p.now, Endpoint::new(evil), &mut reply.to_vec(), false);
    assert_eq!(p.b.peer_info(peer_a).unwrap().endpoint.unwrap().addr, moved);
}

#[test]
fn spoofed_inner_source_is_dropped() {
    let mut p = Pair::new();
    p.send_from_a(1);
    let spoofed = ipv4([10, 0, 0, 99], B_IP, 20);
    p.send(true, &spoofed);
    assert_eq!(p.b_inbox.len(), 1);
    assert_eq!(p.b.stats().dropped(DropReason::SourceNotAllowed), 1);
}

/// A prefix routed to another peer (a direct path taking over) is still accepted from this
/// peer while it accepts the prefix, which routes nothing to it.
#[test]
fn accepted_sources_pass_the_source_check_without_being_routed() {
    let mut p = Pair::new();
    p.send_from_a(1);
    let peer_a = p.peer_a();
    let moving: Cidr = "10.0.0.99/32".parse().unwrap();
    let direct = p.b.add_peer(key(0x44).public_key()).unwrap();
    p.b.add_allowed_ip(direct, moving);
    let from_moving = ipv4([10, 0, 0, 99], B_IP, 20);
    p.send(true, &from_moving);
    assert_eq!(p.b.stats().dropped(DropReason::SourceNotAllowed), 1, "routed elsewhere");
    p.b.add_accept_ip(peer_a, moving);
    p.b.add_accept_ip(peer_a, moving);
    assert_eq!(p.b.peer_info(peer_a).unwrap().accept_ips, [moving], "no duplicates");
    p.send(true, &from_moving);
    assert_eq!(p.b_inbox.len(), 2, "accepted");
    assert_eq!(p.b.route("10.0.0.99".parse().unwrap()), Some(direct), "still routed there");
    p.b.clear_accept_ips(peer_a);
    p.send(true, &from_moving);
    assert_eq!(p.b.stats().dropped(DropReason::SourceNotAllowed), 2, "no longer accepted");
}

#[test]
fn unroutable_packets_are_counted() {
    let mut p = Pair::new();
    let stray = ipv4(A_IP, [10, 9, 9, 9], 20);
    assert_eq!(p.send(true, &stray), Encapsulated::Dropped(DropReason::NoRoute));
    assert_eq!(p.a.stats().dropped(DropReason::NoRoute), 1);
}

#[test]
fn rekey_after_messages_starts_a_handshake() {
    let mut p = Pair::new();
    p.send_from_a(1);
    let before = p.count_on_wire(true, W::Initiation);
    let peer = p.peer_b();
    p.a.peer(peer)
        .unwrap()
        .sessions
        .current
        .as_ref()
        .unwrap()
        .set_send_counter(REKEY_AFTER_MESSAGES);
    p.advance(REKEY_TIMEOUT);
    p.send_from_a(2);
    assert_eq!(p.count_on_wire(true, W::Initiation), before + 1);
    assert_eq!(p.b_inbox.len(), 2);
}

#[test]
fn in_flight_packets_survive_a_rekey() {
    let mut p = Pair::new();
    p.send_from_a(1);
    // Seal a packet on the old session, but hold it back.
    let packet = ipv4(A_IP, B_IP, 10);
    let mut held = vec![0u8; 128];
    held[16..16 + packet.len()].copy_from_slice(&packet);
    let Encapsulated::Send { len, .. } = p.a.encapsulate(p.now, &mut held, packet.len()) else {
        panic!()
    };
    held.truncate(len);
    // B initiates a new handshake; A sends on the new session.
    p.advance(REKEY_TIMEOUT);
    let peer_a = p.peer_a();
    p.b.send_initiation(p.now, peer_a, false);
    p.drive();
    p.send_from_a(2);
    // The held packet, sealed with the previous session, still arrives.
    p.deliver(true, held);
    assert_eq!(p.b_inbox.len(), 3);
}

#[test]
fn changing_the_private_key_forces_a_new_handshake() {
    let mut p = Pair::new();
    p.send_from_a(1);
    let peer = p.peer_b();
    // B rotates its key; A learns the new public key (as rotation tooling would do).
    let new_b = key(0x33);
    let new_pub = new_b.public_key();
    p.b.set_private_key(Some(new_b.clone()));
    assert!(matches!(p.b.prepare_send(p.now, p.peer_a(), 10), Err(NotReady::NoSession)));
    // Re-setting the same key changes nothing.
    p.b.set_private_key(Some(new_b));
    p.a.remove_peer(peer);
    let peer = p.a.add_peer(new_pub).unwrap();
    p.a.set_endpoint(peer, p.b_addr);
    p.a.add_allowed_ip(peer, "10.0.0.2/32".parse().unwrap());
    p.advance(REKEY_TIMEOUT);
    p.send_from_a(2);
    assert_eq!(p.b_inbox.len(), 2);
}

#[test]
fn removed_peers_leave_nothing_behind() {
    let mut p = Pair::new();
    p.send_from_a(1);
    let peer = p.peer_b();
    p.a.remove_peer(peer);
    assert!(p.a.indices.is_empty());
    assert!(p.a.peer_info(peer).is_none());
    assert_eq!(p.a.route("10.0.0.2".parse().unwrap()), None);
    // The slot is reused under a new generation; the old handle stays dead.
    let again = p.a.add_peer(key(0x44).public_key()).unwrap();
    assert_ne!(again, peer);
    assert!(p.a.peer_info(peer).is_none());
}

#[test]
fn own_public_key_is_not_a_peer() {
    let mut p = Pair::new();
    let own = p.a.public_key().unwrap();
    assert_eq!(p.a.add_peer(own), None);
    // Setting a private key equal to a peer's removes that peer.
    let peer_b = p.peer_b();
    p.a.set_private_key(Some(key(0x22)));
    assert!(p.a.peer_info(peer_b).is_none());
}

#[test]
fn allowed_ips_readback_is_canonical() {
    let mut p = Pair::new();
    let peer = p.peer_b();
    for cidr in ["10.1.0.0/16", "fd00::/64", "10.0.0.2/32", "10.1.2.3/16"] {
        p.a.add_allowed_ip(peer, cidr.parse::<Cidr>().unwrap());
    }
    let shown: Vec<String> =
        p.a.peer_info(peer).unwrap().allowed_ips.iter().map(ToString::to_string).collect();
    assert_eq!(shown, ["10.0.0.2/32", "10.1.0.0/16", "fd00::/64"]);
}

#[test]
fn garbage_never_panics_or_changes_state() {
    let mut p = Pair::new();
    p.send_from_a(1);
    let mut rng = ChaCha20Rng::from_seed([9; 32]);
    for len in [0usize, 1, 4, 31, 32, 64, 92, 148, 200, 1500] {
        for first in [0u8, 1, 2, 3, 4, 5, 0xff] {
            let mut junk = vec![0u8; len];
            rand_core::RngCore::fill_bytes(&mut rng, &mut junk);
            if let Some(b) = junk.first_mut() {
                *b = first;
            }
            if len >= 4 {
                junk[1..4].fill(0);
            }
            let result = p.b.decapsulate(p.now, Endpoint::new(p.a_addr), &mut junk, false);
            assert!(matches!(result, Decapsulated::Dropped(_)), "{len} {first}: {result:?}");
        }
    }
    p.send_from_a(2);
    assert_eq!(p.b_inbox.len(), 2);
}

mod forgery {
    use super::*;
    use proptest::prelude::*;

    /// Every datagram of a complete exchange, and the pair after it.
    fn recorded_exchange() -> (Pair, Vec<(bool, Vec<u8>)>) {
        let mut p = Pair::new();
        p.send_from_a(1);
        p.send_from_b(2);
        let log = p.wire_log.clone();
        (p, log)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Flipping any bit of any message of a real exchange makes it worthless: nothing is
        /// delivered, no response or cookie is produced, no endpoint moves.
        #[test]
        fn tampered_messages_are_never_accepted(which in 0usize..8, bit in 0usize..(148 * 8)) {
            let (mut p, log) = recorded_exchange();
            let (from_a, original) = &log[which % log.len()];
            let mut forged = original.clone();
            let bit = bit % (forged.len() * 8);
            forged[bit / 8] ^= 1 << (bit % 8);
            let evil = Endpoint::new("203.0.113.66:6666".parse().unwrap());
            let dev = if *from_a { &mut p.b } else { &mut p.a };
            let before = dev.snapshot();
            let result = dev.decapsulate(p.now, evil, &mut forged, false);
            prop_assert!(matches!(result, Decapsulated::Dropped(_)), "{:?}", result);
            prop_assert!(dev.poll_transmit().is_none());
            prop_assert_eq!(dev.snapshot(), before);
        }

        /// Random bytes behind a valid type header never panic and are never accepted.
        #[test]
        fn random_messages_are_dropped(kind in 1u8..=4, body in prop::collection::vec(any::<u8>(), 0..300)) {
            let (mut p, _) = recorded_exchange();
            let mut datagram = vec![kind, 0, 0, 0];
            datagram.extend_from_slice(&body);
            let from = Endpoint::new(p.a_addr);
            let result = p.b.decapsulate(p.now, from, &mut datagram, true);
            prop_assert!(matches!(result, Decapsulated::Dropped(_)), "{:?}", result);
        }
    }
}

/// The rotation of B's key as the controller runs it between two wgfabricd peers: A stages
/// B's new key as a successor, B switches, and traffic both ways every 10 ms loses nothing.
#[test]
fn key_rotation_through_a_successor_loses_no_packet() {
    let mut p = Pair::new();
    p.send_from_a(0);
    let old_b = p.peer_b();
    let new_key = key(0x33);
    let staged = p.a.add_peer(new_key.public_key()).unwrap();
    p.a.set_endpoint(staged, p.b_addr);
    p.a.set_successor_of(staged, Some(key(0x22).public_key()));
    let mut sent = 1;
    for i in 1..200u32 {
        if i == 50 {
            p.b.set_private_key(Some(new_key.clone()));
        }
        p.send_from_a((i % 250) as u8);
        p.send_from_b((i % 250) as u8);
        sent += 1;
        p.advance(Duration::from_millis(10));
    }
    assert_eq!(p.b_inbox.len(), sent, "nothing lost from A to B");
    assert_eq!(p.a_inbox.len(), sent - 1, "nothing lost from B to A");
    assert!(p.events_a.contains(&Event::SuccessorActivated { peer: staged, predecessor: old_b }));
    assert_eq!(p.a.route("10.0.0.2".parse().unwrap()), Some(staged));
    assert!(p.a.peer_info(old_b).unwrap().allowed_ips.is_empty());
    assert_eq!(p.a.peer_info(staged).unwrap().successor_of, None);
    assert_eq!(p.a.stats().dropped(DropReason::SourceNotAllowed), 0);
}

/// The per-peer memory budget (1 KiB per peer in all, allowed IPs included) depends on this.
#[test]
fn peers_stay_small() {
    assert!(size_of::<Peer>() <= 600);
    assert!(size_of::<Slot>() <= 16, "peers are boxed, slots are a handle");
}

/// After a key change the next packet starts a handshake at once, even if one was sent under
/// the old key less than REKEY_TIMEOUT ago.
#[test]
fn a_new_private_key_handshakes_without_waiting_out_the_rate_limit() {
    let mut p = Pair::new();
    p.send_from_a(1);
    p.advance(Duration::from_secs(1));
    let before = p.count_on_wire(true, W::Initiation);
    let new_a = key(0x55);
    let peer_a = p.peer_a();
    p.b.remove_peer(peer_a);
    let peer = p.b.add_peer(new_a.public_key()).unwrap();
    p.b.set_endpoint(peer, p.a_addr);
    p.b.add_allowed_ip(peer, "10.0.0.1/32".parse().unwrap());
    p.a.set_private_key(Some(new_a));
    p.send_from_a(2);
    assert_eq!(p.count_on_wire(true, W::Initiation), before + 1, "no wait for REKEY_TIMEOUT");
    assert_eq!(p.b_inbox.len(), 2);
}

mod soak;

/// A wall clock stepped back an hour: B still takes A's next initiation, whose timestamp
/// stays later than the last one B saw; handshake times follow the clock.
#[test]
fn initiations_stay_later_than_the_last_across_a_clock_stepped_back() {
    let mut p = Pair::new();
    p.send_from_a(1);
    p.advance(REKEY_TIMEOUT);
    let stepped_back = Duration::from_secs(1_700_000_000 - 3600);
    p.a.set_wall_clock(p.now, stepped_back);
    // A forgets its session (the peer removed by hand and put back): a fresh initiation.
    p.a.remove_peer(p.peer_b());
    let peer = p.a.add_peer(key(0x22).public_key()).unwrap();
    p.a.set_endpoint(peer, p.b_addr);
    p.a.add_allowed_ip(peer, "10.0.0.2/32".parse().unwrap());
    p.send_from_a(2);
    assert_eq!(p.b.stats().dropped(DropReason::HandshakeReplay), 0);
    assert_eq!(p.b_inbox.len(), 2, "the packet after the step arrives");
    let info = p.a.peer_info(p.peer_b()).unwrap();
    assert_eq!(info.last_handshake, Some(stepped_back), "handshake times follow the clock");
}
