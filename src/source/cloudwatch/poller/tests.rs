use super::super::fake::{self, FakeLogs};
use super::*;

const SEC: i64 = 1000;
const MIN: i64 = 60 * SEC;
const T0: i64 = 1_700_000_000_000;

fn config() -> PollerConfig {
    PollerConfig::new("/vpc/flow-logs")
}

fn ids(outcome: &PollOutcome) -> Vec<String> {
    outcome.events.iter().map(|e| e.event_id.clone()).collect()
}

/// Polls at `now` with CloudWatch's clock at `now` too.
async fn poll_at(poller: &mut Poller<FakeLogs>, now: i64) -> Result<PollOutcome, ApiError> {
    poller.api().set_now(now);
    poller.poll(now).await
}

#[tokio::test]
async fn first_poll_reads_lookback_and_overlap_rereads_count_once() {
    let api = FakeLogs::new(1000);
    let mut want = Vec::new();
    for i in 0..10 {
        let ts = T0 - 25 * MIN + i * 3 * MIN;
        want.push((ts, api.put("eni-a-all", ts, ts + 2 * MIN)));
    }
    let ts = T0 - 150 * SEC;
    want.push((ts, api.put("eni-b-all", ts, ts + 2 * MIN)));
    want.sort();
    let mut poller = Poller::new(api.clone(), config(), T0);

    let first = poll_at(&mut poller, T0).await.unwrap();
    assert_eq!(first.window_start_ms, T0 - 20 * MIN);
    assert_eq!(first.window_end_ms, T0);
    let in_lookback: Vec<String> = want
        .iter()
        .filter(|(ts, _)| *ts >= T0 - 20 * MIN && *ts + 2 * MIN <= T0)
        .map(|(_, id)| id.clone())
        .collect();
    assert_eq!(ids(&first), in_lookback);
    assert_eq!(first.new, first.fetched);

    // The next poll re-reads the overlap: fetched again, new never.
    let second = poll_at(&mut poller, T0 + 30 * SEC).await.unwrap();
    assert_eq!((second.fetched, second.new), (1, 0));
    assert!(second.events.is_empty());
    // 2m measured delay: 1.5 × 2m + 30s = 3m30s.
    assert_eq!(second.overlap_ms, 3 * MIN + 30 * SEC);
    assert_eq!(second.window_start_ms, T0 - second.overlap_ms);
}

#[tokio::test]
async fn late_record_lands_in_a_later_poll_and_is_returned_once() {
    let api = FakeLogs::new(1000);
    // 10-minute capture: records land up to ~14 minutes after their start.
    for i in 0..5 {
        let ts = T0 - 18 * MIN + i * MIN;
        api.put("eni-a-all", ts, ts + 14 * MIN);
    }
    let mut poller = Poller::new(api.clone(), config(), T0);
    poll_at(&mut poller, T0).await.unwrap();
    assert_eq!(poller.delay_estimate_ms(), Some(14 * MIN));

    let late = api.put("eni-a-all", T0 - 12 * MIN, T0 + 45 * SEC);
    let mut returned = 0;
    for k in 1..=6 {
        let outcome = poll_at(&mut poller, T0 + k * 30 * SEC).await.unwrap();
        assert_eq!(outcome.overlap_ms, 20 * MIN, "1.5 × 14m capped at lookback");
        assert!(!outcome.probe);
        returned += ids(&outcome).iter().filter(|id| **id == late).count();
    }
    assert_eq!(returned, 1);
}

#[tokio::test]
async fn probe_finds_delays_beyond_the_overlap() {
    let api = FakeLogs::new(1000);
    let mut poller = Poller::new(api.clone(), config(), T0);
    api.put("eni-a-all", T0 - MIN, T0 - 30 * SEC);
    poll_at(&mut poller, T0).await.unwrap();
    let normal = poll_at(&mut poller, T0 + 30 * SEC).await.unwrap();
    assert_eq!(normal.overlap_ms, 2 * MIN, "min_overlap floor");

    // Delivery suddenly takes 15 minutes: too late for the small overlap...
    let late = api.put("eni-a-all", T0 - 14 * MIN, T0 + 40 * SEC);
    let mut found_at = None;
    for k in 2..=22 {
        let now = T0 + k * 30 * SEC;
        let outcome = poll_at(&mut poller, now).await.unwrap();
        if ids(&outcome).contains(&late) {
            assert!(found_at.is_none(), "returned twice");
            assert!(outcome.probe, "found by the probe");
            assert_eq!(outcome.window_start_ms, T0 - 20 * MIN);
            found_at = Some(now);
        }
    }
    // ...but the periodic full re-read catches it, and the overlap follows.
    let found_at = found_at.expect("late record never returned");
    assert_eq!(found_at, T0 + 10 * MIN, "within probe_interval");
    assert_eq!(poller.overlap_ms(), 20 * MIN, "14m40s measured");
}

#[tokio::test]
async fn failed_poll_does_not_advance_the_window() {
    let api = FakeLogs::new(1000);
    let mut poller = Poller::new(api.clone(), config(), T0);
    api.put("eni-a-all", T0 - MIN, T0 - 30 * SEC);
    let first = poll_at(&mut poller, T0).await.unwrap();
    assert_eq!(first.new, 1);

    let during = api.put("eni-a-all", T0 + 10 * SEC, T0 + 20 * SEC);
    api.fail_next(fake::throttled());
    let err = poll_at(&mut poller, T0 + 30 * SEC).await.unwrap_err();
    assert_eq!(err.metric_label(), "throttled");
    assert_eq!(poller.consecutive_failures(), 1);

    // A failure on a later page loses the pages already read, too.
    let after = api.put("eni-a-all", T0 + 40 * SEC, T0 + 50 * SEC);
    api.fail_next(ApiError::Retriable {
        operation: "FilterLogEvents",
        message: "503".into(),
    });
    assert!(poll_at(&mut poller, T0 + 60 * SEC).await.is_err());
    assert_eq!(poller.consecutive_failures(), 2);

    let ok = poll_at(&mut poller, T0 + 90 * SEC).await.unwrap();
    assert_eq!(ids(&ok), vec![during, after]);
    assert!(
        ok.window_start_ms < T0,
        "re-covers from the last good window"
    );
    assert_eq!(ok.window_end_ms, T0 + 90 * SEC);
    assert_eq!(poller.consecutive_failures(), 0);
}

#[tokio::test]
async fn failure_on_a_later_page_commits_nothing() {
    let api = FakeLogs::new(2);
    api.create_stream("eni-a-all");
    let mut poller = Poller::new(api.clone(), config(), T0);
    poll_at(&mut poller, T0).await.unwrap();
    let put: Vec<String> = (0..5)
        .map(|i| api.put("eni-a-all", T0 + i * SEC, T0 + 10 * SEC))
        .collect();
    // Pages 1 and 2 are read, page 3 fails.
    api.fail_filter_after(2, fake::throttled());
    assert!(poll_at(&mut poller, T0 + 30 * SEC).await.is_err());
    assert_eq!(poller.seen_len(), 0, "nothing committed");
    let ok = poll_at(&mut poller, T0 + 60 * SEC).await.unwrap();
    assert_eq!(ids(&ok), put);
}

#[tokio::test]
async fn outage_beyond_lookback_resumes_from_the_last_window() {
    let api = FakeLogs::new(10_000);
    api.create_stream("eni-a-all");
    let mut poller = Poller::new(api.clone(), config(), T0);
    poll_at(&mut poller, T0).await.unwrap();
    // One record a minute through a 3-hour outage.
    let put: Vec<String> = (0..180)
        .map(|i| api.put("eni-a-all", T0 + i * MIN, T0 + i * MIN + 2 * MIN))
        .collect();
    api.fail_next(fake::throttled());
    assert!(poll_at(&mut poller, T0 + MIN).await.is_err());

    let now = T0 + 3 * 60 * MIN;
    let mut got = Vec::new();
    let mut polls = 0;
    loop {
        let outcome = poll_at(&mut poller, now).await.unwrap();
        polls += 1;
        assert_eq!(outcome.skipped_ms, 0);
        assert!(outcome.window_end_ms - outcome.window_start_ms <= 60 * MIN);
        got.extend(ids(&outcome));
        if outcome.caught_up {
            break;
        }
        assert_eq!(poller.next_delay(), Duration::ZERO);
    }
    assert_eq!(got, put[..179].to_vec(), "all but the one not ingested yet");
    assert!(polls >= 4, "read in chunks of max_window: {polls}");
    assert_eq!(poller.next_delay(), Duration::from_secs(30));
}

#[tokio::test]
async fn outage_beyond_max_catchup_reports_what_is_skipped() {
    let api = FakeLogs::new(10_000);
    api.create_stream("eni-a-all");
    let mut poller = Poller::new(api.clone(), config(), T0);
    poll_at(&mut poller, T0).await.unwrap();
    for i in 0..(8 * 60) {
        api.put("eni-a-all", T0 + i * MIN, T0 + i * MIN + MIN);
    }
    let now = T0 + 8 * 60 * MIN;
    let first = poll_at(&mut poller, now).await.unwrap();
    // 8h outage, 6h catch-up: [T0, T0 + 2h) is never read.
    assert_eq!(first.skipped_ms, 2 * 60 * MIN);
    assert_eq!(first.window_start_ms, now - 6 * 60 * MIN);
    assert!(!first.caught_up);
    let mut total = first.new;
    loop {
        let outcome = poll_at(&mut poller, now).await.unwrap();
        assert_eq!(outcome.skipped_ms, 0, "reported once");
        total += outcome.new;
        if outcome.caught_up {
            break;
        }
    }
    assert_eq!(total, 6 * 60, "every record of the last 6 hours, once");
}

#[tokio::test]
async fn batches_100_streams_per_call_and_follows_pages() {
    let api = FakeLogs::new(1000);
    for i in 0..250 {
        api.put(&format!("eni-{i:04}-all"), T0 - MIN, T0 - 30 * SEC);
    }
    let mut poller = Poller::new(api.clone(), config(), T0);
    let outcome = poll_at(&mut poller, T0).await.unwrap();
    assert_eq!(
        (outcome.streams, outcome.new, outcome.api_calls),
        (250, 250, 3)
    );
    let calls = api.take_calls();
    let filters = FakeLogs::filter_calls(&calls);
    assert_eq!(filters.len(), 3);
    let sizes: Vec<usize> = filters.iter().map(|r| r.stream_names.len()).collect();
    assert_eq!(sizes, vec![100, 100, 50]);

    // Steady state: still 3 calls a poll, no discovery call.
    poll_at(&mut poller, T0 + 30 * SEC).await.unwrap();
    assert_eq!(FakeLogs::filter_calls(&api.take_calls()).len(), 3);

    // 250 new events in pages of 1000 per call... and in pages of 40.
    let api = FakeLogs::new(40);
    for i in 0..250 {
        api.put(&format!("eni-{i:04}-all"), T0 - MIN, T0 - 30 * SEC);
    }
    let mut poller = Poller::new(api.clone(), config(), T0);
    let outcome = poll_at(&mut poller, T0).await.unwrap();
    // 100 events: 3 pages, 100: 3, 50: 2.
    assert_eq!((outcome.new, outcome.api_calls), (250, 8));
}

#[tokio::test]
async fn dedup_memory_stays_bounded() {
    let api = FakeLogs::new(10_000);
    let mut poller = Poller::new(api.clone(), config(), T0);
    // Four streams, one record each every 10 s, delivered 2-3 min later,
    // polled every 30 s for two hours.
    let mut next_ts = T0 - 30 * MIN;
    let mut max_seen = 0;
    let mut total_new = 0;
    for k in 0..240 {
        let now = T0 + k * 30 * SEC;
        while next_ts <= now - 2 * MIN {
            for s in 0..4 {
                let delay = 2 * MIN + (s * 20 * SEC);
                api.put(&format!("eni-{s}-all"), next_ts, next_ts + delay);
            }
            next_ts += 10 * SEC;
        }
        let outcome = poll_at(&mut poller, now).await.unwrap();
        total_new += outcome.new;
        max_seen = max_seen.max(poller.seen_len());
    }
    // 4 ids per 10 s over lookback + probe_interval + one poll (30m30s).
    assert!(max_seen <= 4 * (183 + 1), "seen {max_seen}");
    assert!(poller.seen_len() > 0);
    // Every record delivered by the last poll was returned once.
    let delivered = (0..4)
        .map(|s| {
            let delay = 2 * MIN + s * 20 * SEC;
            let last = T0 + 239 * 30 * SEC - delay;
            (last - (T0 - 20 * MIN)) / (10 * SEC) + 1
        })
        .sum::<i64>();
    assert_eq!(total_new as i64, delivered);
}

fn event(stream: &str, id: &str, timestamp_ms: i64) -> LogEvent {
    LogEvent {
        stream: stream.into(),
        event_id: id.into(),
        timestamp_ms,
        ingestion_time_ms: timestamp_ms,
        message: String::new(),
    }
}

/// `fingerprint("eni-0123456789abcdef0-all", "1")`, as checkpoints
/// written since per-stream fingerprints (2026-12-07) hold it.
const PINNED_FINGERPRINT: u128 = 334_091_853_054_822_439_121_320_499_219_169_377_627;

/// Fingerprints are written to checkpoints: computed from a stream's
/// cached prefix, they are the values of hashing the whole in one go
/// (as before the cache), and a known value stays what it was.
#[test]
fn fingerprints_from_a_cached_stream_prefix_are_the_checkpointed_values() {
    fn in_one_go(stream: &str, event_id: &str) -> u128 {
        let mut hasher = SipHasher13::new();
        hasher.write(&(stream.len() as u64).to_le_bytes());
        hasher.write(stream.as_bytes());
        hasher.write(event_id.as_bytes());
        hasher.finish128().as_u128()
    }
    let mut fingerprints = Fingerprints::default();
    for index in 0..50 {
        let stream = format!("eni-{:017x}-all", index % 3);
        let id = format!("{:056}", index * 7_919);
        let e = event(&stream, &id, 0);
        assert_eq!(fingerprints.of(&e), in_one_go(&stream, &id), "{e:?}");
        assert_eq!(fingerprint(&stream, &id), in_one_go(&stream, &id));
    }
    assert_eq!(fingerprints.prefixes.len(), 3, "one prefix per stream");
    assert_eq!(
        fingerprint("eni-0123456789abcdef0-all", "1"),
        PINNED_FINGERPRINT
    );
}

#[test]
fn sorting_by_time_keeps_the_order_of_equal_timestamps() {
    let times = [5, 3, 5, 1, 3, 3, 9, 1, 5, 0];
    let mut events: Vec<LogEvent> = times
        .iter()
        .enumerate()
        .map(|(index, time)| event("eni-a-all", &index.to_string(), *time))
        .collect();
    let mut expected = events.clone();
    expected.sort_by_key(|e| e.timestamp_ms);
    sort_by_time(&mut events);
    assert_eq!(events, expected);
    sort_by_time(&mut events);
    assert_eq!(events, expected, "in order already");
}

#[test]
fn the_bound_forgets_whole_oldest_timestamps_and_then_takes_older_events_as_seen() {
    let mut seen = SeenEvents::default();
    for (i, time) in [10, 10, 10, 20, 20, 30].into_iter().enumerate() {
        assert!(seen.insert(&event("eni-a-all", &i.to_string(), time)));
    }
    assert_eq!(seen.bound(6), 0, "within the bound");
    assert_eq!(seen.forgotten_before_ms(), None);
    // 5 allowed: the three events of time 10 go together.
    assert_eq!(seen.bound(5), 3);
    assert_eq!(seen.len(), 3);
    assert_eq!(seen.forgotten_before_ms(), Some(11));
    // A re-read of a forgotten event is not new; neither is anything
    // that old; time 20 is still remembered event by event.
    assert!(!seen.insert(&event("eni-a-all", "0", 10)));
    assert!(!seen.insert(&event("eni-a-all", "late", 10)));
    assert!(!seen.insert(&event("eni-a-all", "3", 20)));
    assert!(seen.insert(&event("eni-a-all", "new", 20)));
    // Pruned up to the forgotten time, the mark has nothing left to do.
    seen.prune(5);
    assert_eq!(seen.forgotten_before_ms(), Some(11));
    seen.prune(11);
    assert_eq!((seen.len(), seen.forgotten_before_ms()), (4, None));
}

/// What a poll drops as pages come is what commit would drop: `contains`
/// answers as `insert` would, forgotten times included.
#[test]
fn contains_agrees_with_insert() {
    let mut seen = SeenEvents::default();
    let events: Vec<LogEvent> = (0..6)
        .map(|i| event("eni-a-all", &i.to_string(), 10 * (i / 2)))
        .collect();
    for e in &events[..4] {
        assert!(!seen.contains(e));
        assert!(seen.insert(e));
        assert!(seen.contains(e));
    }
    assert!(
        !seen.contains(&event("eni-b-all", "0", 0)),
        "another stream"
    );
    assert_eq!(seen.bound(2), 2);
    assert!(
        seen.contains(&event("eni-a-all", "never", 0)),
        "forgotten time"
    );
    for e in &events {
        assert_eq!(seen.contains(e), !seen.clone().insert(e), "{e:?}");
    }
}

#[tokio::test]
async fn a_flood_inside_the_overlap_stays_within_max_seen_events_and_counts_once() {
    let api = FakeLogs::new(1000);
    let mut cfg = config();
    cfg.max_seen_events = 1000;
    api.create_stream("eni-a-all");
    let mut poller = Poller::new(api.clone(), cfg, T0);
    poll_at(&mut poller, T0).await.unwrap();
    // A scan: 200 distinct records a second for 30 s, each second's
    // records with one timestamp, delivered 90 s later.
    let mut flood = Vec::new();
    for second in 0..30 {
        let ts = T0 + second * SEC;
        for _ in 0..200 {
            flood.push(api.put("eni-a-all", ts, ts + 90 * SEC));
        }
    }
    let mut returned = Vec::new();
    let mut forgotten = 0;
    let mut late = None;
    // Polled every 30 s for 25 minutes: every record re-read many times.
    for k in 1..=50 {
        let now = T0 + k * 30 * SEC;
        let outcome = poll_at(&mut poller, now).await.unwrap();
        assert!(
            poller.seen_len() <= 1000,
            "{} remembered",
            poller.seen_len()
        );
        forgotten += outcome.forgotten;
        returned.extend(ids(&outcome));
        if k == 4 {
            // All read: the 1000 of the last 5 timestamps are remembered.
            assert_eq!(outcome.forgotten, 5000);
            assert_eq!(outcome.forgotten_before_ms, Some(T0 + 24 * SEC + 1));
            // What the bound costs: a late record with a timestamp that
            // old is taken for a re-read.
            late = Some(api.put("eni-a-all", T0 + 23 * SEC, now + 10 * SEC));
        }
    }
    returned.sort();
    flood.sort();
    assert_eq!(returned, flood, "each record of the flood once");
    assert_eq!(forgotten, 5000);
    assert!(!returned.contains(&late.unwrap()));
}

#[tokio::test]
async fn the_forgotten_mark_survives_a_checkpoint_and_a_smaller_bound_applies_at_restore() {
    let api = FakeLogs::new(1000);
    for i in 0..150 {
        api.put("eni-a-all", T0 - 5 * MIN + i * SEC, T0 - 10 * SEC);
    }
    let mut cfg = config();
    cfg.max_seen_events = 100;
    let mut poller = Poller::new(api.clone(), cfg.clone(), T0);
    let first = poll_at(&mut poller, T0).await.unwrap();
    assert_eq!((first.new, first.forgotten), (150, 50));
    let json = serde_json::to_string(&poller.state()).unwrap();
    let restored: PollerState = serde_json::from_str(&json).unwrap();
    assert_eq!(
        restored.seen.forgotten_before_ms(),
        first.forgotten_before_ms
    );
    assert_eq!(restored.seen, poller.seen);
    // The successor re-reads the overlap: nothing is new.
    let mut successor = Poller::restore(api.clone(), cfg.clone(), restored);
    let again = poll_at(&mut successor, T0 + 30 * SEC).await.unwrap();
    assert_eq!((again.fetched, again.new, again.forgotten), (150, 0, 0));

    // A checkpoint from before fingerprints were kept per stream (one
    // list by time) restored into a bound of 60: 90 are forgotten,
    // told by the first poll, and what is left still drops re-reads.
    let mut unbounded = Poller::new(api.clone(), config(), T0);
    assert_eq!(poll_at(&mut unbounded, T0).await.unwrap().forgotten, 0);
    assert_eq!(unbounded.seen.streams.len(), 1, "one stream");
    let by_time: Vec<String> = unbounded.seen.streams["eni-a-all"]
        .by_time
        .iter()
        .map(|(time, set)| {
            let ids: Vec<String> = set.iter().map(u128::to_string).collect();
            format!("[{time},[{}]]", ids.join(","))
        })
        .collect();
    let window = serde_json::to_string(unbounded.window.state()).unwrap();
    let json = format!(r#"{{"window":{window},"seen":[{}]}}"#, by_time.join(","));
    let legacy: PollerState = serde_json::from_str(&json).unwrap();
    assert_eq!(legacy.seen.len(), 150);
    cfg.max_seen_events = 60;
    let mut smaller = Poller::restore(api.clone(), cfg, legacy);
    assert_eq!(smaller.seen_len(), 60);
    let outcome = poll_at(&mut smaller, T0 + 30 * SEC).await.unwrap();
    assert_eq!((outcome.forgotten, outcome.new), (90, 0));
}

#[test]
fn the_bound_forgets_the_oldest_of_the_stream_holding_the_most() {
    let mut seen = SeenEvents::default();
    for i in 0..6 {
        assert!(seen.insert(&event("eni-flood-all", &i.to_string(), 10 + i)));
    }
    for i in 0..2 {
        assert!(seen.insert(&event("eni-quiet-all", &i.to_string(), i)));
    }
    // 8 held, 5 allowed: the flood's three oldest go, not the quiet
    // stream's older ones.
    assert_eq!(seen.bound(5), 3);
    assert_eq!(seen.len(), 5);
    assert!(
        seen.contains(&event("eni-flood-all", "late", 12)),
        "taken as seen"
    );
    assert!(!seen.contains(&event("eni-flood-all", "late", 13)));
    assert!(!seen.contains(&event("eni-quiet-all", "late", 0)), "exact");
    assert!(seen.contains(&event("eni-quiet-all", "0", 0)));
    assert_eq!(seen.forgotten_before_ms(), Some(13));
    // Down to 1: the flood stream (3) pays until it holds no more than
    // the quiet one (2), then the one holding the most each time.
    assert_eq!(seen.bound(1), 4);
    assert_eq!(seen.len(), 1);
    // Through a checkpoint and back, marks included.
    let json = serde_json::to_string(&seen).unwrap();
    let restored: SeenEvents = serde_json::from_str(&json).unwrap();
    assert_eq!(restored, seen);
    // Pruned past every mark and fingerprint: nothing is left.
    seen.prune(100);
    assert_eq!(seen, SeenEvents::default());
}

#[tokio::test]
async fn a_flood_window_larger_than_max_seen_events_stays_within_it_and_counts_once() {
    let (api, flood_ids) = flood(1050);
    // A quiet interface in the same window, its records among the flood's.
    let quiet: Vec<String> = (0..5)
        .map(|i| api.put("eni-b-all", T0 - 2 * MIN + i * 10 * SEC, T0 - 10 * SEC))
        .collect();
    let cfg = PollerConfig {
        max_seen_events: 400,
        ..held_to(250)
    };
    let mut poller = Poller::new(api.clone(), cfg, T0);
    api.set_now(T0);
    let mut run = poller.start(T0).await.unwrap();
    let mut returned = Vec::new();
    let mut forgotten = 0;
    let outcome = loop {
        let step = poller.step(&mut run).await.unwrap();
        assert!(poller.seen_len() <= 400, "{} remembered", poller.seen_len());
        match step {
            PollStep::Batch(batch) => {
                forgotten += batch.forgotten;
                returned.extend(batch.events.into_iter().map(|e| e.event_id));
            }
            PollStep::Done(outcome) => break outcome,
        }
    };
    forgotten += outcome.forgotten_since_batch;
    assert_eq!(outcome.forgotten, forgotten);
    assert_eq!(forgotten, 1055 - 400);
    returned.extend(ids(&outcome));
    let mut all: Vec<String> = flood_ids.iter().chain(&quiet).cloned().collect();
    all.sort();
    returned.sort();
    assert_eq!(returned, all, "each record once");

    // Late records with old timestamps: the quiet stream's is counted,
    // the flood stream's is what the bound costs.
    let late_quiet = api.put("eni-b-all", T0 - 2 * MIN + SEC, T0 + 20 * SEC);
    let late_flood = api.put("eni-a-all", T0 - 2 * MIN + SEC, T0 + 20 * SEC);
    let again = poll_at(&mut poller, T0 + 30 * SEC).await.unwrap();
    assert!(again.window_start_ms <= T0 - 2 * MIN, "the flood re-read");
    assert_eq!(ids(&again), [late_quiet]);
    assert!(!ids(&again).contains(&late_flood));
    assert!(poller.seen_len() <= 400);
}

#[tokio::test]
async fn a_flood_poll_that_fails_past_max_seen_events_counts_the_rest_once() {
    let (api, mut put) = flood(1050);
    let cfg = PollerConfig {
        max_seen_events: 400,
        ..held_to(250)
    };
    let mut poller = Poller::new(api.clone(), cfg.clone(), T0);
    api.set_now(T0);
    let mut run = poller.start(T0).await.unwrap();
    let mut returned = take_batches(&mut poller, &mut run, 2).await;
    assert_eq!(poller.seen_len(), 400, "200 forgotten part way");
    // Killed after the second batch's checkpoint; the successor reads
    // the window again: the forgotten ones are below the mark.
    let on_disk = serde_json::to_string(&poller.state()).unwrap();
    drop((run, poller));
    let mut successor = Poller::restore(api.clone(), cfg, serde_json::from_str(&on_disk).unwrap());
    let retry = poll_at(&mut successor, T0 + 30 * SEC).await.unwrap();
    assert_eq!((retry.fetched, retry.new), (1050, 450));
    returned.extend(ids(&retry));
    returned.sort();
    put.sort();
    assert_eq!(returned, put, "each once over both processes");
}

/// Steps `run` to its end; the batches' events and the outcome.
async fn step_to_end(
    poller: &mut Poller<FakeLogs>,
    run: &mut PollRun,
) -> Result<(Vec<Vec<String>>, PollOutcome), ApiError> {
    let mut batches = Vec::new();
    loop {
        match poller.step(run).await? {
            PollStep::Batch(batch) => {
                batches.push(batch.events.iter().map(|e| e.event_id.clone()).collect())
            }
            PollStep::Done(outcome) => return Ok((batches, outcome)),
        }
    }
}

/// The ids of the next `n` steps of `run`, each a batch.
async fn take_batches(poller: &mut Poller<FakeLogs>, run: &mut PollRun, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let PollStep::Batch(batch) = poller.step(run).await.unwrap() else {
            panic!("a batch");
        };
        ids.extend(batch.events.into_iter().map(|e| e.event_id));
    }
    ids
}

/// A flood in one minute: `n` events on one stream, in pages of 100.
fn flood(n: i64) -> (FakeLogs, Vec<String>) {
    let api = FakeLogs::new(100);
    let ids = (0..n)
        .map(|i| api.put("eni-a-all", T0 - 2 * MIN + i * 60 * SEC / n, T0 - 10 * SEC))
        .collect();
    (api, ids)
}

fn held_to(max_held_events: usize) -> PollerConfig {
    PollerConfig {
        max_held_events,
        ..config()
    }
}

#[tokio::test]
async fn a_flood_is_handed_over_in_batches_each_event_once() {
    let (api, mut put) = flood(1050);
    let mut poller = Poller::new(api.clone(), held_to(250), T0);
    api.set_now(T0);
    let mut run = poller.start(T0).await.unwrap();
    let (batches, outcome) = step_to_end(&mut poller, &mut run).await.unwrap();
    // 250 held or more: three pages a batch, the rest at the end.
    let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
    assert_eq!(sizes, [300, 300, 300]);
    assert_eq!(outcome.events.len(), 150);
    assert_eq!((outcome.new, outcome.fetched), (1050, 1050));
    assert_eq!(outcome.fetched_since_batch, 150);
    let mut returned: Vec<String> = batches.concat();
    returned.extend(ids(&outcome));
    returned.sort();
    put.sort();
    assert_eq!(returned, put);
    // The next poll re-reads the window: nothing is new.
    let again = poll_at(&mut poller, T0 + 30 * SEC).await.unwrap();
    assert_eq!((again.fetched, again.new), (1050, 0));
}

#[tokio::test]
async fn a_poll_that_fails_after_batches_reads_its_window_again_and_counts_the_rest() {
    let (api, mut put) = flood(1050);
    let mut poller = Poller::new(api.clone(), held_to(250), T0);
    api.set_now(T0);
    let mut run = poller.start(T0).await.unwrap();
    let mut returned = take_batches(&mut poller, &mut run, 2).await;
    // The 8th page is throttled: the poll fails with 600 counted.
    api.fail_filter_after(1, fake::throttled());
    assert!(poller.step(&mut run).await.is_err());
    assert_eq!(poller.consecutive_failures(), 1);
    let retry = poll_at(&mut poller, T0 + 30 * SEC).await.unwrap();
    assert_eq!(retry.window_start_ms, T0 - 20 * MIN, "the same window");
    assert_eq!((retry.fetched, retry.new), (1050, 450));
    returned.extend(ids(&retry));
    returned.sort();
    put.sort();
    assert_eq!(returned, put, "each once");
}

#[tokio::test]
async fn a_kill_after_batches_resumes_from_their_checkpoint_counting_each_event_once() {
    let (api, mut put) = flood(1050);
    let mut poller = Poller::new(api.clone(), held_to(250), T0);
    api.set_now(T0);
    let mut run = poller.start(T0).await.unwrap();
    let PollStep::Batch(batch) = poller.step(&mut run).await.unwrap() else {
        panic!("a batch");
    };
    let mut returned: Vec<String> = batch.events.into_iter().map(|e| e.event_id).collect();
    // Checkpointed once the batch is counted; then kill -9.
    let on_disk = serde_json::to_string(&poller.state()).unwrap();
    drop((run, poller));
    let restored: PollerState = serde_json::from_str(&on_disk).unwrap();
    assert_eq!(
        restored.window.last_end_ms, None,
        "the window is not committed"
    );
    assert_eq!(restored.seen.len(), 300);
    let mut successor = Poller::restore(api.clone(), held_to(250), restored);
    api.set_now(T0 + 5 * SEC);
    let mut run = successor.start(T0 + 5 * SEC).await.unwrap();
    let (batches, outcome) = step_to_end(&mut successor, &mut run).await.unwrap();
    assert_eq!(
        outcome.window_start_ms,
        T0 - 20 * MIN,
        "from the start again"
    );
    assert_eq!(outcome.new, 750);
    returned.extend(batches.concat());
    returned.extend(ids(&outcome));
    returned.sort();
    put.sort();
    assert_eq!(returned, put, "each once over both processes");
}

#[tokio::test]
async fn an_expired_token_after_a_batch_restarts_the_paging_and_counts_once() {
    let (api, mut put) = flood(1050);
    let mut poller = Poller::new(api.clone(), held_to(250), T0);
    api.set_now(T0);
    let mut run = poller.start(T0).await.unwrap();
    let PollStep::Batch(first) = poller.step(&mut run).await.unwrap() else {
        panic!("a batch");
    };
    // Page 5's token has expired: paging starts over from page 1; the
    // first batch's events are dropped as re-reads, page 4's (held,
    // not yet handed over) when taken.
    api.fail_filter_after(1, fake::expired_token());
    let (batches, outcome) = step_to_end(&mut poller, &mut run).await.unwrap();
    assert_eq!(outcome.paging_restarts, 1);
    let mut returned: Vec<String> = first.events.into_iter().map(|e| e.event_id).collect();
    returned.extend(batches.concat());
    returned.extend(ids(&outcome));
    returned.sort();
    put.sort();
    assert_eq!(returned, put, "each once");
}

#[tokio::test]
async fn discovery_refresh_adds_streams_and_reads_their_past() {
    let api = FakeLogs::new(1000);
    api.put("eni-a-all", T0 - MIN, T0 - 30 * SEC);
    let mut poller = Poller::new(api.clone(), config(), T0);
    poll_at(&mut poller, T0).await.unwrap();
    assert_eq!(poller.streams(), ["eni-a-all"]);
    assert_eq!(api.take_calls()[0], fake::Call::Describe);

    // A new interface; its first record started 15 min ago.
    let old = api.put("eni-b-all", T0 - 12 * MIN, T0 + MIN);
    let outcome = poll_at(&mut poller, T0 + 2 * MIN).await.unwrap();
    assert!(
        outcome.events.is_empty(),
        "not rediscovered before the interval"
    );
    assert!(!api.take_calls().contains(&fake::Call::Describe));

    let at = T0 + 5 * MIN;
    let outcome = poll_at(&mut poller, at).await.unwrap();
    assert_eq!(poller.streams(), ["eni-a-all", "eni-b-all"]);
    assert_eq!(ids(&outcome), vec![old]);
    assert_eq!(
        outcome.window_start_ms,
        T0 - 20 * MIN,
        "previous discovery - lookback"
    );
    let calls = api.take_calls();
    let filters = FakeLogs::filter_calls(&calls);
    assert_eq!(
        filters.len(),
        2,
        "known and new streams read from different starts"
    );

    // A failed refresh keeps the streams and is retried next poll.
    api.fail_next(fake::describe_unavailable());
    let outcome = poll_at(&mut poller, at + 5 * MIN).await.unwrap();
    assert_eq!(outcome.streams, 2);
    poll_at(&mut poller, at + 5 * MIN + 30 * SEC).await.unwrap();
    assert_eq!(
        api.take_calls()
            .iter()
            .filter(|c| **c == fake::Call::Describe)
            .count(),
        2
    );
}

#[tokio::test]
async fn a_start_while_the_api_is_down_still_reads_its_first_window() {
    let api = FakeLogs::new(1000);
    let before = api.put("eni-a-all", T0 - 15 * MIN, T0 - 10 * MIN);
    let mut poller = Poller::new(api.clone(), config(), T0);
    // Discovery, then the first page, then discovery again fail: 25
    // minutes pass, more than lookback.
    api.fail_next(fake::describe_unavailable());
    assert!(poll_at(&mut poller, T0).await.is_err());
    api.fail_filter_after(0, fake::throttled());
    assert!(poll_at(&mut poller, T0 + 10 * MIN).await.is_err());
    api.fail_next(fake::describe_unavailable());
    let late = T0 + 25 * MIN;
    let outcome = poll_at(&mut poller, late).await.unwrap();
    assert_eq!(
        outcome.window_start_ms,
        T0 - 20 * MIN,
        "start - lookback, not now - lookback"
    );
    assert_eq!(ids(&outcome), vec![before]);
}

#[tokio::test]
async fn empty_pages_with_a_token_are_followed_to_the_end() {
    let api = FakeLogs::new(2);
    let put: Vec<String> = (0..5)
        .map(|i| api.put("eni-a-all", T0 - MIN + i * SEC, T0 - 10 * SEC))
        .collect();
    api.set_empty_pages(2);
    let mut poller = Poller::new(api.clone(), config(), T0);
    let outcome = poll_at(&mut poller, T0).await.unwrap();
    assert_eq!(ids(&outcome), put);
    assert_eq!(outcome.api_calls, 3 * 3, "two empty pages before each of 3");
}

#[tokio::test]
async fn an_expired_token_restarts_the_paging_and_counts_once() {
    let api = FakeLogs::new(2);
    let put: Vec<String> = (0..5)
        .map(|i| api.put("eni-a-all", T0 - MIN + i * SEC, T0 - 10 * SEC))
        .collect();
    let mut poller = Poller::new(api.clone(), config(), T0);
    api.create_stream("eni-a-all");
    // Pages 1 and 2 read, the token for page 3 has expired.
    api.fail_filter_after(2, fake::expired_token());
    let outcome = poll_at(&mut poller, T0).await.unwrap();
    assert_eq!(ids(&outcome), put, "each once");
    assert_eq!(outcome.paging_restarts, 1);
    assert_eq!(outcome.fetched, 4 + 5);
    assert_eq!(outcome.api_calls, 2 + 3);
}

#[tokio::test]
async fn first_discovery_failure_fails_the_poll() {
    let api = FakeLogs::new(1000);
    api.fail_next(fake::describe_unavailable());
    let mut poller = Poller::new(api.clone(), config(), T0);
    let err = poll_at(&mut poller, T0).await.unwrap_err();
    assert_eq!(err.operation(), "DescribeLogStreams");
    assert_eq!(poller.consecutive_failures(), 1);
}

#[tokio::test]
async fn configured_interfaces_select_their_streams() {
    let api = FakeLogs::new(1000);
    for s in [
        "eni-a-accept",
        "eni-a-reject",
        "eni-ab-all",
        "eni-b-all",
        "other",
    ] {
        api.create_stream(s);
    }
    let mut cfg = config();
    cfg.interfaces = vec!["eni-a".into(), "eni-c".into()];
    let mut poller = Poller::new(api.clone(), cfg, T0);
    poll_at(&mut poller, T0).await.unwrap();
    assert_eq!(poller.streams(), ["eni-a-accept", "eni-a-reject"]);
}

#[tokio::test]
async fn no_streams_polls_nothing() {
    let api = FakeLogs::new(1000);
    let mut poller = Poller::new(api.clone(), config(), T0);
    let outcome = poll_at(&mut poller, T0).await.unwrap();
    assert_eq!((outcome.streams, outcome.api_calls), (0, 0));
}

#[tokio::test]
async fn read_window_uses_the_same_batching() {
    let api = FakeLogs::new(1000);
    for i in 0..250 {
        api.put(&format!("eni-{i:04}-all"), T0 - i * SEC, T0);
    }
    api.set_now(T0);
    let all = read_window(&api, "/vpc/flow-logs", None, T0 - HOUR, T0)
        .await
        .unwrap();
    assert_eq!(all.len(), 250);
    assert!(
        all.windows(2)
            .all(|w| w[0].timestamp_ms <= w[1].timestamp_ms)
    );
    assert_eq!(FakeLogs::filter_calls(&api.take_calls()).len(), 3);

    let one = read_window(&api, "/vpc/flow-logs", Some("eni-0007"), T0 - HOUR, T0)
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].stream, "eni-0007-all");
}
const HOUR: i64 = 60 * MIN;
