//! Event times that cannot be right (DESIGN.md, "Robustness rules"): such a
//! record is counted malformed (`bad_time`) and never moves a watermark, so
//! one bad record cannot decide the pending sessions of its interface.
//!
//! Everywhere: `start` after `end`, or a time from 2^32 seconds on (after
//! 2106-02-07: a millisecond timestamp, or garbage). Open sessions keep
//! their times in 32 bits (issue 12, compact sessions).
//! In `serve`, where the wall clock is known: an event time more than an
//! hour after it. Offline, old files are normal and the wall clock says
//! nothing, so "too far ahead" is judged against the file itself: a time
//! more than an hour after the latest good time of its input (of every
//! interface in it, so the first record of an interface is judged too; not
//! of the record's interface alone: an interface silent for hours is
//! normal). Each input (file) starts afresh: files years apart are read in
//! one run. Such a record is only suspect — concatenated objects jump a day
//! ahead — and the next timed record settles it: near it, the input really
//! jumped and both are good; anywhere else, the suspect was bad.

/// How far ahead of the wall clock, or of the input, an event time may be.
pub const MAX_AHEAD_SECONDS: u64 = 3600;

/// 2^32 - 1 seconds is 2106-02-07 06:28:15 UTC; a millisecond timestamp of
/// any day since 1970-02-19 is larger. Every plausible time fits a `u32`
/// with one value to spare (a session's "no time").
pub const MAX_PLAUSIBLE_TIME: u64 = u32::MAX as u64;

/// What one record's times are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plausibility {
    Plausible,
    /// Cannot be right: counted `bad_time`.
    Impossible,
    /// Offline, more than an hour after every good time so far: the next
    /// timed record decides.
    Ahead(u64),
}

/// The references a record's times are judged against.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TimeCheck {
    wall_clock: Option<u64>,
    latest_good: Option<u64>,
}

impl TimeCheck {
    /// In `serve`: the wall clock, in Unix seconds. From then on times are
    /// judged against it rather than against the input.
    pub fn set_wall_clock(&mut self, now: u64) {
        self.wall_clock = Some(now);
    }

    pub fn judge(&self, start: Option<u64>, end: Option<u64>) -> Plausibility {
        if let (Some(start), Some(end)) = (start, end)
            && start > end
        {
            return Plausibility::Impossible;
        }
        let Some(time) = end.or(start) else {
            return Plausibility::Plausible;
        };
        if time >= MAX_PLAUSIBLE_TIME {
            return Plausibility::Impossible;
        }
        match (self.wall_clock, self.latest_good) {
            (Some(now), _) if time > now.saturating_add(MAX_AHEAD_SECONDS) => {
                Plausibility::Impossible
            }
            (Some(_), _) => Plausibility::Plausible,
            (None, Some(latest)) if time > latest.saturating_add(MAX_AHEAD_SECONDS) => {
                Plausibility::Ahead(time)
            }
            (None, _) => Plausibility::Plausible,
        }
    }

    /// Whether a record at `time` confirms a suspect one at `suspect`: the
    /// input really moved on.
    pub fn confirms(suspect: u64, time: u64) -> bool {
        time.abs_diff(suspect) <= MAX_AHEAD_SECONDS
    }

    /// A new input (file) begins: its times are its own.
    pub fn new_input(&mut self) {
        self.latest_good = None;
    }

    /// A record was taken with this event time.
    pub fn note_good(&mut self, time: u64) {
        self.latest_good = self.latest_good.max(Some(time));
    }
}

#[cfg(test)]
mod tests;
