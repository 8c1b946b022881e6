//! The CloudWatch Logs source against a real API: a moto server, reached
//! through the real `aws-sdk-cloudwatchlogs` client ([`AwsLogsApi`]).
//!
//! Each test starts its own moto server (`tests/common`).
//! What moto does differently from CloudWatch, checked against moto 5.2:
//! `FilterLogEvents` ignores `logStreamNamePrefix` (we send
//! `logStreamNames`), returns events grouped by stream rather than by time,
//! numbers events with a small server-wide counter, and never throttles
//! (throttling is tested against a stub server below). It silently drops
//! events older than 14 days, so the seeds are timestamped near now.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use common::moto::{now_ms, static_credentials_in_environment};
use vpc_flow_exporter::source::aws_clients;
use vpc_flow_exporter::source::cloudwatch::{
    ApiError, ApiObserver, AwsLogsApi, LogsApi, Poller, PollerConfig, read_window,
};

const REGION: &str = "us-east-1";

/// A log group name no other test uses.
fn unique_group(test: &str) -> String {
    format!("/vpc/{test}/{}", now_ms())
}

/// Records every call, and every failed attempt, reported by [`AwsLogsApi`].
#[derive(Default)]
struct Calls {
    calls: Mutex<Vec<(&'static str, &'static str)>>,
    failed_attempts: Mutex<Vec<(&'static str, &'static str)>>,
}

impl ApiObserver for Calls {
    fn api_call(&self, operation: &'static str, outcome: &'static str, seconds: f64) {
        assert!(seconds >= 0.0);
        self.calls.lock().unwrap().push((operation, outcome));
    }

    fn attempt_failed(&self, operation: &'static str, outcome: &'static str, _kind: &'static str) {
        self.failed_attempts
            .lock()
            .unwrap()
            .push((operation, outcome));
    }
}

fn count_of(
    list: &Mutex<Vec<(&'static str, &'static str)>>,
    operation: &str,
    outcome: &str,
) -> usize {
    let list = list.lock().unwrap();
    list.iter()
        .filter(|c| c.0 == operation && c.1 == outcome)
        .count()
}

impl Calls {
    /// Calls of `operation` that ended with `outcome`.
    fn count(&self, operation: &str, outcome: &str) -> usize {
        count_of(&self.calls, operation, outcome)
    }

    /// Failed attempts of `operation` reported as `outcome`.
    fn failed_attempts(&self, operation: &str, outcome: &str) -> usize {
        count_of(&self.failed_attempts, operation, outcome)
    }

    fn total_failed_attempts(&self) -> usize {
        self.failed_attempts.lock().unwrap().len()
    }

    fn clear(&self) {
        self.calls.lock().unwrap().clear();
        self.failed_attempts.lock().unwrap().clear();
    }
}

/// A fresh moto server (kept alive by the returned guard) and a client on it.
async fn moto_api() -> (AwsLogsApi, Arc<Calls>, common::Moto) {
    static_credentials_in_environment();
    let moto = common::Moto::start();
    let calls = Arc::new(Calls::default());
    let api = aws_clients::logs_api(
        Some(REGION.into()),
        Some(moto.endpoint_url()),
        calls.clone(),
    )
    .await;
    (api, calls, moto)
}

async fn create_group(api: &AwsLogsApi, group: &str) {
    api.client()
        .create_log_group()
        .log_group_name(group)
        .send()
        .await
        .expect("CreateLogGroup");
}

/// Creates `stream` if needed and puts one flow record per timestamp.
async fn put(api: &AwsLogsApi, group: &str, stream: &str, timestamps_ms: &[i64]) {
    let _ = api
        .client()
        .create_log_stream()
        .log_group_name(group)
        .log_stream_name(stream)
        .send()
        .await;
    let mut sorted = timestamps_ms.to_vec();
    sorted.sort();
    let interface = stream.trim_end_matches("-all");
    let events = sorted.iter().map(|ts| {
        let start = ts / 1000;
        let message = format!(
            "2 123456789010 {interface} 10.0.0.1 10.0.7.253 57835 22 6 1 44 {start} {} ACCEPT OK",
            start + 30
        );
        InputLogEvent::builder()
            .timestamp(*ts)
            .message(message)
            .build()
            .unwrap()
    });
    api.client()
        .put_log_events()
        .log_group_name(group)
        .log_stream_name(stream)
        .set_log_events(Some(events.collect()))
        .send()
        .await
        .expect("PutLogEvents");
}

#[tokio::test]
async fn overlapping_polls_return_every_event_once() {
    let (api, calls, _moto) = moto_api().await;
    let group = unique_group("overlap");
    create_group(&api, &group).await;
    let streams = ["eni-0a1b2c3d-all", "eni-1a1b2c3d-all", "eni-2a1b2c3d-all"];
    let t0 = now_ms();
    for stream in streams {
        let minutes: Vec<i64> = (1..=10).map(|m| t0 - m * 60_000).collect();
        put(&api, &group, stream, &minutes).await;
    }

    let mut poller = Poller::new(api.clone(), PollerConfig::new(&group), now_ms());
    let first = poller.poll(now_ms()).await.expect("first poll");
    assert_eq!(first.streams, 3);
    assert_eq!(first.new, 30);
    assert_eq!(first.fetched, 30);
    assert_eq!(calls.count("DescribeLogStreams", "success"), 1);
    assert_eq!(calls.count("FilterLogEvents", "success"), 1);
    assert_eq!(calls.total_failed_attempts(), 0);
    let first_ids: std::collections::HashSet<(String, String)> = first
        .events
        .iter()
        .map(|e| (e.stream.clone(), e.event_id.clone()))
        .collect();
    assert_eq!(first_ids.len(), 30);
    let e = &first.events[0];
    assert!(e.message.starts_with("2 123456789010 eni-"), "{e:?}");
    assert!(e.ingestion_time_ms >= e.timestamp_ms);
    assert!(
        first
            .events
            .windows(2)
            .all(|w| w[0].timestamp_ms <= w[1].timestamp_ms)
    );

    // Late records: older than the last window's end, inside the overlap.
    put(&api, &group, streams[1], &[t0 - 90_000, t0 - 30_000]).await;
    let second = poller.poll(now_ms()).await.expect("second poll");
    assert_eq!(second.new, 2, "only the late records are new");
    assert!(
        second.fetched > second.new,
        "the overlap re-read old events"
    );
    assert!(second.window_start_ms < first.window_end_ms);
    for e in &second.events {
        assert!(!first_ids.contains(&(e.stream.clone(), e.event_id.clone())));
    }

    let third = poller.poll(now_ms()).await.expect("third poll");
    assert_eq!(third.new, 0);
}

#[tokio::test]
async fn two_hundred_fifty_streams_take_three_calls_per_poll() {
    let (api, calls, _moto) = moto_api().await;
    let group = unique_group("many");
    create_group(&api, &group).await;
    let t0 = now_ms();
    for i in 0..250 {
        put(&api, &group, &format!("eni-{i:08x}-all"), &[t0 - 60_000]).await;
    }
    let mut poller = Poller::new(api.clone(), PollerConfig::new(&group), now_ms());
    calls.clear();
    let outcome = poller.poll(now_ms()).await.expect("poll");
    assert_eq!(outcome.streams, 250);
    assert_eq!(outcome.new, 250);
    assert!(outcome.api_calls <= 3, "{} calls", outcome.api_calls);
    assert!(calls.count("FilterLogEvents", "success") <= 3);
    // moto lists 50 streams a page: discovery follows nextToken.
    assert_eq!(calls.count("DescribeLogStreams", "success"), 5);

    calls.clear();
    let again = poller.poll(now_ms()).await.expect("poll");
    assert_eq!(again.new, 0);
    assert_eq!(calls.count("FilterLogEvents", "success"), 3);
    assert_eq!(calls.count("DescribeLogStreams", "success"), 0);
}

#[tokio::test]
async fn a_poll_follows_pages_of_ten_thousand_events() {
    let (api, calls, _moto) = moto_api().await;
    let group = unique_group("pages");
    create_group(&api, &group).await;
    let t0 = now_ms();
    // PutLogEvents takes at most 10,000 events (and 1 MB) a batch.
    for batch in 0..3 {
        let timestamps: Vec<i64> = (0..4000)
            .map(|i| t0 - 600_000 + batch * 4000 * 10 + i * 10)
            .collect();
        put(&api, &group, "eni-0ccc-all", &timestamps).await;
    }
    let mut poller = Poller::new(api.clone(), PollerConfig::new(&group), now_ms());
    calls.clear();
    let started = std::time::Instant::now();
    let outcome = poller.poll(now_ms()).await.expect("poll");
    let elapsed = started.elapsed();
    assert_eq!(outcome.new, 12_000);
    assert_eq!(outcome.api_calls, 2, "10,000 events a page");
    assert_eq!(calls.count("FilterLogEvents", "success"), 2);
    eprintln!("poll of 12,000 events from moto: {elapsed:?}");
}

#[tokio::test]
async fn configured_interfaces_and_read_window() {
    let (api, _calls, _moto) = moto_api().await;
    let group = unique_group("inspect");
    create_group(&api, &group).await;
    let t0 = now_ms();
    put(&api, &group, "eni-0aaa-accept", &[t0 - 120_000]).await;
    put(&api, &group, "eni-0aaa-reject", &[t0 - 60_000]).await;
    put(&api, &group, "eni-0bbb-all", &[t0 - 60_000, t0 - 30_000]).await;
    put(&api, &group, "not-an-interface", &[t0 - 60_000]).await;

    let mut config = PollerConfig::new(&group);
    config.interfaces = vec!["eni-0aaa".into()];
    let mut poller = Poller::new(api.clone(), config, now_ms());
    let outcome = poller.poll(now_ms()).await.expect("poll");
    assert_eq!(poller.streams(), ["eni-0aaa-accept", "eni-0aaa-reject"]);
    assert_eq!(outcome.new, 2);

    let all = read_window(&api, &group, None, t0 - 600_000, t0)
        .await
        .expect("read_window");
    assert_eq!(all.len(), 4, "interface streams only");
    let one = read_window(&api, &group, Some("eni-0bbb"), t0 - 45_000, t0)
        .await
        .expect("read_window");
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].timestamp_ms, t0 - 30_000);
}

#[tokio::test]
async fn a_missing_log_group_is_fatal() {
    let (api, calls, _moto) = moto_api().await;
    let err = api
        .list_interface_streams("/vpc/does-not-exist")
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Fatal { .. }), "{err:?}");
    assert!(
        err.to_string().contains("ResourceNotFoundException"),
        "{err}"
    );
    assert_eq!(calls.count("DescribeLogStreams", "error"), 1);
    assert_eq!(calls.failed_attempts("DescribeLogStreams", "error"), 1);
    assert_eq!(calls.total_failed_attempts(), 1, "a 4xx is not retried");
}

/// A stub CloudWatch that answers every request with `status` and `body`;
/// returns its endpoint and the count of requests it served.
fn stub_server(status: &'static str, body: &'static str) -> (String, Arc<Mutex<usize>>) {
    stub_server_sequence(vec![(status, body)])
}

/// A stub CloudWatch that answers the n-th request with `responses[n]`
/// (`status`, `body`), and every request past the end with the last one.
fn stub_server_sequence(
    responses: Vec<(&'static str, &'static str)>,
) -> (String, Arc<Mutex<usize>>) {
    assert!(!responses.is_empty());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let served = Arc::new(Mutex::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            if read_request(&mut stream).is_none() {
                continue;
            }
            let (status, body) = {
                let mut served = count.lock().unwrap();
                *served += 1;
                responses[(*served - 1).min(responses.len() - 1)]
            };
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/x-amz-json-1.1\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes());
        }
    });
    (endpoint, served)
}

/// Reads one HTTP/1.1 request (headers and a content-length body).
fn read_request(stream: &mut std::net::TcpStream) -> Option<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length: usize = text[..head_end]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= head_end + 4 + length {
                return Some(());
            }
        }
    }
}

#[tokio::test]
async fn throttling_is_retried_by_the_sdk_then_counted_as_throttled() {
    static_credentials_in_environment();
    let (endpoint, served) = stub_server(
        "400 Bad Request",
        r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#,
    );
    let calls = Arc::new(Calls::default());
    let api = aws_clients::logs_api(Some(REGION.into()), Some(endpoint), calls.clone()).await;
    let mut poller = Poller::new(api, PollerConfig::new("/vpc/flow-logs"), now_ms());
    let err = poller.poll(now_ms()).await.unwrap_err();
    assert!(matches!(err, ApiError::Throttled { .. }), "{err:?}");
    assert_eq!(err.metric_label(), "throttled");
    assert_eq!(calls.count("DescribeLogStreams", "throttled"), 1);
    assert_eq!(*served.lock().unwrap(), 3, "three attempts per call");
    // Every attempt is seen, the last (not retried) one included.
    assert_eq!(calls.failed_attempts("DescribeLogStreams", "throttled"), 3);
    assert_eq!(calls.total_failed_attempts(), 3);
    assert_eq!(poller.consecutive_failures(), 1);
    let delay = poller.next_delay();
    assert!(delay >= Duration::from_secs(15) && delay <= Duration::from_secs(30));
}

#[tokio::test]
async fn throttles_retried_past_are_counted_per_attempt() {
    static_credentials_in_environment();
    let (endpoint, served) = stub_server_sequence(vec![
        (
            "400 Bad Request",
            r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#,
        ),
        (
            "429 Too Many Requests",
            r#"{"__type":"TooManyRequestsException","message":"Slow down"}"#,
        ),
        (
            "200 OK",
            r#"{"logStreams":[{"logStreamName":"eni-0abc-all"}]}"#,
        ),
    ]);
    let calls = Arc::new(Calls::default());
    let api = aws_clients::logs_api(Some(REGION.into()), Some(endpoint), calls.clone()).await;
    let streams = api.list_interface_streams("/vpc/x").await.expect("retried");
    assert_eq!(streams, ["eni-0abc-all"]);
    assert_eq!(*served.lock().unwrap(), 3);
    // One call, its final outcome...
    assert_eq!(calls.count("DescribeLogStreams", "success"), 1);
    assert_eq!(calls.calls.lock().unwrap().len(), 1);
    // ...and the two throttled attempts it retried.
    assert_eq!(calls.failed_attempts("DescribeLogStreams", "throttled"), 2);
    assert_eq!(calls.total_failed_attempts(), 2);
}

#[tokio::test]
async fn server_errors_and_refused_connections_are_retriable() {
    static_credentials_in_environment();
    let (endpoint, _) = stub_server(
        "503 Service Unavailable",
        r#"{"__type":"ServiceUnavailableException","message":"try later"}"#,
    );
    let calls = Arc::new(Calls::default());
    let api = aws_clients::logs_api(Some(REGION.into()), Some(endpoint), calls.clone()).await;
    let err = api.list_interface_streams("/vpc/x").await.unwrap_err();
    assert!(matches!(err, ApiError::Retriable { .. }), "{err:?}");
    assert_eq!(calls.count("DescribeLogStreams", "error"), 1);
    assert_eq!(calls.failed_attempts("DescribeLogStreams", "error"), 3);
    assert_eq!(calls.total_failed_attempts(), 3);
    calls.clear();

    // A port nobody listens on.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let api = aws_clients::logs_api(Some(REGION.into()), Some(endpoint), calls.clone()).await;
    let err = api.list_interface_streams("/vpc/x").await.unwrap_err();
    assert!(matches!(err, ApiError::Retriable { .. }), "{err:?}");
    assert_eq!(calls.count("DescribeLogStreams", "error"), 1);
    assert_eq!(calls.failed_attempts("DescribeLogStreams", "error"), 3);
    assert_eq!(calls.total_failed_attempts(), 3);
}
