//! Polls one log group: which streams, which time window, which events are
//! new. Generic over [`LogsApi`], the clock passed in as a value, no metrics
//! inside: the caller counts what [`PollOutcome`] reports.
//!
//! # Streams
//!
//! A VPC flow log writes one stream per interface: `eni-<id>-all`, or
//! `eni-<id>-accept` and `eni-<id>-reject`. Streams are discovered with
//! `DescribeLogStreams` (prefix `eni-`) on the first poll and every
//! `discovery_interval`; configured interfaces select the streams named after
//! them. Each poll reads all streams with `FilterLogEvents`, up to 100 stream
//! names per call, following `nextToken` to the end.
//!
//! # The window and its overlap
//!
//! `startTime` filters on the event timestamp, which for a flow record is its
//! *start*, and a record reaches CloudWatch up to a capture interval (1 or 10
//! minutes) plus the delivery delay after it started. Let `delay` be
//! `ingestion_time - timestamp`. An event ingested after the last successful
//! window ended (`last_end`) is found by the next poll, reading
//! `[last_end - overlap, now]`, if `delay <= overlap` (give or take clock
//! skew). So each poll reads from `last_end - overlap`, with
//!
//! ```text
//! overlap = clamp(1.5 × max_delay + poll_interval, min_overlap, lookback)
//! ```
//!
//! where `max_delay` is the largest delay among the new events of the polls
//! of the last hour (no event yet: `lookback`); ×1.5 and one poll interval
//! are the margin for skew and for delays that grow between polls. The first
//! poll reads `[now - lookback, now]`.
//!
//! A poll only sees delays up to the overlap it reads, so a delay that jumps
//! beyond it would go unseen for ever. Hence the **probe**: every
//! `probe_interval`, a poll reads from the previous probe's end less
//! `lookback`. Every event ingested since that probe with a delay up to
//! `lookback` lies in that window: none is missed, a late one is returned at
//! most `probe_interval` late, and its delay then widens the overlap.
//!
//! Read amplification (events fetched / new) is about
//! `(overlap + poll_interval) / poll_interval`, plus the probes: the
//! adaptive overlap keeps it at what the measured delays need rather than
//! the worst case.
//!
//! # Failures and catch-up
//!
//! A failed poll does not move `last_end`, so the next poll re-covers its
//! window. After an outage the window starts at `last_end - overlap` but
//! never before `now - max_catchup`; log time beyond that is reported as
//! `skipped_ms`. One poll reads at most `max_window` of log time (memory
//! stays bounded while catching up); [`PollOutcome::caught_up`] is false
//! and [`Poller::next_delay`] zero until the window reaches `now`.
//! Consecutive failures back off exponentially with jitter (per-call retries
//! are the SDK retryer's job).
//!
//! # Dedup
//!
//! The overlap re-reads events; an event (stream + event id) is remembered
//! while its timestamp can still fall in a future window, i.e. not before
//! the last probe's end less `lookback`, and forgotten after. Memory is
//! bounded by the events of `lookback + probe_interval` and one poll.
//!
//! A stream that appears at a later discovery is read back to the previous
//! discovery less `lookback`, since its first events may be that old.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, DefaultHasher, Hash, Hasher};
use std::time::Duration;

use rustc_hash::{FxHashMap, FxHashSet};

use super::api::{ApiError, FilterRequest, LogEvent, LogsApi, MAX_STREAMS_PER_CALL};
use super::recent::RecentMax;

/// How long a measured delivery delay counts toward the overlap.
const DELAY_MEMORY_MS: i64 = 60 * 60 * 1000;

/// Settings of one [`Poller`]. [`PollerConfig::new`] gives the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollerConfig {
    pub log_group: String,
    /// Interface ids (`eni-…`) to read; empty: every interface stream.
    pub interfaces: Vec<String>,
    pub poll_interval: Duration,
    /// The largest overlap re-read for late records (default 20m).
    pub lookback: Duration,
    /// The smallest overlap, whatever the measured delays (default 2m).
    pub min_overlap: Duration,
    /// After an outage, how far back from now reading resumes at most
    /// (default 6h).
    pub max_catchup: Duration,
    /// Most log time read by one poll while catching up (default 1h).
    pub max_window: Duration,
    /// How often streams are listed again (default 5m).
    pub discovery_interval: Duration,
    /// How often a poll re-reads back to the previous probe less `lookback`,
    /// to notice delays beyond the overlap (default 10m).
    pub probe_interval: Duration,
    /// Longest wait between polls after failures (default 5m).
    pub max_backoff: Duration,
}

impl PollerConfig {
    pub fn new(log_group: impl Into<String>) -> Self {
        Self {
            log_group: log_group.into(),
            interfaces: Vec::new(),
            poll_interval: Duration::from_secs(30),
            lookback: Duration::from_secs(20 * 60),
            min_overlap: Duration::from_secs(2 * 60),
            max_catchup: Duration::from_secs(6 * 60 * 60),
            max_window: Duration::from_secs(60 * 60),
            discovery_interval: Duration::from_secs(5 * 60),
            probe_interval: Duration::from_secs(10 * 60),
            max_backoff: Duration::from_secs(5 * 60),
        }
    }
}

/// What one successful poll read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollOutcome {
    /// Events not returned before, sorted by timestamp.
    pub events: Vec<LogEvent>,
    /// Events returned by the API, re-reads included.
    pub fetched: u64,
    /// `events.len()`: fetched / new is the read amplification.
    pub new: u64,
    /// `FilterLogEvents` pages read (discovery calls not included).
    pub api_calls: u32,
    /// Earliest `startTime` of this poll (a new stream may start earlier
    /// than the others).
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    /// The overlap this poll used.
    pub overlap_ms: i64,
    /// Whether this poll also re-read back to the last probe less `lookback`.
    pub probe: bool,
    /// Log time never read because an outage outlasted `max_catchup`.
    pub skipped_ms: i64,
    /// Interface streams polled.
    pub streams: usize,
    /// False while catching up: the window ended before `now`.
    pub caught_up: bool,
}

/// Reads one log group poll after poll. See the module documentation.
pub struct Poller<A> {
    api: A,
    log_group: String,
    interfaces: Vec<String>,
    poll_interval_ms: i64,
    lookback_ms: i64,
    min_overlap_ms: i64,
    max_catchup_ms: i64,
    max_window_ms: i64,
    discovery_interval_ms: i64,
    probe_interval_ms: i64,
    poll_interval: Duration,
    max_backoff: Duration,

    streams: Vec<String>,
    discovered_at_ms: Option<i64>,
    /// Streams found by a later discovery and not read yet, with the start
    /// of their first window.
    new_streams: FxHashMap<String, i64>,
    /// End of the last successful window.
    last_end_ms: Option<i64>,
    /// End of the window of the last probe (or of the first poll).
    last_probe_end_ms: Option<i64>,
    /// Largest delay (ingestion time less event timestamp) of recent polls.
    delays: RecentMax,
    /// Fingerprints of events seen, by event timestamp (pruned by range).
    seen: BTreeMap<i64, FxHashSet<u128>>,
    seen_len: usize,
    failures: u32,
    caught_up: bool,
    rng: u64,
}

impl<A: LogsApi> Poller<A> {
    /// Settings out of range are brought into it: `min_overlap <=
    /// lookback <= max_catchup`, `max_window > lookback`.
    pub fn new(api: A, config: PollerConfig) -> Self {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let poll_interval_ms = ms(config.poll_interval).max(1);
        let lookback_ms = ms(config.lookback).max(1);
        let max_window_ms = ms(config.max_window).max(lookback_ms + poll_interval_ms);
        // Seeded per process and group, so pollers do not retry in step.
        let rng = std::collections::hash_map::RandomState::new().hash_one(&config.log_group) | 1;
        Self {
            api,
            interfaces: config.interfaces,
            poll_interval_ms,
            lookback_ms,
            min_overlap_ms: ms(config.min_overlap).min(lookback_ms),
            max_catchup_ms: ms(config.max_catchup).max(lookback_ms),
            max_window_ms,
            discovery_interval_ms: ms(config.discovery_interval),
            probe_interval_ms: ms(config.probe_interval),
            poll_interval: config.poll_interval,
            max_backoff: config.max_backoff.max(config.poll_interval),
            log_group: config.log_group,
            streams: Vec::new(),
            discovered_at_ms: None,
            new_streams: FxHashMap::default(),
            last_end_ms: None,
            last_probe_end_ms: None,
            delays: RecentMax::new(DELAY_MEMORY_MS),
            seen: BTreeMap::new(),
            seen_len: 0,
            failures: 0,
            caught_up: true,
            rng,
        }
    }

    pub fn api(&self) -> &A {
        &self.api
    }

    pub fn log_group(&self) -> &str {
        &self.log_group
    }

    /// The interface streams being polled.
    pub fn streams(&self) -> &[String] {
        &self.streams
    }

    /// Event ids remembered for dedup.
    pub fn seen_len(&self) -> usize {
        self.seen_len
    }

    /// Polls failed since the last success.
    pub fn consecutive_failures(&self) -> u32 {
        self.failures
    }

    /// Largest delivery delay (`ingestion_time - timestamp`) measured over
    /// the last hour of polls, if any event was new in that time.
    pub fn delay_estimate_ms(&self) -> Option<i64> {
        self.delays.max()
    }

    /// The overlap the next poll re-reads before the last window's end
    /// (see module docs).
    pub fn overlap_ms(&self) -> i64 {
        match self.delay_estimate_ms() {
            Some(delay) => {
                (delay * 3 / 2 + self.poll_interval_ms).clamp(self.min_overlap_ms, self.lookback_ms)
            }
            None => self.lookback_ms,
        }
    }

    /// Whether a poll at `now_ms` is a probe (see module docs).
    pub fn probe_due(&self, now_ms: i64) -> bool {
        self.last_probe_end_ms
            .is_some_and(|end| now_ms - end >= self.probe_interval_ms)
    }

    /// How long to wait before the next poll: zero while catching up, the
    /// poll interval after a success, and after `n` consecutive failures
    /// `poll_interval × 2^(n-1)` (at most `max_backoff`), half of it jittered.
    pub fn next_delay(&mut self) -> Duration {
        if self.failures == 0 {
            return if self.caught_up {
                self.poll_interval
            } else {
                Duration::ZERO
            };
        }
        let base = self
            .poll_interval
            .saturating_mul(1 << (self.failures - 1).min(16))
            .min(self.max_backoff);
        // xorshift64: enough to spread retries, no dependency needed.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let jitter = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        base / 2 + base.mul_f64(jitter / 2.0)
    }

    /// One poll at wall-clock time `now_ms` (Unix ms). On error nothing is
    /// consumed: the next poll reads the same window again.
    pub async fn poll(&mut self, now_ms: i64) -> Result<PollOutcome, ApiError> {
        let result = self.try_poll(now_ms).await;
        match &result {
            Ok(_) => self.failures = 0,
            Err(err) => {
                self.failures += 1;
                tracing::debug!(log_group = %self.log_group, failures = self.failures, error = %err, "Poll failed");
            }
        }
        result
    }

    async fn try_poll(&mut self, now_ms: i64) -> Result<PollOutcome, ApiError> {
        self.discover_if_due(now_ms).await?;

        let floor = now_ms - self.max_catchup_ms;
        let overlap_ms = self.overlap_ms();
        let probe = self.probe_due(now_ms);
        let (start, skipped_ms) = match (self.last_end_ms, self.last_probe_end_ms) {
            (Some(last_end), Some(probe_end)) => {
                let from = if probe {
                    (last_end - overlap_ms).min(probe_end - self.lookback_ms)
                } else {
                    last_end - overlap_ms
                };
                (from.max(floor), (floor - last_end).max(0))
            }
            _ => (now_ms - self.lookback_ms, 0),
        };
        // Known streams read from `start`; a newly discovered one from
        // further back. Streams sharing a start share calls.
        let mut groups: BTreeMap<i64, Vec<String>> = BTreeMap::new();
        for stream in &self.streams {
            let from = self
                .new_streams
                .get(stream)
                .map_or(start, |&from| from.clamp(floor, start));
            groups.entry(from).or_default().push(stream.clone());
        }
        let earliest = groups.keys().next().copied().unwrap_or(start);
        let end = now_ms.min(earliest + self.max_window_ms);

        let mut events = Vec::new();
        let mut api_calls = 0;
        for (from, streams) in groups.range(..=end) {
            api_calls +=
                fetch(&self.api, &self.log_group, streams, *from, end, &mut events).await?;
        }

        // Everything was read: from here on the poll commits.
        let fetched = events.len() as u64;
        let mut max_delay = None;
        events.retain(|e| {
            let fresh = self
                .seen
                .entry(e.timestamp_ms)
                .or_default()
                .insert(fingerprint(&e.stream, &e.event_id));
            if fresh {
                let delay = (e.ingestion_time_ms - e.timestamp_ms).max(0);
                max_delay = max_delay.max(Some(delay));
            }
            fresh
        });
        events.sort_by_key(|e| e.timestamp_ms);
        self.seen_len += events.len();
        self.delays.record(now_ms, max_delay);
        if probe || self.last_probe_end_ms.is_none() {
            self.last_probe_end_ms = Some(end);
        }
        self.last_end_ms = Some(end);
        // No later window starts before this (module docs, "Dedup").
        self.prune_seen(self.last_probe_end_ms.unwrap_or(end) - self.lookback_ms);
        self.new_streams.clear();
        self.caught_up = end >= now_ms;

        let outcome = PollOutcome {
            new: events.len() as u64,
            events,
            fetched,
            api_calls,
            window_start_ms: earliest,
            window_end_ms: end,
            overlap_ms,
            probe,
            skipped_ms,
            streams: self.streams.len(),
            caught_up: self.caught_up,
        };
        tracing::debug!(
            log_group = %self.log_group,
            fetched = outcome.fetched,
            new = outcome.new,
            api_calls = outcome.api_calls,
            window_start_ms = outcome.window_start_ms,
            window_end_ms = outcome.window_end_ms,
            overlap_ms,
            probe,
            "Polled"
        );
        Ok(outcome)
    }

    /// Lists the streams when due. A failed refresh keeps the previous list
    /// (and is retried next poll); a failed first listing fails the poll.
    async fn discover_if_due(&mut self, now_ms: i64) -> Result<(), ApiError> {
        if self
            .discovered_at_ms
            .is_some_and(|t| now_ms - t < self.discovery_interval_ms)
        {
            return Ok(());
        }
        let all = match self.api.list_interface_streams(&self.log_group).await {
            Ok(all) => all,
            Err(err) if self.discovered_at_ms.is_some() => {
                tracing::warn!(log_group = %self.log_group, error = %err, "Stream discovery failed, keeping the previous streams");
                return Ok(());
            }
            Err(err) => return Err(err),
        };
        let streams = select_streams(all, &self.interfaces);
        if let Some(previous) = self.discovered_at_ms {
            for stream in &streams {
                if self.streams.binary_search(stream).is_err() {
                    self.new_streams
                        .entry(stream.clone())
                        .or_insert(previous - self.lookback_ms);
                }
            }
        }
        let missing: Vec<&str> = self
            .interfaces
            .iter()
            .filter(|id| !streams.iter().any(|s| is_stream_of(s, id)))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            tracing::debug!(log_group = %self.log_group, interfaces = ?missing, "No stream yet for configured interfaces");
        }
        if streams != self.streams {
            tracing::info!(log_group = %self.log_group, before = self.streams.len(), after = streams.len(), "Interface streams changed");
        }
        self.streams = streams;
        self.discovered_at_ms = Some(now_ms);
        Ok(())
    }

    fn prune_seen(&mut self, cutoff_ms: i64) {
        let kept = self.seen.split_off(&cutoff_ms);
        let dropped = std::mem::replace(&mut self.seen, kept);
        self.seen_len -= dropped.values().map(FxHashSet::len).sum::<usize>();
    }
}

/// Reads one fixed window `[since_ms, until_ms]` of a log group, optionally
/// of one interface: the `inspect` command. Same batching and paging as a
/// poll; events sorted by timestamp.
pub async fn read_window<A: LogsApi>(
    api: &A,
    log_group: &str,
    interface: Option<&str>,
    since_ms: i64,
    until_ms: i64,
) -> Result<Vec<LogEvent>, ApiError> {
    let interfaces: Vec<String> = interface.into_iter().map(str::to_owned).collect();
    let streams = select_streams(api.list_interface_streams(log_group).await?, &interfaces);
    let mut events = Vec::new();
    fetch(api, log_group, &streams, since_ms, until_ms, &mut events).await?;
    events.sort_by_key(|e| e.timestamp_ms);
    Ok(events)
}

/// The interface id of a flow-log stream: `eni-0a1b-all` → `eni-0a1b`.
pub fn interface_of_stream(stream: &str) -> &str {
    ["-all", "-accept", "-reject"]
        .iter()
        .find_map(|suffix| stream.strip_suffix(suffix))
        .unwrap_or(stream)
}

/// Reads `[start_ms, end_ms]` of `streams`, 100 stream names per call, every
/// page; returns the number of calls.
async fn fetch<A: LogsApi>(
    api: &A,
    log_group: &str,
    streams: &[String],
    start_ms: i64,
    end_ms: i64,
    out: &mut Vec<LogEvent>,
) -> Result<u32, ApiError> {
    let mut calls = 0;
    for batch in streams.chunks(MAX_STREAMS_PER_CALL) {
        let mut req = FilterRequest {
            log_group: log_group.to_owned(),
            stream_names: batch.to_vec(),
            start_ms,
            end_ms,
            next_token: None,
        };
        loop {
            let page = api.filter_log_events(&req).await?;
            calls += 1;
            out.extend(page.events);
            match page.next_token {
                Some(token) => req.next_token = Some(token),
                None => break,
            }
        }
    }
    Ok(calls)
}

/// Interface streams, those of `interfaces` when any is given, sorted.
fn select_streams(all: Vec<String>, interfaces: &[String]) -> Vec<String> {
    let mut streams: Vec<String> = all
        .into_iter()
        .filter(|s| s.starts_with("eni-"))
        .filter(|s| interfaces.is_empty() || interfaces.iter().any(|id| is_stream_of(s, id)))
        .collect();
    streams.sort();
    streams.dedup();
    streams
}

/// `eni-0a1b-all`, `eni-0a1b-accept`, `eni-0a1b-reject` (and `eni-0a1b`
/// itself) belong to `eni-0a1b`; `eni-0a1b2-all` does not.
fn is_stream_of(stream: &str, interface_id: &str) -> bool {
    stream
        .strip_prefix(interface_id)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
}

/// 128 bits of SipHash over stream and event id: collisions are out of
/// reach (~1e-26 for a million ids) at a fraction of the strings' memory.
fn fingerprint(stream: &str, event_id: &str) -> u128 {
    let half = |salt: u8| {
        let mut h = DefaultHasher::new();
        (salt, stream, event_id).hash(&mut h);
        h.finish()
    };
    (u128::from(half(0)) << 64) | u128::from(half(1))
}

#[cfg(test)]
mod tests {
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
        let mut poller = Poller::new(api.clone(), config());

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
        let mut poller = Poller::new(api.clone(), config());
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
        let mut poller = Poller::new(api.clone(), config());
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
        let mut poller = Poller::new(api.clone(), config());
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
        let mut poller = Poller::new(api.clone(), config());
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
        let mut poller = Poller::new(api.clone(), config());
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
        let mut poller = Poller::new(api.clone(), config());
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
        let mut poller = Poller::new(api.clone(), config());
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
        let mut poller = Poller::new(api.clone(), config());
        let outcome = poll_at(&mut poller, T0).await.unwrap();
        // 100 events: 3 pages, 100: 3, 50: 2.
        assert_eq!((outcome.new, outcome.api_calls), (250, 8));
    }

    #[tokio::test]
    async fn dedup_memory_stays_bounded() {
        let api = FakeLogs::new(10_000);
        let mut poller = Poller::new(api.clone(), config());
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

    #[tokio::test]
    async fn discovery_refresh_adds_streams_and_reads_their_past() {
        let api = FakeLogs::new(1000);
        api.put("eni-a-all", T0 - MIN, T0 - 30 * SEC);
        let mut poller = Poller::new(api.clone(), config());
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
    async fn first_discovery_failure_fails_the_poll() {
        let api = FakeLogs::new(1000);
        api.fail_next(fake::describe_unavailable());
        let mut poller = Poller::new(api.clone(), config());
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
        let mut poller = Poller::new(api.clone(), cfg);
        poll_at(&mut poller, T0).await.unwrap();
        assert_eq!(poller.streams(), ["eni-a-accept", "eni-a-reject"]);
        assert_eq!(interface_of_stream("eni-a-accept"), "eni-a");
        assert_eq!(interface_of_stream("eni-0a1b-all"), "eni-0a1b");
    }

    #[tokio::test]
    async fn no_streams_polls_nothing() {
        let api = FakeLogs::new(1000);
        let mut poller = Poller::new(api.clone(), config());
        let outcome = poll_at(&mut poller, T0).await.unwrap();
        assert_eq!((outcome.streams, outcome.api_calls), (0, 0));
    }

    #[test]
    fn next_delay_backs_off_with_jitter_and_resets() {
        let mut poller = Poller::new(FakeLogs::new(10), config());
        assert_eq!(poller.next_delay(), Duration::from_secs(30));
        let mut previous_max = Duration::ZERO;
        for failures in 1..=8u32 {
            poller.failures = failures;
            let base =
                Duration::from_secs(30 * (1 << (failures - 1))).min(Duration::from_secs(300));
            for _ in 0..50 {
                let d = poller.next_delay();
                assert!(d >= base / 2 && d <= base, "{failures}: {d:?}");
                previous_max = previous_max.max(d);
            }
        }
        assert!(previous_max > Duration::from_secs(240));
        poller.failures = 0;
        assert_eq!(poller.next_delay(), Duration::from_secs(30));
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

    #[test]
    fn settings_out_of_range_are_clamped() {
        let mut cfg = config();
        cfg.min_overlap = Duration::from_secs(3600);
        cfg.max_window = Duration::from_secs(60);
        let poller = Poller::new(FakeLogs::new(10), cfg);
        assert_eq!(poller.min_overlap_ms, poller.lookback_ms);
        assert!(poller.max_window_ms > poller.lookback_ms);
    }
}
