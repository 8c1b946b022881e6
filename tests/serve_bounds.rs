//! `serve` within its memory bound (`[correlation] max_open_sessions`):
//! two exporters read the same moto log group, one with room for five
//! sessions and one with the default. The bounded one evicts — decides
//! its oldest pending sessions early and counts them in
//! `vpcflow_sessions_evicted_total` — yet its flow counters equal the
//! unbounded one's series by series: every record and every session is
//! counted once, and a lone request evicted early gets the verdict its
//! grace would have given it (`unanswered`).

mod common;

use common::Moto;
use common::exporter::{Exporter, Scrape, now_s, seed};
use common::flows::{
    CloudWatchToml, GROUP, correlation, flow_counters, interface_addresses, record,
};

const ENI: &str = "eni-0aaa0000000000001";
const LOCAL: &str = "10.0.1.10";
const MAX_OPEN_SESSIONS: usize = 5;
const PAIRS: usize = 10;
const LONE_REQUESTS: usize = 20;

fn config(endpoint: &str, max_open_sessions: Option<usize>) -> String {
    let bound =
        max_open_sessions.map_or(String::new(), |max| format!("max_open_sessions = {max}\n"));
    CloudWatchToml {
        rest: interface_addresses(&[(ENI, LOCAL)]) + &correlation("2s", "30s") + &bound,
        ..CloudWatchToml::new(endpoint)
    }
    .toml()
}

/// Accepted pairs, each reply right after its request, then lone requests
/// that never get a reply; all in one capture window, so the first poll
/// reads them in this order (moto: by timestamp, ties in put order).
fn records(t: i64) -> Vec<String> {
    let mut records = Vec::new();
    for n in 0..PAIRS {
        let client: &str = &format!("203.0.113.{}", 10 + n);
        let port = 40000 + n as u16;
        records.push(record(ENI, (client, port), (LOCAL, 443), t, "ACCEPT"));
        records.push(record(ENI, (LOCAL, 443), (client, port), t, "ACCEPT"));
    }
    for n in 0..LONE_REQUESTS {
        let client: &str = &format!("198.51.100.{}", 1 + n);
        let port = 50000 + n as u16;
        records.push(record(ENI, (client, port), (LOCAL, 5432), t, "ACCEPT"));
    }
    records
}

fn all_decided(exporter: &mut Exporter) -> Scrape {
    let sessions = (PAIRS + LONE_REQUESTS) as f64;
    exporter.wait_for(&format!("{sessions} sessions decided"), |s| {
        (s.sum("vpcflow_sessions_total", &[]) >= sessions).then(|| s.clone())
    })
}

fn evicted(scrape: &Scrape) -> f64 {
    scrape.sum("vpcflow_sessions_evicted_total", &[("interface_id", ENI)])
}

#[test]
fn past_max_open_sessions_evictions_are_counted_and_totals_stay_exact() {
    let moto = Moto::start();
    let put = records(now_s() - 5);
    seed(&moto, GROUP, &[(ENI, put.clone())]);

    let mut bounded = Exporter::start_ready(
        Some(&config(&moto.endpoint_url(), Some(MAX_OPEN_SESSIONS))),
        &[],
    );
    let mut unbounded = Exporter::start_ready(Some(&config(&moto.endpoint_url(), None)), &[]);
    let bounded_done = all_decided(&mut bounded);
    let unbounded_done = all_decided(&mut unbounded);

    // The pairs were decided when their replies came, and dropped to make
    // room (not evicted); the first five lone requests took their places,
    // and each later one evicted the oldest pending request.
    assert_eq!(
        evicted(&bounded_done),
        (LONE_REQUESTS - MAX_OPEN_SESSIONS) as f64,
        "{}",
        bounded.log_tail()
    );
    assert_eq!(evicted(&unbounded_done), 0.0);
    assert!(
        bounded_done.sum("vpcflow_open_sessions", &[]) <= MAX_OPEN_SESSIONS as f64,
        "{}",
        bounded_done.text
    );

    // Every record and every session counted once, with the same verdicts.
    assert_eq!(
        bounded_done.sum("vpcflow_records_total", &[]),
        put.len() as f64
    );
    assert_eq!(bounded_done.sessions("accepted"), PAIRS as f64);
    assert_eq!(bounded_done.sessions("unanswered"), LONE_REQUESTS as f64);
    assert_eq!(
        flow_counters(&bounded_done),
        flow_counters(&unbounded_done),
        "bounded:\n{}\nunbounded:\n{}",
        bounded_done.flow_lines(),
        unbounded_done.flow_lines()
    );

    // Nothing more comes of them: no session counted twice later.
    let later = bounded.wait_polls(&bounded_done, 3.0);
    assert_eq!(flow_counters(&later), flow_counters(&bounded_done));
    assert_eq!(evicted(&later), evicted(&bounded_done));
}
