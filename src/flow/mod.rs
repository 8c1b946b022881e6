//! The pure core: flow-log records in, sessions and verdicts out.
//!
//! Nothing here does I/O, spawns tasks or reads the clock: sources feed it
//! lines and times, exporters read what it decides.

mod address;
pub mod checkpoint;
pub mod clock;
pub mod correlate;
pub mod format;
pub mod pipeline;
pub mod plausible;
pub mod record;
mod rules;
mod session;
pub mod settings;
pub mod summary;
mod table;
mod tee;
#[cfg(test)]
mod testkit;
pub mod verdict;

pub use checkpoint::{PipelineCheckpoint, RestoreError};
pub use correlate::{Correlator, InterfaceFacts, ServicePorts, SessionObserver, Settings};
pub use format::{Field, FormatChoice, FormatError, FormatWarning, LogFormat};
pub use pipeline::{LineSplitter, Observer, Pipeline, RecordFilter};
pub use record::{Action, FieldKind, FlowDirection, LogStatus, Malformed, Record, RecordParser};
pub use summary::{SessionDetail, Summary, VerdictCounts};
pub use tee::Both;
pub use verdict::{Direction, Endpoint, SessionReport, Verdict};
