//! Reading flow records from files, in every layout people hold them in,
//! into a pipeline: one module per layout.
//!
//! * [`text`]: plain or gzip text as S3 delivers it (header lines anywhere:
//!   objects concatenated with `zcat *.log.gz`);
//! * [`export`]: the files of a CloudWatch Logs export task, each line
//!   `<ISO-8601 timestamp> <record>`;
//! * [`json`]: what `aws logs filter-log-events` / `get-log-events` print,
//!   and CloudWatch Logs subscription payloads (`logEvents[]`);
//! * [`parquet`]: Parquet as S3 delivers it (typed columns, `_` names).
//!
//! The layout is found from the content (gzip magic, then the first bytes
//! and line) unless the caller forces one. Input is streamed: memory does
//! not grow with the size of a file. Readers read and nothing else: progress
//! goes to a callback, for the command line to draw a bar with.

pub mod ahead;
pub mod export;
pub mod json;
pub mod parquet;
pub mod text;

use std::fs::File;
use std::io::{self, Cursor, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use crate::flow::{Observer, Pipeline};

pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// Enough of a file to tell its layout: the first line of an export file
/// starts with a 24-byte timestamp.
pub const SNIFF_BYTES: usize = 4096;

/// How a file holds its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    /// Detect from the content.
    Auto,
    /// Flow-log lines, plain or gzip, with or without header lines.
    Text,
    /// A CloudWatch Logs export task's lines: `<ISO-8601 timestamp> <record>`.
    CloudwatchExport,
    /// AWS CLI `logs filter-log-events` / `get-log-events` output, or
    /// CloudWatch Logs subscription payloads (`logEvents[]`).
    Json,
    /// Parquet as S3 delivers it.
    Parquet,
}

/// A file that could not be read, named.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct InputError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Reads files in order, reporting the bytes read from disk to `progress`.
pub fn feed_files(
    paths: &[PathBuf],
    input_format: InputFormat,
    pipeline: &mut Pipeline,
    observer: &mut impl Observer,
    progress: &dyn Fn(u64),
) -> Result<(), InputError> {
    for path in paths {
        feed_path(path, input_format, pipeline, observer, progress).map_err(|source| {
            InputError {
                path: path.clone(),
                source,
            }
        })?;
    }
    Ok(())
}

/// Reads one file (`-` for stdin).
pub fn feed_path(
    path: &Path,
    input_format: InputFormat,
    pipeline: &mut Pipeline,
    observer: &mut impl Observer,
    progress: &dyn Fn(u64),
) -> io::Result<()> {
    let origin = Origin::of_path(path);
    if path == Path::new("-") {
        return feed_reader(
            io::stdin().lock(),
            &origin,
            input_format,
            pipeline,
            observer,
        );
    }
    let mut file = File::open(path)?;
    if is_parquet(&mut file, input_format)? {
        // Parquet reads from the end (its footer): the file itself, not a stream.
        return parquet::feed(file, &origin, pipeline, observer, progress);
    }
    let raw = Counting {
        inner: file,
        progress,
    };
    feed_reader(raw, &origin, input_format, pipeline, observer)
}

/// Forced, or the file starts with Parquet's magic; the file is left at its start.
fn is_parquet(file: &mut File, input_format: InputFormat) -> io::Result<bool> {
    use std::io::{Seek, SeekFrom};
    match input_format {
        InputFormat::Parquet => Ok(true),
        InputFormat::Auto => {
            let mut magic = [0u8; 4];
            let read = file.read(&mut magic)?;
            file.seek(SeekFrom::Start(0))?;
            Ok(read == 4 && &magic == parquet::MAGIC)
        }
        _ => Ok(false),
    }
}

/// What a file's place says about its records: an export task writes each
/// log stream's events under a folder named after the stream, and a stream
/// is named after its interface.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub stream: Option<String>,
}

impl Origin {
    pub fn of_path(path: &Path) -> Origin {
        let stream = path
            .parent()
            .and_then(Path::file_name)
            .and_then(|name| name.to_str())
            .filter(|name| name.starts_with("eni-"))
            .map(str::to_string);
        Origin { stream }
    }

    /// The interface the place names, or `-`.
    pub fn interface(&self) -> &str {
        self.stream
            .as_deref()
            .map_or("-", crate::source::cloudwatch::interface_of_stream)
    }
}

/// Reads one input from any reader: gunzips it when it is gzip, finds its
/// layout and feeds its records to the pipeline.
pub fn feed_reader(
    raw: impl Read,
    origin: &Origin,
    input_format: InputFormat,
    pipeline: &mut Pipeline,
    observer: &mut impl Observer,
) -> io::Result<()> {
    let (head, mut raw) = peek(raw)?;
    let parquet = match input_format {
        InputFormat::Auto => head.starts_with(parquet::MAGIC),
        forced => forced == InputFormat::Parquet,
    };
    if parquet {
        // Parquet needs the whole file (its footer comes last): in memory.
        let mut bytes = Vec::new();
        raw.read_to_end(&mut bytes)?;
        return parquet::feed(
            bytes::Bytes::from(bytes),
            origin,
            pipeline,
            observer,
            &|_| {},
        );
    }
    let mut reader: Box<dyn Read + '_> = if head.starts_with(&GZIP_MAGIC) {
        Box::new(MultiGzDecoder::new(raw))
    } else {
        Box::new(raw)
    };
    let layout = match input_format {
        InputFormat::Auto => {
            let (head, plain) = peek(reader)?;
            reader = Box::new(plain);
            detect(&head)
        }
        forced => forced,
    };
    pipeline.begin_input();
    match layout {
        InputFormat::Json => json::feed(reader, origin, pipeline, observer),
        InputFormat::CloudwatchExport => export::feed(reader, origin, pipeline, observer),
        InputFormat::Text | InputFormat::Auto | InputFormat::Parquet => {
            text::feed(reader, origin, pipeline, observer)
        }
    }
}

/// The layout of (decompressed) content from its first bytes.
pub fn detect(head: &[u8]) -> InputFormat {
    let start = head.trim_ascii_start();
    match start.first() {
        Some(b'{' | b'[') => InputFormat::Json,
        Some(_) if export::starts_with_timestamp(start) => InputFormat::CloudwatchExport,
        _ => InputFormat::Text,
    }
}

/// The first bytes of a stream, and the whole stream again.
fn peek<R: Read>(mut reader: R) -> io::Result<(Vec<u8>, impl Read)> {
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    (&mut reader)
        .take(SNIFF_BYTES as u64)
        .read_to_end(&mut head)?;
    Ok((head.clone(), Cursor::new(head).chain(reader)))
}

/// Reports every read's size (to a progress bar).
pub(crate) struct Counting<'a, R> {
    pub(crate) inner: R,
    pub(crate) progress: &'a dyn Fn(u64),
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buffer)?;
        (self.progress)(read as u64);
        Ok(read)
    }
}

/// Every chunk of a stream, retrying interrupted reads.
pub(crate) fn each_chunk(reader: &mut dyn Read, mut each: impl FnMut(&[u8])) -> io::Result<()> {
    const CHUNK: usize = 1 << 20;
    let mut buffer = vec![0u8; CHUNK];
    loop {
        match reader.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(read) => each(&buffer[..read]),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_told_apart_by_their_first_bytes() {
        assert_eq!(detect(b"version account-id"), InputFormat::Text);
        assert_eq!(detect(b"2 123456789010 eni-a"), InputFormat::Text);
        assert_eq!(detect(b""), InputFormat::Text);
        assert_eq!(
            detect(b"2014-12-14T04:07:50.000Z 2 123456789010 eni-a"),
            InputFormat::CloudwatchExport
        );
        assert_eq!(detect(b"\n  {\"events\": []}"), InputFormat::Json);
        assert_eq!(detect(b"[{\"message\": \"2 1\"}]"), InputFormat::Json);
    }

    #[test]
    fn an_export_folder_names_the_interface() {
        let origin = Origin::of_path(Path::new("exp/0f1e/eni-0a1b2c3d-all/000000.gz"));
        assert_eq!(origin.interface(), "eni-0a1b2c3d");
        assert_eq!(Origin::of_path(Path::new("flows.log")).interface(), "-");
    }
}
