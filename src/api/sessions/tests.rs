use std::net::IpAddr;

use super::*;

fn endpoint(text: &str) -> Endpoint {
    let (addr, port) = text.rsplit_once(':').expect("addr:port");
    Endpoint {
        addr: addr.parse().expect("an address"),
        port: port.parse().expect("a port"),
    }
}

fn report<'a>(
    interface_id: &'a str,
    verdict: Verdict,
    initiator: &str,
    responder: &str,
) -> SessionReport<'a> {
    SessionReport {
        interface_id,
        protocol: 6,
        initiator: endpoint(initiator),
        responder: endpoint(responder),
        direction: Direction::Ingress,
        verdict,
        packets: 2,
        bytes: 120,
        start: Some(1_700_000_000),
        end: Some(1_700_000_030),
        direction_by_fallback: false,
    }
}

fn log_group() -> ProofSource {
    ProofSource::LogGroup {
        name: "/vpc/flow-logs".into(),
        region: Some("eu-west-1".into()),
        endpoint_url: None,
        role_arn: None,
        external_id: None,
        log_format: "auto".into(),
    }
}

/// A null inner observer: what the tee passes on is not under test here.
struct Nothing;

impl SessionObserver for Nothing {
    fn decided(&mut self, _: &SessionReport<'_>) {}
    fn traffic(&mut self, _: &str, _: Verdict, _: Direction, _: u64, _: u64) {}
    fn closed(&mut self, _: &SessionReport<'_>) {}
    fn evicted(&mut self, _: &str) {}
}

fn record(log: &SessionLog, now: u64, reports: &[SessionReport<'_>]) {
    let proof = log_group();
    let mut observer = Recorded::new(Nothing, log, &proof, now);
    for report in reports {
        observer.decided(report);
    }
}

fn sizes(per_verdict: usize, accepted: usize) -> RingSizes {
    RingSizes {
        per_verdict,
        accepted,
    }
}

fn query(text: &str) -> SessionQuery {
    SessionQuery::parse(Some(text)).expect("a valid query")
}

fn responders(sessions: &[Arc<DecidedSession>]) -> Vec<String> {
    sessions.iter().map(|s| s.responder.to_string()).collect()
}

#[test]
fn newest_first_across_verdicts_and_filters_narrow() {
    let log = SessionLog::new(sizes(10, 0));
    record(
        &log,
        100,
        &[
            report(
                "eni-a",
                Verdict::Unanswered,
                "10.0.0.9:40000",
                "10.0.0.1:5432",
            ),
            report(
                "eni-a",
                Verdict::RejectedInbound,
                "1.2.3.4:50000",
                "10.0.0.1:22",
            ),
            report("eni-b", Verdict::Refused, "10.0.0.9:40001", "10.0.1.1:443"),
            report("eni-b", Verdict::Accepted, "10.0.0.9:40002", "10.0.1.1:443"),
        ],
    );
    let all = log.query(&SessionQuery::default());
    assert_eq!(
        responders(&all),
        ["10.0.1.1:443", "10.0.0.1:22", "10.0.0.1:5432"],
        "newest first; accepted ones are off by default"
    );
    assert_eq!(responders(&log.query(&query("interface=eni-a"))).len(), 2);
    assert_eq!(
        responders(&log.query(&query("verdict=unanswered"))),
        ["10.0.0.1:5432"]
    );
    assert_eq!(
        responders(&log.query(&query("address=10.0.0.9"))),
        ["10.0.1.1:443", "10.0.0.1:5432"],
        "the address matches either side"
    );
    assert_eq!(responders(&log.query(&query("port=22"))), ["10.0.0.1:22"]);
    assert_eq!(
        responders(&log.query(&query("address=10.0.0.9&port=5432&interface=eni-a"))),
        ["10.0.0.1:5432"],
        "filters combine"
    );
    assert_eq!(responders(&log.query(&query("limit=1"))), ["10.0.1.1:443"]);
    assert!(log.query(&query("interface=eni-c")).is_empty());
}

#[test]
fn each_ring_stays_bounded_under_a_flood() {
    let log = SessionLog::new(sizes(1000, 10));
    let proof = log_group();
    let mut observer = Recorded::new(Nothing, &log, &proof, 100);
    for i in 0..200_000u32 {
        let verdict = Verdict::ALL[(i % 5) as usize];
        let initiator = format!("10.{}.{}.{}:40000", i >> 16, (i >> 8) & 255, i & 255);
        observer.decided(&report("eni-a", verdict, &initiator, "10.0.0.1:5432"));
    }
    drop(observer);
    assert_eq!(
        log.len(),
        4 * 1000 + 10,
        "1000 per non-accepted verdict, 10 accepted"
    );
    let unanswered = log.query(&query("verdict=unanswered&limit=10000"));
    assert_eq!(unanswered.len(), 1000);
    // The newest are kept: the last unanswered one was number 199,998.
    assert_eq!(unanswered[0].initiator.to_string(), "10.3.13.62:40000");
    let counts = log.last_hour(100);
    assert_eq!(counts.len(), 1);
    assert_eq!(
        counts[0].1.unanswered, 40_000,
        "the hour counts every session"
    );
}

#[test]
fn last_hour_forgets_older_minutes() {
    let log = SessionLog::new(sizes(10, 0));
    record(
        &log,
        1_000,
        &[report(
            "eni-a",
            Verdict::Unanswered,
            "10.0.0.9:1",
            "10.0.0.1:80",
        )],
    );
    record(
        &log,
        3_000,
        &[report(
            "eni-a",
            Verdict::Accepted,
            "10.0.0.9:2",
            "10.0.0.1:80",
        )],
    );
    let counts = |now| log.last_hour(now)[0].1;
    assert_eq!((counts(3_000).unanswered, counts(3_000).accepted), (1, 1));
    assert_eq!(
        (counts(4_700).unanswered, counts(4_700).accepted),
        (0, 1),
        "more than an hour after 1,000 s only the later session counts"
    );
    assert!(log.last_hour(10_000).is_empty());
}

#[test]
fn bad_parameters_say_which_and_why() {
    let error = |text: &str| SessionQuery::parse(Some(text)).expect_err(text);
    assert_eq!(
        error("verdict=lost"),
        r#"verdict: expected one of accepted, rejected_inbound, rejected_outbound, unanswered, refused, got "lost""#
    );
    assert_eq!(
        error("address=10.0.0"),
        r#"address: expected an IPv4 or IPv6 address, got "10.0.0""#
    );
    assert_eq!(
        error("port=70000"),
        r#"port: expected a port number 0-65535, got "70000""#
    );
    assert_eq!(
        error("limit=0"),
        r#"limit: expected a number from 1 to 10000, got "0""#
    );
    assert!(error("since=1h").starts_with(r#"unknown parameter "since""#));
    let parsed = query("interface=eni-a&address=%3A%3A1&port=&limit=5");
    assert_eq!(parsed.address, Some("::1".parse::<IpAddr>().unwrap()));
    assert_eq!(
        (parsed.port, parsed.limit),
        (None, 5),
        "an empty box is no filter"
    );
}

#[test]
fn the_command_reads_the_sessions_records_again() {
    let session = report(
        "eni-a",
        Verdict::Unanswered,
        "10.0.0.9:40000",
        "10.0.0.1:5432",
    );
    assert_eq!(
        log_group().command(&session),
        "vpc-flow-exporter inspect --log-group /vpc/flow-logs --region eu-west-1 --details \
         --interface eni-a --address 10.0.0.9 --port 5432 --since 1699999940 --until 1700000090"
    );
    // Another account's group is read again with its role.
    let other_account = ProofSource::LogGroup {
        name: "/vpc/flow-logs".into(),
        region: Some("eu-west-1".into()),
        endpoint_url: None,
        role_arn: Some("arn:aws:iam::222222222222:role/reader".into()),
        external_id: Some("org 7".into()),
        log_format: "auto".into(),
    };
    assert_eq!(
        other_account.command(&session),
        "vpc-flow-exporter inspect --log-group /vpc/flow-logs --region eu-west-1 \
         --role-arn arn:aws:iam::222222222222:role/reader --external-id 'org 7' --details \
         --interface eni-a --address 10.0.0.9 --port 5432 --since 1699999940 --until 1700000090"
    );
    let files = ProofSource::Files {
        paths: vec!["flows/a b.log".into()],
        log_format: "version srcaddr dstaddr".into(),
        replayed: true,
    };
    assert_eq!(
        files.command(&session),
        "vpc-flow-exporter analyze --log-format 'version srcaddr dstaddr' --details \
         --interface eni-a --address 10.0.0.9 --port 5432 'flows/a b.log'",
        "replayed times are not the files' times"
    );
    let objects = ProofSource::Objects {
        urls: vec![
            "s3://central/AWSLogs/111111111111/vpcflowlogs/eu-west-1/".into(),
            "s3://central/AWSLogs/222222222222/vpcflowlogs/eu-west-1/".into(),
        ],
        region: Some("eu-west-1".into()),
        endpoint_url: None,
    };
    assert_eq!(
        objects.command(&session),
        "vpc-flow-exporter analyze --region eu-west-1 --details \
         --interface eni-a --address 10.0.0.9 --port 5432 --since 1699999940 --until 1700000090 \
         s3://central/AWSLogs/111111111111/vpcflowlogs/eu-west-1/ \
         s3://central/AWSLogs/222222222222/vpcflowlogs/eu-west-1/",
        "the folders above the date partitions, listed by the session's times"
    );
}
