//! The CloudWatch Logs source: VPC flow logs published to a log group, one
//! stream per interface (`eni-…-all`, or `-accept`/`-reject`).
//!
//! * [`api`]: the narrow [`LogsApi`] trait and its own types;
//! * [`aws`]: [`AwsLogsApi`], the trait over the AWS SDK;
//! * [`retry`]: the one rule that classifies failed calls;
//! * [`poller`]: [`Poller`], windowing, overlap, dedup and backoff for one
//!   log group, and [`read_window`] for one fixed window.

pub mod api;
pub mod aws;
pub mod poller;
pub mod recent;
pub mod retry;

#[cfg(test)]
mod fake;

pub use api::{
    ApiError, ApiObserver, DESCRIBE_LOG_STREAMS, EventsPage, FILTER_LOG_EVENTS, FilterRequest,
    LogEvent, LogsApi, MAX_STREAMS_PER_CALL, NoopObserver,
};
pub use aws::AwsLogsApi;
pub use poller::{PollOutcome, Poller, PollerConfig, read_window};
