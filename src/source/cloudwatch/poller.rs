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
//! are `attempts.rs`'s job, each attempt taking its turn of the budget).
//!
//! # Dedup
//!
//! The overlap re-reads events; an event (stream + event id) is remembered
//! while its timestamp can still fall in a future window, i.e. not before
//! the last probe's end less `lookback`, and forgotten after. That bounds
//! the memory by the events of `lookback + probe_interval` — by the input,
//! so it is bounded by configuration too: at most `max_seen_events` are
//! remembered at any time, the window being read included. Past it, the
//! events of the oldest timestamps of the stream holding the most (a
//! flood's own interface) are forgotten early, and from then on every
//! event of that stream older than the newest one forgotten is taken as
//! seen. A re-read is thus never counted twice; what the bound costs is a
//! record of that stream that arrives late with such an old timestamp —
//! or, part way through a window, one its pages bring after newer ones
//! (`FilterLogEvents` interleaves the streams in time order, so few) —
//! which is dropped. Other streams stay exact. In normal operation the
//! bound is never reached and nothing changes. [`PollOutcome::forgotten`]
//! and [`Batch::forgotten`] report it, for the caller to count and log.
//!
//! A stream that appears at a later discovery is read back to the previous
//! discovery less `lookback`, since its first events may be that old.
//!
//! # Batches: memory bounded in a flood
//!
//! A window of a flood can hold millions of new events. A poll does not
//! hold them all: once `max_held_events` new events are read and pages are
//! left, [`Poller::step`] hands them over as a [`Batch`] and remembers them
//! as seen; the caller counts them (and checkpoints) before reading on.
//! The window itself is committed only when its last page is read. So a
//! poll that fails, or a process killed, after some batches reads the
//! same window again — from a checkpoint that holds the fingerprints of
//! what the batches counted — and drops those events as re-reads: nothing
//! is counted twice and nothing is lost. What stays in memory during a
//! window is the fingerprints of its new events (about 35 bytes each),
//! within `max_seen_events` (see Dedup).
//!
//! # Where the rules live
//!
//! The window arithmetic above is [`super::window`], pure and tested
//! without async; this module is the thin async driver around it: list the
//! streams when due, read every page of every planned request, dedup,
//! hand over batches, commit. An expired `nextToken` in the middle of a
//! paging run restarts that request's paging from its first page (dedup
//! drops what is read twice).

use std::collections::{BTreeMap, BinaryHeap};
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use rustc_hash::{FxHashMap, FxHashSet};
use serde::de::{SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use siphasher::sip128::{Hasher128, SipHasher13};

use super::api::{ApiError, FilterRequest, LogEvent, LogsApi};
use super::streams::{is_stream_of, select_streams};
use super::window::{Plan, Request, WindowPlanner, WindowSettings, WindowState};

/// Default of [`PollerConfig::max_seen_events`]: about 35 MB of
/// fingerprints when many events share a timestamp (a flood), up to ~190 MB
/// when each has its own.
pub const DEFAULT_MAX_SEEN_EVENTS: usize = 1_000_000;

/// Default of [`PollerConfig::max_held_events`]: about 30 MB of events
/// (~300 bytes each with their message) before they are counted.
pub const DEFAULT_MAX_HELD_EVENTS: usize = 100_000;

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
    /// Event fingerprints remembered for dedup at most, the window being
    /// read included; past it the oldest of the stream holding the most are
    /// forgotten early (see the module documentation).
    pub max_seen_events: usize,
    /// New events read and held before they are handed over as a
    /// [`Batch`], however large the window (see the module documentation).
    pub max_held_events: usize,
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
            max_held_events: DEFAULT_MAX_HELD_EVENTS,
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
    /// Events not returned before, sorted by timestamp: all of the poll's
    /// from [`Poller::poll`], those since the last [`Batch`] from
    /// [`Poller::step`].
    pub events: Vec<LogEvent>,
    /// Events returned by the API, re-reads included, the whole poll.
    pub fetched: u64,
    /// Of `fetched`, those since the last [`Batch`] (all without one).
    pub fetched_since_batch: u64,
    /// New events of the whole poll: fetched / new is the read amplification.
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
    /// `max_seen_events`, the whole poll (a restore into a smaller bound
    /// counts in the first poll).
    pub forgotten: u64,
    /// Of `forgotten`, those since the last [`Batch`] (all without one).
    pub forgotten_since_batch: u64,
    /// Events with an earlier timestamp are taken as seen, when fingerprints
    /// were forgotten early and that time is still inside the overlap.
    pub forgotten_before_ms: Option<i64>,
}

/// Fingerprints of the events seen, per stream and by event timestamp:
/// what makes the overlap's re-reads count once. Pruned by time
/// ([`SeenEvents::prune`]) and held within a count ([`SeenEvents::bound`]),
/// the stream holding the most paying first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeenEvents {
    /// By stream name; [`LEGACY_STREAM`] holds fingerprints restored from a
    /// checkpoint written before they were kept per stream.
    streams: BTreeMap<String, StreamSeen>,
    len: usize,
}

/// Where a checkpoint written before fingerprints were kept per stream
/// puts them: consulted for every stream (real stream names are never
/// empty), and gone once pruned.
const LEGACY_STREAM: &str = "";

/// One stream's fingerprints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct StreamSeen {
    by_time: BTreeMap<i64, FxHashSet<u128>>,
    len: usize,
    /// Fingerprints of this stream's events with an earlier timestamp were
    /// forgotten early: any such event is taken as seen.
    forgotten_before_ms: Option<i64>,
}

impl StreamSeen {
    fn taken_as_seen(&self, timestamp_ms: i64) -> bool {
        self.forgotten_before_ms
            .is_some_and(|before| timestamp_ms < before)
    }

    fn contains(&self, timestamp_ms: i64, fingerprint: u128) -> bool {
        self.taken_as_seen(timestamp_ms)
            || self
                .by_time
                .get(&timestamp_ms)
                .is_some_and(|ids| ids.contains(&fingerprint))
    }

    /// Forgets the fingerprints of the oldest timestamp (all of its events
    /// together, so that "older than the newest forgotten" means
    /// "forgotten"); how many went.
    fn forget_oldest(&mut self) -> usize {
        let Some((time, set)) = self.by_time.pop_first() else {
            return 0;
        };
        self.len -= set.len();
        self.forgotten_before_ms = self.forgotten_before_ms.max(Some(time + 1));
        set.len()
    }

    /// Forgets events with a timestamp before `cutoff_ms`; how many went.
    fn prune(&mut self, cutoff_ms: i64) -> usize {
        let kept = self.by_time.split_off(&cutoff_ms);
        let dropped = std::mem::replace(&mut self.by_time, kept);
        let gone = dropped.values().map(FxHashSet::len).sum::<usize>();
        self.len -= gone;
        if self
            .forgotten_before_ms
            .is_some_and(|before| before <= cutoff_ms)
        {
            self.forgotten_before_ms = None;
        }
        gone
    }
}

impl SeenEvents {
    /// True when the event was seen before (or is taken as seen).
    #[cfg(test)]
    fn contains(&self, event: &LogEvent) -> bool {
        self.contains_fingerprint(event, fingerprint(&event.stream, &event.event_id))
    }

    /// As [`SeenEvents::contains`], with the event's [`fingerprint`]
    /// already computed.
    fn contains_fingerprint(&self, event: &LogEvent, fingerprint: u128) -> bool {
        self.streams
            .get(event.stream.as_str())
            .is_some_and(|seen| seen.contains(event.timestamp_ms, fingerprint))
            || self.in_legacy(event.timestamp_ms, fingerprint)
    }

    fn in_legacy(&self, timestamp_ms: i64, fingerprint: u128) -> bool {
        self.streams
            .get(LEGACY_STREAM)
            .is_some_and(|legacy| legacy.contains(timestamp_ms, fingerprint))
    }

    /// True when the event was not seen before (and now is).
    fn insert(&mut self, event: &LogEvent) -> bool {
        self.insert_fingerprint(event, fingerprint(&event.stream, &event.event_id))
    }

    /// As [`SeenEvents::insert`], with the event's [`fingerprint`] already
    /// computed.
    fn insert_fingerprint(&mut self, event: &LogEvent, fingerprint: u128) -> bool {
        if self.in_legacy(event.timestamp_ms, fingerprint) {
            return false;
        }
        let seen = match self.streams.get_mut(event.stream.as_str()) {
            Some(seen) => seen,
            None => self.streams.entry(event.stream.clone()).or_default(),
        };
        if seen.taken_as_seen(event.timestamp_ms) {
            return false;
        }
        let fresh = seen
            .by_time
            .entry(event.timestamp_ms)
            .or_default()
            .insert(fingerprint);
        seen.len += usize::from(fresh);
        self.len += usize::from(fresh);
        fresh
    }

    /// Forgets events with a timestamp before `cutoff_ms`: no later window
    /// reads them again.
    fn prune(&mut self, cutoff_ms: i64) {
        self.streams.retain(|_, seen| {
            self.len -= seen.prune(cutoff_ms);
            seen.len > 0 || seen.forgotten_before_ms.is_some()
        });
    }

    /// Forgets fingerprints until at most `max` are left: the oldest
    /// timestamps of the stream holding the most, whole timestamps at a
    /// time (so a flood on one interface costs that interface, and the
    /// others' late records stay exact). From then on, an event of that
    /// stream older than the newest timestamp forgotten is taken as seen.
    /// Returns how many went.
    fn bound(&mut self, max: usize) -> u64 {
        if self.len <= max {
            return 0;
        }
        let mut largest: BinaryHeap<(usize, String)> = self
            .streams
            .iter()
            .map(|(stream, seen)| (seen.len, stream.clone()))
            .collect();
        let mut forgotten = 0;
        while self.len > max {
            let Some((_, stream)) = largest.pop() else {
                break;
            };
            let seen = self.streams.get_mut(&stream).expect("listed above");
            let gone = seen.forget_oldest();
            self.len -= gone;
            forgotten += gone as u64;
            if seen.len > 0 {
                largest.push((seen.len, stream));
            }
        }
        forgotten
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The latest of the streams' marks: an event with an earlier
    /// timestamp, of a stream whose fingerprints were forgotten early, may
    /// be taken as seen (see [`SeenEvents::bound`]).
    pub fn forgotten_before_ms(&self) -> Option<i64> {
        self.streams
            .values()
            .filter_map(|seen| seen.forgotten_before_ms)
            .max()
    }

    /// Adds a stream's fingerprints and mark, restored from a checkpoint.
    fn add(&mut self, stream: String, entries: Vec<(i64, Vec<u128>)>, mark: Option<i64>) {
        let one = self.streams.entry(stream).or_default();
        for (time, fingerprints) in entries {
            let set = one.by_time.entry(time).or_default();
            for fingerprint in fingerprints {
                let fresh = usize::from(set.insert(fingerprint));
                one.len += fresh;
                self.len += fresh;
            }
        }
        one.forgotten_before_ms = one.forgotten_before_ms.max(mark);
    }
}

/// Read back from the list [`SeenEvents`] is written as: per stream,
/// `[name, mark, [[time, [fingerprint, …]], …]]`; or, from a checkpoint
/// written before fingerprints were kept per stream, `[time,
/// [fingerprint, …]]` entries (restored under [`LEGACY_STREAM`]). Read by
/// hand: serde's untagged enums cannot hold 128-bit numbers.
impl<'de> Deserialize<'de> for SeenEvents {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SeenEvents, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = SeenEvents;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of event fingerprints")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SeenEvents, A::Error> {
                let mut seen = SeenEvents::default();
                while let Some(entry) = seq.next_element::<SeenEntry>()? {
                    match entry {
                        SeenEntry::Stream(stream, mark, entries) => {
                            seen.add(stream, entries, mark);
                        }
                        SeenEntry::Legacy(time, fingerprints) => {
                            seen.add(LEGACY_STREAM.to_owned(), vec![(time, fingerprints)], None);
                        }
                    }
                }
                Ok(seen)
            }
        }
        deserializer.deserialize_seq(Entries)
    }
}

/// One entry of [`SeenEvents`]' checkpoint form.
enum SeenEntry {
    Stream(String, Option<i64>, Vec<(i64, Vec<u128>)>),
    Legacy(i64, Vec<u128>),
}

impl<'de> Deserialize<'de> for SeenEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SeenEntry, D::Error> {
        /// The first item tells the two forms apart.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Head {
            Time(i64),
            Stream(String),
        }
        struct Entry;
        impl<'de> Visitor<'de> for Entry {
            type Value = SeenEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("[stream, mark, fingerprints by time] or [time, fingerprints]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SeenEntry, A::Error> {
                let missing = |n| serde::de::Error::invalid_length(n, &self);
                match seq.next_element::<Head>()?.ok_or_else(|| missing(0))? {
                    Head::Time(time) => {
                        let fingerprints = seq.next_element()?.ok_or_else(|| missing(1))?;
                        Ok(SeenEntry::Legacy(time, fingerprints))
                    }
                    Head::Stream(stream) => {
                        let mark = seq.next_element()?.ok_or_else(|| missing(1))?;
                        let entries = seq.next_element()?.ok_or_else(|| missing(2))?;
                        Ok(SeenEntry::Stream(stream, mark, entries))
                    }
                }
            }
        }
        deserializer.deserialize_seq(Entry)
    }
}

/// As the per-stream list it is read back from, fingerprints sorted;
/// written from the live set, one timestamp's copy at a time (a
/// checkpoint holds no second copy of the fingerprints).
impl Serialize for SeenEvents {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.streams.len()))?;
        for (stream, seen) in &self.streams {
            seq.serialize_element(&(stream, seen.forgotten_before_ms, ByTime(&seen.by_time)))?;
        }
        seq.end()
    }
}

/// One stream's fingerprints by time, serialized without a copy of them all.
struct ByTime<'a>(&'a BTreeMap<i64, FxHashSet<u128>>);

impl Serialize for ByTime<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for (time, set) in self.0 {
            let mut fingerprints: Vec<u128> = set.iter().copied().collect();
            fingerprints.sort_unstable();
            seq.serialize_element(&(time, fingerprints))?;
        }
        seq.end()
    }
}

/// What a successor needs to continue one log group's polling: the window
/// state and the events still inside the overlap.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PollerState {
    pub window: WindowState,
    pub seen: SeenEvents,
    /// The mark of checkpoints written before fingerprints were kept per
    /// stream (absent from those written before `max_seen_events` existed,
    /// and from those written since: each stream's mark is in `seen`).
    #[serde(default)]
    pub seen_forgotten_before_ms: Option<i64>,
}

/// [`PollerState`] borrowed from a live [`Poller`], to write a checkpoint
/// without copying the window state or the fingerprints.
#[derive(Debug, Serialize)]
pub struct PollerStateRef<'a> {
    pub window: &'a WindowState,
    pub seen: &'a SeenEvents,
}

/// Reads one log group poll after poll. See the module documentation.
pub struct Poller<A> {
    api: A,
    log_group: String,
    interfaces: Vec<String>,
    window: WindowPlanner,
    seen: SeenEvents,
    max_seen_events: usize,
    max_held_events: usize,
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
        if let Some(mark) = state.seen_forgotten_before_ms {
            seen.add(LEGACY_STREAM.to_owned(), Vec::new(), Some(mark));
        }
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
            max_held_events: config.max_held_events.max(1),
            forgotten_unreported,
        }
    }

    /// The state to checkpoint, written as a [`PollerState`]: consistent
    /// after each completed poll, and after each [`Batch`] once the caller
    /// has counted it.
    pub fn state(&self) -> PollerStateRef<'_> {
        PollerStateRef {
            window: self.window.state(),
            seen: &self.seen,
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

    /// A poll that could not start (its role's credentials were refused)
    /// failed: the next one waits with the same backoff as after an API
    /// failure, and reads the same window.
    pub fn could_not_start(&mut self) {
        self.window.failed();
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

    /// One poll at wall-clock time `now_ms` (Unix ms), read to the end of
    /// its window: every new event in [`PollOutcome::events`]. On error
    /// nothing of the window is committed: the next poll reads it again.
    /// (`serve` counts batch by batch instead: [`Poller::start`].)
    pub async fn poll(&mut self, now_ms: i64) -> Result<PollOutcome, ApiError> {
        let mut run = self.start(now_ms).await?;
        let mut events = Vec::new();
        loop {
            match self.step(&mut run).await? {
                PollStep::Batch(batch) => append(&mut events, batch.events),
                PollStep::Done(mut outcome) => {
                    append(&mut events, std::mem::take(&mut outcome.events));
                    sort_by_time(&mut events);
                    outcome.events = events;
                    return Ok(outcome);
                }
            }
        }
    }

    /// Starts a poll at `now_ms`: lists the streams when due and plans the
    /// window. Then [`Poller::step`] until [`PollStep::Done`].
    pub async fn start(&mut self, now_ms: i64) -> Result<PollRun, ApiError> {
        if let Err(err) = self.discover_if_due(now_ms).await {
            self.failed(&err);
            return Err(err);
        }
        Ok(PollRun {
            plan: self.window.plan(now_ms),
            paging: Paging::default(),
            held: Vec::new(),
            held_fingerprints: Vec::new(),
            fingerprints: Fingerprints::default(),
            fetched: 0,
            fetched_reported: 0,
            new: 0,
            forgotten: 0,
        })
    }

    /// Reads pages of `run` until `max_held_events` new events are held
    /// ([`PollStep::Batch`]) or the window is read to its end
    /// ([`PollStep::Done`], committed). A batch's events are remembered as
    /// seen when it is returned, so the caller counts them before the next
    /// step — and, to survive a kill, checkpoints [`Poller::state`] then:
    /// the window is not committed, so a successor reads it again and
    /// drops what the batch counted. On error the window is not committed
    /// either: the next poll reads it again and drops what earlier batches
    /// counted. Cancel-safe: a step dropped at an `await` leaves `run` as
    /// it was after its last page.
    pub async fn step(&mut self, run: &mut PollRun) -> Result<PollStep, ApiError> {
        match self.read_pages(run).await {
            Ok(true) => Ok(PollStep::Done(self.finish(run))),
            Ok(false) => {
                let (events, max_delay) = self.take_new(run);
                self.window.note_new_delay(run.plan.now_ms, max_delay);
                // Within the bound part way through a window too: a flood's
                // window holds at most `max_seen_events` fingerprints.
                let forgotten = self.seen.bound(self.max_seen_events);
                run.forgotten += forgotten;
                let fetched = run.fetched - run.fetched_reported;
                run.fetched_reported = run.fetched;
                Ok(PollStep::Batch(Batch {
                    events,
                    fetched,
                    forgotten,
                }))
            }
            Err(err) => {
                self.failed(&err);
                Err(err)
            }
        }
    }

    fn failed(&mut self, err: &ApiError) {
        self.window.failed();
        tracing::debug!(log_group = %self.log_group, failures = self.window.consecutive_failures(), error = %err, "Poll failed");
    }

    /// Reads pages until `max_held_events` new events are held and pages
    /// are left (false), or every page of every request is read (true).
    /// Re-reads of the overlap, seen in earlier polls or batches, are
    /// dropped as their pages come.
    async fn read_pages(&self, run: &mut PollRun) -> Result<bool, ApiError> {
        loop {
            if run.held.len() >= self.max_held_events && !run.paging.finished(&run.plan.requests) {
                return Ok(false);
            }
            let Some(mut events) = run
                .paging
                .next_page(&self.api, &self.log_group, &run.plan.requests)
                .await?
            else {
                return Ok(true);
            };
            run.fetched += events.len() as u64;
            // Each event's fingerprint is computed once: checked here,
            // remembered with it when the batch is taken. The page is
            // filtered where it lies (no event moved while none is a
            // re-read), and becomes the held events when none are yet.
            let (seen, fingerprints) = (&self.seen, &mut run.fingerprints);
            run.held_fingerprints.reserve(events.len());
            events.retain(|event| {
                let fingerprint = fingerprints.of(event);
                let new = !seen.contains_fingerprint(event, fingerprint);
                if new {
                    run.held_fingerprints.push(fingerprint);
                }
                new
            });
            append(&mut run.held, events);
        }
    }

    /// The events `run` holds that were not seen before (a page read twice
    /// after an expired token is dropped here), now seen, sorted by
    /// timestamp; and the largest ingestion-less-timestamp delay among them.
    fn take_new(&mut self, run: &mut PollRun) -> (Vec<LogEvent>, Option<i64>) {
        let mut events = std::mem::take(&mut run.held);
        let mut fingerprints = std::mem::take(&mut run.held_fingerprints).into_iter();
        let mut max_delay = None;
        // `retain` visits each event once, in order: the fingerprints,
        // pushed alongside, follow it.
        events.retain(|e| {
            let fingerprint = fingerprints.next().expect("one fingerprint per held event");
            let fresh = self.seen.insert_fingerprint(e, fingerprint);
            if fresh {
                max_delay = max_delay.max(Some(e.ingestion_time_ms - e.timestamp_ms));
            }
            fresh
        });
        sort_by_time(&mut events);
        run.new += events.len() as u64;
        (events, max_delay)
    }

    /// Everything was read: the last new events, and the window moves.
    fn finish(&mut self, run: &mut PollRun) -> PollOutcome {
        let (events, max_delay) = self.take_new(run);
        let cutoff = self.window.commit(&run.plan, max_delay);
        self.seen.prune(cutoff);
        let forgotten_since_batch =
            self.seen.bound(self.max_seen_events) + std::mem::take(&mut self.forgotten_unreported);
        run.forgotten += forgotten_since_batch;
        let plan = &run.plan;
        let outcome = PollOutcome {
            events,
            fetched: run.fetched,
            fetched_since_batch: run.fetched - run.fetched_reported,
            new: run.new,
            api_calls: run.paging.calls,
            window_start_ms: plan.window_start_ms,
            window_end_ms: plan.window_end_ms,
            overlap_ms: plan.overlap_ms,
            probe: plan.probe,
            skipped_ms: plan.skipped_ms,
            streams: self.window.streams().len(),
            caught_up: self.window.caught_up(),
            paging_restarts: run.paging.restarts,
            forgotten: run.forgotten,
            forgotten_since_batch,
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
/// poll (one fixed window, all of it in memory anyway: no bound); events
/// sorted by timestamp.
pub async fn read_window<A: LogsApi>(
    api: &A,
    log_group: &str,
    interface: Option<&str>,
    since_ms: i64,
    until_ms: i64,
) -> Result<Vec<LogEvent>, ApiError> {
    let interfaces: Vec<String> = interface.into_iter().map(str::to_owned).collect();
    let streams = select_streams(api.list_interface_streams(log_group).await?, &interfaces);
    let requests: Vec<Request> = streams
        .chunks(super::api::MAX_STREAMS_PER_CALL)
        .map(|batch| Request {
            stream_names: batch.to_vec(),
            start_ms: since_ms,
            end_ms: until_ms,
        })
        .collect();
    let mut paging = Paging::default();
    let mut seen = SeenEvents::default();
    let mut events = Vec::new();
    while let Some(page) = paging.next_page(api, log_group, &requests).await? {
        events.extend(page.into_iter().filter(|e| seen.insert(e)));
    }
    sort_by_time(&mut events);
    Ok(events)
}

/// A poll under way ([`Poller::start`]): its plan, how far its paging got,
/// and the new events read and not yet taken.
pub struct PollRun {
    plan: Plan,
    paging: Paging,
    held: Vec<LogEvent>,
    /// The [`fingerprint`] of each event of `held`, in the same order.
    held_fingerprints: Vec<u128>,
    fingerprints: Fingerprints,
    fetched: u64,
    /// `fetched` when the last batch was taken.
    fetched_reported: u64,
    new: u64,
    /// Fingerprints forgotten early by the batches so far.
    forgotten: u64,
}

/// What one [`Poller::step`] gives.
#[derive(Debug)]
pub enum PollStep {
    /// New events read part way through the window.
    Batch(Batch),
    /// The window was read to its end and committed; `events` are the new
    /// events since the last batch, `new` and `fetched` the whole poll's.
    Done(PollOutcome),
}

/// New events of a window not yet read to its end.
#[derive(Debug)]
pub struct Batch {
    /// Sorted by timestamp.
    pub events: Vec<LogEvent>,
    /// Events the API returned since the previous step, re-reads included.
    pub fetched: u64,
    /// Event fingerprints forgotten early to stay within `max_seen_events`
    /// once this batch's were remembered.
    pub forgotten: u64,
}

/// Where the paging of a poll's requests stands.
#[derive(Debug, Default)]
struct Paging {
    /// The request being read, and the token of its next page.
    request: usize,
    next_token: Option<String>,
    /// Paging restarts of the request being read.
    request_restarts: u32,
    /// `FilterLogEvents` pages read.
    calls: u32,
    /// Paging restarts after an expired `nextToken`, all requests.
    restarts: u32,
}

impl Paging {
    /// Whether every page of `requests` was read.
    fn finished(&self, requests: &[Request]) -> bool {
        self.request >= requests.len()
    }

    /// The events of the next page of `requests`, following `nextToken`
    /// to the end of each (through empty pages that still carry one);
    /// `None` once every page was read. An expired token restarts its
    /// request's paging from the first page (what is read twice is for the
    /// caller to drop). Cancel-safe: the position moves only once a page
    /// is in.
    async fn next_page<A: LogsApi>(
        &mut self,
        api: &A,
        log_group: &str,
        requests: &[Request],
    ) -> Result<Option<Vec<LogEvent>>, ApiError> {
        loop {
            let Some(request) = requests.get(self.request) else {
                return Ok(None);
            };
            let filter = FilterRequest {
                log_group: log_group.to_owned(),
                stream_names: request.stream_names.clone(),
                start_ms: request.start_ms,
                end_ms: request.end_ms,
                next_token: self.next_token.clone(),
            };
            let page = match api.filter_log_events(&filter).await {
                Ok(page) => page,
                Err(ApiError::ExpiredToken { .. })
                    if self.request_restarts < MAX_PAGING_RESTARTS =>
                {
                    self.request_restarts += 1;
                    self.restarts += 1;
                    tracing::info!(
                        log_group,
                        restarts = self.request_restarts,
                        "nextToken expired; reading the window from its first page again"
                    );
                    self.next_token = None;
                    continue;
                }
                Err(err) => return Err(err),
            };
            self.calls += 1;
            match page.next_token {
                Some(token) => self.next_token = Some(token),
                None => {
                    self.request += 1;
                    self.next_token = None;
                    self.request_restarts = 0;
                }
            }
            return Ok(Some(page.events));
        }
    }
}

/// 128 bits of SipHash-1-3 (fixed keys) over stream and event id:
/// collisions are out of reach (~1e-26 for a million ids) at a fraction of
/// the strings' memory. From the `siphasher` crate, not std's hasher, whose
/// algorithm is unspecified: fingerprints outlive the process in checkpoints.
fn fingerprint(stream: &str, event_id: &str) -> u128 {
    fingerprint_from(stream_prefix(stream), event_id)
}

/// The SipHash state after a stream's part of a [`fingerprint`] (its
/// length and name), the same for every event of the stream.
fn stream_prefix(stream: &str) -> SipHasher13 {
    let mut hasher = SipHasher13::new();
    hasher.write(&(stream.len() as u64).to_le_bytes());
    hasher.write(stream.as_bytes());
    hasher
}

/// A [`fingerprint`] finished from its stream's [`stream_prefix`]: the
/// same value (SipHash is a stream of bytes, the state is all there is).
fn fingerprint_from(mut prefix: SipHasher13, event_id: &str) -> u128 {
    prefix.write(event_id.as_bytes());
    prefix.finish128().as_u128()
}

/// [`fingerprint`]s of the events of one poll, hashing each stream's name
/// once (it is most of the bytes hashed after the id).
#[derive(Default)]
struct Fingerprints {
    prefixes: FxHashMap<String, SipHasher13>,
}

impl Fingerprints {
    fn of(&mut self, event: &LogEvent) -> u128 {
        let prefix = match self.prefixes.get(event.stream.as_str()) {
            Some(prefix) => *prefix,
            None => *self
                .prefixes
                .entry(event.stream.clone())
                .or_insert_with(|| stream_prefix(&event.stream)),
        };
        fingerprint_from(prefix, &event.event_id)
    }
}

/// Appends `more` to `events`, without moving them when `events` is empty.
fn append(events: &mut Vec<LogEvent>, mut more: Vec<LogEvent>) {
    if events.is_empty() {
        *events = more;
    } else {
        events.append(&mut more);
    }
}

/// Sorts events by timestamp, keeping the order of equal ones, as
/// `sort_by_key` does; but through a list of (timestamp, index) pairs, so
/// that an event (about 90 bytes) moves once rather than at each merge, and
/// not at all when the events are in order already.
fn sort_by_time(events: &mut [LogEvent]) {
    if !events.is_sorted_by_key(|e| e.timestamp_ms) {
        events.sort_by_cached_key(|e| e.timestamp_ms);
    }
}

#[cfg(test)]
mod tests;
