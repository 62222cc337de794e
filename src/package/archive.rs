//! Reproducible zip archives, compressed in parallel.
//!
//! Byte-identical output for the same files, wherever and whenever it runs:
//! entries in byte order of their names, every timestamp set to the source date,
//! permissions normalised to 0644 (0755 when any execute bit is set, 0777 for
//! links), `Unix` as the creating system, no extra fields, no comment.
//!
//! Speed: worker threads (one per core) claim files in order and compress them
//! while one writer appends the finished entries in order. Files up to
//! `SPOOL_THRESHOLD` are compressed in memory with the zip crate's `ZipFileBuilder`
//! and appended with `add_prepared_file`; larger files are compressed from disk
//! into a one-entry spool zip beside the output and appended with `raw_copy_file`,
//! so they are never held in memory and still use every core. How far the workers
//! may run ahead is bounded in bytes, separately for memory and for spool space,
//! so memory stays flat however large the tree is.
//!
//! Entries that deflate does not shrink are stored, as Info-ZIP does (for spooled
//! files the first MiB decides).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};

use zip::write::{SimpleFileOptions, ZipFileBuilder};
use zip::{CompressionMethod, DateTime, PreparedZipFile, ZipArchive, ZipWriter};

use super::walk::{Entry, EntryKind};

/// Files larger than this are compressed to a spool file instead of memory.
const SPOOL_THRESHOLD: u64 = 8 << 20;
/// Upper bound on the bytes of in-memory files being compressed or waiting to be written.
const MEMORY_BUDGET: u64 = 32 << 20;
/// Upper bound on the input bytes of spooled files not yet appended.
const SPOOL_BUDGET: u64 = 1 << 30;
/// Deflate level; 6 is zlib's and Info-ZIP's default.
const LEVEL: i64 = 6;
/// How much of a spooled file is test-compressed to decide between deflate and store.
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
    Changed { path: PathBuf, expected: u64, actual: u64 },
    #[error("cannot write the archive")]
    Write(#[source] zip::result::ZipError),
    #[error("interrupted")]
    Interrupted,
}

impl From<io::Error> for ArchiveError {
    fn from(e: io::Error) -> Self {
        Self::Write(e.into())
    }
}

/// What was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveStats {
    pub entries: usize,
    /// Bytes of file content before compression.
    pub input_bytes: u64,
}

/// Archive-wide settings.
#[derive(Debug, Clone)]
pub struct ArchiveOptions {
    /// Seconds since the epoch put on every entry (clamped to the zip range 1980-2107).
    pub source_date_epoch: i64,
    /// Compressing threads besides the writer (0: one per core).
    pub threads: usize,
    /// Folder for spool files of large entries: on the output's file system, not /tmp,
    /// which may be memory.
    pub spool_dir: PathBuf,
}

/// Writes `entries` (sorted) into `out`, calling `progress` with each entry's input size
/// as it is appended. `cancel` stops the work between entries.
pub fn write(
    out: File,
    entries: &[Entry],
    options: &ArchiveOptions,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(u64),
) -> Result<ArchiveStats, ArchiveError> {
    let stamp = zip_time(options.source_date_epoch);
    let threads = match options.threads {
        0 => std::thread::available_parallelism().map_or(2, usize::from),
        n => n,
    };
    tracing::debug!(threads, entries = entries.len(), "compressing");
    let queue = Queue::default();
    let job = Job { entries, stamp, spool_dir: &options.spool_dir, cancel };

    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| queue.work(&job));
        }
        let result = append_in_order(out, &job, &queue, progress);
        queue.stop();
        result
    })
}

/// What every thread needs to know.
struct Job<'a> {
    entries: &'a [Entry],
    stamp: DateTime,
    spool_dir: &'a Path,
    cancel: &'a AtomicBool,
}

/// A compressed entry waiting to be appended.
enum Compressed {
    Memory(PreparedZipFile),
    Spooled(tempfile::NamedTempFile),
}

fn append_in_order(
    out: File,
    job: &Job<'_>,
    queue: &Queue,
    progress: &mut dyn FnMut(u64),
) -> Result<ArchiveStats, ArchiveError> {
    let mut zip = ZipWriter::new(io::BufWriter::with_capacity(1 << 20, out));
    let mut input_bytes = 0;
    for (index, entry) in job.entries.iter().enumerate() {
        if job.cancel.load(Ordering::Relaxed) {
            return Err(ArchiveError::Interrupted);
        }
        let size = match &entry.kind {
            EntryKind::Symlink { target } => {
                let options = file_options(job.stamp, 0o777, 0, CompressionMethod::Stored);
                zip.add_symlink(&entry.name, target, options).map_err(ArchiveError::Write)?;
                0
            }
            EntryKind::File { size, .. } => {
                match queue.take(index, job.cancel)? {
                    Compressed::Memory(prepared) => zip.add_prepared_file(prepared).map_err(ArchiveError::Write)?,
                    Compressed::Spooled(spool) => {
                        let mut one = ZipArchive::new(spool.reopen()?).map_err(ArchiveError::Write)?;
                        zip.raw_copy_file(one.by_index_raw(0).map_err(ArchiveError::Write)?)
                            .map_err(ArchiveError::Write)?;
                    }
                }
                queue.release(*size);
                *size
            }
        };
        input_bytes += size;
        progress(size);
    }
    let mut inner = zip.finish().map_err(ArchiveError::Write)?;
    inner.flush()?;
    Ok(ArchiveStats { entries: job.entries.len(), input_bytes })
}

/// Compresses one file, in memory or to a spool file by its size.
fn compress(entry: &Entry, job: &Job<'_>) -> Result<Compressed, ArchiveError> {
    let EntryKind::File { size, executable } = entry.kind else { unreachable!("only files are compressed") };
    if size > SPOOL_THRESHOLD {
        spool(entry, size, executable, job).map(Compressed::Spooled)
    } else {
        prepare(entry, size, executable, job.stamp).map(Compressed::Memory)
    }
}

/// Compresses a buffered file, storing it instead when deflate does not shrink it.
fn prepare(entry: &Entry, size: u64, executable: bool, stamp: DateTime) -> Result<PreparedZipFile, ArchiveError> {
    let read_err = |source| ArchiveError::Read { path: entry.path.clone(), source };
    let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    File::open(&entry.path).and_then(|mut f| f.read_to_end(&mut data)).map_err(read_err)?;
    if data.len() as u64 != size {
        return Err(ArchiveError::Changed { path: entry.path.clone(), expected: size, actual: data.len() as u64 });
    }
    let build = |method| -> Result<PreparedZipFile, ArchiveError> {
        let options = file_options(stamp, mode(executable), size, method);
        let mut builder = ZipFileBuilder::new(&entry.name, options).map_err(ArchiveError::Write)?;
        builder.write_all(&data)?;
        builder.finish().map_err(ArchiveError::Write)
    };
    let deflated = build(CompressionMethod::Deflated)?;
    if deflated.compressed_size() < size || size == 0 { Ok(deflated) } else { build(CompressionMethod::Stored) }
}

/// Compresses a large file from disk into a one-entry zip in the spool folder.
fn spool(entry: &Entry, size: u64, executable: bool, job: &Job<'_>) -> Result<tempfile::NamedTempFile, ArchiveError> {
    let read_err = |source| ArchiveError::Read { path: entry.path.clone(), source };
    let mut file = BufReader::with_capacity(1 << 20, File::open(&entry.path).map_err(read_err)?);
    let mut sample = vec![0; SAMPLE.min(usize::try_from(size).unwrap_or(SAMPLE))];
    file.read_exact(&mut sample).map_err(read_err)?;
    let method = if deflate_helps(&sample) { CompressionMethod::Deflated } else { CompressionMethod::Stored };

    let mut spool = create_temp_in(job.spool_dir)?;
    let mut zip = ZipWriter::new(io::BufWriter::with_capacity(1 << 20, spool.as_file_mut()));
    zip.start_file(&entry.name, file_options(job.stamp, mode(executable), size, method))
        .map_err(ArchiveError::Write)?;
    zip.write_all(&sample)?;
    let copied = copy_unless_cancelled(&mut file, &mut zip, job.cancel).map_err(|e| match e {
        Copy::Read(source) => read_err(source),
        Copy::Write(e) => e.into(),
        Copy::Cancelled => ArchiveError::Interrupted,
    })? + sample.len() as u64;
    if copied != size {
        return Err(ArchiveError::Changed { path: entry.path.clone(), expected: size, actual: copied });
    }
    zip.finish().map_err(ArchiveError::Write)?.flush()?;
    spool.as_file_mut().rewind()?;
    Ok(spool)
}

enum Copy {
    Read(io::Error),
    Write(io::Error),
    Cancelled,
}

/// `io::copy`, checking `cancel` every MiB so an interrupt does not wait for a large file.
fn copy_unless_cancelled(from: &mut impl Read, to: &mut impl Write, cancel: &AtomicBool) -> Result<u64, Copy> {
    let mut buf = vec![0; 1 << 20];
    let mut total = 0;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(Copy::Cancelled);
        }
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Copy::Read(e)),
        };
        to.write_all(&buf[..n]).map_err(Copy::Write)?;
        total += n as u64;
    }
}

/// Whether deflate shrinks this sample by at least 1%.
fn deflate_helps(sample: &[u8]) -> bool {
    // flate2 with the zlib-rs backend: the deflate implementation the zip crate itself uses.
    let level = flate2::Compression::new(u32::try_from(LEVEL).expect("small level"));
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::with_capacity(sample.len()), level);
    encoder.write_all(sample).expect("writing to memory");
    let compressed = encoder.finish().expect("writing to memory").len();
    compressed * 100 < sample.len() * 99
}

fn mode(executable: bool) -> u32 {
    if executable { 0o755 } else { 0o644 }
}

fn file_options(stamp: DateTime, mode: u32, size: u64, method: CompressionMethod) -> SimpleFileOptions {
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
    let ts = jiff::Timestamp::from_second(epoch.clamp(super::ZIP_EPOCH, 4_354_819_198)).expect("clamped into range");
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

/// A temporary file in `dir` (so a final rename is atomic), readable like any output: 0644.
/// Deleted when dropped, so a failed or interrupted run leaves none behind.
pub fn create_temp_in(dir: &Path) -> io::Result<tempfile::NamedTempFile> {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .prefix(".gantry-")
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(0o644))
        .tempfile_in(dir)
}

/// Work shared between the compressing threads and the writer.
#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
    changed: Condvar,
}

#[derive(Default)]
struct QueueState {
    /// Next entry a worker may claim.
    next: usize,
    /// Input bytes claimed and not yet appended, in memory and in spool files.
    memory: u64,
    spooled: u64,
    ready: HashMap<usize, Result<Compressed, ArchiveError>>,
    stopped: bool,
}

impl QueueState {
    /// Whether an entry of `size` fits its budget. An empty budget takes any size, so
    /// every entry fits eventually and the writer never waits on an unclaimable entry.
    fn fits(&self, size: u64) -> bool {
        if size > SPOOL_THRESHOLD {
            self.spooled == 0 || self.spooled + size <= SPOOL_BUDGET
        } else {
            self.memory == 0 || self.memory + size <= MEMORY_BUDGET
        }
    }

    fn account(&mut self, size: u64, claim: bool) {
        let budget = if size > SPOOL_THRESHOLD { &mut self.spooled } else { &mut self.memory };
        if claim {
            *budget += size;
        } else {
            *budget -= size;
        }
    }
}

impl Queue {
    /// A worker: claim the next file within its budget, compress it, hand it over.
    fn work(&self, job: &Job<'_>) {
        loop {
            let (index, entry) = {
                let mut state = self.state.lock().expect("queue lock");
                loop {
                    if state.stopped || job.cancel.load(Ordering::Relaxed) {
                        return;
                    }
                    // Links are appended by the writer itself.
                    while job.entries.get(state.next).is_some_and(|e| matches!(e.kind, EntryKind::Symlink { .. })) {
                        state.next += 1;
                    }
                    let Some(entry) = job.entries.get(state.next) else { return };
                    let EntryKind::File { size, .. } = entry.kind else { unreachable!("links skipped above") };
                    if state.fits(size) {
                        state.account(size, true);
                        state.next += 1;
                        break (state.next - 1, entry);
                    }
                    state = self.wait(state);
                }
            };
            let compressed = compress(entry, job);
            let mut state = self.state.lock().expect("queue lock");
            state.ready.insert(index, compressed);
            self.changed.notify_all();
        }
    }

    /// The writer: wait for entry `index` to be compressed.
    fn take(&self, index: usize, cancel: &AtomicBool) -> Result<Compressed, ArchiveError> {
        let mut state = self.state.lock().expect("queue lock");
        loop {
            if let Some(done) = state.ready.remove(&index) {
                return done;
            }
            if cancel.load(Ordering::Relaxed) {
                return Err(ArchiveError::Interrupted);
            }
            state = self.wait(state);
        }
    }

    /// Waits for a change, or a tenth of a second, so waiters also notice an interrupt.
    fn wait<'a>(&self, state: std::sync::MutexGuard<'a, QueueState>) -> std::sync::MutexGuard<'a, QueueState> {
        self.changed.wait_timeout(state, std::time::Duration::from_millis(100)).expect("queue lock").0
    }

    /// The writer appended a file of `size` bytes: let the workers claim more.
    fn release(&self, size: u64) {
        self.state.lock().expect("queue lock").account(size, false);
        self.changed.notify_all();
    }

    fn stop(&self) {
        self.state.lock().expect("queue lock").stopped = true;
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zip_time_is_utc_and_clamped() {
        let t = zip_time(1_700_000_000); // 2023-11-14T22:13:20Z
        assert_eq!((t.year(), t.month(), t.day(), t.hour(), t.minute(), t.second()), (2023, 11, 14, 22, 13, 20));
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

    #[test]
    fn an_interrupt_mid_archive_stops_it() {
        let dir = tempfile::tempdir().unwrap();
        let entries: Vec<Entry> = (0..50)
            .map(|i| {
                let path = dir.path().join(format!("f{i:02}"));
                std::fs::write(&path, "data ".repeat(1000)).unwrap();
                Entry { name: format!("f{i:02}"), path, kind: EntryKind::File { size: 5000, executable: false } }
            })
            .collect();
        let options = ArchiveOptions { source_date_epoch: 0, threads: 2, spool_dir: dir.path().to_owned() };
        let cancel = AtomicBool::new(false);
        let out = tempfile::tempfile().unwrap();
        let mut appended = 0;
        let result = write(out, &entries, &options, &cancel, &mut |_| {
            appended += 1;
            if appended == 3 {
                cancel.store(true, Ordering::Relaxed);
            }
        });
        assert!(matches!(result, Err(ArchiveError::Interrupted)), "{result:?}");
        assert_eq!(appended, 3, "nothing is appended after the interrupt");
    }

    #[test]
    fn a_cancelled_copy_stops_between_chunks() {
        let cancel = AtomicBool::new(true);
        let mut sink = Vec::new();
        let result = copy_unless_cancelled(&mut &[1u8; 10][..], &mut sink, &cancel);
        assert!(matches!(result, Err(Copy::Cancelled)));
        assert!(sink.is_empty());
    }

    #[test]
    fn budgets_always_admit_one_entry() {
        let mut state = QueueState::default();
        assert!(state.fits(u64::MAX / 2), "an empty spool budget takes any size");
        state.account(SPOOL_BUDGET, true);
        assert!(!state.fits(SPOOL_THRESHOLD + 1), "a full spool budget waits");
        assert!(state.fits(1024), "memory is budgeted apart from spool space");
        state.account(SPOOL_BUDGET, false);
        assert!(state.fits(SPOOL_THRESHOLD + 1));
    }
}
