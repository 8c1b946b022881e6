//! `vpc-flow-exporter inspect`: the troubleshooting workflow in one command.
//! Reads one window of a log group from CloudWatch Logs, with the exporter's
//! own source code, and prints the same session table as `analyze`.
//!
//! CloudWatch stores a flow record under its *start* time, and a record lands
//! up to one capture interval (1 or 10 minutes) plus the delivery delay
//! (about 5 minutes, best effort) after it starts: a window that ends now
//! may still miss its last quarter hour of records.

use std::collections::HashMap;
use std::sync::Arc;

use crate::flow::{FormatChoice, InterfaceFacts, Pipeline, RecordFilter, Settings, Summary};
use crate::report::{self, OutputFormat};
use crate::source::cloudwatch::poller::interface_of_stream;
use crate::source::cloudwatch::{ApiError, AwsLogsApi, NoopObserver, read_window};

/// What `inspect` was asked.
#[derive(Debug, Clone)]
pub struct InspectRequest {
    pub log_group: String,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub format: FormatChoice,
    pub output: OutputFormat,
    pub details: bool,
    /// `since` and `until` also bound the CloudWatch window; the interface
    /// selects its log streams.
    pub filter: RecordFilter,
    pub settings: Settings,
    pub facts: HashMap<String, InterfaceFacts>,
}

/// Reads the window and returns the finished summary.
pub async fn inspect(request: &InspectRequest, now: u64) -> Result<Summary, ApiError> {
    let api = AwsLogsApi::new(
        request.region.clone(),
        request.endpoint_url.clone(),
        Arc::new(NoopObserver),
    )
    .await;
    let since = request.filter.since.unwrap_or(now.saturating_sub(30 * 60));
    let until = request.filter.until.unwrap_or(now);
    let to_ms = |seconds: u64| {
        i64::try_from(seconds)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000)
    };
    let events = read_window(
        &api,
        &request.log_group,
        request.filter.interface_id.as_deref(),
        to_ms(since),
        to_ms(until).saturating_add(999),
    )
    .await?;
    tracing::debug!(events = events.len(), "Read the window");
    // The window bounds the records' start; the filter would cut on their end.
    let filter = RecordFilter {
        since: None,
        until: None,
        ..request.filter.clone()
    };
    let mut pipeline = Pipeline::new(
        request.format.clone(),
        request.settings.clone(),
        request.facts.clone(),
        filter,
    );
    let mut summary = Summary::new(
        pipeline.correlator().service_ports().clone(),
        request.details,
    );
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
    pipeline.finish(&mut summary);
    summary.sort_details();
    Ok(summary)
}

/// Runs the command: the rendered report.
pub async fn run(request: &InspectRequest, now: u64) -> Result<String, ApiError> {
    let summary = inspect(request, now).await?;
    Ok(report::render(&summary, request.output))
}
