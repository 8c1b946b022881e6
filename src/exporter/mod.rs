//! `vpc-flow-exporter serve`: the sources feed the core on their own timer,
//! the core feeds the metrics, the HTTP server renders them. This module
//! wires them; `cloudwatch`, `files` and `s3` are the source loops.

mod cloudwatch;
mod deferred;
mod ec2;
mod files;
mod s3;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::{RingSizes, SessionLog};
use crate::config::{Config, SourceConfig};
use crate::flow::{FormatChoice, FormatError, InterfaceFacts, Pipeline, Settings};
use crate::metrics::Metrics;
use crate::server::{self, ServerState};
use crate::shard::Shard;
use crate::source::aws_clients::{ASSUME_ROLE, Access, AccountOf, GET_CALLER_IDENTITY};
use crate::source::cloudwatch::{
    ApiObserver, DESCRIBE_LOG_STREAMS, FILTER_LOG_EVENTS, MAX_STREAMS_PER_CALL,
};
use crate::web::WatchedConfig;

pub use cloudwatch::feed_events;

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("web configuration {0}")]
    Web(#[from] crate::web::WebConfigError),
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
        max_open_sessions: config.correlation.max_open_sessions,
        max_awaiting_address: config.correlation.max_awaiting_address_per_interface,
        // Live, the input never ends: a single-peer interface is reported
        // with the fallback after this wait.
        address_wait: Some(config.correlation.address_wait.as_secs()),
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

/// A pipeline for one source. The format was validated with the config;
/// the error is kept rather than a panic should that ever change.
fn pipeline(
    key: String,
    format: &str,
    settings: &Settings,
    facts: &HashMap<String, InterfaceFacts>,
) -> Result<Pipeline, StartError> {
    let format =
        FormatChoice::parse(format).map_err(|source| StartError::Format { key, source })?;
    Ok(Pipeline::new(
        format,
        settings.clone(),
        facts.clone(),
        Default::default(),
    ))
}

/// Counts AWS API calls (one per operation call, its final outcome) and
/// throttled attempts in the metrics: the sources' [`ApiObserver`].
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
    }

    /// Every failed attempt, including those a retry got past.
    fn attempt_failed(&self, operation: &'static str, outcome: &'static str, kind: &'static str) {
        if outcome == "throttled" {
            self.0.api_throttles.with_label_values(&[operation]).inc();
        }
        self.0
            .api_errors
            .with_label_values(&[operation, kind])
            .inc();
    }
}

/// `[state] directory`, made ready for checkpoints (with their zero
/// series); `None` without `[state]`. A directory that cannot be made is
/// an error to log, not a reason not to start.
fn state_directory(config: &Config, metrics: &Metrics) -> Option<PathBuf> {
    let state = config.state.as_ref()?;
    metrics.expect_state_checkpoints();
    if let Err(error) = std::fs::create_dir_all(&state.directory) {
        tracing::error!(directory = %state.directory.display(), %error,
            "Cannot create the state directory: checkpoints will fail, a restart will count again what this process counts");
    }
    Some(state.directory.clone())
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Health shared by the sources: ready once each has polled, up while none fails.
struct Health {
    metrics: Arc<Metrics>,
    sources: usize,
    polled: AtomicUsize,
    failing: AtomicUsize,
    state: Arc<ServerState>,
}

/// One source's part in [`Health`].
#[derive(Default)]
struct SourceHealth {
    polled: bool,
    failing: bool,
}

impl Health {
    fn poll_succeeded(&self, source: &mut SourceHealth, duration: Duration) {
        self.metrics.polls.with_label_values(&["success"]).inc();
        self.metrics.poll_duration.observe(duration.as_secs_f64());
        self.metrics.last_successful_poll.set(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        );
        if std::mem::take(&mut source.failing) {
            self.failing.fetch_sub(1, Ordering::AcqRel);
        }
        if !std::mem::replace(&mut source.polled, true)
            && self.polled.fetch_add(1, Ordering::AcqRel) + 1 == self.sources
        {
            self.state.ready.store(true, Ordering::Release);
            tracing::info!("First poll done: ready");
        }
        self.metrics
            .up
            .set(i64::from(self.failing.load(Ordering::Acquire) == 0));
    }

    fn poll_failed(&self, source: &mut SourceHealth, duration: Duration) {
        self.metrics.polls.with_label_values(&["error"]).inc();
        self.metrics.poll_duration.observe(duration.as_secs_f64());
        if !std::mem::replace(&mut source.failing, true) {
            self.failing.fetch_add(1, Ordering::AcqRel);
        }
        self.metrics.up.set(0);
    }
}

fn update_load_gauges(metrics: &Metrics, pipeline: &Pipeline) {
    for load in pipeline.correlator().load() {
        metrics.ensure_interface_info(load.interface_id, None);
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

/// Sleeps for `delay` unless shutdown comes first; true when shutting down.
async fn sleep_or_stop(delay: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => false,
        _ = shutdown.wait_for(|stop| *stop) => true,
    }
}

/// Interfaces named in the configuration and read by this replica, with
/// their names, for the landing page and the zero series.
fn configured_interfaces(config: &Config, shard: Shard) -> Vec<(String, Option<String>)> {
    let name = |id: &str| {
        config
            .interfaces
            .get(id)
            .and_then(|interface| interface.name.clone())
    };
    match &config.source {
        SourceConfig::CloudWatch(cloudwatch) => cloudwatch
            .log_groups
            .iter()
            .flat_map(|group| group.interfaces.iter())
            .filter(|id| shard.owns(id))
            .map(|id| (id.clone(), name(id)))
            .collect(),
        SourceConfig::Files(_) | SourceConfig::S3(_) => config
            .interfaces
            .keys()
            .map(|id| (id.clone(), name(id)))
            .collect(),
    }
}

fn describe_source(config: &Config) -> String {
    match &config.source {
        SourceConfig::CloudWatch(cloudwatch) => {
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
        SourceConfig::S3(s3) => format!("S3 objects announced on {}", s3.queue_url),
    }
}

/// Runs the exporter until `shutdown` turns true.
pub async fn run(config: Config, mut shutdown: watch::Receiver<bool>) -> Result<(), StartError> {
    let (settings, facts) = core_settings(&config);
    let web = match &config.server.web_config_file {
        Some(path) => WatchedConfig::load(path)?,
        None => WatchedConfig::open(),
    };
    let address = config.server.listen_address;
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| StartError::Listen { address, source })?;
    let metrics = Arc::new(Metrics::with_budget(config.metrics.budget()));
    let shard = config.shard.shard();
    metrics
        .shard_info
        .with_label_values(&[&shard.index().to_string(), &shard.count().to_string()])
        .set(1);
    let interfaces = configured_interfaces(&config, shard);
    for (id, name) in &interfaces {
        metrics.expect_interface(id, name.as_deref());
    }
    let state = Arc::new(ServerState {
        metrics: metrics.clone(),
        ready: AtomicBool::new(false),
        interfaces,
        source: describe_source(&config),
        sessions: Arc::new(SessionLog::new(RingSizes {
            per_verdict: config.api.sessions_per_verdict,
            accepted: config.api.accepted_sessions,
        })),
    });
    let health = |sources: usize| {
        Arc::new(Health {
            metrics: metrics.clone(),
            sources,
            polled: AtomicUsize::new(0),
            failing: AtomicUsize::new(0),
            state: state.clone(),
        })
    };
    let names: HashMap<String, Option<String>> = config
        .interfaces
        .iter()
        .map(|(id, interface)| (id.clone(), interface.name.clone()))
        .collect();
    let mut tasks = Vec::new();
    match &config.source {
        SourceConfig::CloudWatch(cloudwatch) => {
            metrics.expect_operations(&[FILTER_LOG_EVENTS, DESCRIBE_LOG_STREAMS]);
            if cloudwatch.log_groups.iter().any(|g| g.role_arn.is_some()) {
                metrics.expect_operations(&[ASSUME_ROLE]);
            }
            if cloudwatch.log_groups.iter().any(|g| g.role_arn.is_none()) {
                metrics.expect_operations(&[GET_CALLER_IDENTITY]);
            }
            let mut loops = Vec::new();
            for (index, group) in cloudwatch.log_groups.iter().enumerate() {
                let key = format!("cloudwatch.log_groups[{index}].log_format");
                loops.push((group, pipeline(key, &group.log_format, &settings, &facts)?));
            }
            let budgets =
                cloudwatch::Budgets::new(cloudwatch.max_requests_per_second, metrics.clone());
            let shared = cloudwatch::Shared {
                metrics: metrics.clone(),
                health: health(loops.len()),
                names,
                watched: Arc::new(AtomicUsize::new(0)),
                shard,
                budgets: budgets.clone(),
                state_directory: state_directory(&config, &metrics),
            };
            let mut clients = cloudwatch::clients(cloudwatch, metrics.clone());
            // The groups of one budget start spread over the poll interval
            // (the base credentials' account counted as one).
            let spread_key = |access: &Access| {
                (
                    access.account_id().map(str::to_owned),
                    access.region.clone(),
                )
            };
            let mut sharing: HashMap<_, u32> = HashMap::new();
            for (group, _) in &loops {
                let access = Access::of(group, cloudwatch.region.as_deref());
                *sharing.entry(spread_key(&access)).or_default() += 1;
            }
            let mut started: HashMap<_, u32> = HashMap::new();
            let configured: Arc<HashMap<_, _>> =
                Arc::new(config.interfaces.clone().into_iter().collect());
            for (group, pipeline) in loops {
                let access = Access::of(group, cloudwatch.region.as_deref());
                let key = spread_key(&access);
                let nth = started.entry(key.clone()).or_default();
                let first_delay = cloudwatch.poll_interval * *nth / sharing[&key];
                *nth += 1;
                let account = clients.account(&access).await;
                let region = clients.region(&access).await;
                let known_account = match &account {
                    AccountOf::Known(account) => Some(account.as_str()),
                    AccountOf::Ask(_) => None,
                };
                let api = budgets.wrap(
                    known_account,
                    region.as_deref().unwrap_or_default(),
                    clients.client(&access).await,
                );
                if !group.interfaces.is_empty() {
                    // Known before the first poll: say now if it cannot fit.
                    // This replica reads only its shard's interfaces.
                    let mine = group.interfaces.iter().filter(|id| shard.owns(id)).count();
                    let calls = mine.div_ceil(MAX_STREAMS_PER_CALL);
                    api.budget().set_demand(
                        &access.describe(&group.name),
                        u32::try_from(calls).unwrap_or(u32::MAX),
                        cloudwatch.poll_interval,
                    );
                }
                let ec2_facts = if config.ec2.describe_interfaces {
                    let ec2_api = clients
                        .ec2_client(&access, config.ec2.endpoint_url.as_deref())
                        .await;
                    let region = access
                        .region
                        .clone()
                        .or_else(|| ec2_api.region())
                        .unwrap_or_default();
                    Some(ec2::Ec2Facts::new(
                        ec2_api,
                        region,
                        config.ec2.refresh_interval,
                        Arc::clone(&configured),
                        metrics.clone(),
                        state.sessions.clone(),
                    ))
                } else {
                    None
                };
                let role = clients.role_credentials(&access).await;
                let mut group_loop = cloudwatch::GroupLoop::new(
                    cloudwatch,
                    group,
                    access,
                    api,
                    pipeline,
                    shared.clone(),
                )
                .located(account, region)
                .with_role(role)
                .starting_after(first_delay);
                if let Some(ec2_facts) = ec2_facts {
                    group_loop = group_loop.with_ec2(ec2_facts);
                }
                tasks.push(tokio::spawn(group_loop.run(shutdown.clone())));
            }
        }
        SourceConfig::Files(files) => {
            let pipeline = pipeline(
                "files.log_format".into(),
                &files.log_format,
                &settings,
                &facts,
            )?;
            tasks.push(tokio::spawn(files::run(
                files.clone(),
                pipeline,
                metrics.clone(),
                health(1),
                shutdown.clone(),
            )));
        }
        SourceConfig::S3(s3_config) => {
            let pipeline = pipeline("s3".into(), "auto", &settings, &facts)?;
            let ec2 = config.ec2.describe_interfaces.then(|| {
                ec2::Ec2ByRegion::new(
                    &config.ec2,
                    s3_config.endpoint_url.clone(),
                    Arc::new(config.interfaces.clone().into_iter().collect()),
                    metrics.clone(),
                    state.sessions.clone(),
                )
            });
            tasks.push(tokio::spawn(s3::run(
                s3_config.clone(),
                state_directory(&config, &metrics),
                pipeline,
                ec2,
                metrics.clone(),
                health(1),
                shutdown.clone(),
            )));
        }
    }
    tracing::info!(%address, source = %state.source, "Listening");
    let server_shutdown = {
        let mut shutdown = shutdown.clone();
        async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        }
    };
    let server = tokio::spawn(server::serve(
        listener,
        state.clone(),
        web,
        config.server.limits(),
        server_shutdown,
    ));
    let _ = shutdown.wait_for(|stop| *stop).await;
    tracing::info!("Shutting down");
    for task in tasks {
        let _ = task.await;
    }
    let _ = server.await;
    Ok(())
}
