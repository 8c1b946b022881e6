//! Flow-log files as a source for the exporter: read once, or replayed in a
//! loop with record times shifted so the last record ends now, so that rates
//! stay alive on a dashboard (the demo runs on this).
//!
//! Each pass is one offline run: it ends by deciding every pending session,
//! so the next pass, with the same sessions at later times, counts them again.

use std::path::PathBuf;

use crate::flow::{Direction, Observer, Pipeline, SessionObserver, SessionReport, Verdict};
use crate::input::{self, InputError};

/// The first start and last end of the sessions of one pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeSpan {
    pub first_start: Option<u64>,
    pub last_end: Option<u64>,
}

/// Forwards everything to `inner` and notes the time span of sessions.
struct SpanObserver<'a, O> {
    inner: &'a mut O,
    span: TimeSpan,
}

impl<O: Observer> SessionObserver for SpanObserver<'_, O> {
    fn decided(&mut self, session: &SessionReport<'_>) {
        self.inner.decided(session);
    }

    fn traffic(
        &mut self,
        interface_id: &str,
        verdict: Verdict,
        direction: Direction,
        packets: u64,
        bytes: u64,
    ) {
        self.inner
            .traffic(interface_id, verdict, direction, packets, bytes);
    }

    fn closed(&mut self, session: &SessionReport<'_>) {
        let first = session.start.or(session.end);
        self.span.first_start = match (self.span.first_start, first) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.span.last_end = self.span.last_end.max(session.end.or(session.start));
        self.inner.closed(session);
    }

    fn evicted(&mut self, interface_id: &str) {
        self.inner.evicted(interface_id);
    }
}

impl<O: Observer> Observer for SpanObserver<'_, O> {
    fn record(
        &mut self,
        interface_id: &str,
        action: Option<crate::flow::Action>,
        log_status: crate::flow::LogStatus,
    ) {
        self.inner.record(interface_id, action, log_status);
    }

    fn malformed(&mut self, reason: crate::flow::Malformed) {
        self.inner.malformed(reason);
    }

    fn format_warning(&mut self, warning: &crate::flow::FormatWarning) {
        self.inner.format_warning(warning);
    }
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
    let mut spanning = SpanObserver {
        inner: observer,
        span: TimeSpan::default(),
    };
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
        first_start: spanning.span.first_start.map(unshift),
        last_end: spanning.span.last_end.map(unshift),
    })
}

/// The offset that makes a pass whose records ended at `last_end` end at `now`.
pub fn offset_to_now(span: TimeSpan, now: u64) -> i64 {
    span.last_end.map_or(0, |last_end| {
        i64::try_from(now).unwrap_or(i64::MAX) - i64::try_from(last_end).unwrap_or(0)
    })
}
