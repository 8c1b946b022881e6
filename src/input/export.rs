//! The files of a CloudWatch Logs export task (`CreateExportTask` to S3):
//! each line is the event's ISO-8601 timestamp, a space and the record. The
//! timestamp is the event time of records that carry no `start`/`end`; the
//! folder the file sits in is named after the log stream, and so gives the
//! interface when the format has no `interface-id`.

use std::io::{self, Read};
use std::time::UNIX_EPOCH;

use super::Origin;
use crate::flow::{LineSplitter, Observer, Pipeline};

/// Feeds every line of `reader` to the pipeline, its timestamp split off.
pub fn feed(
    mut reader: impl Read,
    origin: &Origin,
    pipeline: &mut Pipeline,
    observer: &mut impl Observer,
) -> io::Result<()> {
    let interface = origin.interface();
    let mut push = |line: &[u8]| {
        let (time, record) = split_timestamp(line);
        pipeline.push_event(record, time, interface, observer);
    };
    let mut splitter = LineSplitter::default();
    super::each_chunk(&mut reader, |chunk| splitter.push(chunk, &mut push))?;
    splitter.finish(&mut push);
    Ok(())
}

/// The line's timestamp in Unix seconds and the record after it; a line
/// without a timestamp is all record (and will be counted as what it is).
pub fn split_timestamp(line: &[u8]) -> (Option<u64>, &[u8]) {
    let line = line.trim_ascii_start();
    let Some(space) = memchr::memchr(b' ', line) else {
        return (None, line);
    };
    match parse_timestamp(&line[..space]) {
        Some(time) => (Some(time), &line[space + 1..]),
        None => (None, line),
    }
}

/// True when the content starts with an export line's timestamp.
pub fn starts_with_timestamp(head: &[u8]) -> bool {
    let token = head
        .split(|byte| byte.is_ascii_whitespace())
        .next()
        .unwrap_or_default();
    parse_timestamp(token).is_some()
}

fn parse_timestamp(token: &[u8]) -> Option<u64> {
    // `2014-12-14T04:07:50.000Z`: a date, `T`, a time; never a record's first field.
    if token.len() < 20 || token.get(10) != Some(&b'T') {
        return None;
    }
    let text = std::str::from_utf8(token).ok()?;
    let time = humantime::parse_rfc3339(text).ok()?;
    time.duration_since(UNIX_EPOCH)
        .ok()
        .map(|since| since.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timestamp_is_split_off() {
        let (time, record) =
            split_timestamp(b"2014-12-14T04:07:50.000Z 2 123456789010 eni-a ACCEPT OK");
        assert_eq!(time, Some(1_418_530_070));
        assert_eq!(record, b"2 123456789010 eni-a ACCEPT OK");
        let (time, record) = split_timestamp(b"2 123456789010 eni-a ACCEPT OK");
        assert_eq!(
            (time, record),
            (None, &b"2 123456789010 eni-a ACCEPT OK"[..])
        );
        assert!(starts_with_timestamp(b"2014-12-14T04:07:50Z 2 1"));
        assert!(!starts_with_timestamp(b"version account-id"));
    }
}
