//! Reproducible zip archives, compressed in parallel.
//!
//! Byte-identical output for the same files, wherever and whenever it runs:
//! entries in byte order of their names, every timestamp set to the source date,
//! permissions normalised to 0644 (0755 when any execute bit is set, 0777 for
//! links), `Unix` as the creating system, no extra fields, no comment.
//!
//! Speed: worker threads compress files into memory with the zip crate's
//! `ZipFileBuilder` while one thread appends the finished entries in order. How far
//! the workers may run ahead is bounded in bytes, so memory stays flat however
//! large the tree is. Files above `STREAM_THRESHOLD` are compressed by the writer
//! thread straight from disk into the archive (never held in memory) while the
//! workers keep compressing the files after them.
//!
//! Entries that deflate does not shrink are stored, as Info-ZIP does.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};

use zip::write::{SimpleFileOptions, ZipFileBuilder};
use zip::{CompressionMethod, DateTime, PreparedZipFile, ZipWriter};

use super::walk::{Entry, EntryKind};

/// Files larger than this are streamed by the writer thread instead of buffered.
const STREAM_THRESHOLD: u64 = 8 << 20;
/// Upper bound on the bytes of files being compressed or waiting to be written.
const IN_FLIGHT_BUDGET: u64 = 32 << 20;
/// Deflate level; 6 is zlib's and Info-ZIP's default.
const LEVEL: i64 = 6;
/// How much of a streamed file is test-compressed to decide between deflate and store.
const SAMPLE: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} changed while it was being packaged (expected {expected} bytes, read {actual})", path.display())]
    Changed {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error("cannot write the archive")]
    Write(#[source] zip::result::ZipError),
    #[error("interrupted")]
    Interrupted,
}

/// What was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveStats {
    pub entries: usize,
    /// Bytes of file content before compression.
    pub input_bytes: u64,
}

/// Archive-wide settings.
#[derive(Debug, Clone, Copy)]
pub struct ArchiveOptions {
    /// Seconds since the epoch put on every entry (clamped to the zip range 1980-2107).
    pub source_date_epoch: i64,
    /// Compressing threads besides the writer (0: one per core).
    pub threads: usize,
}

/// Writes `entries` (sorted) into `out`, calling `progress` with each entry's input size
/// as it is appended. `cancel` stops the work between entries.
pub fn write(
    out: File,
    entries: &[Entry],
    options: ArchiveOptions,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(u64),
) -> Result<ArchiveStats, ArchiveError> {
    let stamp = zip_time(options.source_date_epoch);
    let threads = match options.threads {
        0 => std::thread::available_parallelism().map_or(2, usize::from),
        n => n,
    };
    let queue = Queue::new(entries);

    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| queue.work(entries, stamp, cancel));
        }
        let result = append_in_order(out, entries, &queue, stamp, cancel, progress);
        queue.stop();
        result
    })
}

fn append_in_order(
    out: File,
    entries: &[Entry],
    queue: &Queue,
    stamp: DateTime,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(u64),
) -> Result<ArchiveStats, ArchiveError> {
    let mut zip = ZipWriter::new(io::BufWriter::with_capacity(1 << 20, out));
    let mut input_bytes = 0;
    for (index, entry) in entries.iter().enumerate() {
        if cancel.load(Ordering::Relaxed) {
            return Err(ArchiveError::Interrupted);
        }
        let size = match &entry.kind {
            EntryKind::Symlink { target } => {
                zip.add_symlink(
                    &entry.name,
                    target,
                    file_options(stamp, 0o777, 0, CompressionMethod::Stored),
                )
                .map_err(ArchiveError::Write)?;
                0
            }
            EntryKind::File { size, executable } if *size > STREAM_THRESHOLD => {
                stream_file(&mut zip, entry, *size, *executable, stamp)?;
                *size
            }
            EntryKind::File { size, .. } => {
                let prepared = queue.take(index)?;
                zip.add_prepared_file(prepared)
                    .map_err(ArchiveError::Write)?;
                queue.release(*size);
                *size
            }
        };
        input_bytes += size;
        progress(size);
    }
    let mut inner = zip.finish().map_err(ArchiveError::Write)?;
    inner.flush().map_err(|e| ArchiveError::Write(e.into()))?;
    Ok(ArchiveStats {
        entries: entries.len(),
        input_bytes,
    })
}

/// Compresses a large file straight from disk into the archive.
fn stream_file(
    zip: &mut ZipWriter<io::BufWriter<File>>,
    entry: &Entry,
    size: u64,
    executable: bool,
    stamp: DateTime,
) -> Result<(), ArchiveError> {
    let read_err = |source| ArchiveError::Read {
        path: entry.path.clone(),
        source,
    };
    let mut file = BufReader::with_capacity(1 << 20, File::open(&entry.path).map_err(read_err)?);
    let mut sample = vec![0; SAMPLE.min(usize::try_from(size).unwrap_or(SAMPLE))];
    file.read_exact(&mut sample).map_err(read_err)?;
    let method = if deflate_helps(&sample) {
        CompressionMethod::Deflated
    } else {
        CompressionMethod::Stored
    };
    let options = file_options(stamp, mode(executable), size, method);
    zip.start_file(&entry.name, options)
        .map_err(ArchiveError::Write)?;
    zip.write_all(&sample)
        .map_err(|e| ArchiveError::Write(e.into()))?;
    let copied = io::copy(&mut file, zip).map_err(read_err)? + sample.len() as u64;
    if copied != size {
        return Err(ArchiveError::Changed {
            path: entry.path.clone(),
            expected: size,
            actual: copied,
        });
    }
    Ok(())
}

/// Compresses one buffered file, storing it instead when deflate does not shrink it.
fn prepare(entry: &Entry, stamp: DateTime) -> Result<PreparedZipFile, ArchiveError> {
    let EntryKind::File { size, executable } = entry.kind else {
        unreachable!("only files are prepared")
    };
    let read_err = |source| ArchiveError::Read {
        path: entry.path.clone(),
        source,
    };
    let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    File::open(&entry.path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .map_err(read_err)?;
    if data.len() as u64 != size {
        return Err(ArchiveError::Changed {
            path: entry.path.clone(),
            expected: size,
            actual: data.len() as u64,
        });
    }
    let build = |method| -> Result<PreparedZipFile, ArchiveError> {
        let options = file_options(stamp, mode(executable), size, method);
        let mut builder = ZipFileBuilder::new(&entry.name, options).map_err(ArchiveError::Write)?;
        builder
            .write_all(&data)
            .map_err(|e| ArchiveError::Write(e.into()))?;
        builder.finish().map_err(ArchiveError::Write)
    };
    let deflated = build(CompressionMethod::Deflated)?;
    if deflated.compressed_size() < size || size == 0 {
        Ok(deflated)
    } else {
        build(CompressionMethod::Stored)
    }
}

/// Whether deflate shrinks this sample by at least 1%.
fn deflate_helps(sample: &[u8]) -> bool {
    let mut encoder = flate2_sink(sample.len());
    encoder.write_all(sample).expect("writing to memory");
    let compressed = encoder.finish().expect("writing to memory").len();
    compressed * 100 < sample.len() * 99
}

/// flate2 with the zlib-rs backend: the deflate implementation the zip crate itself uses.
fn flate2_sink(capacity: usize) -> flate2::write::DeflateEncoder<Vec<u8>> {
    flate2::write::DeflateEncoder::new(
        Vec::with_capacity(capacity),
        flate2::Compression::new(LEVEL as u32),
    )
}

fn mode(executable: bool) -> u32 {
    if executable { 0o755 } else { 0o644 }
}

fn file_options(
    stamp: DateTime,
    mode: u32,
    size: u64,
    method: CompressionMethod,
) -> SimpleFileOptions {
    let level = (method == CompressionMethod::Deflated).then_some(LEVEL);
    SimpleFileOptions::default()
        .system(zip::System::Unix)
        .last_modified_time(stamp)
        .unix_permissions(mode)
        .compression_method(method)
        .compression_level(level)
        .large_file(size >= u64::from(u32::MAX))
}

/// The zip timestamp for `epoch` seconds, in UTC, clamped to what a zip can hold.
fn zip_time(epoch: i64) -> DateTime {
    let ts = jiff::Timestamp::from_second(epoch.clamp(super::ZIP_EPOCH, 4_354_819_198))
        .expect("clamped into range");
    let t = ts.to_zoned(jiff::tz::TimeZone::UTC).datetime();
    let narrow = |v: i8| u8::try_from(v).expect("calendar fields are positive");
    DateTime::from_date_and_time(
        u16::try_from(t.year()).expect("clamped year"),
        narrow(t.month()),
        narrow(t.day()),
        narrow(t.hour()),
        narrow(t.minute()),
        narrow(t.second()),
    )
    .expect("clamped into the zip range")
}

/// Work shared between the compressing threads and the writer.
struct Queue {
    state: Mutex<QueueState>,
    changed: Condvar,
}

struct QueueState {
    /// Next entry a worker may claim.
    next: usize,
    /// Bytes claimed and not yet appended.
    in_flight: u64,
    ready: HashMap<usize, Result<PreparedZipFile, ArchiveError>>,
    stopped: bool,
}

impl Queue {
    fn new(_entries: &[Entry]) -> Self {
        Self {
            state: Mutex::new(QueueState {
                next: 0,
                in_flight: 0,
                ready: HashMap::new(),
                stopped: false,
            }),
            changed: Condvar::new(),
        }
    }

    /// A worker: claim the next buffered file within the budget, compress it, hand it over.
    fn work(&self, entries: &[Entry], stamp: DateTime, cancel: &AtomicBool) {
        loop {
            let (index, entry) = {
                let mut state = self.state.lock().expect("queue lock");
                loop {
                    if state.stopped || cancel.load(Ordering::Relaxed) {
                        return;
                    }
                    // Skip what the writer handles itself.
                    while let Some(e) = entries.get(state.next) {
                        match e.kind {
                            EntryKind::File { size, .. } if size <= STREAM_THRESHOLD => break,
                            _ => state.next += 1,
                        }
                    }
                    let Some(entry) = entries.get(state.next) else {
                        return;
                    };
                    let EntryKind::File { size, .. } = entry.kind else {
                        unreachable!()
                    };
                    // Always allow one entry when nothing is in flight, so any size fits.
                    if state.in_flight == 0 || state.in_flight + size <= IN_FLIGHT_BUDGET {
                        state.in_flight += size;
                        state.next += 1;
                        break (state.next - 1, entry);
                    }
                    state = self.changed.wait(state).expect("queue lock");
                }
            };
            let prepared = prepare(entry, stamp);
            let mut state = self.state.lock().expect("queue lock");
            state.ready.insert(index, prepared);
            self.changed.notify_all();
        }
    }

    /// The writer: wait for entry `index` to be compressed.
    fn take(&self, index: usize) -> Result<PreparedZipFile, ArchiveError> {
        let mut state = self.state.lock().expect("queue lock");
        loop {
            if let Some(done) = state.ready.remove(&index) {
                return done;
            }
            state = self.changed.wait(state).expect("queue lock");
        }
    }

    /// The writer appended an entry of `size` bytes: let the workers claim more.
    fn release(&self, size: u64) {
        let mut state = self.state.lock().expect("queue lock");
        state.in_flight -= size;
        self.changed.notify_all();
    }

    fn stop(&self) {
        self.state.lock().expect("queue lock").stopped = true;
        self.changed.notify_all();
    }
}

/// A temporary file in `dir` (so the final rename is atomic), readable like any output: 0644.
pub fn create_temp_in(dir: &Path) -> io::Result<tempfile::NamedTempFile> {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .prefix(".gantry-")
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(0o644))
        .tempfile_in(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zip_time_is_utc_and_clamped() {
        let t = zip_time(1_700_000_000); // 2023-11-14T22:13:20Z
        assert_eq!(
            (
                t.year(),
                t.month(),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            ),
            (2023, 11, 14, 22, 13, 20)
        );
        let early = zip_time(0);
        assert_eq!((early.year(), early.month(), early.day()), (1980, 1, 1));
    }

    #[test]
    fn random_data_is_stored_text_is_deflated() {
        let text = b"hello gantry ".repeat(10_000);
        assert!(deflate_helps(&text));
        let mut x: u64 = 42;
        let random: Vec<u8> = (0..100_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert!(!deflate_helps(&random));
    }
}
