//! Uploading one blob. Small blobs (16 MiB or less) are read into memory, checked against
//! their digest, and sent with one PUT. Larger ones go in chunks of 32 MiB, each a PATCH
//! whose body streams from disk through a bounded channel (a few MiB in flight whatever the
//! blob's size), hashed on the way, so a blob that does not match its digest is caught
//! before the final PUT commits it. A chunk that fails transiently is resumed from what the
//! registry says it stored (`GET` on the session: `Range: 0-N`); when the registry no
//! longer knows the session (docker-registry drops one whose PATCH broke off), the blob
//! starts again in a new one.
//!
//! `GANTRY_IMAGE_CHUNK_SIZE` (bytes) lowers both limits, for tests of the chunked path.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use reqwest::{StatusCode, Url};
use sha2::{Digest as _, Sha256};

use super::{Registry, RegistryError, push_scope, retry};
use crate::publish::image::digest::Digest;

/// Where a blob's bytes are.
#[derive(Debug, Clone)]
pub enum BlobSource {
    Memory(Bytes),
    /// A file, or a stretch of one (a blob inside an uncompressed tar archive).
    File {
        path: PathBuf,
        offset: u64,
    },
}

/// Called with each run of bytes sent (from reader threads).
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

const OCTETS: &str = "application/octet-stream";
const READ_SIZE: usize = 256 << 10;

fn chunk_size() -> u64 {
    std::env::var("GANTRY_IMAGE_CHUNK_SIZE").ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(32 << 20)
}

impl Registry {
    /// Uploads the blob `digest` of `size` bytes into `repository`.
    pub async fn upload(
        &self,
        repository: &str,
        digest: &Digest,
        size: u64,
        source: &BlobSource,
        progress: &Progress,
        cancel: &Arc<AtomicBool>,
    ) -> Result<(), RegistryError> {
        let chunk = chunk_size();
        match source {
            BlobSource::File { path, offset } if size > chunk.min(16 << 20) => {
                self.upload_chunked(repository, digest, size, (path, *offset), chunk, progress, cancel).await
            }
            BlobSource::File { path, offset } => {
                let (path, offset) = (path.clone(), *offset);
                let bytes = tokio::task::spawn_blocking(move || read_region(&path, offset, size))
                    .await
                    .expect("reading does not panic")?;
                self.upload_whole(repository, digest, Bytes::from(bytes), progress).await
            }
            BlobSource::Memory(bytes) => self.upload_whole(repository, digest, bytes.clone(), progress).await,
        }
    }

    async fn upload_whole(
        &self,
        repository: &str,
        digest: &Digest,
        bytes: Bytes,
        progress: &Progress,
    ) -> Result<(), RegistryError> {
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(RegistryError::DigestMismatch { expected: digest.clone(), actual });
        }
        let mut url = self.start_upload(repository).await?;
        url.query_pairs_mut().append_pair("digest", digest.as_str());
        let len = bytes.len();
        let response = self
            .send("upload a blob", &push_scope(repository), |c| {
                c.put(url.clone()).header(CONTENT_TYPE, OCTETS).header(CONTENT_LENGTH, len).body(bytes.clone())
            })
            .await?;
        // A retried PUT may find its session already committed by the attempt that timed out.
        if !response.status().is_success() && !self.blob_exists(repository, digest).await? {
            return Err(self.unexpected("upload a blob", response).await);
        }
        progress(len as u64);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn upload_chunked(
        &self,
        repository: &str,
        digest: &Digest,
        size: u64,
        (path, base): (&Path, u64),
        chunk: u64,
        progress: &Progress,
        cancel: &Arc<AtomicBool>,
    ) -> Result<(), RegistryError> {
        let scope = push_scope(repository);
        let mut location = self.start_upload(repository).await?;
        let (mut offset, mut hasher, mut failures) = (0u64, Sha256::new(), 0u32);
        while offset < size {
            let end = (offset + chunk).min(size);
            let (body, reader) =
                region_body(path.to_owned(), base + offset, end - offset, hasher.clone(), progress, cancel);
            let mut request = self
                .http
                .patch(location.clone())
                .header(CONTENT_TYPE, OCTETS)
                .header(CONTENT_LENGTH, end - offset)
                .header(CONTENT_RANGE, format!("{offset}-{}", end - 1))
                .body(body);
            if let Some(header) = self.authorization(&scope).await? {
                request = request.header(AUTHORIZATION, header);
            }
            let outcome = request.send().await;
            let read = reader.await.expect("reading does not panic");
            match outcome {
                Ok(response) if response.status() == StatusCode::ACCEPTED => {
                    hasher = read?;
                    location = self.location(&response, "upload a blob chunk")?;
                    offset = end;
                    failures = 0;
                    continue;
                }
                Ok(response) if response.status() == StatusCode::UNAUTHORIZED && failures == 0 => {
                    self.reauthenticate(&response, &scope).await?;
                }
                Ok(response) if retry::transient_status(response.status()) => {}
                Ok(response) => return Err(self.unexpected("upload a blob chunk", response).await),
                Err(_) if matches!(read, Err(RegistryError::Interrupted | RegistryError::Local { .. })) => {
                    return Err(read.expect_err("matched an error"));
                }
                Err(e) if retry::transient_error(&e) => {}
                Err(source) => {
                    let operation = "upload a blob chunk".into();
                    return Err(RegistryError::Transport { registry: self.host.clone(), operation, source });
                }
            }
            failures += 1;
            if failures >= retry::MAX_ATTEMPTS {
                return Err(RegistryError::Protocol {
                    registry: self.host.clone(),
                    operation: "upload a blob".into(),
                    detail: format!("a chunk failed {failures} times"),
                });
            }
            tokio::time::sleep(retry::backoff(failures, None)).await;
            match self.upload_status(&location).await {
                Ok((resumed, stored)) if (offset..=size).contains(&stored) => {
                    location = resumed;
                    if stored > offset {
                        let (path, from, len, h) = (path.to_owned(), base + offset, stored - offset, hasher.clone());
                        hasher = tokio::task::spawn_blocking(move || hash_region(&path, from, len, h))
                            .await
                            .expect("hashing does not panic")?;
                        offset = stored;
                    }
                    tracing::debug!(%digest, offset, failures, "resuming a chunked upload");
                }
                // The session cannot go on (docker-registry invalidates one whose PATCH broke
                // off mid-body): this blob starts again in a new session.
                Ok(_) | Err(RegistryError::Status { .. }) => {
                    tracing::debug!(%digest, failures, "restarting a chunked upload");
                    location = self.start_upload(repository).await?;
                    (offset, hasher) = (0, Sha256::new());
                }
                Err(e) => return Err(e),
            }
        }
        let actual = Digest::from_hasher(hasher);
        if &actual != digest {
            let _ = self.send("cancel an upload", &scope, |c| c.delete(location.clone())).await;
            return Err(RegistryError::DigestMismatch { expected: digest.clone(), actual });
        }
        location.query_pairs_mut().append_pair("digest", digest.as_str());
        let response =
            self.send("finish an upload", &scope, |c| c.put(location.clone()).header(CONTENT_LENGTH, 0)).await?;
        if !response.status().is_success() && !self.blob_exists(repository, digest).await? {
            return Err(self.unexpected("finish an upload", response).await);
        }
        Ok(())
    }

    /// How many bytes the registry holds for an upload session, and its current URL.
    async fn upload_status(&self, session: &Url) -> Result<(Url, u64), RegistryError> {
        let operation = "check an upload";
        let response = self.send(operation, &Vec::new(), |c| c.get(session.clone())).await?;
        if !response.status().is_success() {
            return Err(self.unexpected(operation, response).await);
        }
        let range = response.headers().get(RANGE).and_then(|v| v.to_str().ok()).unwrap_or("0--1").to_owned();
        let stored = range.split_once('-').and_then(|(_, end)| end.parse::<i64>().ok()).map_or(0, |end| end + 1);
        let location = self.location(&response, operation).unwrap_or_else(|_| session.clone());
        Ok((location, stored.max(0) as u64))
    }
}

/// A request body streaming `len` bytes of `path` from `offset`, read and hashed (into
/// `hasher`) on a blocking thread; the thread hands back the hasher when all was read.
fn region_body(
    path: PathBuf,
    offset: u64,
    len: u64,
    mut hasher: Sha256,
    progress: &Progress,
    cancel: &Arc<AtomicBool>,
) -> (reqwest::Body, tokio::task::JoinHandle<Result<Sha256, RegistryError>>) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let (progress, cancel) = (Arc::clone(progress), Arc::clone(cancel));
    let reader = tokio::task::spawn_blocking(move || {
        let local = |source| RegistryError::Local { what: path.display().to_string(), source };
        let mut file = std::fs::File::open(&path).map_err(local)?;
        file.seek(SeekFrom::Start(offset)).map_err(local)?;
        let mut left = len;
        while left > 0 {
            if cancel.load(Ordering::Relaxed) {
                let _ = tx.blocking_send(Err(std::io::Error::other("interrupted")));
                return Err(RegistryError::Interrupted);
            }
            let mut buf = vec![0; READ_SIZE.min(left as usize)];
            if let Err(e) = file.read_exact(&mut buf) {
                let _ = tx.blocking_send(Err(std::io::Error::new(e.kind(), e.to_string())));
                return Err(local(e));
            }
            hasher.update(&buf);
            left -= buf.len() as u64;
            progress(buf.len() as u64);
            if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                // The request ended early; its own error says why.
                return Err(RegistryError::Protocol {
                    registry: String::new(),
                    operation: "upload a blob chunk".into(),
                    detail: "the request ended before the chunk was sent".into(),
                });
            }
        }
        Ok(hasher)
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    (reqwest::Body::wrap_stream(stream), reader)
}

fn read_region(path: &Path, offset: u64, len: u64) -> Result<Vec<u8>, RegistryError> {
    let local = |source| RegistryError::Local { what: path.display().to_string(), source };
    let mut file = std::fs::File::open(path).map_err(local)?;
    file.seek(SeekFrom::Start(offset)).map_err(local)?;
    let mut buf = vec![0; len as usize];
    file.read_exact(&mut buf).map_err(local)?;
    Ok(buf)
}

fn hash_region(path: &Path, offset: u64, len: u64, mut hasher: Sha256) -> Result<Sha256, RegistryError> {
    let local = |source| RegistryError::Local { what: path.display().to_string(), source };
    let mut file = std::fs::File::open(path).map_err(local)?;
    file.seek(SeekFrom::Start(offset)).map_err(local)?;
    let mut reader = file.take(len);
    let mut buf = vec![0; READ_SIZE];
    loop {
        let n = reader.read(&mut buf).map_err(local)?;
        if n == 0 {
            return Ok(hasher);
        }
        hasher.update(&buf[..n]);
    }
}
