//! `analyze` of Parquet files on every core, with the results of the
//! single-threaded path. Parquet decodes column by column, a row group at
//! a time, so lines cannot be handed out as text's are ([`super::parallel`]);
//! instead every worker decodes the whole file and counts the rows of its
//! own interfaces ([`input::parquet::Shard`]): the interfaces are dealt in
//! the order the file first names them, alike in every worker, so each row
//! is counted once and each interface sees its rows in file order, as on
//! one thread. Decoding is repeated; building records, correlating and
//! counting, most of the work, are shared out.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::thread;

use crate::flow::Summary;
use crate::input::parquet::{self, Shard};
use crate::input::{InputError, InputFormat, Origin};
use crate::report::ReportRequest;

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

/// Analyzes Parquet files with `workers` threads (at least 2).
pub fn analyze(
    paths: &[PathBuf],
    report: &ReportRequest,
    workers: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Summary, InputError> {
    let workers = workers.max(2);
    // Each worker holds its share of the bound on open sessions, as on
    // the text path.
    let mut shard_report = report.clone();
    shard_report.settings.max_open_sessions = report.settings.max_open_sessions.div_ceil(workers);
    let report = &shard_report;
    let results: Vec<Result<Summary, InputError>> = thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|index| {
                let shard = Shard {
                    index,
                    count: workers,
                };
                scope.spawn(move || {
                    // One worker's bytes stand for all of them.
                    let progress = |bytes| {
                        if index == 0 {
                            progress(bytes)
                        }
                    };
                    work(paths, report, shard, &progress)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut total: Option<Summary> = None;
    for result in results {
        let summary = result?;
        match &mut total {
            Some(total) => total.merge(summary),
            None => total = Some(summary),
        }
    }
    let mut total = total.expect("at least two workers");
    total.sort_details();
    Ok(total)
}

/// One worker: every file, the rows of its interfaces.
fn work(
    paths: &[PathBuf],
    report: &ReportRequest,
    shard: Shard,
    progress: &dyn Fn(u64),
) -> Result<Summary, InputError> {
    let (mut pipeline, mut summary) = report.start();
    for path in paths {
        let read = File::open(path).and_then(|file| {
            parquet::feed_shard(
                file,
                &Origin::of_path(path),
                &mut pipeline,
                &mut summary,
                progress,
                shard,
            )
        });
        read.map_err(|source| InputError {
            path: path.clone(),
            source,
        })?;
    }
    Ok(report.finish(pipeline, summary))
}
