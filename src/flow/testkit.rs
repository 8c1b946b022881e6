//! Test helpers for the correlation tests: records written as lines of
//! one wide format, a correlator fed through its parser, and an observer
//! that keeps every callback.

use std::collections::HashMap;

use super::correlate::{Correlator, SessionObserver};
use super::format::LogFormat;
use super::record::RecordParser;
use super::settings::{InterfaceFacts, Settings};
use super::verdict::{Direction, SessionReport, Verdict};

/// Every column the rules read; `-` where a test does not need one.
pub(crate) const FORMAT: &str = "interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status tcp-flags flow-direction instance-id pkt-srcaddr";

pub(crate) const SYN: u16 = 0x02;
pub(crate) const FIN: u16 = 0x01;
pub(crate) const RST: u16 = 0x04;
pub(crate) const ACK: u16 = 0x10;
pub(crate) const SYN_ACK: u16 = SYN | ACK;

/// A decided or closed session, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    pub(crate) interface: String,
    pub(crate) verdict: Verdict,
    pub(crate) direction: Direction,
    pub(crate) initiator: String,
    pub(crate) responder: String,
    pub(crate) packets: u64,
    pub(crate) bytes: u64,
}

impl Seen {
    pub(crate) fn of(report: &SessionReport<'_>) -> Seen {
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
pub(crate) struct Recorder {
    pub(crate) decided: Vec<Seen>,
    pub(crate) closed: Vec<Seen>,
    pub(crate) traffic: Vec<(String, Verdict, Direction, u64, u64)>,
    pub(crate) evicted: Vec<String>,
    /// Interfaces of the sessions whose direction the fallback decided.
    pub(crate) fallbacks: Vec<String>,
}

impl SessionObserver for Recorder {
    fn decided(&mut self, session: &SessionReport<'_>) {
        self.decided.push(Seen::of(session));
        if session.direction_by_fallback {
            self.fallbacks.push(session.interface_id.to_string());
        }
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

    fn evicted(&mut self, interface_id: &str) {
        self.evicted.push(interface_id.to_string());
    }
}

impl Recorder {
    pub(crate) fn verdicts(&self) -> Vec<(Verdict, Direction)> {
        self.decided
            .iter()
            .map(|seen| (seen.verdict, seen.direction))
            .collect()
    }

    pub(crate) fn only(&self) -> &Seen {
        assert_eq!(self.decided.len(), 1, "decided: {:#?}", self.decided);
        &self.decided[0]
    }
}

/// Settings under which no session waits for its interface's address.
pub(crate) fn deciding_at_once() -> Settings {
    Settings {
        max_awaiting_address: 0,
        ..Settings::default()
    }
}

/// One record, written as a line of [`FORMAT`].
#[derive(Debug, Clone)]
pub(crate) struct Rec {
    pub(crate) interface: &'static str,
    pub(crate) src: &'static str,
    pub(crate) dst: &'static str,
    pub(crate) protocol: u8,
    pub(crate) packets: u64,
    pub(crate) bytes: u64,
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) action: &'static str,
    pub(crate) flags: Option<u16>,
    pub(crate) flow_direction: Option<&'static str>,
    pub(crate) instance: &'static str,
    pub(crate) pkt_src: Option<&'static str>,
}

/// `src` and `dst` are `addr:port` (`[v6]:port` for IPv6).
pub(crate) fn rec(src: &'static str, dst: &'static str, action: &'static str) -> Rec {
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
    pub(crate) fn on(mut self, interface: &'static str) -> Rec {
        self.interface = interface;
        self
    }
    pub(crate) fn at(mut self, start: u64, end: u64) -> Rec {
        self.start = start;
        self.end = end;
        self
    }
    pub(crate) fn flags(mut self, flags: u16) -> Rec {
        self.flags = Some(flags);
        self
    }
    pub(crate) fn dir(mut self, direction: &'static str) -> Rec {
        self.flow_direction = Some(direction);
        self
    }
    pub(crate) fn instance(mut self, instance: &'static str) -> Rec {
        self.instance = instance;
        self
    }
    pub(crate) fn pkt_src(mut self, addr: &'static str) -> Rec {
        self.pkt_src = Some(addr);
        self
    }
    pub(crate) fn traffic(mut self, packets: u64, bytes: u64) -> Rec {
        self.packets = packets;
        self.bytes = bytes;
        self
    }
    pub(crate) fn protocol(mut self, protocol: u8) -> Rec {
        self.protocol = protocol;
        self
    }

    pub(crate) fn line(&self) -> String {
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
pub(crate) struct Harness {
    pub(crate) parser: RecordParser,
    pub(crate) correlator: Correlator,
    pub(crate) seen: Recorder,
}

impl Harness {
    /// Sessions are reported as soon as they are decided: most tests have
    /// one session per interface, whose address its records never tell.
    /// [`Harness::waiting`] waits for addresses, as the exporter does.
    pub(crate) fn new() -> Harness {
        Harness::with(deciding_at_once(), HashMap::new())
    }

    /// Decided sessions wait for their interface's address (the default).
    pub(crate) fn waiting(address_wait: Option<u64>) -> Harness {
        Harness::with(
            Settings {
                address_wait,
                ..Settings::default()
            },
            HashMap::new(),
        )
    }

    pub(crate) fn with(settings: Settings, facts: HashMap<String, InterfaceFacts>) -> Harness {
        Harness {
            parser: RecordParser::new(LogFormat::parse(FORMAT).unwrap()),
            correlator: Correlator::new(settings, facts),
            seen: Recorder::default(),
        }
    }

    pub(crate) fn with_facts(interface: &str, facts: InterfaceFacts) -> Harness {
        Harness::with(
            deciding_at_once(),
            HashMap::from([(interface.to_string(), facts)]),
        )
    }

    pub(crate) fn push(&mut self, record: Rec) -> &mut Harness {
        let line = record.line();
        self.push_line(&line)
    }

    pub(crate) fn push_line(&mut self, line: &str) -> &mut Harness {
        let record = self
            .parser
            .parse(line)
            .unwrap_or_else(|reason| panic!("{line}: {reason:?}"));
        let time = record.time();
        self.correlator.push(&record, time, &mut self.seen);
        self
    }

    pub(crate) fn advance_to(&mut self, time: u64) -> &mut Harness {
        self.correlator.advance_to(time, &mut self.seen);
        self
    }

    pub(crate) fn finish(&mut self) -> &Recorder {
        self.correlator.finish(&mut self.seen);
        &self.seen
    }

    /// (pending, open) of one interface.
    pub(crate) fn load(&self, interface: &str) -> (usize, usize) {
        self.correlator
            .load()
            .find(|load| load.interface_id == interface)
            .map(|load| (load.pending, load.open))
            .unwrap_or_else(|| panic!("no interface {interface}"))
    }
}

pub(crate) fn facts(addresses: &[&str], intermediate: bool) -> InterfaceFacts {
    InterfaceFacts {
        addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
        intermediate,
    }
}

pub(crate) fn status_line(interface: &str, start: u64, end: u64, status: &str) -> String {
    format!("{interface} - - - - - - - {start} {end} - {status} - - - -")
}
