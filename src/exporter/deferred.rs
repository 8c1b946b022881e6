//! What the core decided during one poll, held back until that poll's
//! checkpoint is on disk, then replayed into the metrics. So everything a
//! scrape ever saw is in a checkpoint, and a successor restored from it
//! never counts it again (issue 7: restarts neither lose nor double-count).

use crate::flow::{
    Action, Direction, Endpoint, FormatWarning, LogStatus, Malformed, Observer, SessionObserver,
    SessionReport, Verdict,
};

/// A [`SessionReport`] that owns its interface id.
#[derive(Debug, Clone)]
struct OwnedReport {
    interface_id: Box<str>,
    protocol: u8,
    initiator: Endpoint,
    responder: Endpoint,
    direction: Direction,
    verdict: Verdict,
    packets: u64,
    bytes: u64,
    start: Option<u64>,
    end: Option<u64>,
    direction_by_fallback: bool,
}

impl OwnedReport {
    fn of(report: &SessionReport<'_>) -> OwnedReport {
        OwnedReport {
            interface_id: report.interface_id.into(),
            protocol: report.protocol,
            initiator: report.initiator,
            responder: report.responder,
            direction: report.direction,
            verdict: report.verdict,
            packets: report.packets,
            bytes: report.bytes,
            start: report.start,
            end: report.end,
            direction_by_fallback: report.direction_by_fallback,
        }
    }

    fn report(&self) -> SessionReport<'_> {
        SessionReport {
            interface_id: &self.interface_id,
            protocol: self.protocol,
            initiator: self.initiator,
            responder: self.responder,
            direction: self.direction,
            verdict: self.verdict,
            packets: self.packets,
            bytes: self.bytes,
            start: self.start,
            end: self.end,
            direction_by_fallback: self.direction_by_fallback,
        }
    }
}

#[derive(Debug, Clone)]
enum Event {
    Decided(OwnedReport),
    Traffic {
        interface_id: Box<str>,
        verdict: Verdict,
        direction: Direction,
        packets: u64,
        bytes: u64,
    },
    Closed(OwnedReport),
    Evicted(Box<str>),
    Record {
        interface_id: Box<str>,
        action: Option<Action>,
        log_status: LogStatus,
    },
    Malformed(Malformed),
}

/// Observes like any [`Observer`], but keeps what it is told (in order)
/// until [`Deferred::replay`]. Format warnings are logged at once: they
/// are not counted.
#[derive(Debug, Default)]
pub struct Deferred {
    events: Vec<Event>,
}

impl Deferred {
    pub fn new() -> Deferred {
        Deferred::default()
    }

    /// Whether nothing was told since it was made.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// How many observations it holds.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Tells `observer` everything, in the order it happened.
    pub fn replay(self, observer: &mut impl Observer) {
        for event in self.events {
            match event {
                Event::Decided(report) => observer.decided(&report.report()),
                Event::Traffic {
                    interface_id,
                    verdict,
                    direction,
                    packets,
                    bytes,
                } => observer.traffic(&interface_id, verdict, direction, packets, bytes),
                Event::Closed(report) => observer.closed(&report.report()),
                Event::Evicted(interface_id) => observer.evicted(&interface_id),
                Event::Record {
                    interface_id,
                    action,
                    log_status,
                } => observer.record(&interface_id, action, log_status),
                Event::Malformed(reason) => observer.malformed(reason),
            }
        }
    }
}

impl SessionObserver for Deferred {
    fn decided(&mut self, session: &SessionReport<'_>) {
        self.events.push(Event::Decided(OwnedReport::of(session)));
    }

    fn traffic(
        &mut self,
        interface_id: &str,
        verdict: Verdict,
        direction: Direction,
        packets: u64,
        bytes: u64,
    ) {
        self.events.push(Event::Traffic {
            interface_id: interface_id.into(),
            verdict,
            direction,
            packets,
            bytes,
        });
    }

    fn closed(&mut self, session: &SessionReport<'_>) {
        self.events.push(Event::Closed(OwnedReport::of(session)));
    }

    fn evicted(&mut self, interface_id: &str) {
        self.events.push(Event::Evicted(interface_id.into()));
    }
}

impl Observer for Deferred {
    fn record(&mut self, interface_id: &str, action: Option<Action>, log_status: LogStatus) {
        self.events.push(Event::Record {
            interface_id: interface_id.into(),
            action,
            log_status,
        });
    }

    fn malformed(&mut self, reason: Malformed) {
        self.events.push(Event::Malformed(reason));
    }

    fn format_warning(&mut self, warning: &FormatWarning) {
        tracing::warn!(%warning, "Flow log format");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Summary;

    #[test]
    fn replays_in_order() {
        let mut deferred = Deferred::new();
        let report = SessionReport {
            interface_id: "eni-a",
            protocol: 6,
            initiator: Endpoint {
                addr: "10.0.0.1".parse().unwrap(),
                port: 50_000,
            },
            responder: Endpoint {
                addr: "10.0.0.2".parse().unwrap(),
                port: 443,
            },
            direction: Direction::Ingress,
            verdict: Verdict::Accepted,
            packets: 3,
            bytes: 180,
            start: Some(1),
            end: Some(2),
            direction_by_fallback: false,
        };
        deferred.record("eni-a", Some(Action::Accept), LogStatus::Ok);
        deferred.malformed(Malformed::BadTime);
        deferred.decided(&report);
        deferred.traffic("eni-a", Verdict::Accepted, Direction::Ingress, 3, 180);
        let mut summary = Summary::new(crate::flow::ServicePorts::new(&[]), false);
        deferred.replay(&mut summary);
        assert_eq!((summary.records.total, summary.records.malformed), (2, 1));
        assert_eq!(summary.sessions.accepted, 1);
    }

    #[test]
    fn replays_evictions() {
        #[derive(Default)]
        struct Evictions(Vec<String>);
        impl SessionObserver for Evictions {
            fn decided(&mut self, _: &SessionReport<'_>) {}
            fn traffic(&mut self, _: &str, _: Verdict, _: Direction, _: u64, _: u64) {}
            fn closed(&mut self, _: &SessionReport<'_>) {}
            fn evicted(&mut self, interface_id: &str) {
                self.0.push(interface_id.to_owned());
            }
        }
        impl Observer for Evictions {
            fn record(&mut self, _: &str, _: Option<Action>, _: LogStatus) {}
            fn malformed(&mut self, _: Malformed) {}
        }
        let mut deferred = Deferred::new();
        deferred.evicted("eni-a");
        deferred.evicted("eni-b");
        let mut evictions = Evictions::default();
        deferred.replay(&mut evictions);
        assert_eq!(evictions.0, ["eni-a", "eni-b"]);
    }
}
