//! `vpc-flow-exporter inspect` end to end: the bundled sample's records in a
//! moto log group give the same report as `analyze` on the same records in
//! a file.
//!
//! The sample's times are from 2024 and CloudWatch refuses events older
//! than 14 days, so every record's start and end are shifted into the last
//! hour, for the file and the log group alike. CloudWatch has no header
//! line: the log group gets the records only, one stream per interface,
//! each event timestamped with its record's start, and `inspect` is told
//! the format with `--log-format`; the file keeps the header.
//!
//! The binary runs in `common::exporter`'s clean environment, where
//! `AWS_ENDPOINT_URL` is a closed loopback port: only the `--endpoint-url`
//! given can answer.

// Each test crate uses a part of common; its re-exports may go unused.
mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::exporter::{self, VERDICTS, now_s, run_json};
use common::{Moto, repo_root};
use serde_json::Value;

const GROUP: &str = "/vpc/flow-logs";
const SAMPLE: &str = "examples/sample-flows.log";
/// Field positions in the sample's format (its header line).
const INTERFACE: usize = 2;
const START: usize = 10;
const END: usize = 11;

/// The sample shifted so its first record starts 30 minutes ago.
struct Shifted {
    header: String,
    records: Vec<String>,
    /// Unix seconds, a minute before the first record.
    since: i64,
}

fn shifted_sample() -> Shifted {
    let text = std::fs::read_to_string(repo_root().join(SAMPLE)).expect("read the sample");
    let mut lines = text.lines();
    let header = lines.next().expect("a header line").to_owned();
    assert!(header.starts_with("version "), "{header}");
    let records: Vec<Vec<String>> = lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split(' ').map(str::to_owned).collect())
        .collect();
    let first_start = records
        .iter()
        .map(|r| {
            r[START]
                .parse::<i64>()
                .expect("every sample record has a start")
        })
        .min()
        .expect("records");
    let base = now_s() - 30 * 60;
    let offset = base - first_start;
    let records = records
        .into_iter()
        .map(|mut fields| {
            for i in [START, END] {
                let time: i64 = fields[i].parse().expect("a time");
                fields[i] = (time + offset).to_string();
            }
            fields.join(" ")
        })
        .collect();
    Shifted {
        header,
        records,
        since: base - 60,
    }
}

/// One stream per interface (`eni-…-all`), events timestamped with the
/// record's start, as a flow log publishes them.
fn seed(moto: &Moto, records: &[String]) {
    let mut interfaces: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for record in records {
        let eni = record.split(' ').nth(INTERFACE).expect("an interface");
        interfaces.entry(eni).or_default().push(record.clone());
    }
    let interfaces: Vec<(&str, Vec<String>)> = interfaces.into_iter().collect();
    exporter::seed(moto, GROUP, &interfaces);
}

fn write_file(dir: &Path, shifted: &Shifted) -> String {
    let path = dir.join("shifted-flows.log");
    let mut text = shifted.header.clone();
    text.push('\n');
    for record in &shifted.records {
        text.push_str(record);
        text.push('\n');
    }
    std::fs::write(&path, text).expect("write the shifted file");
    path.display().to_string()
}

fn inspect(moto: &Moto, shifted: &Shifted, extra: &[&str]) -> Value {
    let endpoint = moto.endpoint_url();
    let since = shifted.since.to_string();
    let mut args = vec![
        "inspect",
        "--log-group",
        GROUP,
        "--endpoint-url",
        &endpoint,
        "--region",
        "us-east-1",
        "--since",
        &since,
        "--log-format",
        &shifted.header,
        "--output",
        "json",
    ];
    args.extend_from_slice(extra);
    run_json(&args)
}

fn analyze(file: &str, extra: &[&str]) -> Value {
    let mut args = vec!["analyze", "--output", "json"];
    args.extend_from_slice(extra);
    args.push(file);
    run_json(&args)
}

fn total_sessions(report: &Value) -> u64 {
    report["sessions"]
        .as_object()
        .expect("sessions object")
        .values()
        .map(|v| v.as_u64().expect("a count"))
        .sum()
}

#[test]
fn inspect_reports_what_analyze_reports_on_the_same_records() {
    let moto = Moto::start();
    let shifted = shifted_sample();
    seed(&moto, &shifted.records);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write_file(dir.path(), &shifted);

    let from_cloudwatch = inspect(&moto, &shifted, &[]);
    let from_file = analyze(&file, &[]);
    assert_eq!(
        from_cloudwatch["sessions"], from_file["sessions"],
        "sessions: inspect against analyze"
    );
    assert_eq!(
        from_cloudwatch["records"], from_file["records"],
        "records: inspect against analyze"
    );
    assert_eq!(
        from_cloudwatch["records"]["total"].as_u64(),
        Some(shifted.records.len() as u64),
        "every record read once"
    );
    let sessions = &from_cloudwatch["sessions"];
    for verdict in VERDICTS {
        assert!(
            sessions[verdict].as_u64().is_some_and(|n| n > 0),
            "the sample has every verdict: {sessions}"
        );
    }
}

/// Session by session, too, but for `direction`: CloudWatch returns each
/// interface's records by start time, the file has them in another order,
/// and the first session of an interface whose address is not configured
/// is judged before the address is learned ("the request's destination is
/// taken as local"), so its direction may differ (README: "Directions of
/// the first sessions").
#[test]
fn inspect_details_match_analyze() {
    let moto = Moto::start();
    let shifted = shifted_sample();
    seed(&moto, &shifted.records);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write_file(dir.path(), &shifted);

    let from_cloudwatch = inspect(&moto, &shifted, &["--details"]);
    let from_file = analyze(&file, &["--details"]);
    let (cloudwatch, file) = (
        from_cloudwatch["details"].as_array().expect("details"),
        from_file["details"].as_array().expect("details"),
    );
    let without_direction = |details: &[Value]| -> Vec<Value> {
        details
            .iter()
            .map(|detail| {
                let mut detail = detail.clone();
                detail
                    .as_object_mut()
                    .expect("an object")
                    .remove("direction");
                detail
            })
            .collect()
    };
    let (cloudwatch, file) = (without_direction(cloudwatch), without_direction(file));
    let only = |a: &[Value], b: &[Value]| -> Vec<String> {
        a.iter()
            .filter(|d| !b.contains(d))
            .map(Value::to_string)
            .collect()
    };
    let (only_cloudwatch, only_file) = (only(&cloudwatch, &file), only(&file, &cloudwatch));
    assert!(
        only_cloudwatch.is_empty() && only_file.is_empty() && cloudwatch.len() == file.len(),
        "session details differ\nonly from inspect:\n  {}\nonly from analyze:\n  {}",
        only_cloudwatch.join("\n  "),
        only_file.join("\n  ")
    );
}

#[test]
fn inspect_narrows_to_one_interface() {
    let moto = Moto::start();
    let shifted = shifted_sample();
    seed(&moto, &shifted.records);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write_file(dir.path(), &shifted);

    let eni = "eni-00000000000000001";
    let one = inspect(&moto, &shifted, &["--interface", eni, "--details"]);
    let all = inspect(&moto, &shifted, &[]);
    assert_eq!(
        one["sessions"],
        analyze(&file, &["--interface", eni])["sessions"]
    );
    let records_of_eni = shifted
        .records
        .iter()
        .filter(|r| r.split(' ').nth(INTERFACE) == Some(eni))
        .count() as u64;
    assert_eq!(one["records"]["total"].as_u64(), Some(records_of_eni));
    let (n_one, n_all) = (total_sessions(&one), total_sessions(&all));
    assert!(0 < n_one && n_one < n_all, "{n_one} of {n_all} sessions");
    let details = one["details"].as_array().expect("details");
    assert_eq!(details.len() as u64, n_one);
    assert!(
        details.iter().all(|d| d["interface_id"] == eni),
        "only {eni}: {details:?}"
    );
}

/// `inspect --follow` against a live log group: the sessions already there
/// are printed first, a session whose records land later is printed when it
/// is decided, each once although polls re-read their overlap, and SIGTERM
/// ends it cleanly. Records end a few seconds before they are put, as a
/// 1-minute flow log delivers them, so the wall-clock watermark (now less
/// the delivery delay) passes them within seconds with `--reply-grace 2s`.
#[test]
fn follow_prints_sessions_as_they_are_decided() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    const ENI: &str = "eni-0f0110";
    let record = |src: &str, dst: &str, sport: u16, dport: u16, action: &str, start: i64| {
        format!(
            "2 123456789010 {ENI} {src} {dst} {sport} {dport} 6 3 180 {start} {} {action} OK",
            start + 2
        )
    };
    let now = now_s();
    let moto = Moto::start();
    exporter::seed(
        &moto,
        GROUP,
        &[(
            ENI,
            vec![
                // Established: both directions, decided at once.
                record("10.0.0.5", "10.0.9.9", 40000, 443, "ACCEPT", now - 6),
                record("10.0.9.9", "10.0.0.5", 443, 40000, "ACCEPT", now - 6),
                // Let in, never answered: decided after the grace.
                record("192.0.2.7", "10.0.0.5", 50000, 5432, "ACCEPT", now - 5),
            ],
        )],
    );
    let endpoint = moto.endpoint_url();
    let mut child = exporter::binary()
        .args([
            "inspect",
            "--follow",
            "--poll-interval",
            "1s",
            "--reply-grace",
            "2s",
            "--output",
            "json",
            "--log-group",
            GROUP,
            "--endpoint-url",
            &endpoint,
            "--region",
            "us-east-1",
            "--since",
            "5m",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start inspect --follow");
    let (lines_in, lines) = mpsc::channel::<String>();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_in.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen: Vec<Value> = Vec::new();
    let mut wait_for = |n: usize, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(40);
        while seen.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => seen.push(
                    serde_json::from_str(&line)
                        .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}")),
                ),
                Err(_) => panic!("{what}: {} lines after 40 s: {seen:?}", seen.len()),
            }
        }
        seen.clone()
    };

    let first = wait_for(2, "the sessions already in the log group");
    let verdicts: Vec<&str> = first
        .iter()
        .map(|s| s["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts, ["accepted", "unanswered"], "{first:?}");
    assert_eq!(first[1]["initiator"], "192.0.2.7:50000");
    assert_eq!(first[1]["responder"], "10.0.0.5:5432");
    assert_eq!(first[1]["interface_id"], ENI);

    // A session whose records land while following.
    let later = now_s();
    exporter::put_records(
        &moto,
        GROUP,
        ENI,
        &[record(
            "198.51.100.3",
            "10.0.0.5",
            51000,
            22,
            "REJECT",
            later - 4,
        )],
    );
    let all = wait_for(3, "the session put while following");
    assert_eq!(all[2]["verdict"], "rejected_inbound", "{all:?}");
    assert_eq!(all[2]["initiator"], "198.51.100.3:51000");

    // Polls re-read their overlap: nothing is printed twice.
    std::thread::sleep(Duration::from_secs(4));
    let extra: Vec<String> = lines.try_iter().collect();
    assert!(extra.is_empty(), "printed again: {extra:?}");

    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let exit = common::wait_until(Duration::from_secs(10), "inspect --follow to exit", || {
        child.try_wait().expect("wait")
    });
    assert!(exit.success(), "exit after SIGTERM: {exit}");
}

#[test]
fn follow_with_until_is_a_usage_error() {
    let output = exporter::binary()
        .args(["inspect", "--follow", "--log-group", GROUP, "--until", "5m"])
        .output()
        .expect("run inspect");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--until: --follow reads on from now"),
        "{stderr}"
    );
}
