//! Lines in, observations out: header detection, parsing, filtering,
//! counting and correlation, in the order every source needs them.

use std::collections::HashMap;
use std::net::IpAddr;

use super::correlate::{Correlator, InterfaceFacts, SessionObserver, Settings};
use super::format::{FormatChoice, LogFormat};
use super::record::{Action, LogStatus, Malformed, Record, RecordParser};

/// Receives every line's fate, and what correlation decides.
pub trait Observer: SessionObserver {
    /// A well-formed record that passed the filter.
    fn record(&mut self, interface_id: &str, action: Option<Action>, log_status: LogStatus);
    /// A line that is not a usable record.
    fn malformed(&mut self, reason: Malformed);
}

/// Narrows records before correlation, as an engineer does in the console.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordFilter {
    pub interface_id: Option<String>,
    /// Either side of the record.
    pub address: Option<IpAddr>,
    /// Either side of the record.
    pub port: Option<u16>,
    /// Event time at or after, in Unix seconds.
    pub since: Option<u64>,
    /// Event time at or before, in Unix seconds.
    pub until: Option<u64>,
}

impl RecordFilter {
    pub fn is_empty(&self) -> bool {
        *self == RecordFilter::default()
    }

    pub fn admits(&self, record: &Record<'_>, time: Option<u64>) -> bool {
        if let Some(interface_id) = &self.interface_id
            && record.interface_id != interface_id
        {
            return false;
        }
        if let Some(address) = self.address
            && record.srcaddr != Some(address)
            && record.dstaddr != Some(address)
        {
            return false;
        }
        if let Some(port) = self.port
            && record.srcport != Some(port)
            && record.dstport != Some(port)
        {
            return false;
        }
        let in_window = |bound: Option<u64>, inside: fn(u64, u64) -> bool| match (bound, time) {
            (None, _) => true,
            (Some(bound), Some(time)) => inside(time, bound),
            (Some(_), None) => false,
        };
        in_window(self.since, |time, since| time >= since)
            && in_window(self.until, |time, until| time <= until)
    }
}

/// Turns lines of flow-log input into counts and sessions.
pub struct Pipeline {
    choice: FormatChoice,
    parser: RecordParser,
    at_input_start: bool,
    filter: RecordFilter,
    /// Added to record times: replaying old records as if they were recent.
    time_offset: i64,
    correlator: Correlator,
}

impl Pipeline {
    pub fn new(
        choice: FormatChoice,
        settings: Settings,
        facts: HashMap<String, InterfaceFacts>,
        filter: RecordFilter,
    ) -> Pipeline {
        let format = match &choice {
            FormatChoice::Auto => LogFormat::default_v2(),
            FormatChoice::Fixed(format) => format.clone(),
        };
        Pipeline {
            choice,
            parser: RecordParser::new(format),
            at_input_start: true,
            filter,
            time_offset: 0,
            correlator: Correlator::new(settings, facts),
        }
    }

    pub fn correlator(&self) -> &Correlator {
        &self.correlator
    }

    /// The format records are parsed with now.
    pub fn format(&self) -> &LogFormat {
        self.parser.format()
    }

    /// The next line starts a new input (a file): it may be a header line.
    pub fn begin_input(&mut self) {
        self.at_input_start = true;
    }

    pub fn set_time_offset(&mut self, offset: i64) {
        self.time_offset = offset;
    }

    /// One line, with or without its line ending. `fallback_time` is the
    /// event time for records that carry none (the CloudWatch timestamp).
    /// Returns the record's own end time when it was taken (for measuring
    /// delivery delay).
    pub fn push_line(
        &mut self,
        line: &[u8],
        fallback_time: Option<u64>,
        observer: &mut impl Observer,
    ) -> Option<u64> {
        let line = line.trim_ascii();
        if line.is_empty() {
            return None;
        }
        if std::mem::take(&mut self.at_input_start) && self.take_header(line) {
            return None;
        }
        let mut record = match self.parser.parse_bytes(line) {
            Ok(record) => record,
            Err(reason) => {
                observer.malformed(reason);
                return None;
            }
        };
        if self.time_offset != 0 {
            record.start = record
                .start
                .map(|t| t.saturating_add_signed(self.time_offset));
            record.end = record
                .end
                .map(|t| t.saturating_add_signed(self.time_offset));
        }
        let time = record.time().or(fallback_time);
        if !self.filter.admits(&record, time) {
            return None;
        }
        observer.record(record.interface_id, record.action, record.log_status);
        self.correlator.push(&record, time, observer);
        record.end
    }

    /// Decides what is due by `time` on every interface.
    pub fn advance_to(&mut self, time: u64, observer: &mut impl Observer) {
        self.correlator.advance_to(time, observer);
    }

    /// End of all input: every pending session is decided.
    pub fn finish(&mut self, observer: &mut impl Observer) {
        self.correlator.finish(observer);
    }

    /// At the start of an input: true when `line` is a header, not a record.
    fn take_header(&mut self, line: &[u8]) -> bool {
        let header = std::str::from_utf8(line)
            .ok()
            .and_then(LogFormat::from_header_line);
        if let FormatChoice::Auto = self.choice {
            let format = header.clone().unwrap_or_else(LogFormat::default_v2);
            if format != *self.parser.format() {
                self.parser = RecordParser::new(format);
            }
        }
        header.is_some()
    }
}

/// Splits a byte stream into lines across chunk boundaries, copying only
/// the partial line left at the end of a chunk.
#[derive(Debug, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    pub fn push(&mut self, mut chunk: &[u8], mut each_line: impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            match memchr::memchr(b'\n', chunk) {
                Some(newline) => {
                    self.partial.extend_from_slice(&chunk[..newline]);
                    each_line(&self.partial);
                    self.partial.clear();
                    chunk = &chunk[newline + 1..];
                }
                None => {
                    self.partial.extend_from_slice(chunk);
                    return;
                }
            }
        }
        let mut start = 0;
        for newline in memchr::memchr_iter(b'\n', chunk) {
            each_line(&chunk[start..newline]);
            start = newline + 1;
        }
        self.partial.extend_from_slice(&chunk[start..]);
    }

    /// End of the stream: the last line may have no line ending.
    pub fn finish(&mut self, mut each_line: impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            each_line(&self.partial);
            self.partial.clear();
        }
    }
}
