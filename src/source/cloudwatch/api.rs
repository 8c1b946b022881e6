//! The narrow interface to CloudWatch Logs, in our own types.
//!
//! The poller only needs two operations, so it is generic over [`LogsApi`]:
//! unit tests drive it with an in-memory fake, production and the moto tests
//! with [`super::AwsLogsApi`]. Nothing here depends on the AWS SDK.

use std::future::Future;

/// Operation label of `FilterLogEvents` (metrics, logs).
pub const FILTER_LOG_EVENTS: &str = "FilterLogEvents";
/// Operation label of `DescribeLogStreams` (metrics, logs).
pub const DESCRIBE_LOG_STREAMS: &str = "DescribeLogStreams";

/// The most stream names one `FilterLogEvents` call accepts (`logStreamNames`).
pub const MAX_STREAMS_PER_CALL: usize = 100;

/// One CloudWatch log event: for VPC flow logs, one flow record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    /// Log stream name, e.g. `eni-0123456789abcdef0-all`.
    pub stream: String,
    /// Event id, opaque: AWS gives 56-digit strings, moto a small counter.
    /// Dedup keys on stream and id together.
    pub event_id: String,
    /// Event timestamp in Unix milliseconds. For flow logs this is the
    /// record's `start`, and it is what `startTime`/`endTime` filter on.
    pub timestamp_ms: i64,
    /// When CloudWatch ingested the event, Unix milliseconds.
    pub ingestion_time_ms: i64,
    /// The raw flow-log line.
    pub message: String,
}

/// One page of `FilterLogEvents`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventsPage {
    pub events: Vec<LogEvent>,
    /// Present when more pages follow (a page may be empty and still have one).
    pub next_token: Option<String>,
}

/// One `FilterLogEvents` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterRequest {
    pub log_group: String,
    /// At most [`MAX_STREAMS_PER_CALL`] names, never empty (an empty list
    /// would mean "every stream of the group" to the API).
    pub stream_names: Vec<String>,
    /// Inclusive lower bound on the event timestamp, Unix ms.
    pub start_ms: i64,
    /// Inclusive upper bound on the event timestamp, Unix ms.
    pub end_ms: i64,
    pub next_token: Option<String>,
}

/// A failed API call, classified once (see [`super::retry`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The service asked us to slow down (429, `ThrottlingException`, ...).
    #[error("{operation} throttled: {message}")]
    Throttled {
        operation: &'static str,
        message: String,
    },
    /// Worth trying again later: timeouts, connection failures, 5xx.
    #[error("{operation} failed, will retry: {message}")]
    Retriable {
        operation: &'static str,
        message: String,
    },
    /// The `nextToken` of a paging run is no longer valid (CloudWatch Logs
    /// answers `InvalidParameterException`): the run starts over.
    #[error("{operation}: nextToken expired: {message}")]
    ExpiredToken {
        operation: &'static str,
        message: String,
    },
    /// Retrying will not help until something changes: credentials,
    /// permissions, a missing log group, an invalid request.
    #[error("{operation} failed: {message}")]
    Fatal {
        operation: &'static str,
        message: String,
    },
}

impl ApiError {
    /// Bounded label for `vpcflow_api_calls_total{outcome}`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ApiError::Throttled { .. } => "throttled",
            ApiError::Retriable { .. } | ApiError::ExpiredToken { .. } | ApiError::Fatal { .. } => {
                "error"
            }
        }
    }

    /// The operation that failed (`FilterLogEvents`, `DescribeLogStreams`).
    pub fn operation(&self) -> &'static str {
        match self {
            ApiError::Throttled { operation, .. }
            | ApiError::Retriable { operation, .. }
            | ApiError::ExpiredToken { operation, .. }
            | ApiError::Fatal { operation, .. } => operation,
        }
    }

    /// Whether the same request may succeed later without any change.
    pub fn is_retriable(&self) -> bool {
        !matches!(self, ApiError::Fatal { .. })
    }

    /// Whether the call tries again at once, after a backoff
    /// ([`super::attempts`]): throttling and transient faults. An expired
    /// token is left to the poller, which starts the paging run over.
    pub fn is_retried_within_call(&self) -> bool {
        matches!(
            self,
            ApiError::Throttled { .. } | ApiError::Retriable { .. }
        )
    }
}

/// One page of `DescribeLogStreams`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamsPage {
    pub names: Vec<String>,
    pub next_token: Option<String>,
}

/// What each attempt of a call waits for before it goes: its turn in the
/// request budget ([`super::Budgeted`]).
pub trait Turns: Sync {
    fn take_turn(&self) -> impl Future<Output = ()> + Send;
}

/// No wait: calls outside any budget (`inspect`, tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTurns;

impl Turns for NoTurns {
    async fn take_turn(&self) {}
}

/// What the poller needs from CloudWatch Logs.
pub trait LogsApi: Sync {
    /// One page of the group's interface streams (`DescribeLogStreams`
    /// with prefix `eni-`). Page by page so that a wrapper (the request
    /// budget) sees every call.
    fn interface_streams_page(
        &self,
        log_group: &str,
        next_token: Option<String>,
    ) -> impl Future<Output = Result<StreamsPage, ApiError>> + Send;

    /// Names of the group's interface streams, every page.
    fn list_interface_streams(
        &self,
        log_group: &str,
    ) -> impl Future<Output = Result<Vec<String>, ApiError>> + Send {
        async move {
            let mut names = Vec::new();
            let mut token = None;
            loop {
                let page = self.interface_streams_page(log_group, token).await?;
                names.extend(page.names);
                match page.next_token {
                    Some(next) => token = Some(next),
                    None => break,
                }
            }
            tracing::debug!(log_group, streams = names.len(), "Listed interface streams");
            Ok(names)
        }
    }

    /// One page of `FilterLogEvents`.
    fn filter_log_events(
        &self,
        req: &FilterRequest,
    ) -> impl Future<Output = Result<EventsPage, ApiError>> + Send;

    /// [`LogsApi::interface_streams_page`], every attempt after its turn
    /// from `turns` (the request budget calls this). An API that retries
    /// within a call takes a turn before each attempt (`AwsLogsApi`);
    /// by default a call is one attempt and takes one turn.
    fn interface_streams_page_taking_turns(
        &self,
        log_group: &str,
        next_token: Option<String>,
        turns: &impl Turns,
    ) -> impl Future<Output = Result<StreamsPage, ApiError>> + Send {
        async move {
            turns.take_turn().await;
            self.interface_streams_page(log_group, next_token).await
        }
    }

    /// [`LogsApi::filter_log_events`], every attempt after its turn from
    /// `turns`, as [`LogsApi::interface_streams_page_taking_turns`].
    fn filter_log_events_taking_turns(
        &self,
        req: &FilterRequest,
        turns: &impl Turns,
    ) -> impl Future<Output = Result<EventsPage, ApiError>> + Send {
        async move {
            turns.take_turn().await;
            self.filter_log_events(req).await
        }
    }
}

/// Told about every API call, so the metrics module can count
/// `vpcflow_api_calls_total{operation,outcome}` and
/// `vpcflow_api_throttles_total{operation}` without this module knowing
/// Prometheus.
pub trait ApiObserver: Send + Sync {
    /// `operation`: [`FILTER_LOG_EVENTS`] or [`DESCRIBE_LOG_STREAMS`];
    /// `outcome`: `success`, `throttled` or `error`
    /// ([`ApiError::metric_label`]); `seconds`: wall time of the call from
    /// its first attempt on, retries with their backoffs and turns
    /// included. Called once per call, with its final outcome.
    fn api_call(&self, operation: &'static str, outcome: &'static str, seconds: f64);

    /// Called once for every failed HTTP attempt within a call, retried
    /// or not, so throttling and transient faults a retry got past are
    /// seen too. A call that ends in error
    /// reports its last attempt here as well as through
    /// [`ApiObserver::api_call`]. `outcome` is the same bounded label as
    /// there: `throttled` (429 or a throttling error code) or `error`
    /// (5xx, timeouts, connection failures, and any other failed attempt);
    /// `kind` says which ([`super::retry::attempt_kind`]'s bounded labels).
    fn attempt_failed(&self, operation: &'static str, outcome: &'static str, kind: &'static str) {
        let _ = (operation, outcome, kind);
    }
}

/// An observer that ignores everything (tools, tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopObserver;

impl ApiObserver for NoopObserver {
    fn api_call(&self, _operation: &'static str, _outcome: &'static str, _seconds: f64) {}
}
