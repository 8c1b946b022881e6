//! An in-memory CloudWatch Logs for the poller's unit tests: a log group
//! whose events become visible at their ingestion time, served in pages,
//! with errors that can be queued, and a record of every call made.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::api::{
    ApiError, DESCRIBE_LOG_STREAMS, EventsPage, FILTER_LOG_EVENTS, FilterRequest, LogEvent,
    LogsApi, MAX_STREAMS_PER_CALL, StreamsPage,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Describe,
    Filter(FilterRequest),
}

#[derive(Default)]
struct State {
    /// Every event of the log group, visible once `now_ms >= ingestion_time_ms`.
    events: Vec<LogEvent>,
    /// Streams that exist even without a visible event.
    streams: Vec<String>,
    now_ms: i64,
    page_size: usize,
    /// Stream names per DescribeLogStreams page (AWS: 50); `None`, all in one.
    streams_per_page: Option<usize>,
    /// Errors returned by the next calls, in order, before any success.
    failures: VecDeque<ApiError>,
    /// After this many more successful filter calls, one fails.
    fail_after: Option<(usize, ApiError)>,
    calls: Vec<Call>,
    next_id: u64,
    /// Empty pages (with a `nextToken`) served before each real page, as
    /// AWS does while it searches.
    empty_pages: usize,
}

/// Clones share one log group, so a test keeps a handle while the poller
/// owns another.
#[derive(Clone)]
pub struct FakeLogs {
    state: Arc<Mutex<State>>,
}

impl FakeLogs {
    pub fn new(page_size: usize) -> Self {
        let state = State {
            page_size,
            ..State::default()
        };
        Self {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// Serves DescribeLogStreams in pages of `per_page` names, as AWS does.
    pub fn set_streams_per_page(&self, per_page: usize) {
        self.state.lock().unwrap().streams_per_page = Some(per_page.max(1));
    }

    /// Sets CloudWatch's clock: events ingested after it are not visible yet.
    pub fn set_now(&self, now_ms: i64) {
        self.state.lock().unwrap().now_ms = now_ms;
    }

    pub fn create_stream(&self, stream: &str) {
        self.state.lock().unwrap().streams.push(stream.to_owned());
    }

    /// Adds an event with timestamp `timestamp_ms` that lands at
    /// `ingestion_time_ms`; returns its id.
    pub fn put(&self, stream: &str, timestamp_ms: i64, ingestion_time_ms: i64) -> String {
        let mut s = self.state.lock().unwrap();
        s.next_id += 1;
        let n = s.next_id;
        let event_id = format!("{n:056}");
        s.events.push(LogEvent {
            stream: stream.to_owned(),
            event_id: event_id.clone(),
            timestamp_ms,
            ingestion_time_ms,
            message: format!("record {n}"),
        });
        event_id
    }

    pub fn fail_next(&self, err: ApiError) {
        self.state.lock().unwrap().failures.push_back(err);
    }

    /// Lets `ok_calls` more `FilterLogEvents` calls succeed, then fails one.
    pub fn fail_filter_after(&self, ok_calls: usize, err: ApiError) {
        self.state.lock().unwrap().fail_after = Some((ok_calls, err));
    }

    /// Serves `n` empty pages that still carry a `nextToken` before each
    /// page with events.
    pub fn set_empty_pages(&self, n: usize) {
        self.state.lock().unwrap().empty_pages = n;
    }

    /// Calls made so far, and forgets them.
    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.state.lock().unwrap().calls)
    }

    pub fn filter_calls(calls: &[Call]) -> Vec<&FilterRequest> {
        calls
            .iter()
            .filter_map(|c| match c {
                Call::Filter(r) => Some(r),
                Call::Describe => None,
            })
            .collect()
    }

    fn describe(&self, _log_group: &str) -> Result<Vec<String>, ApiError> {
        let mut s = self.state.lock().unwrap();
        s.calls.push(Call::Describe);
        if let Some(err) = s.failures.pop_front() {
            return Err(err);
        }
        let now = s.now_ms;
        let mut names: Vec<String> = s
            .events
            .iter()
            .filter(|e| e.ingestion_time_ms <= now)
            .map(|e| e.stream.clone())
            .chain(s.streams.iter().cloned())
            .filter(|n| n.starts_with("eni-"))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn filter(&self, req: &FilterRequest) -> Result<EventsPage, ApiError> {
        let mut s = self.state.lock().unwrap();
        s.calls.push(Call::Filter(req.clone()));
        if let Some(err) = s.failures.pop_front() {
            return Err(err);
        }
        match s.fail_after.take() {
            Some((0, err)) => return Err(err),
            Some((n, err)) => s.fail_after = Some((n - 1, err)),
            None => {}
        }
        if req.stream_names.is_empty() || req.stream_names.len() > MAX_STREAMS_PER_CALL {
            return Err(ApiError::Fatal {
                operation: FILTER_LOG_EVENTS,
                message: format!("{} stream names", req.stream_names.len()),
            });
        }
        let now = s.now_ms;
        let mut matching: Vec<&LogEvent> = s
            .events
            .iter()
            .filter(|e| {
                e.ingestion_time_ms <= now
                    && (req.start_ms..=req.end_ms).contains(&e.timestamp_ms)
                    && req.stream_names.contains(&e.stream)
            })
            .collect();
        matching.sort_by(|a, b| (a.timestamp_ms, &a.event_id).cmp(&(b.timestamp_ms, &b.event_id)));
        // The token is `<empty pages served>:<offset of the next page>`.
        let (served, offset): (usize, usize) = req.next_token.as_deref().map_or((0, 0), |t| {
            let (served, offset) = t.split_once(':').unwrap();
            (served.parse().unwrap(), offset.parse().unwrap())
        });
        if served < s.empty_pages {
            let next_token = Some(format!("{}:{offset}", served + 1));
            return Ok(EventsPage {
                events: Vec::new(),
                next_token,
            });
        }
        let end = (offset + s.page_size).min(matching.len());
        let events = matching[offset..end].iter().map(|e| (*e).clone()).collect();
        let next_token = (end < matching.len()).then(|| format!("0:{end}"));
        Ok(EventsPage { events, next_token })
    }
}

impl LogsApi for FakeLogs {
    /// Every stream in one page, or in pages of `set_streams_per_page`
    /// (the token: where the next page starts).
    async fn interface_streams_page(
        &self,
        log_group: &str,
        next_token: Option<String>,
    ) -> Result<StreamsPage, ApiError> {
        let names = self.describe(log_group)?;
        let Some(per_page) = self.state.lock().unwrap().streams_per_page else {
            return Ok(StreamsPage {
                names,
                next_token: None,
            });
        };
        let from = next_token
            .and_then(|token| token.parse().ok())
            .unwrap_or(0usize)
            .min(names.len());
        let to = (from + per_page).min(names.len());
        Ok(StreamsPage {
            names: names[from..to].to_vec(),
            next_token: (to < names.len()).then(|| to.to_string()),
        })
    }

    async fn filter_log_events(&self, req: &FilterRequest) -> Result<EventsPage, ApiError> {
        self.filter(req)
    }
}

pub fn throttled() -> ApiError {
    ApiError::Throttled {
        operation: FILTER_LOG_EVENTS,
        message: "Rate exceeded".into(),
    }
}

pub fn expired_token() -> ApiError {
    ApiError::ExpiredToken {
        operation: FILTER_LOG_EVENTS,
        message: "The given nextToken has expired".into(),
    }
}

pub fn describe_unavailable() -> ApiError {
    ApiError::Retriable {
        operation: DESCRIBE_LOG_STREAMS,
        message: "service unavailable".into(),
    }
}
