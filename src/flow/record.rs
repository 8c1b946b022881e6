//! One flow log record, parsed from one line without heap allocation.
//!
//! Only the columns that correlation needs are parsed; every other column is
//! checked for nothing but its presence, so a record with a field AWS adds
//! tomorrow still parses today. A line that cannot be a record gives a
//! [`Malformed`] reason, which callers count: bad input is never a panic and
//! never silently lost.

use std::net::IpAddr;

use super::format::{Field, LogFormat};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Accept,
    Reject,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Accept => "ACCEPT",
            Action::Reject => "REJECT",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogStatus {
    /// Data is logging normally.
    Ok,
    /// No traffic to or from the interface during the capture window.
    NoData,
    /// Records were skipped during the capture window: data was lost.
    SkipData,
}

impl LogStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStatus::Ok => "OK",
            LogStatus::NoData => "NODATA",
            LogStatus::SkipData => "SKIPDATA",
        }
    }
}

/// The `flow-direction` field (version 5): relative to the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowDirection {
    Ingress,
    Egress,
}

/// Why a line is not a usable record. The set is closed: it is a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Malformed {
    /// More or fewer fields than the format names.
    FieldCount,
    BadAddress,
    BadNumber,
    BadAction,
    BadLogStatus,
    BadFlowDirection,
    /// An `OK` record without the addresses or action a session needs.
    MissingField,
    NotUtf8,
}

impl Malformed {
    pub const ALL: [Malformed; 8] = [
        Malformed::FieldCount,
        Malformed::BadAddress,
        Malformed::BadNumber,
        Malformed::BadAction,
        Malformed::BadLogStatus,
        Malformed::BadFlowDirection,
        Malformed::MissingField,
        Malformed::NotUtf8,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Malformed::FieldCount => "field_count",
            Malformed::BadAddress => "bad_address",
            Malformed::BadNumber => "bad_number",
            Malformed::BadAction => "bad_action",
            Malformed::BadLogStatus => "bad_log_status",
            Malformed::BadFlowDirection => "bad_flow_direction",
            Malformed::MissingField => "missing_field",
            Malformed::NotUtf8 => "not_utf8",
        }
    }
}

/// The columns correlation uses; `None` where the format lacks the field or
/// the record says `-`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// `-` when the format has no `interface-id`.
    pub interface_id: &'a str,
    pub srcaddr: Option<IpAddr>,
    pub dstaddr: Option<IpAddr>,
    pub srcport: Option<u16>,
    pub dstport: Option<u16>,
    pub protocol: Option<u8>,
    pub packets: Option<u64>,
    pub bytes: Option<u64>,
    pub start: Option<u64>,
    pub end: Option<u64>,
    pub action: Option<Action>,
    pub log_status: LogStatus,
    pub tcp_flags: Option<u16>,
    pub pkt_srcaddr: Option<IpAddr>,
    pub pkt_dstaddr: Option<IpAddr>,
    pub instance_id: Option<&'a str>,
    pub flow_direction: Option<FlowDirection>,
}

impl Record<'_> {
    /// The record's event time: its end, else its start.
    pub fn time(&self) -> Option<u64> {
        self.end.or(self.start)
    }

    /// True when the record shows traffic forwarded for other hosts: the
    /// packet addresses differ from the interface's, or no instance owns it.
    pub fn marks_intermediate(&self) -> bool {
        let translated = |pkt: Option<IpAddr>, addr: Option<IpAddr>| matches!((pkt, addr), (Some(pkt), Some(addr)) if pkt != addr);
        self.log_status == LogStatus::Ok
            && (translated(self.pkt_srcaddr, self.srcaddr)
                || translated(self.pkt_dstaddr, self.dstaddr)
                || self.instance_id == Some("-"))
    }
}

/// Parses lines of one format.
#[derive(Debug, Clone)]
pub struct RecordParser {
    format: LogFormat,
    has_action: bool,
}

impl RecordParser {
    pub fn new(format: LogFormat) -> RecordParser {
        let has_action = format.has(&Field::Action);
        RecordParser { format, has_action }
    }

    pub fn format(&self) -> &LogFormat {
        &self.format
    }

    /// True when records of this format can form sessions.
    pub fn has_action(&self) -> bool {
        self.has_action
    }

    pub fn parse_bytes<'a>(&self, line: &'a [u8]) -> Result<Record<'a>, Malformed> {
        let line = std::str::from_utf8(line).map_err(|_| Malformed::NotUtf8)?;
        self.parse(line)
    }

    pub fn parse<'a>(&self, line: &'a str) -> Result<Record<'a>, Malformed> {
        let mut record = Record {
            interface_id: "-",
            srcaddr: None,
            dstaddr: None,
            srcport: None,
            dstport: None,
            protocol: None,
            packets: None,
            bytes: None,
            start: None,
            end: None,
            action: None,
            log_status: LogStatus::Ok,
            tcp_flags: None,
            pkt_srcaddr: None,
            pkt_dstaddr: None,
            instance_id: None,
            flow_direction: None,
        };
        let mut tokens = line.split_ascii_whitespace();
        for field in self.format.fields() {
            let token = tokens.next().ok_or(Malformed::FieldCount)?;
            match field {
                Field::InterfaceId => record.interface_id = token,
                Field::SrcAddr => record.srcaddr = address(token)?,
                Field::DstAddr => record.dstaddr = address(token)?,
                Field::PktSrcAddr => record.pkt_srcaddr = address(token)?,
                Field::PktDstAddr => record.pkt_dstaddr = address(token)?,
                Field::SrcPort => record.srcport = number(token)?,
                Field::DstPort => record.dstport = number(token)?,
                Field::Protocol => record.protocol = number(token)?,
                Field::Packets => record.packets = number(token)?,
                Field::Bytes => record.bytes = number(token)?,
                Field::Start => record.start = number(token)?,
                Field::End => record.end = number(token)?,
                Field::TcpFlags => record.tcp_flags = number(token)?,
                Field::Action => record.action = action(token)?,
                Field::LogStatus => record.log_status = log_status(token)?,
                Field::FlowDirection => record.flow_direction = flow_direction(token)?,
                Field::InstanceId => record.instance_id = Some(token),
                _ => {}
            }
        }
        if tokens.next().is_some() {
            return Err(Malformed::FieldCount);
        }
        let needs_session_fields = record.log_status == LogStatus::Ok && self.has_action;
        if needs_session_fields
            && (record.action.is_none() || record.srcaddr.is_none() || record.dstaddr.is_none())
        {
            return Err(Malformed::MissingField);
        }
        Ok(record)
    }
}

fn address(token: &str) -> Result<Option<IpAddr>, Malformed> {
    if token == "-" {
        return Ok(None);
    }
    token.parse().map(Some).map_err(|_| Malformed::BadAddress)
}

fn number<T: std::str::FromStr>(token: &str) -> Result<Option<T>, Malformed> {
    if token == "-" {
        return Ok(None);
    }
    token.parse().map(Some).map_err(|_| Malformed::BadNumber)
}

fn action(token: &str) -> Result<Option<Action>, Malformed> {
    match token {
        "ACCEPT" => Ok(Some(Action::Accept)),
        "REJECT" => Ok(Some(Action::Reject)),
        "-" => Ok(None),
        _ => Err(Malformed::BadAction),
    }
}

fn log_status(token: &str) -> Result<LogStatus, Malformed> {
    match token {
        "OK" => Ok(LogStatus::Ok),
        "NODATA" => Ok(LogStatus::NoData),
        "SKIPDATA" => Ok(LogStatus::SkipData),
        _ => Err(Malformed::BadLogStatus),
    }
}

fn flow_direction(token: &str) -> Result<Option<FlowDirection>, Malformed> {
    match token {
        "ingress" => Ok(Some(FlowDirection::Ingress)),
        "egress" => Ok(Some(FlowDirection::Egress)),
        "-" => Ok(None),
        _ => Err(Malformed::BadFlowDirection),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2() -> RecordParser {
        RecordParser::new(LogFormat::default_v2())
    }

    #[test]
    fn parses_a_version_2_record() {
        let line = "2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 20 4249 1418530010 1418530070 ACCEPT OK";
        let record = v2().parse(line).unwrap();
        assert_eq!(record.interface_id, "eni-1235b8ca123456789");
        assert_eq!(record.srcaddr, Some("172.31.16.139".parse().unwrap()));
        assert_eq!(record.dstport, Some(22));
        assert_eq!(record.protocol, Some(6));
        assert_eq!(record.bytes, Some(4249));
        assert_eq!(record.time(), Some(1418530070));
        assert_eq!(record.action, Some(Action::Accept));
        assert_eq!(record.log_status, LogStatus::Ok);
    }

    #[test]
    fn dash_means_absent() {
        let line =
            "2 123456789010 eni-1235b8ca123456789 - - - - - - - 1431280876 1431280934 - NODATA";
        let record = v2().parse(line).unwrap();
        assert_eq!(record.srcaddr, None);
        assert_eq!(record.action, None);
        assert_eq!(record.log_status, LogStatus::NoData);
    }

    #[test]
    fn ipv6_and_runs_of_whitespace() {
        let line = "2  123456789010\teni-1 2001:db8::1   2001:db8::2 34892 22 6 54 8855 1477913708 1477913820 ACCEPT OK";
        let record = v2().parse(line).unwrap();
        assert_eq!(record.dstaddr, Some("2001:db8::2".parse().unwrap()));
    }

    #[test]
    fn malformed_records_say_why() {
        let parser = v2();
        let cases = [
            (
                "2 1 eni-1 10.0.0.1 10.0.0.2 1 2 6 1 1 1 2 ACCEPT",
                Malformed::FieldCount,
            ),
            (
                "2 1 eni-1 10.0.0.1 10.0.0.2 1 2 6 1 1 1 2 ACCEPT OK extra",
                Malformed::FieldCount,
            ),
            (
                "2 1 eni-1 10.0.0.999 10.0.0.2 1 2 6 1 1 1 2 ACCEPT OK",
                Malformed::BadAddress,
            ),
            (
                "2 1 eni-1 10.0.0.1 10.0.0.2 70000 2 6 1 1 1 2 ACCEPT OK",
                Malformed::BadNumber,
            ),
            (
                "2 1 eni-1 10.0.0.1 10.0.0.2 1 2 6 1 1 1 2 ALLOW OK",
                Malformed::BadAction,
            ),
            (
                "2 1 eni-1 10.0.0.1 10.0.0.2 1 2 6 1 1 1 2 ACCEPT FINE",
                Malformed::BadLogStatus,
            ),
            (
                "2 1 eni-1 - 10.0.0.2 1 2 6 1 1 1 2 ACCEPT OK",
                Malformed::MissingField,
            ),
        ];
        for (line, reason) in cases {
            assert_eq!(parser.parse(line), Err(reason), "{line}");
        }
        assert_eq!(parser.parse_bytes(b"2 \xff"), Err(Malformed::NotUtf8));
    }

    #[test]
    fn unknown_columns_are_carried_not_parsed() {
        let format =
            LogFormat::parse("${interface-id} ${srcaddr} ${dstaddr} ${future-field} ${action}")
                .unwrap();
        let parser = RecordParser::new(format);
        let record = parser
            .parse("eni-1 10.0.0.1 10.0.0.2 anything-at-all ACCEPT")
            .unwrap();
        assert_eq!(record.action, Some(Action::Accept));
    }

    #[test]
    fn format_without_log_status_means_ok() {
        let format = LogFormat::parse("interface-id srcaddr dstaddr").unwrap();
        let record = RecordParser::new(format)
            .parse("eni-1 10.0.0.1 10.0.0.2")
            .unwrap();
        assert_eq!(record.log_status, LogStatus::Ok);
        assert_eq!(record.action, None);
    }
}
