//! Every metric the exporter serves: its name, labels and HELP text, in one
//! place (docs/metrics.md is the reader's copy). Flow data metrics are fed
//! by the core through [`FlowMetrics`], an [`Observer`]; exporter health
//! metrics are set by the poll loop.

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use rustc_hash::FxHashMap;

use crate::flow::verdict::protocol_name;
use crate::flow::{
    Action, Direction, LogStatus, Malformed, Observer, ServicePorts, SessionObserver,
    SessionReport, Verdict,
};

const NAMESPACE: &str = "vpcflow";

/// How stale a value can be, said once for every HELP text that needs it.
const STALENESS: &str = "Updated each poll: values lag traffic by the capture interval, the CloudWatch delivery delay and up to one poll interval.";

pub struct Metrics {
    registry: Registry,
    pub sessions: IntCounterVec,
    pub records: IntCounterVec,
    pub bytes: IntCounterVec,
    pub packets: IntCounterVec,
    pub malformed: IntCounterVec,
    pub pending_sessions: IntGaugeVec,
    pub open_sessions: IntGaugeVec,
    pub interface_info: IntGaugeVec,
    pub up: IntGauge,
    pub polls: IntCounterVec,
    pub poll_duration: Histogram,
    pub last_successful_poll: Gauge,
    pub api_calls: IntCounterVec,
    pub api_call_duration: HistogramVec,
    pub api_throttles: IntCounterVec,
    pub events_fetched: IntCounter,
    pub events_new: IntCounter,
    pub delivery_delay: Histogram,
    pub catchup_skipped: IntCounter,
    pub interfaces_watched: IntGauge,
    pub build_info: GaugeVec,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace(NAMESPACE)
}

impl Metrics {
    pub fn new() -> Metrics {
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
        let sessions = counter(
            "sessions_total",
            &format!(
                "Sessions decided, by verdict: accepted (both directions accepted), rejected_inbound (blocked entering the interface), rejected_outbound (blocked leaving it), unanswered (let in, never answered), refused (answered with a reset only). direction is ingress when the remote side started the session; port is the responder's service port or 'other'. A verdict is counted once, when both directions are seen or reply_grace after the first record. {STALENESS}"
            ),
            &["interface_id", "verdict", "direction", "protocol", "port"],
        );
        let records = counter(
            "records_total",
            &format!(
                "Well-formed flow log records read, by action and log status (SKIPDATA means records were lost at capture). {STALENESS}"
            ),
            &["interface_id", "action", "log_status"],
        );
        let bytes = counter(
            "bytes_total",
            &format!("Bytes of decided sessions, both directions, by verdict. {STALENESS}"),
            &["interface_id", "verdict", "direction"],
        );
        let packets = counter(
            "packets_total",
            &format!("Packets of decided sessions, both directions, by verdict. {STALENESS}"),
            &["interface_id", "verdict", "direction"],
        );
        let malformed = counter(
            "malformed_records_total",
            "Lines skipped because they are not a usable flow log record, by reason.",
            &["reason"],
        );
        let pending_sessions = gauge(
            "pending_sessions",
            "Sessions waiting for their other direction or for reply_grace to pass.",
            &["interface_id"],
        );
        let open_sessions = gauge(
            "open_sessions",
            "Sessions held in memory: pending, or decided and not yet idle for session_idle_timeout.",
            &["interface_id"],
        );
        let interface_info = gauge(
            "interface_info",
            "Names given to interfaces in the configuration; always 1.",
            &["interface_id", "name"],
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
                "Latency of AWS API calls, by operation.",
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
            "AWS API attempts answered with throttling, by operation, those the SDK retried with backoff included.",
            &["operation"],
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
            records,
            bytes,
            packets,
            malformed,
            pending_sessions,
            open_sessions,
            interface_info,
            up,
            polls,
            poll_duration,
            last_successful_poll,
            api_calls,
            api_call_duration,
            api_throttles,
            events_fetched,
            events_new,
            delivery_delay,
            catchup_skipped,
            interfaces_watched,
            build_info,
        }
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
        if let Some(name) = name {
            self.interface_info
                .with_label_values(&[interface_id, name])
                .set(1);
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("encoding to memory cannot fail");
        String::from_utf8(buffer).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Feeds the flow data metrics from the core.
///
/// Record counts are summed in memory and added to the counters when the
/// observer is dropped: a label lookup per record would cost more than
/// parsing it.
pub struct FlowMetrics<'a> {
    metrics: &'a Metrics,
    service_ports: &'a ServicePorts,
    records: FxHashMap<Box<str>, [u64; RECORD_KINDS]>,
}

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
    }
}

impl SessionObserver for FlowMetrics<'_> {
    fn decided(&mut self, session: &SessionReport<'_>) {
        let port_label = self.service_ports.label(session.responder.port);
        self.metrics
            .sessions
            .with_label_values(&[
                session.interface_id,
                session.verdict.as_str(),
                session.direction.as_str(),
                &protocol_name(session.protocol),
                &port_label,
            ])
            .inc();
    }

    fn traffic(
        &mut self,
        interface_id: &str,
        verdict: Verdict,
        direction: Direction,
        packets: u64,
        bytes: u64,
    ) {
        let labels = [interface_id, verdict.as_str(), direction.as_str()];
        self.metrics.bytes.with_label_values(&labels).inc_by(bytes);
        self.metrics
            .packets
            .with_label_values(&labels)
            .inc_by(packets);
    }

    fn closed(&mut self, _: &SessionReport<'_>) {}
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
