//! Where flow records come from. Each source hands the pipeline raw flow-log
//! lines with their timing; parsing and correlation live in the pure core.
//!
//! * [`cloudwatch`]: polls CloudWatch Logs (`FilterLogEvents`), re-reading an
//!   overlap window for late records and dropping events already seen.
//! * [`files`]: flow-log files, read once or replayed with times shifted to now.
//! * [`aws_clients`]: the SDK config of every AWS client (credentials,
//!   retries, timeouts); one CloudWatch Logs client per region and role (STS
//!   AssumeRole into other accounts), shared by the groups that use it.
//! * [`s3`]: objects S3 delivery writes, announced on SQS, each counted once.

#[cfg(feature = "aws")]
pub mod aws_clients;
pub mod cloudwatch;
pub mod ec2;
pub mod files;
pub mod s3;
