use super::*;

#[test]
fn start_after_end_is_impossible() {
    let check = TimeCheck::default();
    assert_eq!(
        check.judge(Some(1001), Some(1000)),
        Plausibility::Impossible
    );
    assert_eq!(check.judge(Some(1000), Some(1000)), Plausibility::Plausible);
}

#[test]
fn a_millisecond_timestamp_is_impossible_even_first() {
    let check = TimeCheck::default();
    assert_eq!(
        check.judge(Some(1_672_869_645_000), Some(1_672_869_668_000)),
        Plausibility::Impossible
    );
    assert_eq!(
        check.judge(None, Some(99_999_999_999)),
        Plausibility::Impossible
    );
    assert_eq!(
        check.judge(Some(1_672_869_645), None),
        Plausibility::Plausible
    );
}

#[test]
fn the_bound_is_the_last_second_a_u32_holds() {
    let check = TimeCheck::default();
    assert_eq!(
        check.judge(None, Some(4_294_967_294)),
        Plausibility::Plausible
    );
    assert_eq!(
        check.judge(None, Some(4_294_967_295)),
        Plausibility::Impossible
    );
    assert_eq!(
        check.judge(Some(4_294_967_295), None),
        Plausibility::Impossible
    );
}

#[test]
fn serve_judges_against_the_wall_clock() {
    let mut check = TimeCheck::default();
    check.set_wall_clock(1_700_000_000);
    assert_eq!(
        check.judge(Some(1_700_000_000), Some(1_700_003_600)),
        Plausibility::Plausible
    );
    assert_eq!(
        check.judge(Some(1_700_000_000), Some(1_700_003_601)),
        Plausibility::Impossible
    );
    // Old records are normal.
    assert_eq!(check.judge(Some(1), Some(2)), Plausibility::Plausible);
}

#[test]
fn offline_judges_against_the_latest_good_time() {
    let mut check = TimeCheck::default();
    // Nothing to judge the first record against.
    assert_eq!(
        check.judge(None, Some(4_000_000_000)),
        Plausibility::Plausible
    );
    check.note_good(1_700_000_000);
    check.note_good(1_600_000_000);
    assert_eq!(
        check.judge(None, Some(1_700_003_600)),
        Plausibility::Plausible
    );
    assert_eq!(
        check.judge(None, Some(1_700_003_601)),
        Plausibility::Ahead(1_700_003_601)
    );
    assert!(TimeCheck::confirms(1_700_086_400, 1_700_086_400 - 3600));
    assert!(!TimeCheck::confirms(1_700_086_400, 1_700_000_000));
}

// Through the pipeline: what a bad time does to the records around it.

use std::collections::HashMap;

use crate::flow::correlate::{ServicePorts, Settings};
use crate::flow::format::FormatChoice;
use crate::flow::pipeline::{Pipeline, RecordFilter};
use crate::flow::record::Malformed;
use crate::flow::summary::Summary;

/// A version-2 record on `interface` from `src` to `dst` (`addr:port`).
fn line(interface: &str, src: &str, dst: &str, start: u64, end: u64) -> String {
    let (src, srcport) = src.split_once(':').unwrap();
    let (dst, dstport) = dst.split_once(':').unwrap();
    format!(
        "2 123456789010 {interface} {src} {dst} {srcport} {dstport} 6 1 44 {start} {end} ACCEPT OK"
    )
}

const T: u64 = 1_700_000_000;

fn request(start: u64) -> String {
    line(
        "eni-a",
        "198.51.100.7:40000",
        "10.0.0.10:22",
        start,
        start + 50,
    )
}

fn reply(start: u64) -> String {
    line(
        "eni-a",
        "10.0.0.10:22",
        "198.51.100.7:40000",
        start,
        start + 50,
    )
}

/// Any other session of the same interface, at `start`.
fn other(interface: &str, start: u64, end: u64) -> String {
    line(interface, "203.0.113.9:50000", "10.0.0.10:443", start, end)
}

fn run(wall_clock: Option<u64>, lines: &[String]) -> Summary {
    run_inputs(wall_clock, &[lines])
}

fn run_inputs(wall_clock: Option<u64>, inputs: &[&[String]]) -> Summary {
    let mut pipeline = Pipeline::new(
        FormatChoice::Auto,
        Settings::default(),
        HashMap::new(),
        RecordFilter::default(),
    );
    if let Some(now) = wall_clock {
        pipeline.set_wall_clock(now);
    }
    let mut summary = Summary::new(ServicePorts::new(&[]), false);
    for lines in inputs {
        pipeline.begin_input();
        for line in *lines {
            pipeline.push_line(line.as_bytes(), None, &mut summary);
        }
    }
    pipeline.finish(&mut summary);
    summary
}

fn bad_times(summary: &Summary) -> u64 {
    summary
        .malformed_by_reason
        .get(&Malformed::BadTime)
        .copied()
        .unwrap_or(0)
}

/// The pair is one accepted session; the other record is unanswered.
fn assert_pair_kept(summary: &Summary, unanswered: u64) {
    assert_eq!(summary.sessions.accepted, 1, "{:?}", summary.sessions);
    assert_eq!(
        summary.sessions.unanswered, unanswered,
        "{:?}",
        summary.sessions
    );
}

#[test]
fn one_bad_record_does_not_split_a_request_reply_pair() {
    let bad_records = [
        ("start after end", other("eni-a", T + 90_000, T + 80_000)),
        ("milliseconds", other("eni-a", T * 1000, T * 1000 + 50_000)),
        ("year 5138", other("eni-a", 99_999_999_000, 99_999_999_999)),
        (
            "a year ahead",
            other("eni-a", T + 31_536_000, T + 31_536_050),
        ),
    ];
    for (case, bad) in bad_records {
        let summary = run(None, &[request(T), bad, reply(T)]);
        assert_eq!(bad_times(&summary), 1, "{case}");
        assert_eq!(summary.records.malformed, 1, "{case}");
        assert_eq!(summary.records.ok, 2, "{case}");
        assert_pair_kept(&summary, 0);
    }
}

#[test]
fn serve_counts_an_end_more_than_an_hour_after_the_wall_clock() {
    let now = T + 100;
    let summary = run(
        Some(now),
        &[request(T), other("eni-a", T, now + 3601), reply(T)],
    );
    assert_eq!(bad_times(&summary), 1);
    assert_pair_kept(&summary, 0);
    // Within the hour is a clock skew, not a bad record.
    let summary = run(
        Some(now),
        &[request(T), other("eni-a", T, now + 3600), reply(T)],
    );
    assert_eq!(bad_times(&summary), 0);
    assert_eq!(summary.records.ok, 3);
}

#[test]
fn serve_takes_old_records_and_judges_each_on_its_own() {
    // With the wall clock known, two records far ahead are both bad.
    let now = 2_000_000_000;
    let ahead = [
        other("eni-a", now + 7200, now + 7250),
        other("eni-b", now + 7200, now + 7260),
    ];
    let summary = run(
        Some(now),
        &[request(T), ahead[0].clone(), ahead[1].clone(), reply(T)],
    );
    assert_eq!(bad_times(&summary), 2);
    assert_pair_kept(&summary, 0);
}

#[test]
fn the_first_record_of_an_interface_is_judged_by_the_whole_input() {
    // eni-b has no watermark yet: the good times of eni-a say its first
    // record is a year ahead.
    let summary = run(
        None,
        &[
            request(T),
            other("eni-b", T + 31_536_000, T + 31_536_050),
            other("eni-b", T, T + 50),
            reply(T),
        ],
    );
    assert_eq!(bad_times(&summary), 1);
    assert_pair_kept(&summary, 1);
}

#[test]
fn an_input_that_jumps_ahead_is_normal_offline() {
    // Two files a day apart in one run: the second file's first record
    // is far ahead of the first file, and the record after it agrees.
    let day = 86_400;
    let summary = run(
        None,
        &[request(T), reply(T), request(T + day), reply(T + day)],
    );
    assert_eq!(bad_times(&summary), 0);
    assert_eq!(summary.sessions.accepted, 2);
    assert_eq!(summary.records.ok, 4);
}

#[test]
fn each_file_is_judged_on_its_own_times() {
    // Single records from the AWS documentation, years apart.
    let year = 31_536_000;
    let first = [request(T)];
    let second = [other("eni-a", T + 2 * year, T + 2 * year + 50)];
    let third = [reply(T - year)];
    let summary = run_inputs(None, &[&first, &second, &third]);
    assert_eq!(bad_times(&summary), 0);
    assert_eq!(summary.records.ok, 3);
    // A suspect that nothing in its file confirms is bad, whatever follows.
    let first = [request(T), other("eni-a", T + year, T + year + 50)];
    let second = [other("eni-b", T + year, T + year + 50)];
    let summary = run_inputs(None, &[&first, &second]);
    assert_eq!(bad_times(&summary), 1);
    assert_eq!(summary.records.ok, 2);
}

#[test]
fn a_record_far_ahead_at_the_end_of_input_is_bad() {
    let summary = run(
        None,
        &[request(T), reply(T), other("eni-a", T + 90_000, T + 90_050)],
    );
    assert_eq!(bad_times(&summary), 1);
    assert_pair_kept(&summary, 0);
}

#[test]
fn a_bad_record_followed_by_another_far_ahead_elsewhere_is_bad_too() {
    let summary = run(
        None,
        &[
            request(T),
            other("eni-a", T + 90_000, T + 90_050),
            other("eni-a", T + 900_000, T + 900_050),
            reply(T),
        ],
    );
    assert_eq!(bad_times(&summary), 2);
    assert_pair_kept(&summary, 0);
}
