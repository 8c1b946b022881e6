//! vpc-flow-exporter: VPC Flow Logs → sessions → verdicts → Prometheus.
//!
//! `flow` is the pure core; `source` is where records come from (CloudWatch
//! Logs, files); `input` reads files into the core; `analyze` and `report`
//! are the offline command; `generate` makes synthetic flow logs; `config`
//! is the exporter's typed configuration; `metrics` names every metric.

pub mod analyze;
pub mod config;
pub mod exporter;
pub mod flow;
pub mod generate;
pub mod input;
pub mod inspect;
pub mod metrics;
pub mod report;
pub mod server;
pub mod source;
