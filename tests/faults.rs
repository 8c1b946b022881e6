//! The API as AWS really behaves: the real exporter reads moto through the
//! fault-injecting proxy (`tests/common/fault_proxy.rs`) — throttling,
//! 500/503, answers slower than the attempt timeout, connections dropped
//! mid-answer, truncated 200s, empty pages that still carry a `nextToken`,
//! an expired `nextToken` in a paging run, an outage longer than
//! `lookback` — while a second exporter reads the same log group directly.
//!
//! For each fault: `/metrics` keeps answering, `vpcflow_up` is 0 while
//! polls fail, the error is counted by operation and outcome, and once the
//! fault is gone the faulted exporter's flow counters (sessions, bytes,
//! packets, records by every label) equal the undisturbed one's, exactly.
//!
//! Timing as in `tests/serve_cloudwatch.rs`: records end a second or two
//! before they are put, `reply_grace` is 2 s, polls every second; tests wait
//! for what they expect (at most 60 s each), never for a fixed time, except
//! the outage that must outlast `lookback`.

mod common;

use std::time::Duration;

use common::Moto;
use common::exporter::{Exporter, Scrape, now_s, put_records, seed};
use common::fault_proxy::{Fault, FaultProxy};
use common::flows::{
    CloudWatchToml, GROUP, correlation, flow_counters, interface_addresses, record,
};

const ENI_A: &str = "eni-0aaa0000000000001";
const ENI_B: &str = "eni-0bbb0000000000002";
const FILTER: &str = "FilterLogEvents";
const DESCRIBE: &str = "DescribeLogStreams";

/// Sessions and records one [`batch`] puts.
const SESSIONS_PER_BATCH: f64 = 8.0;
const RECORDS_PER_BATCH: f64 = 12.0;

fn config(endpoint: &str, lookback: &str) -> String {
    CloudWatchToml {
        lookback,
        cloudwatch: r#"attempt_timeout = "1s""#,
        rest: interface_addresses(&[(ENI_A, "10.0.1.10"), (ENI_B, "10.0.2.20")])
            + &correlation("2s", "30s"),
        ..CloudWatchToml::new(endpoint)
    }
    .toml()
}

/// Per interface: two accepted pairs, a rejected inbound and an unanswered
/// request — distinct per batch `n` (client ports), so batches never join.
fn batch(n: u16) -> Vec<(&'static str, Vec<String>)> {
    let t = now_s() - 2;
    [(ENI_A, "10.0.1.10"), (ENI_B, "10.0.2.20")]
        .into_iter()
        .map(|(eni, local)| {
            let port = 40000 + n * 10;
            let records = vec![
                record(eni, ("203.0.113.10", port), (local, 443), t, "ACCEPT"),
                record(eni, (local, 443), ("203.0.113.10", port), t, "ACCEPT"),
                record(eni, ("203.0.113.11", port + 1), (local, 80), t, "ACCEPT"),
                record(eni, (local, 80), ("203.0.113.11", port + 1), t, "ACCEPT"),
                record(eni, ("198.51.100.7", port + 2), (local, 3389), t, "REJECT"),
                record(eni, ("198.51.100.9", port + 3), (local, 5432), t, "ACCEPT"),
            ];
            (eni, records)
        })
        .collect()
}

fn put_batch(moto: &Moto, n: u16) {
    for (eni, records) in batch(n) {
        put_records(moto, GROUP, eni, &records);
    }
}

/// Waits until `exporter` has counted `batches` batches, then a few polls more.
fn settled(exporter: &mut Exporter, batches: f64) -> Scrape {
    let done = exporter.wait_for(&format!("{batches} batches counted"), |s| {
        let sessions = s.sum("vpcflow_sessions_total", &[]);
        let records = s.sum("vpcflow_records_total", &[]);
        (sessions >= SESSIONS_PER_BATCH * batches && records >= RECORDS_PER_BATCH * batches)
            .then(|| s.clone())
    });
    // Anything counted twice would show within a few more polls.
    exporter.wait_polls(&done, 3.0)
}

/// A log group read by two exporters: `faulty` through the proxy, `direct`
/// straight from moto.
struct Pair {
    moto: Moto,
    proxy: FaultProxy,
    faulty: Exporter,
    direct: Exporter,
}

impl Pair {
    /// `fault` is armed before the faulted exporter starts (`None`: later).
    fn start(
        lookback: &str,
        fault: Option<(Fault, Option<&str>)>,
        page_limit: Option<u64>,
    ) -> Pair {
        let moto = Moto::start();
        seed(&moto, GROUP, &[(ENI_A, Vec::new()), (ENI_B, Vec::new())]);
        let proxy = FaultProxy::start(&moto.endpoint_url());
        proxy.set_page_limit(page_limit);
        if let Some((fault, operation)) = fault {
            proxy.set(fault, operation);
        }
        let faulty = Exporter::start(Some(&config(&proxy.url(), lookback)), &[]);
        let direct = Exporter::start_ready(Some(&config(&moto.endpoint_url(), lookback)), &[]);
        Pair {
            moto,
            proxy,
            faulty,
            direct,
        }
    }

    /// Waits until the faulted exporter reports the failure: down, the
    /// error counted for `operation` with `outcome`, `/metrics` answering.
    fn wait_down(&mut self, operation: &str, outcome: &str) -> Scrape {
        self.faulty
            .wait_for(&format!("up 0, {operation} {outcome} counted"), |s| {
                let counted = s.sum(
                    "vpcflow_api_calls_total",
                    &[("operation", operation), ("outcome", outcome)],
                );
                (s.sum("vpcflow_up", &[]) == 0.0 && counted >= 1.0 && s.polls("error") >= 1.0)
                    .then(|| s.clone())
            })
    }

    /// After recovery: both exporters count `batches` batches, identically.
    fn assert_exact(&mut self, batches: f64) {
        let direct = settled(&mut self.direct, batches);
        let faulty = settled(&mut self.faulty, batches);
        assert_eq!(
            faulty.sum("vpcflow_up", &[]),
            1.0,
            "up again after recovery"
        );
        assert_eq!(
            faulty.sum("vpcflow_sessions_total", &[]),
            SESSIONS_PER_BATCH * batches,
            "{}",
            faulty.flow_lines()
        );
        assert_eq!(
            flow_counters(&faulty),
            flow_counters(&direct),
            "faulted and undisturbed exporters differ\n{}",
            self.faulty.log_tail()
        );
    }

    /// The common scenario: the fault is on from the start (before the
    /// first poll) while records arrive; then it clears.
    fn fail_then_recover(mut self, operation: &str, outcome: &str, kind: &str) {
        put_batch(&self.moto, 1);
        let down = self.wait_down(operation, outcome);
        assert_kind(&down, operation, kind);
        assert_eq!(self.faulty.get("/healthz").0, 200, "alive while failing");
        assert_eq!(down.sum("vpcflow_sessions_total", &[]), 0.0);
        put_batch(&self.moto, 2);
        // Still down a few polls later, and still answering.
        let later = self.faulty.scrape();
        assert_eq!(later.sum("vpcflow_up", &[]), 0.0, "{}", later.flow_lines());
        assert!(self.proxy.injected(operation) >= 1);
        self.proxy.clear();
        put_batch(&self.moto, 3);
        self.assert_exact(3.0);
    }
}

/// The failed attempts of `operation` were counted as `kind`, only.
fn assert_kind(scrape: &Scrape, operation: &str, kind: &str) {
    let counted = scrape.sum(
        "vpcflow_api_errors_total",
        &[("operation", operation), ("kind", kind)],
    );
    let all = scrape.sum("vpcflow_api_errors_total", &[("operation", operation)]);
    assert!(
        counted >= 1.0 && counted == all,
        "{operation}: {counted} of {all} failed attempts are {kind}\n{}",
        scrape
            .text
            .lines()
            .filter(|line| line.starts_with("vpcflow_api_errors_total"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn throttling_is_counted_and_recovers_exactly() {
    let pair = Pair::start("5m", Some((Fault::Throttle, Some(FILTER))), None);
    pair.fail_then_recover(FILTER, "throttled", "throttled");
}

#[test]
fn service_unavailable_at_start_up_still_reads_the_first_window() {
    // DescribeLogStreams fails from the start, for longer than lookback:
    // the first poll cannot even list the streams. The records of the first
    // window (start - lookback) must still be read once the API answers.
    let mut pair = Pair::start("10s", Some((Fault::Status(503), Some(DESCRIBE))), None);
    put_batch(&pair.moto, 1);
    let down = pair.wait_down(DESCRIBE, "error");
    assert_kind(&down, DESCRIBE, "server_error");
    assert_eq!(
        pair.faulty.get("/ready").0,
        503,
        "not ready before a first poll"
    );
    std::thread::sleep(Duration::from_secs(12));
    let scrape = pair.faulty.scrape();
    assert_eq!(scrape.sum("vpcflow_up", &[]), 0.0);
    pair.proxy.clear();
    put_batch(&pair.moto, 2);
    pair.assert_exact(2.0);
}

#[test]
fn internal_errors_are_retried_and_recover_exactly() {
    let pair = Pair::start("5m", Some((Fault::Status(500), Some(FILTER))), None);
    pair.fail_then_recover(FILTER, "error", "server_error");
}

#[test]
fn answers_slower_than_the_attempt_timeout() {
    let pair = Pair::start(
        "5m",
        Some((Fault::Slow(Duration::from_secs(3)), Some(FILTER))),
        None,
    );
    pair.fail_then_recover(FILTER, "error", "timeout");
}

#[test]
fn connections_dropped_mid_answer() {
    let pair = Pair::start("5m", Some((Fault::DropMidAnswer, Some(FILTER))), None);
    pair.fail_then_recover(FILTER, "error", "connection");
}

#[test]
fn a_truncated_200_is_an_error_not_data() {
    let pair = Pair::start("5m", Some((Fault::Truncated, Some(FILTER))), None);
    pair.fail_then_recover(FILTER, "error", "bad_response");
}

#[test]
fn empty_pages_with_a_next_token_are_followed() {
    // Pages of 4 events, each behind two empty pages that carry a token: a
    // client that stopped at an empty page would miss nearly everything.
    let mut pair = Pair::start("5m", Some((Fault::EmptyPages(2), Some(FILTER))), Some(4));
    put_batch(&pair.moto, 1);
    put_batch(&pair.moto, 2);
    pair.assert_exact(2.0);
    assert!(pair.proxy.injected(FILTER) >= 6, "empty pages served");
    let scrape = pair.faulty.scrape();
    assert_eq!(scrape.polls("error"), 0.0, "no poll failed");
}

#[test]
fn an_expired_token_mid_paging_restarts_the_window_without_double_counting() {
    let mut pair = Pair::start("5m", None, Some(3));
    put_batch(&pair.moto, 1);
    settled(&mut pair.faulty, 1.0);
    // The next two paged requests find their token expired.
    pair.proxy.set(Fault::ExpireTokens(2), Some(FILTER));
    put_batch(&pair.moto, 2);
    let scrape = pair.faulty.wait_for("the expired tokens answered", |s| {
        (s.sum(
            "vpcflow_api_calls_total",
            &[("operation", FILTER), ("outcome", "error")],
        ) >= 2.0)
            .then(|| s.clone())
    });
    assert_eq!(pair.proxy.injected(FILTER), 2);
    assert_kind(&scrape, FILTER, "invalid_parameter");
    assert_eq!(
        scrape.sum("vpcflow_up", &[]),
        1.0,
        "the poll restarted, not failed"
    );
    put_batch(&pair.moto, 3);
    pair.assert_exact(3.0);
}

#[test]
fn an_outage_longer_than_lookback_loses_nothing() {
    let mut pair = Pair::start("10s", None, None);
    put_batch(&pair.moto, 1);
    settled(&mut pair.faulty, 1.0);
    pair.proxy.set(Fault::Outage, None);
    let down = pair.wait_down(FILTER, "error");
    assert_kind(&down, FILTER, "connection");
    put_batch(&pair.moto, 2);
    // Outlast lookback (10 s) by half again; the exporter keeps answering.
    for _ in 0..15 {
        std::thread::sleep(Duration::from_secs(1));
        let scrape = pair.faulty.scrape();
        assert_eq!(scrape.sum("vpcflow_up", &[]), 0.0);
    }
    put_batch(&pair.moto, 3);
    pair.proxy.clear();
    pair.assert_exact(3.0);
}
