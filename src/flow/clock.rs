//! DESIGN's wall-clock watermark, as a pure function: in `serve`, an
//! interface's watermark also advances with the wall clock, less the
//! expected delivery delay, so an interface that falls silent still gets its
//! pending sessions decided — but no earlier than a record still on its way
//! could arrive.

/// The time (Unix seconds) up to which every record has arrived, as far as
/// the exporter can tell, at wall-clock `now`: `now` less the largest
/// measured delivery delay (record `end` to ingestion; `None` before any
/// record was read) and one poll interval (a record ingested just after a
/// poll is read a poll later). The delay is capped at `lookback`: a record
/// with a bogus old `end` must not hold every verdict back, and records
/// later than that are not read anyway.
pub fn wall_clock_watermark(
    now: u64,
    delivery_delay: Option<u64>,
    poll_interval: u64,
    lookback: u64,
) -> u64 {
    let delay = delivery_delay.unwrap_or(0).min(lookback);
    now.saturating_sub(delay.saturating_add(poll_interval))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trails_the_clock_by_the_delivery_delay_and_one_poll() {
        assert_eq!(wall_clock_watermark(10_000, Some(300), 30, 1200), 9_670);
        assert_eq!(wall_clock_watermark(10_000, None, 30, 1200), 9_970);
    }

    #[test]
    fn a_bogus_delay_is_capped_at_lookback() {
        assert_eq!(
            wall_clock_watermark(10_000, Some(u64::MAX), 30, 1200),
            8_770
        );
        assert_eq!(wall_clock_watermark(100, Some(1200), 30, 1200), 0);
    }
}
