//! The core's checkpoint (issue 7, restarts): a pipeline checkpointed after
//! any prefix of its input, written as JSON and restored into a fresh
//! pipeline, counts with the rest of the input exactly what one
//! uninterrupted pipeline counts — session by session, also when
//! `max_open_sessions` evicts.

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::FileFailurePersistence;
use vpc_flow_exporter::commands::generate::{GeneratorConfig, Style, generate};
use vpc_flow_exporter::flow::{
    FormatChoice, Pipeline, PipelineCheckpoint, RecordFilter, RestoreError, SessionDetail,
    Settings, Summary,
};

fn pipeline() -> Pipeline {
    bounded(Settings::default().max_open_sessions)
}

/// A pipeline holding at most `max_open_sessions`.
fn bounded(max_open_sessions: usize) -> Pipeline {
    Pipeline::new(
        FormatChoice::Auto,
        Settings {
            max_open_sessions,
            ..Settings::default()
        },
        Default::default(),
        RecordFilter::default(),
    )
}

fn summary(pipeline: &Pipeline) -> Summary {
    Summary::new(pipeline.correlator().service_ports().clone(), true)
}

fn lines(config: &GeneratorConfig) -> Vec<String> {
    let mut out = Vec::new();
    generate(config, &mut out).expect("writing to memory");
    String::from_utf8(out)
        .expect("generated text is UTF-8")
        .lines()
        .map(str::to_string)
        .collect()
}

/// Every session closed, in a stable order.
fn sessions(summaries: &[&Summary]) -> Vec<SessionDetail> {
    let mut all: Vec<SessionDetail> = summaries
        .iter()
        .flat_map(|summary| summary.details.clone().unwrap_or_default())
        .collect();
    all.sort_by(|a, b| {
        (&a.interface_id, a.start, &a.initiator, &a.responder, a.end).cmp(&(
            &b.interface_id,
            b.start,
            &b.initiator,
            &b.responder,
            b.end,
        ))
    });
    all
}

/// How often and how far ahead of the records `serve`'s wall clock moves.
#[derive(Debug, Clone, Copy)]
struct Clock {
    /// Every this many lines; 0: never (as `analyze`).
    every: usize,
    /// Seconds after the line's end: ahead of the records, so deadlines
    /// fall due between records and some replies come after their grace.
    lead: u64,
}

/// Feeds `lines[from..to]`, moving the wall clock as `clock` says.
fn feed(
    pipeline: &mut Pipeline,
    summary: &mut Summary,
    lines: &[String],
    range: std::ops::Range<usize>,
    clock: Clock,
) {
    for index in range {
        let line = &lines[index];
        let end = pipeline.push_line(line.as_bytes(), None, summary);
        if clock.every > 0
            && index % clock.every == 0
            && let Some(end) = end
        {
            pipeline.advance_to(end + clock.lead, summary);
        }
    }
}

fn configs() -> impl Strategy<Value = GeneratorConfig> {
    (
        any::<bool>(),
        any::<u64>(),
        1usize..400,
        1usize..5,
        1usize..30,
    )
        .prop_map(
            |(rich, seed, records, interfaces, sessions_per_window)| GeneratorConfig {
                seed,
                records,
                interfaces,
                sessions_per_window,
                start_time: 1_700_000_000,
                style: if rich { Style::Rich } else { Style::V2 },
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/checkpoint.proptest-regressions",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_restored_pipeline_counts_what_an_uninterrupted_one_counts(
        config in configs(),
        split in any::<Index>(),
        every in prop_oneof![Just(0usize), 1usize..40],
        lead in 0u64..700,
        max_open in prop_oneof![Just(1_000_000usize), 1usize..60],
    ) {
        let lines = lines(&config);
        let split = split.index(lines.len() + 1);
        let clock = Clock { every, lead };

        let mut whole = bounded(max_open);
        let mut whole_summary = summary(&whole);
        whole.begin_input();
        feed(&mut whole, &mut whole_summary, &lines, 0..lines.len(), clock);
        whole.finish(&mut whole_summary);

        let mut first = bounded(max_open);
        let mut first_summary = summary(&first);
        first.begin_input();
        feed(&mut first, &mut first_summary, &lines, 0..split, clock);
        // Written from the live table, as the exporter writes it; the
        // same data as the owned copy.
        let json = serde_json::to_string(&first.checkpoint_view()).unwrap();
        prop_assert_eq!(
            serde_json::from_str::<serde_json::Value>(&json).unwrap(),
            serde_json::to_value(first.checkpoint()).unwrap()
        );
        drop(first);

        let mut second = bounded(max_open);
        let mut second_summary = summary(&second);
        second.restore(serde_json::from_str(&json).unwrap()).unwrap();
        feed(&mut second, &mut second_summary, &lines, split..lines.len(), clock);
        second.finish(&mut second_summary);

        for verdict in vpc_flow_exporter::flow::Verdict::ALL {
            prop_assert_eq!(
                first_summary.sessions.get(verdict) + second_summary.sessions.get(verdict),
                whole_summary.sessions.get(verdict),
                "{:?}", verdict
            );
        }
        prop_assert_eq!(
            first_summary.records.total + second_summary.records.total,
            whole_summary.records.total
        );
        prop_assert_eq!(
            sessions(&[&first_summary, &second_summary]),
            sessions(&[&whole_summary])
        );
    }
}

#[test]
fn a_checkpoint_of_another_version_is_refused_and_changes_nothing() {
    let mut pipeline = pipeline();
    let mut checkpoint = pipeline.checkpoint();
    checkpoint.version = PipelineCheckpoint::VERSION + 1;
    assert_eq!(
        pipeline.restore(checkpoint),
        Err(RestoreError::Version {
            found: PipelineCheckpoint::VERSION + 1,
            expected: PipelineCheckpoint::VERSION
        })
    );
    assert_eq!(pipeline.checkpoint(), fresh());
}

fn fresh() -> PipelineCheckpoint {
    pipeline().checkpoint()
}

#[test]
fn a_checkpoint_holds_pending_and_decided_sessions_with_their_addresses() {
    let mut pipeline = pipeline();
    let mut summary = summary(&pipeline);
    for line in [
        "2 1 eni-a 198.51.100.7 10.0.0.10 40000 22 6 1 44 1000 1050 ACCEPT OK",
        "2 1 eni-a 10.0.0.10 198.51.100.7 22 40000 6 1 40 1000 1050 ACCEPT OK",
        "2 1 eni-a 203.0.113.9 10.0.0.10 50000 5432 6 1 40 1010 1050 ACCEPT OK",
    ] {
        pipeline.push_line(line.as_bytes(), None, &mut summary);
    }
    let checkpoint = pipeline.checkpoint();
    let json = serde_json::to_value(&checkpoint).unwrap();
    let sessions = json["correlator"]["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    // Pending ones first, in order of opening; then decided ones.
    assert!(sessions[0]["decision"].is_null());
    assert_eq!(sessions[1]["decision"]["verdict"], "accepted");
    assert_eq!(
        json["correlator"]["interfaces"][0]["learned"][0]["local"],
        "10.0.0.10"
    );
    assert_eq!(json["version"], PipelineCheckpoint::VERSION);
}

/// What a flood costs on disk: every open session in the checkpoint, with
/// its bytes bounded (the README's state-file figure per session).
#[test]
fn a_checkpoint_costs_a_bounded_number_of_bytes_per_open_session() {
    let mut pipeline = pipeline();
    let mut summary = summary(&pipeline);
    let sessions = 20_000u32;
    for n in 0..sessions {
        let line = format!(
            "2 1 eni-a 198.{}.{}.{} 10.0.0.10 {} 443 6 1 44 1000 1050 ACCEPT OK",
            51 + (n >> 16),
            (n >> 8) & 0xff,
            n & 0xff,
            1024 + n % 60000
        );
        pipeline.push_line(line.as_bytes(), None, &mut summary);
    }
    let checkpoint = pipeline.checkpoint();
    assert_eq!(
        checkpoint.correlator.sessions.len(),
        sessions as usize,
        "every open session is checkpointed"
    );
    let bytes = serde_json::to_vec(&checkpoint).unwrap().len();
    let per_session = bytes / sessions as usize;
    eprintln!("checkpoint: {bytes} bytes for {sessions} open sessions, {per_session} per session");
    assert!(per_session <= 260, "{per_session} bytes per session");
}
