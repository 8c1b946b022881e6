//! Reading flow-log files (plain or gzip, or stdin) into a pipeline.
//!
//! Input is streamed in fixed-size chunks: memory does not grow with the
//! size of a file.

use std::fs::File;
use std::io::{self, BufReader, IsTerminal, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use indicatif::{ProgressBar, ProgressStyle};

use crate::flow::{LineSplitter, Observer, Pipeline};

const CHUNK: usize = 1 << 20;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// A file that could not be read, named.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct InputError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Opens a flow-log file (`-` for stdin), gunzipping it when it is gzip,
/// advancing `progress` by the bytes read from disk.
fn open_with_progress(
    path: &Path,
    progress: Option<&ProgressBar>,
) -> Result<Box<dyn Read>, InputError> {
    let named = |source| InputError {
        path: path.to_path_buf(),
        source,
    };
    let raw: Box<dyn Read> = if path == Path::new("-") {
        Box::new(io::stdin().lock())
    } else {
        let file = File::open(path).map_err(named)?;
        match progress {
            Some(bar) => Box::new(bar.wrap_read(file)),
            None => Box::new(file),
        }
    };
    let mut buffered = BufReader::with_capacity(CHUNK, raw);
    let head = io::BufRead::fill_buf(&mut buffered).map_err(named)?;
    if head.starts_with(&GZIP_MAGIC) {
        Ok(Box::new(MultiGzDecoder::new(buffered)))
    } else {
        Ok(Box::new(buffered))
    }
}

/// Feeds every line of `reader` to the pipeline, as one input.
pub fn feed(
    reader: &mut dyn Read,
    pipeline: &mut Pipeline,
    observer: &mut impl Observer,
) -> io::Result<()> {
    let mut buffer = vec![0u8; CHUNK];
    let mut splitter = LineSplitter::default();
    pipeline.begin_input();
    loop {
        let read = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        splitter.push(&buffer[..read], |line| {
            pipeline.push_line(line, None, observer);
        });
    }
    splitter.finish(|line| {
        pipeline.push_line(line, None, observer);
    });
    Ok(())
}

/// Feeds files in order, with a progress bar on a terminal.
pub fn feed_files(
    paths: &[PathBuf],
    pipeline: &mut Pipeline,
    observer: &mut impl Observer,
) -> Result<(), InputError> {
    let progress = progress_bar(paths);
    for path in paths {
        let named = |source| InputError {
            path: path.clone(),
            source,
        };
        let mut reader = open_with_progress(path, progress.as_ref())?;
        feed(&mut reader, pipeline, observer).map_err(named)?;
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    Ok(())
}

/// A bar over the total size when stderr is a terminal and the input is
/// long enough to wait for.
fn progress_bar(paths: &[PathBuf]) -> Option<ProgressBar> {
    if !io::stderr().is_terminal() {
        return None;
    }
    let total: u64 = paths
        .iter()
        .filter_map(|path| std::fs::metadata(path).ok())
        .map(|metadata| metadata.len())
        .sum();
    if total < 16 * CHUNK as u64 {
        return None;
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    Some(bar)
}
