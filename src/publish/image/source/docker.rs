//! Reading a `docker save` archive: `manifest.json` names the config and the layer tars.
//! The image becomes an OCI manifest with the same config bytes and the same layers:
//! gzip'd layers are pushed as they are; uncompressed ones (what `docker save` writes) are
//! gzip'd reproducibly, on all cores. Each layer's uncompressed digest is checked against
//! the config's `rootfs.diff_ids`.

use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::archive::TarIndex;
use super::{Blob, Context, LocalImage, Origin, layer};
use crate::publish::image::ImageError;
use crate::publish::image::digest::{Digest, HashWriter};
use crate::publish::image::oci::{Descriptor, Manifest, OCI_CONFIG, OCI_LAYER_GZIP};
use crate::publish::image::registry::BlobSource;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    config: String,
    layers: Vec<String>,
}

#[derive(Deserialize)]
struct Config {
    rootfs: RootFs,
}

#[derive(Deserialize)]
struct RootFs {
    diff_ids: Vec<Digest>,
}

pub async fn read(path: &Path, label: &str, ctx: &Context<'_>) -> Result<LocalImage, ImageError> {
    let index = TarIndex::open(path).map_err(|e| ctx.read_error(label, e))?;
    let manifest = index.read("manifest.json").map_err(|e| ctx.read_error(&format!("manifest.json in {label}"), e))?;
    let entries: Vec<Entry> =
        serde_json::from_slice(&manifest).map_err(|e| ctx.source_error(format!("{label}: manifest.json: {e}")))?;
    let [entry] = entries.as_slice() else {
        return Err(ctx.source_error(format!("{label} holds {} images; save exactly one", entries.len())));
    };
    let config = index.read(&entry.config).map_err(|e| ctx.read_error(&format!("{} in {label}", entry.config), e))?;
    let config_digest = Digest::of(&config);
    let named = entry.config.trim_end_matches(".json").rsplit('/').next().unwrap_or_default();
    if named.len() == 64 && named != config_digest.hex() {
        let expected = format!("sha256:{named}").parse().map_err(|e: String| ctx.source_error(e))?;
        return Err(ctx.corrupt(format!("{label} ({})", entry.config), &expected, config_digest));
    }
    let parsed: Config =
        serde_json::from_slice(&config).map_err(|e| ctx.source_error(format!("{label}: {}: {e}", entry.config)))?;
    if parsed.rootfs.diff_ids.len() != entry.layers.len() {
        return Err(ctx.source_error(format!(
            "{label}: the config lists {} layers, manifest.json {}",
            parsed.rootfs.diff_ids.len(),
            entry.layers.len()
        )));
    }

    let index = Arc::new(index);
    let limit = Arc::new(tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())));
    let mut jobs = Vec::new();
    for (i, name) in entry.layers.iter().enumerate() {
        let (offset, size) =
            index.locate(name).ok_or_else(|| ctx.source_error(format!("{label}: layer {name} is missing")))?;
        let (archive, out) = (index.path.clone(), ctx.scratch.join(format!("{}-docker-{i}.tar.gz", ctx.image)));
        let (limit, cancel) = (Arc::clone(&limit), Arc::clone(ctx.cancel));
        jobs.push(tokio::spawn(async move {
            let _permit = limit.acquire_owned().await.expect("never closed");
            tokio::task::spawn_blocking(move || convert(&archive, offset, size, &out, &cancel)).await
        }));
    }
    let mut layers = Vec::new();
    let mut blobs = vec![Blob {
        digest: config_digest.clone(),
        size: config.len() as u64,
        origin: Origin::Local(BlobSource::Memory(Bytes::from(config.clone()))),
        what: format!("{label} ({})", entry.config),
    }];
    for (i, job) in jobs.into_iter().enumerate() {
        let converted = job.await.expect("no panic").expect("no panic");
        let what = format!("{label} ({})", entry.layers[i]);
        let (digest, size, diff_id, source) = converted.map_err(|e| {
            if ctx.cancel.load(Ordering::Relaxed) { ImageError::Interrupted } else { ctx.read_error(&what, e) }
        })?;
        if diff_id != parsed.rootfs.diff_ids[i] {
            return Err(ctx.corrupt(what, &parsed.rootfs.diff_ids[i], diff_id));
        }
        layers.push(Descriptor::new(OCI_LAYER_GZIP, digest.clone(), size));
        if !blobs.iter().any(|b| b.digest == digest) {
            blobs.push(Blob { digest, size, origin: Origin::Local(source), what });
        }
    }
    let manifest = Manifest::oci(Descriptor::new(OCI_CONFIG, config_digest, config.len() as u64), layers).to_bytes();
    Ok(LocalImage {
        digest: Digest::of(&manifest),
        manifest: Bytes::from(manifest),
        media_type: crate::publish::image::oci::OCI_MANIFEST.to_owned(),
        blobs,
        source: label.to_owned(),
    })
}

/// One layer: the gzip digest and size, the tar's digest, and where the gzip'd bytes are.
fn convert(
    archive: &Path,
    offset: u64,
    size: u64,
    out: &Path,
    cancel: &AtomicBool,
) -> io::Result<(Digest, u64, Digest, BlobSource)> {
    let mut file = std::fs::File::open(archive)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut reader = Cancellable { inner: file.take(size), cancel };
    let mut head = [0u8; 2];
    let got = reader.read(&mut head)?;
    let whole = io::Cursor::new(head[..got].to_vec()).chain(reader);
    if head[..got] == [0x1f, 0x8b] {
        // Already gzip'd: pushed as it is. Hash it, and hash what it inflates to.
        let mut compressed = Hashing { inner: whole, hasher: Sha256::new() };
        let mut tar = HashWriter::new(io::sink());
        io::copy(&mut flate2::read::GzDecoder::new(&mut compressed), &mut tar)?;
        io::copy(&mut compressed, &mut io::sink())?;
        let (_, diff_id, _) = tar.finish();
        let digest = Digest::from_hasher(compressed.hasher);
        Ok((digest, size, diff_id, BlobSource::File { path: archive.to_owned(), offset }))
    } else {
        let (digest, gz_size, diff_id) = layer::compress(whole, out)?;
        Ok((digest, gz_size, diff_id, BlobSource::File { path: out.to_owned(), offset: 0 }))
    }
}

struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Fails reads once Ctrl-C was pressed (not with `ErrorKind::Interrupted`: `io::copy`
/// retries those).
struct Cancellable<'c, R> {
    inner: R,
    cancel: &'c AtomicBool,
}

impl<R: Read> Read for Cancellable<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(io::Error::other("interrupted"));
        }
        self.inner.read(buf)
    }
}
