//! Every metric the exporter serves: its name, labels and HELP text, in one
//! place (docs/metrics.md is the reader's copy). Flow data metrics are fed
//! by the core through [`FlowMetrics`], an [`Observer`]; exporter health
//! metrics are set by the poll loop.

use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use std::sync::Mutex;

use rustc_hash::FxHashMap;

use crate::flow::verdict::protocol_name;
use crate::flow::{
    Action, Direction, LogStatus, Malformed, Observer, ServicePorts, SessionObserver,
    SessionReport, Verdict,
};

mod series;

pub use series::{CounterFamily, GaugeFamily};

const NAMESPACE: &str = "vpcflow";

/// How stale a value can be, said once for every HELP text that needs it.
const STALENESS: &str = "Updated each poll: values lag traffic by the capture interval, the CloudWatch delivery delay and up to one poll interval.";

/// `vpcflow_state_checkpoints_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointOutcome {
    Written,
    WriteFailed,
    Restored,
    Corrupt,
    Incompatible,
}

impl CheckpointOutcome {
    pub const ALL: [CheckpointOutcome; 5] = [
        CheckpointOutcome::Written,
        CheckpointOutcome::WriteFailed,
        CheckpointOutcome::Restored,
        CheckpointOutcome::Corrupt,
        CheckpointOutcome::Incompatible,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointOutcome::Written => "written",
            CheckpointOutcome::WriteFailed => "write_failed",
            CheckpointOutcome::Restored => "restored",
            CheckpointOutcome::Corrupt => "corrupt",
            CheckpointOutcome::Incompatible => "incompatible",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    pub sessions: CounterFamily,
    /// Which session labels are kept and how many session series an interface may have.
    budget: SeriesBudget,
    /// How many `vpcflow_sessions_total` series each interface has, to hold the budget.
    session_series: Mutex<FxHashMap<Box<str>, usize>>,
    pub series_dropped: IntCounter,
    pub shard_info: IntGaugeVec,
    pub api_budget_used: GaugeVec,
    pub api_budget_demand: GaugeVec,
    pub api_calls_delayed: IntCounterVec,
    pub records: CounterFamily,
    pub bytes: CounterFamily,
    pub packets: CounterFamily,
    pub malformed: IntCounterVec,
    pub pending_sessions: GaugeFamily,
    pub open_sessions: GaugeFamily,
    pub sessions_evicted: CounterFamily,
    pub direction_fallbacks: CounterFamily,
    pub interface_info: GaugeFamily,
    /// The label values of each interface's `vpcflow_interface_info`.
    interface_info_values: Mutex<FxHashMap<String, Vec<String>>>,
    pub up: IntGauge,
    pub polls: IntCounterVec,
    pub poll_duration: Histogram,
    pub last_successful_poll: Gauge,
    pub api_calls: IntCounterVec,
    pub api_call_duration: HistogramVec,
    pub api_throttles: IntCounterVec,
    pub api_errors: IntCounterVec,
    pub events_fetched: IntCounter,
    pub events_new: IntCounter,
    pub events_forgotten: IntCounter,
    pub events_remembered: IntGauge,
    pub delivery_delay: Histogram,
    pub catchup_skipped: IntCounter,
    state_checkpoints: IntCounterVec,
    pub interfaces_watched: IntGauge,
    pub build_info: GaugeVec,
    /// Length of the last `/metrics`, to allocate the next one at once.
    last_render_len: std::sync::atomic::AtomicUsize,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace(NAMESPACE)
}

impl Metrics {
    /// Every session label, at most [`DEFAULT_MAX_SERIES_PER_INTERFACE`] session series per interface.
    pub fn new() -> Metrics {
        Metrics::with_budget(SeriesBudget::default())
    }

    pub fn with_budget(budget: SeriesBudget) -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(opts(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(metric.clone()))
                .expect("unique metric");
            metric
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntGaugeVec::new(opts(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(metric.clone()))
                .expect("unique metric");
            metric
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let metric = Histogram::with_opts(
                HistogramOpts::new(name, help)
                    .namespace(NAMESPACE)
                    .buckets(buckets),
            )
            .expect("valid metric");
            registry
                .register(Box::new(metric.clone()))
                .expect("unique metric");
            metric
        };
        // The per-interface families: rendered by `series`, not gathered.
        let family = |name: &str, help: &str, labels: &[&'static str]| {
            CounterFamily::new(NAMESPACE, name, help, labels)
        };
        let gauge_family = |name: &str, help: &str, labels: &[&'static str]| {
            GaugeFamily::new(NAMESPACE, name, help, labels)
        };
        let sessions = family(
            "sessions_total",
            &format!(
                "Sessions decided, by verdict: accepted (both directions accepted), rejected_inbound (blocked entering the interface), rejected_outbound (blocked leaving it), unanswered (let in, never answered), refused (answered with a reset only). direction is ingress when the remote side started the session; port is the responder's service port or 'other'. A verdict is counted once, when both directions are seen or reply_grace after the first record. {STALENESS}"
            ),
            &budget.label_names(),
        );
        let series_dropped = IntCounter::with_opts(opts(
            "series_dropped_total",
            "Decided sessions whose label set would have added a vpcflow_sessions_total series to an interface past metrics.max_series_per_interface: counted under port=\"other\" when that series of the interface exists, else left out of vpcflow_sessions_total.",
        ))
        .expect("valid metric");
        registry
            .register(Box::new(series_dropped.clone()))
            .expect("unique metric");
        let shard_info = gauge(
            "shard_info",
            "This replica's shard: index of count replicas that split the interfaces by rendezvous hashing of the interface id; always 1. Sum the flow metrics across replicas.",
            &["index", "count"],
        );
        let float_gauge = |name: &str, help: &str, labels: &[&str]| {
            let metric = GaugeVec::new(opts(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(metric.clone()))
                .expect("unique metric");
            metric
        };
        let api_budget_used = float_gauge(
            "api_budget_used_ratio",
            "CloudWatch Logs requests (attempts, retries included) of the last minute to this account and region over what cloudwatch.max_requests_per_second allows in a minute (account_id is the base credentials' account from STS GetCallerIdentity, or the role's; \"unknown\" while STS has not answered).",
            &["account_id", "region"],
        );
        let api_budget_demand = float_gauge(
            "api_budget_demand_ratio",
            "FilterLogEvents calls per second the last polls of this account and region's log groups need at poll_interval, over cloudwatch.max_requests_per_second. Above 1 the budget cannot cover the interfaces and polls fall behind: raise poll_interval, split the interfaces over more replicas, or use S3 delivery.",
            &["account_id", "region"],
        );
        let api_calls_delayed = counter(
            "api_calls_delayed_total",
            "CloudWatch Logs attempts (a call's first, or a retry after its backoff) that waited for their turn in the account and region's request budget (cloudwatch.max_requests_per_second).",
            &["account_id", "region"],
        );
        let records = family(
            "records_total",
            &format!(
                "Well-formed flow log records read, by action and log status (SKIPDATA means records were lost at capture). {STALENESS}"
            ),
            &["interface_id", "action", "log_status"],
        );
        let bytes = family(
            "bytes_total",
            &format!("Bytes of decided sessions, both directions, by verdict. {STALENESS}"),
            &["interface_id", "verdict", "direction"],
        );
        let packets = family(
            "packets_total",
            &format!("Packets of decided sessions, both directions, by verdict. {STALENESS}"),
            &["interface_id", "verdict", "direction"],
        );
        let malformed = counter(
            "malformed_records_total",
            "Lines skipped because they are not a usable flow log record, by reason.",
            &["reason"],
        );
        let pending_sessions = gauge_family(
            "pending_sessions",
            "Sessions waiting for their other direction or for reply_grace to pass.",
            &["interface_id"],
        );
        let open_sessions = gauge_family(
            "open_sessions",
            "Sessions held in memory: pending, or decided and not yet idle for session_idle_timeout.",
            &["interface_id"],
        );
        let sessions_evicted = family(
            "sessions_evicted_total",
            "Pending sessions decided early, with the verdict their records so far give (a lone request: unanswered), because correlation.max_open_sessions sessions were held. They are also counted in vpcflow_sessions_total; a non-zero rate means the bound is too low for the traffic (or a flood), and some late replies may be counted as sessions of their own.",
            &["interface_id"],
        );
        let direction_fallbacks = family(
            "direction_fallbacks_total",
            "Sessions whose direction (and a rejection's inbound or outbound) was decided by the fallback \"the request's destination is local\", because the interface's records had not told its own address within correlation.address_wait (or correlation.max_awaiting_address_per_interface sessions waited). Typical of an interface that talks to one peer only; set [interfaces.<id>] addresses or [ec2] describe_interfaces to make them exact.",
            &["interface_id"],
        );
        let interface_info = gauge_family(
            "interface_info",
            "What is known about an interface, always 1, one series per interface seen: its name (configured, else its EC2 Name tag, else its id), the account and region of the log group its records come from and, with [ec2] describe_interfaces, its EC2 type, owner account, VPC, subnet, instance, security groups and description. Join it for names: * on(interface_id) group_left(name) vpcflow_interface_info.",
            &INTERFACE_INFO_LABELS,
        );
        let up = IntGauge::with_opts(opts(
            "up",
            "1 when the last poll of the flow log source succeeded, 0 when it failed.",
        ))
        .expect("valid metric");
        registry
            .register(Box::new(up.clone()))
            .expect("unique metric");
        let polls = counter(
            "polls_total",
            "Polls of the flow log source, by outcome.",
            &["outcome"],
        );
        let poll_duration = histogram(
            "poll_duration_seconds",
            "Wall time of one poll of the flow log source, API calls and processing included.",
            vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0],
        );
        let last_successful_poll = Gauge::with_opts(opts(
            "last_successful_poll_timestamp_seconds",
            "Unix time of the last successful poll of the flow log source.",
        ))
        .expect("valid metric");
        registry
            .register(Box::new(last_successful_poll.clone()))
            .expect("unique metric");
        let api_calls = counter(
            "api_calls_total",
            "AWS API calls, by operation and outcome (success, throttled, error).",
            &["operation", "outcome"],
        );
        let api_call_duration = HistogramVec::new(
            HistogramOpts::new(
                "api_call_duration_seconds",
                "Latency of AWS API calls, by operation: from the first attempt on, retries and their backoffs included.",
            )
            .namespace(NAMESPACE)
            .buckets(vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["operation"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(api_call_duration.clone()))
            .expect("unique metric");
        let api_throttles = counter(
            "api_throttles_total",
            "AWS API attempts answered with throttling, by operation, those retried with backoff included.",
            &["operation"],
        );
        let api_errors = counter(
            "api_errors_total",
            "Failed AWS API attempts, by operation and kind (throttled, timeout, connection, bad_response, server_error, denied, invalid_parameter, not_found, client_error, local), those a retry got past included.",
            &["operation", "kind"],
        );
        let events_fetched = IntCounter::with_opts(opts(
            "log_events_fetched_total",
            "Log events returned by FilterLogEvents, re-reads of the overlap window included.",
        ))
        .expect("valid metric");
        registry
            .register(Box::new(events_fetched.clone()))
            .expect("unique metric");
        let events_new = IntCounter::with_opts(opts(
            "log_events_new_total",
            "Log events seen for the first time; fetched divided by new is the read amplification.",
        ))
        .expect("valid metric");
        registry
            .register(Box::new(events_new.clone()))
            .expect("unique metric");
        let events_forgotten = IntCounter::with_opts(opts(
            "log_events_forgotten_total",
            "Log event fingerprints forgotten early, before their time left the overlap window, to hold cloudwatch.max_seen_events (a flood of events; the busiest stream's oldest first). Re-reads of them are still counted once, but a record of that stream delivered later with a timestamp that old is dropped as a re-read: if this grows outside a flood, raise cloudwatch.max_seen_events (about 35 bytes each) or lower cloudwatch.lookback.",
        ))
        .expect("valid metric");
        registry
            .register(Box::new(events_forgotten.clone()))
            .expect("unique metric");
        let events_remembered = IntGauge::with_opts(opts(
            "log_events_remembered",
            "Log event fingerprints held to count re-read events once, all log groups together; each group holds at most cloudwatch.max_seen_events at any time.",
        ))
        .expect("valid metric");
        registry
            .register(Box::new(events_remembered.clone()))
            .expect("unique metric");
        let delivery_delay = histogram(
            "delivery_delay_seconds",
            "CloudWatch ingestion time minus the flow record's end: how late records arrive.",
            vec![
                30.0, 60.0, 120.0, 180.0, 300.0, 450.0, 600.0, 900.0, 1200.0, 1800.0, 3600.0,
            ],
        );
        let catchup_skipped = IntCounter::with_opts(opts(
            "catchup_skipped_seconds_total",
            "Seconds of log time never read because an outage outlasted cloudwatch.max_catchup.",
        ))
        .expect("valid metric");
        registry
            .register(Box::new(catchup_skipped.clone()))
            .expect("unique metric");
        let state_checkpoints = counter(
            "state_checkpoints_total",
            "Checkpoints of the [state] directory, by outcome: written, write_failed; at start restored, corrupt, incompatible (other format version or configuration; ignored).",
            &["outcome"],
        );
        let interfaces_watched = IntGauge::with_opts(opts(
            "interfaces_watched",
            "Interfaces (log streams) being read.",
        ))
        .expect("valid metric");
        registry
            .register(Box::new(interfaces_watched.clone()))
            .expect("unique metric");
        let build_info = GaugeVec::new(
            opts("build_info", "Version of the exporter; always 1."),
            &["version", "revision", "rustc_version"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(build_info.clone()))
            .expect("unique metric");
        build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                option_env!("VPC_FLOW_EXPORTER_REVISION").unwrap_or("unknown"),
                option_env!("VPC_FLOW_EXPORTER_RUSTC").unwrap_or("unknown"),
            ])
            .set(1.0);
        for reason in Malformed::ALL {
            malformed.with_label_values(&[reason.as_str()]);
        }
        for outcome in ["success", "error"] {
            polls.with_label_values(&[outcome]);
        }
        Metrics {
            registry,
            sessions,
            budget,
            session_series: Mutex::default(),
            series_dropped,
            shard_info,
            api_budget_used,
            api_budget_demand,
            api_calls_delayed,
            records,
            bytes,
            packets,
            malformed,
            pending_sessions,
            open_sessions,
            sessions_evicted,
            direction_fallbacks,
            interface_info,
            interface_info_values: Mutex::default(),
            up,
            polls,
            poll_duration,
            last_successful_poll,
            api_calls,
            api_call_duration,
            api_throttles,
            api_errors,
            events_fetched,
            events_new,
            events_forgotten,
            events_remembered,
            delivery_delay,
            catchup_skipped,
            state_checkpoints,
            interfaces_watched,
            build_info,
            last_render_len: Default::default(),
        }
    }

    /// Zeros for every checkpoint outcome: called when `[state]` is configured.
    pub fn expect_state_checkpoints(&self) {
        for outcome in CheckpointOutcome::ALL {
            self.state_checkpoints
                .with_label_values(&[outcome.as_str()]);
        }
    }

    /// A checkpoint was written, failed to be written, or read at start.
    pub fn state_checkpoint(&self, outcome: CheckpointOutcome) {
        self.state_checkpoints
            .with_label_values(&[outcome.as_str()])
            .inc();
    }

    /// Zeros for the AWS operations the exporter calls, so rates exist from the start.
    pub fn expect_operations(&self, operations: &[&str]) {
        for operation in operations {
            for outcome in ["success", "throttled", "error"] {
                self.api_calls.with_label_values(&[operation, outcome]);
            }
            self.api_throttles.with_label_values(&[operation]);
            self.api_call_duration.with_label_values(&[operation]);
        }
    }

    /// Zeros for an interface's label sets that are known to exist.
    ///
    /// Sessions are not among them: which verdict, direction, protocol and
    /// port an interface will see is not known, and made-up zeros would
    /// triple `/metrics` (and its render time) on a large fleet.
    pub fn expect_interface(&self, interface_id: &str, name: Option<&str>) {
        for action in [Action::Accept, Action::Reject] {
            self.records.with_label_values(&[
                interface_id,
                action.as_str(),
                LogStatus::Ok.as_str(),
            ]);
        }
        self.pending_sessions.with_label_values(&[interface_id]);
        self.open_sessions.with_label_values(&[interface_id]);
        self.sessions_evicted.with_label_values(&[interface_id]);
        self.direction_fallbacks.with_label_values(&[interface_id]);
        self.ensure_interface_info(interface_id, name);
    }

    /// A `vpcflow_interface_info` for an interface that has none yet, named
    /// `name` or else by its id: dashboards join names in, and a join must
    /// not drop it. What EC2 told is never replaced by it.
    pub fn ensure_interface_info(&self, interface_id: &str, name: Option<&str>) {
        let known = self
            .interface_info_values
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(interface_id);
        if !known {
            self.set_interface_info(&InterfaceInfo {
                interface_id: interface_id.to_string(),
                name: name.unwrap_or(interface_id).to_string(),
                ..InterfaceInfo::default()
            });
        }
    }

    /// Sets `vpcflow_interface_info` of one interface, replacing the series
    /// it had (facts change: a new tag, another instance).
    pub fn set_interface_info(&self, info: &InterfaceInfo) {
        let values = info.values();
        let mut known = self
            .interface_info_values
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(previous) = known.insert(info.interface_id.clone(), values.clone())
            && previous != values
        {
            let previous: Vec<&str> = previous.iter().map(String::as_str).collect();
            let _ = self.interface_info.remove_label_values(&previous);
        }
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        self.interface_info.with_label_values(&values).set(1);
    }

    /// Fills the account and region of an interface's
    /// `vpcflow_interface_info` where they are still unknown: those of the
    /// log group its records come from. What EC2 told is kept.
    pub fn locate_interface(&self, interface_id: &str, account_id: &str, region: &str) {
        self.ensure_interface_info(interface_id, None);
        let mut known = self
            .interface_info_values
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(values) = known.get_mut(interface_id) else {
            return;
        };
        let previous = values.clone();
        for (index, value) in [(ACCOUNT_ID_LABEL, account_id), (REGION_LABEL, region)] {
            if values[index].is_empty() {
                value.clone_into(&mut values[index]);
            }
        }
        if *values != previous {
            let previous: Vec<&str> = previous.iter().map(String::as_str).collect();
            let _ = self.interface_info.remove_label_values(&previous);
            let values: Vec<&str> = values.iter().map(String::as_str).collect();
            self.interface_info.with_label_values(&values).set(1);
        }
    }

    /// Counts `count` decided sessions of `interface_id` under `labels`,
    /// or under `port="other"` (or nowhere) when a new series would exceed
    /// the interface's budget.
    fn sessions_decided(&self, interface_id: &str, labels: SessionLabels<'_>, count: u64) {
        let mut buffer = [""; 5];
        let values = self.budget.values(interface_id, &labels, &mut buffer);
        // Held while a series may be created, so that the count stays exact.
        let mut series = self
            .session_series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.sessions.inc_existing(values, count) {
            return;
        }
        let series_count = match series.get_mut(interface_id) {
            Some(count) => count,
            None => series.entry(interface_id.into()).or_default(),
        };
        if *series_count < self.budget.max_series_per_interface {
            *series_count += 1;
            self.sessions.with_label_values(values).inc_by(count);
        } else {
            self.series_dropped.inc_by(count);
            let mut buffer = [""; 5];
            let folded = self.budget.values(
                interface_id,
                &SessionLabels {
                    port: OTHER_PORT,
                    ..labels
                },
                &mut buffer,
            );
            if folded != values {
                self.sessions.inc_existing(folded, count);
            }
        }
    }

    /// `vpcflow_sessions_total` series of `interface_id` (for tests and the bench).
    pub fn session_series_of(&self, interface_id: &str) -> usize {
        self.session_series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(interface_id)
            .copied()
            .unwrap_or(0)
    }

    /// The text exposition format: the per-interface families written by
    /// `series`, the others gathered from the registry; in order of name,
    /// as one registry would give them.
    pub fn render(&self) -> String {
        let own: [&dyn series::Render; 9] = [
            &self.bytes,
            &self.direction_fallbacks,
            &self.interface_info,
            &self.open_sessions,
            &self.packets,
            &self.pending_sessions,
            &self.records,
            &self.sessions_evicted,
            &self.sessions,
        ];
        debug_assert!(own.is_sorted_by_key(|family| family.name()));
        let len = self
            .last_render_len
            .load(std::sync::atomic::Ordering::Relaxed);
        let mut out = String::with_capacity(len + len / 8);
        let mut own = own.into_iter().peekable();
        let encoder = TextEncoder::new();
        for gathered in self.registry.gather() {
            while let Some(family) = own.next_if(|family| family.name() < gathered.name()) {
                family.render_into(&mut out);
            }
            encoder
                .encode_utf8(std::slice::from_ref(&gathered), &mut out)
                .expect("encoding to memory cannot fail");
        }
        for family in own {
            family.render_into(&mut out);
        }
        self.last_render_len
            .store(out.len(), std::sync::atomic::Ordering::Relaxed);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The port label of sessions whose responder port is not a service port,
/// and of those folded there by the series budget.
const OTHER_PORT: &str = "other";

/// Default of `metrics.max_series_per_interface`: verdicts × directions ×
/// a few protocols × a few service ports.
pub const DEFAULT_MAX_SERIES_PER_INTERFACE: usize = 300;

/// A label of `vpcflow_sessions_total` besides `interface_id`, which is
/// always kept. Labels not kept are left out of the series (in Prometheus a
/// missing label and an empty one are the same): the metric keeps its name,
/// queries that sum over the label keep working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SessionLabel {
    Verdict,
    Direction,
    Protocol,
    Port,
}

impl SessionLabel {
    pub const ALL: [SessionLabel; 4] = [
        SessionLabel::Verdict,
        SessionLabel::Direction,
        SessionLabel::Protocol,
        SessionLabel::Port,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SessionLabel::Verdict => "verdict",
            SessionLabel::Direction => "direction",
            SessionLabel::Protocol => "protocol",
            SessionLabel::Port => "port",
        }
    }

    pub fn parse(text: &str) -> Option<SessionLabel> {
        SessionLabel::ALL
            .into_iter()
            .find(|label| label.as_str() == text)
    }
}

/// `[metrics]`: the labels of `vpcflow_sessions_total` and how many of its
/// series one interface may have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesBudget {
    /// Kept labels, in the order of [`SessionLabel::ALL`], each once.
    pub session_labels: Vec<SessionLabel>,
    pub max_series_per_interface: usize,
}

impl Default for SeriesBudget {
    fn default() -> Self {
        SeriesBudget {
            session_labels: SessionLabel::ALL.to_vec(),
            max_series_per_interface: DEFAULT_MAX_SERIES_PER_INTERFACE,
        }
    }
}

/// The values of one session's labels, before the budget picks the kept ones.
#[derive(Clone, Copy)]
struct SessionLabels<'a> {
    verdict: &'a str,
    direction: &'a str,
    protocol: &'a str,
    port: &'a str,
}

impl SeriesBudget {
    fn kept(&self) -> impl Iterator<Item = SessionLabel> + '_ {
        SessionLabel::ALL
            .into_iter()
            .filter(|label| self.session_labels.contains(label))
    }

    fn label_names(&self) -> Vec<&'static str> {
        std::iter::once("interface_id")
            .chain(self.kept().map(SessionLabel::as_str))
            .collect()
    }

    /// `interface_id` and the kept labels' values, in the order of
    /// [`Self::label_names`], in `buffer`.
    fn values<'a, 'b>(
        &self,
        interface_id: &'a str,
        labels: &SessionLabels<'a>,
        buffer: &'b mut [&'a str; 5],
    ) -> &'b [&'a str] {
        buffer[0] = interface_id;
        let mut len = 1;
        for label in self.kept() {
            buffer[len] = match label {
                SessionLabel::Verdict => labels.verdict,
                SessionLabel::Direction => labels.direction,
                SessionLabel::Protocol => labels.protocol,
                SessionLabel::Port => labels.port,
            };
            len += 1;
        }
        &buffer[..len]
    }
}

/// The labels of `vpcflow_interface_info`, in order.
const INTERFACE_INFO_LABELS: [&str; 10] = [
    "interface_id",
    "name",
    "type",
    "account_id",
    "region",
    "vpc_id",
    "subnet_id",
    "instance_id",
    "security_groups",
    "description",
];

/// Where `account_id` and `region` are in [`INTERFACE_INFO_LABELS`].
const ACCOUNT_ID_LABEL: usize = 3;
const REGION_LABEL: usize = 4;

/// One interface's `vpcflow_interface_info`; empty values are unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceInfo {
    pub interface_id: String,
    pub name: String,
    pub interface_type: String,
    pub account_id: String,
    pub region: String,
    pub vpc_id: String,
    pub subnet_id: String,
    pub instance_id: String,
    /// Comma-separated, sorted.
    pub security_groups: String,
    /// EC2's description ("Interface for NAT Gateway nat-…"): what an
    /// interface without a `Name` tag is for.
    pub description: String,
}

impl InterfaceInfo {
    fn values(&self) -> Vec<String> {
        vec![
            self.interface_id.clone(),
            self.name.clone(),
            self.interface_type.clone(),
            self.account_id.clone(),
            self.region.clone(),
            self.vpc_id.clone(),
            self.subnet_id.clone(),
            self.instance_id.clone(),
            self.security_groups.clone(),
            self.description.clone(),
        ]
    }
}

/// Feeds the flow data metrics from the core.
///
/// Record counts, traffic and decided sessions are summed in memory and
/// added to the counters when the observer is dropped, at the end of a
/// poll or a pass: a label lookup per record would cost more than parsing
/// it, and a scrape then never sees a session before the records that
/// made it (records are added first).
pub struct FlowMetrics<'a> {
    metrics: &'a Metrics,
    service_ports: &'a ServicePorts,
    records: FxHashMap<Box<str>, [u64; RECORD_KINDS]>,
    traffic: FxHashMap<Box<str>, TrafficSums>,
    decided: FxHashMap<Box<str>, DecidedSessions>,
}

/// The `vpcflow_sessions_total` series of one decided session, before its
/// labels are spelled: `port` is `None` for a port that is not a service
/// port (`port="other"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct SessionSeries {
    verdict: Verdict,
    direction: Direction,
    protocol: u8,
    port: Option<u16>,
}

/// One interface's sessions decided since the observer was made, per series
/// in the order each series first came: the series budget hands out an
/// interface's series in that order, as it would have session by session.
#[derive(Debug, Default)]
struct DecidedSessions {
    in_order: Vec<(SessionSeries, u64)>,
    position: FxHashMap<SessionSeries, usize>,
    direction_fallbacks: u64,
}

impl DecidedSessions {
    fn add(&mut self, series: SessionSeries) {
        match self.position.get(&series) {
            Some(&at) => self.in_order[at].1 += 1,
            None => {
                self.position.insert(series, self.in_order.len());
                self.in_order.push((series, 1));
            }
        }
    }
}

/// (packets, bytes) of one interface by verdict and direction (in the
/// order of `Verdict::ALL`, `Direction::ALL`); `None` where none came.
type TrafficSums = [[Option<(u64, u64)>; 2]; Verdict::ALL.len()];

/// (action, log status) pairs counted per interface.
const RECORD_KINDS: usize = 9;

fn record_kind(action: Option<Action>, log_status: LogStatus) -> usize {
    let action = match action {
        None => 0,
        Some(Action::Accept) => 1,
        Some(Action::Reject) => 2,
    };
    let status = match log_status {
        LogStatus::Ok => 0,
        LogStatus::NoData => 1,
        LogStatus::SkipData => 2,
    };
    action * 3 + status
}

fn record_labels(kind: usize) -> (&'static str, &'static str) {
    let action = ["-", "ACCEPT", "REJECT"][kind / 3];
    let status = ["OK", "NODATA", "SKIPDATA"][kind % 3];
    (action, status)
}

impl<'a> FlowMetrics<'a> {
    pub fn new(metrics: &'a Metrics, service_ports: &'a ServicePorts) -> FlowMetrics<'a> {
        FlowMetrics {
            metrics,
            service_ports,
            records: FxHashMap::default(),
            traffic: FxHashMap::default(),
            decided: FxHashMap::default(),
        }
    }
}

impl Drop for FlowMetrics<'_> {
    fn drop(&mut self) {
        for (interface_id, counts) in &self.records {
            for (kind, count) in counts.iter().enumerate().filter(|(_, count)| **count > 0) {
                let (action, status) = record_labels(kind);
                self.metrics
                    .records
                    .with_label_values(&[interface_id, action, status])
                    .inc_by(*count);
            }
        }
        for (interface_id, by_verdict) in &self.traffic {
            for (verdict, by_direction) in Verdict::ALL.iter().zip(by_verdict) {
                for (direction, sums) in Direction::ALL.iter().zip(by_direction) {
                    if let Some((packets, bytes)) = sums {
                        let labels = [&**interface_id, verdict.as_str(), direction.as_str()];
                        self.metrics.bytes.with_label_values(&labels).inc_by(*bytes);
                        self.metrics
                            .packets
                            .with_label_values(&labels)
                            .inc_by(*packets);
                    }
                }
            }
        }
        for (interface_id, decided) in &self.decided {
            for (series, count) in &decided.in_order {
                let port = match series.port {
                    Some(port) => port.to_string(),
                    None => OTHER_PORT.to_owned(),
                };
                self.metrics.sessions_decided(
                    interface_id,
                    SessionLabels {
                        verdict: series.verdict.as_str(),
                        direction: series.direction.as_str(),
                        protocol: &protocol_name(series.protocol),
                        port: &port,
                    },
                    *count,
                );
            }
            if decided.direction_fallbacks > 0 {
                self.metrics
                    .direction_fallbacks
                    .with_label_values(&[interface_id])
                    .inc_by(decided.direction_fallbacks);
            }
        }
    }
}

impl SessionObserver for FlowMetrics<'_> {
    fn decided(&mut self, session: &SessionReport<'_>) {
        let decided = match self.decided.get_mut(session.interface_id) {
            Some(decided) => decided,
            None => self.decided.entry(session.interface_id.into()).or_default(),
        };
        let port = session.responder.port;
        decided.add(SessionSeries {
            verdict: session.verdict,
            direction: session.direction,
            protocol: session.protocol,
            port: self.service_ports.contains(port).then_some(port),
        });
        if session.direction_by_fallback {
            decided.direction_fallbacks += 1;
        }
    }

    fn traffic(
        &mut self,
        interface_id: &str,
        verdict: Verdict,
        direction: Direction,
        packets: u64,
        bytes: u64,
    ) {
        let by_verdict = match self.traffic.get_mut(interface_id) {
            Some(by_verdict) => by_verdict,
            None => self.traffic.entry(interface_id.into()).or_default(),
        };
        let verdict = Verdict::ALL
            .iter()
            .position(|known| *known == verdict)
            .unwrap_or(0);
        let direction = match direction {
            Direction::Ingress => 0,
            Direction::Egress => 1,
        };
        let (sum_packets, sum_bytes) = by_verdict[verdict][direction].get_or_insert((0, 0));
        *sum_packets = sum_packets.saturating_add(packets);
        *sum_bytes = sum_bytes.saturating_add(bytes);
    }

    fn closed(&mut self, _: &SessionReport<'_>) {}

    fn evicted(&mut self, interface_id: &str) {
        self.metrics
            .sessions_evicted
            .with_label_values(&[interface_id])
            .inc();
    }
}

impl Observer for FlowMetrics<'_> {
    fn record(&mut self, interface_id: &str, action: Option<Action>, log_status: LogStatus) {
        let kind = record_kind(action, log_status);
        match self.records.get_mut(interface_id) {
            Some(counts) => counts[kind] += 1,
            None => {
                let mut counts = [0; RECORD_KINDS];
                counts[kind] = 1;
                self.records.insert(interface_id.into(), counts);
            }
        }
    }

    fn malformed(&mut self, reason: Malformed) {
        self.metrics
            .malformed
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    fn format_warning(&mut self, warning: &crate::flow::FormatWarning) {
        tracing::warn!(%warning, "Flow log format");
    }
}

/// The S3 source's own metrics: registered when `[s3]` is the source, so
/// other sources do not serve series that can never move.
pub struct S3Metrics {
    /// By outcome: counted, duplicate, missing, denied, corrupt, error.
    pub objects: IntCounterVec,
    /// By outcome: deleted, test_event, unrecognized, retry, delete_failed.
    pub messages: IntCounterVec,
    pub bytes_read: IntCounter,
    pub records_read: IntCounter,
    pub object_delay: Histogram,
}

impl Metrics {
    /// Registers the S3 source's metrics, with zeros for every outcome.
    pub fn register_s3(&self, object_outcomes: &[&str], message_outcomes: &[&str]) -> S3Metrics {
        let register = |collector: Box<dyn prometheus::core::Collector>| {
            self.registry.register(collector).expect("unique metric");
        };
        let objects = IntCounterVec::new(
            opts(
                "s3_objects_total",
                "S3 objects notified on the queue, by outcome: counted; duplicate (counted before: a redelivered message or a second notification); missing, denied (s3:GetObject refused), corrupt (not readable to the end: nothing of it counted), error (the API failed). Every outcome but counted and duplicate leaves the message for redelivery and, after maxReceiveCount, the dead-letter queue.",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let messages = IntCounterVec::new(
            opts(
                "sqs_messages_total",
                "SQS messages received, by outcome: deleted (every object counted), test_event (s3:TestEvent, deleted), unrecognized (not an S3 event, left for the dead-letter queue), retry (an object could not be read, left for redelivery), delete_failed.",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let bytes_read = IntCounter::with_opts(opts(
            "s3_object_bytes_read_total",
            "Bytes of S3 objects downloaded (compressed, as stored).",
        ))
        .expect("valid metric");
        let records_read = IntCounter::with_opts(opts(
            "s3_object_records_read_total",
            "Lines (records, malformed ones included) of S3 objects counted.",
        ))
        .expect("valid metric");
        let object_delay = Histogram::with_opts(
            HistogramOpts::new(
                "s3_object_delay_seconds",
                "S3 event time of an object minus the time in its name (when AWS closed the file): how late objects arrive.",
            )
            .namespace(NAMESPACE)
            .buckets(vec![
                30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 3600.0,
            ]),
        )
        .expect("valid metric");
        register(Box::new(objects.clone()));
        register(Box::new(messages.clone()));
        register(Box::new(bytes_read.clone()));
        register(Box::new(records_read.clone()));
        register(Box::new(object_delay.clone()));
        for outcome in object_outcomes {
            objects.with_label_values(&[outcome]);
        }
        for outcome in message_outcomes {
            messages.with_label_values(&[outcome]);
        }
        S3Metrics {
            objects,
            messages,
            bytes_read,
            records_read,
            object_delay,
        }
    }
}

#[cfg(test)]
mod tests;
