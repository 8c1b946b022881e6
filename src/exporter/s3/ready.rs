//! Making a downloaded object ready to count, on a thread of its own while
//! the object before it is counted: every object is checked to read to its
//! end before a record of it is counted, so a corrupt object (a gzip cut
//! short, a bad Parquet page) counts nothing, and its redelivery cannot
//! count half of it twice.
//!
//! * gzip (what S3 delivery writes for text) is decompressed here, once:
//!   reading the gzip to its end is the check, and the text is kept for
//!   counting while the texts held stay within `[s3] read_ahead_mib`. A
//!   text that does not fit is dropped once checked, and decompressed again
//!   while it is counted: memory stays bounded, whatever the objects hold.
//! * Plain text and CloudWatch export lines cannot fail to read: no check.
//! * JSON and Parquet fail part way (syntax, a bad page): they are read to
//!   their end through a pipeline that admits no record.

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use flate2::read::MultiGzDecoder;

use crate::flow::{FormatChoice, Pipeline, RecordFilter, Settings, Summary};
use crate::input::{self, GZIP_MAGIC, InputFormat, Origin, SNIFF_BYTES};

/// Decompressed text grows by at least this much at a time.
const GROWTH: usize = 1 << 20;

/// An object checked to read to its end: its bytes as downloaded, or its
/// decompressed text, which holds its share of the budget until dropped.
pub struct Ready {
    pub bytes: bytes::Bytes,
    _held: Option<Held>,
}

/// Bytes of decompressed text the objects read ahead may hold together.
#[derive(Clone)]
pub struct TextBudget(Arc<AtomicUsize>);

impl TextBudget {
    pub fn new(bytes: usize) -> TextBudget {
        TextBudget(Arc::new(AtomicUsize::new(bytes)))
    }

    /// Takes `bytes` from the budget, if that many are left.
    fn take(&self, bytes: usize) -> bool {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(bytes)
            })
            .is_ok()
    }

    /// What is left (tests).
    #[cfg(test)]
    fn left(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

/// A share of the budget, given back when dropped.
struct Held {
    budget: TextBudget,
    bytes: usize,
}

impl Held {
    fn grow(&mut self, bytes: usize) -> bool {
        let taken = self.budget.take(bytes);
        if taken {
            self.bytes += bytes;
        }
        taken
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.0.fetch_add(self.bytes, Ordering::AcqRel);
    }
}

/// Checks that `body` reads to its end; keeps its text when it is gzip
/// and the text fits the budget.
pub fn prepare(body: bytes::Bytes, budget: &TextBudget) -> io::Result<Ready> {
    if body.starts_with(input::parquet::MAGIC) {
        check_readable(&body)?;
        return Ok(Ready {
            bytes: body,
            _held: None,
        });
    }
    if !body.starts_with(&GZIP_MAGIC) {
        if needs_check(&body) {
            check_readable(&body)?;
        }
        return Ok(Ready {
            bytes: body,
            _held: None,
        });
    }
    match gunzip(&body, budget)? {
        Gunzipped::Held(text, held) => {
            if needs_check(&text) {
                check_readable(&text)?;
            }
            Ok(Ready {
                bytes: bytes::Bytes::from(text),
                _held: Some(held),
            })
        }
        Gunzipped::Checked { head } => {
            if needs_check(&head) {
                check_readable(&body)?;
            }
            Ok(Ready {
                bytes: body,
                _held: None,
            })
        }
    }
}

/// Whether text starting with `head` can fail part way: JSON (flow-log
/// text and export lines read whatever they hold).
fn needs_check(head: &[u8]) -> bool {
    let head = &head[..head.len().min(SNIFF_BYTES)];
    input::detect(head) == InputFormat::Json
}

enum Gunzipped {
    /// The whole text, within the budget.
    Held(Vec<u8>, Held),
    /// Read to its end, too large to keep: its first bytes.
    Checked { head: Vec<u8> },
}

/// Decompresses every gzip member of `body` (as counting does), keeping
/// the text while the budget allows.
fn gunzip(body: &[u8], budget: &TextBudget) -> io::Result<Gunzipped> {
    let mut decoder = MultiGzDecoder::new(body);
    let mut held = Held {
        budget: budget.clone(),
        bytes: 0,
    };
    let mut text: Vec<u8> = Vec::new();
    let mut keeping = true;
    let mut chunk = vec![0u8; GROWTH];
    let mut head = Vec::new();
    loop {
        let read = match decoder.read(&mut chunk) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if head.len() < SNIFF_BYTES {
            let more = read.min(SNIFF_BYTES - head.len());
            head.extend_from_slice(&chunk[..more]);
        }
        if !keeping {
            continue;
        }
        let needed = text.len() + read;
        if needed > text.capacity() {
            // Grown as a Vec would, and every byte of capacity charged.
            let capacity = needed.max(text.capacity() * 2).max(GROWTH);
            if held.grow(capacity - text.capacity()) {
                text.reserve_exact(capacity - text.len());
            } else {
                keeping = false;
                text = Vec::new();
                drop(std::mem::replace(
                    &mut held,
                    Held {
                        budget: budget.clone(),
                        bytes: 0,
                    },
                ));
                continue;
            }
        }
        text.extend_from_slice(&chunk[..read]);
    }
    Ok(if keeping {
        Gunzipped::Held(text, held)
    } else {
        Gunzipped::Checked { head }
    })
}

/// Reads the whole object through a pipeline that admits no record: every
/// decoding error shows, nothing is counted.
fn check_readable(body: &[u8]) -> io::Result<()> {
    let nothing = RecordFilter {
        since: Some(u64::MAX),
        ..RecordFilter::default()
    };
    let mut scratch = Pipeline::new(
        FormatChoice::Auto,
        Settings::default(),
        HashMap::new(),
        nothing,
    );
    let mut summary = Summary::new(scratch.correlator().service_ports().clone(), false);
    input::feed_reader(
        body,
        &Origin::default(),
        InputFormat::Auto,
        &mut scratch,
        &mut summary,
    )
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::GzEncoder;

    use super::*;

    fn gzip(text: &[u8]) -> bytes::Bytes {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(text).unwrap();
        encoder.finish().unwrap().into()
    }

    fn lines(count: usize) -> Vec<u8> {
        let line = "2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 20 4249 1418530010 1418530070 ACCEPT OK\n";
        line.repeat(count).into_bytes()
    }

    #[test]
    fn gzip_text_is_decompressed_once_and_held_within_the_budget() {
        let text = lines(1000);
        let budget = TextBudget::new(64 << 20);
        let ready = prepare(gzip(&text), &budget).unwrap();
        assert_eq!(ready.bytes, text);
        assert!(budget.left() < 64 << 20, "the held text is charged");
        drop(ready);
        assert_eq!(budget.left(), 64 << 20, "and given back once counted");
    }

    #[test]
    fn a_text_beyond_the_budget_is_checked_and_left_compressed() {
        let text = lines(20_000);
        let body = gzip(&text);
        let budget = TextBudget::new(1 << 20);
        let ready = prepare(body.clone(), &budget).unwrap();
        assert_eq!(ready.bytes, body, "counted from the gzip, as it came");
        assert_eq!(budget.left(), 1 << 20);
    }

    #[test]
    fn a_gzip_cut_short_does_not_read_held_or_not() {
        let body = gzip(&lines(20_000));
        let cut = body.slice(..body.len() - 100);
        for bytes in [64 << 20, 1 << 20] {
            let budget = TextBudget::new(bytes);
            assert!(prepare(cut.clone(), &budget).is_err());
            assert_eq!(budget.left(), bytes, "nothing held after a failure");
        }
    }

    #[test]
    fn json_is_read_to_its_end_before_it_counts() {
        let good =
            br#"{"events": [{"message": "2 1 eni-a 10.0.0.1 10.0.0.2 1 2 6 1 1 1 2 ACCEPT OK"}]}"#;
        let budget = TextBudget::new(64 << 20);
        assert!(prepare(gzip(good), &budget).is_ok());
        let broken = &good[..good.len() - 3];
        assert!(prepare(gzip(broken), &budget).is_err());
        assert!(prepare(bytes::Bytes::copy_from_slice(broken), &budget).is_err());
        assert_eq!(budget.left(), 64 << 20);
    }
}
