//! The table over time: grace and idle deadlines, watermarks, advance_to
//! and finish.

use std::collections::HashMap;

use super::MAX_IDLE_INTERFACES;
use crate::flow::settings::Settings;
use crate::flow::testkit::*;
use crate::flow::verdict::{Direction, Verdict};

// Sessions over time.

#[test]
fn a_connection_spanning_windows_is_one_session_with_its_bytes_added() {
    let mut h = Harness::new();
    h.push(
        rec("198.51.100.7:40000", "10.0.0.10:22", "ACCEPT")
            .at(1000, 1059)
            .traffic(10, 1000),
    );
    h.push(
        rec("10.0.0.10:22", "198.51.100.7:40000", "ACCEPT")
            .at(1000, 1059)
            .traffic(9, 2000),
    );
    h.push(
        rec("198.51.100.7:40000", "10.0.0.10:22", "ACCEPT")
            .at(1060, 1119)
            .traffic(7, 300),
    );
    h.push(
        rec("10.0.0.10:22", "198.51.100.7:40000", "ACCEPT")
            .at(1060, 1119)
            .traffic(6, 40),
    );
    h.push(
        rec("198.51.100.7:40000", "10.0.0.10:22", "ACCEPT")
            .at(1120, 1179)
            .traffic(1, 5),
    );
    let seen = h.finish();
    assert_eq!(seen.decided.len(), 1);
    assert_eq!(seen.closed.len(), 1);
    assert_eq!((seen.closed[0].packets, seen.closed[0].bytes), (33, 3345));
    let (packets, bytes) = seen
        .traffic
        .iter()
        .fold((0, 0), |(p, b), t| (p + t.3, b + t.4));
    assert_eq!((packets, bytes), (33, 3345));
    assert!(
        seen.traffic
            .iter()
            .all(|t| (t.1, t.2) == (Verdict::Accepted, Direction::Ingress))
    );
}

#[test]
fn a_stray_reject_after_close_changes_nothing() {
    let mut h = Harness::new();
    h.push(rec("198.51.100.7:40000", "10.0.0.10:22", "ACCEPT").flags(SYN | FIN));
    h.push(rec("10.0.0.10:22", "198.51.100.7:40000", "ACCEPT").flags(SYN_ACK | FIN));
    // A minute later, inside the idle timeout: AWS logs a stray packet.
    h.push(
        rec("198.51.100.7:40000", "10.0.0.10:22", "REJECT")
            .at(1060, 1110)
            .flags(RST)
            .traffic(1, 40),
    );
    h.advance_to(5000);
    let seen = h.finish();
    assert_eq!(seen.verdicts(), [(Verdict::Accepted, Direction::Ingress)]);
    assert_eq!(seen.closed.len(), 1);
    assert_eq!(seen.closed[0].verdict, Verdict::Accepted);
    assert_eq!(seen.closed[0].packets, 3);
    assert!(seen.traffic.iter().all(|t| t.1 == Verdict::Accepted));
}

#[test]
fn a_lone_record_waits_for_the_grace_on_the_watermark() {
    // Default grace: 120 s after the first record's end (1050).
    let mut h = Harness::new();
    h.push(rec("198.51.100.7:40000", "10.0.0.10:5432", "ACCEPT"));
    // Other traffic moves the watermark up to just before the grace ends.
    h.push(rec("198.51.100.8:40000", "10.0.0.10:22", "ACCEPT").at(1100, 1169));
    assert!(h.seen.decided.is_empty());
    assert_eq!(h.load("eni-a"), (2, 2));
    h.advance_to(1169);
    assert!(h.seen.decided.is_empty());
    h.advance_to(1170);
    assert_eq!(
        h.seen.verdicts(),
        [(Verdict::Unanswered, Direction::Ingress)]
    );
    assert_eq!(h.load("eni-a"), (1, 2));
}

#[test]
fn a_record_that_passes_the_grace_decides_what_was_pending() {
    let mut h = Harness::new();
    h.push(rec("198.51.100.7:40000", "10.0.0.10:5432", "ACCEPT"));
    h.push(rec("198.51.100.8:40000", "10.0.0.10:22", "ACCEPT").at(1100, 1170));
    assert_eq!(
        h.seen.verdicts(),
        [(Verdict::Unanswered, Direction::Ingress)]
    );
}

#[test]
fn a_reply_within_the_grace_pairs_with_its_request() {
    let mut h = Harness::new();
    h.push(rec("198.51.100.7:40000", "10.0.0.10:22", "ACCEPT").at(1000, 1050));
    h.advance_to(1169);
    h.push(rec("10.0.0.10:22", "198.51.100.7:40000", "ACCEPT").at(1100, 1160));
    assert_eq!(h.seen.verdicts(), [(Verdict::Accepted, Direction::Ingress)]);
    assert_eq!(h.finish().decided.len(), 1);
}

#[test]
fn a_lone_reject_also_waits_for_the_grace() {
    // Its accepted request may come later in the same capture window.
    let mut h = Harness::new();
    h.push(rec("10.0.0.10:22", "198.51.100.7:40000", "REJECT"));
    h.advance_to(1169);
    assert!(h.seen.decided.is_empty());
    h.push(rec("198.51.100.7:40000", "10.0.0.10:22", "ACCEPT"));
    assert_eq!(
        h.seen.verdicts(),
        [(Verdict::RejectedOutbound, Direction::Ingress)]
    );
}

#[test]
fn a_record_after_the_idle_timeout_opens_a_new_session() {
    // Default idle timeout: 600 s after the last record's end (1050).
    let mut h = Harness::new();
    h.push(rec("198.51.100.7:40000", "10.0.0.10:22", "ACCEPT"));
    h.push(rec("10.0.0.10:22", "198.51.100.7:40000", "ACCEPT"));
    h.advance_to(1650);
    assert!(
        h.seen.closed.is_empty(),
        "closed at the timeout, not before"
    );
    assert_eq!(h.load("eni-a"), (0, 1));
    h.advance_to(1651);
    assert_eq!(h.seen.closed.len(), 1);
    assert_eq!(h.load("eni-a"), (0, 0));
    // The same key again: a new session with its own verdict.
    h.push(rec("198.51.100.7:40000", "10.0.0.10:22", "REJECT").at(1700, 1750));
    let seen = h.finish();
    assert_eq!(
        seen.verdicts(),
        [
            (Verdict::Accepted, Direction::Ingress),
            (Verdict::RejectedInbound, Direction::Ingress)
        ]
    );
    assert_eq!(seen.closed.len(), 2);
    assert_eq!(seen.closed[1].packets, 1);
}

#[test]
fn a_record_past_the_idle_timeout_closes_the_old_session_first() {
    let mut h = Harness::new();
    h.push(rec("198.51.100.7:40000", "10.0.0.10:22", "ACCEPT").traffic(5, 500));
    h.push(rec("10.0.0.10:22", "198.51.100.7:40000", "ACCEPT").traffic(5, 500));
    h.push(
        rec("198.51.100.7:40000", "10.0.0.10:22", "ACCEPT")
            .at(2000, 2050)
            .traffic(1, 1),
    );
    let seen = h.finish();
    assert_eq!(seen.decided.len(), 2);
    assert_eq!(
        seen.closed
            .iter()
            .map(|s| (s.verdict, s.bytes))
            .collect::<Vec<_>>(),
        [(Verdict::Accepted, 1000), (Verdict::Unanswered, 1)]
    );
}

#[test]
fn sessions_are_dropped_once_the_watermark_moves_far_ahead() {
    let mut h = Harness::new();
    for port in 40000..40100u16 {
        let src: &'static str = format!("198.51.100.7:{port}").leak();
        let dst: &'static str = format!("10.0.0.10:{}", 1000 + port % 7).leak();
        h.push(rec(src, dst, "ACCEPT"));
        if port % 2 == 0 {
            h.push(rec(dst, src, "ACCEPT"));
        }
    }
    assert_eq!(h.load("eni-a"), (50, 100));
    h.advance_to(1_000_000);
    assert_eq!(h.load("eni-a"), (0, 0));
    assert_eq!(h.seen.decided.len(), 100);
    assert_eq!(h.seen.closed.len(), 100);
    assert_eq!(h.correlator.sessions.len(), 0);
}

#[test]
fn a_local_address_learned_within_the_grace_decides_direction() {
    let mut h = Harness::new();
    // The instance's own request, rejected on the way out...
    h.push(rec("10.0.0.10:40000", "203.0.113.5:443", "REJECT").flags(SYN));
    // ...then, within the grace, a record with another peer: 10.0.0.10
    // is on every record, so it is local.
    h.push(rec("198.51.100.9:50000", "10.0.0.10:22", "ACCEPT").at(1100, 1160));
    h.advance_to(1170);
    assert_eq!(
        h.seen.verdicts(),
        [(Verdict::RejectedOutbound, Direction::Egress)]
    );
}

#[test]
fn the_record_that_passes_the_grace_is_learned_from_before_it_decides() {
    // As above, but the record with the second peer is also the one
    // whose time passes the grace. It is one of the interface's records
    // when the decision is made (and it already counts for marking the
    // interface intermediate), so it must count for the local address.
    let mut h = Harness::new();
    h.push(rec("10.0.0.10:40000", "203.0.113.5:443", "REJECT").flags(SYN));
    h.push(rec("198.51.100.9:50000", "10.0.0.10:22", "ACCEPT").at(1120, 1170));
    assert_eq!(
        h.seen.verdicts(),
        [(Verdict::RejectedOutbound, Direction::Egress)]
    );
}

// Watermarks, advance_to and finish.

#[test]
fn advance_to_decides_pending_sessions_of_a_silent_interface() {
    let mut h = Harness::new();
    h.push(rec("198.51.100.7:40000", "10.0.0.10:5432", "ACCEPT"));
    // Another interface's records do not move eni-a's watermark.
    h.push(
        rec("198.51.100.8:40000", "10.0.1.10:22", "ACCEPT")
            .on("eni-b")
            .at(5000, 5050),
    );
    h.push(
        rec("10.0.1.10:22", "198.51.100.8:40000", "ACCEPT")
            .on("eni-b")
            .at(5000, 5050),
    );
    assert_eq!(h.seen.decided.len(), 1);
    assert_eq!(h.load("eni-a"), (1, 1));
    h.advance_to(1170);
    assert_eq!(h.seen.decided.len(), 2);
    assert_eq!(h.seen.decided[1].interface, "eni-a");
    assert_eq!(h.seen.decided[1].verdict, Verdict::Unanswered);
    assert_eq!(h.load("eni-a"), (0, 1));
}

#[test]
fn finish_decides_and_closes_everything() {
    let mut h = Harness::new();
    h.push(rec("198.51.100.7:40000", "10.0.0.10:5432", "ACCEPT"));
    h.push(rec("198.51.100.8:40000", "10.0.0.10:3389", "REJECT"));
    h.push(rec("198.51.100.9:40000", "10.0.1.10:22", "ACCEPT").on("eni-b"));
    h.push(rec("10.0.1.10:22", "198.51.100.9:40000", "ACCEPT").on("eni-b"));
    h.push(
        rec("10.40.1.175:39812", "10.40.2.236:80", "ACCEPT")
            .on("eni-c")
            .instance("-"),
    );
    assert_eq!(h.seen.decided.len(), 1);
    h.finish();
    let mut verdicts: Vec<Verdict> = h.seen.decided.iter().map(|s| s.verdict).collect();
    verdicts.sort();
    assert_eq!(
        verdicts,
        [
            Verdict::Accepted,
            Verdict::RejectedInbound,
            Verdict::Unanswered
        ]
    );
    assert_eq!(h.seen.closed.len(), 3);
    for interface in ["eni-a", "eni-b", "eni-c"] {
        assert_eq!(h.load(interface), (0, 0), "{interface}");
    }
}

#[test]
fn nodata_and_skipdata_move_the_watermark() {
    for status in ["NODATA", "SKIPDATA"] {
        let mut h = Harness::new();
        h.push(rec("198.51.100.7:40000", "10.0.0.10:5432", "ACCEPT"));
        h.push_line(&status_line("eni-a", 1100, 1169, status));
        assert!(h.seen.decided.is_empty(), "{status}");
        h.push_line(&status_line("eni-a", 1111, 1170, status));
        assert_eq!(
            h.seen.verdicts(),
            [(Verdict::Unanswered, Direction::Ingress)],
            "{status}"
        );
        // Status records are not sessions.
        assert_eq!(h.load("eni-a"), (0, 1), "{status}");
    }
}

#[test]
fn a_record_without_a_time_joins_but_waits_for_the_end() {
    // No start or end: no watermark to pass, decided at end of input.
    let mut h = Harness::new();
    h.push_line("eni-a 198.51.100.7 10.0.0.10 40000 5432 6 1 44 - - ACCEPT OK - - i-1 -");
    h.advance_to(u64::MAX);
    assert!(h.seen.decided.is_empty());
    assert_eq!(
        h.finish().verdicts(),
        [(Verdict::Unanswered, Direction::Ingress)]
    );
}

// Memory bounds.

fn bounded(max_open_sessions: usize) -> Harness {
    Harness::with(
        Settings {
            max_open_sessions,
            ..deciding_at_once()
        },
        HashMap::new(),
    )
}

fn leak(text: String) -> &'static str {
    text.leak()
}

#[test]
fn past_the_bound_a_decided_session_is_dropped_before_any_pending_one() {
    let mut h = bounded(3);
    h.push(rec("198.51.100.7:40000", "10.0.0.10:22", "ACCEPT"));
    h.push(rec("10.0.0.10:22", "198.51.100.7:40000", "ACCEPT"));
    h.push(rec("198.51.100.8:40001", "10.0.0.10:5432", "ACCEPT"));
    h.push(rec("198.51.100.9:40002", "10.0.0.10:5432", "ACCEPT"));
    assert_eq!(h.load("eni-a"), (2, 3));
    // A fourth session: the accepted one goes, closed with its totals.
    h.push(rec("198.51.100.10:40003", "10.0.0.10:5432", "ACCEPT"));
    assert_eq!(h.load("eni-a"), (3, 3));
    assert_eq!(h.seen.closed.len(), 1);
    assert_eq!(h.seen.closed[0].verdict, Verdict::Accepted);
    assert!(h.seen.evicted.is_empty());
}

#[test]
fn past_the_bound_the_oldest_pending_session_is_decided_early() {
    let mut h = bounded(2);
    h.push(rec("198.51.100.7:40000", "10.0.0.10:5432", "ACCEPT"));
    h.push(rec("198.51.100.8:40001", "10.0.0.10:3389", "REJECT"));
    h.push(rec("198.51.100.9:40002", "10.0.0.10:443", "ACCEPT"));
    // The lone request, oldest, is decided with what it has: unanswered.
    assert_eq!(
        h.seen.verdicts(),
        [(Verdict::Unanswered, Direction::Ingress)]
    );
    assert_eq!(h.seen.decided[0].responder, "10.0.0.10:5432");
    assert_eq!(h.seen.evicted, ["eni-a"]);
    assert_eq!(h.seen.closed.len(), 1);
    assert_eq!(h.load("eni-a"), (2, 2));
    // Every session is still counted once.
    let seen = h.finish();
    assert_eq!(seen.decided.len(), 3);
    assert_eq!(seen.closed.len(), 3);
}

#[test]
fn a_flood_is_counted_exactly_within_the_bound() {
    let mut h = bounded(100);
    for n in 0..5_000u32 {
        let src = leak(format!(
            "198.51.{}.{}:{}",
            n / 250,
            n % 250,
            40000 + n % 20000
        ));
        h.push(rec(src, "10.0.0.10:22", "REJECT").at(1000, 1000 + u64::from(n % 60)));
        let (_, open) = h.load("eni-a");
        assert!(open <= 100);
        let heap = h.correlator.interfaces[0].deadlines.len();
        assert!(
            heap <= 2 * open + 64,
            "{heap} deadlines for {open} sessions"
        );
    }
    assert_eq!(h.seen.evicted.len(), 4_900);
    let seen = h.finish();
    assert_eq!(seen.decided.len(), 5_000);
    assert!(
        seen.verdicts()
            .iter()
            .all(|v| *v == (Verdict::RejectedInbound, Direction::Ingress))
    );
}

#[test]
fn idle_interfaces_are_bounded() {
    let mut h = Harness::new();
    for n in 0..MAX_IDLE_INTERFACES + 1000 {
        let interface = leak(format!("eni-{n:08x}"));
        h.push_line(&status_line(interface, 1000, 1060, "NODATA"));
    }
    assert!(h.correlator.interfaces.len() <= MAX_IDLE_INTERFACES + 1);
    assert_eq!(
        h.correlator.interface_index.len(),
        h.correlator.interfaces.len()
    );
    // A busy interface is never forgotten.
    let mut h = Harness::new();
    h.push(rec("198.51.100.7:40000", "10.0.0.10:5432", "ACCEPT"));
    for n in 0..MAX_IDLE_INTERFACES + 10 {
        let interface = leak(format!("eni-{n:08x}"));
        h.push_line(&status_line(interface, 1000, 1060, "NODATA"));
    }
    assert_eq!(h.load("eni-a"), (1, 1));
    assert_eq!(
        h.finish().verdicts(),
        [(Verdict::Unanswered, Direction::Ingress)]
    );
}

// Records that arrive after the watermark has passed their grace.

/// A newer session first: eni-a's watermark is 2050, past the grace of
/// anything that ended by 1930 (and the idle timeout of nothing after 1450).
fn with_watermark_at_2050() -> Harness {
    let mut h = Harness::new();
    h.push(rec("198.51.100.8:40000", "10.0.0.10:22", "ACCEPT").at(2000, 2050));
    h.push(rec("10.0.0.10:22", "198.51.100.8:40000", "ACCEPT").at(2000, 2050));
    h
}

#[test]
fn a_late_lone_record_is_decided_at_the_next_advance_below_its_watermark() {
    let mut h = with_watermark_at_2050();
    h.push(rec("198.51.100.7:40000", "10.0.0.10:5432", "ACCEPT").at(1800, 1850));
    // The wall-clock watermark trails the interface's own (S3 delivery):
    // the interface gets no more records, yet its late record is due.
    h.advance_to(1500);
    assert_eq!(
        h.seen.verdicts(),
        [
            (Verdict::Accepted, Direction::Ingress),
            (Verdict::Unanswered, Direction::Ingress)
        ]
    );
    assert_eq!(h.load("eni-a"), (0, 2));
    // What a later advance past the watermark would have decided.
    let mut later = with_watermark_at_2050();
    later.push(rec("198.51.100.7:40000", "10.0.0.10:5432", "ACCEPT").at(1800, 1850));
    later.advance_to(2051);
    assert_eq!(later.seen.verdicts(), h.seen.verdicts());
    assert_eq!(later.seen.decided[1].responder, h.seen.decided[1].responder);
}

#[test]
fn a_late_request_still_pairs_with_its_reply_in_the_same_batch() {
    // Request and reply of a late capture window arrive one after the
    // other (one late S3 object): the request is not decided alone.
    let mut h = with_watermark_at_2050();
    h.push(rec("198.51.100.7:40000", "10.0.0.10:5432", "ACCEPT").at(1800, 1850));
    h.push(rec("10.0.0.10:5432", "198.51.100.7:40000", "ACCEPT").at(1800, 1850));
    h.advance_to(1500);
    assert_eq!(
        h.seen.verdicts(),
        [
            (Verdict::Accepted, Direction::Ingress),
            (Verdict::Accepted, Direction::Ingress)
        ]
    );
    assert_eq!(h.load("eni-a"), (0, 2));
}

#[test]
fn a_flood_of_interfaces_is_bounded_by_the_idle_limit_and_the_table() {
    // Every record a lone request on an interface never seen before: the
    // table holds at most max_open_sessions of them, and the interfaces
    // left idle by evictions are bounded by MAX_IDLE_INTERFACES.
    let mut h = bounded(100);
    let flood = MAX_IDLE_INTERFACES + 5_000;
    for n in 0..flood {
        let interface = leak(format!("eni-{n:08x}"));
        h.push(rec("198.51.100.7:40000", "10.0.0.10:5432", "ACCEPT").on(interface));
        assert!(h.correlator.sessions.len() <= 100);
    }
    assert!(
        h.correlator.interfaces.len() <= MAX_IDLE_INTERFACES + 100 + 1,
        "{} interfaces",
        h.correlator.interfaces.len()
    );
    assert_eq!(
        h.correlator.interface_index.len(),
        h.correlator.interfaces.len()
    );
    assert_eq!(h.seen.evicted.len(), flood - 100);
    // Every session still counted once.
    let seen = h.finish();
    assert_eq!(seen.decided.len(), flood);
    assert!(
        seen.verdicts()
            .iter()
            .all(|v| *v == (Verdict::Unanswered, Direction::Ingress))
    );
}

// A wall-clock advance in steps (the exporter holds a bounded number of
// decisions at once).

/// Three interfaces: lone requests, answered pairs, a session idle long
/// enough to close, and a late record below its interface's watermark.
fn before_an_advance(settings: Settings) -> Harness {
    let mut h = Harness::with(settings, HashMap::new());
    h.push(rec("198.51.100.9:40000", "10.0.0.10:22", "ACCEPT").at(100, 150));
    h.push(rec("10.0.0.10:22", "198.51.100.9:40000", "ACCEPT").at(100, 150));
    for n in 0..40u64 {
        let interface = ["eni-a", "eni-b", "eni-c"][(n % 3) as usize];
        let src = leak(format!("198.51.100.{}:{}", n % 7, 40_000 + n));
        h.push(
            rec(src, "10.0.0.10:5432", "ACCEPT")
                .on(interface)
                .at(1000 + n, 1010 + n),
        );
        if n % 5 == 0 {
            let dst = leak(format!("198.51.100.{}:{}", n % 7, 40_000 + n));
            h.push(
                rec("10.0.0.10:5432", dst, "ACCEPT")
                    .on(interface)
                    .at(1000 + n, 1010 + n),
            );
        }
    }
    h.push(
        rec("198.51.100.8:40000", "10.0.0.10:22", "ACCEPT")
            .on("eni-c")
            .at(3000, 3050),
    );
    h.push(
        rec("198.51.100.7:40000", "10.0.0.10:22", "REJECT")
            .on("eni-c")
            .at(1800, 1850),
    );
    h
}

fn assert_same_reports(a: &Recorder, b: &Recorder) {
    assert_eq!(a.decided, b.decided);
    assert_eq!(a.traffic, b.traffic);
    assert_eq!(a.closed, b.closed);
    assert_eq!(a.evicted, b.evicted);
    assert_eq!(a.fallbacks, b.fallbacks);
}

#[test]
fn an_advance_in_steps_decides_what_advance_to_does_in_the_same_order() {
    for settings in [
        deciding_at_once(),
        Settings::default(),
        Settings {
            address_wait: Some(0),
            ..Settings::default()
        },
    ] {
        let mut at_once = before_an_advance(settings.clone());
        at_once.correlator.set_wall_clock(5000);
        at_once.advance_to(1400);
        assert!(at_once.seen.decided.len() + at_once.seen.closed.len() > 40);
        for budget in [1, 3, 7, 1000] {
            let mut stepped = before_an_advance(settings.clone());
            stepped.correlator.set_wall_clock(5000);
            stepped.correlator.start_advance(1400, &mut stepped.seen);
            while stepped.correlator.advance_some(budget, &mut stepped.seen) {}
            assert_same_reports(&stepped.seen, &at_once.seen);
            assert_eq!(
                stepped.correlator.checkpoint(),
                at_once.correlator.checkpoint()
            );
        }
    }
}

#[test]
fn each_step_takes_at_most_its_budget_of_due_sessions() {
    let mut h = before_an_advance(deciding_at_once());
    h.correlator.start_advance(1400, &mut h.seen);
    let mut before = h.seen.decided.len() + h.seen.closed.len();
    while h.correlator.advance_some(4, &mut h.seen) {
        let now = h.seen.decided.len() + h.seen.closed.len();
        assert!(now - before <= 4, "{} reports in one step", now - before);
        before = now;
    }
    // Every lone request (all but the 8 answered) is decided.
    let unanswered = h
        .seen
        .verdicts()
        .iter()
        .filter(|(verdict, _)| *verdict == Verdict::Unanswered)
        .count();
    assert_eq!(unanswered, 32);
}

#[test]
fn an_advance_checkpointed_part_way_is_finished_by_the_successor() {
    let settings = deciding_at_once();
    let mut whole = before_an_advance(settings.clone());
    whole.advance_to(1400);
    let mut first = before_an_advance(settings.clone());
    first.correlator.start_advance(1400, &mut first.seen);
    for _ in 0..3 {
        assert!(first.correlator.advance_some(5, &mut first.seen));
    }
    let checkpoint = first.correlator.checkpoint();
    assert_eq!(checkpoint.advancing, Some(1400));
    let mut successor = Harness::with(settings, HashMap::new());
    successor.correlator.restore(checkpoint).unwrap();
    assert!(successor.correlator.advancing());
    while successor.correlator.advance_some(5, &mut successor.seen) {}
    // What the predecessor published, then what its successor did: the
    // whole advance, in order.
    let mut both = std::mem::take(&mut first.seen);
    both.decided.append(&mut successor.seen.decided);
    both.traffic.append(&mut successor.seen.traffic);
    both.closed.append(&mut successor.seen.closed);
    assert_same_reports(&both, &whole.seen);
    assert_eq!(
        successor.correlator.checkpoint(),
        whole.correlator.checkpoint()
    );
}
