//! `vpc-flow-exporter inspect`: the troubleshooting workflow in one command.
//! Reads one window of a log group from CloudWatch Logs, with the exporter's
//! own source code, and prints the same session table as `analyze`. With
//! `--follow` it keeps polling, like `tail -f`, and prints each session as
//! it is decided (one line each; JSON Lines with `--output json`).
//!
//! CloudWatch stores a flow record under its *start* time, and a record lands
//! up to one capture interval (1 or 10 minutes) plus the delivery delay
//! (about 5 minutes, best effort) after it starts: a window that ends now
//! may still miss its last quarter hour of records.

use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::commands::report::{self, OutputFormat, ReportRequest};
use crate::flow::clock::wall_clock_watermark;
use crate::flow::verdict::protocol_name;
use crate::flow::{
    Action, Direction, LogStatus, Malformed, Observer, RecordFilter, SessionDetail,
    SessionObserver, SessionReport, Summary, Verdict,
};
use crate::source::aws_clients::{Access, AwsClients, Role};
use crate::source::cloudwatch::{
    ATTEMPT_TIMEOUT, ApiError, AwsLogsApi, NoopObserver, Poller, PollerConfig, interface_of_stream,
    read_window,
};

/// What `inspect` was asked.
#[derive(Debug, Clone)]
pub struct InspectRequest {
    pub log_group: String,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    /// A group of another account, read as `serve` reads it: with
    /// credentials from STS AssumeRole (`--role-arn`, `--external-id`).
    pub role: Option<Role>,
    /// Its filter's `since` and `until` bound the CloudWatch window (30
    /// minutes back to now when absent); its interface selects the streams.
    pub report: ReportRequest,
}

/// The client `serve` would read the group with: its region, and its
/// role's credentials when it has one.
async fn logs_api(request: &InspectRequest) -> AwsLogsApi {
    let access = Access {
        region: request.region.clone(),
        role: request.role.clone(),
    };
    AwsClients::new(
        request.endpoint_url.clone(),
        ATTEMPT_TIMEOUT,
        Arc::new(NoopObserver),
    )
    .client(&access)
    .await
}

/// Reads the window and returns the finished summary.
pub async fn inspect(request: &InspectRequest, now: u64) -> Result<Summary, ApiError> {
    let api = logs_api(request).await;
    let filter = &request.report.filter;
    let since = filter.since.unwrap_or(now.saturating_sub(30 * 60));
    let until = filter.until.unwrap_or(now);
    let to_ms = |seconds: u64| {
        i64::try_from(seconds)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000)
    };
    let events = read_window(
        &api,
        &request.log_group,
        filter.interface_id.as_deref(),
        to_ms(since),
        to_ms(until).saturating_add(999),
    )
    .await?;
    tracing::debug!(events = events.len(), "Read the window");
    // The window bounds the records' start; the filter would cut on their end.
    let report = ReportRequest {
        filter: RecordFilter {
            since: None,
            until: None,
            ..filter.clone()
        },
        ..request.report.clone()
    };
    let (mut pipeline, mut summary) = report.start();
    for event in &events {
        let fallback_time = u64::try_from(event.timestamp_ms / 1000).ok();
        let interface = interface_of_stream(&event.stream);
        pipeline.push_event(
            event.message.as_bytes(),
            fallback_time,
            interface,
            &mut summary,
        );
    }
    Ok(report.finish(pipeline, summary))
}

/// Runs the command: the rendered report.
pub async fn run(request: &InspectRequest, now: u64) -> Result<String, ApiError> {
    let summary = inspect(request, now).await?;
    Ok(report::render(&summary, request.report.output))
}

/// How far back `--follow` starts when `--since` is not given.
const FOLLOW_DEFAULT_BACK_SECONDS: u64 = 30 * 60;

/// Prints decided sessions, one line each, to be flushed after each poll.
struct DecidedLines {
    output: OutputFormat,
    lines: Vec<String>,
}

impl DecidedLines {
    fn line(&self, session: &SessionReport<'_>) -> String {
        match self.output {
            OutputFormat::Json => serde_json::to_string(&SessionDetail::of(session))
                .expect("a session always serializes"),
            OutputFormat::Table => {
                let start = session.start.map_or_else(
                    || "-".to_string(),
                    |start| {
                        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(start))
                            .to_string()
                    },
                );
                format!(
                    "{start}  {}  {:<17}  {:<7}  {:<4}  {} -> {}  {} packets  {} bytes",
                    session.interface_id,
                    session.verdict.as_str(),
                    session.direction.as_str(),
                    protocol_name(session.protocol),
                    session.initiator,
                    session.responder,
                    session.packets,
                    session.bytes,
                )
            }
        }
    }
}

impl SessionObserver for DecidedLines {
    fn decided(&mut self, session: &SessionReport<'_>) {
        let line = self.line(session);
        self.lines.push(line);
    }
    fn traffic(&mut self, _: &str, _: Verdict, _: Direction, _: u64, _: u64) {}
    fn closed(&mut self, _: &SessionReport<'_>) {}
    fn evicted(&mut self, _: &str) {}
}

impl Observer for DecidedLines {
    fn record(&mut self, _: &str, _: Option<Action>, _: LogStatus) {}
    fn malformed(&mut self, reason: Malformed) {
        tracing::debug!(reason = reason.as_str(), "Malformed record");
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

/// `inspect --follow`: polls the log group every `poll_interval` until
/// `stop` resolves, writing each session to `out` as it is decided. The
/// first poll reads back to `--since` (default 30 minutes); sessions are
/// decided as the exporter decides them (both directions seen, or the
/// wall clock less the delivery delay past the reply grace). A failed poll
/// is logged and its window read again; an error that retrying cannot fix
/// (no such log group, access denied) ends the command when nothing was
/// read yet.
pub async fn follow(
    request: &InspectRequest,
    poll_interval: Duration,
    out: &mut impl Write,
    stop: impl Future<Output = ()>,
) -> Result<(), FollowError> {
    let api = logs_api(request).await;
    let filter = &request.report.filter;
    let now = u64::try_from(now_ms() / 1000).unwrap_or(0);
    let back = filter
        .since
        .map_or(FOLLOW_DEFAULT_BACK_SECONDS, |since| {
            now.saturating_sub(since)
        })
        .max(poll_interval.as_secs());
    let lookback = Duration::from_secs(back);
    let config = PollerConfig {
        interfaces: filter.interface_id.iter().cloned().collect(),
        poll_interval,
        lookback,
        max_catchup: lookback.max(PollerConfig::new("").max_catchup),
        ..PollerConfig::new(request.log_group.clone())
    };
    let mut poller = Poller::new(api, config, now_ms());
    let report = ReportRequest {
        filter: RecordFilter {
            since: None,
            until: None,
            ..filter.clone()
        },
        ..request.report.clone()
    };
    let (mut pipeline, _) = report.start();
    let mut decided = DecidedLines {
        output: request.report.output,
        lines: Vec::new(),
    };
    let mut polled_once = false;
    let mut stop = std::pin::pin!(stop);
    loop {
        let result = tokio::select! {
            result = poller.poll(now_ms()) => result,
            () = &mut stop => return Ok(()),
        };
        match result {
            Ok(outcome) => {
                polled_once = true;
                let now = u64::try_from(now_ms() / 1000).unwrap_or(0);
                pipeline.set_wall_clock(now);
                // Largest delay of this poll's records, end to ingestion, ms.
                let mut largest: Option<i64> = None;
                for event in &outcome.events {
                    let fallback_time = u64::try_from(event.timestamp_ms / 1000).ok();
                    let interface = interface_of_stream(&event.stream);
                    let end = pipeline.push_event(
                        event.message.as_bytes(),
                        fallback_time,
                        interface,
                        &mut decided,
                    );
                    if let Some(end) = end.and_then(|end| i64::try_from(end).ok()) {
                        let delay = (event.ingestion_time_ms - end.saturating_mul(1000)).max(0);
                        largest = largest.max(Some(delay));
                    }
                }
                poller.note_delay_since_end(now_ms(), largest);
                let measured = poller
                    .delay_since_end_ms()
                    .map(|ms| ms.unsigned_abs().div_ceil(1000));
                let watermark = wall_clock_watermark(now, measured, poll_interval.as_secs(), back);
                pipeline.advance_to(watermark, &mut decided);
                for line in decided.lines.drain(..) {
                    writeln!(out, "{line}").map_err(FollowError::Write)?;
                }
                out.flush().map_err(FollowError::Write)?;
            }
            Err(error) if !polled_once && !error.is_retriable() => {
                return Err(FollowError::Api(error));
            }
            Err(error) => {
                tracing::warn!(log_group = %request.log_group, kind = error.metric_label(), %error,
                    "Poll failed; its window will be read again");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(poller.next_delay()) => {}
            () = &mut stop => return Ok(()),
        }
    }
}

/// Why `inspect --follow` stopped before it was told to.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error(transparent)]
    Api(ApiError),
    #[error("writing the sessions: {0}")]
    Write(#[source] std::io::Error),
}
