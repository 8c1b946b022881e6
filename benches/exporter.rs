//! The exporter must never be what limits the CloudWatch API quota:
//! one FilterLogEvents page of 10,000 events processed (poller bookkeeping,
//! parsing, correlation, metrics) in under 3 ms, and `/metrics` rendered
//! in under 10 ms with 1,000 interfaces (about 20,000 series), each with
//! sessions of every verdict (six service ports, both directions) and
//! their traffic (issue 12).

use std::hint::black_box;
use std::sync::{Mutex, PoisonError};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use vpc_flow_exporter::commands::generate::{GeneratorConfig, generate};
use vpc_flow_exporter::exporter::feed_events;
use vpc_flow_exporter::flow::{
    Direction, FormatChoice, Pipeline, RecordFilter, SessionObserver, SessionReport, Settings,
    Verdict,
};
use vpc_flow_exporter::metrics::{FlowMetrics, Metrics};
use vpc_flow_exporter::source::cloudwatch::{
    ApiError, EventsPage, FilterRequest, LogEvent, LogsApi, Poller, PollerConfig, StreamsPage,
};

const PAGE: usize = 10_000;

/// Answers the first FilterLogEvents call with one page, handed over as
/// the SDK adapter hands over the page it read (`aws.rs` moves the
/// strings it deserialized into [`LogEvent`]s): what is measured starts
/// with the page in the exporter's hands. Later calls get an empty page.
struct OnePage {
    streams: Vec<String>,
    events: Mutex<Vec<LogEvent>>,
}

impl LogsApi for OnePage {
    async fn interface_streams_page(
        &self,
        _: &str,
        _: Option<String>,
    ) -> Result<StreamsPage, ApiError> {
        Ok(StreamsPage {
            names: self.streams.clone(),
            next_token: None,
        })
    }

    async fn filter_log_events(&self, _: &FilterRequest) -> Result<EventsPage, ApiError> {
        let events =
            std::mem::take(&mut *self.events.lock().unwrap_or_else(PoisonError::into_inner));
        Ok(EventsPage {
            events,
            next_token: None,
        })
    }
}

fn page_of_events(now_ms: i64) -> OnePage {
    let mut text = Vec::new();
    let start = u64::try_from(now_ms / 1000 - 900).expect("positive");
    generate(
        &GeneratorConfig {
            records: PAGE,
            start_time: start,
            sessions_per_window: 2_000,
            ..GeneratorConfig::default()
        },
        &mut text,
    )
    .expect("writing to memory");
    let events: Vec<LogEvent> = String::from_utf8(text)
        .expect("generated text is UTF-8")
        .lines()
        .take(PAGE)
        .enumerate()
        .map(|(index, line)| {
            let interface = line.split(' ').nth(2).unwrap_or("eni-0");
            let start_s: i64 = line
                .split(' ')
                .nth(10)
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            LogEvent {
                stream: format!("{interface}-all"),
                event_id: format!("{index:056}"),
                timestamp_ms: start_s * 1000,
                ingestion_time_ms: now_ms,
                message: line.to_string(),
            }
        })
        .collect();
    let mut streams: Vec<String> = events.iter().map(|event| event.stream.clone()).collect();
    streams.sort();
    streams.dedup();
    OnePage {
        streams,
        events: Mutex::new(events),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64
}

fn process_one_page(c: &mut Criterion) {
    let now = now_ms();
    let api = page_of_events(now);
    let events = api.events.lock().expect("not poisoned").clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    c.bench_function("filter_log_events_page_of_10000_events", |b| {
        b.iter_batched(
            || {
                let poller = Poller::new(
                    OnePage {
                        streams: api.streams.clone(),
                        events: Mutex::new(events.clone()),
                    },
                    PollerConfig::new("/vpc/flow-logs"),
                    now,
                );
                let pipeline = Pipeline::new(
                    FormatChoice::Auto,
                    Settings::default(),
                    Default::default(),
                    RecordFilter::default(),
                );
                (poller, pipeline, Metrics::new())
            },
            |(mut poller, mut pipeline, metrics)| {
                let outcome = runtime.block_on(poller.poll(now)).expect("the page");
                feed_events(&mut pipeline, &outcome.events, &metrics);
                // Returned, so that tearing them down is not measured.
                (outcome, poller, pipeline, metrics)
            },
            BatchSize::LargeInput,
        )
    });
    // For scale: copying the page (what the SDK's deserializing costs at
    // least, and what this bench's fake API did inside every measured
    // iteration before 2026-12-07).
    c.bench_function("copy_of_a_page_of_10000_events", |b| {
        b.iter_batched(|| (), |()| events.clone(), BatchSize::LargeInput)
    });
}

fn render_metrics(c: &mut Criterion) {
    let metrics = Metrics::new();
    let settings = Settings::default();
    let service_ports = vpc_flow_exporter::flow::ServicePorts::new(&settings.service_ports);
    let mut observer = FlowMetrics::new(&metrics, &service_ports);
    let ids: Vec<String> = (0..1_000)
        .map(|index| format!("eni-{index:017x}"))
        .collect();
    for id in &ids {
        metrics.expect_interface(id, None);
        for (verdict, port) in [
            (Verdict::Accepted, 443),
            (Verdict::Accepted, 22),
            (Verdict::RejectedInbound, 3389),
            (Verdict::RejectedOutbound, 443),
            (Verdict::Unanswered, 5432),
            (Verdict::Refused, 8080),
        ] {
            let endpoint = |port| vpc_flow_exporter::flow::Endpoint {
                addr: "10.0.0.1".parse().expect("address"),
                port,
            };
            let direction = if port == 443 && verdict == Verdict::RejectedOutbound {
                Direction::Egress
            } else {
                Direction::Ingress
            };
            observer.decided(&SessionReport {
                interface_id: id,
                protocol: 6,
                initiator: endpoint(40_000),
                responder: endpoint(port),
                direction,
                verdict,
                packets: 10,
                bytes: 1_000,
                start: None,
                end: None,
                direction_by_fallback: false,
            });
            observer.traffic(id, verdict, direction, 10, 1_000);
        }
    }
    // Sessions and traffic are published when the observer goes, as at
    // the end of a poll.
    drop(observer);
    let lines = metrics.render().lines().count();
    c.bench_function(
        &format!("render_metrics_1000_interfaces_{lines}_lines"),
        |b| b.iter(|| black_box(metrics.render().len())),
    );
}

criterion_group!(benches, process_one_page, render_metrics);
criterion_main!(benches);
