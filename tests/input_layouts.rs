//! Every file layout people hold flow records in, through the real
//! `analyze` binary, with the counts and verdicts each must give: S3 objects
//! concatenated (gzip members whose headers differ), a CloudWatch Logs
//! export file, `aws logs filter-log-events` output, subscription payloads,
//! Parquet written by a real writer (pyarrow, through
//! `scripts/text-to-parquet`, with the column types AWS documents and other
//! integer widths), and field names spelled with `_` or with a typo.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_vpc-flow-exporter");

const V2_HEADER: &str = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status";
const REQUEST: &str =
    "2 123456789010 eni-a 198.51.100.7 10.0.0.10 40000 22 6 1 44 1700000000 1700000050 ACCEPT OK";
const REPLY: &str =
    "2 123456789010 eni-a 10.0.0.10 198.51.100.7 22 40000 6 1 40 1700000000 1700000050 ACCEPT OK";
const REJECTED: &str =
    "2 123456789010 eni-b 198.51.100.8 10.0.1.10 40001 3389 6 1 40 1700000100 1700000150 REJECT OK";

fn gzip(text: &str) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(text.as_bytes()).unwrap();
    encoder.finish().unwrap()
}

fn lines(lines: &[&str]) -> String {
    lines.iter().map(|line| format!("{line}\n")).collect()
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("analyze")
        .args(["--output", "json"])
        .args(args)
        .env_clear()
        .output()
        .expect("run vpc-flow-exporter")
}

/// `analyze` on `files`: the JSON report and stderr.
fn analyze(args: &[&str], files: &[&Path]) -> (Value, String) {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(files.iter().map(|path| path.to_str().unwrap()));
    let output = run(&all);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "analyze failed: {stderr}");
    (serde_json::from_slice(&output.stdout).unwrap(), stderr)
}

fn counts(report: &Value) -> (Value, Value) {
    (report["records"].clone(), report["sessions"].clone())
}

fn records(total: u64, ok: u64, malformed: u64) -> Value {
    json!({"total": total, "ok": ok, "nodata": 0, "skipdata": 0, "malformed": malformed})
}

fn sessions(accepted: u64, rejected_inbound: u64, unanswered: u64) -> Value {
    json!({"accepted": accepted, "rejected_inbound": rejected_inbound,
           "rejected_outbound": 0, "unanswered": unanswered, "refused": 0})
}

#[test]
fn concatenated_gzip_objects_whose_headers_differ() {
    let dir = tempfile::tempdir().unwrap();
    // Two S3 objects in one file, as `cat a.log.gz b.log.gz` makes them: the
    // second has fewer fields and `_` in its header.
    let short_header =
        "interface_id srcaddr dstaddr srcport dstport protocol start end action log_status";
    let mut bytes = gzip(&lines(&[V2_HEADER, REQUEST, REJECTED]));
    bytes.extend(gzip(&lines(&[
        short_header,
        "eni-a 10.0.0.10 198.51.100.7 22 40000 6 1700000000 1700000050 ACCEPT OK",
    ])));
    let path = dir.path().join("objects.log.gz");
    std::fs::write(&path, &bytes).unwrap();
    let (report, stderr) = analyze(&[], &[&path]);
    assert_eq!(
        counts(&report),
        (records(3, 3, 0), sessions(1, 1, 0)),
        "{stderr}"
    );
    assert!(!stderr.contains("warning"), "{stderr}");
    // The same through stdin, as `zcat *.log.gz | analyze -` gives it.
    let mut child = Command::new(BIN)
        .args(["analyze", "--output", "json", "-"])
        .env_clear()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    let output = child.wait_with_output().unwrap();
    let piped: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(counts(&piped), counts(&report));
}

#[test]
fn a_cloudwatch_export_file_in_its_stream_folder() {
    let dir = tempfile::tempdir().unwrap();
    // An export task writes <prefix>/<task>/<stream>/000000.gz; this flow
    // log's format has no interface-id and no times: the folder and the
    // timestamps stand in.
    let folder = dir.path().join("exportedlogs/1b2c/eni-0a1b2c3d-all");
    std::fs::create_dir_all(&folder).unwrap();
    let text = lines(&[
        "2023-11-14T22:13:20.000Z 198.51.100.7 10.0.0.10 40000 22 6 ACCEPT",
        "2023-11-14T22:13:21.000Z 10.0.0.10 198.51.100.7 22 40000 6 ACCEPT",
        "2023-11-14T22:20:00.000Z 198.51.100.9 10.0.0.10 40002 5432 6 ACCEPT",
    ]);
    let path = folder.join("000000.gz");
    std::fs::write(&path, gzip(&text)).unwrap();
    let format = "srcaddr dstaddr srcport dstport protocol action";
    let (report, stderr) = analyze(&["--details", "--log-format", format], &[&path]);
    assert_eq!(
        counts(&report),
        (records(3, 3, 0), sessions(1, 0, 1)),
        "{stderr}"
    );
    assert_eq!(report["details"][0]["interface_id"], "eni-0a1b2c3d");
    // The export's lines are v2 records when the flow log used the default.
    let plain = dir.path().join("v2-export.txt");
    std::fs::write(
        &plain,
        lines(&[
            &format!("2023-11-14T22:13:20.000Z {REQUEST}"),
            &format!("2023-11-14T22:13:20.000Z {REPLY}"),
        ]),
    )
    .unwrap();
    let (report, _) = analyze(&[], &[&plain]);
    assert_eq!(counts(&report), (records(2, 2, 0), sessions(1, 0, 0)));
}

#[test]
fn cli_json_and_subscription_payloads() {
    let dir = tempfile::tempdir().unwrap();
    let event = |stream: &str, message: &str| {
        json!({"logStreamName": stream, "timestamp": 1_700_000_000_000_i64,
               "message": message, "ingestionTime": 1_700_000_300_000_i64, "eventId": "1"})
    };
    let cli = json!({
        "events": [event("eni-a-all", REQUEST), event("eni-a-all", REPLY), event("eni-b-all", REJECTED)],
        "searchedLogStreams": [{"logStreamName": "eni-a-all", "searchedCompletely": true}]
    });
    let cli_path = dir.path().join("filter-log-events.json");
    std::fs::write(&cli_path, serde_json::to_vec_pretty(&cli).unwrap()).unwrap();
    let (report, stderr) = analyze(&[], &[&cli_path]);
    assert_eq!(
        counts(&report),
        (records(3, 3, 0), sessions(1, 1, 0)),
        "{stderr}"
    );

    // Subscription payloads as Firehose writes them: gzip, back to back, a
    // control message first; the format lacks interface-id, the stream has it.
    let payload = |stream: &str, messages: &[&str]| {
        json!({"messageType": "DATA_MESSAGE", "owner": "123456789010", "logGroup": "/vpc/flow",
               "logStream": stream, "subscriptionFilters": ["to-firehose"],
               "logEvents": messages.iter().enumerate().map(|(id, message)| json!({
                   "id": id.to_string(), "timestamp": 1_700_000_000_000_i64, "message": message
               })).collect::<Vec<_>>()})
        .to_string()
    };
    let control = json!({"messageType": "CONTROL_MESSAGE", "owner": "CloudwatchLogs", "logGroup": "",
        "logStream": "", "subscriptionFilters": [], "logEvents": [{"id": "", "timestamp": 1_700_000_000_000_i64,
        "message": "CWL CONTROL MESSAGE: Checking health of destination Firehose."}]})
    .to_string();
    let text = [
        control,
        payload("eni-a-all", &["198.51.100.7 10.0.0.10 40000 22 6 ACCEPT"]),
        payload(
            "eni-a-all",
            &[
                "10.0.0.10 198.51.100.7 22 40000 6 ACCEPT",
                "198.51.100.9 10.0.0.10 40009 443 6 REJECT",
            ],
        ),
    ]
    .concat();
    let firehose = dir.path().join("firehose-object");
    std::fs::write(&firehose, gzip(&text)).unwrap();
    let format = "srcaddr dstaddr srcport dstport protocol action";
    let (report, stderr) = analyze(&["--log-format", format], &[&firehose]);
    assert_eq!(
        counts(&report),
        (records(3, 3, 0), sessions(1, 1, 0)),
        "{stderr}"
    );
    assert!(!stderr.contains("lacks"), "{stderr}");
}

#[test]
fn typos_and_missing_fields_are_told_once() {
    let dir = tempfile::tempdir().unwrap();
    let header =
        "version interface-id srcaddr dstaddr srcport dstport protocol tcp_flag start end action";
    let text = lines(&[
        header,
        "2 eni-a 198.51.100.7 10.0.0.10 40000 22 6 2 1700000000 1700000050 ACCEPT",
        header,
        "2 eni-a 10.0.0.10 198.51.100.7 22 40000 6 18 1700000000 1700000050 ACCEPT",
    ]);
    let path = dir.path().join("typo.log");
    std::fs::write(&path, text).unwrap();
    let (report, stderr) = analyze(&[], &[&path]);
    assert_eq!(counts(&report), (records(2, 2, 0), sessions(1, 0, 0)));
    assert_eq!(
        stderr
            .matches("`tcp_flag`: did you mean `tcp-flags`?")
            .count(),
        1,
        "{stderr}"
    );

    let lacking = dir.path().join("lacking.log");
    std::fs::write(
        &lacking,
        lines(&[
            "srcaddr dstaddr bytes",
            "10.0.0.1 10.0.0.2 40",
            "10.0.0.2 10.0.0.1 40",
        ]),
    )
    .unwrap();
    let (report, stderr) = analyze(&[], &[&lacking]);
    assert_eq!(counts(&report), (records(2, 2, 0), sessions(0, 0, 0)));
    assert_eq!(
        stderr
            .matches("lacks interface-id, srcport, dstport, protocol, action")
            .count(),
        1,
        "{stderr}"
    );
}

#[test]
fn input_format_forces_a_layout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flows.log");
    std::fs::write(&path, lines(&[REQUEST, REPLY])).unwrap();
    let (report, _) = analyze(&["--input-format", "text"], &[&path]);
    assert_eq!(counts(&report), (records(2, 2, 0), sessions(1, 0, 0)));
    // Forced to JSON, text is an error that names the file.
    let output = run(&["--input-format", "json", path.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("flows.log"), "{stderr}");
}

/// The venv's Python, which has pyarrow (scripts/install-test-deps).
fn python() -> std::path::PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} missing: run scripts/install-test-deps",
        python.display()
    );
    python
}

/// Writes `text` as Parquet with pyarrow (scripts/text-to-parquet).
fn to_parquet(text: &Path, parquet: &Path, args: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/text-to-parquet");
    let output = Command::new(python())
        .arg(script)
        .arg(text)
        .arg(parquet)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "text-to-parquet: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn parquet_written_by_pyarrow_gives_what_its_text_gives() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("rich.log");
    let generated = Command::new(BIN)
        .args([
            "generate",
            "--style",
            "rich",
            "--records",
            "3000",
            "--seed",
            "7",
        ])
        .output()
        .unwrap();
    assert!(generated.status.success());
    std::fs::write(&text, &generated.stdout).unwrap();
    let (expected, _) = analyze(&["--details"], &[&text]);
    assert!(expected["sessions"]["accepted"].as_u64().unwrap() > 100);
    // AWS's column types, several row groups; then other integer widths,
    // signed and unsigned, as tools that rewrite the files choose them.
    for (name, args) in [
        ("aws", &["--row-group-size", "1000"][..]),
        ("narrow", &["--widths", "narrow"][..]),
        (
            "unsigned",
            &["--widths", "unsigned", "--compression", "none"][..],
        ),
        // What pyarrow, Spark and Glue write by default; Polars' and
        // Trino's Zstd; LZ4 and Brotli.
        ("snappy", &["--compression", "snappy"][..]),
        ("zstd", &["--compression", "zstd"][..]),
        ("lz4", &["--compression", "lz4"][..]),
        ("brotli", &["--compression", "brotli"][..]),
    ] {
        let parquet = dir.path().join(format!("{name}.log.parquet"));
        to_parquet(&text, &parquet, args);
        let (report, stderr) = analyze(&["--details"], &[&parquet]);
        assert_eq!(report, expected, "{name}: {stderr}");
        assert!(!stderr.contains("warning"), "{name}: {stderr}");
    }
    // A Parquet file and a text file in one run; and Parquet through stdin.
    let parquet = dir.path().join("aws.log.parquet");
    let (both, _) = analyze(&[], &[&parquet, &text]);
    assert_eq!(
        both["records"]["total"].as_u64(),
        expected["records"]["total"].as_u64().map(|total| total * 2)
    );
    let mut child = Command::new(BIN)
        .args(["analyze", "--output", "json", "--details", "-"])
        .env_clear()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(&parquet).unwrap())
        .unwrap();
    let piped: Value = serde_json::from_slice(&child.wait_with_output().unwrap().stdout).unwrap();
    assert_eq!(piped, expected);
}

#[test]
fn parquet_nulls_are_absent_values_and_a_corrupt_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("nodata.log");
    std::fs::write(
        &text,
        lines(&[
            V2_HEADER,
            REQUEST,
            REPLY,
            "2 123456789010 eni-c - - - - - - - 1700000000 1700000060 - NODATA",
        ]),
    )
    .unwrap();
    let parquet = dir.path().join("nodata.log.parquet");
    to_parquet(&text, &parquet, &[]);
    let (report, stderr) = analyze(&[], &[&parquet]);
    assert_eq!(
        report["records"],
        json!({"total": 3, "ok": 2, "nodata": 1, "skipdata": 0, "malformed": 0}),
        "{stderr}"
    );
    assert_eq!(report["sessions"]["accepted"], 1);

    let mut corrupt = std::fs::read(&parquet).unwrap();
    let middle = corrupt.len() / 2;
    corrupt.truncate(middle);
    let broken = dir.path().join("broken.log.parquet");
    std::fs::write(&broken, corrupt).unwrap();
    let output = run(&[broken.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("broken.log.parquet"), "{stderr}");
}

#[test]
fn parquet_and_its_text_agree_on_malformed_values() {
    // Each bad in its own way, and as a record built from typed columns
    // must be bad: the same reasons, counts and sessions as the text.
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("bad.log");
    std::fs::write(
        &text,
        lines(&[
            V2_HEADER,
            REQUEST,
            "2 123456789010 eni-a 10.0.0.999 10.0.0.10 40001 22 6 1 44 1700000000 1700000050 ACCEPT OK",
            "2 123456789010 eni-a 198.51.100.7 10.0.0.10 70000 22 6 1 44 1700000000 1700000050 ACCEPT OK",
            "2 123456789010 eni-a 198.51.100.7 10.0.0.10 40003 22 6 1 44 1700000000 1700000050 ALLOW OK",
            "2 123456789010 eni-a 198.51.100.7 10.0.0.10 40004 22 6 1 44 1700000000 1700000050 ACCEPT FINE",
            "2 123456789010 eni-a - 10.0.0.10 40005 22 6 1 44 1700000000 1700000050 ACCEPT OK",
            "2 123456789010 eni-a 198.51.100.7 10.0.0.10 40006 22 6 1 44 1700000060 1700000050 ACCEPT OK",
            // A day ahead, then refuted by the reply: bad_time.
            "2 123456789010 eni-a 198.51.100.7 10.0.0.10 40007 22 6 1 44 1700090000 1700090050 ACCEPT OK",
            REPLY,
            REJECTED,
            "2 123456789010 eni-c - - - - - - - 1700000000 1700000060 - NODATA",
        ]),
    )
    .unwrap();
    let parquet = dir.path().join("bad.log.parquet");
    to_parquet(&text, &parquet, &[]);
    let (expected, _) = analyze(&["--details"], &[&text]);
    assert_eq!(
        expected["records"],
        json!({"total": 11, "ok": 3, "nodata": 1, "skipdata": 0, "malformed": 7})
    );
    assert_eq!(expected["sessions"], sessions(1, 1, 0));
    let (report, stderr) = analyze(&["--details"], &[&parquet]);
    assert_eq!(report, expected, "{stderr}");
    // The reasons, as the table names them.
    let table = |file: &Path| {
        let output = Command::new(BIN)
            .arg("analyze")
            .arg(file)
            .env_clear()
            .output()
            .unwrap();
        assert!(output.status.success());
        String::from_utf8(output.stdout).unwrap()
    };
    let reasons = table(&text);
    assert!(
        reasons.contains(
            "7 malformed (bad_address 1, bad_number 1, bad_action 1, bad_log_status 1, \
             missing_field 1, bad_time 2)"
        ),
        "{reasons}"
    );
    assert_eq!(table(&parquet), reasons);
}

#[test]
fn a_parquet_column_of_a_type_its_field_cannot_have_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("floats.parquet");
    let script = "import sys, pyarrow as pa, pyarrow.parquet as pq\n\
                  pq.write_table(pa.table({'interface_id': ['eni-a'], 'srcaddr': ['10.0.0.1'], \
                  'dstaddr': ['10.0.0.2'], 'srcport': [1.5], 'action': ['ACCEPT']}), sys.argv[1])";
    let status = Command::new(python())
        .args(["-c", script])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    let output = run(&[path.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("floats.parquet")
            && stderr.contains("column `srcport` holds DOUBLE: flow logs have integers there"),
        "{stderr}"
    );
}

/// Parquet on several threads: one reader decodes, every worker counts
/// the rows of its own interfaces. The report is that of one thread, with
/// rows that name no interface (null, `-`) and malformed rows among them.
#[test]
fn parquet_on_several_threads_gives_what_one_thread_gives() {
    let dir = tempfile::tempdir().unwrap();
    let generated = Command::new(BIN)
        .args([
            "generate",
            "--style",
            "rich",
            "--records",
            "4000",
            "--seed",
            "11",
        ])
        .output()
        .unwrap();
    assert!(generated.status.success());
    let mut text = String::from_utf8(generated.stdout).unwrap();
    // The generated header names interface-id third: a record without one,
    // and one whose port does not fit.
    let header = text.lines().next().unwrap().to_string();
    assert!(
        header.starts_with("version account-id interface-id"),
        "{header}"
    );
    let fields = header.split(' ').count();
    let mut absent: Vec<&str> = vec!["-"; fields];
    absent[0] = "2";
    text.push_str(&absent.join(" "));
    text.push('\n');
    let first_record = text.lines().nth(1).unwrap().to_string();
    let mut bad_port: Vec<&str> = first_record.split(' ').collect();
    bad_port[5] = "70000";
    text.push_str(&bad_port.join(" "));
    text.push('\n');
    let path = dir.path().join("rich.log");
    std::fs::write(&path, &text).unwrap();
    let parquet = dir.path().join("rich.log.parquet");
    to_parquet(&path, &parquet, &["--row-group-size", "700"]);
    let (one, _) = analyze(&["--details", "--threads", "1"], &[&parquet]);
    let (text_report, _) = analyze(&["--details", "--threads", "1"], &[&path]);
    assert_eq!(one, text_report, "Parquet and its text, one thread");
    assert!(one["records"]["malformed"].as_u64().unwrap() >= 1);
    for threads in ["2", "3", "5"] {
        let (several, stderr) = analyze(&["--details", "--threads", threads], &[&parquet]);
        assert_eq!(several, one, "{threads} threads: {stderr}");
        // Two files in a row, the second restarting the dealing.
        let (twice, _) = analyze(&["--details", "--threads", threads], &[&parquet, &parquet]);
        let (twice_one, _) = analyze(&["--details", "--threads", "1"], &[&parquet, &parquet]);
        assert_eq!(twice, twice_one, "{threads} threads, two files");
    }
}
