//! Totals of one analysis: what `analyze` and `inspect` print.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::correlate::{ServicePorts, SessionObserver};
use super::format::FormatWarning;
use super::pipeline::Observer;
use super::record::{Action, LogStatus, Malformed};
use super::verdict::{Direction, SessionReport, Verdict, protocol_name};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RecordCounts {
    pub total: u64,
    pub ok: u64,
    pub nodata: u64,
    pub skipdata: u64,
    pub malformed: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct VerdictCounts {
    pub accepted: u64,
    pub rejected_inbound: u64,
    pub rejected_outbound: u64,
    pub unanswered: u64,
    pub refused: u64,
}

impl VerdictCounts {
    pub fn add(&mut self, verdict: Verdict) {
        *self.get_mut(verdict) += 1;
    }

    pub fn get(&self, verdict: Verdict) -> u64 {
        match verdict {
            Verdict::Accepted => self.accepted,
            Verdict::RejectedInbound => self.rejected_inbound,
            Verdict::RejectedOutbound => self.rejected_outbound,
            Verdict::Unanswered => self.unanswered,
            Verdict::Refused => self.refused,
        }
    }

    fn get_mut(&mut self, verdict: Verdict) -> &mut u64 {
        match verdict {
            Verdict::Accepted => &mut self.accepted,
            Verdict::RejectedInbound => &mut self.rejected_inbound,
            Verdict::RejectedOutbound => &mut self.rejected_outbound,
            Verdict::Unanswered => &mut self.unanswered,
            Verdict::Refused => &mut self.refused,
        }
    }

    pub fn total(&self) -> u64 {
        Verdict::ALL.iter().map(|verdict| self.get(*verdict)).sum()
    }

    pub fn add_all(&mut self, other: &VerdictCounts) {
        for verdict in Verdict::ALL {
            *self.get_mut(verdict) += other.get(verdict);
        }
    }
}

/// One session, as `--details` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionDetail {
    pub interface_id: String,
    pub protocol: u8,
    pub initiator: String,
    pub responder: String,
    pub direction: Direction,
    pub verdict: Verdict,
    pub packets: u64,
    pub bytes: u64,
    pub start: Option<u64>,
    pub end: Option<u64>,
}

impl SessionDetail {
    pub fn of(session: &SessionReport<'_>) -> SessionDetail {
        SessionDetail {
            interface_id: session.interface_id.to_string(),
            protocol: session.protocol,
            initiator: session.initiator.to_string(),
            responder: session.responder.to_string(),
            direction: session.direction,
            verdict: session.verdict,
            packets: session.packets,
            bytes: session.bytes,
            start: session.start,
            end: session.end,
        }
    }
}

/// A responder service port, for "top ports" tables.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    pub protocol: String,
    /// The port, or `other` for ephemeral and unlisted ports.
    pub port: String,
}

/// Everything one analysis counted.
#[derive(Debug, Clone)]
pub struct Summary {
    pub records: RecordCounts,
    pub malformed_by_reason: BTreeMap<Malformed, u64>,
    pub sessions: VerdictCounts,
    /// In no order (a report sorts it): counted for every decided
    /// session, so looked up by hash rather than by comparing ids that
    /// differ only in their last characters.
    pub by_interface: HashMap<String, VerdictCounts, foldhash::fast::RandomState>,
    /// Decided sessions per verdict, protocol and responder service port
    /// (`None`: ephemeral or unlisted), named only when a report asks
    /// (`top_services`): no text made per session. Counted for every
    /// decided session, so keyed by the three packed in one number
    /// ([`ServiceCount`]), hashed with one multiplication.
    by_service: HashMap<ServiceCount, u64, rustc_hash::FxBuildHasher>,
    pub details: Option<Vec<SessionDetail>>,
    /// What the formats read had wrong with them, each told once.
    pub warnings: Vec<String>,
    /// Sessions whose direction DESIGN's fallback decided: their
    /// interface's records never told its own address.
    pub direction_fallbacks: u64,
    /// Pending sessions decided early to keep within `max_open_sessions`.
    pub evicted: u64,
    service_ports: ServicePorts,
}

impl Summary {
    pub fn new(service_ports: ServicePorts, keep_details: bool) -> Summary {
        Summary {
            records: RecordCounts::default(),
            malformed_by_reason: BTreeMap::new(),
            sessions: VerdictCounts::default(),
            by_interface: HashMap::default(),
            by_service: HashMap::default(),
            details: keep_details.then(Vec::new),
            warnings: Vec::new(),
            direction_fallbacks: 0,
            evicted: 0,
            service_ports,
        }
    }

    /// Decided sessions per verdict and responder service port, named.
    pub fn by_service(&self) -> BTreeMap<(Verdict, ServiceKey), u64> {
        let mut named = BTreeMap::new();
        for (&service, &count) in &self.by_service {
            let (verdict, protocol, port) = service.unpack();
            let key = ServiceKey {
                protocol: protocol_name(protocol).into_owned(),
                port: port.map_or_else(|| "other".to_string(), |port| port.to_string()),
            };
            *named.entry((verdict, key)).or_default() += count;
        }
        named
    }

    /// The most frequent service ports for these verdicts, largest first.
    pub fn top_services(&self, verdicts: &[Verdict], limit: usize) -> Vec<(ServiceKey, u64)> {
        let mut totals: BTreeMap<ServiceKey, u64> = BTreeMap::new();
        for ((verdict, key), count) in self.by_service() {
            if verdicts.contains(&verdict) {
                *totals.entry(key).or_default() += count;
            }
        }
        let mut ranked: Vec<(ServiceKey, u64)> = totals.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        ranked.truncate(limit);
        ranked
    }

    /// Details in one order whatever order sessions were closed in: by
    /// start time, then interface and endpoints (then the rest, so that
    /// the order is total).
    pub fn sort_details(&mut self) {
        if let Some(details) = &mut self.details {
            details.sort_by(|a, b| {
                let key = |d: &SessionDetail| {
                    (
                        d.start,
                        d.interface_id.clone(),
                        d.initiator.clone(),
                        d.responder.clone(),
                        (d.protocol, d.end, d.packets, d.bytes),
                        (d.verdict.as_str(), d.direction.as_str()),
                    )
                };
                (a.start, &a.interface_id, &a.initiator, &a.responder)
                    .cmp(&(b.start, &b.interface_id, &b.initiator, &b.responder))
                    .then_with(|| key(a).cmp(&key(b)))
            });
        }
    }

    /// Adds the totals of an analysis of other records (another shard of
    /// interfaces, see `analyze::parallel`); details are then re-sorted.
    pub fn merge(&mut self, other: Summary) {
        let records = &mut self.records;
        records.total += other.records.total;
        records.ok += other.records.ok;
        records.nodata += other.records.nodata;
        records.skipdata += other.records.skipdata;
        records.malformed += other.records.malformed;
        for (reason, count) in other.malformed_by_reason {
            *self.malformed_by_reason.entry(reason).or_default() += count;
        }
        self.sessions.add_all(&other.sessions);
        for (interface, counts) in other.by_interface {
            self.by_interface
                .entry(interface)
                .or_default()
                .add_all(&counts);
        }
        for (key, count) in other.by_service {
            *self.by_service.entry(key).or_default() += count;
        }
        self.direction_fallbacks += other.direction_fallbacks;
        self.evicted += other.evicted;
        if let (Some(details), Some(other)) = (&mut self.details, other.details) {
            details.extend(other);
        }
        for warning in other.warnings {
            if !self.warnings.contains(&warning) {
                self.warnings.push(warning);
            }
        }
    }
}

/// A verdict, a protocol and a responder service port (or none), packed
/// without loss: the verdict's place in [`Verdict::ALL`], whether there is
/// a port, the protocol, the port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ServiceCount(u32);

impl ServiceCount {
    fn pack(verdict: Verdict, protocol: u8, port: Option<u16>) -> ServiceCount {
        ServiceCount(
            (verdict as u32) << 25
                | u32::from(port.is_some()) << 24
                | u32::from(protocol) << 16
                | u32::from(port.unwrap_or(0)),
        )
    }

    fn unpack(self) -> (Verdict, u8, Option<u16>) {
        let ServiceCount(packed) = self;
        let port = (packed >> 24 & 1 == 1).then_some(packed as u16);
        (
            Verdict::ALL[(packed >> 25) as usize],
            (packed >> 16) as u8,
            port,
        )
    }
}

impl SessionObserver for Summary {
    fn decided(&mut self, session: &SessionReport<'_>) {
        self.sessions.add(session.verdict);
        match self.by_interface.get_mut(session.interface_id) {
            Some(counts) => counts.add(session.verdict),
            None => {
                let mut counts = VerdictCounts::default();
                counts.add(session.verdict);
                self.by_interface
                    .insert(session.interface_id.to_string(), counts);
            }
        }
        let port = session.responder.port;
        let service = self.service_ports.contains(port).then_some(port);
        *self
            .by_service
            .entry(ServiceCount::pack(
                session.verdict,
                session.protocol,
                service,
            ))
            .or_default() += 1;
        self.direction_fallbacks += u64::from(session.direction_by_fallback);
    }

    fn traffic(&mut self, _: &str, _: Verdict, _: Direction, _: u64, _: u64) {}

    fn closed(&mut self, session: &SessionReport<'_>) {
        if let Some(details) = &mut self.details {
            details.push(SessionDetail::of(session));
        }
    }

    fn wants_closed(&self) -> bool {
        self.details.is_some()
    }

    fn evicted(&mut self, _: &str) {
        self.evicted += 1;
    }
}

impl Observer for Summary {
    fn record(&mut self, _: &str, _: Option<Action>, log_status: LogStatus) {
        self.records.total += 1;
        match log_status {
            LogStatus::Ok => self.records.ok += 1,
            LogStatus::NoData => self.records.nodata += 1,
            LogStatus::SkipData => self.records.skipdata += 1,
        }
    }

    fn malformed(&mut self, reason: Malformed) {
        self.records.total += 1;
        self.records.malformed += 1;
        *self.malformed_by_reason.entry(reason).or_default() += 1;
    }

    fn format_warning(&mut self, warning: &FormatWarning) {
        self.warnings.push(warning.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_count_unpacks_to_what_was_packed() {
        for verdict in Verdict::ALL {
            for protocol in [0, 1, 6, 17, 255] {
                for port in [None, Some(0), Some(443), Some(u16::MAX)] {
                    let packed = ServiceCount::pack(verdict, protocol, port);
                    assert_eq!(packed.unpack(), (verdict, protocol, port));
                }
            }
        }
    }
}
