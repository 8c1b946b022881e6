//! The correlator to and from its checkpoint (see `flow/checkpoint.rs`).

use rustc_hash::FxHashMap;
use serde::ser::{SerializeSeq, SerializeStruct};
use serde::{Serialize, Serializer};

use super::{Advance, Correlator, Interface, Order, Waiting};
use crate::flow::address::{LearnedAddress, to_addr, to_ip};
use crate::flow::checkpoint::{
    AwaitingCheckpoint, CorrelatorCheckpoint, DecisionCheckpoint, InterfaceCheckpoint, Learned,
    LegCheckpoint, RestoreError, SessionCheckpoint, Word,
};
use crate::flow::record::{Action, FlowDirection};
use crate::flow::rules::Outcome;
use crate::flow::session::{Decision, Leg, NONE, Session, SessionKey, Side};
use crate::flow::verdict::{Direction, Verdict};

impl Correlator {
    /// The open sessions, watermarks and learned addresses, as data.
    pub fn checkpoint(&self) -> CorrelatorCheckpoint {
        let view = self.checkpoint_view();
        CorrelatorCheckpoint {
            arrivals: self.arrivals,
            generations: self.generations,
            sessions: view.slots.iter().map(|&slot| view.session(slot)).collect(),
            interfaces: view.interfaces,
            parked: view.parked,
            advancing: self.advancing.map(|advance| advance.time),
        }
    }

    /// The same, serialized as a [`CorrelatorCheckpoint`] from the live
    /// table one session at a time: writing a flood's checkpoint costs a few
    /// bytes a session in memory (its slot and deadline), not a copy of
    /// every session.
    pub fn checkpoint_view(&self) -> CorrelatorCheckpointView<'_> {
        // Each scheduled session has exactly one deadline of its generation.
        let mut due = vec![None; self.sessions.capacity()];
        for interface in &self.interfaces {
            for (time, generation, slot) in interface.deadlines.iter() {
                if self
                    .sessions
                    .get(slot as usize)
                    .is_some_and(|session| session.generation == generation)
                {
                    due[slot as usize] = Some(time);
                }
            }
        }
        // Sessions waiting for an address: when they were decided.
        let mut since = FxHashMap::default();
        let mut parked = Vec::with_capacity(self.parked);
        for interface in &self.interfaces {
            for entry in &interface.waiting {
                match entry {
                    Waiting::Open { slot, .. } => {
                        since.insert(*slot, entry.since());
                    }
                    Waiting::Parked { session, since } => {
                        let (session, key) = &**session;
                        parked.push(session_checkpoint(session, key, None, Some(*since)));
                    }
                }
            }
        }
        // Pending in order of opening, then decided in order of decision:
        // restored in this order, the table evicts as this one would.
        let mut slots = Vec::with_capacity(self.sessions.len());
        for order in [self.pending_order, self.decided_order] {
            let mut slot = order.head;
            while slot != NONE {
                slots.push(slot);
                slot = self.sessions[slot as usize].next;
            }
        }
        CorrelatorCheckpointView {
            correlator: self,
            interfaces: self.interfaces.iter().map(interface_checkpoint).collect(),
            slots,
            due,
            since,
            parked,
        }
    }

    /// Replaces every session and interface with the checkpoint's. The
    /// configuration (settings, interface facts) stays this correlator's.
    pub fn restore(&mut self, checkpoint: CorrelatorCheckpoint) -> Result<(), RestoreError> {
        let count = checkpoint.interfaces.len();
        let mut sessions = Vec::with_capacity(checkpoint.sessions.len());
        for (index, saved) in checkpoint.sessions.into_iter().enumerate() {
            if saved.interface >= count {
                return Err(RestoreError::Interface {
                    session: index,
                    interface: saved.interface,
                    count,
                });
            }
            sessions.push(restore_session(saved).ok_or(RestoreError::Word(index))?);
        }
        let mut parked = Vec::with_capacity(checkpoint.parked.len());
        for (index, saved) in checkpoint.parked.into_iter().enumerate() {
            let index = sessions.len() + index;
            if saved.interface >= count {
                return Err(RestoreError::Interface {
                    session: index,
                    interface: saved.interface,
                    count,
                });
            }
            parked.push(restore_session(saved).ok_or(RestoreError::Word(index))?);
        }
        self.interfaces.clear();
        self.interface_index.clear();
        self.sessions.clear();
        self.pending_order = Order::EMPTY;
        self.decided_order = Order::EMPTY;
        self.idle_interfaces.clear();
        self.last_interface = 0;
        self.parked = 0;
        self.facts_changed.clear();
        // From the first interface: those done before the checkpoint have
        // nothing due left at their watermark.
        self.advancing = checkpoint
            .advancing
            .map(|time| Advance { time, interface: 0 });
        self.arrivals = checkpoint.arrivals;
        self.generations = checkpoint.generations;
        let mut indices = Vec::with_capacity(count);
        for saved in checkpoint.interfaces {
            let index = self.interface(&saved.id);
            indices.push(index as u32);
            let interface = &mut self.interfaces[index];
            interface.watermark = saved.watermark;
            interface.intermediate |= saved.intermediate;
            interface
                .local
                .set_learned(saved.learned.map(restore_learned));
        }
        for (mut session, mut key, due, since) in sessions {
            key.interface = indices[key.interface as usize];
            session.set_interface(key.interface);
            // The same generations: equal deadlines fall due in the same order.
            let generation = session.generation;
            session.set_scheduled(due.is_some());
            let decided = session.decision.is_some();
            let slot = self.sessions.insert(&key, session);
            let order = if decided {
                &mut self.decided_order
            } else {
                &mut self.pending_order
            };
            order.push_back(&mut self.sessions, slot as u32);
            let interface = &mut self.interfaces[key.interface as usize];
            interface.open += 1;
            if !decided {
                interface.pending += 1;
            }
            if let Some(due) = due {
                interface.deadlines.push(due, generation, slot as u32);
            }
            if let Some(since) = since {
                interface.waiting.push_back(Waiting::Open {
                    slot: slot as u32,
                    generation,
                    since,
                });
            }
        }
        for (mut session, mut key, _, since) in parked {
            let interface = indices[key.interface as usize];
            key.interface = interface;
            session.set_interface(interface);
            self.interfaces[interface as usize]
                .waiting
                .push_back(Waiting::Parked {
                    session: Box::new((session, key)),
                    since: since.flatten(),
                });
            self.parked += 1;
        }
        for interface in &mut self.interfaces {
            interface
                .waiting
                .make_contiguous()
                .sort_by_key(|entry| entry.since().unwrap_or(u64::MAX));
        }
        Ok(())
    }
}

/// A [`CorrelatorCheckpoint`] borrowed from the live correlator
/// ([`Correlator::checkpoint_view`]); serializes as one.
pub struct CorrelatorCheckpointView<'a> {
    correlator: &'a Correlator,
    interfaces: Vec<InterfaceCheckpoint>,
    /// The open sessions' slots, in checkpoint order.
    slots: Vec<u32>,
    /// By slot: when the session is due.
    due: Vec<Option<u64>>,
    /// By slot, for sessions waiting for an address: since when.
    since: FxHashMap<u32, Option<u64>>,
    parked: Vec<SessionCheckpoint>,
}

impl CorrelatorCheckpointView<'_> {
    fn session(&self, slot: u32) -> SessionCheckpoint {
        let sessions = &self.correlator.sessions;
        let index = slot as usize;
        session_checkpoint(
            &sessions[index],
            &sessions.key(index),
            self.due[index],
            self.since.get(&slot).copied(),
        )
    }
}

/// Field by field as [`CorrelatorCheckpoint`] derives it.
impl Serialize for CorrelatorCheckpointView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Sessions<'v, 'a>(&'v CorrelatorCheckpointView<'a>);
        impl Serialize for Sessions<'_, '_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut seq = serializer.serialize_seq(Some(self.0.slots.len()))?;
                for &slot in &self.0.slots {
                    seq.serialize_element(&self.0.session(slot))?;
                }
                seq.end()
            }
        }
        let mut out = serializer.serialize_struct("CorrelatorCheckpoint", 6)?;
        out.serialize_field("arrivals", &self.correlator.arrivals)?;
        out.serialize_field("generations", &self.correlator.generations)?;
        out.serialize_field("interfaces", &self.interfaces)?;
        out.serialize_field("sessions", &Sessions(self))?;
        if self.parked.is_empty() {
            out.skip_field("parked")?;
        } else {
            out.serialize_field("parked", &self.parked)?;
        }
        match self.correlator.advancing {
            Some(advance) => out.serialize_field("advancing", &advance.time)?,
            None => out.skip_field("advancing")?,
        }
        out.end()
    }
}

fn interface_checkpoint(interface: &Interface) -> InterfaceCheckpoint {
    InterfaceCheckpoint {
        id: interface.id.to_string(),
        watermark: interface.watermark,
        intermediate: interface.intermediate,
        learned: interface.local.learned().map(learned_checkpoint),
    }
}

fn learned_checkpoint(learned: LearnedAddress) -> Learned {
    match learned {
        LearnedAddress::Unknown => Learned::Unknown,
        LearnedAddress::EitherOf(a, b) => Learned::EitherOf(to_ip(a), to_ip(b)),
        LearnedAddress::Local(a) => Learned::Local(to_ip(a)),
        LearnedAddress::None => Learned::None,
    }
}

fn restore_learned(learned: Learned) -> LearnedAddress {
    match learned {
        Learned::Unknown => LearnedAddress::Unknown,
        Learned::EitherOf(a, b) => LearnedAddress::EitherOf(to_addr(a), to_addr(b)),
        Learned::Local(a) => LearnedAddress::Local(to_addr(a)),
        Learned::None => LearnedAddress::None,
    }
}

/// `since`: for a session waiting for its interface's address, when it
/// started waiting (`Some(None)`: before the clock first moved).
fn session_checkpoint(
    session: &Session,
    key: &SessionKey,
    due: Option<u64>,
    since: Option<Option<u64>>,
) -> SessionCheckpoint {
    let endpoint = |(addr, port): (u128, u16)| (to_ip(addr), port);
    let (start, end) = session.span();
    // The order in which the two legs first arrived: 1, 2; 0 unseen.
    let rank = |side: Side| match (session.leg(side).seen(), session.first_to_arrive() == side) {
        (false, _) => 0,
        (true, true) => 1,
        (true, false) => 2,
    };
    SessionCheckpoint {
        interface: key.interface as usize,
        protocol: key.protocol,
        low: endpoint(key.low),
        high: endpoint(key.high),
        low_leg: leg_checkpoint(session.leg(Side::Low), rank(Side::Low)),
        high_leg: leg_checkpoint(session.leg(Side::High), rank(Side::High)),
        first_time: session.first_time(),
        last_time: session.last_time(),
        start,
        end,
        packets: session.packets,
        bytes: session.bytes,
        decision: session
            .decision
            .map(|decision| decision_checkpoint(decision, since.flatten())),
        due,
        generation: session.generation,
    }
}

/// The session, its key, when it is due, and since when it waits for an
/// address.
#[allow(clippy::type_complexity)]
fn restore_session(
    saved: SessionCheckpoint,
) -> Option<(Session, SessionKey, Option<u64>, Option<Option<u64>>)> {
    let endpoint = |(addr, port): (std::net::IpAddr, u16)| (to_addr(addr), port);
    let key = SessionKey {
        interface: u32::try_from(saved.interface).ok()?,
        protocol: saved.protocol,
        low: endpoint(saved.low),
        high: endpoint(saved.high),
    };
    let mut session = Session::new(&key, saved.generation.max(1));
    session.set_leg(Side::Low, restore_leg(saved.low_leg)?);
    session.set_leg(Side::High, restore_leg(saved.high_leg)?);
    session.set_times(saved.first_time, saved.last_time, saved.start, saved.end);
    let (low, high) = (saved.low_leg.arrival, saved.high_leg.arrival);
    if high != 0 && (low == 0 || high < low) {
        session.set_first_to_arrive(Side::High);
    }
    session.packets = saved.packets;
    session.bytes = saved.bytes;
    session.decision = match saved.decision {
        Some(decision) => Some(restore_decision(decision)?),
        None => None,
    };
    let since = saved
        .decision
        .and_then(|decision| decision.awaiting_address)
        .map(|awaiting| awaiting.since);
    Some((session, key, saved.due, since))
}

fn leg_checkpoint(leg: Leg, arrival: u64) -> LegCheckpoint {
    LegCheckpoint {
        action: leg.action.map(|action| match action {
            Action::Accept => Word::Accept,
            Action::Reject => Word::Reject,
        }),
        flags: leg.flags,
        start: leg.start,
        arrival,
        flow_direction: leg.flow_direction.map(|direction| match direction {
            FlowDirection::Ingress => Word::Ingress,
            FlowDirection::Egress => Word::Egress,
        }),
    }
}

fn restore_leg(saved: LegCheckpoint) -> Option<Leg> {
    let action = match saved.action {
        None => None,
        Some(Word::Accept) => Some(Action::Accept),
        Some(Word::Reject) => Some(Action::Reject),
        Some(_) => return None,
    };
    let flow_direction = match saved.flow_direction {
        None => None,
        Some(Word::Ingress) => Some(FlowDirection::Ingress),
        Some(Word::Egress) => Some(FlowDirection::Egress),
        Some(_) => return None,
    };
    Some(Leg {
        action,
        flags: saved.flags,
        start: saved.start,
        flow_direction,
    })
}

fn side_word(side: Side) -> Word {
    match side {
        Side::Low => Word::Low,
        Side::High => Word::High,
    }
}

fn word_side(word: Word) -> Option<Side> {
    match word {
        Word::Low => Some(Side::Low),
        Word::High => Some(Side::High),
        _ => None,
    }
}

fn decision_checkpoint(decision: Decision, since: Option<u64>) -> DecisionCheckpoint {
    match decision {
        Decision::NoVerdict => DecisionCheckpoint {
            verdict: None,
            direction: None,
            initiator: None,
            awaiting_address: None,
        },
        Decision::AwaitingAddress { outcome, initiator } => DecisionCheckpoint {
            verdict: None,
            direction: None,
            initiator: Some(side_word(initiator)),
            awaiting_address: Some(AwaitingCheckpoint {
                outcome: match outcome {
                    Outcome::Accepted => Word::Accepted,
                    Outcome::Refused => Word::Refused,
                    Outcome::Unanswered => Word::Unanswered,
                    Outcome::Rejected(_) => Word::Reject,
                },
                rejected: match outcome {
                    Outcome::Rejected(side) => Some(side_word(side)),
                    _ => None,
                },
                since,
            }),
        },
        Decision::Verdict {
            verdict,
            direction,
            initiator,
        } => DecisionCheckpoint {
            verdict: Some(match verdict {
                Verdict::Accepted => Word::Accepted,
                Verdict::RejectedInbound => Word::RejectedInbound,
                Verdict::RejectedOutbound => Word::RejectedOutbound,
                Verdict::Unanswered => Word::Unanswered,
                Verdict::Refused => Word::Refused,
            }),
            direction: Some(match direction {
                Direction::Ingress => Word::Ingress,
                Direction::Egress => Word::Egress,
            }),
            initiator: Some(side_word(initiator)),
            awaiting_address: None,
        },
    }
}

fn restore_decision(saved: DecisionCheckpoint) -> Option<Decision> {
    if let Some(awaiting) = saved.awaiting_address {
        let outcome = match (awaiting.outcome, awaiting.rejected) {
            (Word::Accepted, None) => Outcome::Accepted,
            (Word::Refused, None) => Outcome::Refused,
            (Word::Unanswered, None) => Outcome::Unanswered,
            (Word::Reject, Some(side)) => Outcome::Rejected(word_side(side)?),
            _ => return None,
        };
        return Some(Decision::AwaitingAddress {
            outcome,
            initiator: word_side(saved.initiator?)?,
        });
    }
    let (Some(verdict), Some(direction), Some(initiator)) =
        (saved.verdict, saved.direction, saved.initiator)
    else {
        return (saved.verdict.is_none() && saved.direction.is_none() && saved.initiator.is_none())
            .then_some(Decision::NoVerdict);
    };
    Some(Decision::Verdict {
        verdict: match verdict {
            Word::Accepted => Verdict::Accepted,
            Word::RejectedInbound => Verdict::RejectedInbound,
            Word::RejectedOutbound => Verdict::RejectedOutbound,
            Word::Unanswered => Verdict::Unanswered,
            Word::Refused => Verdict::Refused,
            _ => return None,
        },
        direction: match direction {
            Word::Ingress => Direction::Ingress,
            Word::Egress => Direction::Egress,
            _ => return None,
        },
        initiator: word_side(initiator)?,
    })
}
