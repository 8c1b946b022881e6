//! vpc-flow-exporter: VPC Flow Logs → sessions → verdicts → Prometheus.
//!
//! `flow` is the pure core; `input` reads files into it; `analyze` and
//! `report` are the offline command; `generate` makes synthetic flow logs;
//! `config` is the exporter's typed configuration.

pub mod analyze;
pub mod config;
pub mod flow;
pub mod generate;
pub mod input;
pub mod report;
