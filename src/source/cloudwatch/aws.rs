//! [`LogsApi`] over the real `aws-sdk-cloudwatchlogs` client.
//!
//! The client comes configured from `source::aws_clients` (credentials,
//! region, endpoint URL and timeouts set explicitly rather than left to SDK
//! defaults; one attempt per SDK call). A call's attempts are made here
//! ([`super::attempts`]), each in its turn of the request budget when the
//! call comes through [`super::Budgeted`]. Every call is reported to an
//! [`ApiObserver`], as is every failed attempt within a call (through an
//! SDK interceptor, so retries that got past a failure are counted too).

use std::error::Error as StdError;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::config::interceptors::FinalizerInterceptorContextRef;
use aws_sdk_cloudwatchlogs::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_cloudwatchlogs::error::{BoxError, DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_cloudwatchlogs::operation::describe_log_streams::DescribeLogStreamsError;
use aws_sdk_cloudwatchlogs::operation::filter_log_events::FilterLogEventsError;

use super::api::{
    ApiError, ApiObserver, DESCRIBE_LOG_STREAMS, EventsPage, FILTER_LOG_EVENTS, FilterRequest,
    LogEvent, LogsApi, NoTurns, StreamsPage, Turns,
};
use super::attempts;
use super::retry::{AttemptFailure, FailureKind, attempt_kind, classify, from_sdk_error};
use super::streams::INTERFACE_STREAM_PREFIX;

/// One attempt, by default (`[cloudwatch] attempt_timeout`): a
/// `FilterLogEvents` page of 10,000 events is ~1-3 MB.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// CloudWatch Logs through the AWS SDK. Cheap to clone (the client is
/// shared), so several pollers can use one.
#[derive(Clone)]
pub struct AwsLogsApi {
    client: Client,
    observer: Arc<dyn ApiObserver>,
}

impl std::fmt::Debug for AwsLogsApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client's config holds credentials: never print it.
        f.debug_struct("AwsLogsApi").finish_non_exhaustive()
    }
}

impl AwsLogsApi {
    /// Wraps a configured client (`aws_clients` configures them).
    pub fn from_client(client: Client, observer: Arc<dyn ApiObserver>) -> Self {
        Self { client, observer }
    }

    /// The SDK client, e.g. to seed a log group in tests.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// One call of `operation`: its attempts ([`attempts::call`], each
    /// after its turn from `turns`), reported once with the final outcome
    /// and the time from the first attempt on.
    async fn call<T, F, Fut>(
        &self,
        operation: &'static str,
        turns: &impl Turns,
        attempt: F,
    ) -> Result<T, ApiError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let call = attempts::call(turns, attempt).await;
        let outcome = match &call.result {
            Ok(_) => "success",
            Err(e) => e.metric_label(),
        };
        self.observer
            .api_call(operation, outcome, call.first_sent.elapsed().as_secs_f64());
        call.result
    }

    /// The interceptor that reports each failed attempt of one operation;
    /// `E` is that operation's error type (to read the error code).
    fn attempts<E>(&self, operation: &'static str) -> AttemptReporter<E> {
        AttemptReporter {
            operation,
            observer: self.observer.clone(),
            _error: PhantomData,
        }
    }
}

/// Reports every failed attempt of one operation to the observer
/// (`read_after_attempt` runs after each attempt, timeouts included).
/// Classified by [`classify`], like the final error.
/// Reads only the status, the error code and the error kind: nothing from
/// the request, so no credentials.
struct AttemptReporter<E> {
    operation: &'static str,
    observer: Arc<dyn ApiObserver>,
    _error: PhantomData<fn() -> E>,
}

impl<E> std::fmt::Debug for AttemptReporter<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttemptReporter")
            .field("operation", &self.operation)
            .finish_non_exhaustive()
    }
}

impl<E> Intercept for AttemptReporter<E>
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    fn name(&self) -> &'static str {
        "AttemptReporter"
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(Err(err)) = context.output_or_error() else {
            return Ok(());
        };
        let status = context.response().map(|r| r.status().as_u16());
        // The same kinds `from_sdk_error` derives from the `SdkError` each
        // of these becomes.
        let (kind, code) = if let Some(op) = err.as_operation_error() {
            (
                FailureKind::Service,
                op.downcast_ref::<E>().and_then(|e| e.code()),
            )
        } else if err.as_connector_error().is_some_and(|c| c.is_user()) {
            (FailureKind::Local, None)
        } else {
            (FailureKind::Transport, None)
        };
        let outcome = classify(self.operation, kind, status, code, String::new()).metric_label();
        let failure = if err.is_operation_error() {
            AttemptFailure::Service
        } else if err.is_timeout_error() {
            AttemptFailure::Timeout
        } else if let Some(connector) = err.as_connector_error() {
            if connector.is_user() {
                AttemptFailure::Local
            } else if connector.is_timeout() {
                AttemptFailure::Timeout
            } else {
                AttemptFailure::Connection
            }
        } else if err.is_response_error() {
            AttemptFailure::BadResponse
        } else {
            AttemptFailure::Connection
        };
        self.observer
            .attempt_failed(self.operation, outcome, attempt_kind(failure, status, code));
        Ok(())
    }
}

impl AwsLogsApi {
    /// One attempt of `DescribeLogStreams`.
    async fn describe_log_streams_once(
        &self,
        log_group: &str,
        next_token: Option<String>,
    ) -> Result<StreamsPage, ApiError> {
        let out = self
            .client
            .describe_log_streams()
            .log_group_name(log_group)
            .log_stream_name_prefix(INTERFACE_STREAM_PREFIX)
            .set_next_token(next_token)
            .customize()
            .interceptor(self.attempts::<DescribeLogStreamsError>(DESCRIBE_LOG_STREAMS))
            .send()
            .await
            .map_err(|e| from_sdk_error(DESCRIBE_LOG_STREAMS, &e))?;
        Ok(StreamsPage {
            names: out
                .log_streams()
                .iter()
                .filter_map(|s| s.log_stream_name().map(str::to_owned))
                .collect(),
            next_token: out
                .next_token()
                .filter(|next| !next.is_empty())
                .map(str::to_owned),
        })
    }

    /// One attempt of `FilterLogEvents`.
    async fn filter_log_events_once(&self, req: &FilterRequest) -> Result<EventsPage, ApiError> {
        let out = self
            .client
            .filter_log_events()
            .log_group_name(&req.log_group)
            .set_log_stream_names(Some(req.stream_names.clone()))
            .start_time(req.start_ms)
            .end_time(req.end_ms)
            .set_next_token(req.next_token.clone())
            .customize()
            .interceptor(self.attempts::<FilterLogEventsError>(FILTER_LOG_EVENTS))
            .send()
            .await
            .map_err(|e| {
                let code = e.as_service_error().and_then(|s| s.code());
                // A token that was valid a page ago: AWS lets them expire
                // (and says so with this code); the paging run starts over.
                if req.next_token.is_some() && code == Some("InvalidParameterException") {
                    ApiError::ExpiredToken {
                        operation: FILTER_LOG_EVENTS,
                        message: DisplayErrorContext(&e).to_string(),
                    }
                } else {
                    from_sdk_error(FILTER_LOG_EVENTS, &e)
                }
            })?;
        let next_token = out
            .next_token()
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        let events = out
            .events
            .unwrap_or_default()
            .into_iter()
            .map(|e| LogEvent {
                stream: e.log_stream_name.unwrap_or_default(),
                event_id: e.event_id.unwrap_or_default(),
                timestamp_ms: e.timestamp.unwrap_or_default(),
                ingestion_time_ms: e.ingestion_time.unwrap_or_default(),
                message: e.message.unwrap_or_default(),
            })
            .collect();
        Ok(EventsPage { events, next_token })
    }
}

/// Outside a budget (`inspect`), a call's attempts go without waiting for
/// turns; [`super::Budgeted`] calls the `…_taking_turns` methods.
impl LogsApi for AwsLogsApi {
    async fn interface_streams_page(
        &self,
        log_group: &str,
        next_token: Option<String>,
    ) -> Result<StreamsPage, ApiError> {
        self.interface_streams_page_taking_turns(log_group, next_token, &NoTurns)
            .await
    }

    async fn filter_log_events(&self, req: &FilterRequest) -> Result<EventsPage, ApiError> {
        self.filter_log_events_taking_turns(req, &NoTurns).await
    }

    async fn interface_streams_page_taking_turns(
        &self,
        log_group: &str,
        next_token: Option<String>,
        turns: &impl Turns,
    ) -> Result<StreamsPage, ApiError> {
        self.call(DESCRIBE_LOG_STREAMS, turns, || {
            self.describe_log_streams_once(log_group, next_token.clone())
        })
        .await
    }

    async fn filter_log_events_taking_turns(
        &self,
        req: &FilterRequest,
        turns: &impl Turns,
    ) -> Result<EventsPage, ApiError> {
        self.call(FILTER_LOG_EVENTS, turns, || {
            self.filter_log_events_once(req)
        })
        .await
    }
}
