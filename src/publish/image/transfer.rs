//! Moving an image's blobs into the target repository, several at once: a blob already
//! there is skipped (HEAD), a base layer kept in the same registry is mounted from its
//! repository, a base layer kept elsewhere is downloaded (digest checked) and uploaded,
//! and a local blob is uploaded (`registry/upload.rs`). The first failure stops the rest.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::registry::{BlobSource, Progress, Registry, RegistryError};
use super::source::{Blob, Origin};
use super::{BlobCounts, BlobOutcome, Event, Events, ImageError};

/// Blobs in flight at once (as skopeo and docker do).
const PARALLEL: usize = 6;

/// Where blobs go, shared by the upload tasks.
pub struct Transfer {
    pub image: String,
    pub registry: Arc<Registry>,
    pub repository: String,
    pub scratch: PathBuf,
    pub events: Events,
    pub cancel: Arc<AtomicBool>,
}

/// Transfers every blob; returns the counts and the bytes uploaded.
pub async fn blobs(t: Arc<Transfer>, blobs: Vec<Blob>) -> Result<(BlobCounts, u64), ImageError> {
    let bytes: u64 = blobs.iter().map(|b| b.size).sum();
    (t.events)(Event::Transferring { image: t.image.clone(), blobs: blobs.len(), bytes });
    let limit = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    let mut tasks = tokio::task::JoinSet::new();
    for blob in blobs {
        let (t, limit) = (Arc::clone(&t), Arc::clone(&limit));
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await.expect("never closed");
            one(&t, blob).await
        });
    }
    let (mut counts, mut uploaded) = (BlobCounts::default(), 0);
    while let Some(done) = tasks.join_next().await {
        // Returning early drops the JoinSet, which aborts the transfers still running.
        let (outcome, sent) = done.expect("transfers do not panic")?;
        uploaded += sent;
        match outcome {
            BlobOutcome::Uploaded => counts.uploaded += 1,
            BlobOutcome::Skipped => counts.skipped += 1,
            BlobOutcome::Mounted => counts.mounted += 1,
        }
    }
    Ok((counts, uploaded))
}

async fn one(t: &Transfer, blob: Blob) -> Result<(BlobOutcome, u64), ImageError> {
    let fail = |e: RegistryError| match e {
        RegistryError::DigestMismatch { expected, actual } => {
            ImageError::Corrupt { image: t.image.clone(), location: blob.what.clone(), expected, actual }
        }
        RegistryError::Interrupted => ImageError::Interrupted,
        other => ImageError::Registry(other),
    };
    let (repo, digest) = (t.repository.as_str(), &blob.digest);
    let events = Arc::clone(&t.events);
    let progress: Progress = Arc::new(move |n| events(Event::Progress { bytes: n }));
    let result = if t.registry.blob_exists(repo, digest).await.map_err(fail)? {
        (BlobOutcome::Skipped, 0)
    } else {
        match &blob.origin {
            Origin::Local(source) => {
                t.registry.upload(repo, digest, blob.size, source, &progress, &t.cancel).await.map_err(fail)?;
                (BlobOutcome::Uploaded, blob.size)
            }
            Origin::Remote { registry, repository }
                if registry.host() == t.registry.host()
                    && t.registry.mount(repo, digest, repository).await.map_err(fail)? =>
            {
                (BlobOutcome::Mounted, 0)
            }
            Origin::Remote { registry, repository } => {
                let path = t.scratch.join(format!("base-{}", digest.hex()));
                registry.download(repository, digest, &path).await.map_err(fail)?;
                let source = BlobSource::File { path: path.clone(), offset: 0 };
                t.registry.upload(repo, digest, blob.size, &source, &progress, &t.cancel).await.map_err(fail)?;
                let _ = std::fs::remove_file(&path);
                (BlobOutcome::Uploaded, blob.size)
            }
        }
    };
    (t.events)(Event::Blob { digest: digest.clone(), size: blob.size, outcome: result.0 });
    Ok(result)
}
