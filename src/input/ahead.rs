//! gzip decompressed on a thread of its own, a few chunks ahead of the
//! reader: splitting and routing lines (`analyze`'s reader thread) then
//! runs beside the decompression instead of after it. Memory is bounded:
//! [`CHUNKS`] chunks of [`CHUNK`] bytes, recycled.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::{self, JoinHandle};

use flate2::read::MultiGzDecoder;

/// Decompressed bytes per chunk.
pub const CHUNK: usize = 1 << 20;
/// Chunks the decompressing thread may run ahead.
pub const CHUNKS: usize = 4;

/// One chunk of text, and how many compressed bytes were read for it.
type Chunk = io::Result<(Vec<u8>, u64)>;

/// Reads the decompressed text of a gzip file (every member), reporting
/// the compressed bytes read to `progress` as their text is taken.
pub struct GunzipAhead<'a> {
    chunks: Option<Receiver<Chunk>>,
    /// Emptied chunks, back to the decompressing thread.
    spent: Option<SyncSender<Vec<u8>>>,
    current: Vec<u8>,
    at: usize,
    progress: &'a dyn Fn(u64),
    thread: Option<JoinHandle<()>>,
}

impl<'a> GunzipAhead<'a> {
    pub fn new(file: File, progress: &'a dyn Fn(u64)) -> GunzipAhead<'a> {
        let (send, chunks) = sync_channel(CHUNKS);
        let (spent, recycled) = sync_channel(CHUNKS + 1);
        let thread = thread::spawn(move || decompress(file, &send, &recycled));
        GunzipAhead {
            chunks: Some(chunks),
            spent: Some(spent),
            current: Vec::new(),
            at: 0,
            progress,
            thread: Some(thread),
        }
    }
}

/// The decompressing thread: chunks until the end, an error, or the
/// reader gone.
fn decompress(file: File, send: &SyncSender<Chunk>, recycled: &Receiver<Vec<u8>>) {
    let counted = Counted {
        inner: BufReader::with_capacity(CHUNK, file),
        read: 0,
    };
    let mut decoder = MultiGzDecoder::new(counted);
    loop {
        let mut chunk = recycled.try_recv().unwrap_or_default();
        chunk.resize(CHUNK, 0);
        let mut filled = 0;
        // Fill the chunk: a gzip read stops at member and buffer ends.
        let result = loop {
            match decoder.read(&mut chunk[filled..]) {
                Ok(0) => break Ok(()),
                Ok(read) => {
                    filled += read;
                    if filled == chunk.len() {
                        break Ok(());
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => break Err(error),
            }
        };
        chunk.truncate(filled);
        let compressed = std::mem::take(&mut decoder.get_mut().read);
        let message = match result {
            Ok(()) if filled == 0 => {
                // The end: the last compressed bytes still count.
                let _ = send.send(Ok((Vec::new(), compressed)));
                return;
            }
            Ok(()) => Ok((chunk, compressed)),
            Err(error) => Err(error),
        };
        let failed = message.is_err();
        if send.send(message).is_err() || failed {
            return;
        }
    }
}

impl Read for GunzipAhead<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        while self.at == self.current.len() {
            let Some(chunks) = &self.chunks else {
                return Ok(0);
            };
            let (chunk, compressed) = match chunks.recv() {
                Ok(chunk) => chunk?,
                // The thread ended after the last chunk.
                Err(_) => return Ok(0),
            };
            (self.progress)(compressed);
            let spent = std::mem::replace(&mut self.current, chunk);
            if let Some(back) = &self.spent {
                let _ = back.try_send(spent);
            }
            self.at = 0;
            if self.current.is_empty() {
                self.chunks = None;
                return Ok(0);
            }
        }
        let take = buffer.len().min(self.current.len() - self.at);
        buffer[..take].copy_from_slice(&self.current[self.at..self.at + take]);
        self.at += take;
        Ok(take)
    }
}

impl Drop for GunzipAhead<'_> {
    fn drop(&mut self) {
        // The thread's next send fails and it ends.
        self.chunks = None;
        self.spent = None;
        if let Some(thread) = self.thread.take()
            && let Err(panic) = thread.join()
        {
            std::panic::resume_unwind(panic);
        }
    }
}

struct Counted<R> {
    inner: R,
    read: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buffer)?;
        self.read += read as u64;
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::GzEncoder;

    use super::*;

    fn gzip(text: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(text).unwrap();
        encoder.finish().unwrap()
    }

    fn on_disk(bytes: &[u8]) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.gz");
        std::fs::write(&path, bytes).unwrap();
        let file = File::open(&path).unwrap();
        (dir, file)
    }

    #[test]
    fn reads_what_the_decoder_reads_and_every_compressed_byte() {
        // Several chunks, two members.
        let first: Vec<u8> = (0..3_000_000u32).flat_map(|n| n.to_le_bytes()).collect();
        let second = b"the second member\n".repeat(1000);
        let mut bytes = gzip(&first);
        bytes.extend(gzip(&second));
        let (_dir, file) = on_disk(&bytes);
        let progress = Cell::new(0u64);
        let report = |read: u64| progress.set(progress.get() + read);
        let mut text = Vec::new();
        GunzipAhead::new(file, &report)
            .read_to_end(&mut text)
            .unwrap();
        let mut expected = first;
        expected.extend(second);
        assert!(text == expected, "the text of both members, in order");
        assert_eq!(progress.get(), bytes.len() as u64);
    }

    #[test]
    fn a_gzip_cut_short_is_an_error_and_a_reader_gone_early_ends_the_thread() {
        let text =
            b"2 123456789010 eni-a 10.0.0.1 10.0.0.2 1 2 6 1 1 1 2 ACCEPT OK\n".repeat(100_000);
        let bytes = gzip(&text);
        let (_dir, file) = on_disk(&bytes[..bytes.len() / 2]);
        let mut all = Vec::new();
        assert!(
            GunzipAhead::new(file, &|_| {})
                .read_to_end(&mut all)
                .is_err()
        );
        let (_dir, file) = on_disk(&bytes);
        let mut ahead = GunzipAhead::new(file, &|_| {});
        let mut some = [0u8; 10];
        ahead.read_exact(&mut some).unwrap();
        drop(ahead);
    }
}
