//! vpc-flow-exporter: VPC Flow Logs → sessions → verdicts → Prometheus.
//!
//! `flow` is the pure core; `source` is where records come from (CloudWatch
//! Logs, S3, files); `input` reads files into the core; `commands` are the
//! offline commands (`analyze`, `inspect`, `generate` and their `report`);
//! `exporter` is `serve`; `config` is the exporter's typed configuration;
//! `metrics` names every metric; `api` is the drill-down (decided sessions)
//! and the landing page. `server` serves HTTP behind `web` (TLS, basic
//! auth, limits).

pub mod api;
pub mod commands;
pub mod config;
#[cfg(feature = "aws")]
pub mod exporter;
pub mod flow;
pub mod input;
pub mod metrics;
pub mod server;
pub mod shard;
pub mod source;
pub mod state;
pub mod web;

/// Every way a command can fail, for `main` to print; `metric_label` is a
/// bounded name for each kind.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Input(#[from] input::InputError),
    #[cfg(feature = "aws")]
    #[error(transparent)]
    S3(#[from] commands::analyze::S3AnalyzeError),
    #[error("reading {log_group}: {source}")]
    Api {
        log_group: String,
        #[source]
        source: source::cloudwatch::ApiError,
    },
    #[cfg(feature = "aws")]
    #[error(transparent)]
    Start(#[from] exporter::StartError),
    /// A flag or argument that cannot be used, with what was expected.
    #[error("{0}")]
    Usage(String),
    /// Writing output or starting the runtime.
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Config(_) => "config",
            Error::Input(_) => "input",
            #[cfg(feature = "aws")]
            Error::S3(_) => "s3",
            Error::Api { source, .. } => source.metric_label(),
            #[cfg(feature = "aws")]
            Error::Start(_) => "start",
            Error::Usage(_) => "usage",
            Error::Io { .. } => "io",
        }
    }
}
