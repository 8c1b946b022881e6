//! One test per rule of DESIGN.md ("Core rules"), each built from a few
//! hand-written records so the rule under test is the only one that can
//! decide.

use std::collections::HashMap;

use crate::flow::correlate::Correlator;
use crate::flow::format::LogFormat;
use crate::flow::record::RecordParser;
use crate::flow::settings::Settings;
use crate::flow::testkit::*;
use crate::flow::verdict::{Direction, Verdict};

// Initiator rule 1: only one direction seen.

#[test]
fn rule_1_a_lone_record_is_started_by_its_source_even_from_a_service_port() {
    let mut h = Harness::new();
    h.push(rec("10.0.0.10:22", "198.51.100.7:40000", "ACCEPT"));
    let seen = h.finish().only();
    assert_eq!(seen.initiator, "10.0.0.10:22");
    assert_eq!(seen.responder, "198.51.100.7:40000");
    assert_eq!(seen.verdict, Verdict::Unanswered);
}

#[test]
fn rule_1_a_lone_syn_ack_is_a_reply_started_by_its_destination() {
    let mut h = Harness::new();
    h.push(rec("10.0.0.10:22", "198.51.100.7:40000", "ACCEPT").flags(SYN_ACK | FIN));
    let seen = h.finish().only();
    assert_eq!(seen.initiator, "198.51.100.7:40000");
    assert_eq!(seen.responder, "10.0.0.10:22");
    // Its request came by another path: the conversation was established.
    assert_eq!(seen.verdict, Verdict::Accepted);
}

#[test]
fn rule_1_a_lone_syn_is_a_request_from_its_source() {
    let mut h = Harness::new();
    h.push(rec("198.51.100.7:40000", "10.0.0.10:22", "ACCEPT").flags(SYN));
    let seen = h.finish().only();
    assert_eq!(seen.initiator, "198.51.100.7:40000");
    assert_eq!(seen.verdict, Verdict::Unanswered);
}

// Initiator rule 2: one direction accepted, the other rejected.

#[test]
fn rule_2_the_accepted_direction_is_the_request() {
    // Ports and start time both point at the other side: only rule 2
    // can make the record from port 22 the request.
    let mut h = Harness::new();
    h.push(rec("198.51.100.7:40000", "10.0.0.10:22", "REJECT").at(1000, 1050));
    h.push(rec("10.0.0.10:22", "198.51.100.7:40000", "ACCEPT").at(1010, 1050));
    let seen = h.seen.only().clone();
    assert_eq!(seen.initiator, "10.0.0.10:22");
    assert_eq!(seen.responder, "198.51.100.7:40000");
    // The reply (rejected) leaves the interface: the request's
    // destination is taken as local.
    assert_eq!(seen.verdict, Verdict::RejectedOutbound);
}

#[test]
fn rule_2_holds_whichever_record_arrives_first() {
    for reject_first in [true, false] {
        let mut h = Harness::new();
        let request = rec("198.51.100.7:40000", "10.0.0.10:22", "ACCEPT");
        let reply = rec("10.0.0.10:22", "198.51.100.7:40000", "REJECT");
        if reject_first {
            h.push(reply).push(request);
        } else {
            h.push(request).push(reply);
        }
        let seen = h.seen.only();
        assert_eq!(seen.initiator, "198.51.100.7:40000", "{reject_first}");
        assert_eq!(seen.verdict, Verdict::RejectedOutbound, "{reject_first}");
        assert_eq!(seen.direction, Direction::Ingress, "{reject_first}");
    }
}

// Initiator rule 3: the side that sent SYN without ACK.

#[test]
fn rule_3_the_side_that_sent_syn_without_ack_started_it() {
    // Ports (22 is a service port) and start times point the other way.
    let mut h = Harness::new();
    h.push(
        rec("198.51.100.7:40000", "10.0.0.10:22", "ACCEPT")
            .at(1000, 1050)
            .flags(SYN_ACK),
    );
    h.push(
        rec("10.0.0.10:22", "198.51.100.7:40000", "ACCEPT")
            .at(1010, 1050)
            .flags(SYN | FIN),
    );
    let seen = h.seen.only();
    assert_eq!(seen.initiator, "10.0.0.10:22");
    assert_eq!(seen.verdict, Verdict::Accepted);
}

#[test]
fn rule_3_does_not_decide_when_both_sides_sent_a_bare_syn() {
    // Simultaneous open: rule 4 decides (22 is the responder's).
    let mut h = Harness::new();
    h.push(rec("10.0.0.10:22", "198.51.100.7:40000", "ACCEPT").flags(SYN));
    h.push(rec("198.51.100.7:40000", "10.0.0.10:22", "ACCEPT").flags(SYN));
    assert_eq!(h.seen.only().initiator, "198.51.100.7:40000");
}

// Initiator rule 4: service ports, then the higher (ephemeral) port.

#[test]
fn rule_4_a_port_below_1024_is_the_responders() {
    // The record from port 53 is earlier and arrives first; rule 4 wins.
    let mut h = Harness::new();
    h.push(
        rec("10.0.0.2:53", "10.0.0.10:1500", "ACCEPT")
            .protocol(17)
            .at(1000, 1050),
    );
    h.push(
        rec("10.0.0.10:1500", "10.0.0.2:53", "ACCEPT")
            .protocol(17)
            .at(1010, 1050),
    );
    let seen = h.seen.only();
    assert_eq!(seen.initiator, "10.0.0.10:1500");
    assert_eq!(seen.responder, "10.0.0.2:53");
}

#[test]
fn rule_4_a_configured_service_port_is_the_responders() {
    let records = || {
        [
            rec("10.0.0.10:50000", "198.51.100.7:40000", "ACCEPT").at(1000, 1050),
            rec("198.51.100.7:40000", "10.0.0.10:50000", "ACCEPT").at(1000, 1050),
        ]
    };
    // Unconfigured: the higher port (50000) is the ephemeral one.
    let mut h = Harness::new();
    for record in records() {
        h.push(record);
    }
    assert_eq!(h.seen.only().initiator, "10.0.0.10:50000");

    let settings = Settings {
        service_ports: vec![50000],
        ..deciding_at_once()
    };
    let mut h = Harness::with(settings, HashMap::new());
    for record in records() {
        h.push(record);
    }
    assert_eq!(h.seen.only().initiator, "198.51.100.7:40000");
    assert_eq!(h.seen.only().responder, "10.0.0.10:50000");
}

#[test]
fn rule_4_without_a_service_port_the_higher_port_is_the_initiators() {
    // The lower port's record is earlier and arrives first.
    let mut h = Harness::new();
    h.push(rec("10.0.0.10:33000", "198.51.100.7:45000", "ACCEPT").at(1000, 1050));
    h.push(rec("198.51.100.7:45000", "10.0.0.10:33000", "ACCEPT").at(1010, 1050));
    assert_eq!(h.seen.only().initiator, "198.51.100.7:45000");
}

#[test]
fn rule_4_when_both_ports_are_service_ports_the_higher_is_the_initiators() {
    let mut h = Harness::new();
    h.push(rec("10.0.0.10:80", "10.0.0.20:443", "ACCEPT").at(1000, 1050));
    h.push(rec("10.0.0.20:443", "10.0.0.10:80", "ACCEPT").at(1010, 1050));
    assert_eq!(h.seen.only().initiator, "10.0.0.20:443");
}

// Initiator rule 5: the earlier record.

#[test]
fn rule_5_the_earlier_start_is_the_request() {
    let mut h = Harness::new();
    h.push(
        rec("10.0.0.10:4500", "198.51.100.7:4500", "ACCEPT")
            .protocol(17)
            .at(1010, 1050),
    );
    h.push(
        rec("198.51.100.7:4500", "10.0.0.10:4500", "ACCEPT")
            .protocol(17)
            .at(1000, 1050),
    );
    assert_eq!(h.seen.only().initiator, "198.51.100.7:4500");
}

#[test]
fn rule_5_with_equal_starts_the_first_to_arrive_is_the_request() {
    for first in ["10.0.0.10:4500", "198.51.100.7:4500"] {
        let other = if first == "10.0.0.10:4500" {
            "198.51.100.7:4500"
        } else {
            "10.0.0.10:4500"
        };
        let mut h = Harness::new();
        h.push(rec(first, other, "ACCEPT").protocol(17));
        h.push(rec(other, first, "ACCEPT").protocol(17));
        assert_eq!(h.seen.only().initiator, first);
    }
}

// Direction: the local address.

#[test]
fn direction_from_a_learned_local_address() {
    let mut h = Harness::new();
    // Two peers: 10.0.0.10 is on every record, so it is local.
    h.push(rec("198.51.100.9:50000", "10.0.0.10:22", "ACCEPT"));
    h.push(rec("10.0.0.10:22", "198.51.100.9:50000", "ACCEPT"));
    h.push(rec("10.0.0.10:40000", "203.0.113.5:443", "ACCEPT"));
    h.push(rec("203.0.113.5:443", "10.0.0.10:40000", "ACCEPT"));
    assert_eq!(
        h.seen.verdicts(),
        [
            (Verdict::Accepted, Direction::Ingress),
            (Verdict::Accepted, Direction::Egress)
        ]
    );
}

#[test]
fn direction_with_one_peer_only_takes_the_requests_destination_as_local() {
    // Nothing tells which side is local: the initiator is taken as remote.
    let mut h = Harness::new();
    h.push(rec("10.0.0.10:40000", "203.0.113.5:443", "ACCEPT"));
    h.push(rec("203.0.113.5:443", "10.0.0.10:40000", "ACCEPT"));
    assert_eq!(h.seen.verdicts(), [(Verdict::Accepted, Direction::Ingress)]);
}

#[test]
fn direction_from_configured_addresses() {
    let mut h = Harness::with_facts("eni-a", facts(&["10.0.0.10"], false));
    h.push(rec("10.0.0.10:40000", "203.0.113.5:443", "ACCEPT"));
    h.push(rec("203.0.113.5:443", "10.0.0.10:40000", "ACCEPT"));
    assert_eq!(h.seen.verdicts(), [(Verdict::Accepted, Direction::Egress)]);

    let mut h = Harness::with_facts("eni-a", facts(&["10.0.0.10"], false));
    h.push(rec("203.0.113.5:40000", "10.0.0.10:443", "ACCEPT"));
    h.push(rec("10.0.0.10:443", "203.0.113.5:40000", "ACCEPT"));
    assert_eq!(h.seen.verdicts(), [(Verdict::Accepted, Direction::Ingress)]);
}

#[test]
fn direction_from_configured_addresses_of_the_same_family_only() {
    // An IPv4 address configured says nothing about IPv6 traffic.
    let mut h = Harness::with_facts("eni-a", facts(&["10.0.0.10"], false));
    h.push(rec("[2001:db8::10]:40000", "[2001:db8::5]:443", "ACCEPT"));
    h.push(rec("[2001:db8::5]:443", "[2001:db8::10]:40000", "ACCEPT"));
    let seen = h.seen.only();
    assert_eq!(seen.initiator, "[2001:db8::10]:40000");
    assert_eq!(seen.direction, Direction::Ingress);
}

#[test]
fn direction_from_flow_direction() {
    let mut h = Harness::new();
    h.push(rec("10.0.0.10:40000", "203.0.113.5:443", "ACCEPT").dir("egress"));
    h.push(rec("203.0.113.5:443", "10.0.0.10:40000", "ACCEPT").dir("ingress"));
    assert_eq!(h.seen.verdicts(), [(Verdict::Accepted, Direction::Egress)]);

    let mut h = Harness::new();
    h.push(rec("203.0.113.5:40000", "10.0.0.10:443", "ACCEPT").dir("ingress"));
    h.push(rec("10.0.0.10:443", "203.0.113.5:40000", "ACCEPT").dir("egress"));
    assert_eq!(h.seen.verdicts(), [(Verdict::Accepted, Direction::Ingress)]);
}

#[test]
fn flow_direction_of_a_lone_record_decides_rejected_outbound() {
    // One peer only, so without flow-direction this would be inbound.
    let mut h = Harness::new();
    h.push(rec("10.0.0.10:40000", "203.0.113.5:443", "REJECT").dir("egress"));
    assert_eq!(
        h.finish().verdicts(),
        [(Verdict::RejectedOutbound, Direction::Egress)]
    );
}

// Verdicts.

#[test]
fn verdict_accepted() {
    let mut h = Harness::new();
    h.push(rec("198.51.100.7:40000", "10.0.0.10:22", "ACCEPT").traffic(10, 1000));
    h.push(rec("10.0.0.10:22", "198.51.100.7:40000", "ACCEPT").traffic(8, 4000));
    let seen = h.seen.only();
    assert_eq!(
        (seen.verdict, seen.direction),
        (Verdict::Accepted, Direction::Ingress)
    );
    assert_eq!((seen.packets, seen.bytes), (18, 5000));
    // Decided as soon as both directions are seen.
    assert_eq!(h.load("eni-a"), (0, 1));
}

#[test]
fn verdict_refused_when_the_reply_is_a_reset_only() {
    for reply_flags in [RST, RST | ACK] {
        let mut h = Harness::new();
        h.push(rec("198.51.100.7:40000", "10.0.0.10:8080", "ACCEPT").flags(SYN));
        h.push(rec("10.0.0.10:8080", "198.51.100.7:40000", "ACCEPT").flags(reply_flags));
        assert_eq!(
            h.seen.verdicts(),
            [(Verdict::Refused, Direction::Ingress)],
            "reply flags {reply_flags}"
        );
    }
}

#[test]
fn a_reset_after_a_syn_ack_is_not_refused() {
    let mut h = Harness::new();
    h.push(rec("198.51.100.7:40000", "10.0.0.10:8080", "ACCEPT").flags(SYN));
    h.push(rec("10.0.0.10:8080", "198.51.100.7:40000", "ACCEPT").flags(SYN_ACK | RST));
    assert_eq!(h.seen.verdicts(), [(Verdict::Accepted, Direction::Ingress)]);
}

#[test]
fn without_tcp_flags_a_reply_is_never_refused() {
    let parser = RecordParser::new(LogFormat::default_v2());
    let mut correlator = Correlator::new(deciding_at_once(), HashMap::new());
    let mut seen = Recorder::default();
    for line in [
        "2 123456789010 eni-a 198.51.100.7 10.0.0.10 40000 8080 6 1 44 1000 1050 ACCEPT OK",
        "2 123456789010 eni-a 10.0.0.10 198.51.100.7 8080 40000 6 1 40 1000 1050 ACCEPT OK",
    ] {
        let record = parser.parse(line).unwrap();
        correlator.push(&record, record.time(), &mut seen);
    }
    assert_eq!(seen.verdicts(), [(Verdict::Accepted, Direction::Ingress)]);
}

#[test]
fn verdict_rejected_inbound_for_a_lone_rejected_request() {
    let mut h = Harness::new();
    h.push(rec("198.51.100.7:49761", "10.0.0.10:3389", "REJECT").flags(SYN));
    // A lone record of either action waits for the grace.
    assert!(h.seen.decided.is_empty());
    assert_eq!(
        h.finish().verdicts(),
        [(Verdict::RejectedInbound, Direction::Ingress)]
    );
}

#[test]
fn verdict_rejected_outbound_when_a_network_acl_blocks_the_reply() {
    let mut h = Harness::new();
    h.push(rec("203.0.113.12:0", "10.0.0.10:0", "ACCEPT").protocol(1));
    h.push(rec("10.0.0.10:0", "203.0.113.12:0", "REJECT").protocol(1));
    let seen = h.seen.only();
    assert_eq!(
        (seen.verdict, seen.direction),
        (Verdict::RejectedOutbound, Direction::Ingress)
    );
    assert_eq!(seen.initiator, "203.0.113.12:0");
}

#[test]
fn verdict_rejected_outbound_for_a_rejected_egress_request() {
    let mut h = Harness::with_facts("eni-a", facts(&["10.0.0.10"], false));
    h.push(rec("10.0.0.10:40000", "203.0.113.5:443", "REJECT").flags(SYN));
    let seen = h.finish().only();
    assert_eq!(
        (seen.verdict, seen.direction),
        (Verdict::RejectedOutbound, Direction::Egress)
    );
    assert_eq!(seen.initiator, "10.0.0.10:40000");
}

#[test]
fn when_both_directions_are_rejected_the_requests_record_decides() {
    let mut h = Harness::with_facts("eni-a", facts(&["10.0.0.10"], false));
    h.push(rec("198.51.100.7:40000", "10.0.0.10:22", "REJECT"));
    h.push(rec("10.0.0.10:22", "198.51.100.7:40000", "REJECT"));
    assert_eq!(
        h.seen.verdicts(),
        [(Verdict::RejectedInbound, Direction::Ingress)]
    );

    let mut h = Harness::with_facts("eni-a", facts(&["10.0.0.10"], false));
    h.push(rec("10.0.0.10:40000", "198.51.100.7:22", "REJECT"));
    h.push(rec("198.51.100.7:22", "10.0.0.10:40000", "REJECT"));
    assert_eq!(
        h.seen.verdicts(),
        [(Verdict::RejectedOutbound, Direction::Egress)]
    );
}

#[test]
fn verdict_unanswered_for_a_lone_accepted_request() {
    let mut h = Harness::new();
    h.push(rec("198.51.100.7:40000", "10.0.0.10:5432", "ACCEPT").flags(SYN));
    assert_eq!(
        h.finish().verdicts(),
        [(Verdict::Unanswered, Direction::Ingress)]
    );
}

#[test]
fn verdict_accepted_for_a_lone_accepted_reply() {
    let mut h = Harness::with_facts("eni-a", facts(&["10.0.0.10"], false));
    h.push(rec("203.0.113.5:443", "10.0.0.10:40000", "ACCEPT").flags(SYN_ACK));
    let seen = h.finish().only();
    assert_eq!(
        (seen.verdict, seen.direction),
        (Verdict::Accepted, Direction::Egress)
    );
    assert_eq!(seen.initiator, "10.0.0.10:40000");
}

// Intermediate interfaces.

#[test]
fn an_intermediate_interface_gives_a_lone_accept_no_verdict() {
    let cases: [(&str, Harness, Rec); 3] = [
        (
            "instance-id -",
            Harness::new(),
            rec("10.40.1.175:39812", "10.40.2.236:80", "ACCEPT").instance("-"),
        ),
        (
            "pkt-srcaddr differs",
            Harness::new(),
            rec("10.40.1.175:39812", "10.40.2.236:80", "ACCEPT").pkt_src("10.20.33.164"),
        ),
        (
            "configured",
            Harness::with_facts("eni-a", facts(&[], true)),
            rec("10.40.1.175:39812", "10.40.2.236:80", "ACCEPT"),
        ),
    ];
    for (case, mut h, record) in cases {
        h.push(record);
        let seen = h.finish();
        assert!(seen.decided.is_empty(), "{case}: {:?}", seen.decided);
        assert!(seen.closed.is_empty(), "{case}");
        assert_eq!(h.load("eni-a"), (0, 0), "{case}");
    }
}

#[test]
fn one_translated_record_marks_the_whole_interface() {
    let mut h = Harness::new();
    h.push(rec("10.40.1.175:39812", "10.40.2.236:80", "ACCEPT"));
    h.push(rec("10.40.1.176:39813", "10.40.2.236:80", "ACCEPT").pkt_src("10.20.33.164"));
    assert!(h.finish().decided.is_empty());
}

#[test]
fn an_intermediate_interface_still_judges_what_it_sees_in_full() {
    let mut h = Harness::with_facts("eni-a", facts(&[], true));
    h.push(rec("10.40.1.175:39812", "10.40.2.236:80", "ACCEPT"));
    h.push(rec("10.40.2.236:80", "10.40.1.175:39812", "ACCEPT"));
    h.push(rec("10.40.1.175:39900", "10.40.2.236:3389", "REJECT"));
    assert_eq!(
        h.finish().verdicts(),
        [
            (Verdict::Accepted, Direction::Ingress),
            (Verdict::RejectedInbound, Direction::Ingress)
        ]
    );
}

#[test]
fn an_instance_interface_beside_an_intermediate_one_keeps_its_verdicts() {
    let mut h = Harness::new();
    h.push(
        rec("10.40.1.175:39812", "10.40.2.236:80", "ACCEPT")
            .on("eni-tgw")
            .instance("-"),
    );
    h.push(rec("10.40.1.175:39812", "10.40.2.236:80", "ACCEPT").on("eni-b"));
    assert_eq!(
        h.finish()
            .decided
            .iter()
            .map(|s| (s.interface.as_str(), s.verdict))
            .collect::<Vec<_>>(),
        [("eni-b", Verdict::Unanswered)]
    );
}
