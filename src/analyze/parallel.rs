//! `analyze` on every core, with the results of the single-threaded path.
//!
//! Sessions never cross interfaces, so the work is sharded by interface:
//! one thread (the caller's) reads the files and routes each line, by the
//! `interface-id` column, to one of N workers; each worker runs its own
//! [`Pipeline`] (parsing, filtering, counting, correlation) over the lines
//! of its interfaces, in the order they were read. Every interface thus
//! sees exactly the records, in exactly the order, of the single-threaded
//! path: its watermark and rule 5's order of arrival are the same, and so
//! are the verdicts. The workers' summaries are added up at the end.
//!
//! What is not per interface is kept equal by construction: header lines
//! go to every worker (each switches format as the single pipeline would,
//! and none counts them); a line with no interface column to route by
//! (malformed) is counted by one worker, once. Text files only (plain or
//! gzip): other layouts and stdin take the single-threaded path. Memory stays
//! bounded: batches are small and the channels to the workers are bounded,
//! so the reader waits for a busy worker instead of buffering the file.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread;

use flate2::read::MultiGzDecoder;
use rustc_hash::FxHashMap;

use crate::flow::{Field, FormatChoice, LineSplitter, LogFormat, Summary};
use crate::input::ahead::GunzipAhead;
use crate::input::{self, InputError, InputFormat, Origin};
use crate::report::ReportRequest;

/// Lines are handed over in batches of about this many bytes.
const BATCH_BYTES: usize = 64 << 10;
/// Batches in flight per worker: what the reader may run ahead.
const BATCHES_IN_FLIGHT: usize = 8;
const READ_CHUNK: usize = 1 << 20;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// As much as `input::detect` looks at.
const SNIFF_BYTES: u64 = 4096;

/// What the reader tells a worker.
enum Message {
    /// A new input starts; records without an `interface-id` belong to
    /// this interface (named by the file's place), or `-`.
    BeginInput { interface: String },
    /// A header line (every worker switches format as the single
    /// pipeline would); at the start of an input without one, a header
    /// line of the default format, which is what the single pipeline
    /// switches to on an input's first line.
    Header(Vec<u8>),
    /// Lines, each ending with `\n`.
    Lines(Vec<u8>),
}

/// Whether every file is flow-log text (plain or gzip), which is what
/// the parallel path reads; other layouts (JSON, exports, Parquet) and
/// stdin take the single-threaded path.
pub fn applies(paths: &[PathBuf], input_format: InputFormat) -> bool {
    paths.iter().all(|path| {
        path != Path::new("-")
            && match input_format {
                InputFormat::Text => true,
                InputFormat::Auto => is_text(path).unwrap_or(false),
                _ => false,
            }
    })
}

fn is_text(path: &Path) -> io::Result<bool> {
    let mut head = Vec::new();
    File::open(path)?.take(SNIFF_BYTES).read_to_end(&mut head)?;
    if head.starts_with(input::parquet::MAGIC) {
        return Ok(false);
    }
    if head.starts_with(&GZIP_MAGIC) {
        let mut plain = Vec::new();
        // A gzip member too short to give SNIFF_BYTES still tells its layout.
        let _ = MultiGzDecoder::new(File::open(path)?)
            .take(SNIFF_BYTES)
            .read_to_end(&mut plain);
        head = plain;
    }
    Ok(input::detect(&head) == InputFormat::Text)
}

/// Analyzes text files with `workers` threads (at least 2) besides the
/// reader, reporting bytes read from disk to `progress`.
pub fn analyze(
    paths: &[PathBuf],
    report: &ReportRequest,
    workers: usize,
    progress: &dyn Fn(u64),
) -> Result<Summary, InputError> {
    let workers = workers.max(2);
    // The bound on open sessions is the whole process's: each worker holds
    // its share. Below the bound results are those of the single thread;
    // past it, which pending sessions are decided early depends on the
    // shards (`--threads 1` evicts exactly as the exporter does).
    let mut shard = report.clone();
    shard.settings.max_open_sessions = report.settings.max_open_sessions.div_ceil(workers);
    let report = &shard;
    thread::scope(|scope| {
        let mut senders = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (sender, receiver) = sync_channel(BATCHES_IN_FLIGHT);
            senders.push(sender);
            handles.push(scope.spawn(move || work(report, receiver)));
        }
        let mut router = Router::new(&report.format, senders);
        let mut read = Ok(());
        for path in paths {
            read = router
                .feed_path(path, progress)
                .map_err(|source| InputError {
                    path: path.clone(),
                    source,
                });
            if read.is_err() {
                break;
            }
        }
        router.flush_all();
        // Dropping the senders ends the workers' input.
        drop(router);
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

/// One worker: a whole pipeline over the lines of its interfaces.
fn work(report: &ReportRequest, lines: Receiver<Message>) -> Summary {
    let (mut pipeline, mut summary) = report.start();
    let mut interface = String::from("-");
    for message in lines {
        match message {
            Message::BeginInput { interface: named } => {
                pipeline.begin_input();
                interface = named;
            }
            Message::Header(header) => {
                pipeline.push_event(&header, None, &interface, &mut summary);
            }
            Message::Lines(batch) => {
                let mut start = 0;
                for newline in memchr::memchr_iter(b'\n', &batch) {
                    pipeline.push_event(&batch[start..newline], None, &interface, &mut summary);
                    start = newline + 1;
                }
            }
        }
    }
    report.finish(pipeline, summary)
}

/// Reads inputs and sends each line to the worker of its interface.
struct Router {
    choice: FormatChoice,
    /// The column of `interface-id` in the format lines are read with.
    interface_column: Option<usize>,
    at_input_start: bool,
    /// The interface of records that name none (`-`, or no such column).
    fallback_interface: Box<[u8]>,
    workers: Vec<SyncSender<Message>>,
    batches: Vec<Vec<u8>>,
    /// Each interface's worker: the next worker for each new interface,
    /// so a few interfaces still spread over every worker.
    assigned: FxHashMap<Box<[u8]>, usize>,
    next_worker: usize,
    default_header: Vec<u8>,
}

impl Router {
    fn new(choice: &FormatChoice, workers: Vec<SyncSender<Message>>) -> Router {
        let default = LogFormat::default_v2();
        let default_header = default
            .fields()
            .iter()
            .map(Field::name)
            .collect::<Vec<_>>()
            .join(" ")
            .into_bytes();
        let format = match choice {
            FormatChoice::Auto => default,
            FormatChoice::Fixed(format) => format.clone(),
        };
        Router {
            choice: choice.clone(),
            interface_column: interface_column(&format),
            at_input_start: true,
            fallback_interface: Box::from(&b"-"[..]),
            batches: vec![Vec::with_capacity(BATCH_BYTES); workers.len()],
            workers,
            assigned: FxHashMap::default(),
            next_worker: 0,
            default_header,
        }
    }

    /// One text file, plain or gzip, as one input.
    fn feed_path(&mut self, path: &Path, progress: &dyn Fn(u64)) -> io::Result<()> {
        let file = Counting {
            inner: File::open(path)?,
            progress,
        };
        let mut buffered = BufReader::with_capacity(READ_CHUNK, file);
        // gzip is decompressed on a thread of its own, beside the routing.
        let mut reader: Box<dyn Read + '_> = if buffered.fill_buf()?.starts_with(&GZIP_MAGIC) {
            Box::new(GunzipAhead::new(File::open(path)?, progress))
        } else {
            Box::new(buffered)
        };
        let origin = Origin::of_path(path);
        self.fallback_interface = origin.interface().as_bytes().into();
        self.at_input_start = true;
        self.flush_all();
        for worker in &self.workers {
            // A worker gone means it panicked: joining it reports that.
            let _ = worker.send(Message::BeginInput {
                interface: origin.interface().to_string(),
            });
        }
        let mut buffer = vec![0u8; READ_CHUNK];
        let mut splitter = LineSplitter::default();
        loop {
            let read = match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            splitter.push(&buffer[..read], |line| self.route(line));
        }
        splitter.finish(|line| self.route(line));
        Ok(())
    }

    fn route(&mut self, line: &[u8]) {
        let line = line.trim_ascii();
        if line.is_empty() {
            return;
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
            self.broadcast_header(line);
            return;
        }
        if starts_input {
            if let FormatChoice::Auto = self.choice {
                self.interface_column = interface_column(&LogFormat::default_v2());
            }
            let default_header = std::mem::take(&mut self.default_header);
            self.broadcast_header(&default_header);
            self.default_header = default_header;
        }
        let worker = self.worker_of(line);
        let batch = &mut self.batches[worker];
        batch.extend_from_slice(line);
        batch.push(b'\n');
        if batch.len() >= BATCH_BYTES {
            self.flush(worker);
        }
    }

    /// Every worker gets the header line, after the lines before it.
    fn broadcast_header(&mut self, header: &[u8]) {
        self.flush_all();
        for worker in &self.workers {
            let _ = worker.send(Message::Header(header.to_vec()));
        }
    }

    fn worker_of(&mut self, line: &[u8]) -> usize {
        // Fields as the record parser splits them.
        let named = self.interface_column.and_then(|column| {
            line.split(u8::is_ascii_whitespace)
                .filter(|token| !token.is_empty())
                .nth(column)
        });
        let interface = match named {
            Some(interface) if interface != b"-" => interface,
            Some(_) => &self.fallback_interface[..],
            // Too few fields: malformed, counted by any one worker.
            None if self.interface_column.is_some() => return 0,
            None => &self.fallback_interface[..],
        };
        if let Some(&worker) = self.assigned.get(interface) {
            return worker;
        }
        let worker = self.next_worker;
        self.next_worker = (self.next_worker + 1) % self.workers.len();
        self.assigned.insert(interface.into(), worker);
        worker
    }

    fn flush(&mut self, worker: usize) {
        if self.batches[worker].is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.batches[worker], Vec::with_capacity(BATCH_BYTES));
        let _ = self.workers[worker].send(Message::Lines(batch));
    }

    fn flush_all(&mut self) {
        for worker in 0..self.workers.len() {
            self.flush(worker);
        }
    }
}

fn interface_column(format: &LogFormat) -> Option<usize> {
    format
        .fields()
        .iter()
        .position(|field| *field == Field::InterfaceId)
}

/// Reports every read's size.
struct Counting<'a, R> {
    inner: R,
    progress: &'a dyn Fn(u64),
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buffer)?;
        (self.progress)(read as u64);
        Ok(read)
    }
}
