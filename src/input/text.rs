//! Flow-log text: one record per line, as S3 delivers it (gunzipped by the
//! caller). Header lines, first or anywhere after (objects concatenated),
//! are the pipeline's to recognise.

use std::io::{self, Read};

use super::Origin;
use crate::flow::{LineSplitter, Observer, Pipeline};

/// Feeds every line of `reader` to the pipeline.
pub fn feed(
    mut reader: impl Read,
    origin: &Origin,
    pipeline: &mut Pipeline,
    observer: &mut impl Observer,
) -> io::Result<()> {
    let interface = origin.interface();
    let mut splitter = LineSplitter::default();
    super::each_chunk(&mut reader, |chunk| {
        splitter.push(chunk, |line| {
            pipeline.push_event(line, None, interface, observer);
        });
    })?;
    splitter.finish(|line| {
        pipeline.push_event(line, None, interface, observer);
    });
    Ok(())
}
