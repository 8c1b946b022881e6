//! The largest value seen over a sliding window of time: how late records
//! have been arriving lately.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecentMax {
    window: i64,
    /// (time seen, value), oldest first.
    samples: VecDeque<(i64, i64)>,
}

impl RecentMax {
    /// Remembers values for `window` (in the unit of the times given).
    pub fn new(window: i64) -> RecentMax {
        RecentMax {
            window,
            samples: VecDeque::new(),
        }
    }

    /// Notes `value` at time `now` and forgets what is older than the window.
    pub fn record(&mut self, now: i64, value: Option<i64>) {
        if let Some(value) = value {
            self.samples.push_back((now, value));
        }
        while self
            .samples
            .front()
            .is_some_and(|&(seen, _)| now.saturating_sub(seen) > self.window)
        {
            self.samples.pop_front();
        }
    }

    pub fn max(&self) -> Option<i64> {
        self.samples.iter().map(|&(_, value)| value).max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_what_left_the_window() {
        let mut recent = RecentMax::new(60);
        recent.record(0, Some(300));
        recent.record(30, Some(10));
        assert_eq!(recent.max(), Some(300));
        recent.record(61, None);
        assert_eq!(recent.max(), Some(10));
        recent.record(200, None);
        assert_eq!(recent.max(), None);
    }
}
