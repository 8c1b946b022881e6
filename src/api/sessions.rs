//! The drill-down behind every number: a bounded ring per verdict of the
//! most recently decided sessions, and per interface the verdict counts of
//! the last hour.
//!
//! Metrics carry no addresses (they are unbounded); this ring does, so the
//! operator who sees "unanswered" jump can see which conversations they
//! were without leaving the exporter. Memory is bounded by configuration:
//! `[api] sessions_per_verdict` entries for each non-accepted verdict,
//! `[api] accepted_sessions` for accepted ones (off by default, as accepted
//! sessions would push out the ones that matter), and 60 one-minute count
//! buckets per interface.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

use crate::flow::{
    Action, Both, Direction, Endpoint, LogStatus, Malformed, Observer, SessionObserver,
    SessionReport, Verdict, VerdictCounts,
};

/// How many sessions each ring keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingSizes {
    /// Each of rejected_inbound, rejected_outbound, unanswered and refused.
    pub per_verdict: usize,
    /// Accepted sessions; 0 keeps none.
    pub accepted: usize,
}

impl RingSizes {
    fn of(&self, verdict: Verdict) -> usize {
        match verdict {
            Verdict::Accepted => self.accepted,
            _ => self.per_verdict,
        }
    }
}

/// One decided session: the `analyze --details` keys plus when it was
/// decided and the command that proves it from the records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecidedSession {
    pub interface_id: String,
    pub protocol: u8,
    #[serde(serialize_with = "display")]
    pub initiator: Endpoint,
    #[serde(serialize_with = "display")]
    pub responder: Endpoint,
    pub direction: Direction,
    pub verdict: Verdict,
    pub packets: u64,
    pub bytes: u64,
    pub start: Option<u64>,
    pub end: Option<u64>,
    /// Wall clock, Unix seconds.
    pub decided_at: u64,
    /// A shell command that reads this session's records again.
    pub inspect: String,
}

fn display<S: serde::Serializer>(value: &Endpoint, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// What `/api/v1/sessions` is asked: every given field must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionQuery {
    pub interface_id: Option<String>,
    pub verdict: Option<Verdict>,
    /// Either side.
    pub address: Option<IpAddr>,
    /// Either side.
    pub port: Option<u16>,
    pub limit: usize,
}

/// Rows a query returns when it names no limit.
pub const DEFAULT_LIMIT: usize = 100;
/// The most rows one query may ask for.
pub const MAX_LIMIT: usize = 10_000;

impl Default for SessionQuery {
    fn default() -> Self {
        SessionQuery {
            interface_id: None,
            verdict: None,
            address: None,
            port: None,
            limit: DEFAULT_LIMIT,
        }
    }
}

impl SessionQuery {
    /// Parses a URL query string; the error says which parameter and why.
    pub fn parse(query: Option<&str>) -> Result<SessionQuery, String> {
        let mut parsed = SessionQuery::default();
        for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            if value.is_empty() {
                // An empty filter box means no filter.
                continue;
            }
            match key.as_ref() {
                "interface" => parsed.interface_id = Some(value.into_owned()),
                "verdict" => {
                    let verdict = Verdict::ALL
                        .into_iter()
                        .find(|verdict| verdict.as_str() == value);
                    parsed.verdict = Some(verdict.ok_or_else(|| {
                        format!(
                            "verdict: expected one of {}, got {value:?}",
                            Verdict::ALL.map(Verdict::as_str).join(", ")
                        )
                    })?);
                }
                "address" => {
                    parsed.address = Some(value.parse().map_err(|_| {
                        format!("address: expected an IPv4 or IPv6 address, got {value:?}")
                    })?);
                }
                "port" => {
                    parsed.port = Some(value.parse().map_err(|_| {
                        format!("port: expected a port number 0-65535, got {value:?}")
                    })?);
                }
                "limit" => {
                    parsed.limit = value
                        .parse()
                        .ok()
                        .filter(|limit| (1..=MAX_LIMIT).contains(limit))
                        .ok_or_else(|| {
                            format!("limit: expected a number from 1 to {MAX_LIMIT}, got {value:?}")
                        })?;
                }
                other => {
                    return Err(format!(
                        "unknown parameter {other:?}: expected interface, verdict, address, port or limit"
                    ));
                }
            }
        }
        Ok(parsed)
    }

    fn admits(&self, session: &DecidedSession) -> bool {
        self.interface_id
            .as_ref()
            .is_none_or(|id| *id == session.interface_id)
            && self
                .verdict
                .is_none_or(|verdict| verdict == session.verdict)
            && self.address.is_none_or(|address| {
                session.initiator.addr == address || session.responder.addr == address
            })
            && self
                .port
                .is_none_or(|port| session.initiator.port == port || session.responder.port == port)
    }
}

/// One-minute buckets of verdict counts over the last hour.
#[derive(Debug, Clone)]
struct HourlyCounts {
    /// Indexed by minute modulo 60: (the minute it counts, its counts).
    buckets: [(u64, VerdictCounts); 60],
}

impl HourlyCounts {
    fn new() -> HourlyCounts {
        HourlyCounts {
            buckets: [(u64::MAX, VerdictCounts::default()); 60],
        }
    }

    fn add(&mut self, now: u64, verdict: Verdict) {
        let minute = now / 60;
        let bucket = &mut self.buckets[(minute % 60) as usize];
        if bucket.0 != minute {
            *bucket = (minute, VerdictCounts::default());
        }
        bucket.1.add(verdict);
    }

    fn last_hour(&self, now: u64) -> VerdictCounts {
        let minute = now / 60;
        let mut total = VerdictCounts::default();
        for (bucket_minute, counts) in &self.buckets {
            if *bucket_minute <= minute && minute - bucket_minute < 60 {
                total.accepted += counts.accepted;
                total.rejected_inbound += counts.rejected_inbound;
                total.rejected_outbound += counts.rejected_outbound;
                total.unanswered += counts.unanswered;
                total.refused += counts.refused;
            }
        }
        total
    }
}

#[derive(Debug)]
struct Rings {
    /// Indexed like `Verdict::ALL`; each entry with its sequence number.
    by_verdict: [VecDeque<(u64, Arc<DecidedSession>)>; 5],
    hourly: HashMap<String, HourlyCounts>,
    sequence: u64,
}

/// The decided sessions, shared by the sources (writers) and the HTTP
/// handlers (readers).
#[derive(Debug)]
pub struct SessionLog {
    sizes: RingSizes,
    rings: Mutex<Rings>,
    /// Names learned while running (EC2 `Name` tags), by interface id.
    names: Mutex<HashMap<String, String>>,
}

fn verdict_index(verdict: Verdict) -> usize {
    Verdict::ALL
        .iter()
        .position(|known| *known == verdict)
        .expect("every verdict is in Verdict::ALL")
}

impl SessionLog {
    pub fn new(sizes: RingSizes) -> SessionLog {
        SessionLog {
            sizes,
            rings: Mutex::new(Rings {
                by_verdict: Default::default(),
                hourly: HashMap::new(),
                sequence: 0,
            }),
            names: Mutex::default(),
        }
    }

    /// A name learned while running; configured names win over it.
    pub fn set_name(&self, interface_id: &str, name: &str) {
        self.names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(interface_id.to_string(), name.to_string());
    }

    /// The names learned while running.
    pub fn names(&self) -> HashMap<String, String> {
        self.names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn sizes(&self) -> RingSizes {
        self.sizes
    }

    fn lock(&self) -> MutexGuard<'_, Rings> {
        // A writer that panicked left whole entries: the rings are still usable.
        self.rings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds decided sessions at once (one lock per batch, not per session).
    pub fn extend(&self, sessions: impl IntoIterator<Item = DecidedSession>) {
        let mut rings = self.lock();
        for session in sessions {
            rings
                .hourly
                .entry(session.interface_id.clone())
                .or_insert_with(HourlyCounts::new)
                .add(session.decided_at, session.verdict);
            let capacity = self.sizes.of(session.verdict);
            if capacity == 0 {
                continue;
            }
            rings.sequence += 1;
            let sequence = rings.sequence;
            let ring = &mut rings.by_verdict[verdict_index(session.verdict)];
            if ring.len() == capacity {
                ring.pop_front();
            }
            ring.push_back((sequence, Arc::new(session)));
        }
    }

    /// The sessions the query admits, newest first, at most `query.limit`.
    pub fn query(&self, query: &SessionQuery) -> Vec<Arc<DecidedSession>> {
        let rings = self.lock();
        let verdicts: &[Verdict] = match &query.verdict {
            Some(verdict) => std::slice::from_ref(verdict),
            None => &Verdict::ALL,
        };
        let mut found: Vec<(u64, Arc<DecidedSession>)> = Vec::new();
        for verdict in verdicts {
            // Each ring is oldest first: walk it newest first and stop at the limit.
            found.extend(
                rings.by_verdict[verdict_index(*verdict)]
                    .iter()
                    .rev()
                    .filter(|(_, session)| query.admits(session))
                    .take(query.limit)
                    .cloned(),
            );
        }
        drop(rings);
        found.sort_by_key(|(sequence, _)| std::cmp::Reverse(*sequence));
        found.truncate(query.limit);
        found.into_iter().map(|(_, session)| session).collect()
    }

    /// Sessions held, over every ring.
    pub fn len(&self) -> usize {
        self.lock().by_verdict.iter().map(VecDeque::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Per interface seen in the last hour, its verdict counts then, sorted by id.
    pub fn last_hour(&self, now: u64) -> Vec<(String, VerdictCounts)> {
        let rings = self.lock();
        let mut counts: Vec<(String, VerdictCounts)> = rings
            .hourly
            .iter()
            .map(|(id, hourly)| (id.clone(), hourly.last_hour(now)))
            .filter(|(_, counts)| counts.total() > 0)
            .collect();
        counts.sort_by(|a, b| a.0.cmp(&b.0));
        counts
    }
}

/// How to read a session's records again: the command `inspect` (a log
/// group) or `analyze` (files) with the flags that select its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProofSource {
    LogGroup {
        name: String,
        region: Option<String>,
        endpoint_url: Option<String>,
        /// The group's `role_arn` and `external_id`: another account's
        /// group is read again with the same role.
        role_arn: Option<String>,
        external_id: Option<String>,
        log_format: String,
    },
    Files {
        paths: Vec<String>,
        log_format: String,
        /// Replayed records had their times shifted: the files' times differ.
        replayed: bool,
    },
    /// S3 delivery: `analyze s3://…` of the folders above the objects'
    /// date partitions; the session's times pick the partitions to list.
    Objects {
        urls: Vec<String>,
        region: Option<String>,
        endpoint_url: Option<String>,
    },
}

/// Quotes a word for a POSIX shell when it needs it.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=,@+%".contains(&b));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// A margin around a session's times, for records that start before its
/// first one ends (CloudWatch keys records by their start).
const WINDOW_MARGIN_SECONDS: u64 = 60;

impl ProofSource {
    /// The command that reads the records of `session` again.
    pub fn command(&self, session: &SessionReport<'_>) -> String {
        let mut words: Vec<String> = vec!["vpc-flow-exporter".into()];
        let log_format = match self {
            ProofSource::LogGroup {
                name,
                region,
                endpoint_url,
                role_arn,
                external_id,
                log_format,
            } => {
                words.extend(["inspect".into(), "--log-group".into(), shell_word(name)]);
                if let Some(region) = region {
                    words.extend(["--region".into(), shell_word(region)]);
                }
                if let Some(endpoint_url) = endpoint_url {
                    words.extend(["--endpoint-url".into(), shell_word(endpoint_url)]);
                }
                if let Some(role_arn) = role_arn {
                    words.extend(["--role-arn".into(), shell_word(role_arn)]);
                }
                if let Some(external_id) = external_id {
                    words.extend(["--external-id".into(), shell_word(external_id)]);
                }
                log_format
            }
            ProofSource::Files { log_format, .. } => {
                words.push("analyze".into());
                log_format
            }
            ProofSource::Objects {
                region,
                endpoint_url,
                ..
            } => {
                words.push("analyze".into());
                if let Some(region) = region {
                    words.extend(["--region".into(), shell_word(region)]);
                }
                if let Some(endpoint_url) = endpoint_url {
                    words.extend(["--endpoint-url".into(), shell_word(endpoint_url)]);
                }
                "auto"
            }
        };
        if log_format != "auto" {
            words.extend(["--log-format".into(), shell_word(log_format)]);
        }
        words.extend([
            "--details".into(),
            "--interface".into(),
            shell_word(session.interface_id),
            "--address".into(),
            session.initiator.addr.to_string(),
            "--port".into(),
            session.responder.port.to_string(),
        ]);
        let times_hold = !matches!(self, ProofSource::Files { replayed: true, .. });
        if times_hold && let (Some(start), Some(end)) = (session.start, session.end) {
            words.extend([
                "--since".into(),
                start.saturating_sub(WINDOW_MARGIN_SECONDS).to_string(),
                "--until".into(),
                end.saturating_add(WINDOW_MARGIN_SECONDS).to_string(),
            ]);
        }
        match self {
            ProofSource::Files { paths, .. } => {
                words.extend(paths.iter().map(|path| shell_word(path)));
            }
            ProofSource::Objects { urls, .. } => {
                words.extend(urls.iter().map(|url| shell_word(url)));
            }
            ProofSource::LogGroup { .. } => {}
        }
        words.join(" ")
    }
}

/// `inner`, with each decided session kept for the log.
pub type Recorded<'a, O> = Both<O, Recorder<'a>>;

impl<'a, O> Recorded<'a, O> {
    /// `now` is the wall clock the sessions are decided at, Unix seconds.
    pub fn new(inner: O, log: &'a SessionLog, proof: &'a ProofSource, now: u64) -> Self {
        Both(
            inner,
            Recorder {
                log,
                proof,
                now,
                decided: Vec::new(),
            },
        )
    }
}

/// Keeps each decided session; the log gets them when this is dropped.
pub struct Recorder<'a> {
    log: &'a SessionLog,
    proof: &'a ProofSource,
    now: u64,
    decided: Vec<DecidedSession>,
}

impl Drop for Recorder<'_> {
    fn drop(&mut self) {
        if !self.decided.is_empty() {
            self.log.extend(self.decided.drain(..));
        }
    }
}

impl SessionObserver for Recorder<'_> {
    fn decided(&mut self, session: &SessionReport<'_>) {
        // Sessions a ring does not keep still count in the last hour; the
        // command is only written for those it keeps.
        let kept = self.log.sizes.of(session.verdict) > 0;
        self.decided.push(DecidedSession {
            interface_id: session.interface_id.to_string(),
            protocol: session.protocol,
            initiator: session.initiator,
            responder: session.responder,
            direction: session.direction,
            verdict: session.verdict,
            packets: session.packets,
            bytes: session.bytes,
            start: session.start,
            end: session.end,
            decided_at: self.now,
            inspect: if kept {
                self.proof.command(session)
            } else {
                String::new()
            },
        });
        // A flood decides more than a ring holds: keep the batch bounded too.
        if self.decided.len() >= 4096 {
            self.log.extend(self.decided.drain(..));
        }
    }

    fn traffic(&mut self, _: &str, _: Verdict, _: Direction, _: u64, _: u64) {}
    fn closed(&mut self, _: &SessionReport<'_>) {}
    fn evicted(&mut self, _: &str) {}
}

impl Observer for Recorder<'_> {
    fn record(&mut self, _: &str, _: Option<Action>, _: LogStatus) {}
    fn malformed(&mut self, _: Malformed) {}
}

#[cfg(test)]
mod tests;
