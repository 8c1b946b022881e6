//! One session: the records of its two sides, what they add up to, and the
//! decision once it is made.

use std::hash::{Hash, Hasher};

use super::address::{Addr, to_ip};
use super::record::{Action, FlowDirection, Record};
use super::rules::Outcome;
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionKey {
    pub(crate) interface: u32,
    pub(crate) protocol: u8,
    pub(crate) low: (Addr, u16),
    pub(crate) high: (Addr, u16),
}

/// The table hashes a key for every record: two words when both
/// addresses are IPv4 (as nearly all are), instead of six fields one by
/// one. The fields are packed without loss, and which of the two shapes a
/// key has is in its first word, so keys that differ always feed the hasher
/// differently: collisions are left to the hasher's random seed
/// (`table.rs`), never made by the packing.
impl Hash for SessionKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let (interface, protocol) = (u128::from(self.interface), u128::from(self.protocol));
        let ports = u128::from(self.low.1) << 16 | u128::from(self.high.1);
        let first = interface << 40 | protocol << 32 | ports;
        match (ipv4(self.low.0), ipv4(self.high.0)) {
            (Some(low), Some(high)) => {
                state.write_u128(first);
                state.write_u64(u64::from(low) << 32 | u64::from(high));
            }
            _ => {
                state.write_u128(first | 1 << 72);
                state.write_u128(self.low.0);
                state.write_u128(self.high.0);
            }
        }
    }
}

impl SessionKey {
    /// When both addresses are IPv4 (as nearly all are): the key in three
    /// words, packed without loss (interface and protocol, both ports, both
    /// addresses), for the table's hasher.
    pub(crate) fn ipv4_words(&self) -> Option<[u64; 3]> {
        let (low, high) = (ipv4(self.low.0)?, ipv4(self.high.0)?);
        Some([
            u64::from(self.interface) | u64::from(self.protocol) << 32,
            u64::from(self.low.1) << 16 | u64::from(self.high.1),
            u64::from(low) << 32 | u64::from(high),
        ])
    }

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

/// The records of one direction of a session, as the rules read them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Leg {
    /// The action of the first record; `None` while this direction is unseen.
    pub(crate) action: Option<Action>,
    /// The TCP flags of every record, OR-ed; `None` when no record had any.
    pub(crate) flags: Option<u16>,
    pub(crate) start: Option<u64>,
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
    /// Decided, but which way its records cross the interface waits for
    /// the interface's local address (issue 9: direction never guessed
    /// when it can wait).
    AwaitingAddress { outcome: Outcome, initiator: Side },
    Verdict {
        verdict: Verdict,
        direction: Direction,
        initiator: Side,
    },
}

/// One open session, packed: 80 bytes, no heap allocation (issue 12).
/// Times are Unix seconds in 32 bits ([`super::plausible`] turns away any
/// later than 2106), [`NO_TIME`] for "none"; a leg's action, flow direction
/// and whether it had flags share one byte. Its two addresses are in it when
/// both are IPv4; otherwise (`WIDE`) the table keeps them
/// ([`super::table::Sessions`]) and `low_addr` says where.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) packets: u64,
    pub(crate) bytes: u64,
    low_addr: u32,
    high_addr: u32,
    first_time: u32,
    last_time: u32,
    start: u32,
    end: u32,
    leg_start: [u32; 2],
    /// Tells a deadline for this slot from one left by an earlier session;
    /// 0 for a vacant slot.
    pub(crate) generation: u32,
    /// Neighbours in the table's order of eviction (pending sessions in
    /// order of opening, decided ones in order of decision); for a vacant
    /// slot, `next` is the next vacant one.
    pub(crate) prev: u32,
    pub(crate) next: u32,
    interface: u32,
    low_port: u16,
    high_port: u16,
    leg_flags: [u16; 2],
    protocol: u8,
    leg_bits: [u8; 2],
    bits: u8,
    pub(crate) decision: Option<Decision>,
}

/// No neighbour.
pub(crate) const NONE: u32 = u32::MAX;
/// No time.
const NO_TIME: u32 = u32::MAX;

fn time(raw: u32) -> Option<u64> {
    (raw != NO_TIME).then_some(u64::from(raw))
}

fn raw(time: Option<u64>) -> u32 {
    match time {
        // A real time this large cannot pass the time check.
        Some(time) => u32::try_from(time).unwrap_or(NO_TIME).min(NO_TIME - 1),
        None => NO_TIME,
    }
}

const ACTION_MASK: u8 = 0b0011;
const ACCEPT: u8 = 1;
const REJECT: u8 = 2;
const DIRECTION_MASK: u8 = 0b1100;
const INGRESS: u8 = 0b0100;
const EGRESS: u8 = 0b1000;
const HAS_FLAGS: u8 = 0b1_0000;

const SCHEDULED: u8 = 1;
const HIGH_ARRIVED_FIRST: u8 = 2;
const DIRECTION_BY_FALLBACK: u8 = 4;
/// The addresses are not both IPv4: the table keeps them.
const WIDE: u8 = 8;

/// IPv4 addresses are mapped into IPv6: `::ffff:a.b.c.d`.
const IPV4_MAPPED: Addr = 0xffff << 32;

fn ipv4(addr: Addr) -> Option<u32> {
    (addr >> 32 == IPV4_MAPPED >> 32).then_some(addr as u32)
}

impl Session {
    /// A session of `key` with nothing in it yet. One that is not IPv4 on
    /// both ends gets its addresses from the table that takes it in.
    pub(crate) fn new(key: &SessionKey, generation: u32) -> Session {
        let (low_addr, high_addr, bits) = match (ipv4(key.low.0), ipv4(key.high.0)) {
            (Some(low), Some(high)) => (low, high, 0),
            _ => (NONE, NONE, WIDE),
        };
        Session {
            packets: 0,
            bytes: 0,
            low_addr,
            high_addr,
            first_time: NO_TIME,
            last_time: NO_TIME,
            start: NO_TIME,
            end: NO_TIME,
            leg_start: [NO_TIME; 2],
            generation,
            prev: NONE,
            next: NONE,
            interface: key.interface,
            low_port: key.low.1,
            high_port: key.high.1,
            leg_flags: [0; 2],
            protocol: key.protocol,
            leg_bits: [0; 2],
            bits,
            decision: None,
        }
    }

    /// Its key; `wide` is the table's addresses of sessions not IPv4 on
    /// both ends.
    pub(crate) fn key_with(&self, wide: &[(Addr, Addr)]) -> SessionKey {
        let (low, high) = match self.wide_entry() {
            Some(entry) => wide[entry as usize],
            None => (
                IPV4_MAPPED | Addr::from(self.low_addr),
                IPV4_MAPPED | Addr::from(self.high_addr),
            ),
        };
        SessionKey {
            interface: self.interface,
            protocol: self.protocol,
            low: (low, self.low_port),
            high: (high, self.high_port),
        }
    }

    /// Whether the table keeps its addresses.
    pub(crate) fn is_wide(&self) -> bool {
        self.bits & WIDE != 0
    }

    /// Where in the table its addresses are, when it keeps them.
    pub(crate) fn wide_entry(&self) -> Option<u32> {
        self.is_wide().then_some(self.low_addr)
    }

    pub(crate) fn set_wide_entry(&mut self, entry: u32) {
        debug_assert!(self.is_wide());
        self.low_addr = entry;
    }

    /// The ports of the lower and the higher endpoint.
    pub(crate) fn ports(&self) -> (u16, u16) {
        (self.low_port, self.high_port)
    }

    pub(crate) fn interface(&self) -> u32 {
        self.interface
    }

    pub(crate) fn set_interface(&mut self, interface: u32) {
        self.interface = interface;
    }

    pub(crate) fn leg(&self, side: Side) -> Leg {
        let bits = self.leg_bits[side.index()];
        Leg {
            action: match bits & ACTION_MASK {
                ACCEPT => Some(Action::Accept),
                REJECT => Some(Action::Reject),
                _ => None,
            },
            flags: (bits & HAS_FLAGS != 0).then_some(self.leg_flags[side.index()]),
            start: time(self.leg_start[side.index()]),
            flow_direction: match bits & DIRECTION_MASK {
                INGRESS => Some(FlowDirection::Ingress),
                EGRESS => Some(FlowDirection::Egress),
                _ => None,
            },
        }
    }

    pub(crate) fn set_leg(&mut self, side: Side, leg: Leg) {
        let action = match leg.action {
            Some(Action::Accept) => ACCEPT,
            Some(Action::Reject) => REJECT,
            None => 0,
        };
        let direction = match leg.flow_direction {
            Some(FlowDirection::Ingress) => INGRESS,
            Some(FlowDirection::Egress) => EGRESS,
            None => 0,
        };
        let has_flags = if leg.flags.is_some() { HAS_FLAGS } else { 0 };
        self.leg_bits[side.index()] = action | direction | has_flags;
        self.leg_flags[side.index()] = leg.flags.unwrap_or(0);
        self.leg_start[side.index()] = raw(leg.start);
    }

    pub(crate) fn both_seen(&self) -> bool {
        self.leg_bits.iter().all(|bits| bits & ACTION_MASK != 0)
    }

    /// The side whose first record arrived first (rule 5's tie-break).
    pub(crate) fn first_to_arrive(&self) -> Side {
        if self.bits & HIGH_ARRIVED_FIRST != 0 {
            Side::High
        } else {
            Side::Low
        }
    }

    pub(crate) fn set_first_to_arrive(&mut self, side: Side) {
        self.set_bit(HIGH_ARRIVED_FIRST, side == Side::High);
    }

    /// Whether a deadline is in its interface's heap.
    pub(crate) fn scheduled(&self) -> bool {
        self.bits & SCHEDULED != 0
    }

    pub(crate) fn set_scheduled(&mut self, scheduled: bool) {
        self.set_bit(SCHEDULED, scheduled);
    }

    /// Whether DESIGN's fallback, not the records or the local address,
    /// told which way the session's records cross.
    pub(crate) fn direction_by_fallback(&self) -> bool {
        self.bits & DIRECTION_BY_FALLBACK != 0
    }

    pub(crate) fn set_direction_by_fallback(&mut self, by_fallback: bool) {
        self.set_bit(DIRECTION_BY_FALLBACK, by_fallback);
    }

    fn set_bit(&mut self, bit: u8, on: bool) {
        if on {
            self.bits |= bit;
        } else {
            self.bits &= !bit;
        }
    }

    /// Event time of the first and the latest record.
    pub(crate) fn first_time(&self) -> Option<u64> {
        time(self.first_time)
    }

    pub(crate) fn last_time(&self) -> Option<u64> {
        time(self.last_time)
    }

    /// The earliest start and latest end of its records.
    pub(crate) fn span(&self) -> (Option<u64>, Option<u64>) {
        (time(self.start), time(self.end))
    }

    /// As a checkpoint gives them: first and last event time, start, end.
    pub(crate) fn set_times(
        &mut self,
        first: Option<u64>,
        last: Option<u64>,
        start: Option<u64>,
        end: Option<u64>,
    ) {
        self.first_time = raw(first);
        self.last_time = raw(last);
        self.start = raw(start);
        self.end = raw(end);
    }

    /// Adds one record of `side`, with its event time; returns the packets
    /// and bytes it brought.
    pub(crate) fn absorb(
        &mut self,
        side: Side,
        action: Action,
        record: &Record<'_>,
        time: Option<u64>,
    ) -> (u64, u64) {
        let mut leg = self.leg(side);
        if !leg.seen() {
            if !self.leg(side.other()).seen() {
                self.set_first_to_arrive(side);
            }
            leg = Leg {
                action: Some(action),
                flags: None,
                start: record.start,
                flow_direction: record.flow_direction,
            };
        }
        if let Some(flags) = record.tcp_flags {
            leg.flags = Some(leg.flags.unwrap_or(0) | flags);
        }
        self.set_leg(side, leg);
        let (packets, bytes) = (record.packets.unwrap_or(0), record.bytes.unwrap_or(0));
        self.packets = self.packets.saturating_add(packets);
        self.bytes = self.bytes.saturating_add(bytes);
        let (start, end) = self.span();
        self.start = raw(min_option(start, record.start));
        self.end = raw(end.max(record.end));
        self.first_time = raw(self.first_time().or(time));
        self.last_time = raw(self.last_time().max(time));
        (packets, bytes)
    }

    /// The session as observers see it; `None` until it has a verdict.
    pub(crate) fn report<'a>(
        &self,
        key: &SessionKey,
        interface_id: &'a str,
    ) -> Option<SessionReport<'a>> {
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
        let (start, end) = self.span();
        Some(SessionReport {
            interface_id,
            protocol: self.protocol,
            initiator: endpoint(key.source(initiator)),
            responder: endpoint(key.destination(initiator)),
            direction,
            verdict,
            packets: self.packets,
            bytes: self.bytes,
            start,
            end,
            direction_by_fallback: self.direction_by_fallback(),
        })
    }
}

fn min_option(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::address::to_addr;

    #[test]
    fn a_session_is_80_bytes() {
        assert_eq!(std::mem::size_of::<Session>(), 80);
    }

    fn key(low: Addr, high: Addr) -> SessionKey {
        SessionKey {
            interface: 7,
            protocol: 6,
            low: (low, 22),
            high: (high, 40000),
        }
    }

    #[test]
    fn ipv4_addresses_are_kept_in_the_session() {
        let v4 = |ip: &str| to_addr(ip.parse().unwrap());
        let key = key(v4("10.0.0.10"), v4("198.51.100.7"));
        let session = Session::new(&key, 1);
        assert!(!session.is_wide());
        assert_eq!(session.key_with(&[]), key);
    }

    #[test]
    fn other_addresses_are_kept_by_the_table() {
        let ip = |ip: &str| to_addr(ip.parse().unwrap());
        for key in [
            key(ip("2001:db8::1"), ip("2001:db8::2")),
            // Mixed families: not both IPv4.
            key(ip("10.0.0.10"), ip("2001:db8::2")),
        ] {
            let mut session = Session::new(&key, 1);
            assert!(session.is_wide());
            session.set_wide_entry(1);
            let wide = [(0, 0), (key.low.0, key.high.0)];
            assert_eq!(session.key_with(&wide), key);
        }
    }

    #[test]
    fn times_up_to_the_plausible_bound_are_kept_exactly() {
        let last = super::super::plausible::MAX_PLAUSIBLE_TIME - 1;
        for t in [0, 1_700_000_000, last] {
            assert_eq!(time(raw(Some(t))), Some(t));
        }
        assert_eq!(time(raw(None)), None);
        // Past it (never from a record), clamped, never "none".
        assert_eq!(time(raw(Some(u64::MAX))), Some(last));
    }
}
