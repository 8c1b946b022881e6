//! The S3 source in `serve`: the queue reader fetches objects, this loop
//! counts them through the core and the metrics, and the wall clock decides
//! what a silent interface leaves pending.
//!
//! Each object is first made ready ([`ready`]: decompressed and checked to
//! read to its end) on another thread while the one before it is counted:
//! a corrupt gzip or Parquet object fails there, before a record of it
//! reaches the metrics, so a redelivery that fails again never counts half
//! an object twice.
//!
//! With `[state]`, what an object's records decide is held back
//! ([`Deferred`]) until the reader commits the message: then the open
//! sessions and the counted objects are checkpointed ([`checkpoint`]),
//! and only then published and the message deleted. What the wall clock
//! decides is checkpointed the same way before it is published.

mod checkpoint;
mod ready;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use self::checkpoint::Checkpoints;
use self::ready::{Ready, TextBudget};
use super::deferred::Deferred;
use super::ec2::Ec2ByRegion;
use super::{ApiMetrics, Health, SourceHealth, now_seconds, sleep_or_stop, update_load_gauges};
use crate::api::{ProofSource, Recorded, SessionLog};
use crate::config::S3Config;
use crate::flow::clock::wall_clock_watermark;
use crate::flow::{
    Action, Both, Direction, LogStatus, Malformed, Observer, Pipeline, SessionObserver,
    SessionReport, Verdict,
};
use crate::input::{self, InputFormat, Origin};
use crate::metrics::{FlowMetrics, Metrics, S3Metrics};
use crate::source::cloudwatch::ApiError;
use crate::source::cloudwatch::recent::RecentMax;
use crate::source::s3::api::OPERATIONS;
use crate::source::s3::notification::{account_and_region, time_in_key};
use crate::source::s3::seen::{DEFAULT_CAPACITY, RETENTION_SECONDS};
use crate::source::s3::{
    AwsS3Api, CreatedObject, MessageOutcome, ObjectOutcome, ObjectSink, Preparer, Reader,
    ReaderObserver, Seen,
};

/// A flow log closes a file every 5 minutes (the name carries that time)
/// and delivers it within about 10: records of an interface can still come
/// this long after the newest object's time.
const FILE_INTERVAL_SECONDS: u64 = 300;
/// Object delays larger than this are bogus for the watermark's purpose.
const MAX_DELAY_SECONDS: u64 = 3600;

pub async fn run(
    config: S3Config,
    state_directory: Option<PathBuf>,
    mut pipeline: Pipeline,
    ec2: Option<Ec2ByRegion>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    mut shutdown: watch::Receiver<bool>,
) {
    metrics.expect_operations(OPERATIONS);
    let object_outcomes: Vec<&str> = ObjectOutcome::ALL.iter().map(|o| o.as_str()).collect();
    let message_outcomes: Vec<&str> = MessageOutcome::ALL.iter().map(|o| o.as_str()).collect();
    let s3_metrics = metrics.register_s3(&object_outcomes, &message_outcomes);
    let api = AwsS3Api::new(
        config.region.clone(),
        config.endpoint_url.clone(),
        config.queue_url.clone(),
        Arc::new(ApiMetrics(metrics.clone())),
    )
    .await;
    // Without [state] what was counted is only in memory: a message
    // redelivered across a restart counts again.
    let mut seen = Seen::new(DEFAULT_CAPACITY, RETENTION_SECONDS);
    let checkpoints = state_directory.map(|directory| {
        let mut checkpoints = Checkpoints::new(&directory, &config.queue_url);
        checkpoints.restore(&mut pipeline, &mut seen, &metrics);
        checkpoints
    });
    let visibility = i32::try_from(config.visibility_timeout.as_secs()).unwrap_or(i32::MAX);
    let mut reader = Reader::new(api, seen)
        .with_visibility(visibility)
        .with_read_ahead(config.read_ahead);
    let mut sink = CountingSink {
        text_budget: TextBudget::new(config.read_ahead_mib.saturating_mul(1 << 20)),
        pipeline,
        metrics: metrics.clone(),
        sessions: health.state.sessions.clone(),
        checkpoints,
        pending: Deferred::new(),
        roots: ObjectRoots::default(),
        ec2,
        region: config.region.clone(),
        endpoint_url: config.endpoint_url.clone(),
        max_held: config.max_held_events.max(1),
    };
    if sink.pipeline.advancing() {
        // Restored from a checkpoint written part way through the wall
        // clock's advance: finished before any object, as the predecessor
        // would have.
        sink.pipeline.set_wall_clock(now_seconds());
        sink.finish_advance(reader.seen());
    }
    let mut observer = MetricsObserver {
        metrics: s3_metrics,
        delays: RecentMax::new(i64::try_from(MAX_DELAY_SECONDS).unwrap_or(i64::MAX)),
    };
    let mut source = SourceHealth::default();
    loop {
        let started = Instant::now();
        let result = tokio::select! {
            result = reader.cycle(&mut sink, &mut observer, now_seconds) => result,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        match result {
            Ok(cycle) => {
                health.poll_succeeded(&mut source, started.elapsed());
                tracing::debug!(
                    messages = cycle.messages,
                    remembered = reader.seen().len(),
                    "Read the queue"
                );
            }
            Err(error) => {
                health.poll_failed(&mut source, started.elapsed());
                log_failure(&error);
                if sleep_or_stop(std::time::Duration::from_secs(5), &mut shutdown).await {
                    break;
                }
            }
        }
        sink.advance(observer.lag(), reader.seen());
    }
}

fn log_failure(error: &ApiError) {
    if error.is_retriable() {
        tracing::warn!(operation = error.operation(), kind = error.metric_label(), %error,
            "Reading the queue failed; trying again");
    } else {
        tracing::error!(operation = error.operation(), %error,
            "Reading the queue failed and retrying will not help until the cause is fixed (sqs:ReceiveMessage permission, queue_url)");
    }
}

/// Counts objects into the exporter's pipeline.
struct CountingSink {
    /// Decompressed text the objects read ahead may hold (`[s3] read_ahead_mib`).
    text_budget: TextBudget,
    pipeline: Pipeline,
    metrics: Arc<Metrics>,
    sessions: Arc<SessionLog>,
    /// `[state]`: what is counted is published only once checkpointed.
    checkpoints: Option<Checkpoints>,
    /// What the core decided since the last commit (with `[state]` only).
    pending: Deferred,
    /// Where the records counted so far can be read again, for the
    /// sessions' `inspect` commands.
    roots: ObjectRoots,
    /// `[ec2] describe_interfaces`: the interfaces of each object are
    /// described once it is counted (sessions waiting for an address are
    /// settled by what EC2 tells).
    ec2: Option<Ec2ByRegion>,
    /// `[s3] region`: also the region of interfaces whose key names none.
    region: Option<String>,
    endpoint_url: Option<String>,
    /// `[s3] max_held_events`: the wall clock's decisions held at once.
    max_held: usize,
}

/// The folders above the date partitions of the objects counted lately
/// (`s3://bucket/AWSLogs/<account>/vpcflowlogs/<region>/`), latest first, a
/// few at most: a session's records may be in any earlier object, and
/// `analyze` of these folders with the session's times lists only the
/// partitions that can hold them.
#[derive(Debug, Default)]
struct ObjectRoots(Vec<String>);

/// Account-region folders named at most in one command.
const MAX_ROOTS: usize = 16;

impl ObjectRoots {
    fn note(&mut self, bucket: &str, key: &str) {
        let root = format!("s3://{bucket}/{}", root_prefix(key));
        if let Some(at) = self.0.iter().position(|known| *known == root) {
            self.0.remove(at);
        }
        self.0.insert(0, root);
        self.0.truncate(MAX_ROOTS);
    }
}

/// The folders of `key` above its first date partition (a four-digit year,
/// or Hive-style `year=`); the object's own folder when it has none.
fn root_prefix(key: &str) -> &str {
    let mut end = 0;
    for segment in key.split_inclusive('/') {
        let Some(folder) = segment.strip_suffix('/') else {
            break;
        };
        let value = folder.strip_prefix("year=").unwrap_or(folder);
        if value.len() == 4 && value.bytes().all(|b| b.is_ascii_digit()) {
            break;
        }
        end += segment.len();
    }
    &key[..end]
}

impl CountingSink {
    /// The command that reads a session's objects again: their folders.
    fn proof(&self) -> ProofSource {
        ProofSource::Objects {
            urls: self.roots.0.clone(),
            region: self.region.clone(),
            endpoint_url: self.endpoint_url.clone(),
        }
    }

    /// Runs `f` on the pipeline with an observer that publishes what it is
    /// told at once: counts, and decided sessions to the sessions' log.
    fn publishing<R>(
        &mut self,
        now: u64,
        f: impl FnOnce(&mut Pipeline, &mut Recorded<'_, FlowMetrics<'_>>) -> R,
    ) -> R {
        let proof = self.proof();
        let service_ports = self.pipeline.correlator().service_ports().clone();
        let mut observer = Recorded::new(
            FlowMetrics::new(&self.metrics, &service_ports),
            &self.sessions,
            &proof,
            now,
        );
        f(&mut self.pipeline, &mut observer)
    }

    /// Decides what a silent interface leaves pending: the wall clock less
    /// the object delay and one file interval. A step at a time (a scan's
    /// sessions fall due together): at most `max_held_events` decisions
    /// held, each step checkpointed (with `[state]`) and published before
    /// the next, as the CloudWatch source does.
    fn advance(&mut self, lag: u64, seen: &Seen) {
        let now = now_seconds();
        self.pipeline.set_wall_clock(now);
        let watermark =
            wall_clock_watermark(now, Some(lag), FILE_INTERVAL_SECONDS, MAX_DELAY_SECONDS);
        if self.checkpoints.is_some() {
            self.pipeline.start_advance(watermark, &mut self.pending);
        } else {
            self.publishing(now, |pipeline, observer| {
                pipeline.start_advance(watermark, observer);
            });
        }
        self.finish_advance(seen);
    }

    /// Carries out the advance under way a step at a time (also one
    /// restored from a checkpoint written part way through it).
    fn finish_advance(&mut self, seen: &Seen) {
        loop {
            let more = if self.checkpoints.is_some() {
                let budget = self.max_held.saturating_sub(self.pending.len()).max(1);
                let more = self.pipeline.advance_some(budget, &mut self.pending);
                if more || !self.pending.is_empty() {
                    self.commit(seen);
                }
                more
            } else {
                let max_held = self.max_held;
                self.publishing(now_seconds(), |pipeline, observer| {
                    pipeline.advance_some(max_held, observer)
                })
            };
            if !more {
                break;
            }
        }
        update_load_gauges(&self.metrics, &self.pipeline);
    }
}

impl ObjectSink for CountingSink {
    type Ready = Ready;

    fn preparer(&self) -> Preparer<Ready> {
        let budget = self.text_budget.clone();
        Arc::new(move |body| ready::prepare(body, &budget))
    }

    async fn count(&mut self, object: &CreatedObject, ready: Ready) -> io::Result<u64> {
        self.roots.note(&object.bucket, &object.key);
        let body = &ready.bytes;
        // Counting is CPU work on a few MB: off the async threads' hands.
        let tally = tokio::task::block_in_place(|| {
            let now = now_seconds();
            self.pipeline.set_wall_clock(now);
            let tally = if self.checkpoints.is_some() {
                let mut observer = Both(&mut self.pending, ObjectTally::default());
                let fed = feed_object(body, &mut self.pipeline, &mut observer);
                fed.map(|()| observer.1)
            } else {
                let proof = self.proof();
                let service_ports = self.pipeline.correlator().service_ports().clone();
                let mut observer = Both(
                    Recorded::new(
                        FlowMetrics::new(&self.metrics, &service_ports),
                        &self.sessions,
                        &proof,
                        now,
                    ),
                    ObjectTally::default(),
                );
                feed_object(body, &mut self.pipeline, &mut observer)?;
                Ok(observer.1)
            }?;
            // The key names the account and region the interfaces are in.
            if let Some((account, region)) = account_and_region(&object.key) {
                for interface_id in &tally.interfaces {
                    self.metrics.locate_interface(interface_id, account, region);
                }
            }
            Ok::<_, io::Error>(tally)
        })?;
        if let Some(ec2) = &mut self.ec2 {
            let region = account_and_region(&object.key)
                .map(|(_, region)| region)
                .or(self.region.as_deref());
            if let Some(region) = region {
                let interfaces: Vec<&str> = tally.interfaces.iter().map(|id| &**id).collect();
                ec2.update(region, &interfaces, &mut self.pipeline).await;
            }
        }
        Ok(tally.lines)
    }

    /// Checkpoints, then publishes what was held back. A checkpoint that
    /// cannot be written is logged and counted; the counts are published
    /// anyway (the exporter keeps working on a full disk; only a crash
    /// before the next good checkpoint would count them again).
    fn commit(&mut self, seen: &Seen) {
        let Some(checkpoints) = &mut self.checkpoints else {
            return;
        };
        let now = now_seconds();
        checkpoints.store(&self.pipeline, seen, &self.metrics, now);
        let pending = std::mem::take(&mut self.pending);
        self.publishing(now, |_, observer| pending.replay(observer));
    }
}

fn feed_object(
    body: &[u8],
    pipeline: &mut Pipeline,
    observer: &mut impl Observer,
) -> io::Result<()> {
    input::feed_reader(
        body,
        &Origin::default(),
        InputFormat::Auto,
        pipeline,
        observer,
    )
}

/// Counts lines that were records or malformed.
/// The lines of one object, and the interfaces its records are of.
#[derive(Debug, Default)]
struct ObjectTally {
    lines: u64,
    interfaces: rustc_hash::FxHashSet<Box<str>>,
}

impl SessionObserver for ObjectTally {
    fn decided(&mut self, _: &SessionReport<'_>) {}
    fn traffic(&mut self, _: &str, _: Verdict, _: Direction, _: u64, _: u64) {}
    fn closed(&mut self, _: &SessionReport<'_>) {}
    fn evicted(&mut self, _: &str) {}
}

impl Observer for ObjectTally {
    fn record(&mut self, interface_id: &str, _: Option<Action>, _: LogStatus) {
        self.lines += 1;
        if !self.interfaces.contains(interface_id) {
            self.interfaces.insert(interface_id.into());
        }
    }

    fn malformed(&mut self, _: Malformed) {
        self.lines += 1;
    }
}

/// Counts objects and messages by outcome; measures object delay.
struct MetricsObserver {
    metrics: S3Metrics,
    delays: RecentMax,
}

impl MetricsObserver {
    /// How far behind the wall clock records may still arrive: the largest
    /// object delay of the last hour, at least one file interval.
    fn lag(&self) -> u64 {
        self.delays
            .max()
            .and_then(|delay| u64::try_from(delay).ok())
            .unwrap_or(0)
            .clamp(FILE_INTERVAL_SECONDS, MAX_DELAY_SECONDS)
    }
}

impl ReaderObserver for MetricsObserver {
    fn object(&mut self, object: &CreatedObject, outcome: ObjectOutcome, bytes: u64, records: u64) {
        self.metrics
            .objects
            .with_label_values(&[outcome.as_str()])
            .inc();
        self.metrics.bytes_read.inc_by(bytes);
        self.metrics.records_read.inc_by(records);
        if outcome == ObjectOutcome::Counted
            && let (Some(event_time), Some(closed)) = (object.event_time, time_in_key(&object.key))
        {
            let delay = event_time.saturating_sub(closed);
            self.metrics.object_delay.observe(delay as f64);
            let now = i64::try_from(now_seconds()).unwrap_or(i64::MAX);
            self.delays
                .record(now, Some(i64::try_from(delay).unwrap_or(i64::MAX)));
        }
    }

    fn message(&mut self, outcome: MessageOutcome) {
        self.metrics
            .messages
            .with_label_values(&[outcome.as_str()])
            .inc();
    }
}

#[cfg(test)]
mod tests;
