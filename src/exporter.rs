//! `vpc-flow-exporter serve`: the sources feed the core on their own timer,
//! the core feeds the metrics, the HTTP server renders them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{CloudWatchConfig, Config, FilesConfig, LogGroupConfig, SourceConfig};
use crate::flow::{
    FormatChoice, FormatError, InterfaceFacts, Pipeline, RecordFilter, Settings, Summary,
};
use crate::metrics::{FlowMetrics, Metrics};
use crate::server::{self, ServerState};
use crate::source::cloudwatch::LogEvent;
use crate::source::cloudwatch::poller::interface_of_stream;
use crate::source::cloudwatch::{
    ApiObserver, AwsLogsApi, DESCRIBE_LOG_STREAMS, FILTER_LOG_EVENTS, PollOutcome, Poller,
    PollerConfig,
};
use crate::source::files;

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{key}: {source}")]
    Format {
        key: String,
        #[source]
        source: FormatError,
    },
}

/// Correlation settings and interface facts from the configuration.
pub fn core_settings(config: &Config) -> (Settings, HashMap<String, InterfaceFacts>) {
    let settings = Settings {
        reply_grace: config.correlation.reply_grace.as_secs(),
        session_idle_timeout: config.correlation.session_idle_timeout.as_secs(),
        service_ports: config.correlation.service_ports.clone(),
    };
    let facts = config
        .interfaces
        .iter()
        .map(|(id, interface)| {
            let facts = InterfaceFacts {
                addresses: interface.addresses.clone(),
                intermediate: interface.intermediate,
            };
            (id.clone(), facts)
        })
        .collect();
    (settings, facts)
}

/// Checks what the config crate cannot: that every log format is usable.
pub fn check_formats(config: &Config) -> Result<(), StartError> {
    let formats: Vec<(String, &str)> = match &config.source {
        SourceConfig::CloudWatch(cloudwatch) => cloudwatch
            .log_groups
            .iter()
            .enumerate()
            .map(|(index, group)| {
                (
                    format!("cloudwatch.log_groups[{index}].log_format"),
                    group.log_format.as_str(),
                )
            })
            .collect(),
        SourceConfig::Files(files) => {
            vec![("files.log_format".to_string(), files.log_format.as_str())]
        }
    };
    for (key, format) in formats {
        FormatChoice::parse(format).map_err(|source| StartError::Format { key, source })?;
    }
    Ok(())
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

/// Counts AWS API calls in the metrics.
struct ApiMetrics(Arc<Metrics>);

impl ApiObserver for ApiMetrics {
    fn api_call(&self, operation: &'static str, outcome: &'static str, seconds: f64) {
        self.0
            .api_calls
            .with_label_values(&[operation, outcome])
            .inc();
        self.0
            .api_call_duration
            .with_label_values(&[operation])
            .observe(seconds);
        if outcome == "throttled" {
            self.0.api_throttles.with_label_values(&[operation]).inc();
        }
    }
}

/// Health shared by the sources: ready once each has polled, up while none fails.
struct Health {
    metrics: Arc<Metrics>,
    sources: usize,
    polled: AtomicUsize,
    failing: AtomicUsize,
    state: Arc<ServerState>,
}

impl Health {
    fn poll_succeeded(&self, first: &mut bool, was_failing: &mut bool, duration: Duration) {
        self.metrics.polls.with_label_values(&["success"]).inc();
        self.metrics.poll_duration.observe(duration.as_secs_f64());
        self.metrics.last_successful_poll.set(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        );
        if std::mem::take(was_failing) {
            self.failing.fetch_sub(1, Ordering::AcqRel);
        }
        if std::mem::take(first) && self.polled.fetch_add(1, Ordering::AcqRel) + 1 == self.sources {
            self.state.ready.store(true, Ordering::Release);
            tracing::info!("First poll done: ready");
        }
        self.metrics
            .up
            .set(i64::from(self.failing.load(Ordering::Acquire) == 0));
    }

    fn poll_failed(&self, was_failing: &mut bool, duration: Duration) {
        self.metrics.polls.with_label_values(&["error"]).inc();
        self.metrics.poll_duration.observe(duration.as_secs_f64());
        if !std::mem::replace(was_failing, true) {
            self.failing.fetch_add(1, Ordering::AcqRel);
        }
        self.metrics.up.set(0);
    }
}

/// Runs the exporter until `shutdown` turns true.
pub async fn run(config: Config, mut shutdown: watch::Receiver<bool>) -> Result<(), StartError> {
    check_formats(&config)?;
    let address = config.server.listen_address;
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| StartError::Listen { address, source })?;
    let metrics = Arc::new(Metrics::new());
    let interfaces: Vec<(String, Option<String>)> = match &config.source {
        SourceConfig::CloudWatch(cloudwatch) => cloudwatch
            .log_groups
            .iter()
            .flat_map(|group| group.interfaces.iter().cloned())
            .map(|id| {
                let name = config
                    .interfaces
                    .get(&id)
                    .and_then(|interface| interface.name.clone());
                (id, name)
            })
            .collect(),
        SourceConfig::Files(_) => config
            .interfaces
            .iter()
            .map(|(id, interface)| (id.clone(), interface.name.clone()))
            .collect(),
    };
    for (id, name) in &interfaces {
        metrics.expect_interface(id, name.as_deref());
    }
    let source = match &config.source {
        SourceConfig::CloudWatch(cloudwatch) => {
            metrics.expect_operations(&[FILTER_LOG_EVENTS, DESCRIBE_LOG_STREAMS]);
            let groups: Vec<&str> = cloudwatch
                .log_groups
                .iter()
                .map(|group| group.name.as_str())
                .collect();
            format!("CloudWatch Logs, log groups {}", groups.join(", "))
        }
        SourceConfig::Files(files) => {
            let paths: Vec<String> = files
                .paths
                .iter()
                .map(|path| path.display().to_string())
                .collect();
            let mode = if files.replay {
                "replayed in a loop"
            } else {
                "read once"
            };
            format!("files {} ({mode})", paths.join(", "))
        }
    };
    let state = Arc::new(ServerState {
        metrics: metrics.clone(),
        ready: AtomicBool::new(false),
        interfaces,
        source,
    });
    tracing::info!(%address, source = %state.source, "Listening");
    let server_shutdown = {
        let mut shutdown = shutdown.clone();
        async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        }
    };
    let server = tokio::spawn(server::serve(listener, state.clone(), server_shutdown));

    let (settings, facts) = core_settings(&config);
    let names: HashMap<String, Option<String>> = config
        .interfaces
        .iter()
        .map(|(id, interface)| (id.clone(), interface.name.clone()))
        .collect();
    let mut tasks = Vec::new();
    match config.source {
        SourceConfig::CloudWatch(cloudwatch) => {
            let health = Arc::new(Health {
                metrics: metrics.clone(),
                sources: cloudwatch.log_groups.len(),
                polled: AtomicUsize::new(0),
                failing: AtomicUsize::new(0),
                state: state.clone(),
            });
            let api = AwsLogsApi::new(
                cloudwatch.region.clone(),
                cloudwatch.endpoint_url.clone(),
                Arc::new(ApiMetrics(metrics.clone())),
            )
            .await;
            let watched = Arc::new(AtomicUsize::new(0));
            for group in &cloudwatch.log_groups {
                let pipeline = Pipeline::new(
                    FormatChoice::parse(&group.log_format).expect("checked at start"),
                    settings.clone(),
                    facts.clone(),
                    RecordFilter::default(),
                );
                let poller = Poller::new(api.clone(), poller_config(&cloudwatch, group));
                let group_loop = CloudWatchLoop {
                    poller,
                    pipeline,
                    metrics: metrics.clone(),
                    health: health.clone(),
                    names: names.clone(),
                    known_interfaces: HashSet::new(),
                    watched: watched.clone(),
                    watched_here: 0,
                    poll_interval: cloudwatch.poll_interval,
                    delays: VecDeque::new(),
                };
                tasks.push(tokio::spawn(group_loop.run(shutdown.clone())));
            }
        }
        SourceConfig::Files(files) => {
            let health = Arc::new(Health {
                metrics: metrics.clone(),
                sources: 1,
                polled: AtomicUsize::new(0),
                failing: AtomicUsize::new(0),
                state: state.clone(),
            });
            tasks.push(tokio::spawn(files_loop(
                files,
                settings,
                facts,
                metrics.clone(),
                health,
                shutdown.clone(),
            )));
        }
    }
    let _ = shutdown.wait_for(|stop| *stop).await;
    tracing::info!("Shutting down");
    for task in tasks {
        let _ = task.await;
    }
    let _ = server.await;
    Ok(())
}

fn poller_config(cloudwatch: &CloudWatchConfig, group: &LogGroupConfig) -> PollerConfig {
    PollerConfig {
        interfaces: group.interfaces.clone(),
        poll_interval: cloudwatch.poll_interval,
        lookback: cloudwatch.lookback,
        max_catchup: cloudwatch.max_catchup,
        discovery_interval: cloudwatch.discovery_interval,
        ..PollerConfig::new(group.name.clone())
    }
}

/// Sleeps for `delay` unless shutdown comes first; true when shutting down.
async fn sleep_or_stop(delay: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => false,
        _ = shutdown.wait_for(|stop| *stop) => true,
    }
}

/// One log group: poll, feed the core, count.
struct CloudWatchLoop {
    poller: Poller<AwsLogsApi>,
    pipeline: Pipeline,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    names: HashMap<String, Option<String>>,
    known_interfaces: HashSet<String>,
    /// Interfaces watched by every group, and by this one.
    watched: Arc<AtomicUsize>,
    watched_here: usize,
    poll_interval: Duration,
    /// (poll time, largest delivery delay of its records), last hour.
    delays: VecDeque<(u64, u64)>,
}

/// How long a measured delivery delay holds the wall-clock watermark back.
const DELAY_MEMORY_SECONDS: u64 = 3600;

impl CloudWatchLoop {
    async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut first = true;
        let mut failing = false;
        loop {
            let started = Instant::now();
            match self.poller.poll(now_millis()).await {
                Ok(outcome) => {
                    self.take(&outcome);
                    self.health
                        .poll_succeeded(&mut first, &mut failing, started.elapsed());
                    tracing::debug!(
                        log_group = self.poller.log_group(),
                        fetched = outcome.fetched,
                        new = outcome.new,
                        calls = outcome.api_calls,
                        overlap_ms = outcome.overlap_ms,
                        "Polled"
                    );
                }
                Err(error) => {
                    self.health.poll_failed(&mut failing, started.elapsed());
                    tracing::warn!(
                        log_group = self.poller.log_group(),
                        operation = error.operation(),
                        kind = error.metric_label(),
                        %error,
                        "Poll failed; its window will be read again"
                    );
                }
            }
            if sleep_or_stop(self.poller.next_delay(), &mut shutdown).await {
                break;
            }
        }
    }

    fn take(&mut self, outcome: &PollOutcome) {
        let metrics = &self.metrics;
        metrics.events_fetched.inc_by(outcome.fetched);
        metrics.events_new.inc_by(outcome.new);
        if outcome.skipped_ms > 0 {
            metrics
                .catchup_skipped
                .inc_by(u64::try_from(outcome.skipped_ms / 1000).unwrap_or(0));
            tracing::error!(
                log_group = self.poller.log_group(),
                skipped_seconds = outcome.skipped_ms / 1000,
                "An outage outlasted max_catchup: records in the skipped time were never read"
            );
        }
        for stream in self.poller.streams() {
            let interface = interface_of_stream(stream);
            if self.known_interfaces.insert(interface.to_string()) {
                let name = self.names.get(interface).cloned().flatten();
                metrics.expect_interface(interface, name.as_deref());
            }
        }
        let watched = self.known_interfaces.len();
        if watched != self.watched_here {
            self.watched
                .fetch_add(watched - self.watched_here, Ordering::AcqRel);
            self.watched_here = watched;
            let total = self.watched.load(Ordering::Acquire);
            metrics
                .interfaces_watched
                .set(i64::try_from(total).unwrap_or(i64::MAX));
        }
        let now = now_seconds();
        if let Some(delay) = feed_events(&mut self.pipeline, &outcome.events, metrics) {
            self.delays.push_back((now, delay));
        }
        while self
            .delays
            .front()
            .is_some_and(|(seen, _)| now.saturating_sub(*seen) > DELAY_MEMORY_SECONDS)
        {
            self.delays.pop_front();
        }
        // Sessions of a silent interface are decided on the wall clock, less
        // the delivery delay: a record not yet read will end after that.
        let delay = self
            .delays
            .iter()
            .map(|(_, delay)| *delay)
            .max()
            .unwrap_or(0);
        let watermark = now.saturating_sub(delay + self.poll_interval.as_secs());
        let service_ports = self.pipeline.correlator().service_ports().clone();
        let mut observer = FlowMetrics::new(metrics, &service_ports);
        self.pipeline.advance_to(watermark, &mut observer);
        update_load_gauges(metrics, &self.pipeline);
    }
}

/// Feeds new log events to the core and counts what it decides; measures
/// each record's delivery delay (ingestion time minus the record's end) and
/// returns the largest, in seconds.
pub fn feed_events(pipeline: &mut Pipeline, events: &[LogEvent], metrics: &Metrics) -> Option<u64> {
    let service_ports = pipeline.correlator().service_ports().clone();
    let mut observer = FlowMetrics::new(metrics, &service_ports);
    let mut largest: Option<u64> = None;
    for event in events {
        let fallback = u64::try_from(event.timestamp_ms / 1000).ok();
        if let Some(end) = pipeline.push_line(event.message.as_bytes(), fallback, &mut observer) {
            let delay = (event.ingestion_time_ms as f64 / 1000.0 - end as f64).max(0.0);
            metrics.delivery_delay.observe(delay);
            largest = largest.max(Some(delay.ceil() as u64));
        }
    }
    largest
}

fn update_load_gauges(metrics: &Metrics, pipeline: &Pipeline) {
    for load in pipeline.correlator().load() {
        let pending = i64::try_from(load.pending).unwrap_or(i64::MAX);
        let open = i64::try_from(load.open).unwrap_or(i64::MAX);
        metrics
            .pending_sessions
            .with_label_values(&[load.interface_id])
            .set(pending);
        metrics
            .open_sessions
            .with_label_values(&[load.interface_id])
            .set(open);
    }
}

/// The files source: one pass, or a pass every `replay_interval`.
async fn files_loop(
    files: FilesConfig,
    settings: Settings,
    facts: HashMap<String, InterfaceFacts>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    mut shutdown: watch::Receiver<bool>,
) {
    let format = FormatChoice::parse(&files.log_format).expect("checked at start");
    let pipeline = Pipeline::new(format, settings, facts, RecordFilter::default());
    let paths: Arc<Vec<PathBuf>> = Arc::new(files.paths.clone());
    let mut state = Some(pipeline);
    let mut span: Option<files::TimeSpan> = None;
    let mut first = true;
    let mut failing = false;
    loop {
        let started = Instant::now();
        let mut pipeline = state
            .take()
            .expect("the pipeline comes back from each pass");
        let (metrics_for_pass, paths_for_pass, known_span) = (metrics.clone(), paths.clone(), span);
        let replay = files.replay;
        let result = tokio::task::spawn_blocking(move || {
            let result = files_pass(
                &paths_for_pass,
                &mut pipeline,
                &metrics_for_pass,
                replay,
                known_span,
            );
            (pipeline, result)
        })
        .await;
        let (pipeline, result) = match result {
            Ok(done) => done,
            Err(error) => {
                tracing::error!(%error, "A pass over the files panicked");
                return;
            }
        };
        update_load_gauges(&metrics, &pipeline);
        let watched = pipeline.correlator().load().count();
        metrics
            .interfaces_watched
            .set(i64::try_from(watched).unwrap_or(i64::MAX));
        state = Some(pipeline);
        match result {
            Ok(pass_span) => {
                span = span.or(Some(pass_span));
                health.poll_succeeded(&mut first, &mut failing, started.elapsed());
            }
            Err(error) => {
                health.poll_failed(&mut failing, started.elapsed());
                tracing::error!(%error, "Reading flow-log files failed; retrying after replay_interval");
            }
        }
        if !files.replay && !failing {
            let _ = shutdown.wait_for(|stop| *stop).await;
            return;
        }
        if sleep_or_stop(files.replay_interval, &mut shutdown).await {
            return;
        }
    }
}

/// One pass over the files. When replaying, record times are shifted so the
/// last record ends now (the first time, a dry pass finds the span).
fn files_pass(
    paths: &[PathBuf],
    pipeline: &mut Pipeline,
    metrics: &Metrics,
    replay: bool,
    known_span: Option<files::TimeSpan>,
) -> Result<files::TimeSpan, crate::input::InputError> {
    let service_ports = pipeline.correlator().service_ports().clone();
    let offset = if replay {
        let span = match known_span {
            Some(span) => span,
            None => {
                let mut dry_run = Summary::new(service_ports.clone(), false);
                files::pass(paths, pipeline, 0, &mut dry_run)?
            }
        };
        files::offset_to_now(span, now_seconds())
    } else {
        0
    };
    let mut observer = FlowMetrics::new(metrics, &service_ports);
    files::pass(paths, pipeline, offset, &mut observer)
}
