//! The request budget measured where AWS counts the quota: `serve` reads
//! 1,000 interface streams in two log groups of one account and region —
//! 600 with the base credentials, 400 through a role into the same account
//! — through a proxy in front of moto that notes when each call arrives.
//! With `max_requests_per_second = 2`, no second at the proxy ever holds
//! more than 2 CloudWatch Logs calls (DescribeLogStreams pages included),
//! whichever credentials sent them: both groups draw from the one budget
//! of their account-region, whose metrics carry the real account. While
//! the service throttles a share of the calls, the retries take their
//! turns too: still no second above the budget, and every attempt counted.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::exporter::{Exporter, now_s, seed, stream_name};
use common::fault_proxy::{Arrival, Fault, FaultProxy};
use common::flows::record;
use common::{Moto, wait_until};

/// The account moto gives the static test credentials, and so the base
/// credentials' account (STS GetCallerIdentity).
const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";
/// A role into the base credentials' own account.
const SAME_ACCOUNT_ROLE: &str = "arn:aws:iam::123456789012:role/vpc-flow-exporter-reader";
const BUDGET: usize = 2;
/// (log group, streams): 1,000 in all.
const GROUPS: [(&str, u32); 2] = [("/vpc/flow-logs-a", 600), ("/vpc/flow-logs-b", 400)];
/// Calls to watch: the listing of both groups (12 + 8 pages of 50 streams)
/// and two polls of each (6 + 4 calls of 100 streams).
const CALLS: usize = 40;

/// `serve`'s configuration: the budget, polls every `poll_interval`, one
/// `[[cloudwatch.log_groups]]` per (name, role).
fn config(endpoint: &str, poll_interval: &str, groups: &[(&str, Option<&str>)]) -> String {
    let mut config = format!(
        r#"
[cloudwatch]
region = "{REGION}"
endpoint_url = "{endpoint}"
poll_interval = "{poll_interval}"
lookback = "5m"
max_requests_per_second = {BUDGET}
"#
    );
    for (name, role) in groups {
        config.push_str(&format!("\n[[cloudwatch.log_groups]]\nname = \"{name}\"\n"));
        if let Some(role) = role {
            config.push_str(&format!("role_arn = \"{role}\"\n"));
        }
    }
    config
}

/// The most calls that arrived within any one second: the window opened
/// at each call's arrival, which covers every way of cutting seconds.
fn busiest_second(calls: &[&Arrival]) -> usize {
    calls
        .iter()
        .map(|first| {
            calls
                .iter()
                .filter(|call| call.at >= first.at && call.at - first.at < Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn calls_at_the_proxy_never_exceed_the_budget_over_1000_streams() {
    let moto = Moto::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for (index, (group, streams)) in GROUPS.iter().enumerate() {
            moto.create_log_group(group).await;
            let names: Vec<String> = (0..*streams)
                .map(|n| stream_name(&format!("eni-0{index}{n:015x}")))
                .collect();
            moto.create_log_streams(group, &names).await;
        }
    });
    let proxy = FaultProxy::start(&moto.endpoint_url());
    let mut exporter = Exporter::start(
        Some(&config(
            &proxy.url(),
            "2s",
            &[(GROUPS[0].0, None), (GROUPS[1].0, Some(SAME_ACCOUNT_ROLE))],
        )),
        &[],
    );

    let logs_calls = || -> Vec<Arrival> {
        proxy
            .arrivals()
            .into_iter()
            .filter(Arrival::is_logs)
            .collect()
    };
    let calls = wait_until(
        Duration::from_secs(60),
        "the listing and two polls of both groups",
        || {
            let calls = logs_calls();
            let polls = calls
                .iter()
                .filter(|call| call.operation == "FilterLogEvents")
                .count();
            (calls.len() >= CALLS && polls >= 20).then_some(calls)
        },
    );
    let calls: Vec<&Arrival> = calls.iter().collect();
    let start = calls[0].at;
    for a in proxy.arrivals().iter().take(12) {
        eprintln!(
            "DEBUG {:?} {} {:?}",
            a.at.saturating_duration_since(start),
            a.operation,
            a.role_arn
        );
    }
    let mut per_second: BTreeMap<u64, usize> = BTreeMap::new();
    for call in &calls {
        *per_second.entry((call.at - start).as_secs()).or_default() += 1;
    }
    // The budget is a token bucket of depth one: the first call goes at
    // once and every later one waits its turn, so the first second gets
    // no burst and needs no allowance. Calls are spaced (1 s + 50 ms) /
    // rate, so a call may travel up to 50 ms longer than the one two calls
    // after it before a second could hold three.
    assert!(
        busiest_second(&calls) <= BUDGET,
        "busiest second {} > {BUDGET}; calls per second from the first: {per_second:?}",
        busiest_second(&calls)
    );
    assert!(per_second.values().all(|n| *n <= BUDGET));
    for call in &calls {
        assert_eq!(call.region, REGION, "{call:?}");
    }

    // Both groups draw from one budget, labelled with the real account.
    let scrape = exporter.wait_for("every stream watched", |scrape| {
        (scrape.sum("vpcflow_interfaces_watched", &[]) == 1_000.0).then(|| scrape.clone())
    });
    for metric in [
        "vpcflow_api_budget_used_ratio",
        "vpcflow_api_budget_demand_ratio",
        "vpcflow_api_calls_delayed_total",
    ] {
        let budgets: Vec<(String, String)> = scrape
            .series(metric)
            .into_iter()
            .map(|(labels, _)| (labels["account_id"].clone(), labels["region"].clone()))
            .collect();
        assert_eq!(
            budgets,
            [(ACCOUNT.to_owned(), REGION.to_owned())],
            "{metric}"
        );
    }
    assert!(
        scrape.sum(
            "vpcflow_api_calls_delayed_total",
            &[("account_id", ACCOUNT), ("region", REGION)]
        ) > 0.0
    );
    exporter.assert_running();
}

/// Log groups of the throttling test: 150 streams each, so 2
/// FilterLogEvents calls per poll, polled every 6 s (the second group 3 s
/// after the first): quiet gaps between polls, when every attempt has been
/// answered and counted.
const THROTTLED_GROUPS: [&str; 2] = ["/vpc/throttled-a", "/vpc/throttled-b"];
const THROTTLED_STREAMS: u32 = 150;
/// Streams of each group with records (a request and its reply each).
const STREAMS_WITH_RECORDS: u32 = 10;
/// Every third FilterLogEvents request is throttled.
const THROTTLE_EVERY: u64 = 3;
const FILTER: &str = "FilterLogEvents";
const DESCRIBE: &str = "DescribeLogStreams";

/// Every third FilterLogEvents request answered 400 ThrottlingException:
/// the retries, sent after their backoff, wait for their turn as well, so
/// the attempts at the proxy never exceed the budget in any second; every
/// attempt is counted (a success or a failed attempt of its kind), and the
/// records are counted exactly once.
#[test]
fn retries_take_their_turn_while_the_service_throttles() {
    let moto = Moto::start();
    let t = now_s() - 30;
    for (index, group) in THROTTLED_GROUPS.iter().enumerate() {
        let interfaces: Vec<(String, Vec<String>)> = (0..THROTTLED_STREAMS)
            .map(|n| {
                let eni = format!("eni-0{index}{n:015x}");
                let client = ("203.0.113.10", 40_000 + n as u16);
                let records = if n < STREAMS_WITH_RECORDS {
                    vec![
                        record(&eni, client, ("10.0.0.1", 443), t, "ACCEPT"),
                        record(&eni, ("10.0.0.1", 443), client, t, "ACCEPT"),
                    ]
                } else {
                    Vec::new()
                };
                (eni, records)
            })
            .collect();
        seed(&moto, group, &interfaces);
    }
    let expected_records = f64::from(2 * 2 * STREAMS_WITH_RECORDS);
    let proxy = FaultProxy::start(&moto.endpoint_url());
    proxy.set(Fault::ThrottleEvery(THROTTLE_EVERY), Some(FILTER));
    let throttled = config(
        &proxy.url(),
        "6s",
        &[(THROTTLED_GROUPS[0], None), (THROTTLED_GROUPS[1], None)],
    );
    let mut exporter = Exporter::start(Some(&throttled), &[]);

    // Every record counted and 6 requests throttled, then a quiet moment
    // between polls: the last request (moto answers in milliseconds) was
    // answered and counted before the scrape was taken.
    let scrape = exporter.wait_for("the records and 6 throttled requests", |scrape| {
        let last = proxy.arrivals().last().map(|arrival| arrival.at)?;
        (scrape.sum("vpcflow_records_total", &[]) >= expected_records
            && proxy.injected(FILTER) >= 6
            && last.elapsed() > Duration::from_secs(1))
        .then(|| scrape.clone())
    });
    let arrivals: Vec<Arrival> = proxy
        .arrivals()
        .into_iter()
        .filter(Arrival::is_logs)
        .collect();
    let calls: Vec<&Arrival> = arrivals.iter().collect();
    let start = calls[0].at;
    let mut per_second: BTreeMap<u64, usize> = BTreeMap::new();
    for call in &calls {
        *per_second.entry((call.at - start).as_secs()).or_default() += 1;
    }
    let closest = calls
        .windows(2)
        .map(|pair| pair[1].at - pair[0].at)
        .min()
        .unwrap_or_default();
    let (requests, throttled) = (proxy.requests(FILTER) as f64, proxy.injected(FILTER) as f64);
    let calls_of = |operation: &str, outcome: Option<&str>| {
        let mut labels = vec![("operation", operation)];
        labels.extend(outcome.map(|outcome| ("outcome", outcome)));
        scrape.sum("vpcflow_api_calls_total", &labels)
    };
    let failed_attempts = scrape.sum("vpcflow_api_errors_total", &[("operation", FILTER)]);
    eprintln!(
        "{} CloudWatch Logs requests over {:?}, {requests} FilterLogEvents of which {throttled} throttled, \
         {} FilterLogEvents calls; busiest second {}, closest arrivals {closest:?}",
        calls.len(),
        calls[calls.len() - 1].at - start,
        calls_of(FILTER, None),
        busiest_second(&calls),
    );

    assert!(
        busiest_second(&calls) <= BUDGET,
        "busiest second {} > {BUDGET}; requests per second from the first: {per_second:?}",
        busiest_second(&calls)
    );
    // Retries were made, and every attempt is counted: a call's success or
    // one failed attempt, throttled, as the proxy answered it.
    assert!(requests > calls_of(FILTER, None), "some calls were retried");
    assert_eq!(
        scrape.sum(
            "vpcflow_api_errors_total",
            &[("operation", FILTER), ("kind", "throttled")]
        ),
        throttled
    );
    assert_eq!(failed_attempts, throttled, "no other kind of failure");
    assert_eq!(
        scrape.sum("vpcflow_api_throttles_total", &[("operation", FILTER)]),
        throttled
    );
    assert_eq!(
        calls_of(FILTER, Some("success")) + failed_attempts,
        requests
    );
    assert_eq!(
        calls_of(DESCRIBE, Some("success")),
        proxy.requests(DESCRIBE) as f64
    );
    // Counted exactly once, whatever was retried.
    let settled = exporter.wait_polls(&scrape, 2.0);
    assert_eq!(
        settled.sum("vpcflow_records_total", &[]),
        expected_records,
        "{}",
        settled.flow_lines()
    );
    exporter.assert_running();
}
