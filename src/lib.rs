//! vpc-flow-exporter: VPC Flow Logs → sessions → verdicts → Prometheus.
pub mod source;
