//! `analyze` of Parquet files on every core, with the results of the
//! single-threaded path, as [`super::parallel`] does for text.
//!
//! Row groups are independent: as many decoding threads as workers each
//! decode every N-th row group of the file, a batch of rows at a time
//! ([`Rows`]: inflating pages, decoding dictionaries, strings
//! copied into flat buffers), a few batches ahead. The caller's thread
//! takes the batches in file order, deals each row to a worker by its
//! interface, and hands every batch, shared, to each of N workers. Each
//! worker builds the records of the rows dealt to it from their typed
//! values and runs its own [`crate::flow::Pipeline`] over them, in file
//! order. Every interface thus sees exactly the records, in exactly the
//! order, of the single-threaded path (its watermark and rule 5's order of
//! arrival), and so gets the same verdicts; the workers' summaries are
//! added up at the end.
//!
//! Each row group is decoded once; decoding, building records (parsing
//! addresses, checking values) and correlating are all shared out. (Every
//! worker decoding the whole file, tried before, repeated the decoding and
//! was slower than one thread; one decoding thread was the bottleneck.)
//! Memory stays bounded: batches are small and reused, and every channel
//! is bounded, so decoders wait for the dealing and the dealing for a busy
//! worker instead of decoding the file ahead.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread;

use super::parallel::{Dealer, on_workers, worker_count};
use crate::commands::report::ReportRequest;
use crate::flow::{LogFormat, RecordParser, Summary};
use crate::input::parquet::{Batch, Rows};
use crate::input::{InputError, Origin};

/// Batches in flight per worker: what the reader may run ahead.
const BATCHES_IN_FLIGHT: usize = 8;
/// Batches each decoding thread may run ahead of the dealing.
const DECODED_AHEAD: usize = 4;
/// Batches a decoding thread keeps to decode into again: more than can be
/// in flight, so that it rarely allocates.
const RECYCLED: usize = DECODED_AHEAD + BATCHES_IN_FLIGHT + 4;

/// What the reader tells every worker.
enum Message {
    /// A new file starts, in this format (its schema); rows without an
    /// interface belong to `interface` (named by the file's place), or `-`.
    BeginInput {
        format: LogFormat,
        interface: String,
    },
    /// The file's next rows, decoded, shared by all workers, and the
    /// worker each row is dealt to.
    Rows {
        batch: Arc<Batch>,
        owners: Arc<[u16]>,
    },
}

/// Analyzes Parquet files with `workers` threads (at least 2) besides the
/// reader, reporting bytes read to `progress`.
pub fn analyze(
    paths: &[PathBuf],
    report: &ReportRequest,
    workers: usize,
    progress: &dyn Fn(u64),
) -> Result<Summary, InputError> {
    let workers = worker_count(workers);
    let mut dealer = Dealer::new(workers);
    on_workers(
        paths,
        report,
        workers,
        BATCHES_IN_FLIGHT,
        work,
        |path, senders| feed_path(path, senders, &mut dealer, workers, progress),
    )
}

/// One Parquet file: its rows, decoded and dealt, to every worker. Row
/// groups are decoded `decoders` at a time, each by a thread of its own,
/// and dealt in file order.
fn feed_path(
    path: &Path,
    workers: &[SyncSender<Message>],
    dealer: &mut Dealer,
    decoders: usize,
    progress: &dyn Fn(u64),
) -> io::Result<()> {
    let rows = Rows::open(File::open(path)?)?;
    let interface = Origin::of_path(path).interface().to_string();
    broadcast(workers, || Message::BeginInput {
        format: rows.format().clone(),
        interface: interface.clone(),
    });
    let groups = rows.row_groups();
    let decoders = decoders.clamp(1, groups.max(1));
    thread::scope(|scope| {
        let mut decoded = Vec::with_capacity(decoders);
        let mut handles = Vec::with_capacity(decoders);
        for first in 0..decoders {
            let (send, receive) = sync_channel(DECODED_AHEAD);
            decoded.push(receive);
            handles.push(scope.spawn(move || decode(path, first, decoders, &send)));
        }
        let mut result = Ok(());
        'groups: for group in 0..groups {
            progress(rows.compressed_size(group));
            loop {
                let batch = match decoded[group % decoders].recv() {
                    Ok(Ok(Some(batch))) => batch,
                    Ok(Ok(None)) => break,
                    Ok(Err(error)) => {
                        result = Err(error);
                        break 'groups;
                    }
                    // The decoder ended early: it panicked (joining it
                    // reports that) or found fewer row groups (the file
                    // changed while read): never a silent end.
                    Err(_) => {
                        result = Err(io::Error::other("the file changed while it was read"));
                        break 'groups;
                    }
                };
                let owners: Arc<[u16]> = (0..batch.len())
                    .map(|row| {
                        dealer.worker_of(batch.interface(row).unwrap_or(interface.as_bytes()))
                    })
                    .collect();
                broadcast(workers, || Message::Rows {
                    batch: Arc::clone(&batch),
                    owners: Arc::clone(&owners),
                });
            }
        }
        // The decoders' next sends fail and they end.
        drop(decoded);
        for handle in handles {
            handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        }
        result
    })
}

/// One decoding thread: row groups `first`, `first + step`, … of the
/// file, each as its batches and then `None`; or the error that stopped it.
fn decode(path: &Path, first: usize, step: usize, send: &SyncSender<Decoded>) {
    let mut rows = match File::open(path).and_then(Rows::open) {
        Ok(rows) => rows,
        Err(error) => {
            let _ = send.send(Err(error));
            return;
        }
    };
    // Batches sent, oldest first: one the workers are done with is
    // decoded into again instead of allocating another.
    let mut sent: VecDeque<Arc<Batch>> = VecDeque::new();
    for group in (first..rows.row_groups()).step_by(step) {
        loop {
            let mut batch = match sent.front() {
                Some(oldest) if Arc::strong_count(oldest) == 1 => {
                    sent.pop_front().expect("just seen")
                }
                _ => Arc::default(),
            };
            let read = rows.read_group(group, Arc::get_mut(&mut batch).expect("held here only"));
            let message = match read {
                Ok(true) => {
                    sent.push_back(Arc::clone(&batch));
                    if sent.len() > RECYCLED {
                        // All still in use: let go of one.
                        sent.pop_front();
                    }
                    Ok(Some(batch))
                }
                Ok(false) => break,
                Err(error) => Err(error),
            };
            let failed = message.is_err();
            if send.send(message).is_err() || failed {
                return;
            }
        }
        if send.send(Ok(None)).is_err() {
            return;
        }
    }
}

/// What a decoding thread sends: a batch of rows, `None` at the end of a
/// row group, or why decoding stopped.
type Decoded = io::Result<Option<Arc<Batch>>>;

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
            Message::Rows { batch, owners } => {
                for (row, owner) in owners.iter().enumerate() {
                    if *owner == index {
                        let record = batch.build(row, &parser);
                        pipeline.push_record(record, None, &interface, &mut summary);
                    }
                }
            }
        }
    }
    report.finish(pipeline, summary)
}
