//! Correlation: when each open session is decided, closed or evicted.
//!
//! Pure and synchronous. Time is event time, passed in with each record; the
//! exporter also passes the wall clock (less the delivery delay) through
//! [`Correlator::advance_to`] so a silent interface still gets its pending
//! sessions decided. One session lives in [`super::session`]; the rules
//! that decide it in [`super::rules`]; the table that holds the sessions,
//! their orders of eviction and each interface's deadlines in
//! [`super::table`].
//!
//! Each interface has a watermark (the largest event time seen on it) and a
//! min-heap of deadlines, so deciding and expiring sessions costs a heap pop
//! per session rather than a scan of every open session.

use std::collections::{HashMap, VecDeque};

use rustc_hash::FxHashMap;

use super::address::{LocalAddresses, family, to_addr};
use super::record::{LogStatus, Record};
use super::rules::{self, Context};
use super::session::{Decision, NONE, Session, SessionKey};
use super::table::{Deadlines, Order, Sessions};
use super::verdict::{Direction, SessionReport, Verdict};

mod checkpoint;

pub use super::settings::{
    DEFAULT_ADDRESS_WAIT_SECONDS, DEFAULT_MAX_AWAITING_ADDRESS, DEFAULT_MAX_OPEN_SESSIONS,
    DEFAULT_REPLY_GRACE_SECONDS, DEFAULT_SERVICE_PORTS, DEFAULT_SESSION_IDLE_TIMEOUT_SECONDS,
    InterfaceFacts, ServicePorts, Settings,
};
pub use checkpoint::CorrelatorCheckpointView;

/// Interfaces with no open session kept at most (their watermark and
/// learned address, ~200 bytes each); past it the longest idle is forgotten.
/// Interfaces with open sessions are bounded by `max_open_sessions`.
pub const MAX_IDLE_INTERFACES: usize = 65_536;

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
    /// Whether [`SessionObserver::closed`] does anything: when it does not
    /// (`analyze` without `--details`), closing a session skips building
    /// its report, one of the costs paid for every session.
    fn wants_closed(&self) -> bool {
        true
    }
    /// A pending session was decided early to keep within `max_open_sessions`
    /// (whether or not it got a verdict yet).
    fn evicted(&mut self, interface_id: &str);
}

/// A decided session waiting for its interface's local address, in order
/// of decision.
#[derive(Debug)]
enum Waiting {
    /// Still in the table: later records join it.
    Open {
        slot: u32,
        generation: u32,
        since: Option<u64>,
    },
    /// Closed (idle or evicted) while waiting: kept aside until reported,
    /// with its key (the table no longer holds it).
    Parked {
        session: Box<(Session, SessionKey)>,
        since: Option<u64>,
    },
}

impl Waiting {
    /// The wall clock when the session was decided; `None` when the
    /// correlator was not told it yet.
    fn since(&self) -> Option<u64> {
        match self {
            Waiting::Open { since, .. } | Waiting::Parked { since, .. } => *since,
        }
    }
}

#[derive(Debug)]
struct Interface {
    id: Box<str>,
    watermark: Option<u64>,
    local: LocalAddresses,
    intermediate: bool,
    deadlines: Deadlines,
    pending: usize,
    open: usize,
    waiting: VecDeque<Waiting>,
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
    sessions: Sessions,
    /// Pending sessions in order of opening: the oldest is evicted first.
    pending_order: Order,
    /// Decided sessions in order of decision: dropped before any pending one.
    decided_order: Order,
    /// Interfaces whose last session closed, oldest first (may hold
    /// interfaces busy again since: checked when taken).
    idle_interfaces: VecDeque<u32>,
    arrivals: u64,
    generations: u32,
    /// Sessions in [`Waiting::Parked`], over all interfaces.
    parked: usize,
    /// Interfaces whose facts changed while sessions waited for an address.
    facts_changed: Vec<u32>,
    /// The exporter's wall clock, Unix seconds: `address_wait` runs on it
    /// (not on event time, which trails it by the delivery delay).
    clock: Option<u64>,
    /// A wall-clock advance under way ([`Correlator::start_advance`]).
    advancing: Option<Advance>,
}

/// How far a wall-clock advance has come: every interface before
/// `interface` is done.
#[derive(Debug, Clone, Copy)]
struct Advance {
    time: u64,
    interface: usize,
}

impl Correlator {
    pub fn new(settings: Settings, facts: HashMap<String, InterfaceFacts>) -> Correlator {
        Correlator {
            service_ports: ServicePorts::new(&settings.service_ports),
            facts,
            interfaces: Vec::new(),
            interface_index: FxHashMap::default(),
            last_interface: 0,
            sessions: Sessions::with_bound(settings.max_open_sessions),
            pending_order: Order::EMPTY,
            decided_order: Order::EMPTY,
            idle_interfaces: VecDeque::new(),
            arrivals: 0,
            generations: 0,
            parked: 0,
            facts_changed: Vec::new(),
            clock: None,
            advancing: None,
            settings,
        }
    }

    pub fn service_ports(&self) -> &ServicePorts {
        &self.service_ports
    }

    /// Facts that became known while running (EC2): they hold for the
    /// interface's sessions decided from now on, and for an interface not
    /// seen yet from its first record.
    /// Sessions waiting for the interface's address are reported with the
    /// next record or watermark.
    pub fn set_facts(&mut self, id: &str, facts: InterfaceFacts) {
        if let Some(&index) = self.interface_index.get(id) {
            let interface = &mut self.interfaces[index as usize];
            interface.local.set_configured(&facts.addresses);
            interface.intermediate |= facts.intermediate;
            if !interface.waiting.is_empty() {
                self.facts_changed.push(index);
            }
        }
        self.facts.insert(id.to_string(), facts);
    }

    /// Reports what waited for addresses that facts have told since.
    fn settle_told(&mut self, observer: &mut impl SessionObserver) {
        for index in std::mem::take(&mut self.facts_changed) {
            self.settle_waiting(index as usize, false, observer);
        }
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
        if !self.facts_changed.is_empty() {
            self.settle_told(observer);
        }
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
        let state = &mut self.interfaces[interface];
        let learned = state.local.observe(src, dst);
        if learned && !state.waiting.is_empty() {
            self.settle_waiting(interface, false, observer);
        }
        if let Some(time) = time {
            self.advance_interface(interface, time, observer);
        }
        let source = (src, record.srcport.unwrap_or(0));
        let destination = (dst, record.dstport.unwrap_or(0));
        let (key, side) = SessionKey::of(
            interface as u32,
            record.protocol.unwrap_or(0),
            source,
            destination,
        );
        let slot = match self.sessions.find(&key) {
            Some(slot) => slot,
            None => self.open_session(key, observer),
        };
        self.arrivals += 1;
        let session = &mut self.sessions[slot];
        let (packets, bytes) = session.absorb(side, action, record, time);
        if !session.scheduled()
            && let Some(first) = session.first_time()
        {
            session.set_scheduled(true);
            let generation = session.generation;
            self.interfaces[interface].deadlines.push(
                first.saturating_add(self.settings.reply_grace),
                generation,
                slot as u32,
            );
        }
        match session.decision {
            Some(Decision::Verdict {
                verdict, direction, ..
            }) => {
                observer.traffic(record.interface_id, verdict, direction, packets, bytes);
            }
            Some(Decision::NoVerdict | Decision::AwaitingAddress { .. }) => {}
            None if session.both_seen() => {
                self.decide(slot, observer);
            }
            None => {}
        }
        self.drop_stale_deadlines(interface);
    }

    /// Moves every interface's watermark to at least `time` and decides or
    /// closes what is due: the exporter's wall clock, less delivery delay.
    /// What records that came in late left due on an interface whose
    /// watermark is already past `time` is decided too. Sessions that waited `address_wait` of wall clock for their
    /// interface's address are reported with the fallback.
    pub fn advance_to(&mut self, time: u64, observer: &mut impl SessionObserver) {
        self.start_advance(time, observer);
        while self.advance_some(usize::MAX, observer) {}
    }

    /// [`Correlator::advance_to`] in steps, so that a caller can hold at
    /// most a bounded number of decisions at once (the exporter checkpoints
    /// and publishes between steps): starts the advance, which
    /// [`Correlator::advance_some`] carries out. The decisions come in the
    /// same order as from `advance_to`. An advance still under way is
    /// started again from its first interface, to the later of both times.
    pub fn start_advance(&mut self, time: u64, observer: &mut impl SessionObserver) {
        self.settle_told(observer);
        let time = self
            .advancing
            .map_or(time, |under_way| under_way.time.max(time));
        self.advancing = Some(Advance { time, interface: 0 });
    }

    /// Carries on the advance under way, taking at most `budget` (at least
    /// one) due deadlines, each deciding or closing at most one session.
    /// Returns whether the advance is still under way.
    pub fn advance_some(&mut self, budget: usize, observer: &mut impl SessionObserver) -> bool {
        let Some(mut advance) = self.advancing else {
            return false;
        };
        let mut left = budget.max(1);
        while advance.interface < self.interfaces.len() {
            let interface = advance.interface;
            let state = &mut self.interfaces[interface];
            let watermark = match state.watermark {
                Some(watermark) if watermark >= advance.time => watermark,
                _ => advance.time,
            };
            state.watermark = Some(watermark);
            // Due at the watermark: what `time` made due, and what records
            // that arrived after the watermark had passed their grace left
            // due. Not decided as each late record arrives, since the rest
            // of its batch (its reply, in the same late object or poll) may
            // still be on its way.
            while self.interfaces[interface].deadlines.is_due(watermark) {
                if left == 0 {
                    self.advancing = Some(advance);
                    return true;
                }
                left -= 1;
                self.decide_next_due(interface, watermark, observer);
            }
            if let (Some(wait), Some(now)) = (self.settings.address_wait, self.clock) {
                self.give_up_waiting(interface, now, wait, observer);
            }
            advance.interface += 1;
        }
        self.advancing = None;
        false
    }

    /// Whether an advance is under way ([`Correlator::start_advance`]).
    pub fn advancing(&self) -> bool {
        self.advancing.is_some()
    }

    /// The exporter's wall clock, Unix seconds (never set offline).
    pub fn set_wall_clock(&mut self, now: u64) {
        self.clock = Some(self.clock.map_or(now, |clock| clock.max(now)));
    }

    /// Falls back for sessions that waited `wait` of wall clock.
    fn give_up_waiting(
        &mut self,
        interface: usize,
        time: u64,
        wait: u64,
        observer: &mut impl SessionObserver,
    ) {
        let waiting = &mut self.interfaces[interface].waiting;
        for entry in waiting.iter_mut().rev() {
            match entry {
                Waiting::Open { since, .. } | Waiting::Parked { since, .. } if since.is_none() => {
                    *since = Some(time);
                }
                _ => break,
            }
        }
        while let Some(front) = self.interfaces[interface].waiting.front()
            && front
                .since()
                .is_some_and(|since| since.saturating_add(wait) <= time)
        {
            let entry = self.interfaces[interface].waiting.pop_front();
            if let Some(entry) = entry {
                self.settle_entry(interface, entry, true, observer);
            }
        }
    }

    /// End of input: decides every pending session and closes them all.
    /// Sessions still waiting for their interface's address get the
    /// fallback: the whole input did not tell.
    pub fn finish(&mut self, observer: &mut impl SessionObserver) {
        self.settle_told(observer);
        let slots: Vec<usize> = self.sessions.iter().map(|(slot, _)| slot).collect();
        for &slot in &slots {
            if self.sessions[slot].decision.is_none() {
                self.decide(slot, observer);
            }
        }
        for interface in 0..self.interfaces.len() {
            self.settle_waiting(interface, true, observer);
        }
        for interface in &mut self.interfaces {
            interface.deadlines.clear();
        }
        for slot in slots {
            self.close(slot, observer);
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
        let fresh = Interface {
            id: id.into(),
            watermark: None,
            local: LocalAddresses::new(&facts.addresses),
            intermediate: facts.intermediate,
            deadlines: Deadlines::default(),
            pending: 0,
            open: 0,
            waiting: VecDeque::new(),
        };
        let index = match self.longest_idle_interface() {
            Some(index) => {
                let forgotten = std::mem::replace(&mut self.interfaces[index], fresh);
                self.interface_index.remove(&forgotten.id);
                index
            }
            None => {
                self.interfaces.push(fresh);
                self.interfaces.len() - 1
            }
        };
        // Idle until a session opens (NODATA-only interfaces stay so).
        self.idle_interfaces.push_back(index as u32);
        self.interface_index.insert(id.into(), index as u32);
        self.last_interface = index;
        index
    }

    /// Past [`MAX_IDLE_INTERFACES`] idle interfaces, the one idle longest.
    fn longest_idle_interface(&mut self) -> Option<usize> {
        let idle = |interfaces: &[Interface], index: u32| {
            let interface = &interfaces[index as usize];
            interface.open == 0 && interface.waiting.is_empty()
        };
        if self.idle_interfaces.len() > 2 * MAX_IDLE_INTERFACES {
            let interfaces = &self.interfaces;
            let mut listed = vec![false; interfaces.len()];
            self.idle_interfaces.retain(|&index| {
                let keep = idle(interfaces, index) && !listed[index as usize];
                listed[index as usize] = true;
                keep
            });
        }
        while self.idle_interfaces.len() > MAX_IDLE_INTERFACES {
            let index = self.idle_interfaces.pop_front()?;
            if idle(&self.interfaces, index) {
                return Some(index as usize);
            }
        }
        None
    }

    fn open_session(&mut self, key: SessionKey, observer: &mut impl SessionObserver) -> usize {
        while self.sessions.len() >= self.settings.max_open_sessions.max(1) {
            self.evict(observer);
        }
        let generation = self.next_generation();
        let slot = self.sessions.insert(&key, Session::new(&key, generation));
        self.pending_order
            .push_back(&mut self.sessions, slot as u32);
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
        self.decide_due(interface, time, observer);
    }

    /// Decides or closes every session due at watermark `time`.
    fn decide_due(&mut self, interface: usize, time: u64, observer: &mut impl SessionObserver) {
        while self.decide_next_due(interface, time, observer) {}
    }

    /// Takes the earliest deadline due at watermark `time`: decides or
    /// closes its session, or schedules it again. False when none is due.
    fn decide_next_due(
        &mut self,
        interface: usize,
        time: u64,
        observer: &mut impl SessionObserver,
    ) -> bool {
        let grace = self.settings.reply_grace;
        let idle = self.settings.session_idle_timeout;
        let Some((generation, slot)) = self.interfaces[interface].deadlines.pop_due(time) else {
            return false;
        };
        let slot = slot as usize;
        let Some(session) = self.sessions.get(slot) else {
            return true;
        };
        if session.generation != generation {
            return true;
        }
        let first = session.first_time().unwrap_or(0);
        let last = session.last_time().unwrap_or(0);
        if session.decision.is_none() && time >= first.saturating_add(grace) {
            self.decide(slot, observer);
        }
        let next_due = if self.sessions[slot].decision.is_none() {
            first.saturating_add(grace)
        } else if time > last.saturating_add(idle) {
            self.close(slot, observer);
            return true;
        } else {
            last.saturating_add(idle).saturating_add(1)
        };
        self.interfaces[interface]
            .deadlines
            .push(next_due, generation, slot as u32);
        true
    }

    fn decide(&mut self, slot: usize, observer: &mut impl SessionObserver) {
        let session = &self.sessions[slot];
        let key = self.sessions.key(slot);
        let index = session.interface() as usize;
        let interface = &self.interfaces[index];
        let mut decision = rules::judge(
            session,
            &key,
            Context {
                local: &interface.local,
                intermediate: interface.intermediate,
                service_ports: &self.service_ports,
            },
        );
        let mut by_fallback = false;
        if let Decision::AwaitingAddress { outcome, initiator } = decision
            && !(self.settings.max_awaiting_address > 0
                && interface.local.may_learn(family(key.low.0)))
        {
            decision =
                rules::settle_by_fallback(session, &key, outcome, initiator, &interface.local);
            by_fallback = true;
        }
        let since = self.clock;
        let interface = &mut self.interfaces[index];
        interface.pending -= 1;
        self.pending_order.unlink(&mut self.sessions, slot as u32);
        self.decided_order
            .push_back(&mut self.sessions, slot as u32);
        let session = &mut self.sessions[slot];
        session.decision = Some(decision);
        session.set_direction_by_fallback(by_fallback);
        if let Decision::AwaitingAddress { .. } = decision {
            interface.waiting.push_back(Waiting::Open {
                slot: slot as u32,
                generation: session.generation,
                since,
            });
            while self.interfaces[index].waiting.len() > self.settings.max_awaiting_address {
                let entry = self.interfaces[index].waiting.pop_front();
                if let Some(entry) = entry {
                    self.settle_entry(index, entry, true, observer);
                }
            }
            return;
        }
        tell_decided(session, &key, &interface.id, observer);
    }

    /// Reports the waiting sessions of an interface whose direction can now
    /// be told; with `fall_back`, every one of them.
    fn settle_waiting(
        &mut self,
        interface: usize,
        fall_back: bool,
        observer: &mut impl SessionObserver,
    ) {
        let entries = std::mem::take(&mut self.interfaces[interface].waiting);
        let mut kept = VecDeque::new();
        for entry in entries {
            if let Some(entry) = self.settle_entry(interface, entry, fall_back, observer) {
                kept.push_back(entry);
            }
        }
        self.interfaces[interface].waiting = kept;
    }

    /// Reports one waiting session when its direction can be told (or with
    /// `fall_back`, or when the interface can no longer learn its address);
    /// else gives it back.
    fn settle_entry(
        &mut self,
        interface: usize,
        entry: Waiting,
        fall_back: bool,
        observer: &mut impl SessionObserver,
    ) -> Option<Waiting> {
        let state = &self.interfaces[interface];
        let (session, key): (&Session, SessionKey) = match &entry {
            Waiting::Open { slot, .. } => (
                &self.sessions[*slot as usize],
                self.sessions.key(*slot as usize),
            ),
            Waiting::Parked { session, .. } => (&session.0, session.1),
        };
        let Some(Decision::AwaitingAddress { outcome, initiator }) = session.decision else {
            return None;
        };
        let may_learn = state.local.may_learn(family(key.low.0));
        let (decision, by_fallback) =
            match rules::settle(session, &key, outcome, initiator, &state.local) {
                Some(decision) => (decision, false),
                None if fall_back || !may_learn => (
                    rules::settle_by_fallback(session, &key, outcome, initiator, &state.local),
                    true,
                ),
                None => return Some(entry),
            };
        match entry {
            Waiting::Open { slot, .. } => {
                let session = &mut self.sessions[slot as usize];
                session.decision = Some(decision);
                session.set_direction_by_fallback(by_fallback);
                tell_decided(session, &key, &state.id, observer);
            }
            Waiting::Parked { mut session, .. } => {
                let (session, key) = &mut *session;
                session.decision = Some(decision);
                session.set_direction_by_fallback(by_fallback);
                tell_decided(session, key, &state.id, observer);
                if let Some(report) = session.report(key, &state.id) {
                    observer.closed(&report);
                }
                self.parked -= 1;
                if state.open == 0 {
                    self.idle_interfaces.push_back(interface as u32);
                }
            }
        }
        None
    }

    /// Closes a decided session. One still waiting for its interface's
    /// address is parked: a later record of its key opens a new session, as
    /// it would have had the address been known.
    fn close(&mut self, slot: usize, observer: &mut impl SessionObserver) {
        self.decided_order.unlink(&mut self.sessions, slot as u32);
        let (session, key) = self.sessions.remove(slot);
        let index = session.interface() as usize;
        let interface = &mut self.interfaces[index];
        interface.open -= 1;
        if interface.open == 0 {
            self.idle_interfaces.push_back(session.interface());
        }
        if let Some(Decision::AwaitingAddress { .. }) = session.decision {
            self.park(index, slot as u32, session, key, observer);
            return;
        }
        if observer.wants_closed()
            && let Some(report) = session.report(&key, &interface.id)
        {
            observer.closed(&report);
        }
    }

    /// Parked sessions are bounded with the table: past an eighth of
    /// `max_open_sessions` the fallback reports them instead.
    fn park(
        &mut self,
        interface: usize,
        slot: u32,
        session: Session,
        key: SessionKey,
        observer: &mut impl SessionObserver,
    ) {
        let waiting = &mut self.interfaces[interface].waiting;
        let Some(position) = waiting.iter().position(|entry| {
            matches!(entry, Waiting::Open { slot: s, generation, .. }
                if *s == slot && *generation == session.generation)
        }) else {
            return;
        };
        let since = waiting[position].since();
        waiting[position] = Waiting::Parked {
            session: Box::new((session, key)),
            since,
        };
        self.parked += 1;
        if self.parked > self.settings.max_open_sessions / 8 {
            let entry = self.interfaces[interface].waiting.remove(position);
            if let Some(entry) = entry {
                self.settle_entry(interface, entry, true, observer);
            }
        }
    }

    /// Generations start at 1: 0 marks a vacant slot.
    fn next_generation(&mut self) -> u32 {
        self.generations = self.generations.wrapping_add(1).max(1);
        self.generations
    }

    /// Makes room for one session: the decided session decided longest ago
    /// is dropped (a later stray record of it would open a new session);
    /// failing that, the oldest pending one is decided with what it has (a
    /// lone request: unanswered) and closed.
    /// An evicted session leaves its deadline behind; being the oldest,
    /// it is usually the earliest due: taken off the heap at once.
    fn evict(&mut self, observer: &mut impl SessionObserver) {
        if self.decided_order.head != NONE {
            let slot = self.decided_order.head as usize;
            let interface = self.sessions[slot].interface() as usize;
            self.close(slot, observer);
            self.drop_stale_front(interface);
            return;
        }
        let slot = self.pending_order.head as usize;
        self.decide(slot, observer);
        let interface = self.sessions[slot].interface() as usize;
        observer.evicted(&self.interfaces[interface].id);
        self.close(slot, observer);
        self.drop_stale_front(interface);
    }

    fn drop_stale_front(&mut self, interface: usize) {
        let sessions = &self.sessions;
        self.interfaces[interface]
            .deadlines
            .drop_stale_front(|generation, slot| live(sessions, generation, slot));
    }

    /// Closed and evicted sessions leave their deadline behind until it
    /// falls due: past twice the interface's open sessions, sweep them, so
    /// the heap is bounded by the table, not by the input.
    fn drop_stale_deadlines(&mut self, interface: usize) {
        let state = &mut self.interfaces[interface];
        let sessions = &self.sessions;
        state.deadlines.sweep(state.open, |generation, slot| {
            live(sessions, generation, slot)
        });
    }
}

/// Whether a deadline is the session's in `slot`, not one left by an
/// earlier session there.
fn live(sessions: &Sessions, generation: u32, slot: u32) -> bool {
    sessions
        .get(slot as usize)
        .is_some_and(|session| session.generation == generation)
}

/// A session got its verdict: all its traffic so far goes with it.
fn tell_decided(
    session: &Session,
    key: &SessionKey,
    interface_id: &str,
    observer: &mut impl SessionObserver,
) {
    if let Some(report) = session.report(key, interface_id) {
        observer.decided(&report);
        observer.traffic(
            report.interface_id,
            report.verdict,
            report.direction,
            session.packets,
            session.bytes,
        );
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod waiting_tests;
