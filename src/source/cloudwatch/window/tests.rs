//! The planner without any API: unit tests of its rules, and a property
//! test that simulates a log group (streams that appear, records that land
//! late) read through any sequence of successes, failures and waits.

use std::collections::{BTreeMap, HashMap, HashSet};

use proptest::prelude::*;

use super::*;

const SEC: i64 = 1000;
const MIN: i64 = 60 * SEC;
const T0: i64 = 1_700_000_000_000;

fn settings() -> WindowSettings {
    WindowSettings::new(
        Duration::from_secs(30),
        Duration::from_secs(20 * 60),
        Duration::from_secs(2 * 60),
        Duration::from_secs(6 * 3600),
        Duration::from_secs(3600),
        Duration::from_secs(5 * 60),
        Duration::from_secs(10 * 60),
        Duration::from_secs(5 * 60),
    )
}

fn streams(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn first_window_starts_at_process_start_less_lookback_however_late_it_succeeds() {
    let mut planner = WindowPlanner::new(settings(), T0, 1);
    // The API is down for 7 minutes: discovery fails, nothing is planned.
    assert!(planner.discovery_due(T0));
    assert!(!planner.can_poll_without_discovery());
    planner.failed();
    planner.failed();
    let now = T0 + 7 * MIN;
    planner.discovered(now, streams(&["eni-a-all"]));
    let plan = planner.plan(now);
    assert_eq!(plan.window_start_ms, T0 - 20 * MIN, "not now - lookback");
    assert_eq!(plan.window_end_ms, now);
    assert_eq!(plan.requests.len(), 1);
    planner.commit(&plan, Some(MIN));
    assert_eq!(planner.consecutive_failures(), 0);
    assert_eq!(planner.state().last_end_ms, Some(now));
}

#[test]
fn overlap_follows_the_measured_delay_within_bounds() {
    let mut planner = WindowPlanner::new(settings(), T0, 1);
    assert_eq!(planner.overlap_ms(), 20 * MIN, "nothing measured: lookback");
    planner.discovered(T0, streams(&["eni-a-all"]));
    let plan = planner.plan(T0);
    planner.commit(&plan, Some(2 * MIN));
    assert_eq!(planner.overlap_ms(), 3 * MIN + 30 * SEC, "1.5 × 2m + 30s");
    let next = planner.plan(T0 + 30 * SEC);
    assert_eq!(next.window_start_ms, T0 - next.overlap_ms);
    planner.commit(&next, Some(0));
    assert_eq!(
        planner.overlap_ms(),
        3 * MIN + 30 * SEC,
        "the largest of the hour"
    );
    let later = planner.plan(T0 + 2 * 3600 * SEC);
    planner.commit(&later, Some(SEC));
    assert_eq!(planner.overlap_ms(), 2 * MIN, "min_overlap floor");
}

#[test]
fn a_window_counted_in_part_stays_open_and_keeps_its_delays() {
    let mut planner = WindowPlanner::new(settings(), T0, 1);
    planner.discovered(T0, streams(&["eni-a-all"]));
    let plan = planner.plan(T0);
    // A batch of the window was counted, then the poll failed.
    planner.note_new_delay(T0, Some(2 * MIN));
    planner.failed();
    assert_eq!(planner.state().last_end_ms, None, "not committed");
    let again = planner.plan(T0 + 30 * SEC);
    assert_eq!(again.window_start_ms, plan.window_start_ms, "read again");
    assert_eq!(
        planner.overlap_ms(),
        3 * MIN + 30 * SEC,
        "the batch's delay is measured"
    );
}

#[test]
fn probe_rereads_back_to_the_last_probe_less_lookback() {
    let mut planner = WindowPlanner::new(settings(), T0, 1);
    planner.discovered(T0, streams(&["eni-a-all"]));
    let first = planner.plan(T0);
    planner.commit(&first, Some(0));
    let mut now = T0;
    loop {
        now += 30 * SEC;
        let plan = planner.plan(now);
        if plan.probe {
            assert_eq!(now, T0 + 10 * MIN);
            assert_eq!(plan.window_start_ms, T0 - 20 * MIN);
            break;
        }
        assert_eq!(plan.window_start_ms, now - 30 * SEC - 2 * MIN);
        planner.commit(&plan, Some(0));
    }
}

#[test]
fn a_stream_found_later_is_read_back_to_the_previous_listing() {
    let mut planner = WindowPlanner::new(settings(), T0, 1);
    planner.discovered(T0, streams(&["eni-a-all"]));
    let first = planner.plan(T0);
    planner.commit(&first, Some(0));
    let at = T0 + 5 * MIN;
    assert!(planner.discovery_due(at));
    planner.discovered(at, streams(&["eni-a-all", "eni-b-all"]));
    let plan = planner.plan(at);
    assert_eq!(plan.window_start_ms, T0 - 20 * MIN);
    let starts: Vec<(i64, &str)> = plan
        .requests
        .iter()
        .map(|r| (r.start_ms, r.stream_names[0].as_str()))
        .collect();
    assert_eq!(
        starts,
        vec![(T0 - 20 * MIN, "eni-b-all"), (T0 - 2 * MIN, "eni-a-all")]
    );
    planner.commit(&plan, None);
    assert!(planner.state().new_streams.is_empty());
}

#[test]
fn requests_hold_at_most_100_streams() {
    let mut planner = WindowPlanner::new(settings(), T0, 1);
    let names: Vec<String> = (0..250).map(|i| format!("eni-{i:04}-all")).collect();
    planner.discovered(T0, names);
    let sizes: Vec<usize> = planner
        .plan(T0)
        .requests
        .iter()
        .map(|r| r.stream_names.len())
        .collect();
    assert_eq!(sizes, vec![100, 100, 50]);
}

#[test]
fn catching_up_reads_max_window_at_a_time_and_reports_skipped_time() {
    let mut planner = WindowPlanner::new(settings(), T0, 1);
    planner.discovered(T0, streams(&["eni-a-all"]));
    let first = planner.plan(T0);
    planner.commit(&first, Some(0));
    let now = T0 + 8 * 60 * MIN;
    let plan = planner.plan(now);
    assert_eq!(plan.skipped_ms, 2 * 60 * MIN);
    assert_eq!(plan.window_start_ms, now - 6 * 60 * MIN);
    assert_eq!(plan.window_end_ms, plan.window_start_ms + 60 * MIN);
    planner.commit(&plan, None);
    assert!(!planner.caught_up());
    assert_eq!(planner.next_delay(), Duration::ZERO);
    assert_eq!(planner.plan(now).skipped_ms, 0, "reported once");
}

#[test]
fn restored_state_continues_and_lists_the_streams_again() {
    let mut planner = WindowPlanner::new(settings(), T0, 1);
    planner.discovered(T0, streams(&["eni-a-all"]));
    let plan = planner.plan(T0);
    planner.commit(&plan, Some(MIN));
    let json = serde_json::to_string(planner.state()).unwrap();
    let state: WindowState = serde_json::from_str(&json).unwrap();
    let restored = WindowPlanner::restore(settings(), state, 2);
    let later = T0 + 3 * MIN;
    assert!(
        restored.discovery_due(later),
        "first poll of a process lists streams"
    );
    assert!(restored.can_poll_without_discovery());
    assert_eq!(restored.streams(), ["eni-a-all"]);
    assert_eq!(restored.delays().since_start_ms(), Some(MIN));
    assert_eq!(
        restored.plan(later).window_start_ms,
        T0 - restored.overlap_ms()
    );
}

#[test]
fn next_delay_backs_off_with_jitter_and_resets() {
    let mut planner = WindowPlanner::new(settings(), T0, 7);
    assert_eq!(planner.next_delay(), Duration::from_secs(30));
    let mut largest = Duration::ZERO;
    for failures in 1..=8u32 {
        planner.failed();
        let base = Duration::from_secs(30 * (1 << (failures - 1))).min(Duration::from_secs(300));
        for _ in 0..50 {
            let d = planner.next_delay();
            assert!(d >= base / 2 && d <= base, "{failures}: {d:?}");
            largest = largest.max(d);
        }
    }
    assert!(largest > Duration::from_secs(240));
    planner.discovered(T0, Vec::new());
    let plan = planner.plan(T0);
    planner.commit(&plan, None);
    assert_eq!(planner.next_delay(), Duration::from_secs(30));
}

#[test]
fn settings_out_of_range_are_clamped() {
    let s = WindowSettings::new(
        Duration::from_secs(30),
        Duration::from_secs(20 * 60),
        Duration::from_secs(3600),
        Duration::from_secs(60),
        Duration::from_secs(60),
        Duration::from_secs(300),
        Duration::from_secs(600),
        Duration::from_secs(1),
    );
    assert_eq!(s.min_overlap_ms, s.lookback_ms);
    assert_eq!(s.max_catchup_ms, s.lookback_ms);
    assert!(s.max_window_ms > s.lookback_ms);
    assert_eq!(s.max_backoff_ms, s.poll_interval_ms);
}

/// One flow record in the simulated log group.
#[derive(Debug, Clone)]
struct SimEvent {
    stream: usize,
    timestamp_ms: i64,
    ingestion_ms: i64,
}

/// What happens at one poll.
#[derive(Debug, Clone, Copy)]
enum Step {
    Success,
    /// Listing the streams fails (throttled, unavailable...).
    DiscoveryFails,
    /// The n-th request of the poll fails (a throttle, a 5xx, a timeout:
    /// for the planner, all the same).
    RequestFails(usize),
    /// The requests before the n-th are read and counted as batches (a
    /// flood's window), then the n-th fails.
    FailsAfterBatches(usize),
    /// The requests before the n-th are read and counted as batches, then
    /// the process is killed: the successor starts from the checkpoint of
    /// the last batch (window uncommitted, the batches' fingerprints seen).
    KilledAfterBatches(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => Just(Step::Success),
        1 => Just(Step::DiscoveryFails),
        2 => (0usize..3).prop_map(Step::RequestFails),
        1 => (0usize..3).prop_map(Step::FailsAfterBatches),
        1 => (0usize..4).prop_map(Step::KilledAfterBatches),
    ]
}

/// Streams 0 and 1 exist from the start; stream 2 is created later (its
/// records land after that).
const STREAMS: [&str; 3] = ["eni-a-all", "eni-b-all", "eni-c-all"];

fn events(until_ms: i64) -> impl Strategy<Value = Vec<SimEvent>> {
    let lookback = 20 * MIN;
    prop::collection::vec(
        (
            0usize..3,
            0i64..10_000,
            prop_oneof![3 => 0i64..3 * MIN, 1 => 0..=lookback],
        ),
        0..120,
    )
    .prop_map(move |raw| {
        raw.into_iter()
            .filter_map(|(stream, at, delay)| {
                // Ingestion anywhere between the origin and the end.
                let span = until_ms - (T0 - lookback);
                let ingestion_ms = T0 - lookback + at * span / 10_000;
                let timestamp_ms = ingestion_ms - delay;
                (timestamp_ms >= T0 - lookback).then_some(SimEvent {
                    stream,
                    timestamp_ms,
                    ingestion_ms,
                })
            })
            .collect()
    })
}

/// Runs the planner against the simulated log group; returns how many
/// times each event was returned as new, and the committed windows. With
/// `restart_before`, the process restarts before that step: a new planner
/// from the last checkpoint's window state (through JSON, as on disk) and
/// the checkpointed fingerprints.
fn simulate(
    events: &[SimEvent],
    created_ms: i64,
    script: &[(i64, Step)],
    tail_until_ms: i64,
    restart_before: Option<usize>,
) -> (HashMap<usize, u32>, Vec<(i64, i64)>) {
    let mut planner = WindowPlanner::new(settings(), T0, 3);
    let mut seen: BTreeMap<i64, HashSet<usize>> = BTreeMap::new();
    let mut returned: HashMap<usize, u32> = HashMap::new();
    let mut windows = Vec::new();
    let mut now = T0;
    let tail = std::iter::repeat_n((30 * SEC, Step::Success), 400);
    for (index, (wait, step)) in script.iter().copied().chain(tail).enumerate() {
        if now > tail_until_ms {
            break;
        }
        if restart_before == Some(index) {
            let on_disk = serde_json::to_string(planner.state()).unwrap();
            planner =
                WindowPlanner::restore(settings(), serde_json::from_str(&on_disk).unwrap(), 5);
        }
        if planner.discovery_due(now) {
            if matches!(step, Step::DiscoveryFails) {
                if !planner.can_poll_without_discovery() {
                    planner.failed();
                    now += wait;
                    continue;
                }
            } else {
                let existing = STREAMS
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i < 2 || now >= created_ms)
                    .map(|(_, s)| s.to_string())
                    .collect();
                planner.discovered(now, existing);
            }
        }
        let plan = planner.plan(now);
        let requests = plan.requests.len();
        let fail_at = match step {
            Step::RequestFails(n) if n < requests => Some(n),
            _ => None,
        };
        if fail_at.is_some() {
            planner.failed();
            now += wait;
            continue;
        }
        // How many requests are read before the poll stops part way, and
        // whether it stops by a kill.
        let stop = match step {
            Step::FailsAfterBatches(n) if n < requests => Some((n, false)),
            Step::KilledAfterBatches(n) => Some((n.min(requests), true)),
            _ => None,
        };
        let read_requests = stop.map_or(requests, |(n, _)| n);
        let mut read = Vec::new();
        for request in &plan.requests[..read_requests] {
            for (id, e) in events.iter().enumerate() {
                if request.stream_names.iter().any(|s| s == STREAMS[e.stream])
                    && (request.start_ms..=request.end_ms).contains(&e.timestamp_ms)
                    && e.ingestion_ms <= now
                {
                    read.push(id);
                }
            }
        }
        let mut max_delay = None;
        for id in read {
            let e = &events[id];
            if seen.entry(e.timestamp_ms).or_default().insert(id) {
                *returned.entry(id).or_default() += 1;
                max_delay = max_delay.max(Some(e.ingestion_ms - e.timestamp_ms));
            }
        }
        if let Some((_, killed)) = stop {
            // What was read is counted as batches; the window stays open.
            planner.note_new_delay(now, max_delay);
            if killed {
                let on_disk = serde_json::to_string(planner.state()).unwrap();
                planner =
                    WindowPlanner::restore(settings(), serde_json::from_str(&on_disk).unwrap(), 7);
            } else {
                planner.failed();
            }
            now += wait;
            continue;
        }
        let cutoff = planner.commit(&plan, max_delay);
        seen = seen.split_off(&cutoff);
        windows.push((plan.window_start_ms, plan.window_end_ms));
        now += wait;
    }
    (returned, windows)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever fails and however long polls wait (within `max_catchup`),
    /// the committed windows cover `[start - lookback, now]` without a gap,
    /// and once the API answers again every record that was ingested, with
    /// a delay up to `lookback`, is returned exactly once — also when the
    /// process restarts from its checkpoint somewhere in between, and when
    /// a poll stops (fails, or is killed) after counting part of its window
    /// in batches.
    #[test]
    fn no_sequence_of_failures_loses_or_repeats_a_record(
        script in prop::collection::vec((1i64..=300, step()), 1..60),
        created_min in 1i64..240,
        seed_events in events(T0 + 5 * 60 * MIN),
        restart_before in prop::option::of(0usize..60),
    ) {
        let script: Vec<(i64, Step)> = script.into_iter().map(|(s, step)| (s * SEC, step)).collect();
        let created_ms = T0 + created_min * MIN;
        let until: i64 = T0 + script.iter().map(|(w, _)| w).sum::<i64>();
        let events: Vec<SimEvent> = seed_events
            .into_iter()
            .filter(|e| e.ingestion_ms <= until && (e.stream < 2 || e.ingestion_ms >= created_ms))
            .collect();
        // The quiet tail: two probe intervals and a lookback past the script.
        let (returned, windows) =
            simulate(&events, created_ms, &script, until + 45 * MIN, restart_before);

        prop_assert!(!windows.is_empty());
        prop_assert_eq!(windows[0].0, T0 - 20 * MIN, "first window from start - lookback");
        for pair in windows.windows(2) {
            prop_assert!(pair[1].0 <= pair[0].1, "gap between {:?} and {:?}", pair[0], pair[1]);
            prop_assert!(pair[1].1 >= pair[0].1, "end moved back");
        }
        for (id, e) in events.iter().enumerate() {
            prop_assert_eq!(returned.get(&id).copied(), Some(1), "event {:?}", e);
        }
    }
}
