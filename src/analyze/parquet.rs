//! `analyze` of Parquet files on every core, with the results of the
//! single-threaded path, as [`super::parallel`] does for text.
//!
//! One thread (the caller's) decodes the file, a batch of rows at a time
//! ([`parquet::Rows`]: inflating pages, decoding dictionaries, strings
//! copied into flat buffers), deals each row to a worker by its interface,
//! and hands every batch, shared, to each of N workers. Each worker builds
//! the records of the rows dealt to it from their typed values and runs
//! its own [`crate::flow::Pipeline`] over them, in file order. Every
//! interface thus sees exactly the records, in exactly the order, of the
//! single-threaded path (its watermark and rule 5's order of arrival), and
//! so gets the same verdicts; the workers' summaries are added up at the
//! end.
//!
//! Decoding happens once, on the reader; building records (parsing
//! addresses, checking values) and correlating, most of the work, are
//! shared out. (Every worker decoding the whole file, tried before,
//! repeated the decoding and was slower than one thread.) Memory stays
//! bounded: batches are small, reused, and the channels bounded, so the
//! reader waits for a busy worker instead of decoding the file ahead.

use std::collections::VecDeque;
use std::fs::File;
use std::hash::Hasher;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread;

use crate::flow::{LogFormat, RecordParser, Summary};
use crate::input::parquet::{self, Batch, Rows};
use crate::input::{InputError, InputFormat, Origin};
use crate::report::ReportRequest;

/// Batches in flight per worker: what the reader may run ahead.
const BATCHES_IN_FLIGHT: usize = 8;

/// What the reader tells every worker.
enum Message {
    /// A new file starts, in this format (its schema); rows without an
    /// interface belong to `interface` (named by the file's place), or `-`.
    BeginInput {
        format: LogFormat,
        interface: String,
    },
    /// The file's next rows, decoded, shared by all workers.
    Rows(Arc<Dealt>),
}

/// Whether every file is Parquet (and none is stdin).
pub fn applies(paths: &[PathBuf], input_format: InputFormat) -> bool {
    paths.iter().all(|path| {
        path != Path::new("-")
            && match input_format {
                InputFormat::Parquet => true,
                InputFormat::Auto => is_parquet(path).unwrap_or(false),
                _ => false,
            }
    })
}

fn is_parquet(path: &Path) -> io::Result<bool> {
    let mut magic = Vec::new();
    File::open(path)?.take(4).read_to_end(&mut magic)?;
    Ok(magic == parquet::MAGIC)
}

/// Analyzes Parquet files with `workers` threads (at least 2) besides the
/// reader, reporting bytes read to `progress`.
pub fn analyze(
    paths: &[PathBuf],
    report: &ReportRequest,
    workers: usize,
    progress: &dyn Fn(u64),
) -> Result<Summary, InputError> {
    let workers = workers.clamp(2, usize::from(UNASSIGNED));
    // Each worker holds its share of the bound on open sessions, as on
    // the text path.
    let mut shard = report.clone();
    shard.settings.max_open_sessions = report.settings.max_open_sessions.div_ceil(workers);
    let report = &shard;
    thread::scope(|scope| {
        let mut senders = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for index in 0..workers {
            let (sender, receiver) = sync_channel(BATCHES_IN_FLIGHT);
            senders.push(sender);
            handles.push(scope.spawn(move || work(report, index, receiver)));
        }
        let mut reader = Reader {
            dealer: Dealer::new(workers),
            sent: VecDeque::new(),
        };
        let mut read = Ok(());
        for path in paths {
            read = feed_path(path, &senders, &mut reader, progress).map_err(|source| InputError {
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

/// One Parquet file: its rows, decoded and dealt, to every worker.
fn feed_path(
    path: &Path,
    workers: &[SyncSender<Message>],
    reader: &mut Reader,
    progress: &dyn Fn(u64),
) -> io::Result<()> {
    let mut rows = Rows::open(File::open(path)?)?;
    let interface = Origin::of_path(path).interface().to_string();
    broadcast(workers, || Message::BeginInput {
        format: rows.format().clone(),
        interface: interface.clone(),
    });
    loop {
        let mut shared = reader.spare();
        let dealt = Arc::get_mut(&mut shared).expect("held by the reader only");
        if !rows.read(&mut dealt.batch, progress)? {
            return Ok(());
        }
        dealt.owners.clear();
        for row in 0..dealt.batch.len() {
            let named = dealt.batch.interface(row).unwrap_or(interface.as_bytes());
            dealt.owners.push(reader.dealer.worker_of(named));
        }
        broadcast(workers, || Message::Rows(Arc::clone(&shared)));
        reader.sent.push_back(shared);
    }
}

/// What the reader keeps from file to file.
struct Reader {
    dealer: Dealer,
    /// Batches sent, oldest first: one the workers are done with is
    /// decoded into again, so batches are not allocated row group after
    /// row group.
    sent: VecDeque<Arc<Dealt>>,
}

impl Reader {
    /// A batch no worker holds any more, or a new one.
    fn spare(&mut self) -> Arc<Dealt> {
        if let Some(oldest) = self.sent.front_mut()
            && Arc::get_mut(oldest).is_some()
        {
            return self.sent.pop_front().expect("just seen");
        }
        if self.sent.len() > BATCHES_IN_FLIGHT + 2 {
            // All still in use: the channels bound them, let go of one.
            self.sent.pop_front();
        }
        Arc::default()
    }
}

/// A batch of rows and, for each row, the worker that counts it.
#[derive(Default)]
struct Dealt {
    batch: Batch,
    owners: Vec<u16>,
}

fn broadcast(workers: &[SyncSender<Message>], message: impl Fn() -> Message) {
    for worker in workers {
        // A worker gone means it panicked: joining it reports that.
        let _ = worker.send(message());
    }
}

/// One worker: a whole pipeline over the rows of its interfaces.
fn work(report: &ReportRequest, index: usize, input: Receiver<Message>) -> Summary {
    let (mut pipeline, mut summary) = report.start();
    let mut parser = RecordParser::new(LogFormat::default_v2());
    let mut interface = String::from("-");
    let index = index as u16;
    for message in input {
        match message {
            Message::BeginInput {
                format,
                interface: named,
            } => {
                pipeline.begin_input_with_format(format.clone());
                parser = RecordParser::new(format);
                interface = named;
            }
            Message::Rows(dealt) => {
                for (row, owner) in dealt.owners.iter().enumerate() {
                    if *owner == index {
                        let record = dealt.batch.build(row, &parser);
                        pipeline.push_record(record, None, &interface, &mut summary);
                    }
                }
            }
        }
    }
    report.finish(pipeline, summary)
}

/// Which worker counts an interface: the next worker for each new bucket
/// of interfaces (by a hash of the id), so a few interfaces still spread
/// over every worker. Interfaces that share a bucket share a worker,
/// which is all the sharding needs.
struct Dealer {
    assigned: Box<[u16; BUCKETS]>,
    next_worker: usize,
    workers: usize,
}

/// Buckets of interfaces: many more than interfaces seen at once, so few share.
const BUCKETS: usize = 1 << 12;
const UNASSIGNED: u16 = u16::MAX;

impl Dealer {
    fn new(workers: usize) -> Dealer {
        Dealer {
            assigned: Box::new([UNASSIGNED; BUCKETS]),
            next_worker: 0,
            workers,
        }
    }

    fn worker_of(&mut self, interface: &[u8]) -> u16 {
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
