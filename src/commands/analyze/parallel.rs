//! `analyze` on every core, with the results of the single-threaded path.
//!
//! Sessions never cross interfaces, so the work is sharded by interface:
//! one thread (the caller's) reads the files (gunzipping them) and hands
//! every chunk of bytes, shared, to each of N workers. Each worker splits
//! every line but keeps only the header lines and the records of its
//! interfaces ([`LineShard`]: the `interface-id` column picks the worker),
//! and runs its own [`Pipeline`] (parsing, filtering, counting,
//! correlation) over them, in the order they were read. Every interface
//! thus sees exactly the records, in exactly the order, of the
//! single-threaded path: its watermark and rule 5's order of arrival are
//! the same, and so are the verdicts. The workers' summaries are added up
//! at the end.
//!
//! Why every worker splits every line: finding a line's interface costs a
//! fraction of parsing it, far less than one thread routing (and copying)
//! lines for all workers, and the reader then only reads. Every worker
//! sees the same lines in the same order, so each hands out interfaces to
//! workers exactly as the others do, without talking to them.
//!
//! What is not per interface is kept equal by construction: header lines
//! go to every worker's pipeline (each switches format as the single
//! pipeline would, and none counts them); a line with no interface column
//! to route by (malformed) is counted by one worker, once. Text files only
//! (plain or gzip): other layouts and stdin take the single-threaded path.
//! Memory stays bounded: chunks are small and the channels to the workers
//! are bounded, so the reader waits for a busy worker instead of buffering
//! the file.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread;

use flate2::read::MultiGzDecoder;
use std::hash::Hasher;

use crate::commands::report::ReportRequest;
use crate::flow::{Field, FormatChoice, LineSplitter, LogFormat, Pipeline, Summary};
use crate::input::ahead::GunzipAhead;
use crate::input::{self, Counting, InputError, InputFormat, Origin};

/// Input is handed to the workers in chunks of this many bytes: below
/// glibc's mmap threshold (`main.rs`), so chunks are reused, not mapped.
const CHUNK_BYTES: usize = 64 << 10;
/// Chunks in flight per worker: what the reader may run ahead.
const CHUNKS_IN_FLIGHT: usize = 16;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// As much as `input::detect` looks at.
const SNIFF_BYTES: u64 = 4096;

/// What the reader tells every worker.
enum Message {
    /// A new input starts; records without an `interface-id` belong to
    /// this interface (named by the file's place), or `-`.
    BeginInput { interface: String },
    /// The input's next bytes, as read (gunzipped), shared by all workers.
    Chunk(Arc<Vec<u8>>),
}

/// The layout every file has, when they share one that a parallel path
/// reads (flow-log text, plain or gzip: this module; Parquet:
/// [`super::parquet`]), by `--input-format` or by content. `None` for
/// stdin, other layouts (JSON, exports) and mixes: the single-threaded
/// path reads those.
pub fn shared_layout(paths: &[PathBuf], input_format: InputFormat) -> Option<InputFormat> {
    let layout_of = |path: &PathBuf| {
        if path == Path::new("-") {
            return None;
        }
        match input_format {
            InputFormat::Auto => detect_layout(path).ok(),
            forced => Some(forced),
        }
        .filter(|layout| matches!(layout, InputFormat::Text | InputFormat::Parquet))
    };
    let (first, rest) = paths.split_first()?;
    let layout = layout_of(first)?;
    rest.iter()
        .all(|path| layout_of(path) == Some(layout))
        .then_some(layout)
}

/// A file's layout by its first bytes (gunzipped), as `input::detect`
/// tells it.
fn detect_layout(path: &Path) -> io::Result<InputFormat> {
    let mut head = Vec::new();
    File::open(path)?.take(SNIFF_BYTES).read_to_end(&mut head)?;
    if head.starts_with(input::parquet::MAGIC) {
        return Ok(InputFormat::Parquet);
    }
    if head.starts_with(&GZIP_MAGIC) {
        let mut plain = Vec::new();
        // A gzip member too short to give SNIFF_BYTES still tells its layout.
        let _ = MultiGzDecoder::new(File::open(path)?)
            .take(SNIFF_BYTES)
            .read_to_end(&mut plain);
        head = plain;
    }
    Ok(input::detect(&head))
}

/// Analyzes text files with `workers` threads (at least 2) besides the
/// reader, reporting bytes read from disk to `progress`.
pub fn analyze(
    paths: &[PathBuf],
    report: &ReportRequest,
    workers: usize,
    progress: &dyn Fn(u64),
) -> Result<Summary, InputError> {
    let workers = worker_count(workers);
    on_workers(
        paths,
        report,
        workers,
        CHUNKS_IN_FLIGHT,
        |report, index, input| work(report, index, workers, input),
        |path, senders| feed_path(path, senders, progress),
    )
}

/// The workers used for `requested`: at least 2, and past 65,535 a bucket
/// of [`Dealer`] could not name one (nor would it help).
pub(super) fn worker_count(requested: usize) -> usize {
    requested.clamp(2, usize::from(UNASSIGNED))
}

/// Runs `workers` threads, each reading its messages from a channel of
/// `in_flight` and giving its [`Summary`] (`work(report, index, input)`),
/// while `feed` sends each path's input to them on the caller's thread;
/// the summaries are added up. A read error ends the input, and is
/// returned once the workers are done.
///
/// The bound on open sessions is the whole process's: each worker holds
/// its share. Below the bound, results are those of the single thread;
/// past it, which pending sessions are decided early depends on the
/// shards (`--threads 1` evicts exactly as the exporter does).
pub(super) fn on_workers<M: Send>(
    paths: &[PathBuf],
    report: &ReportRequest,
    workers: usize,
    in_flight: usize,
    work: impl Fn(&ReportRequest, usize, Receiver<M>) -> Summary + Sync,
    mut feed: impl FnMut(&Path, &[SyncSender<M>]) -> io::Result<()>,
) -> Result<Summary, InputError> {
    let mut shard = report.clone();
    shard.settings.max_open_sessions = report.settings.max_open_sessions.div_ceil(workers);
    let (report, work) = (&shard, &work);
    thread::scope(|scope| {
        let mut senders = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for index in 0..workers {
            let (sender, receiver) = sync_channel(in_flight);
            senders.push(sender);
            handles.push(scope.spawn(move || work(report, index, receiver)));
        }
        let mut read = Ok(());
        for path in paths {
            read = feed(path, &senders).map_err(|source| InputError {
                path: path.clone(),
                source,
            });
            if read.is_err() {
                break;
            }
        }
        // Dropping the senders ends the workers' input.
        drop(senders);
        let mut summaries = handles.into_iter().map(|handle| {
            handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        });
        read?;
        let mut total = summaries.next().expect("at least two workers");
        for summary in summaries {
            total.merge(summary);
        }
        total.sort_details();
        Ok(total)
    })
}

/// One text file, plain or gzip, as one input: its bytes to every worker.
fn feed_path(
    path: &Path,
    workers: &[SyncSender<Message>],
    progress: &dyn Fn(u64),
) -> io::Result<()> {
    let file = Counting {
        inner: File::open(path)?,
        progress,
    };
    let mut buffered = BufReader::with_capacity(CHUNK_BYTES, file);
    // gzip is inflated on a thread of its own, a few chunks ahead, so this
    // thread only hands chunks on.
    let mut reader: Box<dyn Read + '_> = if buffered.fill_buf()?.starts_with(&GZIP_MAGIC) {
        Box::new(GunzipAhead::new(File::open(path)?, progress))
    } else {
        Box::new(buffered)
    };
    let interface = Origin::of_path(path).interface().to_string();
    broadcast(workers, || Message::BeginInput {
        interface: interface.clone(),
    });
    loop {
        let mut chunk = Vec::with_capacity(CHUNK_BYTES);
        // Reads until the chunk is full or the input ends (retrying
        // interrupted reads), into the chunk's spare room: nothing zeroed.
        (&mut reader)
            .take(CHUNK_BYTES as u64)
            .read_to_end(&mut chunk)?;
        if chunk.is_empty() {
            return Ok(());
        }
        let chunk = Arc::new(chunk);
        broadcast(workers, || Message::Chunk(Arc::clone(&chunk)));
    }
}

fn broadcast(workers: &[SyncSender<Message>], message: impl Fn() -> Message) {
    for worker in workers {
        // A worker gone means it panicked: joining it reports that.
        let _ = worker.send(message());
    }
}

/// One worker: a whole pipeline over the lines of its interfaces.
fn work(report: &ReportRequest, index: usize, workers: usize, input: Receiver<Message>) -> Summary {
    let (pipeline, summary) = report.start();
    let mut worker = Worker {
        pipeline,
        summary,
        shard: LineShard::new(&report.format, index, workers),
        interface: String::from("-"),
    };
    let mut splitter = LineSplitter::default();
    for message in input {
        match message {
            Message::BeginInput { interface } => {
                // The last input's last line may have had no line ending.
                splitter.finish(|line| worker.line(line));
                worker.begin_input(interface);
            }
            Message::Chunk(chunk) => splitter.push(&chunk, |line| worker.line(line)),
        }
    }
    splitter.finish(|line| worker.line(line));
    report.finish(worker.pipeline, worker.summary)
}

struct Worker {
    pipeline: Pipeline,
    summary: Summary,
    shard: LineShard,
    /// The interface of records that name none, for this input.
    interface: String,
}

impl Worker {
    fn begin_input(&mut self, interface: String) {
        self.shard.begin_input(&interface);
        self.pipeline.begin_input();
        self.interface = interface;
    }

    /// Every line of the input: the pipeline gets the ones this worker takes.
    fn line(&mut self, line: &[u8]) {
        if self.shard.takes(line) {
            self.pipeline
                .push_event(line, None, &self.interface, &mut self.summary);
        }
    }
}

/// Which lines one worker takes: header lines (every worker switches
/// format as the single pipeline would, and none counts them) and the
/// records of its interfaces. Every worker sees every line, in order, so
/// all of them hand out interfaces alike without talking to each other.
struct LineShard {
    choice: FormatChoice,
    /// This worker.
    index: usize,
    /// The column of `interface-id` in the format lines are read with.
    interface_column: Option<usize>,
    at_input_start: bool,
    /// The interface of records that name none (`-`, or no such column).
    fallback_interface: Box<[u8]>,
    /// Which worker counts each interface.
    dealer: Dealer,
}

impl LineShard {
    fn new(choice: &FormatChoice, index: usize, workers: usize) -> LineShard {
        let format = match choice {
            FormatChoice::Auto => LogFormat::default_v2(),
            FormatChoice::Fixed(format) => format.clone(),
        };
        LineShard {
            choice: choice.clone(),
            index,
            interface_column: interface_column(&format),
            at_input_start: true,
            fallback_interface: Box::from(&b"-"[..]),
            dealer: Dealer::new(workers),
        }
    }

    fn begin_input(&mut self, fallback_interface: &str) {
        self.fallback_interface = fallback_interface.as_bytes().into();
        self.at_input_start = true;
    }

    /// Whether this worker's pipeline gets `line`.
    fn takes(&mut self, line: &[u8]) -> bool {
        let line = line.trim_ascii();
        if line.is_empty() {
            return false;
        }
        let starts_input = std::mem::take(&mut self.at_input_start);
        // As the pipeline tells a header line from a record.
        let header = if line[0].is_ascii_lowercase() {
            std::str::from_utf8(line)
                .ok()
                .and_then(LogFormat::from_header_line)
        } else {
            None
        };
        if let Some(format) = header {
            if let FormatChoice::Auto = self.choice {
                self.interface_column = interface_column(&format);
            }
            return true;
        }
        if starts_input && let FormatChoice::Auto = self.choice {
            // An input without a header line is in the default format.
            self.interface_column = interface_column(&LogFormat::default_v2());
        }
        self.worker_of(line) == self.index
    }

    fn worker_of(&mut self, line: &[u8]) -> usize {
        let named = self.interface_column.and_then(|column| field(line, column));
        let interface = match named {
            Some(interface) if interface != b"-" => interface,
            Some(_) => &self.fallback_interface[..],
            // Too few fields: malformed, counted by one worker.
            None if self.interface_column.is_some() => return 0,
            None => &self.fallback_interface[..],
        };
        usize::from(self.dealer.worker_of(interface))
    }
}

/// Which worker counts an interface: the next worker for each new bucket
/// of interfaces (by a hash of the id), so a few interfaces still spread
/// over every worker. Interfaces that share a bucket share a worker,
/// which is all the sharding needs: no id is compared or kept.
pub(super) struct Dealer {
    assigned: Box<[u16; BUCKETS]>,
    next_worker: usize,
    workers: usize,
}

/// Buckets of interfaces: many more than interfaces seen at once, so few share.
const BUCKETS: usize = 1 << 12;
const UNASSIGNED: u16 = u16::MAX;

impl Dealer {
    pub(super) fn new(workers: usize) -> Dealer {
        Dealer {
            assigned: Box::new([UNASSIGNED; BUCKETS]),
            next_worker: 0,
            workers,
        }
    }

    pub(super) fn worker_of(&mut self, interface: &[u8]) -> u16 {
        let mut hasher = rustc_hash::FxHasher::default();
        hasher.write(interface);
        let bucket = &mut self.assigned[(hasher.finish() >> 52) as usize];
        if *bucket == UNASSIGNED {
            *bucket = self.next_worker as u16;
            self.next_worker = (self.next_worker + 1) % self.workers;
        }
        *bucket
    }
}

/// Field `column` of a trimmed line, fields split as the record parser
/// splits them (runs of ASCII whitespace).
fn field(line: &[u8], column: usize) -> Option<&[u8]> {
    if line.is_empty() {
        return None;
    }
    let mut rest = line;
    for _ in 0..column {
        let end = token_end(rest);
        let next = rest[end..]
            .iter()
            .position(|byte| !byte.is_ascii_whitespace())?;
        rest = &rest[end + next..];
    }
    Some(&rest[..token_end(rest)])
}

/// Where the token at the start of `bytes` ends: its first ASCII
/// whitespace, or the end. Eight bytes at a time: finds the first byte at
/// most `b' '` (every ASCII whitespace is), then checks it is whitespace.
fn token_end(bytes: &[u8]) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let mut at = 0;
    while let Some(word) = bytes.get(at..at + 8) {
        let word = u64::from_le_bytes(word.try_into().expect("eight bytes"));
        // High bit set in the lowest byte below 0x21 (exact for the
        // lowest such byte; higher ones may be flagged by its borrow).
        let low = word.wrapping_sub(ONES * 0x21) & !word & HIGHS;
        if low == 0 {
            at += 8;
            continue;
        }
        let found = at + (low.trailing_zeros() / 8) as usize;
        if bytes[found].is_ascii_whitespace() {
            return found;
        }
        // A control byte inside the token: carry on byte by byte.
        at = found + 1;
        break;
    }
    at + bytes[at..]
        .iter()
        .position(u8::is_ascii_whitespace)
        .unwrap_or(bytes.len() - at)
}

fn interface_column(format: &LogFormat) -> Option<usize> {
    format
        .fields()
        .iter()
        .position(|field| *field == Field::InterfaceId)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_split_as_the_record_parser_splits_them() {
        let line = b"2 123456789010\t eni-a  10.0.0.1";
        for column in 0..5 {
            let expected = line
                .split(u8::is_ascii_whitespace)
                .filter(|token| !token.is_empty())
                .nth(column);
            assert_eq!(field(line, column), expected, "{column}");
        }
        assert_eq!(field(b"eni-a", 0), Some(&b"eni-a"[..]));
    }

    proptest::proptest! {
        /// Any bytes, any whitespace and control bytes: the same fields as
        /// splitting on ASCII whitespace.
        #[test]
        fn fields_agree_with_splitting_on_whitespace(
            line in proptest::collection::vec(proptest::prop_oneof![
                proptest::prelude::Just(b' '),
                proptest::prelude::Just(b'\t'),
                proptest::prelude::Just(0x0c_u8),
                proptest::prelude::Just(b'\r'),
                0u8..0x21,
                proptest::prelude::any::<u8>(),
                b'a'..=b'z',
            ], 0..60),
            column in 0usize..6,
        ) {
            let line = line.trim_ascii();
            let expected = line
                .split(u8::is_ascii_whitespace)
                .filter(|token| !token.is_empty())
                .nth(column);
            proptest::prop_assert_eq!(field(line, column), expected);
        }
    }
}
