//! The CloudWatch Logs source: VPC flow logs published to a log group, one
//! stream per interface (`eni-…-all`, or `-accept`/`-reject`).
//!
//! * [`api`]: the narrow [`LogsApi`] trait and its own types;
//! * [`aws`]: [`AwsLogsApi`], the trait over the AWS SDK;
//! * [`retry`]: the one rule that classifies failed calls;
//! * [`attempts`]: a call's attempts, each in its turn of the budget, a
//!   retry after its backoff;
//! * [`streams`]: how flow logs name their streams (`eni-…`);
//! * [`window`]: the window arithmetic, pure: which log time each poll
//!   reads, what a success or failure changes;
//! * [`poller`]: [`Poller`], the async driver around it for one log group
//!   (discovery, paging, dedup), and [`read_window`] for one fixed window;
//! * [`budget`]: [`Budgeted`], every call within the account-region's
//!   request budget;
//! * [`sharded`]: [`ShardedLogs`], the streams of this replica's shard only.

pub mod api;
pub mod attempts;
#[cfg(feature = "aws")]
pub mod aws;
pub mod budget;
pub mod poller;
pub mod recent;
#[cfg(feature = "aws")]
pub mod retry;
pub mod sharded;
pub mod streams;
pub mod window;

#[cfg(test)]
mod fake;

pub use api::{
    ApiError, ApiObserver, DESCRIBE_LOG_STREAMS, EventsPage, FILTER_LOG_EVENTS, FilterRequest,
    LogEvent, LogsApi, MAX_STREAMS_PER_CALL, NoTurns, NoopObserver, StreamsPage, Turns,
};
#[cfg(feature = "aws")]
pub use aws::{ATTEMPT_TIMEOUT, AwsLogsApi};
pub use budget::{BudgetObserver, Budgeted, RequestBudget};
pub use poller::{
    Batch, PollOutcome, PollRun, PollStep, Poller, PollerConfig, PollerState, PollerStateRef,
    SeenEvents, read_window,
};
pub use sharded::ShardedLogs;
pub use streams::interface_of_stream;
