//! `vpc-flow-exporter analyze`: offline analysis of flow-log files, on
//! one thread or, sharded by interface, on every core ([`parallel`] for
//! text, [`parquet`] for Parquet), or of
//! the objects under `s3://bucket/prefix`. The command line draws the
//! progress bar; the readers only report bytes.

mod parallel;
mod parquet;
#[cfg(feature = "aws")]
mod s3;

#[cfg(feature = "aws")]
pub use s3::{S3AnalyzeError, S3Location, analyze_s3};

use std::io::{self, IsTerminal};
use std::net::IpAddr;
use std::path::PathBuf;
use std::thread;
use std::time::{SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressStyle};

use std::collections::HashMap;

use crate::commands::report::{self, ReportRequest};
use crate::flow::{InterfaceFacts, Summary};
use crate::input;

/// What `analyze` was asked.
#[derive(Debug, Clone)]
pub struct AnalyzeRequest {
    pub paths: Vec<PathBuf>,
    pub input_format: input::InputFormat,
    pub report: ReportRequest,
    /// Worker threads: 1 for the single-threaded path, 0 for one per core.
    pub threads: usize,
}

impl AnalyzeRequest {
    fn workers(&self) -> usize {
        match self.threads {
            0 => thread::available_parallelism().map_or(1, usize::from),
            threads => threads,
        }
    }
}

/// Reads every file and returns the finished summary; the same whatever
/// the number of threads.
pub fn analyze(request: &AnalyzeRequest) -> Result<Summary, input::InputError> {
    let bar = progress_bar(&request.paths);
    let progress = |bytes: u64| {
        if let Some(bar) = &bar {
            bar.inc(bytes);
        }
    };
    let workers = request.workers();
    let layout = (workers > 1)
        .then(|| parallel::shared_layout(&request.paths, request.input_format))
        .flatten();
    let summary = match layout {
        Some(input::InputFormat::Text) => {
            parallel::analyze(&request.paths, &request.report, workers, &progress)?
        }
        Some(input::InputFormat::Parquet) => {
            parquet::analyze(&request.paths, &request.report, workers, &progress)?
        }
        _ => {
            let (mut pipeline, mut summary) = request.report.start();
            input::feed_files(
                &request.paths,
                request.input_format,
                &mut pipeline,
                &mut summary,
                &progress,
            )?;
            request.report.finish(pipeline, summary)
        }
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(summary)
}

/// Runs the command: the rendered report, and the warnings about the
/// formats read (for stderr).
pub fn run(request: &AnalyzeRequest) -> Result<(String, Vec<String>), input::InputError> {
    let summary = analyze(request)?;
    Ok((
        report::render(&summary, request.report.output),
        summary.warnings,
    ))
}

/// A bar over the total size when stderr is a terminal and the input is
/// long enough to wait for.
fn progress_bar(paths: &[PathBuf]) -> Option<ProgressBar> {
    if !io::stderr().is_terminal() {
        return None;
    }
    let total: u64 = paths
        .iter()
        .filter_map(|path| std::fs::metadata(path).ok())
        .map(|metadata| metadata.len())
        .sum();
    if total < 16 << 20 {
        return None;
    }
    Some(byte_bar(total))
}

/// The bar `analyze` draws over bytes read.
pub fn byte_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// A point in time on the command line: Unix seconds, an RFC 3339 time
/// (`2024-01-05T10:00:00Z`), or a duration ago (`30m`).
pub fn parse_time(text: &str, now: SystemTime) -> Result<u64, String> {
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(seconds);
    }
    if let Ok(time) = humantime::parse_rfc3339_weak(text) {
        return seconds_since_epoch(time);
    }
    if let Ok(ago) = humantime::parse_duration(text) {
        return seconds_since_epoch(now.checked_sub(ago).unwrap_or(UNIX_EPOCH));
    }
    Err(format!(
        "\"{text}\" is not a time: expected Unix seconds, an RFC 3339 time like 2024-01-05T10:00:00Z, or a duration ago like 30m"
    ))
}

fn seconds_since_epoch(time: SystemTime) -> Result<u64, String> {
    time.duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .map_err(|_| "times before 1970 are not flow-log times".to_string())
}

/// An address filter from the command line.
pub fn parse_address(text: &str) -> Result<IpAddr, String> {
    text.parse()
        .map_err(|_| format!("\"{text}\" is not an IPv4 or IPv6 address"))
}

/// `--interface-address ENI=IP`.
pub fn parse_interface_address(text: &str) -> Result<(String, IpAddr), String> {
    let (interface, address) = text.split_once('=').ok_or_else(|| {
        format!("\"{text}\" is not ENI=IP, e.g. eni-0123456789abcdef0=10.0.7.253")
    })?;
    Ok((interface.to_string(), parse_address(address)?))
}

/// Interface facts from `--interface-address` flags.
pub fn facts_from_addresses(pairs: &[(String, IpAddr)]) -> HashMap<String, InterfaceFacts> {
    let mut facts: HashMap<String, InterfaceFacts> = HashMap::new();
    for (interface, address) in pairs {
        facts
            .entry(interface.clone())
            .or_default()
            .addresses
            .push(*address);
    }
    facts
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_in_three_spellings() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_time("1418530010", now), Ok(1_418_530_010));
        assert_eq!(parse_time("2024-01-05T10:00:00Z", now), Ok(1_704_448_800));
        assert_eq!(parse_time("30m", now), Ok(1_700_000_000 - 1800));
        assert!(
            parse_time("yesterday", now)
                .unwrap_err()
                .contains("not a time")
        );
    }
}
