//! `vpc-flow-exporter inspect`: the troubleshooting workflow in one command.
//! Reads one window of a log group from CloudWatch Logs, with the exporter's
//! own source code, and prints the same session table as `analyze`.
//!
//! CloudWatch stores a flow record under its *start* time, and a record lands
//! up to one capture interval (1 or 10 minutes) plus the delivery delay
//! (about 5 minutes, best effort) after it starts: a window that ends now
//! may still miss its last quarter hour of records.

use std::sync::Arc;

use crate::flow::{RecordFilter, Summary};
use crate::report::{self, ReportRequest};
use crate::source::cloudwatch::interface_of_stream;
use crate::source::cloudwatch::{ApiError, AwsLogsApi, NoopObserver, read_window};

/// What `inspect` was asked.
#[derive(Debug, Clone)]
pub struct InspectRequest {
    pub log_group: String,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    /// Its filter's `since` and `until` bound the CloudWatch window (30
    /// minutes back to now when absent); its interface selects the streams.
    pub report: ReportRequest,
}

/// Reads the window and returns the finished summary.
pub async fn inspect(request: &InspectRequest, now: u64) -> Result<Summary, ApiError> {
    let api = AwsLogsApi::new(
        request.region.clone(),
        request.endpoint_url.clone(),
        Arc::new(NoopObserver),
    )
    .await;
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
