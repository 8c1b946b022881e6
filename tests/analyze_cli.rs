//! `vpc-flow-exporter analyze`, run as a user runs it: the real binary on
//! the bundled sample (`examples/sample-flows.log`, made by
//! `vpc-flow-exporter generate --style rich --records 100 --interfaces 2
//! --sessions-per-window 10 --seed 4 --start 1732780800`).
//!
//! The JSON reports are golden files in `tests/golden/`; after a deliberate
//! change, regenerate them with `UPDATE_GOLDEN=1 cargo test --test analyze_cli`
//! and review the diff.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_vpc-flow-exporter");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sample() -> PathBuf {
    root().join("examples/sample-flows.log")
}

fn sample_text() -> String {
    std::fs::read_to_string(sample()).unwrap()
}

/// Runs the binary with `args`, `stdin` piped in when given.
fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run vpc-flow-exporter");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// Runs `analyze` with `args` and returns its stdout; it must succeed.
fn analyze(args: &[&str]) -> String {
    analyze_stdin(args, None)
}

fn analyze_stdin(args: &[&str], stdin: Option<&[u8]>) -> String {
    let mut all = vec!["analyze"];
    all.extend_from_slice(args);
    let output = run(&all, stdin);
    assert!(
        output.status.success(),
        "analyze {args:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("the report is UTF-8")
}

fn analyze_json(args: &[&str]) -> Value {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    let text = analyze(&all);
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{error}: {text}"))
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// Compares `actual` with `tests/golden/NAME`, or rewrites the file when
/// `UPDATE_GOLDEN=1`.
fn golden(name: &str, actual: &str) {
    let path = root().join("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|value| value == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|error| {
        panic!(
            "{}: {error} (create it with UPDATE_GOLDEN=1)",
            path.display()
        )
    });
    assert!(
        actual == expected,
        "output differs from {}; if the change is intended, rerun with UPDATE_GOLDEN=1 and review the diff\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

/// What the generator says the sample gives (`generate --expected`).
fn sample_totals() -> Value {
    json!({
        "records": {"total": 100, "ok": 95, "nodata": 4, "skipdata": 1, "malformed": 0},
        "sessions": {
            "accepted": 33,
            "rejected_inbound": 5,
            "rejected_outbound": 4,
            "unanswered": 5,
            "refused": 3
        }
    })
}

/// The sample's record lines (not its header), split into fields.
fn sample_records() -> Vec<Vec<String>> {
    sample_text()
        .lines()
        .skip(1)
        .map(|line| line.split_ascii_whitespace().map(str::to_string).collect())
        .collect()
}

#[test]
fn the_sample_is_what_the_generator_says() {
    let output = run(
        &[
            "generate",
            "--style",
            "rich",
            "--records",
            "100",
            "--interfaces",
            "2",
            "--sessions-per-window",
            "10",
            "--seed",
            "4",
            "--start",
            "1732780800",
        ],
        None,
    );
    assert!(output.status.success());
    assert!(
        output.stdout == sample_text().as_bytes(),
        "examples/sample-flows.log is no longer what its generate command writes"
    );
}

#[test]
fn json_report_of_the_sample_is_golden() {
    let text = analyze(&["--output", "json", path_arg(&sample())]);
    let report: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report, sample_totals(), "totals against the generator's");
    golden("sample-analyze.json", &text);
}

#[test]
fn json_details_of_the_sample_are_golden() {
    let text = analyze(&["--output", "json", "--details", path_arg(&sample())]);
    let report: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["records"], sample_totals()["records"]);
    assert_eq!(report["sessions"], sample_totals()["sessions"]);
    let details = report["details"].as_array().expect("details");
    assert_eq!(details.len(), 50, "one detail per session");
    let keys = [
        "bytes",
        "direction",
        "end",
        "initiator",
        "interface_id",
        "packets",
        "protocol",
        "responder",
        "start",
        "verdict",
    ];
    for detail in details {
        let mut names: Vec<&str> = detail
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        assert_eq!(names, keys, "{detail}");
    }
    for verdict in [
        "accepted",
        "rejected_inbound",
        "rejected_outbound",
        "unanswered",
        "refused",
    ] {
        let count = details
            .iter()
            .filter(|detail| detail["verdict"] == verdict)
            .count() as u64;
        assert_eq!(count, report["sessions"][verdict], "{verdict}");
    }
    golden("sample-analyze-details.json", &text);
}

#[test]
fn gzip_input_gives_the_same_report() {
    let plain = analyze(&["--output", "json", "--details", path_arg(&sample())]);
    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("sample-flows.log.gz");
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(sample_text().as_bytes()).unwrap();
    std::fs::write(&gz, encoder.finish().unwrap()).unwrap();
    assert_eq!(
        analyze(&["--output", "json", "--details", path_arg(&gz)]),
        plain
    );

    // Concatenated gzip members (as appending writers make) are one input.
    let text = sample_text();
    let middle = text[..text.len() / 2].rfind('\n').unwrap() + 1;
    let mut members = Vec::new();
    for part in [&text[..middle], &text[middle..]] {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(part.as_bytes()).unwrap();
        members.extend(encoder.finish().unwrap());
    }
    let multi = dir.path().join("multi-member.gz");
    std::fs::write(&multi, members).unwrap();
    assert_eq!(
        analyze(&["--output", "json", "--details", path_arg(&multi)]),
        plain
    );
}

#[test]
fn stdin_is_read_for_a_dash() {
    let plain = analyze(&["--output", "json", "--details", path_arg(&sample())]);
    let text = sample_text();
    assert_eq!(
        analyze_stdin(
            &["--output", "json", "--details", "-"],
            Some(text.as_bytes())
        ),
        plain
    );
    // CRLF line endings and no final newline make no difference.
    let crlf = text.trim_end().replace('\n', "\r\n");
    assert_eq!(
        analyze_stdin(
            &["--output", "json", "--details", "-"],
            Some(crlf.as_bytes())
        ),
        plain
    );
    // Gzip on stdin too.
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(text.as_bytes()).unwrap();
    let gz = encoder.finish().unwrap();
    assert_eq!(
        analyze_stdin(&["--output", "json", "--details", "-"], Some(&gz)),
        plain
    );
}

#[test]
fn interface_filter_keeps_that_interfaces_records_and_verdicts() {
    let interface = "eni-00000000000000000";
    let expected_records = sample_records()
        .iter()
        .filter(|fields| fields[2] == interface)
        .count() as u64;
    assert_eq!(expected_records, 48);
    let report = analyze_json(&["--interface", interface, path_arg(&sample())]);
    assert_eq!(report["records"]["total"], expected_records);
    // Interfaces are correlated apart: the same verdicts as its row of the
    // whole report.
    assert_eq!(
        report["sessions"],
        json!({
            "accepted": 17,
            "rejected_inbound": 3,
            "rejected_outbound": 1,
            "unanswered": 2,
            "refused": 2
        })
    );
    let none = analyze_json(&["--interface", "eni-0000", path_arg(&sample())]);
    assert_eq!(none["records"]["total"], 0);
    assert_eq!(none["sessions"]["accepted"], 0);
}

#[test]
fn address_filter_keeps_records_with_the_address_on_either_side() {
    let address = "10.0.1.10";
    let expected_records = sample_records()
        .iter()
        .filter(|fields| fields[3] == address || fields[4] == address)
        .count() as u64;
    assert!((10..95).contains(&expected_records), "{expected_records}");
    let report = analyze_json(&["--address", address, path_arg(&sample())]);
    assert_eq!(report["records"]["total"], expected_records);
    assert_eq!(report["records"]["ok"], expected_records);

    let remote = analyze_json(&["--address", "100.64.0.6", "--details", path_arg(&sample())]);
    assert_eq!(remote["records"]["total"], 1);
    assert_eq!(remote["sessions"]["rejected_inbound"], 1);
    assert_eq!(remote["details"][0]["initiator"], "100.64.0.6:32768");
}

#[test]
fn port_filter_keeps_records_with_the_port_on_either_side() {
    let count = |port: &str| {
        sample_records()
            .iter()
            .filter(|fields| fields[5] == port || fields[6] == port)
            .count() as u64
    };
    // Port 3389 only ever appears in rejected RDP attempts.
    assert_eq!(count("3389"), 5);
    let report = analyze_json(&["--port", "3389", path_arg(&sample())]);
    assert_eq!(report["records"]["total"], 5);
    assert_eq!(report["sessions"]["rejected_inbound"], 5);
    assert_eq!(report["sessions"]["accepted"], 0);

    let report = analyze_json(&["--port", "443", path_arg(&sample())]);
    assert_eq!(report["records"]["total"], count("443"));
}

#[test]
fn since_and_until_keep_records_ending_inside_the_window() {
    // Event time is the record's end (field 12).
    let (since, until) = (1_732_780_800 + 120, 1_732_780_800 + 239);
    let inside = sample_records()
        .iter()
        .filter(|fields| {
            let end: u64 = fields[11].parse().unwrap();
            (since..=until).contains(&end)
        })
        .count() as u64;
    assert!((10..90).contains(&inside), "{inside}");
    let report = analyze_json(&[
        "--since",
        &since.to_string(),
        "--until",
        &until.to_string(),
        path_arg(&sample()),
    ]);
    assert_eq!(report["records"]["total"], inside);

    // RFC 3339 spells the same times.
    let rfc = analyze_json(&[
        "--since",
        "2024-11-28T08:02:00Z",
        "--until",
        "2024-11-28T08:03:59Z",
        path_arg(&sample()),
    ]);
    assert_eq!(rfc, report);

    let after_all = analyze_json(&["--since", "2024-11-29T00:00:00Z", path_arg(&sample())]);
    assert_eq!(after_all["records"]["total"], 0);
}

#[test]
fn a_missing_file_fails_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-flows.log");
    let output = run(&["analyze", path_arg(&sample()), path_arg(&missing)], None);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(path_arg(&missing)), "{stderr}");
    assert!(output.stdout.is_empty(), "no partial report");
}

#[test]
fn an_unusable_log_format_fails_with_a_clear_message() {
    for (format, says) in [
        ("${version", "unterminated"),
        ("version srcaddr srcaddr", "appears twice"),
        ("  ", "empty"),
        ("${version} $srcaddr}", "is not a field"),
    ] {
        let output = run(
            &["analyze", "--log-format", format, path_arg(&sample())],
            None,
        );
        assert!(!output.status.success(), "{format:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--log-format"), "{format:?}: {stderr}");
        assert!(stderr.contains(says), "{format:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{format:?}");
    }
}

#[test]
fn an_explicit_log_format_reads_the_sample_too() {
    let format = "${version} ${account-id} ${interface-id} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${protocol} ${packets} ${bytes} ${start} ${end} ${action} ${log-status} ${instance-id} ${tcp-flags} ${pkt-srcaddr} ${pkt-dstaddr}";
    let report = analyze_json(&["--log-format", format, path_arg(&sample())]);
    assert_eq!(report, sample_totals());
    // The wrong format: every record is malformed, and said so.
    let report = analyze_json(&["--log-format", "version srcaddr", path_arg(&sample())]);
    assert_eq!(report["records"]["total"], 100);
    assert_eq!(report["records"]["malformed"], 100);
}

#[test]
fn table_shows_verdicts_per_interface_and_warns_of_skipdata() {
    let table = analyze(&[path_arg(&sample())]);
    assert!(
        table.contains("Records: 100 total, 95 OK, 4 NODATA, 1 SKIPDATA, 0 malformed"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|line| line.starts_with("Warning: 1 SKIPDATA") && line.contains("lost")),
        "{table}"
    );
    let row = |label: &str| -> Vec<u64> {
        let line = table
            .lines()
            .find(|line| line.split_ascii_whitespace().next() == Some(label))
            .unwrap_or_else(|| panic!("no row {label}:\n{table}"));
        line.split_ascii_whitespace()
            .skip(1)
            .map(|cell| cell.parse().unwrap())
            .collect()
    };
    let header = table
        .lines()
        .find(|line| line.starts_with("INTERFACE"))
        .unwrap();
    assert_eq!(
        header.split_ascii_whitespace().collect::<Vec<_>>(),
        [
            "INTERFACE",
            "ACCEPTED",
            "REJECTED_IN",
            "REJECTED_OUT",
            "UNANSWERED",
            "REFUSED"
        ]
    );
    assert_eq!(row("eni-00000000000000000"), [17, 3, 1, 2, 2]);
    assert_eq!(row("eni-00000000000000001"), [16, 2, 3, 3, 1]);
    assert_eq!(row("total"), [33, 5, 4, 5, 3]);
    assert!(table.contains("tcp/3389"), "{table}");
}

#[test]
fn table_without_skipdata_has_no_warning_and_names_malformed_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flows.log");
    std::fs::write(
        &path,
        "2 123456789010 eni-1 198.51.100.7 10.0.0.10 40000 22 6 1 44 1000 1050 ACCEPT OK\n\
         2 123456789010 eni-1 198.51.100.7 10.0.0.999 40000 22 6 1 44 1000 1050 ACCEPT OK\n\
         2 123456789010 eni-1 198.51.100.7\n",
    )
    .unwrap();
    let table = analyze(&[path_arg(&path)]);
    assert!(!table.contains("Warning"), "{table}");
    assert!(
        table.contains("3 total, 1 OK, 0 NODATA, 0 SKIPDATA, 2 malformed"),
        "{table}"
    );
    assert!(table.contains("bad_address 1"), "{table}");
    assert!(table.contains("field_count 1"), "{table}");
}

#[test]
fn interface_addresses_make_every_direction_exact() {
    let sample = sample();
    let report = analyze_json(&[
        "--details",
        "--interface-address",
        "eni-00000000000000000=10.0.0.10",
        "--interface-address",
        "eni-00000000000000001=10.0.1.10",
        path_arg(&sample),
    ]);
    let details = report["details"].as_array().expect("details");
    assert_eq!(details.len(), 50);
    for detail in details {
        let started_here = detail["initiator"].as_str().unwrap().starts_with("10.0.");
        let expected = if started_here { "egress" } else { "ingress" };
        assert_eq!(detail["direction"], expected, "{detail}");
    }
    assert_eq!(report["sessions"], sample_totals()["sessions"]);
    let bad = run(
        &["analyze", "--interface-address", "eni-1", path_arg(&sample)],
        None,
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("ENI=IP"));
}
