//! `analyze` on several threads (sessions sharded by interface) gives what
//! the single-threaded path gives, session by session: the same totals,
//! the same table, the same `--details`, on generated traffic of both
//! shapes and on input made to trip a router (headers, blank lines,
//! malformed lines, several inputs with their own formats, gzip).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use vpc_flow_exporter::commands::analyze::{AnalyzeRequest, analyze};
use vpc_flow_exporter::commands::generate::{
    Expected, GeneratorConfig, RealisticConfig, Style, generate, generate_realistic,
};
use vpc_flow_exporter::commands::report::{self, OutputFormat, ReportRequest};
use vpc_flow_exporter::flow::{FormatChoice, LogFormat, RecordFilter, Settings, Summary};
use vpc_flow_exporter::input::InputFormat;

fn request(
    paths: &[PathBuf],
    format: FormatChoice,
    filter: RecordFilter,
    threads: usize,
) -> AnalyzeRequest {
    AnalyzeRequest {
        paths: paths.to_vec(),
        input_format: InputFormat::Auto,
        report: ReportRequest {
            format,
            output: OutputFormat::Json,
            details: true,
            filter,
            settings: Settings::default(),
            facts: HashMap::new(),
        },
        threads,
    }
}

fn run(request: &AnalyzeRequest) -> Summary {
    analyze(request).unwrap_or_else(|error| panic!("{error}"))
}

/// The single-threaded summary, after checking that 2 and 3 threads
/// render the same JSON (totals and every session) and the same table.
fn same_on_every_thread_count(
    paths: &[PathBuf],
    format: FormatChoice,
    filter: RecordFilter,
) -> Summary {
    let single = run(&request(paths, format.clone(), filter.clone(), 1));
    let json = report::render(&single, OutputFormat::Json);
    let table = report::render(&single, OutputFormat::Table);
    for threads in [2, 3] {
        let parallel = run(&request(paths, format.clone(), filter.clone(), threads));
        assert_eq!(
            report::render(&parallel, OutputFormat::Json),
            json,
            "{threads} threads on {paths:?}"
        );
        assert_eq!(
            report::render(&parallel, OutputFormat::Table),
            table,
            "{threads} threads"
        );
        assert_eq!(parallel.by_service(), single.by_service());
        assert_eq!(parallel.malformed_by_reason, single.malformed_by_reason);
    }
    single
}

fn write(dir: &Path, name: &str, text: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("writing a temporary file");
    path
}

fn assert_expected(summary: &Summary, expected: &Expected) {
    assert_eq!(summary.records.total, expected.records);
    assert_eq!(summary.records.malformed, 0);
    assert_eq!(summary.records.nodata, expected.nodata);
    assert_eq!(summary.records.skipdata, expected.skipdata);
    assert_eq!(summary.sessions, expected.sessions);
}

#[test]
fn realistic_traffic_gives_the_same_sessions_on_every_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = Vec::new();
    let expected = generate_realistic(
        &RealisticConfig {
            seed: 7,
            records: 12_000,
            interfaces: 12,
            records_per_window: 2_000,
            ..RealisticConfig::default()
        },
        &mut text,
    )
    .unwrap();
    let path = write(dir.path(), "realistic.log", &text);
    let summary = same_on_every_thread_count(
        std::slice::from_ref(&path),
        FormatChoice::Auto,
        RecordFilter::default(),
    );
    assert_expected(&summary, &expected);
    assert_eq!(
        summary.details.as_ref().map(Vec::len),
        Some(expected.sessions.total() as usize)
    );
    // Filters narrow records before correlation, in every worker alike.
    let filter = RecordFilter {
        port: Some(443),
        since: Some(1_700_000_000 + 120),
        ..RecordFilter::default()
    };
    same_on_every_thread_count(&[path], FormatChoice::Auto, filter);
}

#[test]
fn the_generators_scenarios_give_the_same_sessions_on_every_thread_count() {
    // Few interfaces, long-lived sessions, replies in the next window,
    // stray rejects, refused, a NAT gateway: rule 5 and the watermark at work.
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for (index, style) in [Style::V2, Style::Rich].into_iter().enumerate() {
        let mut text = Vec::new();
        generate(
            &GeneratorConfig {
                seed: 3 + index as u64,
                records: 4_000,
                interfaces: 5,
                sessions_per_window: 100,
                style,
                ..GeneratorConfig::default()
            },
            &mut text,
        )
        .unwrap();
        paths.push(write(dir.path(), &format!("{index}.log"), &text));
        let summary = same_on_every_thread_count(
            &paths[index..],
            FormatChoice::Auto,
            RecordFilter::default(),
        );
        assert!(summary.sessions.total() > 500);
    }
    // Both files, one after the other: the second switches the format.
    same_on_every_thread_count(&paths, FormatChoice::Auto, RecordFilter::default());
}

#[test]
fn awkward_input_gives_the_same_on_every_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let header = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status";
    let short = "interface-id srcaddr dstaddr srcport dstport protocol start end action";
    let lines = [
        "",
        "  \r",
        header,
        "2 123456789010 eni-a 198.51.100.7 10.0.0.10 40000 22 6 1 44 1000 1050 ACCEPT OK\r",
        "2 123456789010 eni-b 198.51.100.8 10.0.1.10 40001 3389 6 1 40 1100 1150 REJECT OK",
        // A header mid-stream, a line too short to have an interface, bad bytes.
        header,
        "2 1",
        "not a record at all",
        "2 123456789010 eni-c 10.0.2.10 203.0.113.9 50000 443 6 3 300 1000 1050 ACCEPT OK",
        "2 123456789010 eni-a 10.0.0.10 198.51.100.7 22 40000 6 1 40 1000 1050 ACCEPT OK",
        "2 123456789010 eni-d - - - - - - - 1000 1059 - NODATA",
        "2 123456789010 eni-a 198.51.100.7 10.0.0.10 40000 22 6 1 44 2000 2050 ACCEPT OK",
        "2 123456789010 - 198.51.100.9 10.0.0.11 40002 80 6 1 44 1000 1050 ACCEPT OK",
        "2 123456789010 eni-b 198.51.100.8 10.0.1.10 40001 3389 17 1 40 1100 1150 REJECT OK",
    ];
    let mut text = lines.join("\n").into_bytes();
    text.extend_from_slice(b"\n2 123456789010 eni-e 10.0.3.10 \xff\xfe 1 2 6 1 1 1 1 ACCEPT OK");
    let first = write(dir.path(), "first.log", &text);
    // A second input with a header of its own and no final newline, gzipped.
    let second_text = format!(
        "{short}\neni-a 10.0.0.10 198.51.100.7 22 40000 6 1000 1050 ACCEPT\neni-f 10.0.5.10 198.51.100.7 22 40000 6 1000 1050 ACCEPT\neni-f 198.51.100.7 10.0.5.10 40000 22 6 1000 1050 REJECT"
    );
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(second_text.as_bytes()).unwrap();
    let second = write(dir.path(), "second.log.gz", &gzip.finish().unwrap());
    // A third without a header: back to the default format; an empty fourth.
    let third = write(
        dir.path(),
        "third.log",
        b"2 123456789010 eni-f 198.51.100.7 10.0.5.10 40000 22 6 1 44 1000 1050 ACCEPT OK\n",
    );
    let empty = write(dir.path(), "empty.log", b"");
    // A file in a folder named after a log stream, records without an
    // interface column: the folder names their interface.
    let stream = dir.path().join("eni-0a1b2c3d-all");
    std::fs::create_dir(&stream).unwrap();
    let named = write(
        &stream,
        "000000.log",
        b"srcaddr dstaddr srcport dstport protocol start end action\n198.51.100.7 10.0.9.10 40000 22 6 1000 1050 ACCEPT\n10.0.9.10 198.51.100.7 22 40000 6 1000 1050 ACCEPT\n",
    );
    let paths = [first.clone(), second, empty.clone(), named, third, empty];
    let summary = same_on_every_thread_count(&paths, FormatChoice::Auto, RecordFilter::default());
    assert!(summary.records.malformed >= 3, "{:?}", summary.records);
    assert!(summary.sessions.total() >= 5, "{:?}", summary.sessions);
    let fixed = FormatChoice::Fixed(LogFormat::default_v2());
    same_on_every_thread_count(&paths, fixed, RecordFilter::default());
    let without_interface = FormatChoice::Fixed(
        LogFormat::parse("version account-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status extra").unwrap(),
    );
    same_on_every_thread_count(&[first], without_interface, RecordFilter::default());
}

#[test]
fn a_missing_file_is_named_on_every_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let present = write(dir.path(), "present.log", b"");
    let missing = dir.path().join("missing.log");
    for threads in [1, 3] {
        let error = analyze(&request(
            &[present.clone(), missing.clone()],
            FormatChoice::Auto,
            RecordFilter::default(),
            threads,
        ))
        .expect_err("a missing file fails");
        assert_eq!(error.path, missing, "{threads} threads");
    }
}
