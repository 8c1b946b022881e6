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

/// Two 1-minute capture intervals: a reply sits in its request's capture
/// window or the next.
pub const DEFAULT_REPLY_GRACE_SECONDS: u64 = 120;
pub const DEFAULT_SESSION_IDLE_TIMEOUT_SECONDS: u64 = 600;
/// SSH, HTTP, HTTPS, RDP, PostgreSQL; every port below 1024 counts too.
pub const DEFAULT_SERVICE_PORTS: [u16; 5] = [22, 80, 443, 3389, 5432];

impl Default for Settings {
    fn default() -> Self {
        Settings {
            reply_grace: DEFAULT_REPLY_GRACE_SECONDS,
            session_idle_timeout: DEFAULT_SESSION_IDLE_TIMEOUT_SECONDS,
            service_ports: DEFAULT_SERVICE_PORTS.to_vec(),
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

    /// The `port` label of a responder port: the port when it is a service
    /// port, else `other` (ephemeral ports are unbounded).
    pub fn label(&self, port: u16) -> String {
        if self.contains(port) {
            port.to_string()
        } else {
            "other".to_string()
        }
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
        let (Some(action), LogStatus::Ok, Some(src), Some(dst)) = (
            record.action,
            record.log_status,
            record.srcaddr,
            record.dstaddr,
        ) else {
            if let Some(time) = time {
                self.advance_interface(interface, time, observer);
            }
            return;
        };
        let (src, dst) = (to_addr(src), to_addr(dst));
        // This record is one of the interface's records when what its time
        // makes due is decided: learn the local address from it first.
        if family(src) == family(dst) {
            self.interfaces[interface].learned[family(src)].observe(src, dst);
        }
        if let Some(time) = time {
            self.advance_interface(interface, time, observer);
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
        session.packets = session.packets.saturating_add(packets);
        session.bytes = session.bytes.saturating_add(bytes);
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

#[cfg(test)]
mod tests {
    //! One test per rule of DESIGN.md ("Core rules"), each built from a few
    //! hand-written records so the rule under test is the only one that
    //! can decide.

    use super::*;
    use crate::flow::format::LogFormat;
    use crate::flow::record::RecordParser;

    /// Every column the rules read; `-` where a test does not need one.
    const FORMAT: &str = "interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status tcp-flags flow-direction instance-id pkt-srcaddr";

    const SYN: u16 = 0x02;
    const FIN: u16 = 0x01;
    const RST: u16 = 0x04;
    const ACK: u16 = 0x10;
    const SYN_ACK: u16 = SYN | ACK;

    /// A decided or closed session, owned.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Seen {
        interface: String,
        verdict: Verdict,
        direction: Direction,
        initiator: String,
        responder: String,
        packets: u64,
        bytes: u64,
    }

    impl Seen {
        fn of(report: &SessionReport<'_>) -> Seen {
            Seen {
                interface: report.interface_id.to_string(),
                verdict: report.verdict,
                direction: report.direction,
                initiator: report.initiator.to_string(),
                responder: report.responder.to_string(),
                packets: report.packets,
                bytes: report.bytes,
            }
        }
    }

    /// Records every callback.
    #[derive(Debug, Default)]
    struct Recorder {
        decided: Vec<Seen>,
        closed: Vec<Seen>,
        traffic: Vec<(String, Verdict, Direction, u64, u64)>,
    }

    impl SessionObserver for Recorder {
        fn decided(&mut self, session: &SessionReport<'_>) {
            self.decided.push(Seen::of(session));
        }

        fn traffic(
            &mut self,
            interface_id: &str,
            verdict: Verdict,
            direction: Direction,
            packets: u64,
            bytes: u64,
        ) {
            self.traffic
                .push((interface_id.to_string(), verdict, direction, packets, bytes));
        }

        fn closed(&mut self, session: &SessionReport<'_>) {
            self.closed.push(Seen::of(session));
        }
    }

    impl Recorder {
        fn verdicts(&self) -> Vec<(Verdict, Direction)> {
            self.decided
                .iter()
                .map(|seen| (seen.verdict, seen.direction))
                .collect()
        }

        fn only(&self) -> &Seen {
            assert_eq!(self.decided.len(), 1, "decided: {:#?}", self.decided);
            &self.decided[0]
        }
    }

    /// One record, written as a line of [`FORMAT`].
    #[derive(Debug, Clone)]
    struct Rec {
        interface: &'static str,
        src: &'static str,
        dst: &'static str,
        protocol: u8,
        packets: u64,
        bytes: u64,
        start: u64,
        end: u64,
        action: &'static str,
        flags: Option<u16>,
        flow_direction: Option<&'static str>,
        instance: &'static str,
        pkt_src: Option<&'static str>,
    }

    /// `src` and `dst` are `addr:port` (`[v6]:port` for IPv6).
    fn rec(src: &'static str, dst: &'static str, action: &'static str) -> Rec {
        Rec {
            interface: "eni-a",
            src,
            dst,
            protocol: 6,
            packets: 1,
            bytes: 100,
            start: 1000,
            end: 1050,
            action,
            flags: None,
            flow_direction: None,
            instance: "i-0123456789abcdef0",
            pkt_src: None,
        }
    }

    impl Rec {
        fn on(mut self, interface: &'static str) -> Rec {
            self.interface = interface;
            self
        }
        fn at(mut self, start: u64, end: u64) -> Rec {
            self.start = start;
            self.end = end;
            self
        }
        fn flags(mut self, flags: u16) -> Rec {
            self.flags = Some(flags);
            self
        }
        fn dir(mut self, direction: &'static str) -> Rec {
            self.flow_direction = Some(direction);
            self
        }
        fn instance(mut self, instance: &'static str) -> Rec {
            self.instance = instance;
            self
        }
        fn pkt_src(mut self, addr: &'static str) -> Rec {
            self.pkt_src = Some(addr);
            self
        }
        fn traffic(mut self, packets: u64, bytes: u64) -> Rec {
            self.packets = packets;
            self.bytes = bytes;
            self
        }
        fn protocol(mut self, protocol: u8) -> Rec {
            self.protocol = protocol;
            self
        }

        fn line(&self) -> String {
            let split = |endpoint: &str| {
                let (addr, port) = endpoint.rsplit_once(':').expect("addr:port");
                (
                    addr.trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_string(),
                    port.to_string(),
                )
            };
            let (src, srcport) = split(self.src);
            let (dst, dstport) = split(self.dst);
            let dash = |value: Option<String>| value.unwrap_or_else(|| "-".to_string());
            format!(
                "{} {src} {dst} {srcport} {dstport} {} {} {} {} {} {} OK {} {} {} {}",
                self.interface,
                self.protocol,
                self.packets,
                self.bytes,
                self.start,
                self.end,
                self.action,
                dash(self.flags.map(|flags| flags.to_string())),
                dash(self.flow_direction.map(str::to_string)),
                self.instance,
                dash(self.pkt_src.map(str::to_string)),
            )
        }
    }

    /// A correlator with its parser, and everything it reported.
    struct Harness {
        parser: RecordParser,
        correlator: Correlator,
        seen: Recorder,
    }

    impl Harness {
        fn new() -> Harness {
            Harness::with(Settings::default(), HashMap::new())
        }

        fn with(settings: Settings, facts: HashMap<String, InterfaceFacts>) -> Harness {
            Harness {
                parser: RecordParser::new(LogFormat::parse(FORMAT).unwrap()),
                correlator: Correlator::new(settings, facts),
                seen: Recorder::default(),
            }
        }

        fn with_facts(interface: &str, facts: InterfaceFacts) -> Harness {
            Harness::with(
                Settings::default(),
                HashMap::from([(interface.to_string(), facts)]),
            )
        }

        fn push(&mut self, record: Rec) -> &mut Harness {
            let line = record.line();
            self.push_line(&line)
        }

        fn push_line(&mut self, line: &str) -> &mut Harness {
            let record = self
                .parser
                .parse(line)
                .unwrap_or_else(|reason| panic!("{line}: {reason:?}"));
            let time = record.time();
            self.correlator.push(&record, time, &mut self.seen);
            self
        }

        fn advance_to(&mut self, time: u64) -> &mut Harness {
            self.correlator.advance_to(time, &mut self.seen);
            self
        }

        fn finish(&mut self) -> &Recorder {
            self.correlator.finish(&mut self.seen);
            &self.seen
        }

        /// (pending, open) of one interface.
        fn load(&self, interface: &str) -> (usize, usize) {
            self.correlator
                .load()
                .find(|load| load.interface_id == interface)
                .map(|load| (load.pending, load.open))
                .unwrap_or_else(|| panic!("no interface {interface}"))
        }
    }

    fn facts(addresses: &[&str], intermediate: bool) -> InterfaceFacts {
        InterfaceFacts {
            addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
            intermediate,
        }
    }

    fn status_line(interface: &str, start: u64, end: u64, status: &str) -> String {
        format!("{interface} - - - - - - - {start} {end} - {status} - - - -")
    }

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
            ..Settings::default()
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
        let mut correlator = Correlator::new(Settings::default(), HashMap::new());
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
        assert!(h.correlator.sessions.is_empty());
        assert!(h.correlator.session_index.is_empty());
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

    #[test]
    fn service_ports_include_everything_below_1024_and_the_configured() {
        let ports = ServicePorts::new(&[5432, 65535]);
        assert!(ports.contains(0));
        assert!(ports.contains(1023));
        assert!(!ports.contains(1024));
        assert!(ports.contains(5432));
        assert!(ports.contains(65535));
        assert!(!ports.contains(65534));
    }
}
