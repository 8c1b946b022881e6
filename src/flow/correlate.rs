//! Correlation: pairs each request with its reply and decides a verdict.
//!
//! Pure and synchronous. Time is event time, passed in with each record; the
//! exporter also passes the wall clock (less the delivery delay) through
//! [`Correlator::advance_to`] so a silent interface still gets its pending
//! sessions decided. The rules are those of DESIGN.md ("Core rules").
//!
//! Each interface has a watermark (the largest event time seen on it) and a
//! min-heap of deadlines, so deciding and expiring sessions costs a heap pop
//! per session rather than a scan of every open session.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv6Addr};

use rustc_hash::FxHashMap;
use slab::Slab;

use super::record::{Action, FlowDirection, LogStatus, Record};
use super::verdict::{Direction, Endpoint, SessionReport, Verdict};

const TCP_SYN: u16 = 0x02;
const TCP_RST: u16 = 0x04;
const TCP_ACK: u16 = 0x10;
const TCP_SYN_ACK: u16 = TCP_SYN | TCP_ACK;

/// Correlation settings, in seconds of event time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// How long a lone record waits for its other direction.
    pub reply_grace: u64,
    /// A session whose last record ended this long before the watermark is closed.
    pub session_idle_timeout: u64,
    /// Ports that identify the responder, besides every port below 1024.
    pub service_ports: Vec<u16>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            reply_grace: 120,
            session_idle_timeout: 600,
            service_ports: vec![22, 80, 443, 3389, 5432],
        }
    }
}

/// What configuration knows about an interface that its records may not tell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceFacts {
    pub addresses: Vec<IpAddr>,
    pub intermediate: bool,
}

/// Receives what correlation decides.
pub trait SessionObserver {
    /// A session got its verdict (once per session).
    fn decided(&mut self, session: &SessionReport<'_>);
    /// Traffic of a decided session: all of it at decision, then each later record.
    fn traffic(
        &mut self,
        interface_id: &str,
        verdict: Verdict,
        direction: Direction,
        packets: u64,
        bytes: u64,
    );
    /// A decided session was closed (idle, or end of input) with its final totals.
    fn closed(&mut self, session: &SessionReport<'_>);
}

/// Membership of ports in the "service port" set, in constant time.
#[derive(Debug, Clone)]
pub struct ServicePorts {
    bits: Vec<u64>,
}

impl ServicePorts {
    pub fn new(configured: &[u16]) -> ServicePorts {
        let mut bits = vec![0u64; 1024];
        for port in (0..1024u16).chain(configured.iter().copied()) {
            bits[usize::from(port) / 64] |= 1 << (port % 64);
        }
        ServicePorts { bits }
    }

    pub fn contains(&self, port: u16) -> bool {
        self.bits[usize::from(port) / 64] & (1 << (port % 64)) != 0
    }
}

/// Addresses are kept as 128-bit numbers (IPv4 mapped into IPv6): cheap to hash.
type Addr = u128;

fn to_addr(ip: IpAddr) -> Addr {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn to_ip(addr: Addr) -> IpAddr {
    Ipv6Addr::from(addr).to_canonical()
}

fn family(addr: Addr) -> usize {
    usize::from(addr >> 32 != 0xffff)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct SessionKey {
    interface: u32,
    protocol: u8,
    /// The lower endpoint; records from `low` to `high` are side 0.
    low: (Addr, u16),
    high: (Addr, u16),
}

/// The records of one direction of a session.
#[derive(Debug, Clone, Copy, Default)]
struct Side {
    /// The action of the first record; `None` while this direction is unseen.
    action: Option<Action>,
    flags: u16,
    has_flags: bool,
    start: Option<u64>,
    arrival: u64,
    flow_direction: Option<FlowDirection>,
}

impl Side {
    fn seen(&self) -> bool {
        self.action.is_some()
    }

    fn is_syn_ack(&self) -> bool {
        self.has_flags && self.flags & TCP_SYN_ACK == TCP_SYN_ACK
    }

    fn sent_syn_only(&self) -> bool {
        self.has_flags && self.flags & TCP_SYN != 0 && self.flags & TCP_ACK == 0
    }

    fn is_reset_only(&self) -> bool {
        self.has_flags && self.flags & TCP_RST != 0 && self.flags & TCP_SYN_ACK != TCP_SYN_ACK
    }
}

#[derive(Debug, Clone, Copy)]
enum Decision {
    /// A lone accepted record on an intermediate interface: its other half
    /// may have left by another interface, so nothing can be said.
    NoVerdict,
    Verdict {
        verdict: Verdict,
        direction: Direction,
        initiator_side: usize,
    },
}

#[derive(Debug, Clone)]
struct Session {
    key: SessionKey,
    generation: u32,
    sides: [Side; 2],
    first_time: Option<u64>,
    last_time: Option<u64>,
    start: Option<u64>,
    end: Option<u64>,
    packets: u64,
    bytes: u64,
    decision: Option<Decision>,
    scheduled: bool,
}

/// The local address of an interface as learned from its records: the one
/// address (per family) that is on one side of every record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum LearnedAddress {
    #[default]
    Unknown,
    /// An interface that so far talked to one peer: either could be local.
    EitherOf(Addr, Addr),
    Local(Addr),
    /// No single address is on every record (several local addresses).
    None,
}

impl LearnedAddress {
    fn observe(&mut self, a: Addr, b: Addr) {
        let on_record = |x: Addr| x == a || x == b;
        *self = match *self {
            LearnedAddress::Unknown if a == b => LearnedAddress::Local(a),
            LearnedAddress::Unknown => LearnedAddress::EitherOf(a, b),
            LearnedAddress::EitherOf(x, y) => match (on_record(x), on_record(y)) {
                (true, true) => LearnedAddress::EitherOf(x, y),
                (true, false) => LearnedAddress::Local(x),
                (false, true) => LearnedAddress::Local(y),
                (false, false) => LearnedAddress::None,
            },
            LearnedAddress::Local(x) if on_record(x) => LearnedAddress::Local(x),
            LearnedAddress::Local(_) | LearnedAddress::None => LearnedAddress::None,
        };
    }
}

#[derive(Debug)]
struct Interface {
    id: Box<str>,
    watermark: Option<u64>,
    configured: Vec<Addr>,
    learned: [LearnedAddress; 2],
    intermediate: bool,
    /// (watermark at which something is due, session slot, generation).
    deadlines: BinaryHeap<Reverse<(u64, u32, u32)>>,
    pending: usize,
    open: usize,
}

impl Interface {
    /// Whether `addr` is the interface's own, when that can be told.
    fn is_local(&self, addr: Addr) -> Option<bool> {
        let family = family(addr);
        let mut configured = self
            .configured
            .iter()
            .filter(|a| self::family(**a) == family)
            .peekable();
        if configured.peek().is_some() {
            return Some(configured.any(|a| *a == addr));
        }
        match self.learned[family] {
            LearnedAddress::Local(local) => Some(local == addr),
            _ => None,
        }
    }
}

/// Counts of sessions held, for one interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterfaceLoad<'a> {
    pub interface_id: &'a str,
    /// Waiting for their other direction or for the reply grace.
    pub pending: usize,
    /// Held in memory: pending or decided and not yet idle.
    pub open: usize,
}

/// Sessions of every interface, and the rules that decide them.
pub struct Correlator {
    settings: Settings,
    service_ports: ServicePorts,
    facts: HashMap<String, InterfaceFacts>,
    interfaces: Vec<Interface>,
    interface_index: FxHashMap<Box<str>, u32>,
    last_interface: usize,
    sessions: Slab<Session>,
    session_index: HashMap<SessionKey, usize, foldhash::fast::FixedState>,
    arrivals: u64,
    generations: u32,
}

impl Correlator {
    pub fn new(settings: Settings, facts: HashMap<String, InterfaceFacts>) -> Correlator {
        Correlator {
            service_ports: ServicePorts::new(&settings.service_ports),
            settings,
            facts,
            interfaces: Vec::new(),
            interface_index: FxHashMap::default(),
            last_interface: 0,
            sessions: Slab::new(),
            session_index: HashMap::default(),
            arrivals: 0,
            generations: 0,
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn service_ports(&self) -> &ServicePorts {
        &self.service_ports
    }

    /// Sessions held per interface.
    pub fn load(&self) -> impl Iterator<Item = InterfaceLoad<'_>> {
        self.interfaces.iter().map(|interface| InterfaceLoad {
            interface_id: &interface.id,
            pending: interface.pending,
            open: interface.open,
        })
    }

    /// Takes one well-formed record. `time` is its event time.
    pub fn push(
        &mut self,
        record: &Record<'_>,
        time: Option<u64>,
        observer: &mut impl SessionObserver,
    ) {
        let interface = self.interface(record.interface_id);
        if record.marks_intermediate() {
            self.interfaces[interface].intermediate = true;
        }
        if let Some(time) = time {
            self.advance_interface(interface, time, observer);
        }
        let (Some(action), LogStatus::Ok, Some(src), Some(dst)) = (
            record.action,
            record.log_status,
            record.srcaddr,
            record.dstaddr,
        ) else {
            return;
        };
        let (src, dst) = (to_addr(src), to_addr(dst));
        if family(src) == family(dst) {
            self.interfaces[interface].learned[family(src)].observe(src, dst);
        }
        let source = (src, record.srcport.unwrap_or(0));
        let destination = (dst, record.dstport.unwrap_or(0));
        let (low, high, side) = if source <= destination {
            (source, destination, 0)
        } else {
            (destination, source, 1)
        };
        let key = SessionKey {
            interface: interface as u32,
            protocol: record.protocol.unwrap_or(0),
            low,
            high,
        };
        let slot = match self.session_index.get(&key) {
            Some(&slot) => slot,
            None => self.open_session(key),
        };
        self.arrivals += 1;
        let arrival = self.arrivals;
        let session = &mut self.sessions[slot];
        let this_side = &mut session.sides[side];
        if this_side.action.is_none() {
            *this_side = Side {
                action: Some(action),
                flags: 0,
                has_flags: false,
                start: record.start,
                arrival,
                flow_direction: record.flow_direction,
            };
        }
        if let Some(flags) = record.tcp_flags {
            this_side.flags |= flags;
            this_side.has_flags = true;
        }
        let (packets, bytes) = (record.packets.unwrap_or(0), record.bytes.unwrap_or(0));
        session.packets += packets;
        session.bytes += bytes;
        session.start = min_option(session.start, record.start);
        session.end = session.end.max(record.end);
        session.first_time = session.first_time.or(time);
        session.last_time = session.last_time.max(time);
        if !session.scheduled
            && let Some(first) = session.first_time
        {
            session.scheduled = true;
            let generation = session.generation;
            self.interfaces[interface].deadlines.push(Reverse((
                first.saturating_add(self.settings.reply_grace),
                slot as u32,
                generation,
            )));
        }
        match session.decision {
            Some(Decision::Verdict {
                verdict, direction, ..
            }) => {
                observer.traffic(record.interface_id, verdict, direction, packets, bytes);
            }
            Some(Decision::NoVerdict) => {}
            None if session.sides[0].seen() && session.sides[1].seen() => {
                self.decide(slot, observer);
            }
            None => {}
        }
    }

    /// Moves every interface's watermark to at least `time` and decides or
    /// closes what is due: the exporter's wall clock, less delivery delay.
    pub fn advance_to(&mut self, time: u64, observer: &mut impl SessionObserver) {
        for interface in 0..self.interfaces.len() {
            self.advance_interface(interface, time, observer);
        }
    }

    /// End of input: decides every pending session and closes them all.
    pub fn finish(&mut self, observer: &mut impl SessionObserver) {
        let slots: Vec<usize> = self.sessions.iter().map(|(slot, _)| slot).collect();
        for slot in slots {
            if self.sessions[slot].decision.is_none() {
                self.decide(slot, observer);
            }
            self.close(slot, observer);
        }
        for interface in &mut self.interfaces {
            interface.deadlines.clear();
        }
    }

    fn interface(&mut self, id: &str) -> usize {
        // Records of one interface come in runs (one log stream, one file).
        if let Some(last) = self.interfaces.get(self.last_interface)
            && *last.id == *id
        {
            return self.last_interface;
        }
        if let Some(&index) = self.interface_index.get(id) {
            self.last_interface = index as usize;
            return index as usize;
        }
        let facts = self.facts.get(id).cloned().unwrap_or_default();
        let index = self.interfaces.len();
        self.interfaces.push(Interface {
            id: id.into(),
            watermark: None,
            configured: facts.addresses.iter().copied().map(to_addr).collect(),
            learned: Default::default(),
            intermediate: facts.intermediate,
            deadlines: BinaryHeap::new(),
            pending: 0,
            open: 0,
        });
        self.interface_index.insert(id.into(), index as u32);
        self.last_interface = index;
        index
    }

    fn open_session(&mut self, key: SessionKey) -> usize {
        self.generations = self.generations.wrapping_add(1);
        let slot = self.sessions.insert(Session {
            key,
            generation: self.generations,
            sides: [Side::default(); 2],
            first_time: None,
            last_time: None,
            start: None,
            end: None,
            packets: 0,
            bytes: 0,
            decision: None,
            scheduled: false,
        });
        self.session_index.insert(key, slot);
        let interface = &mut self.interfaces[key.interface as usize];
        interface.pending += 1;
        interface.open += 1;
        slot
    }

    fn advance_interface(
        &mut self,
        interface: usize,
        time: u64,
        observer: &mut impl SessionObserver,
    ) {
        let state = &mut self.interfaces[interface];
        if state.watermark.is_some_and(|watermark| watermark >= time) {
            return;
        }
        state.watermark = Some(time);
        let grace = self.settings.reply_grace;
        let idle = self.settings.session_idle_timeout;
        while let Some(&Reverse((due, slot, generation))) =
            self.interfaces[interface].deadlines.peek()
        {
            if due > time {
                break;
            }
            self.interfaces[interface].deadlines.pop();
            let slot = slot as usize;
            let Some(session) = self.sessions.get(slot) else {
                continue;
            };
            if session.generation != generation {
                continue;
            }
            let first = session.first_time.unwrap_or(0);
            let last = session.last_time.unwrap_or(0);
            if session.decision.is_none() && time >= first.saturating_add(grace) {
                self.decide(slot, observer);
            }
            let next_due = if self.sessions[slot].decision.is_none() {
                first.saturating_add(grace)
            } else if time > last.saturating_add(idle) {
                self.close(slot, observer);
                continue;
            } else {
                last.saturating_add(idle).saturating_add(1)
            };
            self.interfaces[interface]
                .deadlines
                .push(Reverse((next_due, slot as u32, generation)));
        }
    }

    fn decide(&mut self, slot: usize, observer: &mut impl SessionObserver) {
        let session = &self.sessions[slot];
        let interface = &self.interfaces[session.key.interface as usize];
        let decision = self.judge(interface, session);
        let interface = &mut self.interfaces[session.key.interface as usize];
        interface.pending -= 1;
        let session = &mut self.sessions[slot];
        session.decision = Some(decision);
        if let Decision::Verdict {
            verdict, direction, ..
        } = decision
        {
            let report = report(interface, session);
            observer.decided(&report);
            observer.traffic(
                report.interface_id,
                verdict,
                direction,
                session.packets,
                session.bytes,
            );
        }
    }

    fn close(&mut self, slot: usize, observer: &mut impl SessionObserver) {
        let session = self.sessions.remove(slot);
        self.session_index.remove(&session.key);
        let interface = &mut self.interfaces[session.key.interface as usize];
        interface.open -= 1;
        if let Some(Decision::Verdict { .. }) = session.decision {
            observer.closed(&report(interface, &session));
        }
    }

    /// The verdict rules (DESIGN.md, "Verdicts").
    fn judge(&self, interface: &Interface, session: &Session) -> Decision {
        let initiator = self.initiator_side(session);
        let responder = 1 - initiator;
        let (request, reply) = (&session.sides[initiator], &session.sides[responder]);
        let enters = |side: usize| self.enters(interface, session, side, initiator);
        let rejected = |side: usize| {
            if enters(side) {
                Verdict::RejectedInbound
            } else {
                Verdict::RejectedOutbound
            }
        };
        let verdict = match (request.action, reply.action) {
            (Some(Action::Accept), Some(Action::Accept)) => {
                if reply.is_reset_only() {
                    Verdict::Refused
                } else {
                    Verdict::Accepted
                }
            }
            (Some(Action::Accept), Some(Action::Reject)) => rejected(responder),
            (Some(Action::Reject), _) => rejected(initiator),
            (None, Some(Action::Reject)) => rejected(responder),
            (Some(Action::Accept), None) if !interface.intermediate => Verdict::Unanswered,
            (None, Some(Action::Accept)) if !interface.intermediate => Verdict::Accepted,
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
            initiator_side: initiator,
        }
    }

    /// The side (0: low→high, 1: high→low) that started the session; the
    /// first rule that decides wins (DESIGN.md, "The initiator").
    fn initiator_side(&self, session: &Session) -> usize {
        let [a, b] = &session.sides;
        match (a.seen(), b.seen()) {
            (true, false) => return if a.is_syn_ack() { 1 } else { 0 },
            (false, true) => return if b.is_syn_ack() { 0 } else { 1 },
            _ => {}
        }
        if a.action != b.action {
            return if a.action == Some(Action::Accept) {
                0
            } else {
                1
            };
        }
        match (a.sent_syn_only(), b.sent_syn_only()) {
            (true, false) => return 0,
            (false, true) => return 1,
            _ => {}
        }
        let (low_port, high_port) = (session.key.low.1, session.key.high.1);
        let low_serves = self.service_ports.contains(low_port);
        let high_serves = self.service_ports.contains(high_port);
        if low_serves != high_serves {
            // The side sending from the service port is the responder.
            return if low_serves { 1 } else { 0 };
        }
        if low_port != high_port {
            return if low_port > high_port { 0 } else { 1 };
        }
        let earlier_a =
            (a.start.unwrap_or(u64::MAX), a.arrival) <= (b.start.unwrap_or(u64::MAX), b.arrival);
        if earlier_a { 0 } else { 1 }
    }

    /// Whether the records of `side` enter the interface.
    fn enters(
        &self,
        interface: &Interface,
        session: &Session,
        side: usize,
        initiator: usize,
    ) -> bool {
        if let Some(direction) = session.sides[side].flow_direction {
            return direction == FlowDirection::Ingress;
        }
        if let Some(direction) = session.sides[1 - side].flow_direction {
            return direction == FlowDirection::Egress;
        }
        let (source, destination) = if side == 0 {
            (session.key.low.0, session.key.high.0)
        } else {
            (session.key.high.0, session.key.low.0)
        };
        match (interface.is_local(destination), interface.is_local(source)) {
            (Some(true), _) => true,
            (_, Some(true)) => false,
            // Local address unknown: the request's destination is taken as local.
            _ => side == initiator,
        }
    }
}

fn min_option(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn report<'a>(interface: &'a Interface, session: &Session) -> SessionReport<'a> {
    let Some(Decision::Verdict {
        verdict,
        direction,
        initiator_side,
    }) = session.decision
    else {
        unreachable!("only sessions with a verdict are reported");
    };
    let endpoint = |(addr, port): (Addr, u16)| Endpoint {
        addr: to_ip(addr),
        port,
    };
    let (initiator, responder) = if initiator_side == 0 {
        (endpoint(session.key.low), endpoint(session.key.high))
    } else {
        (endpoint(session.key.high), endpoint(session.key.low))
    };
    SessionReport {
        interface_id: &interface.id,
        protocol: session.key.protocol,
        initiator,
        responder,
        direction,
        verdict,
        packets: session.packets,
        bytes: session.bytes,
        start: session.start,
        end: session.end,
    }
}
