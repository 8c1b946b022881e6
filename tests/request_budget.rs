//! The request budget measured where AWS counts the quota: `serve` reads
//! 1,000 interface streams in two log groups of one account and region —
//! 600 with the base credentials, 400 through a role into the same account
//! — through a proxy in front of moto that notes when each call arrives.
//! With `max_requests_per_second = 2`, no second at the proxy ever holds
//! more than 2 CloudWatch Logs calls (DescribeLogStreams pages included),
//! whichever credentials sent them: both groups draw from the one budget
//! of their account-region, whose metrics carry the real account.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::exporter::{Exporter, stream_name};
use common::fault_proxy::{Arrival, FaultProxy};
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

fn config(endpoint: &str) -> String {
    let (a, b) = (GROUPS[0].0, GROUPS[1].0);
    format!(
        r#"
[cloudwatch]
region = "{REGION}"
endpoint_url = "{endpoint}"
poll_interval = "2s"
lookback = "5m"
max_requests_per_second = {BUDGET}

[[cloudwatch.log_groups]]
name = "{a}"

[[cloudwatch.log_groups]]
name = "{b}"
role_arn = "{SAME_ACCOUNT_ROLE}"
"#
    )
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
    let mut exporter = Exporter::start(Some(&config(&proxy.url())), &[]);

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
