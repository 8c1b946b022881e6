//! Direction never guessed when it can wait (issue 9): a decided session
//! on an interface whose local address is not known yet is reported once
//! the address is known, or with DESIGN's fallback when a bound passes.

use std::collections::HashMap;

use crate::flow::settings::{InterfaceFacts, Settings};
use crate::flow::testkit::*;
use crate::flow::verdict::{Direction, Verdict};

/// The instance at 10.0.0.10 calls out to 198.51.100.7:443: egress. With
/// one peer only, the fallback would call it ingress.
fn outgoing_call(h: &mut Harness) {
    h.push(rec("10.0.0.10:50000", "198.51.100.7:443", "ACCEPT").at(1000, 1050));
    h.push(rec("198.51.100.7:443", "10.0.0.10:50000", "ACCEPT").at(1000, 1050));
}

/// A second peer singles out 10.0.0.10 as the interface's own address.
fn another_peer(h: &mut Harness, start: u64) {
    h.push(rec("10.0.0.10:50001", "203.0.113.9:443", "ACCEPT").at(start, start + 10));
}

#[test]
fn a_session_of_a_single_peer_interface_waits_for_its_address() {
    let mut h = Harness::waiting(None);
    outgoing_call(&mut h);
    assert!(h.seen.decided.is_empty(), "{:#?}", h.seen.decided);
    another_peer(&mut h, 1010);
    let seen = h.seen.only();
    assert_eq!(seen.initiator, "10.0.0.10:50000");
    assert_eq!(
        (seen.verdict, seen.direction),
        (Verdict::Accepted, Direction::Egress)
    );
    assert!(h.seen.fallbacks.is_empty());
    // All its traffic goes with it.
    assert_eq!(h.seen.traffic[0].3, 2);
}

#[test]
fn later_records_of_a_waiting_session_are_counted_with_it() {
    let mut h = Harness::waiting(None);
    outgoing_call(&mut h);
    h.push(rec("10.0.0.10:50000", "198.51.100.7:443", "ACCEPT").at(1060, 1110));
    another_peer(&mut h, 1070);
    assert_eq!(h.seen.traffic.len(), 1);
    assert_eq!(h.seen.traffic[0].3, 3);
    assert_eq!(h.finish().decided.len(), 2);
}

#[test]
fn a_rejection_waits_for_its_side_too() {
    // A network ACL drops the reply leaving the instance's peer: the
    // reply enters the interface, so it is rejected inbound.
    let mut h = Harness::waiting(None);
    h.push(rec("10.0.0.10:50000", "198.51.100.7:443", "ACCEPT").at(1000, 1050));
    h.push(rec("198.51.100.7:443", "10.0.0.10:50000", "REJECT").at(1000, 1050));
    assert!(h.seen.decided.is_empty());
    another_peer(&mut h, 1010);
    let seen = h.seen.only();
    assert_eq!(
        (seen.verdict, seen.direction),
        (Verdict::RejectedInbound, Direction::Egress)
    );
}

#[test]
fn the_end_of_input_reports_what_still_waits_with_the_fallback() {
    let mut h = Harness::waiting(None);
    outgoing_call(&mut h);
    let seen = h.finish().only().clone();
    // The whole input never told: the request's destination is local.
    assert_eq!(seen.direction, Direction::Ingress);
    assert_eq!(h.seen.fallbacks, ["eni-a"]);
    assert_eq!(h.seen.closed.len(), 1);
}

#[test]
fn live_the_fallback_decides_after_the_address_wait() {
    let mut h = Harness::waiting(Some(300));
    // The wall clock, not event time, measures the wait.
    h.correlator.set_wall_clock(5_000);
    outgoing_call(&mut h);
    h.correlator.set_wall_clock(5_299);
    h.advance_to(1060);
    assert!(h.seen.decided.is_empty());
    h.correlator.set_wall_clock(5_300);
    h.advance_to(1061);
    assert_eq!(h.seen.only().direction, Direction::Ingress);
    assert_eq!(h.seen.fallbacks, ["eni-a"]);
}

#[test]
fn past_the_bound_per_interface_the_oldest_waiting_session_falls_back() {
    let mut h = Harness::with(
        Settings {
            max_awaiting_address: 2,
            ..Settings::default()
        },
        HashMap::new(),
    );
    for src in ["10.0.0.10:50000", "10.0.0.10:50001", "10.0.0.10:50002"] {
        let dst = "198.51.100.7:443";
        h.push(rec(src, dst, "ACCEPT").at(1000, 1050));
        h.push(rec(dst, src, "ACCEPT").at(1000, 1050));
    }
    assert_eq!(h.seen.decided.len(), 1);
    assert_eq!(h.seen.fallbacks, ["eni-a"]);
    another_peer(&mut h, 1010);
    let directions: Vec<Direction> = h.seen.decided.iter().map(|s| s.direction).collect();
    assert_eq!(
        directions,
        [Direction::Ingress, Direction::Egress, Direction::Egress]
    );
}

#[test]
fn a_session_closed_while_waiting_is_kept_aside_and_a_new_one_opens() {
    let mut h = Harness::waiting(None);
    outgoing_call(&mut h);
    // Idle past session_idle_timeout (600 s) on its interface's watermark.
    h.push(rec("10.0.0.10:50000", "198.51.100.7:443", "ACCEPT").at(2000, 2050));
    assert!(h.seen.decided.is_empty());
    another_peer(&mut h, 2060);
    // The first session (closed) and the second, pending until its grace.
    assert_eq!(h.seen.decided.len(), 1);
    assert_eq!(h.seen.closed.len(), 1);
    assert_eq!(h.seen.decided[0].direction, Direction::Egress);
    assert_eq!(h.seen.decided[0].packets, 2);
    let seen = h.finish();
    assert_eq!(seen.decided.len(), 3);
    assert_eq!(seen.decided[1].verdict, Verdict::Unanswered);
    assert_eq!(seen.decided[1].direction, Direction::Egress);
}

#[test]
fn an_address_from_facts_settles_what_waits() {
    let mut h = Harness::waiting(None);
    outgoing_call(&mut h);
    h.correlator.set_facts(
        "eni-a",
        InterfaceFacts {
            addresses: vec!["10.0.0.10".parse().unwrap()],
            intermediate: false,
        },
    );
    assert!(h.seen.decided.is_empty());
    h.advance_to(1051);
    assert_eq!(h.seen.only().direction, Direction::Egress);
}

#[test]
fn an_interface_with_several_addresses_falls_back_at_once() {
    let mut h = Harness::waiting(None);
    // Two local addresses: no single address is on every record.
    h.push(rec("10.0.0.10:50000", "198.51.100.7:443", "ACCEPT").at(1000, 1050));
    h.push(rec("10.0.0.11:50000", "203.0.113.9:443", "ACCEPT").at(1000, 1050));
    h.push(rec("198.51.100.7:443", "10.0.0.10:50000", "ACCEPT").at(1000, 1050));
    assert_eq!(h.seen.only().direction, Direction::Ingress);
    assert_eq!(h.seen.fallbacks, ["eni-a"]);
}

#[test]
fn flow_direction_never_waits() {
    let mut h = Harness::waiting(None);
    h.push(
        rec("10.0.0.10:50000", "198.51.100.7:443", "ACCEPT")
            .at(1000, 1050)
            .dir("egress"),
    );
    h.push(
        rec("198.51.100.7:443", "10.0.0.10:50000", "ACCEPT")
            .at(1000, 1050)
            .dir("ingress"),
    );
    assert_eq!(h.seen.only().direction, Direction::Egress);
    assert!(h.seen.fallbacks.is_empty());
}

#[test]
fn waiting_and_parked_sessions_survive_a_checkpoint() {
    let prefix = |h: &mut Harness| {
        outgoing_call(h);
        h.push(rec("10.0.0.10:50000", "198.51.100.7:443", "ACCEPT").at(2000, 2050));
        h.push(rec("10.0.0.10:40000", "198.51.100.7:22", "ACCEPT").at(2000, 2050));
    };
    let suffix = |h: &mut Harness| {
        another_peer(h, 2060);
        h.finish();
    };
    let mut whole = Harness::waiting(None);
    prefix(&mut whole);
    suffix(&mut whole);

    let mut first = Harness::waiting(None);
    prefix(&mut first);
    assert!(first.seen.decided.is_empty());
    // Written from the live table: the same as the owned copy.
    let saved = serde_json::to_string(&first.correlator.checkpoint_view()).unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&saved).unwrap(),
        serde_json::to_value(first.correlator.checkpoint()).unwrap()
    );
    let mut second = Harness::waiting(None);
    second
        .correlator
        .restore(serde_json::from_str(&saved).unwrap())
        .unwrap();
    suffix(&mut second);
    assert_eq!(second.seen.decided, whole.seen.decided);
    assert_eq!(second.seen.closed, whole.seen.closed);
    assert_eq!(second.seen.traffic, whole.seen.traffic);
}
