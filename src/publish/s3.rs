//! The S3 operations `publish` needs, each with its integrity check and its errors
//! sorted into what a user can act on.
//!
//! Integrity: every put and every part carries its SHA-256 (`x-amz-checksum-sha256`),
//! every object also records the whole file's SHA-256 in `x-amz-meta-gantry-sha256`,
//! and after each upload gantry reads the checksum back (`HeadObject` with checksum
//! mode) and compares it with what it computed: the server is not trusted to have
//! validated anything (moto, for one, does not).
//!
//! Large files go up as multipart uploads whose parts are read from disk in parallel
//! (at most `PART_CONCURRENCY` at a time, each streamed, never buffered whole), so
//! memory stays small whatever the size. An upload that fails or is interrupted is
//! aborted; uploads of the same key left behind by a killed run are aborted before a
//! new one starts.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart};
use base64::Engine;
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};

/// Files larger than this are uploaded in parts.
pub const MULTIPART_THRESHOLD: u64 = 16 << 20;
/// Smallest part (S3's floor is 5 MiB; bigger parts mean fewer requests).
const MIN_PART: u64 = 16 << 20;
/// S3 allows at most 10,000 parts.
const MAX_PARTS: u64 = 10_000;
/// Parts in flight at once, per object.
const PART_CONCURRENCY: usize = 8;
/// Multipart uploads of the same key older than this are taken as abandoned and aborted.
const ABANDONED_AFTER: Duration = Duration::from_secs(15 * 60);
/// Object metadata key holding the whole file's hex SHA-256.
pub const SHA256_META: &str = "gantry-sha256";

/// What is stored under a key.
#[derive(Debug, Clone)]
pub struct Remote {
    pub size: u64,
    /// `x-amz-meta-gantry-sha256`: the whole file's hex SHA-256, as gantry recorded it.
    pub recorded_sha256: Option<String>,
    /// S3's own checksum: base64 SHA-256 of the object, or of its parts (`...-N`).
    pub checksum_sha256: Option<String>,
    pub etag: Option<String>,
    pub version_id: Option<String>,
}

/// A condition on a write.
#[derive(Debug, Clone)]
pub enum Condition {
    /// Only if no object has the key (`If-None-Match: *`): the first writer wins.
    Absent,
    /// Only if the object is still this one (`If-Match: ETAG`).
    Unchanged(String),
}

/// A file to upload, with what gantry knows of it.
#[derive(Debug, Clone, Copy)]
pub struct LocalFile<'a> {
    pub path: &'a Path,
    pub size: u64,
    /// The whole file's SHA-256.
    pub sha256: [u8; 32],
}

/// A finished upload.
#[derive(Debug, Clone)]
pub struct Uploaded {
    pub version_id: Option<String>,
    /// The checksum S3 reported, as checked.
    pub checksum_sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error("bucket `{bucket}` does not exist (or is not visible to these credentials)")]
    NoBucket { bucket: String },
    #[error("access denied to {}{}", location(bucket, key), detail(code, message))]
    AccessDenied { bucket: String, key: String, code: String, message: String },
    #[error("s3://{bucket}/{key} was written by someone else meanwhile (precondition failed)")]
    PreconditionFailed { bucket: String, key: String },
    #[error(
        "s3://{bucket}/{key} does not hold what was uploaded: S3 reports checksum {actual}, gantry computed {expected}"
    )]
    Integrity { bucket: String, key: String, expected: String, actual: String },
    #[error("cannot read {}", path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("interrupted")]
    Interrupted,
    #[error("{op} s3://{bucket}/{key} failed{}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    Request {
        op: &'static str,
        bucket: String,
        key: String,
        status: Option<u16>,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// `bucket `b`` for bucket-level calls, `s3://b/key` for objects.
fn location(bucket: &str, key: &str) -> String {
    if key.is_empty() { format!("bucket `{bucket}`") } else { format!("s3://{bucket}/{key}") }
}

/// ` (Code: message)` when S3 said why; HEAD answers carry no body, so often it does not.
fn detail(code: &str, message: &str) -> String {
    match (code.is_empty(), message.is_empty()) {
        (true, _) => String::new(),
        (false, true) => format!(" ({code})"),
        (false, false) => format!(" ({code}: {message})"),
    }
}

/// The release bucket.
#[derive(Debug, Clone)]
pub struct Bucket {
    client: aws_sdk_s3::Client,
    pub name: String,
}

impl Bucket {
    pub fn new(client: aws_sdk_s3::Client, name: impl Into<String>) -> Self {
        Self { client, name: name.into() }
    }

    /// Fails clearly when the bucket is missing or not ours to use.
    pub async fn check(&self) -> Result<(), S3Error> {
        match self.client.head_bucket().bucket(&self.name).send().await {
            Ok(_) => Ok(()),
            Err(e) if status(&e) == Some(404) => Err(S3Error::NoBucket { bucket: self.name.clone() }),
            Err(e) => Err(self.classify("HeadBucket", "", e)),
        }
    }

    /// What is stored under `key`, if anything, with S3's checksum.
    pub async fn head(&self, key: &str) -> Result<Option<Remote>, S3Error> {
        let request = self.client.head_object().bucket(&self.name).key(key).checksum_mode(ChecksumMode::Enabled);
        match request.send().await {
            Ok(out) => Ok(Some(Remote {
                size: out.content_length().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                recorded_sha256: out.metadata().and_then(|m| m.get(SHA256_META)).cloned(),
                checksum_sha256: out.checksum_sha256().map(str::to_owned),
                etag: out.e_tag().map(str::to_owned),
                version_id: out.version_id().map(str::to_owned),
            })),
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(self.classify("HeadObject", key, e)),
        }
    }

    /// Uploads the file at `path` (of `size` bytes, whole-file SHA-256 `sha256`) under
    /// `key`, in parts when large, then checks what S3 stored. `progress` is called
    /// with bytes as they are sent.
    pub async fn put_file(
        &self,
        key: &str,
        file: &LocalFile<'_>,
        condition: Option<Condition>,
        cancel: &AtomicBool,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Uploaded, S3Error> {
        let LocalFile { path, size, sha256 } = *file;
        let (version_id, expected) = if size > MULTIPART_THRESHOLD {
            self.put_multipart(key, file, condition, cancel, progress).await?
        } else {
            let body = file_range(path, 0, size).await?;
            let mut request = self
                .client
                .put_object()
                .bucket(&self.name)
                .key(key)
                .body(body)
                .content_length(i64::try_from(size).unwrap_or(i64::MAX))
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .checksum_sha256(b64(&sha256))
                .content_type(content_type(key))
                .metadata(SHA256_META, hex(&sha256));
            request = match condition {
                Some(Condition::Absent) => request.if_none_match("*"),
                Some(Condition::Unchanged(etag)) => request.if_match(etag),
                None => request,
            };
            let out = request.send().await.map_err(|e| self.classify("PutObject", key, e))?;
            progress(size);
            (out.version_id().map(str::to_owned), b64(&sha256))
        };
        let checksum = self.verify(key, file, &expected, version_id.as_deref()).await?;
        Ok(Uploaded { version_id, checksum_sha256: checksum })
    }

    async fn put_multipart(
        &self,
        key: &str,
        file: &LocalFile<'_>,
        condition: Option<Condition>,
        cancel: &AtomicBool,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<(Option<String>, String), S3Error> {
        let LocalFile { path, size, sha256 } = *file;
        self.abort_abandoned(key).await;
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.name)
            .key(key)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .content_type(content_type(key))
            .metadata(SHA256_META, hex(&sha256))
            .send()
            .await
            .map_err(|e| self.classify("CreateMultipartUpload", key, e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_owned();

        let result = self.upload_parts(key, path, size, &upload_id, cancel, progress).await;
        let parts = match result {
            Ok(parts) => parts,
            Err(e) => {
                self.abort(key, &upload_id).await;
                return Err(e);
            }
        };
        let composite = composite_checksum(&parts);
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(
                parts
                    .iter()
                    .map(|p| {
                        CompletedPart::builder()
                            .part_number(p.number)
                            .e_tag(&p.etag)
                            .checksum_sha256(b64(&p.sha256))
                            .build()
                    })
                    .collect(),
            ))
            .build();
        let mut request = self
            .client
            .complete_multipart_upload()
            .bucket(&self.name)
            .key(key)
            .upload_id(&upload_id)
            .multipart_upload(completed);
        request = match condition {
            Some(Condition::Absent) => request.if_none_match("*"),
            Some(Condition::Unchanged(etag)) => request.if_match(etag),
            None => request,
        };
        match request.send().await {
            Ok(out) => Ok((out.version_id().map(str::to_owned), composite)),
            Err(e) => {
                self.abort(key, &upload_id).await;
                Err(self.classify("CompleteMultipartUpload", key, e))
            }
        }
    }

    async fn upload_parts(
        &self,
        key: &str,
        path: &Path,
        size: u64,
        upload_id: &str,
        cancel: &AtomicBool,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Vec<Part>, S3Error> {
        let part_size = part_size(size);
        let count = size.div_ceil(part_size);
        let parts = futures::stream::iter(0..count)
            .map(|i| async move {
                if cancel.load(Ordering::Relaxed) {
                    return Err(S3Error::Interrupted);
                }
                let offset = i * part_size;
                let len = part_size.min(size - offset);
                let sha256 = hash_range(path, offset, len).await?;
                let number = i32::try_from(i + 1).expect("at most 10,000 parts");
                let out = self
                    .client
                    .upload_part()
                    .bucket(&self.name)
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(number)
                    .body(file_range(path, offset, len).await?)
                    .content_length(i64::try_from(len).unwrap_or(i64::MAX))
                    .checksum_algorithm(ChecksumAlgorithm::Sha256)
                    .checksum_sha256(b64(&sha256))
                    .send()
                    .await
                    .map_err(|e| self.classify("UploadPart", key, e))?;
                progress(len);
                Ok(Part { number, etag: out.e_tag().unwrap_or_default().to_owned(), sha256 })
            })
            .buffered(PART_CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(parts)
    }

    /// Reads back the checksum S3 stored and compares it with the one gantry computed.
    /// An endpoint that keeps no checksum (some S3-compatible servers, for multipart
    /// objects) is checked by reading the object back and hashing it. An object that fails
    /// the check is deleted, so a later run cannot take it for a good one.
    async fn verify(
        &self,
        key: &str,
        file: &LocalFile<'_>,
        expected: &str,
        version_id: Option<&str>,
    ) -> Result<String, S3Error> {
        let remote = self.head(key).await?;
        let (ok, actual) = match remote {
            None => (false, "(no object)".to_owned()),
            Some(r) if r.size != file.size => (false, format!("{} bytes instead of {}", r.size, file.size)),
            Some(Remote { checksum_sha256: Some(c), .. }) => (same_checksum(&c, expected), c),
            Some(_) => {
                tracing::debug!(key, "the endpoint keeps no checksum: verifying by reading the object back");
                let digest = self.read_back_sha256(key).await?;
                (digest == file.sha256, format!("{} (read back)", b64(&digest)))
            }
        };
        if ok {
            return Ok(actual);
        }
        let mut delete = self.client.delete_object().bucket(&self.name).key(key);
        if let Some(version) = version_id {
            delete = delete.version_id(version);
        }
        if let Err(e) = delete.send().await {
            tracing::warn!(key, error = %aws_sdk_s3::error::DisplayErrorContext(&e), "could not delete an object that failed its check");
        }
        Err(S3Error::Integrity {
            bucket: self.name.clone(),
            key: key.to_owned(),
            expected: expected.to_owned(),
            actual,
        })
    }

    /// SHA-256 of the object's bytes as the endpoint serves them, streamed.
    async fn read_back_sha256(&self, key: &str) -> Result<[u8; 32], S3Error> {
        let out = self
            .client
            .get_object()
            .bucket(&self.name)
            .key(key)
            .send()
            .await
            .map_err(|e| self.classify("GetObject", key, e))?;
        let mut body = out.body;
        let mut hasher = Sha256::new();
        while let Some(chunk) = body.try_next().await.map_err(|e| S3Error::Request {
            op: "GetObject",
            bucket: self.name.clone(),
            key: key.to_owned(),
            status: None,
            source: Box::new(e),
        })? {
            hasher.update(&chunk);
        }
        Ok(hasher.finalize().into())
    }

    /// Whether `remote` holds `file`: the size and recorded SHA-256 match, and so does S3's
    /// own checksum whenever the endpoint keeps one (whole-object or composite).
    pub fn holds(remote: &Remote, file: &LocalFile<'_>) -> bool {
        let recorded = remote.recorded_sha256.as_deref() == Some(hex(&file.sha256).as_str());
        let checksum = match &remote.checksum_sha256 {
            // A whole-object checksum must be this file's.
            Some(c) if file.size <= MULTIPART_THRESHOLD && !c.contains('-') => *c == b64(&file.sha256),
            // A multipart object's composite checksum was checked part by part when gantry
            // uploaded it, and objects that failed were deleted: the recorded SHA-256 decides.
            _ => true,
        };
        remote.size == file.size && recorded && checksum
    }

    /// Aborts multipart uploads of `key` that a killed run left behind. Best effort: a
    /// listing that is refused (permissions, an endpoint without the call) skips the cleanup.
    async fn abort_abandoned(&self, key: &str) {
        let listed = match self.client.list_multipart_uploads().bucket(&self.name).prefix(key).send().await {
            Ok(listed) => listed,
            Err(e) => {
                tracing::debug!(key, error = %aws_sdk_s3::error::DisplayErrorContext(&e), "cannot list multipart uploads; skipping cleanup");
                return;
            }
        };
        let now = SystemTime::now();
        for upload in listed.uploads() {
            let old = upload
                .initiated()
                .and_then(|t| SystemTime::try_from(*t).ok())
                .is_none_or(|t| now.duration_since(t).unwrap_or_default() > ABANDONED_AFTER);
            if upload.key() == Some(key)
                && old
                && let Some(id) = upload.upload_id()
            {
                tracing::info!(key, upload_id = id, "aborting an abandoned multipart upload");
                self.abort(key, id).await;
            }
        }
    }

    /// Best effort: an abort that fails is logged; S3 lifecycle rules are the backstop.
    async fn abort(&self, key: &str, upload_id: &str) {
        let result = self.client.abort_multipart_upload().bucket(&self.name).key(key).upload_id(upload_id).send().await;
        if let Err(e) = result {
            tracing::warn!(key, upload_id, error = %aws_sdk_s3::error::DisplayErrorContext(&e), "could not abort a multipart upload");
        }
    }

    fn classify<E>(
        &self,
        op: &'static str,
        key: &str,
        err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> S3Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let bucket = self.name.clone();
        let key = key.to_owned();
        let code = err.code().unwrap_or_default().to_owned();
        match (status(&err), code.as_str()) {
            (_, "NoSuchBucket") => S3Error::NoBucket { bucket },
            (Some(412), _) | (_, "PreconditionFailed") => S3Error::PreconditionFailed { bucket, key },
            (Some(403), _) | (_, "AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "ExpiredToken") => {
                let message = err.message().unwrap_or_default().to_owned();
                S3Error::AccessDenied { bucket, key, code, message }
            }
            (status, _) => S3Error::Request { op, bucket, key, status, source: Box::new(err) },
        }
    }
}

#[derive(Debug)]
struct Part {
    number: i32,
    etag: String,
    sha256: [u8; 32],
}

fn status<E, R: HasStatus>(err: &SdkError<E, R>) -> Option<u16> {
    err.raw_response().map(HasStatus::status_code)
}

trait HasStatus {
    fn status_code(&self) -> u16;
}

impl HasStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

/// Part size for a file: at least `MIN_PART`, and large enough for 10,000 parts, in whole MiB.
pub fn part_size(size: u64) -> u64 {
    let needed = size.div_ceil(MAX_PARTS).div_ceil(1 << 20) << 20;
    needed.max(MIN_PART)
}

/// The checksum S3 gives a multipart object: SHA-256 of the parts' digests, `-N`.
fn composite_checksum(parts: &[Part]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.sha256);
    }
    format!("{}-{}", b64(&hasher.finalize().into()), parts.len())
}

/// S3 writes a composite checksum with or without its `-N` suffix depending on the API.
fn same_checksum(actual: &str, expected: &str) -> bool {
    let base = |s: &str| s.split('-').next().unwrap_or_default().to_owned();
    actual == expected || base(actual) == base(expected)
}

/// A streamed body over `len` bytes of `path` from `offset`; the SDK can re-open it to retry.
async fn file_range(path: &Path, offset: u64, len: u64) -> Result<ByteStream, S3Error> {
    ByteStream::read_from()
        .path(path)
        .offset(offset)
        .length(Length::Exact(len))
        .build()
        .await
        .map_err(|e| S3Error::Read { path: path.to_owned(), source: std::io::Error::other(e) })
}

/// SHA-256 of `len` bytes of `path` from `offset`, read off the async threads.
async fn hash_range(path: &Path, offset: u64, len: u64) -> Result<[u8; 32], S3Error> {
    let owned = path.to_owned();
    let read_err = |source| S3Error::Read { path: path.to_owned(), source };
    tokio::task::spawn_blocking(move || -> std::io::Result<[u8; 32]> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = std::fs::File::open(&owned)?;
        file.seek(SeekFrom::Start(offset))?;
        crate::package::hash_reader(&mut file.take(len)).map(|(_, digest)| digest)
    })
    .await
    .map_err(|e| read_err(std::io::Error::other(e)))?
    .map_err(read_err)
}

pub fn b64(digest: &[u8; 32]) -> String {
    base64::engine::general_purpose::STANDARD.encode(digest)
}

pub fn hex(digest: &[u8; 32]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn content_type(key: &str) -> &'static str {
    match key.rsplit('.').next() {
        Some("zip") => "application/zip",
        Some("json") => "application/json",
        _ => "text/plain; charset=utf-8",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_denied_reads_well_with_and_without_a_code() {
        let denied = |key: &str, code: &str, message: &str| {
            S3Error::AccessDenied { bucket: "b".into(), key: key.into(), code: code.into(), message: message.into() }
                .to_string()
        };
        assert_eq!(denied("", "", ""), "access denied to bucket `b`");
        assert_eq!(
            denied("k.zip", "AccessDenied", "Access Denied"),
            "access denied to s3://b/k.zip (AccessDenied: Access Denied)"
        );
        assert_eq!(denied("k.zip", "ExpiredToken", ""), "access denied to s3://b/k.zip (ExpiredToken)");
    }

    #[test]
    fn parts_are_large_enough_and_few_enough() {
        assert_eq!(part_size(100 << 20), 16 << 20);
        let huge = 5u64 << 40; // 5 TiB, S3's largest object
        assert!(huge.div_ceil(part_size(huge)) <= MAX_PARTS);
        assert_eq!(part_size(huge) % (1 << 20), 0);
    }

    #[test]
    fn composite_checksum_is_the_hash_of_part_hashes() {
        let part = |n: i32, data: &[u8]| Part { number: n, etag: String::new(), sha256: Sha256::digest(data).into() };
        let parts = [part(1, b"a"), part(2, b"b")];
        let mut h = Sha256::new();
        h.update(Sha256::digest(b"a"));
        h.update(Sha256::digest(b"b"));
        assert_eq!(composite_checksum(&parts), format!("{}-2", b64(&h.finalize().into())));
        assert!(same_checksum("abc=-2", "abc=-2"));
        assert!(same_checksum("abc=", "abc=-2"));
        assert!(!same_checksum("abd=-2", "abc=-2"));
    }
}
