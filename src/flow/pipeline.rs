//! Lines in, observations out: header detection, parsing, filtering,
//! counting and correlation, in the order every source needs them.
//!
//! A header line may come anywhere: S3 objects concatenated (`zcat *.gz`)
//! bring one per object, and each switches the format from there on.

use std::collections::HashMap;
use std::net::IpAddr;

use super::checkpoint::{
    PipelineCheckpoint, PipelineCheckpointView, RestoreError, SuspectCheckpoint,
};
use super::correlate::{Correlator, InterfaceFacts, SessionObserver, Settings};
use super::format::{FormatChoice, FormatWarning, LogFormat};
use super::plausible::{Plausibility, TimeCheck};
use super::record::{Action, LogStatus, Malformed, Record, RecordParser};

/// Receives every line's fate, and what correlation decides.
pub trait Observer: SessionObserver {
    /// A well-formed record that passed the filter.
    fn record(&mut self, interface_id: &str, action: Option<Action>, log_status: LogStatus);
    /// A line that is not a usable record.
    fn malformed(&mut self, reason: Malformed);
    /// Something about the format the records are read with (a typo in a
    /// field name, fields sessions need): told once per format.
    fn format_warning(&mut self, _warning: &FormatWarning) {}
}

/// How many distinct formats' warnings are remembered as told: a bound,
/// not a limit anyone meets (each S3 flow log has one format).
const TOLD_FORMATS: usize = 64;

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
    /// The parser's format has had its warnings told.
    format_told: bool,
    told_formats: Vec<LogFormat>,
    filter: RecordFilter,
    /// Added to record times: replaying old records as if they were recent.
    time_offset: i64,
    times: TimeCheck,
    /// Offline, a record far ahead of the input, until the next timed record
    /// tells whether the input jumped or the record is bad.
    suspect: Option<Suspect>,
    correlator: Correlator,
}

/// A line as it came: bytes, or text already known to be UTF-8.
#[derive(Clone, Copy)]
enum Line<'a> {
    Bytes(&'a [u8]),
    Text(&'a str),
}

/// Where a record came from, for holding it back as a line.
enum Held<'a> {
    /// Parsed from this line.
    Line(&'a [u8]),
    /// Built from typed columns: rendered in the parser's format.
    Record,
}

/// A record held back by the time check, as it came.
#[derive(Debug)]
struct Suspect {
    line: Vec<u8>,
    parser: RecordParser,
    fallback_time: Option<u64>,
    fallback_interface: String,
    time: u64,
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
            format_told: false,
            told_formats: Vec::new(),
            filter,
            time_offset: 0,
            times: TimeCheck::default(),
            suspect: None,
            correlator: Correlator::new(settings, facts),
        }
    }

    pub fn correlator(&self) -> &Correlator {
        &self.correlator
    }

    /// What a successor needs to go on exactly where this pipeline is.
    pub fn checkpoint(&self) -> PipelineCheckpoint {
        PipelineCheckpoint {
            version: PipelineCheckpoint::VERSION,
            format: format_names(self.parser.format()),
            at_input_start: self.at_input_start,
            times: self.times,
            suspect: self.suspect_checkpoint(),
            correlator: self.correlator.checkpoint(),
        }
    }

    /// The same, borrowed: what a checkpoint file is written from, with no
    /// copy of the open sessions ([`Correlator::checkpoint_view`]).
    pub fn checkpoint_view(&self) -> PipelineCheckpointView<'_> {
        PipelineCheckpointView {
            version: PipelineCheckpoint::VERSION,
            format: format_names(self.parser.format()),
            at_input_start: self.at_input_start,
            times: self.times,
            suspect: self.suspect_checkpoint(),
            correlator: self.correlator.checkpoint_view(),
        }
    }

    fn suspect_checkpoint(&self) -> Option<SuspectCheckpoint> {
        self.suspect.as_ref().map(|suspect| SuspectCheckpoint {
            // Parsed once: it is UTF-8.
            line: String::from_utf8_lossy(&suspect.line).into_owned(),
            format: format_names(suspect.parser.format()),
            fallback_time: suspect.fallback_time,
            fallback_interface: suspect.fallback_interface.clone(),
            time: suspect.time,
        })
    }

    /// Goes on from a checkpoint of a pipeline built from the same
    /// configuration. On error nothing is changed.
    pub fn restore(&mut self, checkpoint: PipelineCheckpoint) -> Result<(), RestoreError> {
        if checkpoint.version != PipelineCheckpoint::VERSION {
            return Err(RestoreError::Version {
                found: checkpoint.version,
                expected: PipelineCheckpoint::VERSION,
            });
        }
        let parse = |names: &str| {
            LogFormat::parse(names).map_err(|_| RestoreError::Format(names.to_string()))
        };
        let format = parse(&checkpoint.format)?;
        let suspect = match checkpoint.suspect {
            Some(saved) => Some(Suspect {
                parser: RecordParser::new(parse(&saved.format)?),
                line: saved.line.into_bytes(),
                fallback_time: saved.fallback_time,
                fallback_interface: saved.fallback_interface,
                time: saved.time,
            }),
            None => None,
        };
        self.correlator.restore(checkpoint.correlator)?;
        if format != *self.parser.format() {
            self.parser = RecordParser::new(format);
        }
        self.at_input_start = checkpoint.at_input_start;
        self.times = checkpoint.times;
        self.suspect = suspect;
        Ok(())
    }

    /// Facts about an interface learned while running (EC2); see
    /// [`Correlator::set_facts`].
    pub fn set_interface_facts(&mut self, id: &str, facts: InterfaceFacts) {
        self.correlator.set_facts(id, facts);
    }

    /// The next line starts a new input (a file): it may be a header line.
    pub fn begin_input(&mut self) {
        self.at_input_start = true;
        self.times.new_input();
    }

    /// A new input that carries its own format (a Parquet file's schema),
    /// whatever the pipeline was told.
    pub fn begin_input_with_format(&mut self, format: LogFormat) {
        self.begin_input();
        self.at_input_start = false;
        self.switch_format(format);
    }

    pub fn set_time_offset(&mut self, offset: i64) {
        self.time_offset = offset;
    }

    /// In `serve`: the wall clock, in Unix seconds. A record that ends more
    /// than an hour after it is counted `bad_time` (see `plausible.rs`).
    pub fn set_wall_clock(&mut self, now: u64) {
        self.times.set_wall_clock(now);
        self.correlator.set_wall_clock(now);
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
        self.push_event(line, fallback_time, "-", observer)
    }

    /// As [`Pipeline::push_line`], for a line that came from somewhere that
    /// names its interface (a CloudWatch log stream): used when the format
    /// has no `interface-id`.
    pub fn push_event<'a>(
        &mut self,
        line: &'a [u8],
        fallback_time: Option<u64>,
        fallback_interface: &'a str,
        observer: &mut impl Observer,
    ) -> Option<u64> {
        self.push_line_as_came(
            Line::Bytes(line.trim_ascii()),
            fallback_time,
            fallback_interface,
            observer,
        )
    }

    /// As [`Pipeline::push_event`], for a line known to be text (a
    /// CloudWatch event's message): not checked for UTF-8 a second time.
    pub fn push_event_text<'a>(
        &mut self,
        line: &'a str,
        fallback_time: Option<u64>,
        fallback_interface: &'a str,
        observer: &mut impl Observer,
    ) -> Option<u64> {
        self.push_line_as_came(
            Line::Text(line.trim_ascii()),
            fallback_time,
            fallback_interface,
            observer,
        )
    }

    /// [`Pipeline::push_event`] of a trimmed line.
    fn push_line_as_came<'a>(
        &mut self,
        trimmed: Line<'a>,
        fallback_time: Option<u64>,
        fallback_interface: &'a str,
        observer: &mut impl Observer,
    ) -> Option<u64> {
        let line = match trimmed {
            Line::Bytes(bytes) => bytes,
            Line::Text(text) => text.as_bytes(),
        };
        if line.is_empty() {
            return None;
        }
        if std::mem::take(&mut self.at_input_start) {
            // An input is in the format given, or the default one until a
            // header line says otherwise.
            let format = match &self.choice {
                FormatChoice::Auto => LogFormat::default_v2(),
                FormatChoice::Fixed(format) => format.clone(),
            };
            self.switch_format(format);
        }
        if line[0].is_ascii_lowercase() && self.take_header(line) {
            return None;
        }
        if !self.format_told {
            self.tell_format(fallback_interface != "-", observer);
        }
        let parsed = match trimmed {
            Line::Bytes(bytes) => self.parser.parse_bytes(bytes),
            Line::Text(text) => self.parser.parse(text),
        };
        self.push_parsed(
            parsed,
            Held::Line(line),
            fallback_time,
            fallback_interface,
            observer,
        )
    }

    /// As [`Pipeline::push_event`], for a record already built from typed
    /// columns (Parquet) in the format of [`Pipeline::begin_input_with_format`],
    /// or the reason it could not be: counted, checked for time and
    /// correlated exactly as the same record read from a line.
    pub fn push_record<'a>(
        &mut self,
        parsed: Result<Record<'a>, Malformed>,
        fallback_time: Option<u64>,
        fallback_interface: &'a str,
        observer: &mut impl Observer,
    ) -> Option<u64> {
        if !self.format_told {
            self.tell_format(fallback_interface != "-", observer);
        }
        self.push_parsed(
            parsed,
            Held::Record,
            fallback_time,
            fallback_interface,
            observer,
        )
    }

    /// A line's or a typed record's way on, once parsed: the time check
    /// (a record far ahead waits, held as `held` says), then counting and
    /// correlation.
    fn push_parsed<'a>(
        &mut self,
        parsed: Result<Record<'a>, Malformed>,
        held: Held<'_>,
        fallback_time: Option<u64>,
        fallback_interface: &'a str,
        observer: &mut impl Observer,
    ) -> Option<u64> {
        let parsed = match parsed {
            Ok(record) => record,
            Err(reason) => {
                observer.malformed(reason);
                return None;
            }
        };
        let record = self.situate(parsed, fallback_interface);
        match self.times.judge(record.start, record.end) {
            Plausibility::Plausible => {}
            Plausibility::Impossible => {
                observer.malformed(Malformed::BadTime);
                return None;
            }
            Plausibility::Ahead(time) => match self.suspect.take() {
                // The input really moved on: both are good.
                Some(suspect) if TimeCheck::confirms(suspect.time, time) => {
                    self.release(suspect, observer);
                }
                previous => {
                    if previous.is_some() {
                        observer.malformed(Malformed::BadTime);
                    }
                    let line = match held {
                        Held::Line(line) => line.to_vec(),
                        // As a line, so that it is released and checkpointed
                        // as a line is: rare (a record an hour ahead).
                        Held::Record => self.parser.render(&parsed),
                    };
                    self.suspect = Some(Suspect {
                        line,
                        parser: self.parser.clone(),
                        fallback_time,
                        fallback_interface: fallback_interface.to_string(),
                        time,
                    });
                    return None;
                }
            },
        }
        if record.time().is_some() && self.suspect.take().is_some() {
            // A timed record within the hour refutes the one far ahead.
            observer.malformed(Malformed::BadTime);
        }
        self.take(record, fallback_time, observer)
    }

    /// Decides what is due by `time` on every interface.
    pub fn advance_to(&mut self, time: u64, observer: &mut impl Observer) {
        self.correlator.advance_to(time, observer);
    }

    /// [`Pipeline::advance_to`] in steps of at most `budget` due sessions:
    /// see [`Correlator::start_advance`] and [`Correlator::advance_some`].
    pub fn start_advance(&mut self, time: u64, observer: &mut impl Observer) {
        self.correlator.start_advance(time, observer);
    }

    /// Carries on the advance under way; whether it still is.
    pub fn advance_some(&mut self, budget: usize, observer: &mut impl Observer) -> bool {
        self.correlator.advance_some(budget, observer)
    }

    /// Whether an advance is under way (one restored from a checkpoint
    /// written part way through it, say).
    pub fn advancing(&self) -> bool {
        self.correlator.advancing()
    }

    /// End of all input: every pending session is decided. A record still
    /// suspect has nothing after it to confirm it: it is counted bad.
    pub fn finish(&mut self, observer: &mut impl Observer) {
        if self.suspect.take().is_some() {
            observer.malformed(Malformed::BadTime);
        }
        self.correlator.finish(observer);
    }

    /// The record's times shifted by the replay offset, and its interface
    /// from the source when the format has none.
    fn situate<'a>(&self, mut record: Record<'a>, fallback_interface: &'a str) -> Record<'a> {
        if self.time_offset != 0 {
            record.start = record
                .start
                .map(|t| t.saturating_add_signed(self.time_offset));
            record.end = record
                .end
                .map(|t| t.saturating_add_signed(self.time_offset));
        }
        if record.interface_id == "-" {
            record.interface_id = fallback_interface;
        }
        record
    }

    /// A record whose times are good: filtered, counted and correlated.
    fn take(
        &mut self,
        record: Record<'_>,
        fallback_time: Option<u64>,
        observer: &mut impl Observer,
    ) -> Option<u64> {
        let time = record.time().or(fallback_time);
        if let Some(time) = time {
            self.times.note_good(time);
        }
        if !self.filter.admits(&record, time) {
            return None;
        }
        observer.record(record.interface_id, record.action, record.log_status);
        self.correlator.push(&record, time, observer);
        record.end
    }

    /// A suspect record confirmed good: taken as it would have been.
    fn release(&mut self, suspect: Suspect, observer: &mut impl Observer) {
        // The same bytes and parser as when it was first read.
        let record = match suspect.parser.parse_bytes(&suspect.line) {
            Ok(record) => record,
            Err(reason) => return observer.malformed(reason),
        };
        let record = self.situate(record, &suspect.fallback_interface);
        self.take(record, suspect.fallback_time, observer);
    }

    /// True when `line` is a header, not a record; in `auto`, it switches
    /// the format for the lines after it.
    fn take_header(&mut self, line: &[u8]) -> bool {
        let Some(header) = std::str::from_utf8(line)
            .ok()
            .and_then(LogFormat::from_header_line)
        else {
            return false;
        };
        if self.choice == FormatChoice::Auto {
            self.switch_format(header);
        }
        true
    }

    fn switch_format(&mut self, format: LogFormat) {
        if format != *self.parser.format() {
            self.parser = RecordParser::new(format);
            self.format_told = false;
        }
    }

    /// Tells the observer what is wrong with the format, once per format.
    fn tell_format(&mut self, interface_known: bool, observer: &mut impl Observer) {
        self.format_told = true;
        let format = self.parser.format();
        if self.told_formats.contains(format) {
            return;
        }
        for warning in format.warnings(interface_known) {
            observer.format_warning(&warning);
        }
        if self.told_formats.len() < TOLD_FORMATS {
            self.told_formats.push(format.clone());
        }
    }
}

fn format_names(format: &LogFormat) -> String {
    let names: Vec<&str> = format.fields().iter().map(|field| field.name()).collect();
    names.join(" ")
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::correlate::ServicePorts;
    use crate::flow::record::RecordParser;
    use crate::flow::summary::Summary;
    use crate::flow::verdict::Verdict;

    const V2_HEADER: &str = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status";
    const REQUEST: &str =
        "2 123456789010 eni-a 198.51.100.7 10.0.0.10 40000 22 6 1 44 1000 1050 ACCEPT OK";
    const REPLY: &str =
        "2 123456789010 eni-a 10.0.0.10 198.51.100.7 22 40000 6 1 40 1000 1050 ACCEPT OK";
    const REJECTED: &str =
        "2 123456789010 eni-b 198.51.100.8 10.0.1.10 40001 3389 6 1 40 1100 1150 REJECT OK";

    fn run(choice: FormatChoice, filter: RecordFilter, inputs: &[&[&str]]) -> Summary {
        let mut pipeline = Pipeline::new(choice, Settings::default(), HashMap::new(), filter);
        let mut summary = Summary::new(ServicePorts::new(&[]), true);
        for lines in inputs {
            pipeline.begin_input();
            for line in *lines {
                pipeline.push_line(line.as_bytes(), None, &mut summary);
            }
        }
        pipeline.finish(&mut summary);
        summary
    }

    fn auto(inputs: &[&[&str]]) -> Summary {
        run(FormatChoice::Auto, RecordFilter::default(), inputs)
    }

    #[test]
    fn a_header_line_anywhere_switches_the_format() {
        // Two S3 objects concatenated: the second header is not a record.
        let summary = auto(&[&[V2_HEADER, REQUEST, V2_HEADER, REPLY]]);
        assert_eq!(summary.records.total, 2);
        assert_eq!(summary.records.malformed, 0);
        assert_eq!(summary.sessions.accepted, 1);
        let short = "interface-id srcaddr dstaddr srcport dstport protocol start end action";
        let summary = auto(&[&[
            V2_HEADER,
            REQUEST,
            short,
            "eni-a 10.0.0.10 198.51.100.7 22 40000 6 1000 1050 ACCEPT",
            V2_HEADER,
            REJECTED,
        ]]);
        assert_eq!((summary.records.ok, summary.records.malformed), (3, 0));
        assert_eq!(summary.sessions.accepted, 1);
        assert_eq!(summary.sessions.rejected_inbound, 1);
        // Blank lines before the header do not hide it.
        let summary = auto(&[&["", "  \r", V2_HEADER, REQUEST]]);
        assert_eq!(summary.records.total, 1);
        assert_eq!(summary.records.malformed, 0);
    }

    #[test]
    fn each_input_may_bring_its_own_header_and_format() {
        let short = "interface-id srcaddr dstaddr srcport dstport protocol start end action";
        let summary = auto(&[
            &[
                short,
                "eni-a 198.51.100.7 10.0.0.10 40000 22 6 1000 1050 ACCEPT",
            ],
            &[REPLY],
        ]);
        // The second input has no header: back to the default format.
        assert_eq!(summary.records.ok, 2);
        assert_eq!(summary.records.malformed, 0);
        assert_eq!(summary.sessions.accepted, 1);
    }

    #[test]
    fn a_fixed_format_skips_a_header_line_but_keeps_its_fields() {
        let format = LogFormat::default_v2();
        let summary = run(
            FormatChoice::Fixed(format),
            RecordFilter::default(),
            &[&["interface-id srcaddr dstaddr", REQUEST, REPLY]],
        );
        assert_eq!(summary.records.total, 2);
        assert_eq!(summary.records.malformed, 0);
        assert_eq!(summary.sessions.accepted, 1);
    }

    #[derive(Default)]
    struct Warnings(Vec<String>);

    impl SessionObserver for Warnings {
        fn decided(&mut self, _: &crate::flow::SessionReport<'_>) {}
        fn traffic(&mut self, _: &str, _: Verdict, _: crate::flow::Direction, _: u64, _: u64) {}
        fn closed(&mut self, _: &crate::flow::SessionReport<'_>) {}
        fn evicted(&mut self, _: &str) {}
    }

    impl Observer for Warnings {
        fn record(&mut self, _: &str, _: Option<Action>, _: LogStatus) {}
        fn malformed(&mut self, _: Malformed) {}
        fn format_warning(&mut self, warning: &FormatWarning) {
            self.0.push(warning.to_string());
        }
    }

    #[test]
    fn format_warnings_are_told_once_per_format() {
        let mut pipeline = Pipeline::new(
            FormatChoice::Auto,
            Settings::default(),
            HashMap::new(),
            RecordFilter::default(),
        );
        let mut warnings = Warnings::default();
        let typo = "version interface-id srcaddr dstaddr srcport dstport protocol tcp_flag action";
        for input in [
            &[typo, "2 eni-a 10.0.0.1 10.0.0.2 1 2 6 2 ACCEPT"][..],
            &[REQUEST],
        ] {
            pipeline.begin_input();
            for _ in 0..2 {
                for line in input {
                    pipeline.push_line(line.as_bytes(), None, &mut warnings);
                }
            }
        }
        assert_eq!(warnings.0.len(), 1, "{:?}", warnings.0);
        assert!(warnings.0[0].starts_with("`tcp_flag`: did you mean `tcp-flags`?"));
        // A log stream names the interface: a format without it lacks nothing.
        let format = LogFormat::parse("srcaddr dstaddr srcport dstport protocol action").unwrap();
        let mut pipeline = Pipeline::new(
            FormatChoice::Fixed(format),
            Settings::default(),
            HashMap::new(),
            RecordFilter::default(),
        );
        let mut warnings = Warnings::default();
        pipeline.push_event(
            b"10.0.0.1 10.0.0.2 1 2 6 ACCEPT",
            None,
            "eni-a",
            &mut warnings,
        );
        assert_eq!(warnings.0, Vec::<String>::new());
    }

    #[test]
    fn a_format_without_action_gives_records_but_no_sessions() {
        let summary = auto(&[&[
            "interface-id srcaddr dstaddr",
            "eni-a 198.51.100.7 10.0.0.10",
            "eni-a 10.0.0.10 198.51.100.7",
        ]]);
        assert_eq!(summary.records.ok, 2);
        assert_eq!(summary.sessions.total(), 0);
        assert_eq!(summary.details.as_deref(), Some(&[][..]));
    }

    #[test]
    fn filters_narrow_records_before_correlation() {
        let filtered = |filter: RecordFilter| {
            let summary = run(FormatChoice::Auto, filter, &[&[REQUEST, REPLY, REJECTED]]);
            (summary.records.total, summary.sessions.total())
        };
        assert_eq!(filtered(RecordFilter::default()), (3, 2));
        let interface = RecordFilter {
            interface_id: Some("eni-b".into()),
            ..RecordFilter::default()
        };
        assert_eq!(filtered(interface), (1, 1));
        let address = RecordFilter {
            address: Some("198.51.100.7".parse().unwrap()),
            ..RecordFilter::default()
        };
        assert_eq!(filtered(address), (2, 1));
        let port = RecordFilter {
            port: Some(40000),
            ..RecordFilter::default()
        };
        assert_eq!(filtered(port), (2, 1));
        // Event time is the end: 1050 for the pair, 1150 for the reject.
        let since = RecordFilter {
            since: Some(1051),
            ..RecordFilter::default()
        };
        assert_eq!(filtered(since), (1, 1));
        let until = RecordFilter {
            until: Some(1050),
            ..RecordFilter::default()
        };
        assert_eq!(filtered(until), (2, 1));
        // Every filter given must admit the record.
        let both = RecordFilter {
            interface_id: Some("eni-b".into()),
            port: Some(22),
            ..RecordFilter::default()
        };
        assert_eq!(filtered(both), (0, 0));
    }

    #[test]
    fn a_time_filter_drops_records_without_a_time() {
        let format = LogFormat::parse("interface-id srcaddr dstaddr action").unwrap();
        let filter = RecordFilter {
            since: Some(0),
            ..RecordFilter::default()
        };
        let summary = run(
            FormatChoice::Fixed(format),
            filter,
            &[&["eni-a 10.0.0.1 10.0.0.2 ACCEPT"]],
        );
        assert_eq!(summary.records.total, 0);
    }

    #[test]
    fn the_time_offset_moves_record_times() {
        let mut pipeline = Pipeline::new(
            FormatChoice::Auto,
            Settings::default(),
            HashMap::new(),
            RecordFilter::default(),
        );
        let mut summary = Summary::new(ServicePorts::new(&[]), true);
        pipeline.set_time_offset(-500);
        pipeline.push_line(REQUEST.as_bytes(), None, &mut summary);
        pipeline.push_line(REPLY.as_bytes(), None, &mut summary);
        pipeline.finish(&mut summary);
        let details = summary.details.unwrap();
        assert_eq!((details[0].start, details[0].end), (Some(500), Some(550)));
    }

    #[test]
    fn the_fallback_time_stands_in_for_records_without_times() {
        // CloudWatch timestamps: the lone request's grace runs from 2000.
        let format = LogFormat::parse("interface-id srcaddr dstaddr action").unwrap();
        let mut pipeline = Pipeline::new(
            FormatChoice::Fixed(format),
            // A lone session: its interface's address is never told.
            Settings {
                max_awaiting_address: 0,
                ..Settings::default()
            },
            HashMap::new(),
            RecordFilter::default(),
        );
        let mut summary = Summary::new(ServicePorts::new(&[]), false);
        pipeline.push_line(b"eni-a 10.0.0.1 10.0.0.2 ACCEPT", Some(2000), &mut summary);
        pipeline.advance_to(2119, &mut summary);
        assert_eq!(summary.sessions.total(), 0);
        pipeline.advance_to(2120, &mut summary);
        assert_eq!(summary.sessions.get(Verdict::Unanswered), 1);
    }

    #[test]
    fn push_line_returns_the_end_of_a_taken_record_only() {
        let mut pipeline = Pipeline::new(
            FormatChoice::Auto,
            Settings::default(),
            HashMap::new(),
            RecordFilter {
                interface_id: Some("eni-a".into()),
                ..RecordFilter::default()
            },
        );
        let mut summary = Summary::new(ServicePorts::new(&[]), false);
        let mut push = |line: &str| pipeline.push_line(line.as_bytes(), Some(9), &mut summary);
        assert_eq!(push(V2_HEADER), None);
        assert_eq!(push(REQUEST), Some(1050));
        assert_eq!(push(""), None);
        assert_eq!(push("2 1 eni-a not a record"), None);
        assert_eq!(push(REJECTED), None, "filtered out");
    }

    /// The same records as lines and, parsed beforehand, as typed records
    /// (what Parquet gives): every count, verdict and checkpoint equal,
    /// malformed ones and ones held back by the time check included.
    #[test]
    fn a_parsed_record_goes_the_way_of_its_line() {
        let lines = [
            REQUEST,
            // bad_address, then bad_time (start after end).
            "2 123456789010 eni-a 10.0.0.999 10.0.0.10 40000 22 6 1 44 1000 1050 ACCEPT OK",
            "2 123456789010 eni-a 198.51.100.7 10.0.0.10 40002 22 6 1 44 1060 1050 ACCEPT OK",
            // A day ahead: held, then refuted by the reply.
            "2 123456789010 eni-c 198.51.100.9 10.0.0.12 40009 22 6 1 44 90000 90050 ACCEPT OK",
            REPLY,
            // A day ahead again, with a replay offset: held, then confirmed.
            "2 123456789010 - 198.51.100.9 10.0.0.12 40009 22 6 1 44 90000 90050 ACCEPT OK",
            "2 123456789010 - 10.0.0.12 198.51.100.9 22 40009 6 1 44 90000 90060 ACCEPT OK",
            REJECTED,
        ];
        let parser = RecordParser::new(LogFormat::default_v2());
        let new = || {
            let mut pipeline = Pipeline::new(
                FormatChoice::Auto,
                Settings::default(),
                HashMap::new(),
                RecordFilter::default(),
            );
            pipeline.begin_input_with_format(LogFormat::default_v2());
            (pipeline, Summary::new(ServicePorts::new(&[]), true))
        };
        let (mut as_lines, mut from_lines) = new();
        let (mut as_records, mut from_records) = new();
        let mut checkpoints = (Vec::new(), Vec::new());
        for (index, line) in lines.iter().enumerate() {
            if index == 5 {
                as_lines.set_time_offset(-10);
                as_records.set_time_offset(-10);
            }
            let taken = (
                as_lines.push_event(line.as_bytes(), Some(7), "eni-d", &mut from_lines),
                as_records.push_record(parser.parse(line), Some(7), "eni-d", &mut from_records),
            );
            assert_eq!(taken.0, taken.1, "{line}");
            let (of_lines, mut of_records) = (as_lines.checkpoint(), as_records.checkpoint());
            // A held record is kept as the line that parses into it, with
            // `-` for the columns a record does not keep.
            if let (Some(line), Some(record)) = (&of_lines.suspect, &mut of_records.suspect) {
                assert_eq!(parser.parse(&record.line), parser.parse(&line.line));
                record.line.clone_from(&line.line);
            }
            checkpoints
                .0
                .push(serde_json::to_string(&of_lines).unwrap());
            checkpoints
                .1
                .push(serde_json::to_string(&of_records).unwrap());
        }
        assert_eq!(checkpoints.0, checkpoints.1);
        as_lines.finish(&mut from_lines);
        as_records.finish(&mut from_records);
        assert_eq!(
            from_lines.records.malformed, 3,
            "{:?}",
            from_lines.malformed_by_reason
        );
        assert_eq!(from_lines.sessions.accepted, 2);
        assert_eq!(from_records.records, from_lines.records);
        assert_eq!(from_records.sessions, from_lines.sessions);
        assert_eq!(from_records.details, from_lines.details);
        assert_eq!(
            from_records.malformed_by_reason,
            from_lines.malformed_by_reason
        );
        assert_eq!(from_records.by_interface, from_lines.by_interface);
    }

    #[test]
    fn line_splitter_joins_lines_across_chunks() {
        let mut splitter = LineSplitter::default();
        let mut lines: Vec<String> = Vec::new();
        for chunk in [&b"ab"[..], b"c\r\nd", b"", b"e\n", b"\nf\r"] {
            splitter.push(chunk, |line| {
                lines.push(String::from_utf8(line.to_vec()).unwrap())
            });
        }
        splitter.finish(|line| lines.push(String::from_utf8(line.to_vec()).unwrap()));
        assert_eq!(lines, ["abc\r", "de", "", "f\r"]);
    }
}
