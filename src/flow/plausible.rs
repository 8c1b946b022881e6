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
mod tests {
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
}
