//! The window arithmetic of one log group's poller, pure: which log time
//! each poll reads, from which streams, and what a success or a failure
//! changes. No API, no async, the clock passed in as a value — so the rule
//! that decides whether records are lost is tested without tokio (and
//! property-tested below: no sequence of failures leaves a gap).
//!
//! The poller drives it: [`WindowPlanner::discovery_due`] /
//! [`WindowPlanner::discovered`], then [`WindowPlanner::plan`] gives the
//! requests of one poll; as batches of new events are counted part way
//! through, [`WindowPlanner::note_new_delay`] (the window stays
//! uncommitted); once every page of every request is read,
//! [`WindowPlanner::commit`]; on any error, [`WindowPlanner::failed`] (the
//! next plan reads the same log time again). The rules themselves are
//! described in [`super::poller`]'s module documentation.
//!
//! The **origin** is the log time reading starts from when nothing was read
//! yet: the process start less `lookback`, fixed when the planner is made —
//! not at the first poll that succeeds, so a start while the API is down
//! still reads the records of its first window once the API answers. A
//! planner restored from a checkpoint ([`WindowState`]) continues from the
//! checkpointed window instead.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::api::MAX_STREAMS_PER_CALL;
use super::recent::RecentMax;

/// How long a measured delivery delay counts (overlap and watermark).
const DELAY_MEMORY_MS: i64 = 60 * 60 * 1000;

/// The planner's settings, in milliseconds, brought into range:
/// `min_overlap <= lookback <= max_catchup`, `max_window > lookback`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowSettings {
    pub poll_interval_ms: i64,
    pub lookback_ms: i64,
    pub min_overlap_ms: i64,
    pub max_catchup_ms: i64,
    pub max_window_ms: i64,
    pub discovery_interval_ms: i64,
    pub probe_interval_ms: i64,
    pub max_backoff_ms: i64,
}

impl WindowSettings {
    /// From durations (see [`super::PollerConfig`] for what each means).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        poll_interval: Duration,
        lookback: Duration,
        min_overlap: Duration,
        max_catchup: Duration,
        max_window: Duration,
        discovery_interval: Duration,
        probe_interval: Duration,
        max_backoff: Duration,
    ) -> WindowSettings {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4);
        let poll_interval_ms = ms(poll_interval).max(1);
        let lookback_ms = ms(lookback).max(1);
        WindowSettings {
            poll_interval_ms,
            lookback_ms,
            min_overlap_ms: ms(min_overlap).min(lookback_ms),
            max_catchup_ms: ms(max_catchup).max(lookback_ms),
            max_window_ms: ms(max_window).max(lookback_ms + poll_interval_ms),
            discovery_interval_ms: ms(discovery_interval),
            probe_interval_ms: ms(probe_interval),
            max_backoff_ms: ms(max_backoff).max(poll_interval_ms),
        }
    }
}

/// Measured delivery delays of the last hour, in one place: how long after
/// its start (the event timestamp, what `startTime` filters on) a record
/// reaches CloudWatch sizes the overlap; how long after its end sizes the
/// wall-clock watermark's lag ([`crate::flow::clock`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeliveryDelays {
    /// Ingestion time less event timestamp, ms.
    since_start: RecentMax,
    /// Ingestion time less the record's `end`, ms.
    since_end: RecentMax,
}

impl Default for DeliveryDelays {
    fn default() -> DeliveryDelays {
        DeliveryDelays {
            since_start: RecentMax::new(DELAY_MEMORY_MS),
            since_end: RecentMax::new(DELAY_MEMORY_MS),
        }
    }
}

impl DeliveryDelays {
    /// Largest ingestion-less-timestamp delay of the last hour, ms.
    pub fn since_start_ms(&self) -> Option<i64> {
        self.since_start.max()
    }

    /// Largest ingestion-less-end delay of the last hour, ms.
    pub fn since_end_ms(&self) -> Option<i64> {
        self.since_end.max()
    }
}

/// Everything a successor needs to continue where this planner stopped
/// (the checkpoint's window part).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WindowState {
    /// Where reading starts while nothing was read: process start less lookback.
    pub origin_ms: i64,
    /// End of the last successful window.
    pub last_end_ms: Option<i64>,
    /// End of the window of the last probe (or of the first poll).
    pub last_probe_end_ms: Option<i64>,
    /// When the streams were last listed.
    pub discovered_at_ms: Option<i64>,
    /// The interface streams, sorted.
    pub streams: Vec<String>,
    /// Streams found by a later discovery and not read yet, with the start
    /// of their first window.
    pub new_streams: BTreeMap<String, i64>,
    pub delays: DeliveryDelays,
}

/// One `FilterLogEvents` paging run: up to 100 streams, one time range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub stream_names: Vec<String>,
    /// Inclusive bounds on the event timestamp, Unix ms.
    pub start_ms: i64,
    pub end_ms: i64,
}

/// What one poll reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub now_ms: i64,
    pub requests: Vec<Request>,
    /// Earliest start of any request (a new stream may start earlier).
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    pub overlap_ms: i64,
    /// Whether this poll re-reads back to the last probe less `lookback`.
    pub probe: bool,
    /// Log time never read because an outage outlasted `max_catchup`.
    pub skipped_ms: i64,
}

/// The window state of one log group and the rules that move it.
#[derive(Debug, Clone)]
pub struct WindowPlanner {
    settings: WindowSettings,
    state: WindowState,
    /// Whether this process listed the streams (a restored list may be stale).
    discovered_here: bool,
    failures: u32,
    caught_up: bool,
    rng: u64,
}

impl WindowPlanner {
    /// A planner for a process started at `started_ms`; `seed` spreads the
    /// backoff jitter of several planners.
    pub fn new(settings: WindowSettings, started_ms: i64, seed: u64) -> WindowPlanner {
        let state = WindowState {
            origin_ms: started_ms - settings.lookback_ms,
            last_end_ms: None,
            last_probe_end_ms: None,
            discovered_at_ms: None,
            streams: Vec::new(),
            new_streams: BTreeMap::new(),
            delays: DeliveryDelays::default(),
        };
        WindowPlanner::restore(settings, state, seed)
    }

    /// Continues from a checkpointed state. The streams are listed again at
    /// the first poll (and kept should that fail).
    pub fn restore(settings: WindowSettings, state: WindowState, seed: u64) -> WindowPlanner {
        WindowPlanner {
            settings,
            state,
            discovered_here: false,
            failures: 0,
            caught_up: true,
            rng: seed | 1,
        }
    }

    pub fn settings(&self) -> &WindowSettings {
        &self.settings
    }

    pub fn state(&self) -> &WindowState {
        &self.state
    }

    pub fn streams(&self) -> &[String] {
        &self.state.streams
    }

    pub fn delays(&self) -> &DeliveryDelays {
        &self.state.delays
    }

    /// Polls failed since the last success.
    pub fn consecutive_failures(&self) -> u32 {
        self.failures
    }

    /// The overlap the next poll re-reads before the last window's end:
    /// `clamp(1.5 × max_delay + poll_interval, min_overlap, lookback)`, and
    /// `lookback` while no delay was measured.
    pub fn overlap_ms(&self) -> i64 {
        let s = &self.settings;
        match self.state.delays.since_start_ms() {
            Some(delay) => (delay.saturating_mul(3) / 2 + s.poll_interval_ms)
                .clamp(s.min_overlap_ms, s.lookback_ms),
            None => s.lookback_ms,
        }
    }

    /// Whether a poll at `now_ms` is a probe.
    pub fn probe_due(&self, now_ms: i64) -> bool {
        self.state
            .last_probe_end_ms
            .is_some_and(|end| now_ms - end >= self.settings.probe_interval_ms)
    }

    /// Whether the streams should be listed before this poll.
    pub fn discovery_due(&self, now_ms: i64) -> bool {
        !self.discovered_here
            || self
                .state
                .discovered_at_ms
                .is_none_or(|t| now_ms - t >= self.settings.discovery_interval_ms)
    }

    /// Whether a poll can go ahead although listing the streams failed:
    /// when some listing (this process's or a checkpoint's) succeeded before.
    pub fn can_poll_without_discovery(&self) -> bool {
        self.state.discovered_at_ms.is_some()
    }

    /// The streams listed at `now_ms` (sorted). A stream not known before,
    /// found by a later listing, is read back to the previous listing less
    /// `lookback`, since its first events may be that old.
    pub fn discovered(&mut self, now_ms: i64, streams: Vec<String>) {
        if let Some(previous) = self.state.discovered_at_ms {
            for stream in &streams {
                if self.state.streams.binary_search(stream).is_err() {
                    self.state
                        .new_streams
                        .entry(stream.clone())
                        .or_insert(previous - self.settings.lookback_ms);
                }
            }
        }
        self.state.streams = streams;
        self.state.discovered_at_ms = Some(now_ms);
        self.discovered_here = true;
    }

    /// The requests of a poll at `now_ms`.
    pub fn plan(&self, now_ms: i64) -> Plan {
        let s = &self.settings;
        let floor = now_ms - s.max_catchup_ms;
        let overlap_ms = self.overlap_ms();
        let probe = self.probe_due(now_ms);
        let (from, covered_to) = match (self.state.last_end_ms, self.state.last_probe_end_ms) {
            (Some(last_end), Some(probe_end)) => {
                let from = if probe {
                    (last_end - overlap_ms).min(probe_end - s.lookback_ms)
                } else {
                    last_end - overlap_ms
                };
                (from, last_end)
            }
            _ => (self.state.origin_ms, self.state.origin_ms),
        };
        let start = from.max(floor);
        let skipped_ms = (floor - covered_to).max(0);
        // Never before `start`, so the window end never moves back.
        let end = now_ms.min(start + s.max_window_ms).max(start);
        // Known streams read from `start`; a newly discovered one from
        // further back. Streams sharing a start share calls.
        let mut groups: BTreeMap<i64, Vec<String>> = BTreeMap::new();
        for stream in &self.state.streams {
            let from = self
                .state
                .new_streams
                .get(stream)
                .map_or(start, |&from| from.clamp(floor, start));
            groups.entry(from).or_default().push(stream.clone());
        }
        let window_start_ms = groups.keys().next().copied().unwrap_or(start);
        let requests = groups
            .into_iter()
            .flat_map(|(from, streams)| {
                streams
                    .chunks(MAX_STREAMS_PER_CALL)
                    .map(|batch| Request {
                        stream_names: batch.to_vec(),
                        start_ms: from,
                        end_ms: end,
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        Plan {
            now_ms,
            requests,
            window_start_ms,
            window_end_ms: end,
            overlap_ms,
            probe,
            skipped_ms,
        }
    }

    /// Every page of `plan` was read; `max_new_delay_ms` is the largest
    /// ingestion-less-timestamp delay among the events new to this poll.
    /// Returns the dedup cutoff: no later window starts before it, so seen
    /// events with an earlier timestamp can be forgotten.
    pub fn commit(&mut self, plan: &Plan, max_new_delay_ms: Option<i64>) -> i64 {
        let end = plan.window_end_ms;
        self.state
            .delays
            .since_start
            .record(plan.now_ms, max_new_delay_ms.map(|d| d.max(0)));
        if plan.probe || self.state.last_probe_end_ms.is_none() {
            self.state.last_probe_end_ms = Some(end);
        }
        self.state.last_end_ms = Some(end);
        self.state.new_streams.clear();
        self.caught_up = end >= plan.now_ms;
        self.failures = 0;
        self.dedup_cutoff_ms()
    }

    /// The earliest event timestamp a later window can read (with state
    /// committed): the last probe's end less `lookback`.
    pub fn dedup_cutoff_ms(&self) -> i64 {
        self.state
            .last_probe_end_ms
            .map_or(self.state.origin_ms, |end| end - self.settings.lookback_ms)
    }

    /// Part of `plan`'s window was read and its new events counted (the
    /// window itself is not committed: a poll that fails or a process
    /// killed before [`WindowPlanner::commit`] reads it again).
    /// `max_new_delay_ms` is as in `commit`: the delays are measured as the
    /// events are counted, so a checkpoint taken now keeps them.
    pub fn note_new_delay(&mut self, now_ms: i64, max_new_delay_ms: Option<i64>) {
        self.state
            .delays
            .since_start
            .record(now_ms, max_new_delay_ms.map(|d| d.max(0)));
    }

    /// A poll failed: nothing of its window is consumed.
    pub fn failed(&mut self) {
        self.failures = self.failures.saturating_add(1);
    }

    /// A record's delivery delay from its end (ms), measured by whoever
    /// parses it, at `now_ms`.
    pub fn note_delay_since_end(&mut self, now_ms: i64, delay_ms: Option<i64>) {
        self.state
            .delays
            .since_end
            .record(now_ms, delay_ms.map(|d| d.max(0)));
    }

    /// Whether the last window reached the time it was planned at.
    pub fn caught_up(&self) -> bool {
        self.caught_up
    }

    /// How long to wait before the next poll: zero while catching up, the
    /// poll interval after a success, and after `n` consecutive failures
    /// `poll_interval × 2^(n-1)` (at most `max_backoff`), half of it jittered.
    pub fn next_delay(&mut self) -> Duration {
        let poll_interval = Duration::from_millis(self.settings.poll_interval_ms.unsigned_abs());
        if self.failures == 0 {
            return if self.caught_up {
                poll_interval
            } else {
                Duration::ZERO
            };
        }
        let base = poll_interval
            .saturating_mul(1 << (self.failures - 1).min(16))
            .min(Duration::from_millis(
                self.settings.max_backoff_ms.unsigned_abs(),
            ));
        // xorshift64: enough to spread retries, no dependency needed.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let jitter = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        base / 2 + base.mul_f64(jitter / 2.0)
    }
}

#[cfg(test)]
mod tests;
