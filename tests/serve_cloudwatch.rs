//! `vpc-flow-exporter serve` end to end over CloudWatch Logs: the real
//! binary polls a moto server per interface stream and serves `/metrics`.
//!
//! Each test starts its own moto server and exporter (`tests/common`,
//! `common::exporter`). The binary runs with an empty environment plus
//! static test credentials, a region and `AWS_EC2_METADATA_DISABLED`;
//! `AWS_ENDPOINT_URL` points at a closed loopback port, so only the
//! endpoint the test configures can answer and nothing ever leaves loopback.
//!
//! # Timing
//!
//! moto stamps each event's ingestion time at the put, and a flow record's
//! CloudWatch timestamp is its start, so the exporter measures a delivery
//! delay of about "put time − record end". Seeds end a few seconds before
//! the put: the wall-clock watermark (now − that delay − one poll interval)
//! then passes `end + reply_grace` (2 s here) within seconds, and every lone
//! record gets its verdict without any record of a later time. The two
//! records of a pair share start and end and are put in one call, so they
//! always reach the core in the same poll and pair before any grace can
//! pass. Tests poll `/metrics` until what they wait for shows (at most
//! 60 s), never sleep for a fixed time.

// Each test crate uses a part of common; its re-exports may go unused.
mod common;

use std::process::Output;
use std::time::{Duration, Instant};

use common::exporter::{Exporter, Scrape, binary, now_s, promtool_check, put_records, seed};
use common::flows::{ACCOUNT, CloudWatchToml, GROUP, flow_record as record};
use common::{Moto, free_port, http_get};

const ENI_A: &str = "eni-0aaa0000000000001";
const ENI_B: &str = "eni-0bbb0000000000002";
const ENI_C: &str = "eni-0ccc0000000000003";

// ---------------------------------------------------------------------------
// Seeds

/// The request and its mirrored reply: same capture window, both actions given.
#[allow(clippy::too_many_arguments)]
fn pair(
    eni: &str,
    client: (&str, u16),
    server: (&str, u16),
    protocol: u8,
    (start, end): (i64, i64),
    request_action: &str,
    reply_action: &str,
) -> [String; 2] {
    [
        record(
            eni,
            client.0,
            server.0,
            client.1,
            server.1,
            protocol,
            300,
            start,
            end,
            request_action,
        ),
        record(
            eni,
            server.0,
            client.0,
            server.1,
            client.1,
            protocol,
            700,
            start,
            end,
            reply_action,
        ),
    ]
}

/// A `[cloudwatch]` config for `endpoint` with short timings and `extra`
/// TOML appended.
fn cloudwatch_config(endpoint: &str, extra: &str) -> String {
    CloudWatchToml {
        rest: extra.to_owned(),
        ..CloudWatchToml::new(endpoint)
    }
    .toml()
}

/// ENI_A's own address, so that its first session does not rest on the
/// address being learned from its records (the pairing tests are about
/// pairing; see `first_session_uses_the_configured_address`).
const ADDRESS_A: &str = r#"
[interfaces.eni-0aaa0000000000001]
addresses = ["10.0.1.10"]
"#;

const SHORT_GRACE: &str = r#"
[correlation]
reply_grace = "2s"
session_idle_timeout = "30s"
# Single-peer interfaces: the fallback after 1 s.
address_wait = "1s"
"#;

// ---------------------------------------------------------------------------
// Tests

/// Every verdict from records of three interfaces, counted exactly once.
#[test]
fn polls_interfaces_and_counts_each_verdict_once() {
    let moto = Moto::start();
    let t = now_s() - 5;
    let window = (t, t + 1);
    let mut a = Vec::new();
    // Accepted, a client's connection in and one the instance made out.
    a.extend(pair(
        ENI_A,
        ("203.0.113.10", 40001),
        ("10.0.1.10", 443),
        6,
        window,
        "ACCEPT",
        "ACCEPT",
    ));
    a.extend(pair(
        ENI_A,
        ("10.0.1.10", 50001),
        ("52.94.0.5", 443),
        6,
        window,
        "ACCEPT",
        "ACCEPT",
    ));
    // Rejected inbound: a lone REJECT entering, to RDP.
    a.push(record(
        ENI_A,
        "198.51.100.7",
        "10.0.1.10",
        51515,
        3389,
        6,
        52,
        t,
        t + 1,
        "REJECT",
    ));
    // Rejected outbound: the request is let in, the reply blocked (network ACL).
    a.extend(pair(
        ENI_A,
        ("198.51.100.8", 52000),
        ("10.0.1.10", 22),
        6,
        window,
        "ACCEPT",
        "REJECT",
    ));
    // Unanswered: a lone accepted request to PostgreSQL.
    a.push(record(
        ENI_A,
        "198.51.100.9",
        "10.0.1.10",
        53000,
        5432,
        6,
        60,
        t,
        t + 1,
        "ACCEPT",
    ));

    let mut b = Vec::new();
    b.extend(pair(
        ENI_B,
        ("203.0.113.20", 41000),
        ("10.0.2.20", 80),
        6,
        window,
        "ACCEPT",
        "ACCEPT",
    ));
    b.extend(pair(
        ENI_B,
        ("203.0.113.21", 41001),
        ("10.0.2.20", 80),
        6,
        window,
        "ACCEPT",
        "ACCEPT",
    ));
    b.push(record(
        ENI_B,
        "198.51.100.20",
        "10.0.2.20",
        54000,
        22,
        6,
        60,
        t,
        t + 1,
        "REJECT",
    ));
    b.push(record(
        ENI_B,
        "198.51.100.21",
        "10.0.2.20",
        54001,
        5432,
        6,
        60,
        t,
        t + 1,
        "ACCEPT",
    ));
    // Rejected outbound, started by the instance: its own request blocked leaving.
    b.push(record(
        ENI_B,
        "10.0.2.20",
        "203.0.113.99",
        45000,
        443,
        6,
        60,
        t,
        t + 1,
        "REJECT",
    ));

    // Its first session comes in (so the first guess of its own address is
    // right, see `first_session_uses_the_configured_address`), then one out.
    let mut c = Vec::new();
    c.extend(pair(
        ENI_C,
        ("203.0.113.30", 42000),
        ("10.0.3.30", 443),
        6,
        window,
        "ACCEPT",
        "ACCEPT",
    ));
    c.extend(pair(
        ENI_C,
        ("10.0.3.30", 40000),
        ("10.0.0.2", 53),
        17,
        window,
        "ACCEPT",
        "ACCEPT",
    ));
    c.push(format!(
        "2 {ACCOUNT} {ENI_C} - - - - - - - {t} {} - NODATA",
        t + 1
    ));

    let events = a.len() + b.len() + c.len();
    assert_eq!(events, 20);
    seed(&moto, GROUP, &[(ENI_A, a), (ENI_B, b), (ENI_C, c)]);

    let mut exporter = Exporter::start(
        Some(&cloudwatch_config(&moto.endpoint_url(), SHORT_GRACE)),
        &[],
    );
    exporter.wait_ready();
    // Pairs are decided in the first poll; lone records once the watermark
    // passes end + 2 s, a few seconds later.
    let expected_total = 12.0;
    let done = exporter.wait_for("all 12 sessions decided", |s| {
        (s.sum("vpcflow_sessions_total", &[]) >= expected_total).then(|| s.clone())
    });

    let verdicts = [
        ("accepted", 6.0),
        ("rejected_inbound", 2.0),
        ("rejected_outbound", 2.0),
        ("unanswered", 2.0),
        ("refused", 0.0),
    ];
    for (verdict, count) in verdicts {
        assert_eq!(
            done.sessions(verdict),
            count,
            "sessions {verdict}\n{}",
            done.flow_lines()
        );
    }
    let session = |eni: &str, verdict: &str, direction: &str, protocol: &str, port: &str| {
        done.sum(
            "vpcflow_sessions_total",
            &[
                ("interface_id", eni),
                ("verdict", verdict),
                ("direction", direction),
                ("protocol", protocol),
                ("port", port),
            ],
        )
    };
    assert_eq!(session(ENI_A, "accepted", "ingress", "tcp", "443"), 1.0);
    assert_eq!(session(ENI_A, "accepted", "egress", "tcp", "443"), 1.0);
    assert_eq!(
        session(ENI_A, "rejected_inbound", "ingress", "tcp", "3389"),
        1.0
    );
    assert_eq!(
        session(ENI_A, "rejected_outbound", "ingress", "tcp", "22"),
        1.0
    );
    assert_eq!(session(ENI_A, "unanswered", "ingress", "tcp", "5432"), 1.0);
    assert_eq!(session(ENI_B, "accepted", "ingress", "tcp", "80"), 2.0);
    assert_eq!(
        session(ENI_B, "rejected_inbound", "ingress", "tcp", "22"),
        1.0
    );
    assert_eq!(session(ENI_B, "unanswered", "ingress", "tcp", "5432"), 1.0);
    assert_eq!(
        session(ENI_B, "rejected_outbound", "egress", "tcp", "443"),
        1.0
    );
    assert_eq!(session(ENI_C, "accepted", "ingress", "tcp", "443"), 1.0);
    assert_eq!(session(ENI_C, "accepted", "egress", "udp", "53"), 1.0);

    let records = |eni: &str, action: &str, status: &str| {
        done.sum(
            "vpcflow_records_total",
            &[
                ("interface_id", eni),
                ("action", action),
                ("log_status", status),
            ],
        )
    };
    assert_eq!(records(ENI_A, "ACCEPT", "OK"), 6.0);
    assert_eq!(records(ENI_A, "REJECT", "OK"), 2.0);
    assert_eq!(records(ENI_B, "ACCEPT", "OK"), 5.0);
    assert_eq!(records(ENI_B, "REJECT", "OK"), 2.0);
    assert_eq!(records(ENI_C, "ACCEPT", "OK"), 4.0);
    assert_eq!(records(ENI_C, "-", "NODATA"), 1.0);
    assert_eq!(done.sum("vpcflow_records_total", &[]), 20.0);
    // Bytes of both directions: 300 out, 700 back for a pair.
    assert_eq!(
        done.sum(
            "vpcflow_bytes_total",
            &[("interface_id", ENI_B), ("verdict", "accepted")]
        ),
        2000.0
    );
    assert_eq!(done.sum("vpcflow_malformed_records_total", &[]), 0.0);
    assert_eq!(done.sum("vpcflow_pending_sessions", &[]), 0.0);

    assert_eq!(done.sum("vpcflow_up", &[]), 1.0);
    assert!(done.sum("vpcflow_last_successful_poll_timestamp_seconds", &[]) > 0.0);
    assert_eq!(done.sum("vpcflow_interfaces_watched", &[]), 3.0);
    assert_eq!(done.sum("vpcflow_log_events_new_total", &[]), 20.0);
    assert!(done.sum("vpcflow_log_events_fetched_total", &[]) >= 20.0);
    assert!(done.has("vpcflow_delivery_delay_seconds_count"));
    assert_eq!(done.polls("error"), 0.0);
    promtool_check(&done.text);

    // More polls re-read the overlap (fetched grows) and count nothing twice.
    let later = exporter.wait_polls(&done, 3.0);
    for name in [
        "vpcflow_sessions_total",
        "vpcflow_records_total",
        "vpcflow_bytes_total",
        "vpcflow_packets_total",
        "vpcflow_log_events_new_total",
    ] {
        assert_eq!(
            later.sum(name, &[]),
            done.sum(name, &[]),
            "{name} grew on re-reads"
        );
    }
    assert!(
        later.sum("vpcflow_log_events_fetched_total", &[])
            > done.sum("vpcflow_log_events_fetched_total", &[]),
        "each poll re-reads the overlap window"
    );
    assert!(
        later.sum("vpcflow_last_successful_poll_timestamp_seconds", &[])
            > done.sum("vpcflow_last_successful_poll_timestamp_seconds", &[])
    );
}

/// A reply delivered in a later poll than its request completes the session.
#[test]
fn reply_in_a_later_poll_completes_the_session() {
    let moto = Moto::start();
    let t = now_s() - 5;
    let [request, reply] = pair(
        ENI_A,
        ("203.0.113.10", 40001),
        ("10.0.1.10", 443),
        6,
        (t, t + 1),
        "ACCEPT",
        "ACCEPT",
    );
    seed(&moto, GROUP, &[(ENI_A, vec![request])]);

    // Default reply_grace (2m): the request waits for its reply.
    let mut exporter = Exporter::start(
        Some(&cloudwatch_config(&moto.endpoint_url(), ADDRESS_A)),
        &[],
    );
    exporter.wait_ready();
    let first = exporter.wait_for("the request to be read", |s| {
        (s.sum("vpcflow_log_events_new_total", &[]) == 1.0).then(|| s.clone())
    });
    assert_eq!(first.sum("vpcflow_sessions_total", &[]), 0.0);
    assert_eq!(
        first.sum("vpcflow_pending_sessions", &[("interface_id", ENI_A)]),
        1.0
    );

    put_records(&moto, GROUP, ENI_A, &[reply]);
    let done = exporter.wait_for("the session to be decided", |s| {
        (s.sum("vpcflow_sessions_total", &[]) >= 1.0).then(|| s.clone())
    });
    assert_eq!(done.sessions("accepted"), 1.0, "{}", done.flow_lines());
    assert_eq!(done.sessions("unanswered"), 0.0);
    assert_eq!(done.sum("vpcflow_log_events_new_total", &[]), 2.0);
    assert_eq!(done.sum("vpcflow_records_total", &[]), 2.0);
    assert_eq!(done.sum("vpcflow_pending_sessions", &[]), 0.0);
}

/// A reply whose record falls in the next capture window (60 s later) still
/// pairs with its request under the default 2m grace.
#[test]
fn reply_one_capture_window_later_still_pairs() {
    let moto = Moto::start();
    let t = now_s() - 100;
    let request = record(
        ENI_A,
        "203.0.113.10",
        "10.0.1.10",
        40001,
        443,
        6,
        300,
        t,
        t + 10,
        "ACCEPT",
    );
    let reply = record(
        ENI_A,
        "10.0.1.10",
        "203.0.113.10",
        443,
        40001,
        6,
        700,
        t + 60,
        t + 70,
        "ACCEPT",
    );
    seed(&moto, GROUP, &[(ENI_A, vec![request])]);

    let mut exporter = Exporter::start(
        Some(&cloudwatch_config(&moto.endpoint_url(), ADDRESS_A)),
        &[],
    );
    exporter.wait_ready();
    let first = exporter.wait_for("the request to be read", |s| {
        (s.sum("vpcflow_log_events_new_total", &[]) == 1.0).then(|| s.clone())
    });
    // The reply lands a poll later, as a record of the next window does.
    exporter.wait_polls(&first, 1.0);
    put_records(&moto, GROUP, ENI_A, &[reply]);
    let done = exporter.wait_for("the session to be decided", |s| {
        (s.sum("vpcflow_sessions_total", &[]) >= 1.0).then(|| s.clone())
    });
    assert_eq!(done.sessions("accepted"), 1.0, "{}", done.flow_lines());
    assert_eq!(done.sum("vpcflow_sessions_total", &[]), 1.0);
    assert_eq!(
        done.sum(
            "vpcflow_bytes_total",
            &[("verdict", "accepted"), ("direction", "ingress")]
        ),
        1000.0
    );
}

/// The first session of an interface is judged with the interface's own
/// address when the configuration gives it (`[interfaces.<eni>] addresses`).
///
/// Here the instance 10.0.5.50 connects out to 52.94.0.8:443; the request
/// leaves, the reply is rejected entering (a network ACL without an inbound
/// rule for ephemeral ports): rejected_inbound, egress. Without the
/// configured address the pair would be decided the moment both records are
/// seen, while the interface has only ever talked to one peer, and DESIGN's
/// fallback ("the request's destination is local") would make it
/// rejected_outbound, ingress.
#[test]
fn first_session_uses_the_configured_address() {
    let moto = Moto::start();
    let t = now_s() - 5;
    let eni = "eni-0eee0000000000005";
    let mut records = Vec::new();
    // First (earlier start): the instance's own connection, reply rejected.
    records.extend(pair(
        eni,
        ("10.0.5.50", 50000),
        ("52.94.0.8", 443),
        6,
        (t - 1, t),
        "ACCEPT",
        "REJECT",
    ));
    // Then a client from elsewhere: 10.0.5.50 is on both records.
    records.extend(pair(
        eni,
        ("203.0.113.50", 41000),
        ("10.0.5.50", 22),
        6,
        (t, t + 1),
        "ACCEPT",
        "ACCEPT",
    ));
    seed(&moto, GROUP, &[(eni, records)]);

    let mut exporter = Exporter::start(
        Some(&cloudwatch_config(
            &moto.endpoint_url(),
            &format!("{SHORT_GRACE}\n[interfaces.{eni}]\naddresses = [\"10.0.5.50\"]\n"),
        )),
        &[],
    );
    exporter.wait_ready();
    let done = exporter.wait_for("both sessions decided", |s| {
        (s.sum("vpcflow_sessions_total", &[]) >= 2.0).then(|| s.clone())
    });
    let session = |verdict: &str, direction: &str, port: &str| {
        done.sum(
            "vpcflow_sessions_total",
            &[
                ("verdict", verdict),
                ("direction", direction),
                ("port", port),
            ],
        )
    };
    assert_eq!(session("accepted", "ingress", "22"), 1.0);
    assert_eq!(
        session("rejected_inbound", "egress", "443"),
        1.0,
        "{}",
        done.flow_lines()
    );
    assert_eq!(done.sessions("rejected_outbound"), 0.0);
}

/// 250 interface streams are read with ≤ 100 stream names per
/// FilterLogEvents call: three calls per poll, not one per interface.
#[test]
fn many_interfaces_take_three_calls_per_poll() {
    let moto = Moto::start();
    let t = now_s() - 5;
    let interfaces: Vec<(String, Vec<String>)> = (0..250u32)
        .map(|i| {
            let eni = format!("eni-0f{i:015x}");
            let line = record(
                &eni,
                "203.0.113.10",
                "10.0.9.9",
                40000,
                443,
                6,
                100,
                t,
                t + 1,
                "ACCEPT",
            );
            (eni, vec![line])
        })
        .collect();
    seed(&moto, GROUP, &interfaces);

    let mut exporter = Exporter::start(Some(&cloudwatch_config(&moto.endpoint_url(), "")), &[]);
    exporter.wait_ready();
    let steady = exporter.wait_for("all 250 events read", |s| {
        (s.sum("vpcflow_log_events_new_total", &[]) == 250.0).then(|| s.clone())
    });
    assert_eq!(steady.sum("vpcflow_interfaces_watched", &[]), 250.0);
    let calls = |s: &Scrape| {
        s.sum(
            "vpcflow_api_calls_total",
            &[("operation", "FilterLogEvents")],
        )
    };
    let later = exporter.wait_polls(&steady, 5.0);
    let polls = later.polls("success") - steady.polls("success");
    let made = calls(&later) - calls(&steady);
    // A scrape may fall inside a poll, between its calls and its count:
    // allow one poll's calls either way.
    assert!(
        made >= 3.0 * (polls - 1.0) && made <= 3.0 * (polls + 1.0),
        "{made} FilterLogEvents calls in {polls} polls of 250 streams: expected 3 per poll"
    );
    assert_eq!(later.polls("error"), 0.0);
    assert_eq!(
        later.sum("vpcflow_api_calls_total", &[("outcome", "error")]),
        0.0
    );
}

/// `/healthz`, the landing page, and a graceful exit on SIGTERM.
#[test]
fn endpoints_and_graceful_shutdown() {
    let moto = Moto::start();
    seed(&moto, GROUP, &[(ENI_A, vec![])]);
    let mut exporter = Exporter::start(Some(&cloudwatch_config(&moto.endpoint_url(), "")), &[]);
    exporter.wait_ready();

    let (status, body) = exporter.get("/healthz");
    assert_eq!(status, 200, "{body}");
    let (status, body) = exporter.get("/");
    assert_eq!(status, 200, "{body}");
    for link in ["href=\"/metrics\"", "href=\"/healthz\"", "href=\"/ready\""] {
        assert!(body.contains(link), "landing page lacks {link}: {body}");
    }
    assert!(
        body.contains(GROUP),
        "landing page names the source: {body}"
    );
    let (status, _) = exporter.get("/no-such-page");
    assert_eq!(status, 404);

    let started = Instant::now();
    let status = exporter.terminate(Duration::from_secs(10));
    assert!(
        status.success(),
        "exit status after SIGTERM: {status}\n{}",
        exporter.log_tail()
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        http_get(&exporter.url("/healthz")).is_err(),
        "still serving after exit"
    );
}

/// No config file: every key from `VPC_FLOW_EXPORTER__…` variables.
#[test]
fn config_from_environment_only() {
    let moto = Moto::start();
    let t = now_s() - 5;
    seed(
        &moto,
        GROUP,
        &[(
            ENI_A,
            pair(
                ENI_A,
                ("203.0.113.10", 40001),
                ("10.0.1.10", 443),
                6,
                (t, t + 1),
                "ACCEPT",
                "ACCEPT",
            )
            .to_vec(),
        )],
    );
    let endpoint = moto.endpoint_url();
    let mut exporter = Exporter::start(
        None,
        &[
            ("VPC_FLOW_EXPORTER__CLOUDWATCH__LOG_GROUPS__0__NAME", GROUP),
            ("VPC_FLOW_EXPORTER__CLOUDWATCH__ENDPOINT_URL", &endpoint),
            ("VPC_FLOW_EXPORTER__CLOUDWATCH__REGION", "us-east-1"),
            ("VPC_FLOW_EXPORTER__CLOUDWATCH__POLL_INTERVAL", "1s"),
            ("VPC_FLOW_EXPORTER__CLOUDWATCH__LOOKBACK", "5m"),
            ("VPC_FLOW_EXPORTER__CORRELATION__SERVICE_PORTS", "443"),
            // A table named after an interface: `env` and ECS accept the `-`.
            (
                "VPC_FLOW_EXPORTER__INTERFACES__ENI-0AAA0000000000001__ADDRESSES",
                "10.0.1.10",
            ),
        ],
    );
    exporter.wait_ready();
    let done = exporter.wait_for("the session to be decided", |s| {
        (s.sum("vpcflow_sessions_total", &[]) >= 1.0).then(|| s.clone())
    });
    assert_eq!(done.sessions("accepted"), 1.0, "{}", done.flow_lines());
    assert_eq!(done.sum("vpcflow_records_total", &[]), 2.0);
    assert_eq!(done.sum("vpcflow_up", &[]), 1.0);
}

fn check_config(config: &str) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).expect("write the config");
    binary()
        .args(["serve", "--check-config", "--config"])
        .arg(&path)
        .output()
        .expect("run vpc-flow-exporter")
}

#[test]
fn check_config_accepts_a_good_file_and_names_an_unknown_key() {
    let good = check_config(&cloudwatch_config("http://127.0.0.1:5000", SHORT_GRACE));
    assert!(
        good.status.success(),
        "good config rejected: {}",
        String::from_utf8_lossy(&good.stderr)
    );

    let bad = check_config(&cloudwatch_config(
        "http://127.0.0.1:5000",
        "[correlation]\nreply_grace = \"2s\"\nsession_idle_timout = \"30s\"\n",
    ));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success(), "bad config accepted");
    assert!(
        stderr.contains("correlation.session_idle_timout"),
        "the message names the key: {stderr}"
    );
    assert!(stderr.contains("unknown key"), "{stderr}");
}

/// An endpoint that refuses connections: the exporter stays up, says so in
/// `vpcflow_up` and the poll counters, and keeps serving `/metrics`.
#[test]
fn unreachable_endpoint_is_reported_not_fatal() {
    let closed = format!("http://127.0.0.1:{}", free_port());
    let mut exporter = Exporter::start(Some(&cloudwatch_config(&closed, "")), &[]);
    let failing = exporter.wait_for("two failed polls", |s| {
        (s.polls("error") >= 2.0).then(|| s.clone())
    });
    assert_eq!(failing.sum("vpcflow_up", &[]), 0.0);
    assert_eq!(failing.polls("success"), 0.0);
    assert!(
        failing.sum(
            "vpcflow_api_calls_total",
            &[("operation", "DescribeLogStreams"), ("outcome", "error")]
        ) >= 1.0
    );
    assert_eq!(
        failing.sum("vpcflow_last_successful_poll_timestamp_seconds", &[]),
        0.0
    );
    assert_eq!(exporter.get("/ready").0, 503, "never polled successfully");
    assert_eq!(exporter.get("/healthz").0, 200);
    exporter.assert_running();
}
