//! DESIGN.md's rules as pure functions of one session: who started it,
//! which way its records cross the interface, and its verdict.

use super::address::LocalAddresses;
use super::record::{Action, FlowDirection};
use super::session::{Decision, Leg, Session, Side};
use super::settings::ServicePorts;
use super::verdict::{Direction, Verdict};

const TCP_SYN: u16 = 0x02;
const TCP_RST: u16 = 0x04;
const TCP_ACK: u16 = 0x10;
const TCP_SYN_ACK: u16 = TCP_SYN | TCP_ACK;

fn is_syn_ack(leg: Leg) -> bool {
    leg.flags
        .is_some_and(|flags| flags & TCP_SYN_ACK == TCP_SYN_ACK)
}

fn sent_syn_only(leg: Leg) -> bool {
    leg.flags
        .is_some_and(|flags| flags & TCP_SYN != 0 && flags & TCP_ACK == 0)
}

fn is_reset_only(leg: Leg) -> bool {
    leg.flags
        .is_some_and(|flags| flags & TCP_RST != 0 && flags & TCP_SYN_ACK != TCP_SYN_ACK)
}

/// What the rules need to know about the interface a session is on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context<'a> {
    pub(crate) local: &'a LocalAddresses,
    pub(crate) intermediate: bool,
    pub(crate) service_ports: &'a ServicePorts,
}

/// The verdict rules (DESIGN.md, "Verdicts").
pub(crate) fn judge(session: &Session, context: Context<'_>) -> Decision {
    let initiator = initiator(session, context.service_ports);
    let responder = initiator.other();
    let (request, reply) = (session.leg(initiator), session.leg(responder));
    let enters = |side: Side| enters(session, side, initiator, context.local);
    let rejected = |side: Side| {
        if enters(side) {
            Verdict::RejectedInbound
        } else {
            Verdict::RejectedOutbound
        }
    };
    let verdict = match (request.action, reply.action) {
        (Some(Action::Accept), Some(Action::Accept)) => {
            if is_reset_only(reply) {
                Verdict::Refused
            } else {
                Verdict::Accepted
            }
        }
        (Some(Action::Accept), Some(Action::Reject)) => rejected(responder),
        (Some(Action::Reject), _) => rejected(initiator),
        (None, Some(Action::Reject)) => rejected(responder),
        (Some(Action::Accept), None) if !context.intermediate => Verdict::Unanswered,
        (None, Some(Action::Accept)) if !context.intermediate => Verdict::Accepted,
        _ => return Decision::NoVerdict,
    };
    let direction = if enters(initiator) {
        Direction::Ingress
    } else {
        Direction::Egress
    };
    Decision::Verdict {
        verdict,
        direction,
        initiator,
    }
}

/// The side that started the session; the first rule that decides wins
/// (DESIGN.md, "The initiator").
pub(crate) fn initiator(session: &Session, service_ports: &ServicePorts) -> Side {
    let (low, high) = (session.leg(Side::Low), session.leg(Side::High));
    // Rule 1: only one direction seen.
    match (low.seen(), high.seen()) {
        (true, false) => {
            return if is_syn_ack(low) {
                Side::High
            } else {
                Side::Low
            };
        }
        (false, true) => {
            return if is_syn_ack(high) {
                Side::Low
            } else {
                Side::High
            };
        }
        _ => {}
    }
    // Rule 2: a rejected request gets no reply.
    if low.action != high.action {
        return if low.action == Some(Action::Accept) {
            Side::Low
        } else {
            Side::High
        };
    }
    // Rule 3: SYN without ACK.
    match (sent_syn_only(low), sent_syn_only(high)) {
        (true, false) => return Side::Low,
        (false, true) => return Side::High,
        _ => {}
    }
    // Rule 4: service ports, then the higher (ephemeral) port.
    let key = session.key();
    let (low_port, high_port) = (key.low.1, key.high.1);
    let low_serves = service_ports.contains(low_port);
    let high_serves = service_ports.contains(high_port);
    if low_serves != high_serves {
        // The side sending from the service port is the responder.
        return if low_serves { Side::High } else { Side::Low };
    }
    if low_port != high_port {
        return if low_port > high_port {
            Side::Low
        } else {
            Side::High
        };
    }
    // Rule 5: the earlier record, then the order of arrival.
    let (low_start, high_start) = (
        low.start.unwrap_or(u64::MAX),
        high.start.unwrap_or(u64::MAX),
    );
    if low_start != high_start {
        return if low_start < high_start {
            Side::Low
        } else {
            Side::High
        };
    }
    session.first_to_arrive()
}

/// Whether the records of `side` enter the interface.
fn enters(session: &Session, side: Side, initiator: Side, local: &LocalAddresses) -> bool {
    if let Some(direction) = session.leg(side).flow_direction {
        return direction == FlowDirection::Ingress;
    }
    if let Some(direction) = session.leg(side.other()).flow_direction {
        return direction == FlowDirection::Egress;
    }
    let key = session.key();
    let (source, destination) = (key.source(side).0, key.destination(side).0);
    match (local.is_local(destination), local.is_local(source)) {
        (Some(true), _) => true,
        (_, Some(true)) => false,
        // Local address unknown: the request's destination is taken as local.
        _ => side == initiator,
    }
}

#[cfg(test)]
mod tests;
