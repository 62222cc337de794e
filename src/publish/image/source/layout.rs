//! Reading an OCI image layout, as a folder or as a tar archive of one: `index.json` names
//! the manifest, the manifest names the config and layers, all under `blobs/sha256/`.
//! The manifest and config are read and checked against their digests here; layers are
//! checked for size here and hashed while they upload (a mismatch stops the push before
//! anything is tagged), so a large layer is read once.

use std::path::PathBuf;

use bytes::Bytes;

use super::archive::TarIndex;
use super::{Blob, Context, LocalImage, Origin};
use crate::publish::image::ImageError;
use crate::publish::image::digest::Digest;
use crate::publish::image::oci::{Descriptor, Index, Manifest, Probe, is_index, pick_platform};
use crate::publish::image::registry::BlobSource;

pub enum Store {
    Dir(PathBuf),
    Tar(TarIndex),
}

impl Store {
    fn read(&self, name: &str) -> std::io::Result<Vec<u8>> {
        match self {
            Self::Dir(dir) => std::fs::read(dir.join(name)),
            Self::Tar(index) => index.read(name),
        }
    }

    /// Where blob `digest` is, and its size on disk.
    fn blob(&self, digest: &Digest) -> Option<(BlobSource, u64)> {
        let name = format!("blobs/sha256/{}", digest.hex());
        match self {
            Self::Dir(dir) => {
                let path = dir.join(name);
                let size = std::fs::metadata(&path).ok().filter(|m| m.is_file())?.len();
                Some((BlobSource::File { path, offset: 0 }, size))
            }
            Self::Tar(index) => {
                let (offset, size) = index.locate(&name)?;
                Some((BlobSource::File { path: index.path.clone(), offset }, size))
            }
        }
    }
}

pub fn read(store: Store, label: &str, ctx: &Context<'_>) -> Result<LocalImage, ImageError> {
    let index = store.read("index.json").map_err(|e| {
        ctx.source_error(format!("{label} has no readable index.json ({e}): is it an OCI image layout?"))
    })?;
    let index: Index =
        serde_json::from_slice(&index).map_err(|e| ctx.source_error(format!("{label}: index.json: {e}")))?;
    let mut descriptor = choose(&index, label, ctx)?.clone();
    let mut bytes = read_verified(&store, &descriptor, label, ctx)?;
    let mut media_type = descriptor.media_type.clone();
    if is_index(&media_type) {
        let nested: Index =
            serde_json::from_slice(&bytes).map_err(|e| ctx.source_error(format!("{label}: image index: {e}")))?;
        if nested.manifests.len() != 1 {
            return Err(ctx.source_error(format!(
                "{label} holds a multi-platform image ({} manifests); gantry pushes single-platform images",
                nested.manifests.len()
            )));
        }
        descriptor = nested.manifests[0].clone();
        bytes = read_verified(&store, &descriptor, label, ctx)?;
        media_type = descriptor.media_type.clone();
    }
    if media_type.is_empty() {
        media_type = Probe::kind(&bytes).map_err(|e| ctx.source_error(format!("{label}: manifest: {e}")))?;
    }
    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|e| ctx.source_error(format!("{label}: manifest: {e}")))?;

    let config = read_verified(&store, &manifest.config, label, ctx)?;
    let mut blobs = vec![Blob {
        digest: manifest.config.digest.clone(),
        size: manifest.config.size,
        origin: Origin::Local(BlobSource::Memory(Bytes::from(config))),
        what: format!("{label} (config)"),
    }];
    for (i, layer) in manifest.layers.iter().enumerate() {
        if blobs.iter().any(|b| b.digest == layer.digest) {
            continue;
        }
        let (source, size) = store
            .blob(&layer.digest)
            .ok_or_else(|| ctx.source_error(format!("{label}: layer {} ({}) is missing", i + 1, layer.digest)))?;
        if size != layer.size {
            return Err(ctx.source_error(format!(
                "{label}: layer {} ({}) is {size} bytes, but the manifest says {}",
                i + 1,
                layer.digest,
                layer.size
            )));
        }
        let what = format!("{label} (layer {})", i + 1);
        blobs.push(Blob { digest: layer.digest.clone(), size, origin: Origin::Local(source), what });
    }
    Ok(LocalImage {
        digest: Digest::of(&bytes),
        manifest: Bytes::from(bytes),
        media_type,
        blobs,
        source: label.to_owned(),
    })
}

/// The manifest `index.json` points at: the only one, or the linux/amd64 one.
fn choose<'i>(index: &'i Index, label: &str, ctx: &Context<'_>) -> Result<&'i Descriptor, ImageError> {
    match index.manifests.as_slice() {
        [] => Err(ctx.source_error(format!("{label}: index.json lists no image"))),
        _ => pick_platform(index, "linux", "amd64").ok_or_else(|| {
            ctx.source_error(format!(
                "{label}: index.json lists {} images and none is linux/amd64; keep one image in the layout",
                index.manifests.len()
            ))
        }),
    }
}

/// A small blob's bytes, checked against its descriptor.
fn read_verified(store: &Store, d: &Descriptor, label: &str, ctx: &Context<'_>) -> Result<Vec<u8>, ImageError> {
    let name = format!("blobs/sha256/{}", d.digest.hex());
    let bytes = store.read(&name).map_err(|e| ctx.read_error(&format!("{name} in {label}"), e))?;
    let actual = Digest::of(&bytes);
    if actual != d.digest {
        return Err(ctx.corrupt(format!("{label} ({name})"), &d.digest, actual));
    }
    Ok(bytes)
}
