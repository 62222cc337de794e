//! Reproducible layers: a file or folder as a gzip'd tar whose bytes depend only on the
//! files' names, contents and executable bits, and on the source date.
//!
//! Entries are sorted by name (byte order), parents before children, and every folder on
//! the way to `dest` has its own entry. Headers are GNU tar with uid/gid 0, no user or
//! group names, mtime = the source date, and modes normalised (0755 folders and
//! executables, 0644 other files, 0777 symlinks); no xattrs, atime or ctime. gzip carries
//! no file name and mtime 0, at a fixed level, and is fed in fixed 64 KiB blocks: zlib-rs's
//! output depends on how its input is split, so the same tar must always reach it in the
//! same pieces. The tar's digest is the layer's `diff_id`, the gzip's its blob digest; both
//! are computed while writing, in one pass.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use flate2::{Compression, GzBuilder};

use crate::config::Glob;
use crate::package::walk;
use crate::package::{EntryKind, WalkError};
use crate::publish::image::digest::{Digest, HashWriter};

/// gzip level for layers gantry writes. Part of the output: changing it changes digests.
pub const LAYER_COMPRESSION: u32 = 6;
/// The size of the pieces the compressor is fed. Part of the output too.
const BLOCK: usize = 64 << 10;

/// A finished layer on disk.
#[derive(Debug)]
pub struct BuiltLayer {
    pub path: PathBuf,
    pub digest: Digest,
    pub diff_id: Digest,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error(transparent)]
    Walk(#[from] WalkError),
    #[error("`dest` {0} leaves the image's root")]
    Dest(String),
    #[error("{} changed while it was being added", .0.display())]
    Changed(PathBuf),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("interrupted")]
    Interrupted,
}

enum Item {
    Dir,
    File { path: PathBuf, executable: bool },
    Link { target: String },
}

/// Writes `src` (a file or folder) placed at `dest` as layer file `out`.
pub fn build(src: &Path, dest: &str, epoch: i64, out: &Path, cancel: &AtomicBool) -> Result<BuiltLayer, LayerError> {
    let items = plan(src, dest)?;
    let io_err = |what: &str| {
        let what = what.to_owned();
        move |source| LayerError::Io { what: what.clone(), source }
    };
    let file = File::create(out).map_err(io_err(&format!("cannot create {}", out.display())))?;
    let mut tar = tar::Builder::new(HashWriter::new(gzip(BufWriter::new(HashWriter::new(file)))));
    let mtime = u64::try_from(epoch).unwrap_or(0);
    for (name, item) in &items {
        if cancel.load(Ordering::Relaxed) {
            return Err(LayerError::Interrupted);
        }
        let mut header = tar::Header::new_gnu();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(mtime);
        let written = match item {
            Item::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                tar.append_data(&mut header, name, io::empty())
            }
            Item::Link { target } => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                tar.append_link(&mut header, name, target)
            }
            Item::File { path, executable } => {
                let file = File::open(path).map_err(io_err(&format!("cannot read {}", path.display())))?;
                let len = file.metadata().map_err(io_err(&format!("cannot read {}", path.display())))?.len();
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(if *executable { 0o755 } else { 0o644 });
                header.set_size(len);
                let mut counted = Counted { inner: file.take(len), read: 0 };
                let result = tar.append_data(&mut header, name, &mut counted);
                if result.is_ok() && counted.read != len {
                    return Err(LayerError::Changed(path.clone()));
                }
                result
            }
        };
        written.map_err(io_err(&format!("cannot write {}", out.display())))?;
    }
    let finish = io_err(&format!("cannot write {}", out.display()));
    let (gz, diff_id, _) = tar.into_inner().map_err(&finish)?.finish();
    let buffered = gz.finish().map_err(&finish)?;
    let (file, digest, size) = buffered.into_inner().map_err(|e| finish(e.into_error()))?.finish();
    file.sync_all().map_err(finish)?;
    Ok(BuiltLayer { path: out.to_owned(), digest, diff_id, size })
}

/// Compresses an existing tar stream as a layer: returns the gzip's digest and size, and
/// the tar's digest (its `diff_id`).
pub fn compress(mut tar: impl Read, out: &Path) -> io::Result<(Digest, u64, Digest)> {
    let file = File::create(out)?;
    let mut writer = HashWriter::new(gzip(BufWriter::new(HashWriter::new(file))));
    io::copy(&mut tar, &mut writer)?;
    let (gz, diff_id, _) = writer.finish();
    let (file, digest, size) = gz.finish()?.into_inner().map_err(|e| e.into_error())?.finish();
    file.sync_all()?;
    Ok((digest, size, diff_id))
}

fn gzip<W: Write>(inner: W) -> Gzip<W> {
    // No name, mtime 0, OS byte 255 ("unknown"): nothing of the host in the header.
    let encoder = GzBuilder::new().mtime(0).operating_system(255).write(inner, Compression::new(LAYER_COMPRESSION));
    Gzip { encoder, block: Vec::with_capacity(BLOCK) }
}

/// A gzip writer that hands its encoder exactly `BLOCK` bytes at a time.
struct Gzip<W: Write> {
    encoder: flate2::write::GzEncoder<W>,
    block: Vec<u8>,
}

impl<W: Write> Gzip<W> {
    fn finish(mut self) -> io::Result<W> {
        self.encoder.write_all(&self.block)?;
        self.encoder.finish()
    }
}

impl<W: Write> Write for Gzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(BLOCK - self.block.len());
        self.block.extend_from_slice(&buf[..n]);
        if self.block.len() == BLOCK {
            self.encoder.write_all(&self.block)?;
            self.block.clear();
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(()) // flushing the encoder would end a deflate block early and change the output
    }
}

/// Every entry of the layer, by name in the tar (no leading `/`, folders ending in `/`).
fn plan(src: &Path, dest: &str) -> Result<BTreeMap<String, Item>, LayerError> {
    let mut parts = Vec::new();
    for part in dest.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(LayerError::Dest(dest.to_owned())),
            p => parts.push(p),
        }
    }
    let base = parts.join("/");
    let mut items = BTreeMap::new();
    let meta = std::fs::metadata(src)
        .map_err(|source| LayerError::Io { what: format!("cannot read {}", src.display()), source })?;
    if meta.is_dir() {
        for entry in walk::collect(src, &[Glob::any()], &[], false)? {
            let name = if base.is_empty() { entry.name.clone() } else { format!("{base}/{}", entry.name) };
            let item = match entry.kind {
                EntryKind::File { executable, .. } => Item::File { path: entry.path, executable },
                EntryKind::Symlink { target } => Item::Link { target },
            };
            items.insert(name, item);
        }
        if !base.is_empty() {
            items.insert(format!("{base}/"), Item::Dir);
        }
    } else {
        let file_name = src.file_name().and_then(|n| n.to_str()).unwrap_or("file");
        let name = match (dest.ends_with('/'), base.is_empty()) {
            (true, true) => file_name.to_owned(),
            (true, false) => format!("{base}/{file_name}"),
            (false, _) => base.clone(),
        };
        if name.is_empty() {
            return Err(LayerError::Dest(dest.to_owned()));
        }
        items.insert(name, Item::File { path: src.to_owned(), executable: is_executable(&meta) });
    }
    let parents: Vec<String> = items
        .keys()
        .flat_map(|name| {
            let trimmed = name.trim_end_matches('/');
            trimmed.match_indices('/').map(|(i, _)| trimmed[..=i].to_owned()).collect::<Vec<_>>()
        })
        .collect();
    for parent in parents {
        items.entry(parent).or_insert(Item::Dir);
    }
    Ok(items)
}

fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

struct Counted<R> {
    inner: R,
    read: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
#[path = "layer_tests.rs"]
mod tests;
