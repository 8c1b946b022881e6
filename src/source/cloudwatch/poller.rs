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
//! window reads from the process start less `lookback` — however long the
//! API took to answer the first poll.
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
//! the last probe's end less `lookback`, and forgotten after. That bounds
//! the memory by the events of `lookback + probe_interval` — by the input,
//! so it is bounded by configuration too: past `max_seen_events` after a
//! poll, the events of the oldest timestamps are forgotten early, and from
//! then on every event older than the newest one forgotten is taken as
//! seen. A re-read is thus never counted twice; what the bound costs is a
//! record that arrives late with such an old timestamp, which is dropped.
//! [`PollOutcome::forgotten`] reports it, for the caller to count and log.
//!
//! A stream that appears at a later discovery is read back to the previous
//! discovery less `lookback`, since its first events may be that old.
//!
//! # Where the rules live
//!
//! The window arithmetic above is [`super::window`], pure and tested
//! without async; this module is the thin async driver around it: list the
//! streams when due, read every page of every planned request, dedup,
//! commit. An expired `nextToken` in the middle of a paging run restarts
//! that request's paging from its first page (dedup drops what is read
//! twice).

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use rustc_hash::FxHashSet;
use serde::{Deserialize, Serialize};
use siphasher::sip128::{Hasher128, SipHasher13};

use super::api::{ApiError, FilterRequest, LogEvent, LogsApi};
use super::streams::{is_stream_of, select_streams};
use super::window::{Plan, Request, WindowPlanner, WindowSettings, WindowState};

/// Default of [`PollerConfig::max_seen_events`]: about 35 MB of
/// fingerprints when many events share a timestamp (a flood), up to ~190 MB
/// when each has its own.
pub const DEFAULT_MAX_SEEN_EVENTS: usize = 1_000_000;

/// How often one request's paging is restarted after an expired
/// `nextToken` before the poll fails (and is retried as any failure).
const MAX_PAGING_RESTARTS: u32 = 3;

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
    /// Event fingerprints remembered for dedup at most (after a poll);
    /// past it the oldest are forgotten early (see the module documentation).
    pub max_seen_events: usize,
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
            max_seen_events: DEFAULT_MAX_SEEN_EVENTS,
        }
    }

    fn window_settings(&self) -> WindowSettings {
        WindowSettings::new(
            self.poll_interval,
            self.lookback,
            self.min_overlap,
            self.max_catchup,
            self.max_window,
            self.discovery_interval,
            self.probe_interval,
            self.max_backoff,
        )
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
    /// Times paging was restarted after an expired `nextToken`.
    pub paging_restarts: u32,
    /// Event fingerprints forgotten early by this poll to stay within
    /// `max_seen_events` (a restore into a smaller bound counts in the
    /// first poll).
    pub forgotten: u64,
    /// Events with an earlier timestamp are taken as seen, when fingerprints
    /// were forgotten early and that time is still inside the overlap.
    pub forgotten_before_ms: Option<i64>,
}

/// Fingerprints of the events seen, by event timestamp: what makes the
/// overlap's re-reads count once. Pruned by time ([`SeenEvents::prune`])
/// and held within a count ([`SeenEvents::bound`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<(i64, Vec<u128>)>", into = "Vec<(i64, Vec<u128>)>")]
pub struct SeenEvents {
    by_time: BTreeMap<i64, FxHashSet<u128>>,
    len: usize,
    /// Fingerprints of events with an earlier timestamp were forgotten
    /// early: any such event is taken as seen. Checkpointed beside the
    /// fingerprints ([`PollerState::seen_forgotten_before_ms`]).
    forgotten_before_ms: Option<i64>,
}

impl SeenEvents {
    /// True when the event was seen before (or is taken as seen).
    #[cfg(test)]
    fn contains(&self, event: &LogEvent) -> bool {
        self.contains_fingerprint(event.timestamp_ms, fingerprint(event))
    }

    /// True when the event was not seen before (and now is).
    #[cfg(test)]
    fn insert(&mut self, event: &LogEvent) -> bool {
        self.insert_fingerprint(event.timestamp_ms, fingerprint(event))
    }

    /// [`SeenEvents::contains`] for an event of this timestamp and
    /// fingerprint: each event's fingerprint is computed once, as its page
    /// arrives, and used again when the poll commits.
    fn contains_fingerprint(&self, timestamp_ms: i64, fingerprint: u128) -> bool {
        self.forgotten_before_ms
            .is_some_and(|before| timestamp_ms < before)
            || self
                .by_time
                .get(&timestamp_ms)
                .is_some_and(|ids| ids.contains(&fingerprint))
    }

    /// [`SeenEvents::insert`] for an event of this timestamp and fingerprint.
    fn insert_fingerprint(&mut self, timestamp_ms: i64, fingerprint: u128) -> bool {
        if self
            .forgotten_before_ms
            .is_some_and(|before| timestamp_ms < before)
        {
            return false;
        }
        let fresh = self
            .by_time
            .entry(timestamp_ms)
            .or_default()
            .insert(fingerprint);
        self.len += usize::from(fresh);
        fresh
    }

    /// Forgets events with a timestamp before `cutoff_ms`: no later window
    /// reads them again.
    fn prune(&mut self, cutoff_ms: i64) {
        let kept = self.by_time.split_off(&cutoff_ms);
        let dropped = std::mem::replace(&mut self.by_time, kept);
        self.len -= dropped.values().map(FxHashSet::len).sum::<usize>();
        if self
            .forgotten_before_ms
            .is_some_and(|before| before <= cutoff_ms)
        {
            self.forgotten_before_ms = None;
        }
    }

    /// Forgets the events of the oldest timestamps until at most `max`
    /// are left (a timestamp's events all go together, so that "older than
    /// the newest forgotten" means "forgotten"). Returns how many went.
    fn bound(&mut self, max: usize) -> u64 {
        let mut forgotten = 0;
        while self.len > max {
            let Some((time, set)) = self.by_time.pop_first() else {
                break;
            };
            self.len -= set.len();
            forgotten += set.len() as u64;
            self.forgotten_before_ms = self.forgotten_before_ms.max(Some(time + 1));
        }
        forgotten
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Events with an earlier timestamp are taken as seen (see [`SeenEvents::bound`]).
    pub fn forgotten_before_ms(&self) -> Option<i64> {
        self.forgotten_before_ms
    }
}

impl From<Vec<(i64, Vec<u128>)>> for SeenEvents {
    fn from(entries: Vec<(i64, Vec<u128>)>) -> SeenEvents {
        let mut seen = SeenEvents::default();
        for (time, fingerprints) in entries {
            let set = seen.by_time.entry(time).or_default();
            for fingerprint in fingerprints {
                seen.len += usize::from(set.insert(fingerprint));
            }
        }
        seen
    }
}

impl From<SeenEvents> for Vec<(i64, Vec<u128>)> {
    fn from(seen: SeenEvents) -> Self {
        seen.by_time
            .into_iter()
            .map(|(time, set)| {
                let mut fingerprints: Vec<u128> = set.into_iter().collect();
                fingerprints.sort_unstable();
                (time, fingerprints)
            })
            .collect()
    }
}

/// What a successor needs to continue one log group's polling: the window
/// state and the events still inside the overlap.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PollerState {
    pub window: WindowState,
    pub seen: SeenEvents,
    /// [`SeenEvents::forgotten_before_ms`] (absent from checkpoints written
    /// before `max_seen_events` existed: nothing was forgotten early then).
    #[serde(default)]
    pub seen_forgotten_before_ms: Option<i64>,
}

/// Reads one log group poll after poll. See the module documentation.
pub struct Poller<A> {
    api: A,
    log_group: String,
    interfaces: Vec<String>,
    window: WindowPlanner,
    seen: SeenEvents,
    max_seen_events: usize,
    /// Forgotten when a restored state exceeded the bound: reported by the
    /// next poll.
    forgotten_unreported: u64,
}

impl<A: LogsApi> Poller<A> {
    /// A poller for a process started at `started_ms` (Unix ms): its first
    /// window reads from there less `lookback`. Settings out of range are
    /// brought into it ([`WindowSettings::new`]).
    pub fn new(api: A, config: PollerConfig, started_ms: i64) -> Self {
        let seed = std::collections::hash_map::RandomState::new().hash_one(&config.log_group);
        let window = WindowPlanner::new(config.window_settings(), started_ms, seed);
        Self::with_window(api, config, window, SeenEvents::default())
    }

    /// A poller that continues from a checkpointed state.
    pub fn restore(api: A, config: PollerConfig, state: PollerState) -> Self {
        let seed = std::collections::hash_map::RandomState::new().hash_one(&config.log_group);
        let window = WindowPlanner::restore(config.window_settings(), state.window, seed);
        let mut seen = state.seen;
        seen.forgotten_before_ms = state.seen_forgotten_before_ms;
        Self::with_window(api, config, window, seen)
    }

    fn with_window(
        api: A,
        config: PollerConfig,
        window: WindowPlanner,
        mut seen: SeenEvents,
    ) -> Self {
        let max_seen_events = config.max_seen_events.max(1);
        let forgotten_unreported = seen.bound(max_seen_events);
        Self {
            api,
            log_group: config.log_group,
            interfaces: config.interfaces,
            window,
            seen,
            max_seen_events,
            forgotten_unreported,
        }
    }

    /// The state to checkpoint (consistent after each completed poll).
    pub fn state(&self) -> PollerState {
        PollerState {
            window: self.window.state().clone(),
            seen: self.seen.clone(),
            seen_forgotten_before_ms: self.seen.forgotten_before_ms,
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
        self.window.streams()
    }

    /// Event ids remembered for dedup.
    pub fn seen_len(&self) -> usize {
        self.seen.len()
    }

    /// Polls failed since the last success.
    pub fn consecutive_failures(&self) -> u32 {
        self.window.consecutive_failures()
    }

    /// Largest delay from an event's timestamp to its ingestion measured
    /// over the last hour of polls, if any event was new in that time.
    pub fn delay_estimate_ms(&self) -> Option<i64> {
        self.window.delays().since_start_ms()
    }

    /// Largest delay from a record's end to its ingestion over the last
    /// hour, as reported by [`Poller::note_delay_since_end`].
    pub fn delay_since_end_ms(&self) -> Option<i64> {
        self.window.delays().since_end_ms()
    }

    /// Notes the largest end-to-ingestion delay of the records of a poll
    /// (the parser knows a record's end, the poller does not).
    pub fn note_delay_since_end(&mut self, now_ms: i64, delay_ms: Option<i64>) {
        self.window.note_delay_since_end(now_ms, delay_ms);
    }

    /// The overlap the next poll re-reads before the last window's end.
    pub fn overlap_ms(&self) -> i64 {
        self.window.overlap_ms()
    }

    /// How long to wait before the next poll (see [`WindowPlanner::next_delay`]).
    pub fn next_delay(&mut self) -> Duration {
        self.window.next_delay()
    }

    /// One poll at wall-clock time `now_ms` (Unix ms). On error nothing is
    /// consumed: the next poll reads the same window again.
    pub async fn poll(&mut self, now_ms: i64) -> Result<PollOutcome, ApiError> {
        let result = self.try_poll(now_ms).await;
        if let Err(err) = &result {
            self.window.failed();
            tracing::debug!(log_group = %self.log_group, failures = self.window.consecutive_failures(), error = %err, "Poll failed");
        }
        result
    }

    async fn try_poll(&mut self, now_ms: i64) -> Result<PollOutcome, ApiError> {
        self.discover_if_due(now_ms).await?;
        let plan = self.window.plan(now_ms);
        // Re-reads of the overlap, seen in earlier polls, are dropped as
        // their pages come: a poll holds only its new events.
        let seen = &self.seen;
        let mut held = Held {
            events: Vec::new(),
            fetched: 0,
            keep: |event: &LogEvent, fingerprint| {
                !seen.contains_fingerprint(event.timestamp_ms, fingerprint)
            },
        };
        let mut api_calls = 0;
        let mut paging_restarts = 0;
        for request in &plan.requests {
            let read = read_request(&self.api, &self.log_group, request, &mut held).await?;
            api_calls += read.calls;
            paging_restarts += read.restarts;
        }
        let (events, fetched) = (held.events, held.fetched);
        Ok(self.commit(&plan, events, fetched, api_calls, paging_restarts))
    }

    /// Everything was read: dedup, and move the window.
    fn commit(
        &mut self,
        plan: &Plan,
        held: Vec<(LogEvent, u128)>,
        fetched: u64,
        api_calls: u32,
        paging_restarts: u32,
    ) -> PollOutcome {
        let mut max_delay = None;
        let mut events: Vec<LogEvent> = held
            .into_iter()
            .filter_map(|(e, fingerprint)| {
                let fresh = self.seen.insert_fingerprint(e.timestamp_ms, fingerprint);
                if fresh {
                    max_delay = max_delay.max(Some(e.ingestion_time_ms - e.timestamp_ms));
                }
                fresh.then_some(e)
            })
            .collect();
        events.sort_by_key(|e| e.timestamp_ms);
        let cutoff = self.window.commit(plan, max_delay);
        self.seen.prune(cutoff);
        let forgotten =
            self.seen.bound(self.max_seen_events) + std::mem::take(&mut self.forgotten_unreported);
        let outcome = PollOutcome {
            new: events.len() as u64,
            events,
            fetched,
            api_calls,
            window_start_ms: plan.window_start_ms,
            window_end_ms: plan.window_end_ms,
            overlap_ms: plan.overlap_ms,
            probe: plan.probe,
            skipped_ms: plan.skipped_ms,
            streams: self.window.streams().len(),
            caught_up: self.window.caught_up(),
            paging_restarts,
            forgotten,
            forgotten_before_ms: self.seen.forgotten_before_ms(),
        };
        tracing::debug!(
            log_group = %self.log_group,
            fetched = outcome.fetched,
            new = outcome.new,
            api_calls = outcome.api_calls,
            window_start_ms = outcome.window_start_ms,
            window_end_ms = outcome.window_end_ms,
            overlap_ms = outcome.overlap_ms,
            probe = outcome.probe,
            "Polled"
        );
        outcome
    }

    /// Lists the streams when due. A failed refresh keeps the previous list
    /// (and is retried next poll); a failed first listing fails the poll.
    async fn discover_if_due(&mut self, now_ms: i64) -> Result<(), ApiError> {
        if !self.window.discovery_due(now_ms) {
            return Ok(());
        }
        let all = match self.api.list_interface_streams(&self.log_group).await {
            Ok(all) => all,
            Err(err) if self.window.can_poll_without_discovery() => {
                tracing::warn!(log_group = %self.log_group, error = %err, "Stream discovery failed, keeping the previous streams");
                return Ok(());
            }
            Err(err) => return Err(err),
        };
        let streams = select_streams(all, &self.interfaces);
        let missing: Vec<&str> = self
            .interfaces
            .iter()
            .filter(|id| !streams.iter().any(|s| is_stream_of(s, id)))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            tracing::debug!(log_group = %self.log_group, interfaces = ?missing, "No stream yet for configured interfaces");
        }
        if streams != self.window.streams() {
            tracing::info!(log_group = %self.log_group, before = self.window.streams().len(), after = streams.len(), "Interface streams changed");
        }
        self.window.discovered(now_ms, streams);
        Ok(())
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
    let mut held = Held {
        events: Vec::new(),
        fetched: 0,
        keep: |_: &LogEvent, _| true,
    };
    for batch in streams.chunks(super::api::MAX_STREAMS_PER_CALL) {
        let request = Request {
            stream_names: batch.to_vec(),
            start_ms: since_ms,
            end_ms: until_ms,
        };
        read_request(api, log_group, &request, &mut held).await?;
    }
    // One fixed window, all of it in memory anyway: no bound needed.
    let mut seen = SeenEvents::default();
    let mut events: Vec<LogEvent> = held
        .events
        .into_iter()
        .filter_map(|(e, fingerprint)| {
            seen.insert_fingerprint(e.timestamp_ms, fingerprint)
                .then_some(e)
        })
        .collect();
    events.sort_by_key(|e| e.timestamp_ms);
    Ok(events)
}

/// The events of one poll so far, each with its fingerprint: those `keep`
/// takes, and how many came.
struct Held<F> {
    events: Vec<(LogEvent, u128)>,
    fetched: u64,
    keep: F,
}

/// Calls made reading one request.
struct Read {
    calls: u32,
    restarts: u32,
}

/// Reads every page of one request, following `nextToken` to the end
/// (through empty pages that still carry one). An expired token restarts
/// the paging from the first page: what was read twice is dropped by dedup.
async fn read_request<A: LogsApi, F: Fn(&LogEvent, u128) -> bool>(
    api: &A,
    log_group: &str,
    request: &Request,
    out: &mut Held<F>,
) -> Result<Read, ApiError> {
    let mut req = FilterRequest {
        log_group: log_group.to_owned(),
        stream_names: request.stream_names.clone(),
        start_ms: request.start_ms,
        end_ms: request.end_ms,
        next_token: None,
    };
    let mut read = Read {
        calls: 0,
        restarts: 0,
    };
    loop {
        let page = match api.filter_log_events(&req).await {
            Ok(page) => page,
            Err(ApiError::ExpiredToken { .. }) if read.restarts < MAX_PAGING_RESTARTS => {
                read.restarts += 1;
                tracing::info!(
                    log_group,
                    restarts = read.restarts,
                    "nextToken expired; reading the window from its first page again"
                );
                req.next_token = None;
                continue;
            }
            Err(err) => return Err(err),
        };
        read.calls += 1;
        out.fetched += page.events.len() as u64;
        for event in page.events {
            let fingerprint = fingerprint(&event);
            if (out.keep)(&event, fingerprint) {
                out.events.push((event, fingerprint));
            }
        }
        match page.next_token {
            Some(token) => req.next_token = Some(token),
            None => return Ok(read),
        }
    }
}

/// 128 bits of SipHash-1-3 (fixed keys) over stream and event id:
/// collisions are out of reach (~1e-26 for a million ids) at a fraction of
/// the strings' memory. From the `siphasher` crate, not std's hasher, whose
/// algorithm is unspecified: fingerprints outlive the process in checkpoints.
fn fingerprint(event: &LogEvent) -> u128 {
    let mut hasher = SipHasher13::new();
    hasher.write(&(event.stream.len() as u64).to_le_bytes());
    hasher.write(event.stream.as_bytes());
    hasher.write(event.event_id.as_bytes());
    hasher.finish128().as_u128()
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
        assert_eq!(restored.seen_forgotten_before_ms, first.forgotten_before_ms);
        // The successor re-reads the overlap: nothing is new.
        let mut successor = Poller::restore(api.clone(), cfg.clone(), restored);
        let again = poll_at(&mut successor, T0 + 30 * SEC).await.unwrap();
        assert_eq!((again.fetched, again.new, again.forgotten), (150, 0, 0));

        // A checkpoint from before the bound existed (no mark) restored
        // into a bound of 60: 90 are forgotten, told by the first poll.
        let mut unbounded = Poller::new(api.clone(), config(), T0);
        assert_eq!(poll_at(&mut unbounded, T0).await.unwrap().forgotten, 0);
        let json = serde_json::to_string(&unbounded.state()).unwrap();
        let mark = r#","seen_forgotten_before_ms":null"#;
        assert!(json.contains(mark), "{json}");
        let legacy: PollerState = serde_json::from_str(&json.replace(mark, "")).unwrap();
        cfg.max_seen_events = 60;
        let mut smaller = Poller::restore(api.clone(), cfg, legacy);
        assert_eq!(smaller.seen_len(), 60);
        let outcome = poll_at(&mut smaller, T0 + 30 * SEC).await.unwrap();
        assert_eq!((outcome.forgotten, outcome.new), (90, 0));
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
}
