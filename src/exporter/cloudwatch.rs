//! The CloudWatch Logs source on its timer: one loop per log group polls,
//! feeds the core and counts; the wall clock decides what a silent
//! interface leaves pending. With `[state]`, each successful poll is
//! checkpointed before its counts are published (see [`super::deferred`]),
//! and a start resumes from the checkpoint.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::deferred::Deferred;
use super::ec2::Ec2Facts;
use super::{ApiMetrics, Health, SourceHealth, now_seconds, sleep_or_stop, update_load_gauges};
use crate::api::{ProofSource, Recorded};
use crate::config::{CloudWatchConfig, LogGroupConfig};
use crate::flow::clock::wall_clock_watermark;
use crate::flow::{Observer, Pipeline, PipelineCheckpoint, PipelineCheckpointView};
use crate::metrics::{CheckpointOutcome, FlowMetrics, Metrics};
use crate::shard::Shard;
use crate::source::aws_clients::{Access, AccountOf, AwsClients, RoleCredentials};
use crate::source::cloudwatch::{
    ApiError, AwsLogsApi, Batch, LogEvent, PollOutcome, PollStep, Poller, PollerConfig,
    PollerState, PollerStateRef, ShardedLogs, interface_of_stream,
};
use crate::source::cloudwatch::{BudgetObserver, Budgeted, RequestBudget};
use crate::source::ec2::AwsEc2Api;
use crate::state::{self, Loaded, StateFile};

/// The SDK clients of the log groups: one per region and role, each with
/// the configured per-attempt timeout.
pub fn clients(config: &CloudWatchConfig, metrics: Arc<Metrics>) -> AwsClients {
    AwsClients::new(
        config.endpoint_url.clone(),
        config.attempt_timeout,
        Arc::new(ApiMetrics(metrics)),
    )
}

/// Reports one account-region's request budget in the metrics.
pub struct BudgetMetrics {
    pub metrics: Arc<Metrics>,
    pub account_id: String,
    pub region: String,
}

impl BudgetMetrics {
    fn labels(&self) -> [&str; 2] {
        [&self.account_id, &self.region]
    }
}

impl BudgetObserver for BudgetMetrics {
    fn delayed(&self, _seconds: f64) {
        self.metrics
            .api_calls_delayed
            .with_label_values(&self.labels())
            .inc();
    }

    fn used(&self, ratio: f64) {
        self.metrics
            .api_budget_used
            .with_label_values(&self.labels())
            .set(ratio);
    }

    fn demand(&self, ratio: f64) {
        self.metrics
            .api_budget_demand
            .with_label_values(&self.labels())
            .set(ratio);
    }
}

/// `account_id` of the budget that the base credentials' log groups of a
/// region draw from until STS GetCallerIdentity names their account.
pub const UNRESOLVED_ACCOUNT: &str = "unknown";

/// How long a group read with the base credentials waits for STS to name
/// its account before its first poll (so that it starts in the right
/// budget); past it, it starts in the `unknown` one.
const ACCOUNT_WAIT: Duration = Duration::from_secs(5);

/// The request budget of each account and region, shared by its groups
/// whatever credentials reach it: a role's account from its ARN, the base
/// credentials' from STS. Until STS answers, the base credentials' groups
/// of a region share a budget of their own, `account_id="unknown"`, and
/// move to their account's when it answers ([`Budgets::settle`]); that
/// budget goes away with its last group.
pub struct Budgets {
    metrics: Arc<Metrics>,
    per_second: f64,
    budgets: Mutex<HashMap<(String, String), Member>>,
}

/// One budget and how many groups draw from it.
struct Member {
    budget: Arc<RequestBudget>,
    groups: usize,
}

impl Budgets {
    /// `per_second`: `[cloudwatch] max_requests_per_second`.
    pub fn new(per_second: f64, metrics: Arc<Metrics>) -> Arc<Budgets> {
        Arc::new(Budgets {
            metrics,
            per_second,
            budgets: Mutex::new(HashMap::new()),
        })
    }

    /// `api` within the budget of `account` (`None`: not known yet) and
    /// `region`.
    pub fn wrap<A>(&self, account: Option<&str>, region: &str, api: A) -> Budgeted<A> {
        let budget = self.join(&mut self.lock(), account, region);
        Budgeted::new(api, budget)
    }

    /// The group `group` read through `api` is in `account`: from now on
    /// it draws from that account-region's budget.
    pub fn settle<A>(&self, api: &Budgeted<A>, group: &str, account: &str, region: &str) {
        let mut budgets = self.lock();
        let target = budgets.get(&(account.to_owned(), region.to_owned()));
        if target.is_some_and(|member| Arc::ptr_eq(&member.budget, &api.budget())) {
            return;
        }
        let budget = self.join(&mut budgets, Some(account), region);
        let left = api.move_to(group, budget);
        let Some(key) = budgets
            .iter()
            .find(|(_, member)| Arc::ptr_eq(&member.budget, &left))
            .map(|(key, _)| key.clone())
        else {
            return;
        };
        let member = budgets.get_mut(&key).expect("found above");
        member.groups -= 1;
        if member.groups == 0 {
            budgets.remove(&key);
            let labels = [key.0.as_str(), key.1.as_str()];
            let metrics = &self.metrics;
            let _ = metrics.api_budget_used.remove_label_values(&labels);
            let _ = metrics.api_budget_demand.remove_label_values(&labels);
            let _ = metrics.api_calls_delayed.remove_label_values(&labels);
        }
    }

    /// The budget of `account` and `region`, one group more.
    fn join(
        &self,
        budgets: &mut HashMap<(String, String), Member>,
        account: Option<&str>,
        region: &str,
    ) -> Arc<RequestBudget> {
        let account_id = account.unwrap_or(UNRESOLVED_ACCOUNT).to_owned();
        let key = (account_id.clone(), region.to_owned());
        let member = budgets.entry(key).or_insert_with(|| {
            let observer = BudgetMetrics {
                metrics: self.metrics.clone(),
                account_id: account_id.clone(),
                region: region.to_owned(),
            };
            observer.used(0.0);
            observer.demand(0.0);
            self.metrics
                .api_calls_delayed
                .with_label_values(&observer.labels());
            Member {
                budget: RequestBudget::new(
                    self.per_second,
                    format!("{account_id}/{region}"),
                    Arc::new(observer),
                ),
                groups: 0,
            }
        });
        member.groups += 1;
        member.budget.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Member>> {
        self.budgets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What the loops of every log group share.
#[derive(Clone)]
pub struct Shared {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// Names given to interfaces in the configuration.
    pub names: HashMap<String, Option<String>>,
    /// Interfaces watched by every group.
    pub watched: Arc<AtomicUsize>,
    /// This replica's part of the interfaces.
    pub shard: Shard,
    /// The request budget of each account and region.
    pub budgets: Arc<Budgets>,
    /// `[state] directory`.
    pub state_directory: Option<PathBuf>,
}

/// What a successor needs to go on with one log group: the poller's
/// window and dedup memory, and the core's open sessions.
#[derive(Deserialize)]
struct GroupCheckpoint {
    poller: PollerState,
    pipeline: PipelineCheckpoint,
}

/// [`GroupCheckpoint`] as it is written, borrowed from the live poller and
/// pipeline (no copy of the fingerprints or the sessions).
#[derive(Serialize)]
struct GroupCheckpointOut<'a> {
    poller: PollerStateRef<'a>,
    pipeline: PipelineCheckpointView<'a>,
}

/// Version of [`GroupCheckpoint`]'s meaning: a file of another version is
/// ignored (counted `incompatible`).
const CHECKPOINT_VERSION: u32 = 1;

/// The state file of one log group, named and fingerprinted after what
/// makes its state valid: the group where it is (`described`: account,
/// region and name), its format, interfaces and this replica's shard.
fn state_file(
    directory: &Path,
    described: &str,
    group: &LogGroupConfig,
    shard: Shard,
) -> StateFile {
    let name = format!(
        "cloudwatch-{}.json",
        &state::fingerprint(&[described])[..16]
    );
    let mut interfaces = group.interfaces.clone();
    interfaces.sort();
    let shard = format!("{}/{}", shard.index(), shard.count());
    let fingerprint = state::fingerprint(&[
        "cloudwatch",
        described,
        &group.log_format,
        &interfaces.join(","),
        &shard,
    ]);
    StateFile::new(directory, &name, CHECKPOINT_VERSION, fingerprint)
}

/// One log group: poll, feed the core, count.
pub struct GroupLoop {
    poller: Poller<ShardedLogs<Budgeted<AwsLogsApi>>>,
    /// Before the first poll, so that the groups of one budget do not all
    /// poll at once.
    first_delay: Duration,
    pipeline: Pipeline,
    shared: Shared,
    known_interfaces: HashSet<String>,
    poll_interval: Duration,
    lookback: Duration,
    /// How the sessions' records are read again (`inspect`).
    proof: ProofSource,
    /// The group in logs, with its account and region: same-named groups
    /// of other accounts or regions are other groups.
    group: String,
    /// Where this group's checkpoint goes (`[state]`).
    state: Option<StateFile>,
    /// Interface facts from EC2, when `[ec2] describe_interfaces`.
    ec2: Option<Ec2Facts<AwsEc2Api>>,
    /// This group's share of `vpcflow_log_events_remembered`.
    remembered: i64,
    /// The account and region the group is read in, for its interfaces'
    /// `vpcflow_interface_info`.
    account: AccountOf,
    region: String,
    /// Its role's credentials, renewed before a poll when due.
    role: Option<RoleCredentials>,
    /// `[cloudwatch] max_held_events`: also the most decisions of the wall
    /// clock's advance held before their checkpoint.
    max_held_events: usize,
}

impl GroupLoop {
    pub fn new(
        config: &CloudWatchConfig,
        group: &LogGroupConfig,
        access: Access,
        api: Budgeted<AwsLogsApi>,
        mut pipeline: Pipeline,
        shared: Shared,
    ) -> GroupLoop {
        let poller_config = PollerConfig {
            interfaces: group.interfaces.clone(),
            poll_interval: config.poll_interval,
            lookback: config.lookback,
            max_catchup: config.max_catchup,
            discovery_interval: config.discovery_interval,
            max_seen_events: config.max_seen_events,
            max_held_events: config.max_held_events,
            ..PollerConfig::new(group.name.clone())
        };
        let api = ShardedLogs::new(api, shared.shard);
        let state = shared.state_directory.as_deref().map(|directory| {
            state_file(
                directory,
                &access.describe(&group.name),
                group,
                shared.shard,
            )
        });
        let restored = state
            .as_ref()
            .and_then(|file| restore(file, &mut pipeline, &shared.metrics, &group.name));
        let poller = match restored {
            Some(poller_state) => Poller::restore(api, poller_config, poller_state),
            None => Poller::new(api, poller_config, now_millis()),
        };
        GroupLoop {
            poller,
            first_delay: Duration::ZERO,
            pipeline,
            shared,
            known_interfaces: HashSet::new(),
            poll_interval: config.poll_interval,
            lookback: config.lookback,
            proof: ProofSource::LogGroup {
                name: group.name.clone(),
                region: access.region.clone(),
                endpoint_url: config.endpoint_url.clone(),
                role_arn: group.role_arn.clone(),
                external_id: group.role_arn.as_ref().and(group.external_id.clone()),
                log_format: group.log_format.clone(),
            },
            group: access.describe(&group.name),
            state,
            ec2: None,
            remembered: 0,
            account: AccountOf::Known(access.account_id().unwrap_or_default().to_owned()),
            region: access.region.clone().unwrap_or_default(),
            role: None,
            max_held_events: config.max_held_events,
        }
    }

    /// The account and region of the group as the clients resolved them
    /// (the base credentials' account, the AWS chain's region).
    pub fn located(mut self, account: AccountOf, region: Option<String>) -> GroupLoop {
        self.account = account;
        if let Some(region) = region {
            self.region = region;
        }
        self
    }

    /// Once STS has named the base credentials' account, the group draws
    /// from that account-region's budget, and the interfaces seen so far
    /// get the account too.
    fn resolve_account(&mut self) {
        let AccountOf::Ask(base) = &self.account else {
            return;
        };
        let Some(account) = base.get() else {
            return;
        };
        self.shared.budgets.settle(
            self.poller.api().inner(),
            &self.group,
            &account,
            &self.region,
        );
        for interface in &self.known_interfaces {
            self.shared
                .metrics
                .locate_interface(interface, &account, &self.region);
        }
        self.account = AccountOf::Known(account);
    }

    /// Before the first poll: waits up to [`ACCOUNT_WAIT`] for STS to name
    /// the base credentials' account. Returns true on shutdown.
    async fn await_account(&mut self, shutdown: &mut watch::Receiver<bool>) -> bool {
        if let AccountOf::Ask(base) = &self.account {
            let mut base = base.clone();
            tokio::select! {
                _ = tokio::time::timeout(ACCOUNT_WAIT, base.answered()) => {}
                _ = shutdown.wait_for(|stop| *stop) => return true,
            }
        }
        self.resolve_account();
        false
    }

    /// Waits `delay` before the first poll: spreads the polls of groups
    /// that share a request budget over the poll interval.
    pub fn starting_after(mut self, delay: Duration) -> GroupLoop {
        self.first_delay = delay;
        self
    }

    /// Reads with `role`'s credentials: they are renewed before a poll, so
    /// that no call waits for AssumeRole after its turn in the budget.
    pub fn with_role(mut self, role: Option<RoleCredentials>) -> GroupLoop {
        self.role = role;
        self
    }

    /// Describes the group's interfaces in EC2 before their records are fed.
    pub fn with_ec2(mut self, ec2: Ec2Facts<AwsEc2Api>) -> GroupLoop {
        self.ec2 = Some(ec2);
        self
    }

    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut source = SourceHealth::default();
        if self.await_account(&mut shutdown).await
            || sleep_or_stop(self.first_delay, &mut shutdown).await
        {
            return;
        }
        loop {
            self.resolve_account();
            let started = Instant::now();
            if let Some(role) = &self.role {
                let renewed = tokio::select! {
                    renewed = role.renew_if_due() => renewed,
                    _ = shutdown.wait_for(|stop| *stop) => break,
                };
                if let Err(error) = renewed {
                    self.shared
                        .health
                        .poll_failed(&mut source, started.elapsed());
                    self.poller.could_not_start();
                    tracing::warn!(log_group = %self.group, %error,
                        "Poll not started: the role's credentials could not be renewed (retried with backoff)");
                    if sleep_or_stop(self.poller.next_delay(), &mut shutdown).await {
                        break;
                    }
                    continue;
                }
            }
            // A poll in flight is dropped on shutdown: what its batches
            // counted is checkpointed, the rest of its window is read again
            // (and only what is new to it counted) by the next process.
            let result = tokio::select! {
                result = self.poll_window(now_millis()) => result,
                _ = shutdown.wait_for(|stop| *stop) => break,
            };
            match result {
                Ok(outcome) => {
                    if outcome.caught_up {
                        self.poller.api().inner().budget().set_demand(
                            &self.group,
                            outcome.api_calls,
                            self.poll_interval,
                        );
                    }
                    self.take(&outcome);
                    self.shared
                        .health
                        .poll_succeeded(&mut source, started.elapsed());
                    tracing::debug!(
                        log_group = %self.group,
                        fetched = outcome.fetched,
                        new = outcome.new,
                        calls = outcome.api_calls,
                        overlap_ms = outcome.overlap_ms,
                        "Polled"
                    );
                }
                Err(error) => {
                    self.shared
                        .health
                        .poll_failed(&mut source, started.elapsed());
                    self.log_failure(&error);
                }
            }
            if sleep_or_stop(self.poller.next_delay(), &mut shutdown).await {
                break;
            }
        }
    }

    /// One poll, read to the end of its window. A flood's window is counted
    /// batch by batch as it is read (each batch checkpointed before it is
    /// published), so the poll holds at most `max_held_events` new events;
    /// the window's last events come back in the outcome for [`GroupLoop::take`].
    async fn poll_window(&mut self, now_ms: i64) -> Result<PollOutcome, ApiError> {
        let mut run = self.poller.start(now_ms).await?;
        // Facts first, so that no record of this poll is judged without them.
        if let Some(ec2) = &mut self.ec2 {
            let interfaces: Vec<&str> = self
                .poller
                .streams()
                .iter()
                .map(|s| interface_of_stream(s))
                .collect();
            ec2.update(&interfaces, &mut self.pipeline).await;
        }
        if self.pipeline.advancing() {
            // Restored from a checkpoint written part way through the wall
            // clock's advance: finished before any record, as the
            // predecessor would have.
            let now = now_seconds();
            self.pipeline.set_wall_clock(now);
            self.advance(Deferred::new(), now);
        }
        loop {
            match self.poller.step(&mut run).await? {
                PollStep::Batch(batch) => self.take_batch(&batch),
                PollStep::Done(outcome) => return Ok(outcome),
            }
        }
    }

    /// Retriable failures are the service's to fix and are retried; the
    /// others (permissions, a missing log group) need an operator.
    fn log_failure(&self, error: &ApiError) {
        let log_group = self.group.as_str();
        if error.is_retriable() {
            tracing::warn!(log_group, operation = error.operation(), kind = error.metric_label(), %error,
                "Poll failed; its window will be read again");
        } else {
            tracing::error!(log_group, operation = error.operation(), %error,
                "Poll failed and retrying will not help until the cause is fixed (permissions, log group name)");
        }
    }

    /// Counts a batch of new events read part way through a window: fed
    /// to the core, checkpointed, published. The window's end, with the
    /// wall-clock watermark, is for [`GroupLoop::take`].
    fn take_batch(&mut self, batch: &Batch) {
        self.note_interfaces();
        self.note_remembered(batch.forgotten);
        let metrics = &self.shared.metrics;
        metrics.events_fetched.inc_by(batch.fetched);
        metrics.events_new.inc_by(batch.events.len() as u64);
        let now = now_seconds();
        let deferred = self.feed(&batch.events, now);
        self.publish(deferred, now);
        tracing::debug!(log_group = %self.group, new = batch.events.len(), fetched = batch.fetched, "Counted a batch of the window");
    }

    /// Counts the end of a poll's window (its last new events) and decides
    /// on the wall clock what a silent interface leaves pending.
    fn take(&mut self, outcome: &PollOutcome) {
        self.note_interfaces();
        self.note_dedup_memory(outcome);
        let metrics = &self.shared.metrics;
        metrics.events_fetched.inc_by(outcome.fetched_since_batch);
        metrics.events_new.inc_by(outcome.events.len() as u64);
        if outcome.skipped_ms > 0 {
            metrics
                .catchup_skipped
                .inc_by(u64::try_from(outcome.skipped_ms / 1000).unwrap_or(0));
            tracing::error!(
                log_group = %self.group,
                skipped_seconds = outcome.skipped_ms / 1000,
                "An outage outlasted max_catchup: records in the skipped time were never read"
            );
        }
        let now = now_seconds();
        let mut deferred = self.feed(&outcome.events, now);
        // Sessions of a silent interface are decided on the wall clock, less
        // the delivery delay: a record not yet read will end after that.
        let measured = self
            .poller
            .delay_since_end_ms()
            .map(|ms| ms.unsigned_abs().div_ceil(1000));
        let watermark = wall_clock_watermark(
            now,
            measured,
            self.poll_interval.as_secs(),
            self.lookback.as_secs(),
        );
        self.pipeline.start_advance(watermark, &mut deferred);
        self.advance(deferred, now);
    }

    /// Carries out the wall clock's advance a step at a time, each step
    /// checkpointed and published before the next: a scan's sessions all
    /// fall due at once, and are held at most `max_held_events` at a time.
    fn advance(&mut self, deferred: Deferred, now: u64) {
        let max_held = self.max_held_events;
        advance_in_steps(
            self,
            max_held,
            deferred,
            |group| &mut group.pipeline,
            |group, deferred| group.publish(deferred, now),
        );
    }

    /// Feeds `events` to the core; what it decides is held back in the
    /// returned [`Deferred`] until it is checkpointed ([`GroupLoop::publish`]).
    fn feed(&mut self, events: &[LogEvent], now: u64) -> Deferred {
        self.pipeline.set_wall_clock(now);
        let mut deferred = Deferred::new();
        let delay = feed_events_to(
            &mut self.pipeline,
            events,
            &self.shared.metrics,
            &mut deferred,
        );
        let delay_ms =
            delay.map(|seconds| i64::try_from(seconds.saturating_mul(1000)).unwrap_or(i64::MAX));
        self.poller.note_delay_since_end(now_millis(), delay_ms);
        deferred
    }

    /// Checkpoints, then publishes what the core decided: a scrape never
    /// shows a count that is not in a checkpoint.
    fn publish(&mut self, deferred: Deferred, now: u64) {
        self.checkpoint();
        let metrics = &self.shared.metrics;
        let service_ports = self.pipeline.correlator().service_ports().clone();
        let sessions = self.shared.health.state.sessions.clone();
        let mut observer = Recorded::new(
            FlowMetrics::new(metrics, &service_ports),
            &sessions,
            &self.proof,
            now,
        );
        deferred.replay(&mut observer);
        drop(observer);
        update_load_gauges(metrics, &self.pipeline);
    }

    /// Counts the fingerprints forgotten early (`max_seen_events`) at a
    /// poll's end, logs the poll's (batches included) and keeps this
    /// group's share of the remembered ones in the gauge.
    fn note_dedup_memory(&mut self, outcome: &PollOutcome) {
        self.note_remembered(outcome.forgotten_since_batch);
        if outcome.forgotten > 0 {
            let taken_as_seen_before = outcome
                .forgotten_before_ms
                .and_then(|ms| u64::try_from(ms / 1000).ok())
                .map(|seconds| {
                    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(seconds))
                        .to_string()
                });
            tracing::warn!(
                log_group = %self.group,
                forgotten = outcome.forgotten,
                remembered = self.poller.seen_len(),
                taken_as_seen_before = taken_as_seen_before.as_deref().unwrap_or("-"),
                "Too many events inside the overlap for cloudwatch.max_seen_events: the oldest of the busiest streams were forgotten early, and a record of those streams arriving later with a timestamp before taken_as_seen_before may be dropped as a re-read"
            );
        }
    }

    /// Counts `forgotten` fingerprints and keeps this group's share of the
    /// remembered ones in the gauge (after a batch or a poll).
    fn note_remembered(&mut self, forgotten: u64) {
        let metrics = &self.shared.metrics;
        metrics.events_forgotten.inc_by(forgotten);
        let remembered = i64::try_from(self.poller.seen_len()).unwrap_or(i64::MAX);
        metrics.events_remembered.add(remembered - self.remembered);
        self.remembered = remembered;
    }

    /// Writes this group's checkpoint, when `[state]` is configured.
    fn checkpoint(&self) {
        let Some(file) = &self.state else {
            return;
        };
        let checkpoint = GroupCheckpointOut {
            poller: self.poller.state(),
            pipeline: self.pipeline.checkpoint_view(),
        };
        let metrics = &self.shared.metrics;
        match file.store(&checkpoint, now_seconds()) {
            Ok(()) => metrics.state_checkpoint(CheckpointOutcome::Written),
            Err(error) => {
                metrics.state_checkpoint(CheckpointOutcome::WriteFailed);
                tracing::warn!(log_group = self.poller.log_group(), path = %file.path().display(), %error,
                    "Checkpoint not written: a restart now would count this poll's records again");
            }
        }
    }

    /// Zero series and the watched count for interfaces seen for the first time.
    fn note_interfaces(&mut self) {
        let before = self.known_interfaces.len();
        for stream in self.poller.streams() {
            let interface = interface_of_stream(stream);
            if self.known_interfaces.insert(interface.to_string()) {
                let name = self.shared.names.get(interface).cloned().flatten();
                let metrics = &self.shared.metrics;
                metrics.expect_interface(interface, name.as_deref());
                let account = match &self.account {
                    AccountOf::Known(account) => account.as_str(),
                    AccountOf::Ask(_) => "",
                };
                metrics.locate_interface(interface, account, &self.region);
            }
        }
        let added = self.known_interfaces.len() - before;
        if added > 0 {
            let total = self.shared.watched.fetch_add(added, Ordering::AcqRel) + added;
            self.shared
                .metrics
                .interfaces_watched
                .set(i64::try_from(total).unwrap_or(i64::MAX));
        }
    }
}

/// Reads a group's checkpoint into `pipeline`; the poller's part is
/// returned. Whatever is wrong with the file is logged and counted, and the
/// group starts afresh.
fn restore(
    file: &StateFile,
    pipeline: &mut Pipeline,
    metrics: &Metrics,
    log_group: &str,
) -> Option<PollerState> {
    let path = file.path().display();
    match file.load::<GroupCheckpoint>() {
        Loaded::Missing => {
            tracing::info!(log_group, %path, "No checkpoint yet: reading from start - lookback");
            None
        }
        Loaded::Restored { state, written_at } => match pipeline.restore(state.pipeline) {
            Ok(()) => {
                metrics.state_checkpoint(CheckpointOutcome::Restored);
                tracing::info!(log_group, %path, written_at, "Resuming from the checkpoint");
                Some(state.poller)
            }
            Err(error) => {
                metrics.state_checkpoint(CheckpointOutcome::Incompatible);
                tracing::warn!(log_group, %path, %error, "Checkpoint ignored (the core cannot resume it): starting afresh");
                None
            }
        },
        Loaded::Corrupt(why) => {
            metrics.state_checkpoint(CheckpointOutcome::Corrupt);
            tracing::warn!(log_group, %path, reason = %why, "Checkpoint ignored (corrupt): starting afresh");
            None
        }
        Loaded::Incompatible(why) => {
            metrics.state_checkpoint(CheckpointOutcome::Incompatible);
            tracing::warn!(log_group, %path, reason = %why, "Checkpoint ignored (incompatible): starting afresh");
            None
        }
    }
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

/// Carries out `pipeline`'s advance under way in steps of at most
/// `max_held` due sessions (the first step less what `deferred` holds
/// already), each step's [`Deferred`] handed to `publish` (checkpoint, then
/// replay) before the next is taken: the decisions come in the order of one
/// [`Pipeline::advance_to`], never more than `max_held` of them held. At
/// least one publish, even with nothing under way.
fn advance_in_steps<T>(
    group: &mut T,
    max_held: usize,
    mut deferred: Deferred,
    pipeline: impl Fn(&mut T) -> &mut Pipeline,
    mut publish: impl FnMut(&mut T, Deferred),
) {
    loop {
        let budget = max_held.saturating_sub(deferred.len()).max(1);
        let more = pipeline(group).advance_some(budget, &mut deferred);
        publish(group, deferred);
        if !more {
            return;
        }
        deferred = Deferred::new();
    }
}

/// Feeds new log events to the core and counts what it decides; measures
/// each record's delivery delay (ingestion time minus the record's end) and
/// returns the largest, in seconds. A format without `interface-id` takes
/// the interface from the stream name.
pub fn feed_events(pipeline: &mut Pipeline, events: &[LogEvent], metrics: &Metrics) -> Option<u64> {
    let service_ports = pipeline.correlator().service_ports().clone();
    let mut observer = FlowMetrics::new(metrics, &service_ports);
    feed_events_to(pipeline, events, metrics, &mut observer)
}

/// As [`feed_events`], with what the core decides going to `observer`.
fn feed_events_to(
    pipeline: &mut Pipeline,
    events: &[LogEvent],
    metrics: &Metrics,
    observer: &mut impl Observer,
) -> Option<u64> {
    let mut largest: Option<u64> = None;
    // Observed here, added to the shared histogram once for the page (the
    // same counts, without atomic updates per event).
    let delivery_delay = metrics.delivery_delay.local();
    for event in events {
        let fallback_time = u64::try_from(event.timestamp_ms / 1000).ok();
        let interface = interface_of_stream(&event.stream);
        if let Some(end) =
            pipeline.push_event_text(&event.message, fallback_time, interface, observer)
        {
            let delay = (event.ingestion_time_ms as f64 / 1000.0 - end as f64).max(0.0);
            delivery_delay.observe(delay);
            largest = largest.max(Some(delay.ceil() as u64));
        }
    }
    delivery_delay.flush();
    largest
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(account_id, region)` of the budgets in the metrics.
    fn labelled(metrics: &Metrics) -> Vec<String> {
        let mut budgets: Vec<String> = metrics
            .render()
            .lines()
            .filter_map(|line| line.strip_prefix("vpcflow_api_budget_used_ratio{"))
            .map(|rest| rest.split('}').next().unwrap_or_default().to_owned())
            .collect();
        budgets.sort();
        budgets
    }

    /// The wall clock's advance as [`GroupLoop::take`] carries it out, in
    /// steps of `max_held`, after one poll of a scan (`sessions` lone
    /// requests on one interface within a minute): what each publish held
    /// (decided sessions), and the reports in the order they were published.
    fn scan_advanced(sessions: u32, max_held: usize) -> (Vec<usize>, Vec<String>) {
        #[derive(Default)]
        struct Published {
            held: Vec<usize>,
            reports: Vec<String>,
        }
        impl crate::flow::SessionObserver for Published {
            fn decided(&mut self, session: &crate::flow::SessionReport<'_>) {
                let (verdict, initiator) = (session.verdict, session.initiator);
                self.reports
                    .push(format!("decided {verdict:?} {initiator}"));
            }
            fn traffic(
                &mut self,
                _: &str,
                _: crate::flow::Verdict,
                _: crate::flow::Direction,
                _: u64,
                _: u64,
            ) {
            }
            fn closed(&mut self, session: &crate::flow::SessionReport<'_>) {
                self.reports.push(format!("closed {}", session.initiator));
            }
            fn evicted(&mut self, interface_id: &str) {
                self.reports.push(format!("evicted {interface_id}"));
            }
        }
        impl Observer for Published {
            fn record(
                &mut self,
                _: &str,
                _: Option<crate::flow::Action>,
                _: crate::flow::LogStatus,
            ) {
            }
            fn malformed(&mut self, _: crate::flow::Malformed) {}
        }
        /// Counts decisions as they are replayed.
        struct Counting<'a>(&'a mut Published, usize);
        impl crate::flow::SessionObserver for Counting<'_> {
            fn decided(&mut self, session: &crate::flow::SessionReport<'_>) {
                self.1 += 1;
                self.0.decided(session);
            }
            fn traffic(
                &mut self,
                interface_id: &str,
                verdict: crate::flow::Verdict,
                direction: crate::flow::Direction,
                packets: u64,
                bytes: u64,
            ) {
                self.0
                    .traffic(interface_id, verdict, direction, packets, bytes);
            }
            fn closed(&mut self, session: &crate::flow::SessionReport<'_>) {
                self.0.closed(session);
            }
            fn evicted(&mut self, interface_id: &str) {
                self.0.evicted(interface_id);
            }
        }
        impl Observer for Counting<'_> {
            fn record(
                &mut self,
                _: &str,
                _: Option<crate::flow::Action>,
                _: crate::flow::LogStatus,
            ) {
            }
            fn malformed(&mut self, _: crate::flow::Malformed) {}
        }

        let mut pipeline = Pipeline::new(
            crate::flow::FormatChoice::Auto,
            crate::flow::Settings::default(),
            HashMap::new(),
            crate::flow::RecordFilter::default(),
        );
        let events: Vec<LogEvent> = (0..sessions)
            .map(|n| LogEvent {
                stream: "eni-a-all".to_owned(),
                event_id: n.to_string(),
                timestamp_ms: 1_000_000,
                ingestion_time_ms: 1_000_070_000,
                message: format!(
                    "2 123456789012 eni-a 198.51.{}.{} 10.0.0.10 {} 22 6 1 40 1000 {} REJECT OK",
                    n / 250,
                    n % 250,
                    40_000 + n % 20_000,
                    1000 + u64::from(n % 60),
                ),
            })
            .collect();
        let metrics = Metrics::new();
        let mut deferred = Deferred::new();
        pipeline.set_wall_clock(100_000);
        feed_events_to(&mut pipeline, &events, &metrics, &mut deferred);
        // The wall clock has passed every request's grace.
        pipeline.start_advance(100_000, &mut deferred);
        let mut published = (pipeline, Published::default());
        advance_in_steps(
            &mut published,
            max_held,
            deferred,
            |(pipeline, _)| pipeline,
            |(_, published), deferred| {
                let mut counting = Counting(published, 0);
                deferred.replay(&mut counting);
                let held = counting.1;
                published.held.push(held);
            },
        );
        assert!(!published.0.advancing());
        (published.1.held, published.1.reports)
    }

    #[test]
    fn the_wall_clocks_decisions_are_held_at_most_max_held_events_at_once() {
        let (held_whole, whole) = scan_advanced(2_000, usize::MAX);
        assert_eq!(held_whole, [2_000]);
        let (held, reports) = scan_advanced(2_000, 150);
        assert!(held.len() > 2_000 / 150, "{held:?}");
        assert!(held.iter().all(|&held| held <= 150), "{held:?}");
        assert_eq!(held.iter().sum::<usize>(), 2_000);
        // The same reports in the same order: the same counters, and series
        // handed out in the same order.
        assert_eq!(reports, whole);
    }

    #[test]
    fn groups_settle_into_their_accounts_budget_and_the_unknown_one_goes() {
        let metrics = Arc::new(Metrics::new());
        let budgets = Budgets::new(2.0, metrics.clone());
        let base_a = budgets.wrap(None, "us-east-1", ());
        let base_b = budgets.wrap(None, "us-east-1", ());
        let role = budgets.wrap(Some("111111111111"), "us-east-1", ());
        let other_region = budgets.wrap(Some("111111111111"), "eu-west-1", ());
        assert!(Arc::ptr_eq(&base_a.budget(), &base_b.budget()));
        assert!(!Arc::ptr_eq(&base_a.budget(), &role.budget()));
        assert!(!Arc::ptr_eq(&role.budget(), &other_region.budget()));
        assert_eq!(
            labelled(&metrics),
            [
                r#"account_id="111111111111",region="eu-west-1""#,
                r#"account_id="111111111111",region="us-east-1""#,
                r#"account_id="unknown",region="us-east-1""#,
            ]
        );
        base_a.budget().set_demand("/a", 2, Duration::from_secs(1));
        budgets.settle(&base_a, "/a", "111111111111", "us-east-1");
        assert!(Arc::ptr_eq(&base_a.budget(), &role.budget()));
        assert!(metrics.render().contains(
            r#"vpcflow_api_budget_demand_ratio{account_id="111111111111",region="us-east-1"} 1"#
        ));
        // Another group still draws from the unknown budget: it stays.
        assert_eq!(labelled(&metrics).len(), 3);
        budgets.settle(&base_b, "/b", "111111111111", "us-east-1");
        budgets.settle(&base_b, "/b", "111111111111", "us-east-1");
        assert!(Arc::ptr_eq(&base_b.budget(), &role.budget()));
        assert_eq!(
            labelled(&metrics),
            [
                r#"account_id="111111111111",region="eu-west-1""#,
                r#"account_id="111111111111",region="us-east-1""#,
            ]
        );
        assert!(!metrics.render().contains(r#"account_id="unknown""#));
    }
}
