//! Direction right from the first record (issue 9): on generated traffic
//! across many interfaces, without `flow-direction`, `analyze --details`
//! agrees session by session with a whole-input reading — every
//! interface's local address learned from all its records first, as
//! DESIGN's rule says ("the address, per address family, that is on one
//! side of every record of that interface"), then the records read again
//! with those addresses known.
//!
//! The reading below learns the addresses in a few lines of its own, and
//! hands them to `analyze` as configured addresses (`--interface-address`):
//! what differs between the two runs is only when the address is known.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::Path;

use vpc_flow_exporter::analyze::{AnalyzeRequest, analyze};
use vpc_flow_exporter::flow::{
    FormatChoice, InterfaceFacts, RecordFilter, SessionDetail, Settings, Summary,
};
use vpc_flow_exporter::generate::{RealisticConfig, generate_realistic};
use vpc_flow_exporter::input::InputFormat;
use vpc_flow_exporter::report::{OutputFormat, ReportRequest};

/// The default version-2 format's columns.
const INTERFACE: usize = 2;
const SRCADDR: usize = 3;
const DSTADDR: usize = 4;
const ACTION: usize = 12;
const LOG_STATUS: usize = 13;

/// Per interface, the address of each family on one side of every record
/// that can open a session (an action, status OK, both addresses).
fn learn_from_whole_input(text: &str) -> HashMap<String, Vec<IpAddr>> {
    let mut candidates: BTreeMap<(String, bool), BTreeSet<IpAddr>> = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        if fields.len() < 14 || fields[LOG_STATUS] != "OK" || fields[ACTION] == "-" {
            continue;
        }
        let (Ok(src), Ok(dst)) = (
            fields[SRCADDR].parse::<IpAddr>(),
            fields[DSTADDR].parse::<IpAddr>(),
        ) else {
            continue;
        };
        if src.is_ipv4() != dst.is_ipv4() {
            continue;
        }
        let on_record = BTreeSet::from([src, dst]);
        candidates
            .entry((fields[INTERFACE].to_string(), src.is_ipv4()))
            .and_modify(|known| known.retain(|a| on_record.contains(a)))
            .or_insert(on_record);
    }
    let mut local: HashMap<String, Vec<IpAddr>> = HashMap::new();
    for ((interface, _), addresses) in candidates {
        if addresses.len() == 1 {
            local.entry(interface).or_default().extend(addresses);
        }
    }
    local
}

/// Interfaces whose first minutes do not tell their address: a call out
/// answered by its one peer, or rejected calls out to one peer until the
/// reply grace passed, and only later a second peer. Deciding at once
/// gets these first sessions' direction (and a rejection's side) wrong.
fn first_minutes_of_quiet_interfaces() -> String {
    let mut text = String::new();
    for i in 0..20u32 {
        let eni = format!("eni-0f{i:015}");
        let local = format!("10.9.{i}.10");
        let line = |src: &str, dst: &str, ports: (u32, u32), start: u64, end: u64, action: &str| {
            format!(
                "2 123456789010 {eni} {src} {dst} {} {} 6 3 180 {start} {end} {action} OK\n",
                ports.0, ports.1
            )
        };
        if i % 2 == 0 {
            let peer = format!("198.51.100.{i}");
            text += &line(
                &local,
                &peer,
                (40_000, 443),
                1_699_999_990,
                1_699_999_995,
                "ACCEPT",
            );
            text += &line(
                &peer,
                &local,
                (443, 40_000),
                1_699_999_990,
                1_699_999_995,
                "ACCEPT",
            );
        } else {
            let peer = format!("203.0.113.{i}");
            text += &line(
                &local,
                &peer,
                (41_000, 5432),
                1_699_999_990,
                1_699_999_995,
                "REJECT",
            );
            text += &line(
                &local,
                &peer,
                (41_001, 5432),
                1_700_000_195,
                1_700_000_200,
                "REJECT",
            );
        }
        let other = format!("192.0.2.{i}");
        text += &line(
            &local,
            &other,
            (42_000, 443),
            1_700_000_295,
            1_700_000_300,
            "ACCEPT",
        );
    }
    text
}

fn sessions(
    path: &Path,
    facts: HashMap<String, InterfaceFacts>,
    settings: Settings,
    threads: usize,
) -> Vec<SessionDetail> {
    let summary: Summary = analyze(&AnalyzeRequest {
        paths: vec![path.to_path_buf()],
        input_format: InputFormat::Auto,
        report: ReportRequest {
            format: FormatChoice::Auto,
            output: OutputFormat::Json,
            details: true,
            filter: RecordFilter::default(),
            settings,
            facts,
        },
        threads,
    })
    .unwrap_or_else(|error| panic!("{error}"));
    let mut details = summary.details.expect("--details");
    details.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    details
}

fn differences(a: &[SessionDetail], b: &[SessionDetail]) -> usize {
    assert_eq!(a.len(), b.len(), "the same sessions either way");
    a.iter().zip(b).filter(|(a, b)| a != b).count()
}

#[test]
fn analyze_agrees_with_a_whole_input_reading_session_by_session() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = Vec::new();
    generate_realistic(
        &RealisticConfig {
            seed: 11,
            records: 20_000,
            interfaces: 200,
            records_per_window: 4_000,
            ..RealisticConfig::default()
        },
        &mut text,
    )
    .unwrap();
    let text = first_minutes_of_quiet_interfaces() + &String::from_utf8(text).unwrap();
    assert!(
        !text.contains("flow-direction"),
        "the records must not tell their direction"
    );
    let path = dir.path().join("flows.log");
    std::fs::write(&path, &text).unwrap();

    let learned = learn_from_whole_input(&text);
    assert!(
        learned.len() >= 150,
        "most interfaces single out an address"
    );
    let known: HashMap<String, InterfaceFacts> = learned
        .into_iter()
        .map(|(interface, addresses)| {
            let facts = InterfaceFacts {
                addresses,
                intermediate: false,
            };
            (interface, facts)
        })
        .collect();
    let reference = sessions(&path, known, Settings::default(), 1);
    assert!(reference.len() > 5_000, "{} sessions", reference.len());

    for threads in [1, 2] {
        let read = sessions(&path, HashMap::new(), Settings::default(), threads);
        assert_eq!(
            differences(&read, &reference),
            0,
            "{threads} thread(s): sessions differ from the whole-input reading"
        );
    }

    // The test has teeth: deciding at once (the old way) gets the first
    // sessions of interfaces wrong.
    let at_once = Settings {
        max_awaiting_address: 0,
        ..Settings::default()
    };
    let guessed = sessions(&path, HashMap::new(), at_once, 1);
    let wrong = differences(&guessed, &reference);
    assert!(wrong > 0, "deciding at once differs from the reading");
    eprintln!(
        "{} sessions; deciding at once, {wrong} differ ({:.2} %)",
        reference.len(),
        100.0 * wrong as f64 / reference.len() as f64
    );
}
