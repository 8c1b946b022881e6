//! One flow log record, parsed from one line without heap allocation, or
//! built field by field from typed columns (Parquet) with the same rules.
//!
//! Only the columns that correlation needs are parsed; every other column is
//! checked for nothing but its presence, so a record with a field AWS adds
//! tomorrow still parses today. A line that cannot be a record gives a
//! [`Malformed`] reason, which callers count: bad input is never a panic and
//! never silently lost.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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

impl FlowDirection {
    pub fn as_str(self) -> &'static str {
        match self {
            FlowDirection::Ingress => "ingress",
            FlowDirection::Egress => "egress",
        }
    }
}

/// What a record makes of a field, and so what a typed column of it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// A count, port, time or flag set: an integer, or its digits.
    Number,
    /// An id, address, action, status or direction: text.
    Text,
    /// Not used by correlation: only its presence counts.
    Unused,
}

impl FieldKind {
    pub fn of(field: &Field) -> FieldKind {
        match field {
            Field::SrcPort
            | Field::DstPort
            | Field::Protocol
            | Field::Packets
            | Field::Bytes
            | Field::Start
            | Field::End
            | Field::TcpFlags => FieldKind::Number,
            Field::InterfaceId
            | Field::SrcAddr
            | Field::DstAddr
            | Field::PktSrcAddr
            | Field::PktDstAddr
            | Field::Action
            | Field::LogStatus
            | Field::FlowDirection
            | Field::InstanceId => FieldKind::Text,
            _ => FieldKind::Unused,
        }
    }
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
    /// An event time that cannot be right (see `plausible.rs`).
    BadTime,
}

impl Malformed {
    pub const ALL: [Malformed; 9] = [
        Malformed::FieldCount,
        Malformed::BadAddress,
        Malformed::BadNumber,
        Malformed::BadAction,
        Malformed::BadLogStatus,
        Malformed::BadFlowDirection,
        Malformed::MissingField,
        Malformed::NotUtf8,
        Malformed::BadTime,
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
            Malformed::BadTime => "bad_time",
        }
    }
}

/// The columns correlation uses; `None` where the format lacks the field or
/// the record says `-`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

impl<'a> Record<'a> {
    /// Every field absent, as a format without any of them reads.
    pub fn absent() -> Record<'a> {
        Record {
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
        }
    }

    /// Sets `field` from its text as a line has it (`-`: absent). A field
    /// correlation does not use is left alone.
    pub fn set_text(&mut self, field: &Field, token: &'a str) -> Result<(), Malformed> {
        match field {
            Field::InterfaceId => self.interface_id = token,
            Field::InstanceId => self.instance_id = Some(token),
            _ => self.set_bytes(field, token.as_bytes())?,
        }
        Ok(())
    }

    /// As [`Record::set_text`], for bytes not yet known to be text (a
    /// typed column's string): only the ids, kept as text, are checked
    /// (`not_utf8`); every other field accepts nothing but ASCII anyway, and
    /// rejects other bytes for its own reason.
    pub fn set_bytes(&mut self, field: &Field, token: &'a [u8]) -> Result<(), Malformed> {
        match field {
            Field::InterfaceId | Field::InstanceId => {
                let text = std::str::from_utf8(token).map_err(|_| Malformed::NotUtf8)?;
                return self.set_text(field, text);
            }
            Field::SrcAddr => self.srcaddr = address(token)?,
            Field::DstAddr => self.dstaddr = address(token)?,
            Field::PktSrcAddr => self.pkt_srcaddr = address(token)?,
            Field::PktDstAddr => self.pkt_dstaddr = address(token)?,
            Field::SrcPort => self.srcport = number(token)?,
            Field::DstPort => self.dstport = number(token)?,
            Field::Protocol => self.protocol = number(token)?,
            Field::Packets => self.packets = number(token)?,
            Field::Bytes => self.bytes = number(token)?,
            Field::Start => self.start = number(token)?,
            Field::End => self.end = number(token)?,
            Field::TcpFlags => self.tcp_flags = number(token)?,
            Field::Action => self.action = action(token)?,
            Field::LogStatus => self.log_status = log_status(token)?,
            Field::FlowDirection => self.flow_direction = flow_direction(token)?,
            _ => {}
        }
        Ok(())
    }

    /// Sets a [`FieldKind::Number`] field from an integer of any width (a
    /// typed column): a value the field cannot hold (negative, too large)
    /// is `bad_number`, as its digits would be. Other fields are left alone.
    pub fn set_integer(&mut self, field: &Field, value: i128) -> Result<(), Malformed> {
        fn fit<T: TryFrom<i128>>(value: i128) -> Result<Option<T>, Malformed> {
            T::try_from(value)
                .map(Some)
                .map_err(|_| Malformed::BadNumber)
        }
        match field {
            Field::SrcPort => self.srcport = fit(value)?,
            Field::DstPort => self.dstport = fit(value)?,
            Field::Protocol => self.protocol = fit(value)?,
            Field::Packets => self.packets = fit(value)?,
            Field::Bytes => self.bytes = fit(value)?,
            Field::Start => self.start = fit(value)?,
            Field::End => self.end = fit(value)?,
            Field::TcpFlags => self.tcp_flags = fit(value)?,
            _ => {}
        }
        Ok(())
    }

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

    /// Parses one line already known to be text (a CloudWatch event's
    /// message, say): as [`RecordParser::parse_bytes`], without its UTF-8
    /// check.
    pub fn parse<'a>(&self, line: &'a str) -> Result<Record<'a>, Malformed> {
        let mut record = Record::absent();
        let mut cursor = Cursor { line, at: 0 };
        for field in self.format.fields() {
            if !cursor.skip_whitespace() {
                return Err(Malformed::FieldCount);
            }
            match field {
                Field::InterfaceId => record.interface_id = cursor.token(),
                Field::SrcAddr => record.srcaddr = cursor.address()?,
                Field::DstAddr => record.dstaddr = cursor.address()?,
                Field::PktSrcAddr => record.pkt_srcaddr = cursor.address()?,
                Field::PktDstAddr => record.pkt_dstaddr = cursor.address()?,
                Field::SrcPort => record.srcport = cursor.number()?,
                Field::DstPort => record.dstport = cursor.number()?,
                Field::Protocol => record.protocol = cursor.number()?,
                Field::Packets => record.packets = cursor.number()?,
                Field::Bytes => record.bytes = cursor.number()?,
                Field::Start => record.start = cursor.number()?,
                Field::End => record.end = cursor.number()?,
                Field::TcpFlags => record.tcp_flags = cursor.number()?,
                Field::Action => record.action = action(cursor.token())?,
                Field::LogStatus => record.log_status = log_status(cursor.token())?,
                Field::FlowDirection => record.flow_direction = flow_direction(cursor.token())?,
                Field::InstanceId => record.instance_id = Some(cursor.token()),
                _ => {
                    cursor.token();
                }
            }
        }
        if cursor.skip_whitespace() {
            return Err(Malformed::FieldCount);
        }
        self.complete(record)
    }

    /// Parses one line. Works on bytes: the only columns turned into text
    /// are the ones kept as text (interface and instance ids).
    pub fn parse_bytes<'a>(&self, line: &'a [u8]) -> Result<Record<'a>, Malformed> {
        // Checked once, so that every token is text without a second check
        // (ASCII lines, nearly all of them, take the standard fast path).
        match std::str::from_utf8(line) {
            Ok(line) => self.parse(line),
            Err(_) => Err(Malformed::NotUtf8),
        }
    }

    /// The check of a record whose every field is set: an `OK` record of
    /// a format with `action` needs the action and both addresses.
    pub fn complete<'a>(&self, record: Record<'a>) -> Result<Record<'a>, Malformed> {
        let needs_session_fields = record.log_status == LogStatus::Ok && self.has_action;
        if needs_session_fields
            && (record.action.is_none() || record.srcaddr.is_none() || record.dstaddr.is_none())
        {
            return Err(Malformed::MissingField);
        }
        Ok(record)
    }

    /// The line of this format that parses back into `record` (`-` for the
    /// fields a record does not keep): how a record built from typed
    /// columns is held as text when it must wait (see `pipeline.rs`).
    /// Text values are single tokens, as parsing made them.
    pub fn render(&self, record: &Record<'_>) -> Vec<u8> {
        use std::io::Write;
        fn put<T: std::fmt::Display>(line: &mut Vec<u8>, value: Option<T>) {
            match value {
                Some(value) => {
                    let _ = write!(line, "{value}");
                }
                None => line.push(b'-'),
            }
        }
        let mut line = Vec::with_capacity(128);
        for (position, field) in self.format.fields().iter().enumerate() {
            if position > 0 {
                line.push(b' ');
            }
            let line = &mut line;
            match field {
                Field::InterfaceId => line.extend_from_slice(record.interface_id.as_bytes()),
                Field::SrcAddr => put(line, record.srcaddr),
                Field::DstAddr => put(line, record.dstaddr),
                Field::PktSrcAddr => put(line, record.pkt_srcaddr),
                Field::PktDstAddr => put(line, record.pkt_dstaddr),
                Field::SrcPort => put(line, record.srcport),
                Field::DstPort => put(line, record.dstport),
                Field::Protocol => put(line, record.protocol),
                Field::Packets => put(line, record.packets),
                Field::Bytes => put(line, record.bytes),
                Field::Start => put(line, record.start),
                Field::End => put(line, record.end),
                Field::TcpFlags => put(line, record.tcp_flags),
                Field::Action => put(line, record.action.map(Action::as_str)),
                Field::LogStatus => line.extend_from_slice(record.log_status.as_str().as_bytes()),
                Field::FlowDirection => put(line, record.flow_direction.map(FlowDirection::as_str)),
                Field::InstanceId => put(line, record.instance_id),
                _ => line.push(b'-'),
            }
        }
        line
    }
}

/// Reads the fields of a line, runs of bytes between runs of ASCII
/// whitespace, in order. Numbers and IPv4 addresses (most of a record's
/// bytes) are read in the same pass that finds where their field ends;
/// anything unusual is re-read as a whole token by [`number`] or
/// [`address`], so the result is always theirs. A field starts and ends at
/// an ASCII byte, so slicing the text there never splits a character.
struct Cursor<'a> {
    line: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    /// Moves to the next field; false when the line has no more.
    fn skip_whitespace(&mut self) -> bool {
        let bytes = self.line.as_bytes();
        while self.at < bytes.len() && bytes[self.at].is_ascii_whitespace() {
            self.at += 1;
        }
        self.at < bytes.len()
    }

    /// True when a field that started at the cursor ends at `at`.
    fn field_ends(&self, at: usize) -> bool {
        self.line
            .as_bytes()
            .get(at)
            .is_none_or(|byte| byte.is_ascii_whitespace())
    }

    /// The field at the cursor (which is on one), as text.
    fn token(&mut self) -> &'a str {
        let bytes = self.line.as_bytes();
        let start = self.at;
        let mut end = start + 1;
        while end < bytes.len() && !bytes[end].is_ascii_whitespace() {
            end += 1;
        }
        self.at = end;
        &self.line[start..end]
    }

    fn number<T: TryFrom<u64>>(&mut self) -> Result<Option<T>, Malformed> {
        let bytes = self.line.as_bytes();
        let start = self.at;
        let mut end = start;
        let mut value: u64 = 0;
        // Nineteen digits cannot overflow a u64; a longer run takes the
        // checked path.
        while end < bytes.len() && end - start < 19 {
            let digit = bytes[end].wrapping_sub(b'0');
            if digit > 9 {
                break;
            }
            value = value * 10 + u64::from(digit);
            end += 1;
        }
        if end == start || !self.field_ends(end) {
            return number(self.token());
        }
        self.at = end;
        T::try_from(value)
            .map(Some)
            .map_err(|_| Malformed::BadNumber)
    }

    fn address(&mut self) -> Result<Option<IpAddr>, Malformed> {
        let start = self.at;
        match ipv4_prefix(&self.line.as_bytes()[start..]) {
            Some((v4, len)) if self.field_ends(start + len) => {
                self.at = start + len;
                Ok(Some(IpAddr::V4(v4)))
            }
            _ => address(self.token()),
        }
    }
}

/// A dotted-quad IPv4 address at the start of `bytes`, and its length; as
/// strict as the standard library (no leading zeros). Stops at the first
/// byte that is neither a digit nor a dot.
fn ipv4_prefix(bytes: &[u8]) -> Option<(Ipv4Addr, usize)> {
    let mut octets = [0u8; 4];
    let mut at = 0;
    for (index, octet) in octets.iter_mut().enumerate() {
        if index > 0 {
            if bytes.get(at) != Some(&b'.') {
                return None;
            }
            at += 1;
        }
        let start = at;
        let mut value: u16 = 0;
        while let Some(digit) = bytes.get(at).map(|byte| byte.wrapping_sub(b'0')) {
            if digit > 9 {
                break;
            }
            // A fourth digit is more than 255 or follows a leading zero.
            if at - start == 3 {
                return None;
            }
            value = value * 10 + u16::from(digit);
            at += 1;
        }
        let leading_zero = at - start > 1 && bytes[start] == b'0';
        if at == start || leading_zero || value > 255 {
            return None;
        }
        *octet = value as u8;
    }
    // A fifth part is no address.
    if bytes.get(at) == Some(&b'.') {
        return None;
    }
    Some((Ipv4Addr::from(octets), at))
}

/// The helpers below read bytes, text or not: a value they accept is ASCII.
fn address(token: &(impl AsRef<[u8]> + ?Sized)) -> Result<Option<IpAddr>, Malformed> {
    let token = token.as_ref();
    if token == b"-" {
        return Ok(None);
    }
    if let Some(v4) = ipv4(token) {
        return Ok(Some(IpAddr::V4(v4)));
    }
    if token.contains(&b':') {
        return std::str::from_utf8(token)
            .ok()
            .and_then(|text| text.parse::<Ipv6Addr>().ok())
            .map(|v6| Some(IpAddr::V6(v6)))
            .ok_or(Malformed::BadAddress);
    }
    Err(Malformed::BadAddress)
}

/// Dotted-quad IPv4, as strict as the standard library (no leading zeros).
fn ipv4(token: &[u8]) -> Option<Ipv4Addr> {
    ipv4_prefix(token).and_then(|(v4, len)| (len == token.len()).then_some(v4))
}

fn number<T: TryFrom<u64>>(token: &(impl AsRef<[u8]> + ?Sized)) -> Result<Option<T>, Malformed> {
    let token = token.as_ref();
    if token == b"-" {
        return Ok(None);
    }
    if token.is_empty() || token.len() > 20 {
        return Err(Malformed::BadNumber);
    }
    let mut value: u64 = 0;
    if token.len() < 20 {
        // Nineteen digits cannot overflow a u64: no checks on the common path.
        for &byte in token {
            let digit = byte.wrapping_sub(b'0');
            if digit > 9 {
                return Err(Malformed::BadNumber);
            }
            value = value * 10 + u64::from(digit);
        }
    } else {
        for &byte in token {
            let digit = byte.wrapping_sub(b'0');
            if digit > 9 {
                return Err(Malformed::BadNumber);
            }
            value = value
                .checked_mul(10)
                .and_then(|value| value.checked_add(u64::from(digit)))
                .ok_or(Malformed::BadNumber)?;
        }
    }
    T::try_from(value)
        .map(Some)
        .map_err(|_| Malformed::BadNumber)
}

fn action(token: &(impl AsRef<[u8]> + ?Sized)) -> Result<Option<Action>, Malformed> {
    match token.as_ref() {
        b"ACCEPT" => Ok(Some(Action::Accept)),
        b"REJECT" => Ok(Some(Action::Reject)),
        b"-" => Ok(None),
        _ => Err(Malformed::BadAction),
    }
}

fn log_status(token: &(impl AsRef<[u8]> + ?Sized)) -> Result<LogStatus, Malformed> {
    match token.as_ref() {
        b"OK" => Ok(LogStatus::Ok),
        b"NODATA" => Ok(LogStatus::NoData),
        b"SKIPDATA" => Ok(LogStatus::SkipData),
        _ => Err(Malformed::BadLogStatus),
    }
}

fn flow_direction(token: &(impl AsRef<[u8]> + ?Sized)) -> Result<Option<FlowDirection>, Malformed> {
    match token.as_ref() {
        b"ingress" => Ok(Some(FlowDirection::Ingress)),
        b"egress" => Ok(Some(FlowDirection::Egress)),
        b"-" => Ok(None),
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

    const RICH: &str = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status instance-id tcp-flags pkt-srcaddr pkt-dstaddr flow-direction";

    #[test]
    fn a_rendered_record_parses_back_into_itself() {
        let parser = RecordParser::new(LogFormat::parse(RICH).unwrap());
        for line in [
            "3 123456789010 eni-1 10.0.1.10 52.94.0.89 32768 443 6 36 19620 1700000005 1700000041 ACCEPT OK i-0 3 10.0.1.10 52.94.0.89 egress",
            "3 123456789010 eni-1 2001:db8::1 ::ffff:10.0.0.1 22 1 17 1 1 1 2 REJECT OK - - - - ingress",
            "3 123456789010 - - - - - - - - 1 2 - NODATA - - - - -",
        ] {
            let record = parser.parse(line).unwrap();
            let rendered = parser.render(&record);
            assert_eq!(parser.parse_bytes(&rendered), Ok(record), "{line}");
        }
    }

    #[test]
    fn typed_values_follow_the_rules_of_their_text() {
        let mut record = Record::absent();
        assert_eq!(record.set_integer(&Field::SrcPort, 443), Ok(()));
        assert_eq!(record.srcport, Some(443));
        assert_eq!(
            record.set_integer(&Field::End, i128::from(u64::MAX)),
            Ok(())
        );
        assert_eq!(record.end, Some(u64::MAX));
        for (field, value) in [
            (Field::DstPort, 70000),
            (Field::Protocol, 256),
            (Field::Packets, -1),
            (Field::Start, i128::from(u64::MAX) + 1),
        ] {
            assert_eq!(record.set_integer(&field, value), Err(Malformed::BadNumber));
            let digits = value.to_string();
            let mut from_text = Record::absent();
            assert_eq!(
                from_text.set_text(&field, &digits),
                Err(Malformed::BadNumber)
            );
        }
        // Not a number: left alone, as a line leaves an unused column.
        assert_eq!(record.set_integer(&Field::Version, 2), Ok(()));
        assert_eq!(record.set_integer(&Field::SrcAddr, 1), Ok(()));
        assert_eq!(record.srcaddr, None);
        assert_eq!(FieldKind::of(&Field::SrcAddr), FieldKind::Text);
        assert_eq!(FieldKind::of(&Field::TcpFlags), FieldKind::Number);
        assert_eq!(FieldKind::of(&Field::AccountId), FieldKind::Unused);
        // What the parser checks once every field is set.
        let parser = v2();
        assert_eq!(
            parser.complete(Record::absent()),
            Err(Malformed::MissingField)
        );
    }

    proptest::proptest! {
        /// The one-pass IPv4 reader agrees with the standard library on
        /// anything made of digits and dots.
        #[test]
        fn ipv4_agrees_with_std(token in "[0-9.]{0,17}") {
            proptest::prop_assert_eq!(ipv4(token.as_bytes()), token.parse::<Ipv4Addr>().ok());
        }

        #[test]
        fn ipv4_agrees_with_std_on_addresses(octets: [u8; 4], pad in 0usize..4) {
            let token = format!("{}{}", "0".repeat(pad), Ipv4Addr::from(octets));
            proptest::prop_assert_eq!(ipv4(token.as_bytes()), token.parse::<Ipv4Addr>().ok());
        }

        /// Numbers agree with the standard library, up to and past u64's
        /// limit (longer than 20 digits is never a flow log's number).
        #[test]
        fn numbers_agree_with_std(token in "[0-9]{1,21}|[0-9+ a-]{1,4}") {
            let expected = if token == "-" { Ok(None) } else {
                token.parse::<u64>().ok()
                    .filter(|_| token.len() <= 20 && token.bytes().all(|b| b.is_ascii_digit()))
                    .map(Some).ok_or(Malformed::BadNumber)
            };
            proptest::prop_assert_eq!(number::<u64>(&token), expected);
        }
    }

    proptest::proptest! {
        /// The one-pass readers of a field give what reading the whole
        /// token gives, and stop where the token ends.
        #[test]
        fn cursor_reads_as_tokens_do(
            field in "[0-9.:a-f-]{1,24}|[0-9]{1,22}|[0-9]{1,3}(\\.[0-9]{1,3}){3}",
            after in "|[ \t]{1,2}[0-9x]{0,3}",
        ) {
            let line = format!("{field}{after}");
            let mut cursor = Cursor { line: &line, at: 0 };
            proptest::prop_assert_eq!(cursor.number::<u64>(), number::<u64>(&field));
            let read = cursor.at;
            let mut cursor = Cursor { line: &line, at: 0 };
            proptest::prop_assert_eq!(cursor.address(), address(&field));
            if number::<u64>(&field).is_ok() {
                proptest::prop_assert_eq!(read, field.len());
            }
            if address(&field).is_ok() {
                proptest::prop_assert_eq!(cursor.at, field.len());
            }
        }
    }
}
