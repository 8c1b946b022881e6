//! The whole `analyze` pipeline on arbitrary text, against an oracle of
//! its own: every non-blank line that is not a header line is counted
//! exactly once (ok, nodata, skipdata or malformed); every session is
//! decided once and closed once; the session totals equal the decided
//! sessions (per verdict, per interface, per service, in the details);
//! nothing is left pending at the end. A settings byte varies the grace,
//! the idle timeout and the service ports.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vpc_flow_exporter::flow::{
    Action, Direction, FormatChoice, LogFormat, LogStatus, Malformed, Observer, Pipeline,
    RecordFilter, SessionObserver, SessionReport, Settings, Summary, Verdict,
};
use vpc_flow_exporter::input::{self, InputFormat, Origin};

/// Counts the callbacks and hands them on to the summary.
struct Counting {
    summary: Summary,
    records: u64,
    decided: u64,
    closed: u64,
}

impl SessionObserver for Counting {
    fn decided(&mut self, session: &SessionReport<'_>) {
        self.decided += 1;
        self.summary.decided(session);
    }
    fn traffic(&mut self, interface: &str, verdict: Verdict, direction: Direction, p: u64, b: u64) {
        self.summary.traffic(interface, verdict, direction, p, b);
    }
    fn closed(&mut self, session: &SessionReport<'_>) {
        self.closed += 1;
        self.summary.closed(session);
    }
    fn evicted(&mut self, interface: &str) {
        self.summary.evicted(interface);
    }
}

impl Observer for Counting {
    fn record(&mut self, interface: &str, action: Option<Action>, status: LogStatus) {
        self.records += 1;
        self.summary.record(interface, action, status);
    }
    fn malformed(&mut self, reason: Malformed) {
        self.records += 1;
        self.summary.malformed(reason);
    }
}

/// What the pipeline must count: lines that are neither blank nor headers.
fn expected_records(text: &[u8]) -> u64 {
    text.split(|byte| *byte == b'\n')
        .map(<[u8]>::trim_ascii)
        .filter(|line| !line.is_empty())
        .filter(|line| {
            let header = line[0].is_ascii_lowercase()
                && std::str::from_utf8(line)
                    .ok()
                    .and_then(LogFormat::from_header_line)
                    .is_some();
            !header
        })
        .count() as u64
}

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, text)) = data.split_first() else {
        return;
    };
    // Text only: the other layouts are input_layout's.
    if input::detect(text) != InputFormat::Text || text.starts_with(&[0x1f, 0x8b]) {
        return;
    }
    let settings = Settings {
        reply_grace: [0, 60, 120, 600][usize::from(knobs & 3)],
        session_idle_timeout: [1, 600, 3600, 86_400][usize::from((knobs >> 2) & 3)],
        service_ports: if knobs & 16 == 0 {
            vec![]
        } else {
            vec![22, 443, 8080, 12333]
        },
        ..Settings::default()
    };
    let mut pipeline = Pipeline::new(
        FormatChoice::Auto,
        settings,
        Default::default(),
        RecordFilter::default(),
    );
    let summary = Summary::new(pipeline.correlator().service_ports().clone(), true);
    let mut observer = Counting {
        summary,
        records: 0,
        decided: 0,
        closed: 0,
    };
    input::feed_reader(
        text,
        &Origin::default(),
        InputFormat::Text,
        &mut pipeline,
        &mut observer,
    )
    .expect("reading from memory cannot fail");
    pipeline.finish(&mut observer);

    let summary = &observer.summary;
    let records = &summary.records;
    assert_eq!(
        observer.records,
        expected_records(text),
        "every line counted once"
    );
    assert_eq!(records.total, observer.records);
    assert_eq!(
        records.total,
        records.ok + records.nodata + records.skipdata + records.malformed
    );
    assert_eq!(
        records.malformed,
        summary.malformed_by_reason.values().sum::<u64>()
    );
    assert_eq!(
        summary.sessions.total(),
        observer.decided,
        "totals are the decided sessions"
    );
    assert_eq!(
        observer.closed, observer.decided,
        "every decided session is closed once"
    );
    let per_interface: u64 = summary
        .by_interface
        .values()
        .map(|counts| counts.total())
        .sum();
    assert_eq!(per_interface, observer.decided);
    assert_eq!(summary.by_service().values().sum::<u64>(), observer.decided);
    assert_eq!(
        summary.details.as_ref().map_or(0, Vec::len) as u64,
        observer.decided
    );
});
