//! The S3 source against moto.
//!
//! `serve` with `[s3]`: a bucket whose event notifications go to an SQS
//! queue (with a dead-letter queue), objects laid out as S3 delivery writes
//! them for two accounts and two regions, gzip text and Parquet, the request
//! and reply of a session in different objects, one object notified twice
//! and one corrupt object. Exact totals, each object counted once, the queue
//! drained, the corrupt object in the dead-letter queue and counted as such.
//!
//! `analyze s3://bucket/prefix` gives what `analyze` gives on the same files,
//! with and without time filters (which list only the partitions needed).
//!
//! `[ec2]` with `[s3]` describes interfaces in the region of their object's
//! key; and the queue reader, on its own against moto's SQS, keeps a message
//! hidden while its object takes longer to count than the visibility
//! timeout.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_sqs::types::QueueAttributeName;
use flate2::Compression;
use flate2::write::GzEncoder;

use common::exporter::{Exporter, Scrape};
use common::moto::{Moto, ec2_client, s3_client, sqs_client, static_credentials_in_environment};
use vpc_flow_exporter::source::cloudwatch::NoopObserver;
use vpc_flow_exporter::source::s3::{
    AwsS3Api, CreatedObject, MessageOutcome, ObjectOutcome, ObjectSink, Preparer, Reader,
    ReaderObserver, Seen,
};

const BUCKET: &str = "central-flow-logs";
const V2_HEADER: &str = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status";

fn gzip(text: &str) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(text.as_bytes()).unwrap();
    encoder.finish().unwrap()
}

/// `AWSLogs/<account>/vpcflowlogs/<region>/yyyy/mm/dd/<name>` with the file
/// time in the name, as S3 delivery names objects.
fn key(account: &str, region: &str, time: u64, suffix: &str, ext: &str) -> String {
    partitioned_key(account, region, time, suffix, ext, false)
}

/// As [`key`], in hourly partitions (`…/yyyy/mm/dd/hh/`) when `hourly`.
fn partitioned_key(
    account: &str,
    region: &str,
    time: u64,
    suffix: &str,
    ext: &str,
    hourly: bool,
) -> String {
    let stamp =
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(time)).to_string();
    let (date, clock) = (&stamp[..10], &stamp[11..16]);
    let compact = format!("{}T{}Z", date.replace('-', ""), clock.replace(':', ""));
    let hour = if hourly {
        format!("{}/", &clock[..2])
    } else {
        String::new()
    };
    format!(
        "AWSLogs/{account}/vpcflowlogs/{region}/{}/{hour}{account}_vpcflowlogs_{region}_fl-0a1b2c3d_{compact}_{suffix}.{ext}",
        date.replace('-', "/")
    )
}

/// A version-2 record of `account` from `flow`: interface, source and
/// destination address, source and destination port, action.
/// Puts one object into the test bucket.
fn put_object(
    runtime: &tokio::runtime::Runtime,
    s3: &aws_sdk_s3::Client,
    key: &str,
    body: Vec<u8>,
) {
    runtime
        .block_on(
            s3.put_object()
                .bucket(BUCKET)
                .key(key)
                .body(body.into())
                .send(),
        )
        .unwrap();
}

/// Now less a minute, in seconds: record times the exporter takes as fresh.
fn a_minute_ago() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 60
}

fn record(account: &str, flow: &str, end: u64) -> String {
    let [eni, src, dst, sport, dport, action]: [&str; 6] =
        flow.split(' ').collect::<Vec<_>>().try_into().unwrap();
    let start = end - 30;
    format!("2 {account} {eni} {src} {dst} {sport} {dport} 6 3 180 {start} {end} {action} OK")
}

fn queue_counts(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    runtime: &tokio::runtime::Runtime,
) -> (u64, u64) {
    let attributes = runtime
        .block_on(
            sqs.get_queue_attributes()
                .queue_url(url)
                .attribute_names(QueueAttributeName::All)
                .send(),
        )
        .unwrap();
    let attributes = attributes.attributes().unwrap();
    let number = |name: QueueAttributeName| {
        attributes
            .get(&name)
            .and_then(|value| value.parse().ok())
            .unwrap_or(u64::MAX)
    };
    (
        number(QueueAttributeName::ApproximateNumberOfMessages),
        number(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    )
}

#[test]
fn objects_of_many_accounts_and_regions_are_each_counted_once() {
    let moto = Moto::start();
    let endpoint = moto.endpoint_url();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (s3, sqs) = (s3_client(&endpoint), sqs_client(&endpoint));

    // The queue, its dead-letter queue (after 2 receives) and the bucket's
    // notification to it.
    let dlq_url = runtime
        .block_on(sqs.create_queue().queue_name("flow-logs-dlq").send())
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let redrive = serde_json::json!({
        "deadLetterTargetArn": "arn:aws:sqs:us-east-1:123456789012:flow-logs-dlq",
        "maxReceiveCount": "2"
    })
    .to_string();
    let queue_url = bucket_notifying_queue(&s3, &sqs, &runtime, Some(redrive));

    // Records twenty minutes old, in files named for their window.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let t = now - 1200;
    let (a, b) = ("111111111111", "222222222222");
    let lines = |records: &[String]| {
        let mut text = format!("{V2_HEADER}\n");
        for line in records {
            text.push_str(line);
            text.push('\n');
        }
        text
    };
    // Account a, us-east-1, eni-a1: a session whose reply is in the next
    // object, a whole one, and a rejected probe ten minutes earlier.
    let (e1, e2, e3) = (
        "eni-0a000000000000001",
        "eni-0a000000000000002",
        "eni-0b000000000000001",
    );
    let a1 = lines(&[
        record(
            a,
            &format!("{e1} 203.0.113.9 10.0.0.10 50000 3389 REJECT"),
            t - 600,
        ),
        record(
            a,
            &format!("{e1} 198.51.100.7 10.0.0.10 40000 22 ACCEPT"),
            t,
        ),
        record(
            a,
            &format!("{e1} 198.51.100.8 10.0.0.10 40001 443 ACCEPT"),
            t,
        ),
        record(
            a,
            &format!("{e1} 10.0.0.10 198.51.100.8 443 40001 ACCEPT"),
            t,
        ),
    ]);
    let a2 = lines(&[record(
        a,
        &format!("{e1} 10.0.0.10 198.51.100.7 22 40000 ACCEPT"),
        t,
    )]);
    // Account b, eu-west-1: an unanswered request and a whole session.
    let b1 = lines(&[
        record(
            b,
            &format!("{e3} 198.51.100.21 10.1.0.10 41001 8080 ACCEPT"),
            t - 600,
        ),
        record(
            b,
            &format!("{e3} 198.51.100.20 10.1.0.10 41000 5432 ACCEPT"),
            t,
        ),
        record(
            b,
            &format!("{e3} 10.1.0.10 198.51.100.20 5432 41000 ACCEPT"),
            t,
        ),
    ]);
    // Account a, eu-west-1, as Parquet: one whole session.
    let parquet_text = lines(&[
        record(
            a,
            &format!("{e2} 198.51.100.30 10.2.0.10 42000 80 ACCEPT"),
            t,
        ),
        record(
            a,
            &format!("{e2} 10.2.0.10 198.51.100.30 80 42000 ACCEPT"),
            t,
        ),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let text_path = dir.path().join("p.log");
    std::fs::write(&text_path, &parquet_text).unwrap();
    let parquet_path = dir.path().join("p.parquet");
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let status = Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/text-to-parquet"))
        .arg(&text_path)
        .arg(&parquet_path)
        .status()
        .unwrap();
    assert!(status.success(), "scripts/text-to-parquet");
    let parquet = std::fs::read(&parquet_path).unwrap();
    let mut corrupt = gzip(&a2);
    corrupt.truncate(corrupt.len() / 2);
    corrupt.extend_from_slice(b"not gzip any more");

    let objects: Vec<(String, Vec<u8>)> = vec![
        (key(a, "us-east-1", t, "a1", "log.gz"), gzip(&a1)),
        (key(a, "us-east-1", t + 300, "a2", "log.gz"), gzip(&a2)),
        (key(b, "eu-west-1", t, "b1", "log.gz"), gzip(&b1)),
        (key(a, "eu-west-1", t, "p1", "log.parquet"), parquet),
        (key(b, "eu-west-1", t + 300, "bad", "log.gz"), corrupt),
        // Another service's logs in the same bucket, under the same
        // notification: not a flow log, never read.
        (
            format!(
                "AWSLogs/{a}/elasticloadbalancing/us-east-1/2024/01/05/{a}_elasticloadbalancing_us-east-1_app.lb_20240105T1000Z_10.0.0.1_x.log.gz"
            ),
            gzip(
                "http 2024-01-05T10:00:00.000000Z app/lb/1 198.51.100.1:1 10.0.0.1:80 0.001 0.001 0.000 200 200 34 366 \"GET http://x:80/ HTTP/1.1\"\n",
            ),
        ),
    ];
    // A single-peer interface's session waits 1 s for its address.
    let exporter_config = format!(
        "[s3]\nregion = \"us-east-1\"\nendpoint_url = \"{endpoint}\"\nqueue_url = \"{queue_url}\"\n\n[correlation]\naddress_wait = \"1s\"\n"
    );
    let mut exporter = Exporter::start(Some(&exporter_config), &[]);
    for (key, body) in &objects {
        put_object(&runtime, &s3, key, body.clone());
    }
    // The first object notified a second time (S3 delivers at least once).
    let head = runtime
        .block_on(s3.head_object().bucket(BUCKET).key(&objects[0].0).send())
        .unwrap();
    let again = serde_json::json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2024-01-05T10:05:30.000Z", "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": BUCKET}, "object": {
            "key": objects[0].0.replace('_', "%5F"), "size": objects[0].1.len(),
            "eTag": head.e_tag().unwrap().trim_matches('"')}}}]})
    .to_string();
    runtime
        .block_on(
            sqs.send_message()
                .queue_url(&queue_url)
                .message_body(again)
                .send(),
        )
        .unwrap();

    let scrape = exporter.wait_for("every object handled", |scrape: &Scrape| {
        let counted = scrape.sum("vpcflow_s3_objects_total", &[("outcome", "counted")]);
        let corrupt = scrape.sum("vpcflow_s3_objects_total", &[("outcome", "corrupt")]);
        // A session of a single-peer interface waits for its address until
        // the wall clock passes correlation.address_wait.
        let sessions = scrape.sessions("unanswered") >= 1.0 && scrape.sessions("accepted") >= 4.0;
        (counted >= 4.0 && corrupt >= 2.0 && sessions).then(|| scrape.clone())
    });
    let s3_objects = |outcome| scrape.sum("vpcflow_s3_objects_total", &[("outcome", outcome)]);
    assert_eq!(s3_objects("counted"), 4.0, "each good object once");
    assert_eq!(s3_objects("duplicate"), 1.0, "the second notification");
    assert_eq!(s3_objects("ignored"), 1.0, "the load balancer's log");
    // The keys name each interface's account and region, for the
    // dashboards' variables.
    for (interface, account, region) in [
        (e1, a, "us-east-1"),
        (e2, a, "eu-west-1"),
        (e3, b, "eu-west-1"),
    ] {
        assert_eq!(
            scrape.sum(
                "vpcflow_interface_info",
                &[
                    ("interface_id", interface),
                    ("account_id", account),
                    ("region", region)
                ]
            ),
            1.0,
            "{interface}"
        );
    }
    assert_eq!(
        s3_objects("corrupt"),
        2.0,
        "received twice, then the dead-letter queue"
    );
    assert_eq!(scrape.sessions("accepted"), 4.0);
    assert_eq!(scrape.sessions("rejected_inbound"), 1.0);
    assert_eq!(scrape.sessions("unanswered"), 1.0);
    assert_eq!(scrape.sum("vpcflow_records_total", &[]), 10.0);
    assert_eq!(
        scrape.sum(
            "vpcflow_records_total",
            &[("interface_id", "eni-0b000000000000001")]
        ),
        3.0
    );
    assert_eq!(
        scrape.sum("vpcflow_s3_object_records_read_total", &[]),
        10.0
    );
    assert_eq!(scrape.sum("vpcflow_malformed_records_total", &[]), 0.0);
    let messages = |outcome| scrape.sum("vpcflow_sqs_messages_total", &[("outcome", outcome)]);
    assert_eq!(
        messages("deleted"),
        6.0,
        "four objects, the duplicate and the load balancer's log"
    );
    assert_eq!(messages("retry"), 2.0);
    assert_eq!(
        messages("test_event"),
        1.0,
        "sent when the notification was set up"
    );
    assert_eq!(scrape.sum("vpcflow_up", &[]), 1.0);

    // Drained: nothing visible or in flight; the corrupt object's message
    // sits in the dead-letter queue.
    common::wait_until(Duration::from_secs(30), "the queue drained", || {
        (queue_counts(&sqs, &queue_url, &runtime) == (0, 0)).then_some(())
    });
    let dead = runtime
        .block_on(
            sqs.receive_message()
                .queue_url(&dlq_url)
                .max_number_of_messages(10)
                .send(),
        )
        .unwrap();
    assert_eq!(dead.messages().len(), 1);
    assert!(dead.messages()[0].body().unwrap().contains("_bad.log.gz"));
    let log = exporter.log_tail();
    assert!(log.contains("corrupt"), "{log}");
}

#[test]
fn analyze_s3_equals_analyze_on_the_same_files() {
    let moto = Moto::start();
    let endpoint = moto.endpoint_url();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let s3 = s3_client(&endpoint);
    runtime
        .block_on(s3.create_bucket().bucket(BUCKET).send())
        .unwrap();
    // A generated day of records, cut into hourly objects in daily and
    // hourly partitions of two accounts.
    let start = 1_704_412_800; // 2024-01-05T00:00:00Z
    let generated = Command::new(env!("CARGO_BIN_EXE_vpc-flow-exporter"))
        .args([
            "generate",
            "--records",
            "6000",
            "--seed",
            "3",
            "--sessions-per-window",
            "4",
        ])
        .args(["--start", &start.to_string()])
        .output()
        .unwrap();
    assert!(generated.status.success());
    let text = String::from_utf8(generated.stdout).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let mut by_hour: std::collections::BTreeMap<u64, Vec<&str>> = Default::default();
    for line in text.lines() {
        let end: u64 = line
            .split(' ')
            .nth(11)
            .and_then(|end| end.parse().ok())
            .unwrap_or(start);
        by_hour.entry((end - start) / 3600).or_default().push(line);
    }
    assert!(
        by_hour.len() >= 3,
        "records spread over hours: {:?}",
        by_hour.keys()
    );
    for (hour, lines) in &by_hour {
        let account = if hour % 2 == 0 {
            "111111111111"
        } else {
            "222222222222"
        };
        let time = start + hour * 3600 + 300;
        let body = gzip(&format!("{V2_HEADER}\n{}\n", lines.join("\n")));
        let key = partitioned_key(
            account,
            "us-east-1",
            time,
            &format!("h{hour}"),
            "log.gz",
            hour % 2 == 1,
        );
        let path = dir.path().join(format!("h{hour}.log.gz"));
        std::fs::write(&path, &body).unwrap();
        files.push((key.clone(), path));
        put_object(&runtime, &s3, &key, body);
    }
    let analyze = |args: &[&str]| {
        let output = common::exporter::binary()
            .args([
                "analyze",
                "--output",
                "json",
                "--details",
                "--endpoint-url",
                &endpoint,
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    };
    // The listing's order (keys sorted): correlation depends on order.
    files.sort();
    let file_args: Vec<&str> = files
        .iter()
        .map(|(_, path)| path.to_str().unwrap())
        .collect();
    let local = analyze(&file_args);
    assert!(local["sessions"]["accepted"].as_u64().unwrap() > 50);
    assert_eq!(analyze(&[&format!("s3://{BUCKET}/")]), local);
    assert_eq!(analyze(&[&format!("s3://{BUCKET}/AWSLogs/")]), local);
    // A window: the same records kept, whichever partitions were listed.
    let since = (start + 3600).to_string();
    let until = (start + 2 * 3600).to_string();
    let window = ["--since", since.as_str(), "--until", until.as_str()];
    let mut local_args = window.to_vec();
    local_args.extend(&file_args);
    let local_window = analyze(&local_args);
    let mut s3_args = window.to_vec();
    let url = format!("s3://{BUCKET}/AWSLogs/");
    s3_args.push(&url);
    assert_eq!(analyze(&s3_args), local_window);
    assert!(local_window["records"]["total"].as_u64() < local["records"]["total"].as_u64());
}

/// An object delivered after a newer one of the same interface: its lone
/// record is already past its grace on the interface's watermark when it
/// arrives, and the wall clock (less the object delay) will not reach it
/// for minutes. It is decided once its object is counted, not left pending
/// until more records of its interface come (maybe never); the pair in the
/// same late object still pairs.
#[test]
fn a_late_objects_lone_record_is_decided_once_the_object_is_counted() {
    let moto = Moto::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (s3, sqs) = (
        s3_client(&moto.endpoint_url()),
        sqs_client(&moto.endpoint_url()),
    );
    let queue_url = bucket_notifying_queue(&s3, &sqs, &runtime, None);
    let config = format!(
        "[s3]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\nqueue_url = \"{queue_url}\"\n",
        moto.endpoint_url()
    );
    let put = |key: &str, body: Vec<u8>| put_object(&runtime, &s3, key, body);
    let account = "111111111111";
    let eni = "eni-0a000000000000001";
    let t = a_minute_ago();
    let text = |records: &[String]| format!("{V2_HEADER}\n{}\n", records.join("\n"));
    let newer = [
        record(
            account,
            &format!("{eni} 198.51.100.8 10.0.0.10 40001 443 ACCEPT"),
            t,
        ),
        record(
            account,
            &format!("{eni} 10.0.0.10 198.51.100.8 443 40001 ACCEPT"),
            t,
        ),
    ];
    // Five minutes older than the newer object's records: past the 2m
    // grace on the interface's watermark.
    let late = [
        record(
            account,
            &format!("{eni} 198.51.100.10 10.0.0.10 40003 80 ACCEPT"),
            t - 300,
        ),
        record(
            account,
            &format!("{eni} 198.51.100.9 10.0.0.10 40002 5432 ACCEPT"),
            t - 300,
        ),
        record(
            account,
            &format!("{eni} 10.0.0.10 198.51.100.10 80 40003 ACCEPT"),
            t - 300,
        ),
    ];

    let mut exporter = Exporter::start(Some(&config), &[]);
    put(
        &key(account, "us-east-1", t, "newer", "log.gz"),
        gzip(&text(&newer)),
    );
    exporter.wait_for("the newer object counted", |s: &Scrape| {
        (s.sum("vpcflow_records_total", &[]) == 2.0).then_some(())
    });
    put(
        &key(account, "us-east-1", t - 300, "late", "log.gz"),
        gzip(&text(&late)),
    );
    let done = exporter.wait_for("the late object's sessions decided", |s: &Scrape| {
        (s.sessions("unanswered") >= 1.0 && s.sessions("accepted") >= 2.0).then(|| s.clone())
    });
    assert_eq!(done.sum("vpcflow_records_total", &[]), 5.0);
    assert_eq!(done.sessions("accepted"), 2.0, "{}", done.flow_lines());
    assert_eq!(done.sessions("unanswered"), 1.0);
    assert_eq!(done.sum("vpcflow_pending_sessions", &[]), 0.0);

    // The unanswered session was decided with no object in hand; its
    // proof reads the account-region folder again, listed by its times,
    // and finds it.
    let (_, body) = exporter.get("/api/v1/sessions?verdict=unanswered");
    let listed: serde_json::Value = serde_json::from_str(&body).unwrap();
    let command = listed["sessions"][0]["inspect"]
        .as_str()
        .unwrap()
        .to_owned();
    let folder = format!("s3://{BUCKET}/AWSLogs/{account}/vpcflowlogs/us-east-1/");
    assert!(command.contains(&folder), "{command}");
    let words: Vec<&str> = command.split_whitespace().collect();
    assert_eq!(words[..2], ["vpc-flow-exporter", "analyze"], "{command}");
    let output = common::exporter::binary()
        .args(&words[1..])
        .args(["--output", "json"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let proof: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let details = proof["details"].as_array().unwrap();
    assert!(
        details
            .iter()
            .any(|session| session["verdict"] == "unanswered"
                && session["responder"] == "10.0.0.10:5432"),
        "{command}: {proof}"
    );
}

/// The queue `flow-logs` and the bucket, which notifies it of every created
/// object. `redrive_policy`: the queue's `RedrivePolicy` (a dead-letter
/// queue); without one a redelivery always comes back to the exporter.
fn bucket_notifying_queue(
    s3: &aws_sdk_s3::Client,
    sqs: &aws_sdk_sqs::Client,
    runtime: &tokio::runtime::Runtime,
    redrive_policy: Option<String>,
) -> String {
    let mut create = sqs.create_queue().queue_name("flow-logs");
    if let Some(policy) = redrive_policy {
        create = create.attributes(QueueAttributeName::RedrivePolicy, policy);
    }
    let queue_url = runtime
        .block_on(create.send())
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    runtime
        .block_on(s3.create_bucket().bucket(BUCKET).send())
        .unwrap();
    let notification = aws_sdk_s3::types::NotificationConfiguration::builder()
        .queue_configurations(
            aws_sdk_s3::types::QueueConfiguration::builder()
                .queue_arn("arn:aws:sqs:us-east-1:123456789012:flow-logs")
                .events(aws_sdk_s3::types::Event::from("s3:ObjectCreated:*"))
                .build()
                .unwrap(),
        )
        .build();
    runtime
        .block_on(
            s3.put_bucket_notification_configuration()
                .bucket(BUCKET)
                .notification_configuration(notification)
                .send(),
        )
        .unwrap();
    queue_url
}

/// With `[state]`: the exporter counts an object, checkpoints, and is
/// killed (`kill -9`) before its message is deleted (every `DeleteMessage`
/// fails through the fault proxy). SQS hands the message out again: the
/// successor takes it for a duplicate, and pairs the reply of the next
/// object with the request its predecessor read. Summed over the two
/// processes every record and session is counted once; the queue drains.
/// A corrupt state file is then ignored, logged and counted.
#[test]
fn kill_9_before_the_delete_counts_each_object_and_session_once() {
    use common::fault_proxy::{Fault, FaultProxy};
    let moto = Moto::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (s3, sqs) = (
        s3_client(&moto.endpoint_url()),
        sqs_client(&moto.endpoint_url()),
    );
    let queue_url = bucket_notifying_queue(&s3, &sqs, &runtime, None);
    let proxy = FaultProxy::start(&moto.endpoint_url());
    proxy.set(Fault::Status(500), Some("DeleteMessage"));
    let state = tempfile::tempdir().unwrap();
    let config = format!(
        "[s3]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\nqueue_url = \"{queue_url}\"\nvisibility_timeout = \"3s\"\n\n[state]\ndirectory = \"{}\"\n",
        proxy.url(),
        state.path().display()
    );
    let put = |key: &str, body: Vec<u8>| put_object(&runtime, &s3, key, body);
    let account = "111111111111";
    let eni = "eni-0a000000000000001";
    let t = a_minute_ago();
    // A whole session, and a request whose reply is in the next object.
    let first = [
        record(
            account,
            &format!("{eni} 198.51.100.8 10.0.0.10 40001 443 ACCEPT"),
            t,
        ),
        record(
            account,
            &format!("{eni} 10.0.0.10 198.51.100.8 443 40001 ACCEPT"),
            t,
        ),
        record(
            account,
            &format!("{eni} 198.51.100.7 10.0.0.10 40000 22 ACCEPT"),
            t,
        ),
    ];
    let reply = record(
        account,
        &format!("{eni} 10.0.0.10 198.51.100.7 22 40000 ACCEPT"),
        t,
    );
    let text = |records: &[String]| format!("{V2_HEADER}\n{}\n", records.join("\n"));
    let checkpoints = |scrape: &Scrape, outcome| {
        scrape.sum("vpcflow_state_checkpoints_total", &[("outcome", outcome)])
    };
    let objects =
        |scrape: &Scrape, outcome| scrape.sum("vpcflow_s3_objects_total", &[("outcome", outcome)]);
    let records = |scrape: &Scrape| scrape.sum("vpcflow_records_total", &[]);

    let mut exporter = Exporter::start(Some(&config), &[]);
    put(
        &key(account, "us-east-1", t, "one", "log.gz"),
        gzip(&text(&first)),
    );
    let before = exporter.wait_for("the object counted, its delete failed", |s: &Scrape| {
        let failed = s.sum(
            "vpcflow_sqs_messages_total",
            &[("outcome", "delete_failed")],
        );
        (objects(s, "counted") == 1.0 && failed >= 1.0).then(|| s.clone())
    });
    assert_eq!(records(&before), 3.0);
    assert_eq!(
        before.sessions("accepted"),
        1.0,
        "the pair; the request waits"
    );
    assert!(checkpoints(&before, "written") >= 1.0);
    exporter.kill();

    proxy.clear();
    let mut successor = Exporter::start(Some(&config), &[]);
    successor.wait_for(
        "the redelivered message taken for a duplicate",
        |s: &Scrape| (objects(s, "duplicate") >= 1.0).then_some(()),
    );
    put(
        &key(account, "us-east-1", t + 300, "two", "log.gz"),
        gzip(&text(&[reply])),
    );
    let after = successor.wait_for("the reply counted", |s: &Scrape| {
        (objects(s, "counted") == 1.0 && s.sessions("accepted") >= 1.0).then(|| s.clone())
    });
    assert_eq!(
        checkpoints(&after, "restored"),
        1.0,
        "{}",
        successor.log_tail()
    );
    assert_eq!(records(&after), 1.0, "only the new object's record");
    assert_eq!(
        after.sessions("accepted"),
        1.0,
        "paired with the restored request"
    );
    assert_eq!(after.sessions("unanswered"), 0.0);
    assert_eq!(records(&before) + records(&after), 4.0);
    common::wait_until(Duration::from_secs(30), "the queue drained", || {
        (queue_counts(&sqs, &queue_url, &runtime) == (0, 0)).then_some(())
    });
    successor.kill();

    // Half a file, as a full disk might leave it behind.
    let main = std::fs::read_dir(state.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("s3-") && name.ends_with(".json") && !name.ends_with("-counted.json")
        })
        .expect("the checkpoint file");
    let written = std::fs::read(&main).unwrap();
    std::fs::write(&main, &written[..written.len() / 2]).unwrap();
    let mut fresh = Exporter::start(Some(&config), &[]);
    let scrape = fresh.wait_for("the corrupt checkpoint counted", |s: &Scrape| {
        (checkpoints(s, "corrupt") >= 1.0).then(|| s.clone())
    });
    assert_eq!(checkpoints(&scrape, "corrupt"), 1.0);
    assert_eq!(checkpoints(&scrape, "restored"), 0.0);
    assert!(
        fresh.log_tail().contains("Checkpoint ignored (corrupt)"),
        "{}",
        fresh.log_tail()
    );
    fresh.kill();
}

/// `[ec2] describe_interfaces` with `[s3]`: each object's interfaces are
/// described in the region its key names, and `vpcflow_interface_info`
/// gets their `Name` tag, VPC and the account EC2 tells. Moto keeps one
/// EC2 per region: an interface created in eu-west-1 is found only there.
#[test]
fn ec2_describes_each_objects_interfaces_in_the_region_of_its_key() {
    let moto = Moto::start();
    let endpoint = moto.endpoint_url();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (s3, sqs) = (s3_client(&endpoint), sqs_client(&endpoint));
    let queue_url = bucket_notifying_queue(&s3, &sqs, &runtime, None);
    // Moto's account.
    let account = "123456789012";
    let (web, web_vpc) =
        runtime.block_on(named_interface(&endpoint, "us-east-1", "10.0.0.10", "web"));
    let (db, db_vpc) = runtime.block_on(named_interface(&endpoint, "eu-west-1", "10.1.0.10", "db"));
    let config = format!(
        "[s3]\nregion = \"us-east-1\"\nendpoint_url = \"{endpoint}\"\nqueue_url = \"{queue_url}\"\n\n[ec2]\ndescribe_interfaces = true\nendpoint_url = \"{endpoint}\"\n"
    );
    let mut exporter = Exporter::start(Some(&config), &[]);
    let t = a_minute_ago();
    let text = |records: &[String]| format!("{V2_HEADER}\n{}\n", records.join("\n"));
    for (eni, region, address) in [
        (&web, "us-east-1", "10.0.0.10"),
        (&db, "eu-west-1", "10.1.0.10"),
    ] {
        let records = [
            record(
                account,
                &format!("{eni} 198.51.100.8 {address} 40001 443 ACCEPT"),
                t,
            ),
            record(
                account,
                &format!("{eni} {address} 198.51.100.8 443 40001 ACCEPT"),
                t,
            ),
        ];
        put_object(
            &runtime,
            &s3,
            &key(account, region, t, region, "log.gz"),
            gzip(&text(&records)),
        );
    }
    let named = |scrape: &Scrape, eni: &str, name: &str, region: &str, vpc: &str| {
        scrape.sum(
            "vpcflow_interface_info",
            &[
                ("interface_id", eni),
                ("name", name),
                ("account_id", account),
                ("region", region),
                ("vpc_id", vpc),
                ("type", "interface"),
            ],
        ) == 1.0
    };
    let done = exporter.wait_for("both interfaces named by EC2", |s: &Scrape| {
        (named(s, &web, "web", "us-east-1", &web_vpc) && named(s, &db, "db", "eu-west-1", &db_vpc))
            .then(|| s.clone())
    });
    assert_eq!(
        done.sum(
            "vpcflow_api_calls_total",
            &[
                ("operation", "DescribeNetworkInterfaces"),
                ("outcome", "success")
            ]
        ),
        2.0,
        "one call per region"
    );
    assert_eq!(
        done.sum("vpcflow_interface_info", &[("interface_id", &web)]),
        1.0,
        "one series per interface"
    );
    // The exact address from EC2: both sessions are accepted, with their
    // interface's name on the landing page's API.
    let done = exporter.wait_for("both sessions decided", |s: &Scrape| {
        (s.sessions("accepted") == 2.0).then(|| s.clone())
    });
    assert_eq!(done.sum("vpcflow_records_total", &[]), 4.0);
}

/// A VPC, a subnet and an interface with `address` and a `Name` tag in
/// `region`; the interface's and the VPC's ids.
async fn named_interface(
    endpoint: &str,
    region: &str,
    address: &str,
    name: &str,
) -> (String, String) {
    use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
    let ec2 = ec2_client(endpoint, region);
    let cidr = format!("{}.0.0/16", address.rsplitn(3, '.').last().unwrap());
    let vpc = ec2.create_vpc().cidr_block(&cidr).send().await.unwrap();
    let vpc_id = vpc.vpc().unwrap().vpc_id().unwrap().to_string();
    let subnet = ec2
        .create_subnet()
        .vpc_id(&vpc_id)
        .cidr_block(cidr.replace(".0.0/16", ".0.0/24"))
        .send()
        .await
        .unwrap();
    let subnet_id = subnet.subnet().unwrap().subnet_id().unwrap().to_string();
    let tag = TagSpecification::builder()
        .resource_type(ResourceType::NetworkInterface)
        .tags(Tag::builder().key("Name").value(name).build())
        .build();
    let interface = ec2
        .create_network_interface()
        .subnet_id(&subnet_id)
        .private_ip_address(address)
        .tag_specifications(tag)
        .send()
        .await
        .unwrap();
    let id = interface
        .network_interface()
        .unwrap()
        .network_interface_id()
        .unwrap();
    (id.to_string(), vpc_id)
}

/// Counts an object the slow way: holds the reader's task (as the
/// exporter's sink does with CPU work) for `busy`, and says when it starts.
struct SlowSink {
    busy: Duration,
    started: Option<tokio::sync::oneshot::Sender<()>>,
    counted: Vec<String>,
}

impl ObjectSink for SlowSink {
    type Ready = bytes::Bytes;

    fn preparer(&self) -> Preparer<bytes::Bytes> {
        Arc::new(Ok)
    }

    async fn count(&mut self, object: &CreatedObject, _: bytes::Bytes) -> std::io::Result<u64> {
        if let Some(started) = self.started.take() {
            let _ = started.send(());
        }
        tokio::task::block_in_place(|| std::thread::sleep(self.busy));
        self.counted.push(object.key.clone());
        Ok(1)
    }

    fn commit(&mut self, _: &Seen) {}
}

#[derive(Default)]
struct Outcomes(Vec<ObjectOutcome>);

impl ReaderObserver for Outcomes {
    fn object(&mut self, _: &CreatedObject, outcome: ObjectOutcome, _: u64, _: u64) {
        self.0.push(outcome);
    }

    fn message(&mut self, _: MessageOutcome) {}
}

/// A visibility timeout of 2 s and an object that takes 5 s to count: the
/// reader extends the message's visibility while it counts, so another
/// reader of the queue (a second replica) gets nothing meanwhile, and the
/// object is counted once and its message deleted.
#[test]
fn a_message_stays_hidden_while_its_object_takes_longer_than_the_visibility_timeout() {
    static_credentials_in_environment();
    let moto = Moto::start();
    let endpoint = moto.endpoint_url();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (s3, sqs) = (s3_client(&endpoint), sqs_client(&endpoint));
    let queue_url = bucket_notifying_queue(&s3, &sqs, &runtime, None);
    let object = key(
        "111111111111",
        "us-east-1",
        a_minute_ago(),
        "slow",
        "log.gz",
    );
    put_object(&runtime, &s3, &object, gzip(V2_HEADER));
    let (started, counting) = tokio::sync::oneshot::channel();
    let mut sink = SlowSink {
        busy: Duration::from_secs(5),
        started: Some(started),
        counted: Vec::new(),
    };
    let mut outcomes = Outcomes::default();
    let seen_by_the_other = runtime.block_on(async {
        // Another reader, from the moment counting starts until just before
        // it ends; it hands what it gets straight back (visibility 0).
        let other = {
            let (sqs, queue_url) = (sqs.clone(), queue_url.clone());
            tokio::spawn(async move {
                counting.await.unwrap();
                let until = tokio::time::Instant::now() + Duration::from_millis(4500);
                let mut got = Vec::new();
                while tokio::time::Instant::now() < until {
                    let received = sqs
                        .receive_message()
                        .queue_url(&queue_url)
                        .max_number_of_messages(10)
                        .visibility_timeout(0)
                        .wait_time_seconds(1)
                        .send()
                        .await
                        .unwrap();
                    got.extend(
                        received
                            .messages()
                            .iter()
                            .filter_map(|m| m.body().map(str::to_string)),
                    );
                }
                got
            })
        };
        let api = AwsS3Api::new(
            Some("us-east-1".into()),
            Some(endpoint.clone()),
            queue_url.clone(),
            Arc::new(NoopObserver),
        )
        .await;
        let mut reader = Reader::new(api, Seen::new(100, 3600)).with_visibility(2);
        // The object's message (and perhaps S3's test event first).
        while sink.counted.is_empty() {
            reader.cycle(&mut sink, &mut outcomes, || 0).await.unwrap();
        }
        other.await.unwrap()
    });
    let handed_out = seen_by_the_other
        .iter()
        .filter(|body| body.contains("slow"))
        .count();
    assert_eq!(
        handed_out, 0,
        "the message was handed to another reader {handed_out} times while its object was counted"
    );
    assert_eq!(sink.counted, [object]);
    assert_eq!(outcomes.0, [ObjectOutcome::Counted]);
    assert_eq!(queue_counts(&sqs, &queue_url, &runtime), (0, 0), "deleted");
}
