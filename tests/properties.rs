//! Properties of the core that must hold for every input, checked with
//! proptest against synthetic flow logs whose verdicts are known by
//! construction (`vpc_flow_exporter::commands::generate`) and against arbitrary bytes:
//!
//! * records inside one capture window arrive in any order: shuffling them
//!   never changes the verdicts;
//! * how input is cut into chunks (inside lines, CRLF endings, no final
//!   newline) never changes what it gives;
//! * no input makes the parser or the pipeline panic, and every non-empty
//!   line is counted once, as a record or as a malformed record;
//! * generated data gives exactly the generator's expected totals.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::FileFailurePersistence;
use vpc_flow_exporter::commands::generate::{Expected, GeneratorConfig, Style, generate};
use vpc_flow_exporter::flow::{
    FormatChoice, InterfaceFacts, LineSplitter, LogFormat, Pipeline, RecordFilter, RecordParser,
    Settings, Summary,
};

const WINDOW: u64 = 60;

/// `cases` per property; failures are saved beside this file, to be rerun
/// first next time (commit the file when it appears).
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/properties.proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

/// Small generator settings: few interfaces and sessions per window, so
/// that interfaces go quiet for whole windows and edge cases come up.
fn small_config() -> impl Strategy<Value = GeneratorConfig> {
    (
        any::<bool>(),
        any::<u64>(),
        1usize..250,
        1usize..5,
        1usize..25,
        1_500_000_000u64..1_800_000_000,
    )
        .prop_map(
            |(rich, seed, records, interfaces, sessions_per_window, start_time)| GeneratorConfig {
                seed,
                records,
                interfaces,
                sessions_per_window,
                start_time,
                style: if rich { Style::Rich } else { Style::V2 },
            },
        )
}

fn generated(config: &GeneratorConfig) -> (String, Expected) {
    let mut out = Vec::new();
    let expected = generate(config, &mut out).expect("writing to memory");
    (
        String::from_utf8(out).expect("generated text is UTF-8"),
        expected,
    )
}

/// The generator's interfaces and their addresses, as configuration would
/// give them (`[interfaces.eni-…] addresses`).
fn generated_interface_facts() -> HashMap<String, InterfaceFacts> {
    (0..8u8)
        .map(|index| {
            (
                format!("eni-{index:017x}"),
                InterfaceFacts {
                    addresses: vec![Ipv4Addr::new(10, 0, index, 10).into()],
                    intermediate: false,
                },
            )
        })
        .collect()
}

/// A pipeline for generated logs. The properties over small inputs give it
/// the interfaces' addresses: a small input has interfaces that talked to
/// one peer only when a verdict fell due, and then (DESIGN.md, "local
/// address") the request's destination is taken as local, which the
/// generator's totals do not expect for a rejected egress request.
fn pipeline_with(facts: HashMap<String, InterfaceFacts>) -> (Pipeline, Summary) {
    let pipeline = Pipeline::new(
        FormatChoice::Auto,
        Settings::default(),
        facts,
        RecordFilter::default(),
    );
    let summary = Summary::new(pipeline.correlator().service_ports().clone(), false);
    (pipeline, summary)
}

fn pipeline() -> (Pipeline, Summary) {
    pipeline_with(generated_interface_facts())
}

/// Feeds whole lines as one input and finishes.
fn summarize<'a>(lines: impl IntoIterator<Item = &'a [u8]>) -> Summary {
    summarize_with(pipeline(), lines)
}

fn summarize_with<'a>(
    (mut pipeline, mut summary): (Pipeline, Summary),
    lines: impl IntoIterator<Item = &'a [u8]>,
) -> Summary {
    pipeline.begin_input();
    for line in lines {
        pipeline.push_line(line, None, &mut summary);
    }
    pipeline.finish(&mut summary);
    summary
}

/// Feeds `data` cut at `cuts` (byte offsets) through a [`LineSplitter`].
fn summarize_chunks(data: &[u8], cuts: &[usize]) -> Summary {
    let (mut pipeline, mut summary) = pipeline();
    let mut splitter = LineSplitter::default();
    pipeline.begin_input();
    let mut begin = 0;
    for &cut in cuts.iter().chain(std::iter::once(&data.len())) {
        splitter.push(&data[begin..cut], |line| {
            pipeline.push_line(line, None, &mut summary);
        });
        begin = cut;
    }
    splitter.finish(|line| {
        pipeline.push_line(line, None, &mut summary);
    });
    pipeline.finish(&mut summary);
    summary
}

/// What must not depend on order or chunking.
fn totals(summary: &Summary) -> impl PartialEq + std::fmt::Debug {
    (
        summary.records.clone(),
        summary.malformed_by_reason.clone(),
        summary.sessions,
        summary.by_interface.clone(),
        summary.by_service(),
    )
}

fn assert_expected(summary: &Summary, expected: &Expected) -> Result<(), TestCaseError> {
    prop_assert_eq!(summary.records.total, expected.records, "records");
    prop_assert_eq!(summary.records.malformed, 0, "malformed");
    prop_assert_eq!(summary.records.nodata, expected.nodata, "nodata");
    prop_assert_eq!(summary.records.skipdata, expected.skipdata, "skipdata");
    prop_assert_eq!(summary.sessions, expected.sessions, "sessions");
    Ok(())
}

/// The generated records grouped by capture window, in order; the header
/// line (rich style), if any, apart.
fn windows(text: &str, start_time: u64) -> (Option<String>, Vec<Vec<String>>) {
    let mut lines = text.lines().peekable();
    let header = lines
        .next_if(|line| LogFormat::from_header_line(line).is_some())
        .map(str::to_string);
    let mut groups: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut last = 0;
    for line in lines {
        let start: u64 = line
            .split_ascii_whitespace()
            .nth(10)
            .and_then(|start| start.parse().ok())
            .unwrap_or_else(|| panic!("no start in {line}"));
        let window = (start - start_time) / WINDOW;
        assert!(window >= last, "the generator writes windows in order");
        last = window;
        groups.entry(window).or_default().push(line.to_string());
    }
    (header, groups.into_values().collect())
}

/// Generator settings, what they must give, and their lines with every
/// capture window shuffled by proptest (on top of the generator's shuffle).
fn shuffled_windows()
-> impl Strategy<Value = (GeneratorConfig, Expected, Option<String>, Vec<Vec<String>>)> {
    small_config().prop_flat_map(|config| {
        let (text, expected) = generated(&config);
        let (header, groups) = windows(&text, config.start_time);
        let shuffled: Vec<_> = groups
            .into_iter()
            .map(|group| Just(group).prop_shuffle())
            .collect();
        (Just(config), Just(expected), Just(header), shuffled)
    })
}

proptest! {
    #![proptest_config(config(256))]

    /// (d) Generated data gives exactly the generator's expected totals.
    #[test]
    fn generated_data_gives_the_expected_totals(config in small_config()) {
        let (text, expected) = generated(&config);
        let summary = summarize(text.lines().map(str::as_bytes));
        assert_expected(&summary, &expected)?;
    }

    /// (a) Records inside one capture window arrive in any order.
    #[test]
    fn shuffling_inside_a_window_never_changes_the_verdicts(
        (config, expected, header, windows) in shuffled_windows()
    ) {
        let _ = config;
        let lines = header
            .iter()
            .chain(windows.iter().flatten())
            .map(String::as_bytes);
        let summary = summarize(lines);
        assert_expected(&summary, &expected)?;
    }

    /// (b) Chunk boundaries anywhere, CRLF or LF, final newline or not.
    #[test]
    fn chunking_never_changes_the_totals(
        config in small_config(),
        crlf in any::<bool>(),
        final_newline in any::<bool>(),
        cuts in prop::collection::vec(any::<Index>(), 0..60),
    ) {
        let (text, _) = generated(&config);
        let whole = summarize(text.lines().map(str::as_bytes));
        let mut data = if crlf { text.replace('\n', "\r\n") } else { text };
        if !final_newline {
            data.truncate(data.trim_end().len());
        }
        let data = data.into_bytes();
        let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut.index(data.len() + 1)).collect();
        cuts.sort_unstable();
        let chunked = summarize_chunks(&data, &cuts);
        prop_assert_eq!(totals(&chunked), totals(&whole));
    }

    /// (b) The splitter gives back exactly the lines of its input.
    #[test]
    fn line_splitter_gives_each_line_once(
        data in prop::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'a'), any::<u8>()], 0..400),
        cuts in prop::collection::vec(any::<Index>(), 0..40),
    ) {
        let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut.index(data.len() + 1)).collect();
        cuts.sort_unstable();
        let mut lines: Vec<Vec<u8>> = Vec::new();
        let mut splitter = LineSplitter::default();
        let mut begin = 0;
        for &cut in cuts.iter().chain(std::iter::once(&data.len())) {
            splitter.push(&data[begin..cut], |line| lines.push(line.to_vec()));
            begin = cut;
        }
        splitter.finish(|line| lines.push(line.to_vec()));
        let mut expected: Vec<Vec<u8>> = data.split(|&byte| byte == b'\n').map(<[u8]>::to_vec).collect();
        if expected.last().is_some_and(Vec::is_empty) {
            expected.pop();
        }
        prop_assert_eq!(lines, expected);
    }
}

/// Every field name AWS has published, and a few it has not (yet).
fn field_names() -> Vec<&'static str> {
    vec![
        "version",
        "account-id",
        "interface-id",
        "srcaddr",
        "dstaddr",
        "srcport",
        "dstport",
        "protocol",
        "packets",
        "bytes",
        "start",
        "end",
        "action",
        "log-status",
        "vpc-id",
        "subnet-id",
        "instance-id",
        "tcp-flags",
        "type",
        "pkt-srcaddr",
        "pkt-dstaddr",
        "region",
        "az-id",
        "sublocation-type",
        "sublocation-id",
        "pkt-src-aws-service",
        "pkt-dst-aws-service",
        "flow-direction",
        "traffic-path",
        "ecs-cluster-arn",
        "ecs-task-id",
        "reject-reason",
        "resource-id",
        "encryption-status",
        "some-future-field",
        "x_y",
    ]
}

fn any_format() -> impl Strategy<Value = LogFormat> {
    let names = field_names();
    let count = names.len();
    prop::sample::subsequence(names, 1..=count)
        .prop_shuffle()
        .prop_map(|names| LogFormat::parse(&names.join(" ")).expect("distinct field names"))
}

/// A value some column could hold, or nearly.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "-",
            "ACCEPT",
            "REJECT",
            "OK",
            "NODATA",
            "SKIPDATA",
            "ingress",
            "egress",
            "0",
            "6",
            "17",
            "1",
            "2",
            "18",
            "4",
            "65535",
            "65536",
            "-1",
            "eni-1",
            "eni-2",
            "i-1",
            "IPv4",
            "10.0.0.1",
            "10.0.0.2",
            "10.0.0.999",
            "2001:db8::1",
            "2001:db8::2",
            "::ffff:10.0.0.1",
            "version",
            "srcaddr",
            "18446744073709551615",
            "18446744073709551616",
            "ÿ",
            "${x}",
        ])
        .prop_map(str::to_string),
        any::<u64>().prop_map(|n| n.to_string()),
        (1_000u64..1_400).prop_map(|n| n.to_string()),
        any::<[u8; 4]>().prop_map(|[a, b, c, d]| format!("{a}.{b}.{c}.{d}")),
        "[a-zA-Z0-9:.${}-]{0,12}",
    ]
}

fn separator() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![" ", " ", " ", "  ", "\t", " \r "])
}

/// A line of tokens: mostly the format's field count, sometimes one off.
fn token_line(fields: usize) -> impl Strategy<Value = Vec<u8>> {
    let count = prop_oneof![
        8 => Just(fields),
        1 => Just(fields.saturating_sub(1)),
        1 => Just(fields + 1),
        1 => 0..fields + 2,
    ];
    count
        .prop_flat_map(|count| prop::collection::vec((token(), separator()), count))
        .prop_map(|tokens| {
            let mut line = String::new();
            for (token, separator) in tokens {
                line.push_str(&token);
                line.push_str(separator);
            }
            line.into_bytes()
        })
}

/// Lines of arbitrary bytes, or of plausible tokens, joined with `\n`.
fn any_input(format: &LogFormat) -> impl Strategy<Value = Vec<u8>> + use<> {
    let fields = format.fields().len();
    let line = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..120),
        token_line(fields),
    ];
    prop::collection::vec(line, 0..40).prop_map(|lines| lines.join(&b'\n'))
}

/// How many lines the pipeline must count: the non-empty ones that are not
/// header lines (a header may come anywhere: concatenated S3 objects).
fn countable_lines(data: &[u8]) -> u64 {
    data.split(|&byte| byte == b'\n')
        .map(<[u8]>::trim_ascii)
        .filter(|line| !line.is_empty())
        .filter(|line| {
            std::str::from_utf8(line)
                .ok()
                .and_then(LogFormat::from_header_line)
                .is_none()
        })
        .count() as u64
}

proptest! {
    #![proptest_config(config(512))]

    /// (c) The parser takes any bytes in any format without panicking.
    #[test]
    fn the_parser_never_panics(
        (format, lines) in any_format().prop_flat_map(|format| {
            let input = any_input(&format);
            (Just(format), input)
        }),
    ) {
        let parser = RecordParser::new(format);
        for line in lines.split(|&byte| byte == b'\n') {
            if let Ok(record) = parser.parse_bytes(line) {
                let _ = (record.time(), record.marks_intermediate());
            }
        }
    }

    /// (c) Every non-empty line is counted once, as a record or malformed;
    /// correlation takes whatever parses, and finishing leaves nothing held.
    #[test]
    fn every_line_counts_once(
        (format, data) in any_format().prop_flat_map(|format| {
            let input = any_input(&format);
            (Just(format), input)
        }),
        auto in any::<bool>(),
    ) {
        let choice = if auto { FormatChoice::Auto } else { FormatChoice::Fixed(format) };
        let mut pipeline = Pipeline::new(
            choice,
            Settings::default(),
            HashMap::new(),
            RecordFilter::default(),
        );
        let mut summary = Summary::new(pipeline.correlator().service_ports().clone(), false);
        pipeline.begin_input();
        for line in data.split(|&byte| byte == b'\n') {
            pipeline.push_line(line, None, &mut summary);
        }
        pipeline.finish(&mut summary);
        let records = &summary.records;
        prop_assert_eq!(records.total, countable_lines(&data));
        prop_assert_eq!(
            records.ok + records.nodata + records.skipdata + records.malformed,
            records.total
        );
        prop_assert_eq!(
            summary.malformed_by_reason.values().sum::<u64>(),
            records.malformed
        );
        prop_assert!(summary.sessions.total() <= records.ok);
        for load in pipeline.correlator().load() {
            prop_assert_eq!((load.pending, load.open), (0, 0), "{}", load.interface_id);
        }
    }
}

#[test]
fn countable_lines_counts_what_the_pipeline_must() {
    let header = "version srcaddr";
    assert_eq!(countable_lines(b""), 0);
    assert_eq!(countable_lines(b"\n \r\n"), 0);
    assert_eq!(countable_lines(b"x"), 1);
    assert_eq!(countable_lines(format!("{header}\n").as_bytes()), 0);
    assert_eq!(countable_lines(format!("\n{header}\nx\n\ny").as_bytes()), 2);
    assert_eq!(countable_lines(format!("x\n{header}").as_bytes()), 1);
}

/// (d) Full-size generated logs, both styles, several seeds, with nothing
/// configured: every interface's address is learned from its records.
#[test]
fn full_size_generated_logs_give_the_expected_totals() {
    for style in [Style::V2, Style::Rich] {
        for seed in 1..=3 {
            let config = GeneratorConfig {
                seed,
                records: 5_000,
                style,
                ..GeneratorConfig::default()
            };
            check_without_facts(&config);
        }
    }
}

/// The bundled sample's settings (`examples/sample-flows.log`).
#[test]
fn the_sample_settings_give_the_expected_totals_without_facts() {
    check_without_facts(&GeneratorConfig {
        seed: 4,
        records: 100,
        interfaces: 2,
        sessions_per_window: 10,
        start_time: 1_732_780_800,
        style: Style::Rich,
    });
}

/// A small log whose interface eni-…0 starts with a rejected egress request
/// alone; its next record (another peer: 10.0.0.10 is then on every record)
/// is the one whose time passes the reply grace. See the unit test
/// `the_record_that_passes_the_grace_is_learned_from_before_it_decides`.
#[test]
fn learned_addresses_count_the_record_that_passes_the_grace() {
    for (seed, style) in [(3, Style::Rich), (0, Style::V2)] {
        let (records, interfaces, sessions_per_window) = match style {
            Style::Rich => (100, 4, 5),
            Style::V2 => (30, 2, 1),
        };
        check_without_facts(&GeneratorConfig {
            seed,
            records,
            interfaces,
            sessions_per_window,
            start_time: 1_500_000_000,
            style,
        });
    }
}

fn check_without_facts(config: &GeneratorConfig) {
    let (text, expected) = generated(config);
    let summary = summarize_with(
        pipeline_with(HashMap::new()),
        text.lines().map(str::as_bytes),
    );
    assert_eq!(summary.records.total, expected.records, "{config:?}");
    assert_eq!(summary.records.malformed, 0, "{config:?}");
    assert_eq!(summary.records.nodata, expected.nodata, "{config:?}");
    assert_eq!(summary.records.skipdata, expected.skipdata, "{config:?}");
    assert_eq!(summary.sessions, expected.sessions, "{config:?}");
}
