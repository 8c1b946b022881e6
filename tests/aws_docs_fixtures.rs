//! The reference records of the AWS VPC User Guide ("Flow log record
//! examples"), in `tests/fixtures/aws-docs/`: each file parses with the log
//! format its example declares, gives exactly the records `expected.json`
//! names (none malformed) and the session verdicts the published
//! explanation implies. See the fixture README for the story of each.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde_json::Value;
use vpc_flow_exporter::commands::analyze::{AnalyzeRequest, analyze};
use vpc_flow_exporter::commands::report::{OutputFormat, ReportRequest};
use vpc_flow_exporter::flow::{
    Direction, FormatChoice, LogFormat, RecordFilter, SessionDetail, Settings, Summary, Verdict,
    VerdictCounts,
};
use vpc_flow_exporter::input::InputFormat;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/aws-docs")
}

/// `expected.json`: fixture name → its entry.
fn expected() -> BTreeMap<String, Value> {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn log_format(entry: &Value) -> LogFormat {
    LogFormat::parse(
        entry["log_format"]
            .as_str()
            .expect("log_format is a string"),
    )
    .unwrap()
}

fn analyze_with(paths: Vec<PathBuf>, format: FormatChoice) -> Summary {
    let request = AnalyzeRequest {
        paths,
        input_format: InputFormat::Auto,
        report: ReportRequest {
            format,
            output: OutputFormat::Json,
            details: true,
            filter: RecordFilter::default(),
            settings: Settings::default(),
            facts: HashMap::new(),
        },
        // Every core: the parallel path must read these as the single one does.
        threads: 0,
    };
    analyze(&request).unwrap_or_else(|error| panic!("{error}"))
}

/// One fixture with its declared format.
fn analyze_fixture(name: &str) -> Summary {
    let entry = &expected()[name];
    analyze_with(
        vec![fixtures().join(format!("{name}.log"))],
        FormatChoice::Fixed(log_format(entry)),
    )
}

fn verdict_counts(value: &Value) -> VerdictCounts {
    let count = |key: &str| {
        value[key]
            .as_u64()
            .unwrap_or_else(|| panic!("sessions.{key} is a count"))
    };
    VerdictCounts {
        accepted: count("accepted"),
        rejected_inbound: count("rejected_inbound"),
        rejected_outbound: count("rejected_outbound"),
        unanswered: count("unanswered"),
        refused: count("refused"),
    }
}

fn details(summary: &Summary) -> &[SessionDetail] {
    summary.details.as_deref().expect("details were asked for")
}

/// Checks one summary against its `expected.json` entry.
fn check(name: &str, entry: &Value, summary: &Summary) {
    let records = entry["records"].as_u64().expect("records is a count");
    let counts = &summary.records;
    assert_eq!(counts.total, records, "{name}: records");
    assert_eq!(counts.malformed, 0, "{name}: malformed records");
    assert_eq!(
        counts.ok + counts.nodata + counts.skipdata,
        records,
        "{name}: well-formed records"
    );
    if let Some(sessions) = entry.get("sessions") {
        assert_eq!(
            summary.sessions,
            verdict_counts(sessions),
            "{name}: sessions"
        );
        assert_eq!(
            details(summary).len() as u64,
            summary.sessions.total(),
            "{name}: one detail per decided session"
        );
    }
}

#[test]
fn every_log_file_has_an_expected_entry_and_back() {
    let logs: BTreeSet<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let entries: BTreeSet<String> = expected().into_keys().collect();
    assert_eq!(logs, entries);
    assert!(logs.len() >= 11, "fixtures went missing: {logs:?}");
}

#[test]
fn every_fixture_gives_its_records_and_sessions() {
    for (name, entry) in expected() {
        let summary = analyze_fixture(&name);
        check(&name, &entry, &summary);
    }
}

#[test]
fn every_fixture_gives_the_same_after_an_s3_header_line_with_auto_format() {
    // S3 delivery writes the field names first; `auto` must read them.
    let dir = tempfile::tempdir().unwrap();
    for (name, entry) in expected() {
        let format = log_format(&entry);
        let names: Vec<&str> = format.fields().iter().map(|field| field.name()).collect();
        let records = std::fs::read_to_string(fixtures().join(format!("{name}.log"))).unwrap();
        let path = dir.path().join(format!("{name}.log"));
        std::fs::write(&path, format!("{}\n{records}", names.join(" "))).unwrap();
        let summary = analyze_with(vec![path], FormatChoice::Auto);
        check(&format!("{name} (header, auto)"), &entry, &summary);
    }
}

#[test]
fn status_records_are_counted_apart() {
    let nodata = analyze_fixture("nodata");
    assert_eq!((nodata.records.ok, nodata.records.nodata), (0, 1));
    let skipdata = analyze_fixture("skipdata");
    assert_eq!((skipdata.records.ok, skipdata.records.skipdata), (0, 1));
    assert!(details(&nodata).is_empty() && details(&skipdata).is_empty());
}

#[test]
fn records_for_parsing_only_parse() {
    for name in ["accepted-ssh", "ipv6-ssh"] {
        let summary = analyze_fixture(name);
        assert_eq!(summary.records.ok, 1, "{name}");
    }
    // One side of an SSH conversation from 172.31.16.139: a lone accepted
    // request, so unanswered (the example shows only one direction).
    let ssh = analyze_fixture("accepted-ssh");
    let detail = &details(&ssh)[0];
    assert_eq!(detail.initiator, "172.31.16.139:20641");
    assert_eq!(detail.responder, "172.31.16.21:22");
    let ipv6 = analyze_fixture("ipv6-ssh");
    let detail = &details(&ipv6)[0];
    assert_eq!(
        detail.responder,
        "[2001:db8:1234:a102:3304:8879:34cf:4071]:22"
    );
    assert_eq!((detail.packets, detail.bytes), (54, 8855));
}

#[test]
fn rejected_rdp_is_rejected_inbound_from_the_client() {
    let summary = analyze_fixture("rejected-rdp");
    let detail = &details(&summary)[0];
    assert_eq!(detail.initiator, "172.31.9.69:49761");
    assert_eq!(detail.responder, "172.31.9.12:3389");
    assert_eq!(detail.direction, Direction::Ingress);
}

#[test]
fn nacl_blocked_ping_reply_is_an_inbound_ping_rejected_outbound() {
    let summary = analyze_fixture("nacl-blocks-ping-reply");
    let detail = &details(&summary)[0];
    assert_eq!(detail.protocol, 1);
    assert_eq!(detail.initiator, "203.0.113.12:0");
    assert_eq!(detail.direction, Direction::Ingress);
    assert_eq!((detail.packets, detail.bytes), (8, 672));
}

#[test]
fn tcp_flag_sequence_is_three_ingress_connections_one_spanning_two_windows() {
    let summary = analyze_fixture("tcp-flag-sequence");
    let details = details(&summary);
    assert_eq!(details.len(), 3);
    for detail in details {
        assert_eq!(detail.direction, Direction::Ingress, "{detail:?}");
        assert_eq!(detail.responder, "10.0.0.62:5001", "{detail:?}");
        assert_eq!(detail.interface_id, "eni-1235b8ca123456789");
    }
    let by_client: BTreeMap<&str, &SessionDetail> = details
        .iter()
        .map(|detail| (detail.initiator.as_str(), detail))
        .collect();
    assert_eq!(
        by_client.keys().copied().collect::<Vec<_>>(),
        [
            "52.213.180.42:43416",
            "52.213.180.42:43418",
            "52.213.180.42:43638"
        ]
    );
    // 43418 spans two capture windows: one session, both windows' traffic.
    let spanning = by_client["52.213.180.42:43418"];
    assert_eq!(spanning.bytes, 100_701 + 632 + 63_388 + 23_294_588);
    assert_eq!(spanning.packets, 70 + 12 + 1_219 + 15_774);
    assert_eq!(
        (spanning.start, spanning.end),
        (Some(1_566_848_875), Some(1_566_849_113))
    );
    let single = by_client["52.213.180.42:43416"];
    assert_eq!((single.bytes, single.packets), (568 + 376, 8 + 7));
}

#[test]
fn s3_traffic_path_is_an_egress_call_to_s3() {
    let summary = analyze_fixture("s3-traffic-path");
    let detail = &details(&summary)[0];
    assert_eq!(detail.direction, Direction::Egress);
    assert_eq!(detail.initiator, "10.0.0.71:34210");
    assert_eq!(detail.responder, "52.95.128.179:80");
    assert_eq!((detail.packets, detail.bytes), (21, 15_515));
}

#[test]
fn transit_gateway_server_sees_an_ingress_connection_to_port_80() {
    let summary = analyze_fixture("transit-gateway-server");
    let detail = &details(&summary)[0];
    assert_eq!(detail.initiator, "10.20.33.164:39812");
    assert_eq!(detail.responder, "10.40.2.236:80");
    assert_eq!(detail.direction, Direction::Ingress);
}

#[test]
fn transit_gateway_interfaces_raise_no_unanswered_alarm() {
    let summary = analyze_fixture("transit-gateway-interfaces");
    assert_eq!(summary.sessions.total(), 0);
    assert!(summary.by_interface.is_empty());
}

#[test]
fn all_fixtures_in_one_run_give_the_sum() {
    // Fixtures of the default format, fed as one input after another.
    let default = LogFormat::default_v2();
    let entries: Vec<(String, Value)> = expected()
        .into_iter()
        .filter(|(_, entry)| log_format(entry) == default)
        .collect();
    assert!(entries.len() >= 6);
    let paths = entries
        .iter()
        .map(|(name, _)| fixtures().join(format!("{name}.log")))
        .collect();
    let summary = analyze_with(paths, FormatChoice::Auto);
    let records: u64 = entries
        .iter()
        .map(|(_, entry)| entry["records"].as_u64().unwrap())
        .sum();
    assert_eq!(summary.records.total, records);
    assert_eq!(summary.records.malformed, 0);
    // Each file's verdicts, alone, add up to the verdicts of the whole run.
    let mut sessions = VerdictCounts::default();
    for (name, _) in &entries {
        let alone = analyze_fixture(name).sessions;
        for verdict in Verdict::ALL {
            for _ in 0..alone.get(verdict) {
                sessions.add(verdict);
            }
        }
    }
    assert_eq!(summary.sessions, sessions);
}
