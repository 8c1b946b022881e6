//! What a session's records prove, and who started it.

use std::net::IpAddr;

use serde::Serialize;

/// The verdict of one session; decided once, never changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    /// Both directions accepted: the conversation was established.
    Accepted,
    /// The flow entering the interface was rejected (security group or NACL inbound).
    RejectedInbound,
    /// The flow leaving the interface was rejected (a NACL blocking replies, or an egress rule).
    RejectedOutbound,
    /// The request was let in and never answered: nothing listening, or a dead application.
    Unanswered,
    /// Something answered with a reset only: the port is closed.
    Refused,
}

impl Verdict {
    pub const ALL: [Verdict; 5] = [
        Verdict::Accepted,
        Verdict::RejectedInbound,
        Verdict::RejectedOutbound,
        Verdict::Unanswered,
        Verdict::Refused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Accepted => "accepted",
            Verdict::RejectedInbound => "rejected_inbound",
            Verdict::RejectedOutbound => "rejected_outbound",
            Verdict::Unanswered => "unanswered",
            Verdict::Refused => "refused",
        }
    }
}

/// Who started the session, seen from the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// The remote side started it.
    Ingress,
    /// The interface's own address started it.
    Egress,
}

impl Direction {
    pub const ALL: [Direction; 2] = [Direction::Ingress, Direction::Egress];

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

impl Serialize for Verdict {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl Serialize for Direction {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// One side of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub addr: IpAddr,
    pub port: u16,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.addr {
            IpAddr::V4(addr) => write!(f, "{addr}:{}", self.port),
            IpAddr::V6(addr) => write!(f, "[{addr}]:{}", self.port),
        }
    }
}

/// A decided session, as observers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionReport<'a> {
    pub interface_id: &'a str,
    pub protocol: u8,
    pub initiator: Endpoint,
    pub responder: Endpoint,
    pub direction: Direction,
    pub verdict: Verdict,
    /// Both directions, every record so far.
    pub packets: u64,
    pub bytes: u64,
    pub start: Option<u64>,
    pub end: Option<u64>,
    /// The interface's local address was not known when the session was
    /// reported: its direction (and a rejection's side) is DESIGN's
    /// fallback, "the request's destination is local".
    pub direction_by_fallback: bool,
}

/// The `protocol` label: IANA keywords for the common protocols, else the number.
pub fn protocol_name(protocol: u8) -> std::borrow::Cow<'static, str> {
    match protocol {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        47 => "gre".into(),
        50 => "esp".into(),
        58 => "icmpv6".into(),
        other => other.to_string().into(),
    }
}
