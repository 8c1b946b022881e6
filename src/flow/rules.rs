//! DESIGN.md's rules as pure functions of one session: who started it,
//! which way its records cross the interface, and its verdict.

use super::address::LocalAddresses;
use super::record::{Action, FlowDirection};
use super::session::{Decision, Leg, Session, SessionKey, Side};
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

/// What the verdict rules say before anyone asks which way the records
/// cross the interface: the outcome, with the side whose record decides
/// when it is a rejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Accepted,
    Refused,
    Unanswered,
    /// Rejected: inbound or outbound as this side's records cross.
    Rejected(Side),
}

/// The verdict rules (DESIGN.md, "Verdicts"). When the session's records
/// do not tell which way they cross and the interface's local address is
/// not known yet, the decision waits for it
/// ([`Decision::AwaitingAddress`]); see [`settle`] and [`settle_by_fallback`].
/// `key` is the session's (the table keeps some of its addresses).
pub(crate) fn judge(session: &Session, key: &SessionKey, context: Context<'_>) -> Decision {
    let initiator = initiator(session, context.service_ports);
    let responder = initiator.other();
    let (request, reply) = (session.leg(initiator), session.leg(responder));
    let outcome = match (request.action, reply.action) {
        (Some(Action::Accept), Some(Action::Accept)) => {
            if is_reset_only(reply) {
                Outcome::Refused
            } else {
                Outcome::Accepted
            }
        }
        (Some(Action::Accept), Some(Action::Reject)) => Outcome::Rejected(responder),
        (Some(Action::Reject), _) => Outcome::Rejected(initiator),
        (None, Some(Action::Reject)) => Outcome::Rejected(responder),
        (Some(Action::Accept), None) if !context.intermediate => Outcome::Unanswered,
        (None, Some(Action::Accept)) if !context.intermediate => Outcome::Accepted,
        _ => return Decision::NoVerdict,
    };
    settle(session, key, outcome, initiator, context.local)
        .unwrap_or(Decision::AwaitingAddress { outcome, initiator })
}

/// The verdict and direction of a decided session, once its records or the
/// interface's local address tell which way they cross; `None` until then.
pub(crate) fn settle(
    session: &Session,
    key: &SessionKey,
    outcome: Outcome,
    initiator: Side,
    local: &LocalAddresses,
) -> Option<Decision> {
    resolve(outcome, initiator, |side| enters(session, key, side, local))
}

/// The same, with DESIGN's fallback where nothing tells: the request's
/// destination is local (the initiator's records enter).
pub(crate) fn settle_by_fallback(
    session: &Session,
    key: &SessionKey,
    outcome: Outcome,
    initiator: Side,
    local: &LocalAddresses,
) -> Decision {
    let enters = |side: Side| enters(session, key, side, local).unwrap_or(side == initiator);
    resolve(outcome, initiator, |side| Some(enters(side)))
        .expect("the fallback always tells which way records cross")
}

fn resolve(
    outcome: Outcome,
    initiator: Side,
    enters: impl Fn(Side) -> Option<bool>,
) -> Option<Decision> {
    let verdict = match outcome {
        Outcome::Accepted => Verdict::Accepted,
        Outcome::Refused => Verdict::Refused,
        Outcome::Unanswered => Verdict::Unanswered,
        Outcome::Rejected(side) if enters(side)? => Verdict::RejectedInbound,
        Outcome::Rejected(_) => Verdict::RejectedOutbound,
    };
    let direction = if enters(initiator)? {
        Direction::Ingress
    } else {
        Direction::Egress
    };
    Some(Decision::Verdict {
        verdict,
        direction,
        initiator,
    })
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
    let (low_port, high_port) = session.ports();
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

/// Whether the records of `side` enter the interface; `None` when neither
/// their flow direction nor the interface's local address tells.
fn enters(session: &Session, key: &SessionKey, side: Side, local: &LocalAddresses) -> Option<bool> {
    if let Some(direction) = session.leg(side).flow_direction {
        return Some(direction == FlowDirection::Ingress);
    }
    if let Some(direction) = session.leg(side.other()).flow_direction {
        return Some(direction == FlowDirection::Egress);
    }
    let (source, destination) = (key.source(side).0, key.destination(side).0);
    match (local.is_local(destination), local.is_local(source)) {
        (Some(true), _) => Some(true),
        (_, Some(true)) => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
