//! Flow-log files as a source for the exporter: read once, or replayed in a
//! loop with record times shifted so the last record ends now, so that rates
//! stay alive on a dashboard (the demo runs on this).
//!
//! Each pass is one offline run: it ends by deciding every pending session,
//! so the next pass, with the same sessions at later times, counts them again.

use std::path::PathBuf;

use crate::flow::{
    Action, Both, Direction, LogStatus, Malformed, Observer, Pipeline, SessionObserver,
    SessionReport, Verdict,
};
use crate::input::{self, InputError};

/// The first start and last end of the sessions of one pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeSpan {
    pub first_start: Option<u64>,
    pub last_end: Option<u64>,
}

/// Notes the time span of the sessions closed.
#[derive(Debug, Default)]
struct Spans(TimeSpan);

impl SessionObserver for Spans {
    fn decided(&mut self, _: &SessionReport<'_>) {}
    fn traffic(&mut self, _: &str, _: Verdict, _: Direction, _: u64, _: u64) {}
    fn evicted(&mut self, _: &str) {}

    fn closed(&mut self, session: &SessionReport<'_>) {
        let span = &mut self.0;
        let first = session.start.or(session.end);
        span.first_start = match (span.first_start, first) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        span.last_end = span.last_end.max(session.end.or(session.start));
    }
}

impl Observer for Spans {
    fn record(&mut self, _: &str, _: Option<Action>, _: LogStatus) {}
    fn malformed(&mut self, _: Malformed) {}
}

/// Reads the files through the pipeline, shifted by `time_offset` seconds,
/// and decides every session at the end. Returns the sessions' time span
/// before the shift.
pub fn pass(
    paths: &[PathBuf],
    pipeline: &mut Pipeline,
    time_offset: i64,
    observer: &mut impl Observer,
) -> Result<TimeSpan, InputError> {
    pipeline.set_time_offset(time_offset);
    let mut spanning = Both(observer, Spans::default());
    input::feed_files(
        paths,
        input::InputFormat::Auto,
        pipeline,
        &mut spanning,
        &|_| {},
    )?;
    pipeline.finish(&mut spanning);
    let unshift = |time: u64| time.saturating_add_signed(-time_offset);
    Ok(TimeSpan {
        first_start: spanning.1.0.first_start.map(unshift),
        last_end: spanning.1.0.last_end.map(unshift),
    })
}

/// The offset that makes a pass whose records ended at `last_end` end at `now`.
pub fn offset_to_now(span: TimeSpan, now: u64) -> i64 {
    span.last_end.map_or(0, |last_end| {
        i64::try_from(now).unwrap_or(i64::MAX) - i64::try_from(last_end).unwrap_or(0)
    })
}
