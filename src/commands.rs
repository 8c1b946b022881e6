//! The command-line commands built on the core and the sources: `analyze`
//! (files, stdin or `s3://` on every core), `inspect` (one interface's
//! sessions from CloudWatch Logs), `generate` (synthetic flow logs) and
//! `report` (what `analyze` and `inspect` print). `serve` is the
//! exporter (`crate::exporter`).

pub mod analyze;
pub mod generate;
#[cfg(feature = "aws")]
pub mod inspect;
pub mod report;
