//! The core's state as data: what a successor process needs so that,
//! restored and fed the remaining records, it counts exactly what an
//! uninterrupted process would have counted (issue 7, restarts).
//!
//! The types are plain serde data, apart from the in-memory layout, so the
//! session table can change shape without changing the file; `version`
//! changes when the meaning of a field does. Configuration (settings,
//! interface facts, filters) is not in it: a checkpoint is restored into a
//! pipeline built from the same configuration.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::correlate::CorrelatorCheckpointView;
use super::plausible::TimeCheck;

/// Everything a [`super::Pipeline`] holds that the records built up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineCheckpoint {
    /// [`PipelineCheckpoint::VERSION`] when it was written.
    pub version: u32,
    /// The format records are parsed with now (an S3 header may have set it).
    pub format: String,
    pub at_input_start: bool,
    pub times: TimeCheck,
    pub suspect: Option<SuspectCheckpoint>,
    pub correlator: CorrelatorCheckpoint,
}

impl PipelineCheckpoint {
    pub const VERSION: u32 = 1;
}

/// A [`PipelineCheckpoint`] borrowed from the live pipeline
/// ([`super::Pipeline::checkpoint_view`]): serializes as one, its sessions
/// written from the table one at a time.
#[derive(Serialize)]
pub struct PipelineCheckpointView<'a> {
    pub version: u32,
    pub format: String,
    pub at_input_start: bool,
    pub times: TimeCheck,
    pub suspect: Option<SuspectCheckpoint>,
    pub correlator: CorrelatorCheckpointView<'a>,
}

/// A record held back by the time check (offline only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuspectCheckpoint {
    pub line: String,
    pub format: String,
    pub fallback_time: Option<u64>,
    pub fallback_interface: String,
    pub time: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorrelatorCheckpoint {
    /// How many records of sessions were taken so far.
    pub arrivals: u64,
    /// Sessions opened so far (wrapping): each session's `generation` orders
    /// its deadlines among equal ones.
    pub generations: u32,
    pub interfaces: Vec<InterfaceCheckpoint>,
    /// Open sessions: pending, and decided but not yet idle (so a late stray
    /// record joins its session instead of opening a new one).
    pub sessions: Vec<SessionCheckpoint>,
    /// Sessions closed while waiting for their interface's local address,
    /// not yet reported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parked: Vec<SessionCheckpoint>,
    /// The time of a wall-clock advance written part way through
    /// (`Correlator::start_advance`): a successor finishes it before it
    /// takes a record, as this process would have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advancing: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceCheckpoint {
    pub id: String,
    pub watermark: Option<u64>,
    /// Learned from records (configuration may say so too).
    pub intermediate: bool,
    /// The local address learned from records, IPv4 then IPv6.
    pub learned: [Learned; 2],
}

/// What the records of an interface say about its own address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Learned {
    Unknown,
    EitherOf(IpAddr, IpAddr),
    Local(IpAddr),
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionCheckpoint {
    /// Index into [`CorrelatorCheckpoint::interfaces`].
    pub interface: usize,
    pub protocol: u8,
    /// The lower endpoint, which sends the `low` leg.
    pub low: (IpAddr, u16),
    pub high: (IpAddr, u16),
    #[serde(default, skip_serializing_if = "LegCheckpoint::is_unseen")]
    pub low_leg: LegCheckpoint,
    #[serde(default, skip_serializing_if = "LegCheckpoint::is_unseen")]
    pub high_leg: LegCheckpoint,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_time: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_time: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<u64>,
    pub packets: u64,
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<DecisionCheckpoint>,
    /// The watermark at which its interface looks at it next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<u64>,
    /// Its number in order of opening (not 0).
    pub generation: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LegCheckpoint {
    /// `accept` or `reject`; absent while this direction is unseen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Word>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<u64>,
    /// The order in which the session's two legs first arrived (rule 5):
    /// 1 or 2; 0 while unseen.
    pub arrival: u64,
    /// `ingress` or `egress`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_direction: Option<Word>,
}

impl LegCheckpoint {
    /// A direction no record came in yet: left out of the file.
    pub fn is_unseen(&self) -> bool {
        *self == LegCheckpoint::default()
    }
}

/// The closed words a checkpoint uses for the core's enums (actions, flow
/// directions, sides, verdicts): one place to keep the file stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Word {
    Accept,
    Reject,
    Ingress,
    Egress,
    Low,
    High,
    Accepted,
    RejectedInbound,
    RejectedOutbound,
    Unanswered,
    Refused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionCheckpoint {
    /// Absent for a session that gets no verdict (a lone accept on an
    /// intermediate interface).
    pub verdict: Option<Word>,
    pub direction: Option<Word>,
    pub initiator: Option<Word>,
    /// Decided, waiting for the interface's local address (verdict and
    /// direction absent until then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awaiting_address: Option<AwaitingCheckpoint>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwaitingCheckpoint {
    /// `accepted`, `refused`, `unanswered` or `reject`.
    pub outcome: Word,
    /// For `reject`: the side (`low` or `high`) whose records decide
    /// inbound or outbound.
    pub rejected: Option<Word>,
    /// The exporter's clock when the session was decided (absent: before
    /// the clock first moved).
    pub since: Option<u64>,
}

/// Why a checkpoint cannot be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    #[error("checkpoint version {found} is not {expected}, the version this build writes")]
    Version { found: u32, expected: u32 },
    #[error("checkpoint format \"{0}\" is not a log format")]
    Format(String),
    #[error("checkpoint session {session} names interface {interface}, of {count}")]
    Interface {
        session: usize,
        interface: usize,
        count: usize,
    },
    #[error("checkpoint session {0} has a word out of place in its decision or legs")]
    Word(usize),
}
