//! The rotation state machine against scripted agents and a virtual clock.

use super::*;
use wgfabric_store::state::{AgentInfo, Role, RotationReport, Takeover, FORMAT};

const OLD: PublicKey = PublicKey::from_bytes([1; 32]);
const NEW: PublicKey = PublicKey::from_bytes([2; 32]);

fn name(text: &str) -> Name {
    text.parse().unwrap()
}

fn plan() -> Plan {
    Plan {
        id: "relay-1".into(),
        host: name("relay"),
        peers: vec![name("s1"), name("s2")],
        old_key: OLD,
        sealed_new_key: None,
        preshared_keys: BTreeMap::new(),
        timeouts: Timeouts::default(),
    }
}

/// A status of `host` reporting `phase` of the rotation (or nothing of it, with `None`).
fn status(host: &str, phase: Option<Phase>, taken_over: bool, applied: &str) -> Status {
    let rotating = host == "relay";
    Status {
        format: FORMAT,
        host: name(host),
        time: 0,
        seq: 0,
        agent: AgentInfo {
            version: "0".into(),
            boot: "1-1".into(),
            interface: "wg0".into(),
            successor: Some(true),
        },
        applied: Some(Revision::new(applied)),
        refused: None,
        error: None,
        policy_error: None,
        corrected: None,
        peers: Vec::new(),
        rotations: phase
            .map(|phase| RotationReport {
                id: "relay-1".into(),
                host: name("relay"),
                role: if rotating { Role::Rotating } else { Role::Peer },
                phase,
                new_key: rotating.then_some(NEW),
                takeover: (!rotating).then_some(Takeover::Daemon),
                taken_over,
                error: None,
            })
            .into_iter()
            .collect(),
        paths: Vec::new(),
    }
}

fn events(rotation: &mut Rotation) -> Vec<Event> {
    core::iter::from_fn(|| rotation.poll_event()).collect()
}

fn phases(rotation: &Rotation) -> Vec<(String, Phase)> {
    rotation.orders().into_iter().map(|(host, order)| (host.to_string(), order.phase)).collect()
}

#[test]
fn a_rotation_walks_through_every_step() {
    let t0 = wgfabric_model::wallclock::monotonic();
    let mut rotation = Rotation::new(plan(), t0);
    assert_eq!(events(&mut rotation), [Event::Entered(Step::Prepare)]);
    assert_eq!(phases(&rotation), [("relay".into(), Phase::Prepare)], "peers get nothing yet");

    // Statuses that do not concern this rotation change nothing.
    rotation.handle_status(t0, &status("s1", None, false, "r1"));
    rotation.handle_status(t0, &status("elsewhere", Some(Phase::Prepare), false, "r1"));
    assert_eq!(rotation.step(), Step::Prepare);

    rotation.handle_status(t0, &status("relay", Some(Phase::Prepare), false, "r1"));
    assert_eq!((rotation.step(), rotation.new_key()), (Step::Stage, Some(NEW)));
    let orders = rotation.orders();
    assert_eq!(orders.len(), 3);
    assert!(orders
        .iter()
        .all(|(_, order)| order.phase == Phase::Stage && order.new_key == Some(NEW)));
    assert_eq!(
        events(&mut rotation),
        [Event::HostDone(Step::Prepare, name("relay")), Event::Entered(Step::Stage)]
    );

    rotation.handle_status(t0, &status("s1", Some(Phase::Stage), false, "r1"));
    assert_eq!(rotation.waiting_for(), [name("s2")]);
    rotation.handle_status(t0, &status("s2", Some(Phase::Stage), false, "r1"));
    assert_eq!(rotation.step(), Step::Switch);

    // The switch is verified only when every peer's new key took over.
    rotation.handle_status(t0, &status("relay", Some(Phase::Switch), false, "r1"));
    assert_eq!(rotation.step(), Step::Verify);
    assert!(phases(&rotation).iter().all(|(_, phase)| *phase == Phase::Verify));
    rotation.handle_status(t0, &status("s1", Some(Phase::Verify), true, "r1"));
    rotation.handle_status(t0, &status("s2", Some(Phase::Switch), true, "r1"));
    rotation.handle_status(t0, &status("s2", Some(Phase::Verify), false, "r1"));
    assert_eq!(rotation.waiting_for(), [name("s2")]);
    rotation.handle_status(t0, &status("s2", Some(Phase::Verify), true, "r1"));
    assert_eq!(rotation.step(), Step::Retire);
    assert!(events(&mut rotation).contains(&Event::Retire { new_key: NEW }));
    assert_eq!(rotation.poll_timeout(), None, "no deadline until the driver published");
    assert!(
        phases(&rotation).iter().all(|(_, phase)| *phase == Phase::Verify),
        "until the inventory has the new key, everyone keeps using it"
    );

    for host in ["relay", "s1", "s2"] {
        rotation.handle_status(t0, &status(host, Some(Phase::Verify), true, "r1"));
    }
    assert_eq!(
        rotation.step(),
        Step::Retire,
        "statuses do not end it before the driver wrote the key"
    );
    rotation.handle_retired(t0, Revision::new("r2"));
    assert!(rotation.orders().is_empty(), "retired with the inventory, without orders");
    // Another rotation retired meanwhile: its revision includes this one.
    rotation.handle_published(Revision::new("r3"));
    rotation.handle_status(t0, &status("relay", None, false, "r2"));
    rotation.handle_status(t0, &status("s1", None, false, "r3"));
    rotation.handle_status(t0, &status("s2", Some(Phase::Switch), true, "r2"));
    assert_eq!(rotation.waiting_for(), [name("s2")], "still reports the rotation");
    rotation.handle_status(t0, &status("s2", None, false, "r2"));
    assert!(rotation.is_finished());
    assert_eq!(
        events(&mut rotation).last(),
        Some(&Event::Finished(Outcome::Rotated { new_key: NEW }))
    );
}

#[test]
fn verification_that_times_out_rolls_everything_back() {
    let t0 = wgfabric_model::wallclock::monotonic();
    let mut rotation = Rotation::new(plan(), t0);
    rotation.handle_status(t0, &status("relay", Some(Phase::Prepare), false, "r1"));
    rotation.handle_status(t0, &status("s1", Some(Phase::Stage), false, "r1"));
    rotation.handle_status(t0, &status("s2", Some(Phase::Stage), false, "r1"));
    rotation.handle_status(t0, &status("relay", Some(Phase::Switch), false, "r1"));
    rotation.handle_status(t0, &status("s1", Some(Phase::Verify), true, "r1"));
    let deadline = rotation.poll_timeout().unwrap();
    assert_eq!(deadline, t0 + Timeouts::default().verify);
    rotation.handle_timeout(deadline - Duration::from_millis(1));
    assert_eq!(rotation.step(), Step::Verify, "not before the deadline");
    rotation.handle_timeout(deadline);
    assert_eq!(rotation.step(), Step::Rollback);
    assert!(phases(&rotation).iter().all(|(_, phase)| *phase == Phase::Rollback));
    assert_eq!(phases(&rotation).len(), 3);

    for host in ["relay", "s1", "s2"] {
        rotation.handle_status(deadline, &status(host, Some(Phase::Rollback), false, "r1"));
    }
    let events = events(&mut rotation);
    let Some(Event::Finished(Outcome::RolledBack { reason })) = events.last() else {
        panic!("{events:?}")
    };
    assert!(reason.contains("no handshake on the new key with s2"), "{reason}");
    let notes = rotation.notes(events.last().unwrap());
    assert_eq!(notes.len(), 3, "two staged peers removed, the host back on its old key");
    assert!(notes.iter().all(|note| note.detail.starts_with("rotation relay-1 rollback")));
}

#[test]
fn an_agent_error_or_a_silent_host_rolls_back_early() {
    let t0 = wgfabric_model::wallclock::monotonic();
    let mut rotation = Rotation::new(plan(), t0);
    let mut refused = status("relay", Some(Phase::Prepare), false, "r1");
    refused.rotations[0].error = Some("cannot write the key".into());
    rotation.handle_status(t0, &refused);
    assert_eq!(rotation.step(), Step::Rollback);
    assert_eq!(phases(&rotation), [("relay".into(), Phase::Rollback)], "only the host was ordered");

    // Nobody confirms the rollback: the rotation fails and says who is missing.
    let later = rotation.poll_timeout().unwrap();
    rotation.handle_timeout(later);
    let Some(Event::Finished(Outcome::Failed { reason })) = events(&mut rotation).pop() else {
        panic!()
    };
    assert!(reason.contains("relay did not confirm"), "{reason}");

    let mut silent = Rotation::new(plan(), t0);
    silent.handle_timeout(t0 + Timeouts::default().prepare);
    assert_eq!(silent.step(), Step::Rollback);
}

#[test]
fn central_mode_checks_the_reported_key_and_a_failed_retirement_rolls_back() {
    let t0 = wgfabric_model::wallclock::monotonic();
    let mut plan = plan();
    plan.sealed_new_key = Some((Sealed::new("sealed"), PublicKey::from_bytes([3; 32])));
    plan.preshared_keys.insert(name("s1"), Sealed::new("psk-s1"));
    let rotation = Rotation::new(plan.clone(), t0);
    let orders = rotation.orders();
    assert_eq!(orders[0].1.sealed_new_key, Some(Sealed::new("sealed")));
    assert_eq!(orders[0].1.preshared_keys.len(), 1);
    let mut rotation = rotation;
    rotation.handle_status(t0, &status("relay", Some(Phase::Prepare), false, "r1"));
    assert_eq!(rotation.step(), Step::Rollback, "NEW is not the sealed key");

    plan.sealed_new_key = None;
    let mut rotation = Rotation::new(plan, t0);
    rotation.handle_status(t0, &status("relay", Some(Phase::Prepare), false, "r1"));
    let s1 = rotation.orders().into_iter().find(|(host, _)| host.as_str() == "s1").unwrap().1;
    assert_eq!(s1.preshared_keys.keys().collect::<Vec<_>>(), [&name("s1")], "a peer sees its own");
    let s2 = rotation.orders().into_iter().find(|(host, _)| host.as_str() == "s2").unwrap().1;
    assert!(s2.preshared_keys.is_empty());
    for host in ["s1", "s2"] {
        rotation.handle_status(t0, &status(host, Some(Phase::Stage), false, "r1"));
    }
    rotation.handle_status(t0, &status("relay", Some(Phase::Switch), false, "r1"));
    for host in ["s1", "s2"] {
        rotation.handle_status(t0, &status(host, Some(Phase::Verify), true, "r1"));
    }
    assert_eq!(rotation.step(), Step::Retire);
    rotation.handle_retire_failed(t0, "disk full".into());
    assert_eq!(rotation.step(), Step::Rollback);
}
