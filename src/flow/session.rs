//! One session: the records of its two sides, what they add up to, and the
//! decision once it is made.

use super::address::{Addr, to_ip};
use super::record::{Action, FlowDirection, Record};
use super::verdict::{Direction, Endpoint, SessionReport, Verdict};

/// The two directions of a session, named by the endpoint that sends them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Side {
    /// Records from the lower endpoint to the higher.
    Low,
    /// Records from the higher endpoint to the lower.
    High,
}

impl Side {
    pub(crate) fn other(self) -> Side {
        match self {
            Side::Low => Side::High,
            Side::High => Side::Low,
        }
    }

    fn index(self) -> usize {
        match self {
            Side::Low => 0,
            Side::High => 1,
        }
    }
}

/// Interface, protocol and the unordered pair of endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct SessionKey {
    pub(crate) interface: u32,
    pub(crate) protocol: u8,
    pub(crate) low: (Addr, u16),
    pub(crate) high: (Addr, u16),
}

impl SessionKey {
    /// The key of a record from `source` to `destination`, and the side it is on.
    pub(crate) fn of(
        interface: u32,
        protocol: u8,
        source: (Addr, u16),
        destination: (Addr, u16),
    ) -> (SessionKey, Side) {
        let (low, high, side) = if source <= destination {
            (source, destination, Side::Low)
        } else {
            (destination, source, Side::High)
        };
        let key = SessionKey {
            interface,
            protocol,
            low,
            high,
        };
        (key, side)
    }

    /// The endpoint that sends the records of `side`.
    pub(crate) fn source(&self, side: Side) -> (Addr, u16) {
        match side {
            Side::Low => self.low,
            Side::High => self.high,
        }
    }

    /// The endpoint that receives the records of `side`.
    pub(crate) fn destination(&self, side: Side) -> (Addr, u16) {
        self.source(side.other())
    }
}

/// The records of one direction of a session.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Leg {
    /// The action of the first record; `None` while this direction is unseen.
    pub(crate) action: Option<Action>,
    /// The TCP flags of every record, OR-ed; `None` when no record had any.
    pub(crate) flags: Option<u16>,
    pub(crate) start: Option<u64>,
    /// Order of arrival of the first record, across all sessions.
    pub(crate) arrival: u64,
    pub(crate) flow_direction: Option<FlowDirection>,
}

impl Leg {
    pub(crate) fn seen(&self) -> bool {
        self.action.is_some()
    }
}

/// What the rules decided about a session.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Decision {
    /// A lone accepted record on an intermediate interface: its other half
    /// may have left by another interface, so nothing can be said.
    NoVerdict,
    Verdict {
        verdict: Verdict,
        direction: Direction,
        initiator: Side,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) key: SessionKey,
    /// Tells a deadline for this slot from one left by an earlier session.
    pub(crate) generation: u32,
    legs: [Leg; 2],
    /// Event time of the first and the latest record.
    pub(crate) first_time: Option<u64>,
    pub(crate) last_time: Option<u64>,
    pub(crate) start: Option<u64>,
    pub(crate) end: Option<u64>,
    pub(crate) packets: u64,
    pub(crate) bytes: u64,
    pub(crate) decision: Option<Decision>,
    /// Whether a deadline is in its interface's heap.
    pub(crate) scheduled: bool,
}

impl Session {
    pub(crate) fn new(key: SessionKey, generation: u32) -> Session {
        Session {
            key,
            generation,
            legs: [Leg::default(); 2],
            first_time: None,
            last_time: None,
            start: None,
            end: None,
            packets: 0,
            bytes: 0,
            decision: None,
            scheduled: false,
        }
    }

    pub(crate) fn leg(&self, side: Side) -> &Leg {
        &self.legs[side.index()]
    }

    pub(crate) fn set_leg(&mut self, side: Side, leg: Leg) {
        self.legs[side.index()] = leg;
    }

    pub(crate) fn both_seen(&self) -> bool {
        self.legs.iter().all(Leg::seen)
    }

    /// Adds one record of `side`, with its event time and order of arrival;
    /// returns the packets and bytes it brought.
    pub(crate) fn absorb(
        &mut self,
        side: Side,
        action: Action,
        record: &Record<'_>,
        time: Option<u64>,
        arrival: u64,
    ) -> (u64, u64) {
        let leg = &mut self.legs[side.index()];
        if !leg.seen() {
            *leg = Leg {
                action: Some(action),
                flags: None,
                start: record.start,
                arrival,
                flow_direction: record.flow_direction,
            };
        }
        if let Some(flags) = record.tcp_flags {
            leg.flags = Some(leg.flags.unwrap_or(0) | flags);
        }
        let (packets, bytes) = (record.packets.unwrap_or(0), record.bytes.unwrap_or(0));
        self.packets = self.packets.saturating_add(packets);
        self.bytes = self.bytes.saturating_add(bytes);
        self.start = min_option(self.start, record.start);
        self.end = self.end.max(record.end);
        self.first_time = self.first_time.or(time);
        self.last_time = self.last_time.max(time);
        (packets, bytes)
    }

    /// The session as observers see it; `None` until it has a verdict.
    pub(crate) fn report<'a>(&self, interface_id: &'a str) -> Option<SessionReport<'a>> {
        let Some(Decision::Verdict {
            verdict,
            direction,
            initiator,
        }) = self.decision
        else {
            return None;
        };
        let endpoint = |(addr, port): (Addr, u16)| Endpoint {
            addr: to_ip(addr),
            port,
        };
        Some(SessionReport {
            interface_id,
            protocol: self.key.protocol,
            initiator: endpoint(self.key.source(initiator)),
            responder: endpoint(self.key.destination(initiator)),
            direction,
            verdict,
            packets: self.packets,
            bytes: self.bytes,
            start: self.start,
            end: self.end,
        })
    }
}

fn min_option(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
