//! Where an image comes from: read from what a builder made (`oci_layout`, `oci_archive`,
//! `docker_archive`) or assembled by gantry (`base` plus `layers`). Every source ends as a
//! `LocalImage`: the manifest's exact bytes and digest, and each blob it references with
//! where its bytes are. Nothing here talks to the target repository; a base image is only
//! read from its own registry.

mod archive;
mod assemble;
mod base;
mod docker;
mod layer;
mod layout;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use bytes::Bytes;

use super::ImageError;
use super::digest::Digest;
use super::registry::{BlobSource, Registry};
use crate::config;

pub use layer::LayerError;

/// An image ready to push.
pub struct LocalImage {
    pub manifest: Bytes,
    pub media_type: String,
    pub digest: Digest,
    /// The config blob, then the layers, each digest once.
    pub blobs: Vec<Blob>,
    /// What it was made from, for humans: `OCI layout build/image`, `scratch + 2 layers`.
    pub source: String,
}

/// A blob the manifest references.
pub struct Blob {
    pub digest: Digest,
    pub size: u64,
    pub origin: Origin,
    /// Where it was read from, for error messages.
    pub what: String,
}

pub enum Origin {
    Local(BlobSource),
    /// A base image's layer, still in its registry: mounted or copied at push time.
    Remote {
        registry: Arc<Registry>,
        repository: String,
    },
}

/// What every source may need.
pub struct Context<'a> {
    pub image: &'a str,
    pub project_dir: &'a Path,
    /// Working folder for files gantry writes (assembled and converted layers).
    pub scratch: &'a Path,
    pub source_date_epoch: i64,
    /// The target registry: a base image kept there is read with the same login.
    pub target: &'a Arc<Registry>,
    pub cancel: &'a Arc<AtomicBool>,
}

impl Context<'_> {
    fn missing(&self, key: &'static str, path: PathBuf) -> ImageError {
        ImageError::SourceMissing { image: self.image.to_owned(), key, path }
    }

    fn source_error(&self, message: impl Into<String>) -> ImageError {
        ImageError::Source { image: self.image.to_owned(), message: message.into() }
    }

    fn corrupt(&self, location: String, expected: &Digest, actual: Digest) -> ImageError {
        ImageError::Corrupt { image: self.image.to_owned(), location, expected: expected.clone(), actual }
    }

    fn read_error(&self, what: &str, source: std::io::Error) -> ImageError {
        ImageError::Read { context: format!("image `{}`: cannot read {what}", self.image), source }
    }
}

/// Reads or assembles the image `image` describes.
pub async fn prepare(image: &config::Image, ctx: &Context<'_>) -> Result<LocalImage, ImageError> {
    let path = |rel: &config::RelPath| ctx.project_dir.join(rel.as_str());
    if let Some(rel) = &image.oci_layout {
        let dir = path(rel);
        if !dir.is_dir() {
            return Err(ctx.missing("oci_layout", dir));
        }
        return layout::read(layout::Store::Dir(dir), &format!("OCI layout {rel}"), ctx);
    }
    if let Some(rel) = &image.oci_archive {
        let file = path(rel);
        if !file.is_file() {
            return Err(ctx.missing("oci_archive", file));
        }
        let index = archive::TarIndex::open(&file).map_err(|e| ctx.read_error(&format!("OCI archive {rel}"), e))?;
        return layout::read(layout::Store::Tar(index), &format!("OCI archive {rel}"), ctx);
    }
    if let Some(rel) = &image.docker_archive {
        let file = path(rel);
        if !file.is_file() {
            return Err(ctx.missing("docker_archive", file));
        }
        return docker::read(&file, &format!("docker archive {rel}"), ctx).await;
    }
    match &image.base {
        Some(base) => assemble::assemble(base, image, ctx).await,
        None => Err(ctx.source_error("no source (validation should have caught this)")),
    }
}
