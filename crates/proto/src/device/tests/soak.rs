//! A day in the life of a tunnel, on the virtual clock: traffic both ways, a rekey every two
//! minutes, the initiator roaming every hour and the responder restarting every six. What a
//! long-lived daemon keeps (sessions, indices, timers, staged packets) must stay bounded, and
//! traffic must come back after every disruption.

use super::*;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// How long after a restart packets may be lost: the initiator notices the dead session after
/// KEEPALIVE_TIMEOUT + REKEY_TIMEOUT without an answer, plus a handshake.
const RECOVERY: Duration = Duration::from_secs(30);
const ROAM_EVERY: u64 = 60 * 60;
const RESTART_EVERY: u64 = 6 * 60 * 60;

/// What one device holds that could grow without bound.
fn assert_bounded(device: &Device, name: &str, second: u64) {
    let at = format!("{name} at {second} s");
    // Per peer: the current, previous and next session and one handshake in flight.
    assert!(device.indices.len() <= 4, "{at}: {} indices", device.indices.len());
    assert!(device.timer_queue.len() <= 8, "{at}: {} timer entries", device.timer_queue.len());
    for id in device.peer_ids() {
        let peer = device.slots[id.slot as usize].peer.as_ref().unwrap();
        assert!(peer.staged.len() <= MAX_STAGED_PACKETS, "{at}: {} staged", peer.staged.len());
    }
}

/// B as it comes back after a restart: same key and peer, fresh state, its wall clock moved on.
fn restarted_b(p: &Pair, elapsed: Duration) -> Device {
    let epoch = Duration::from_secs(1_700_000_000) + elapsed;
    let mut b = Device::new([elapsed.as_secs() as u8; 32], p.now, epoch);
    b.set_private_key(Some(key(0x22)));
    let peer_a = b.add_peer(key(0x11).public_key()).unwrap();
    b.set_endpoint(peer_a, p.a_addr);
    b.add_allowed_ip(peer_a, "10.0.0.1/32".parse().unwrap());
    b
}

#[test]
fn a_day_of_rekeys_roaming_and_restarts_stays_bounded() {
    let mut p = Pair::new();
    let start = p.now;
    let (mut sent, mut delivered, mut lost_outside_recovery) = (0u64, 0u64, 0u64);
    let mut last_restart: Option<Duration> = None;
    for second in 0..DAY.as_secs() {
        if second > 0 && second % ROAM_EVERY == 0 {
            p.a_addr = SocketAddr::new(p.a_addr.ip(), 40_000 + (second / ROAM_EVERY) as u16);
        }
        if second > 0 && second % RESTART_EVERY == 0 {
            p.b = restarted_b(&p, p.now - start);
            last_restart = Some(p.now - start);
        }
        let before = p.b_inbox.len();
        p.send_from_a(second as u8);
        sent += 1;
        let arrived = p.b_inbox.len() > before;
        delivered += u64::from(arrived);
        let recovering = last_restart.is_some_and(|r| p.now - start < r + RECOVERY);
        if !arrived && !recovering {
            lost_outside_recovery += 1;
        }
        if second % 10 == 0 {
            p.send_from_b(second as u8);
        }
        p.advance(Duration::from_secs(1));
        if second % 60 == 0 {
            assert_bounded(&p.a, "a", second);
            assert_bounded(&p.b, "b", second);
            // The test's own records of the wire are not the devices' business.
            p.wire_log.clear();
            p.a_inbox.clear();
            p.b_inbox.clear();
            p.events_a.clear();
            p.events_b.clear();
        }
    }
    assert_eq!(lost_outside_recovery, 0, "{delivered} of {sent} packets delivered");
    assert!(sent - delivered < 4 * RECOVERY.as_secs(), "{delivered} of {sent} packets delivered");
    // Sessions rekeyed all day long: about one handshake per REKEY_AFTER_TIME.
    let completed = p.a.peer_info(p.peer_b()).unwrap().stats.handshakes_completed;
    let expected = DAY.as_secs() / REKEY_AFTER_TIME.as_secs();
    assert!(completed >= expected / 2 && completed <= expected * 2, "{completed} handshakes");
}
