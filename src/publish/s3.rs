//! The S3 operations `publish` needs, each with its integrity check and its errors
//! sorted into what a user can act on.
//!
//! Integrity, for every object:
//! - Each byte of the file is read once, into memory, and what is checksummed is exactly
//!   what is sent. Before the object can become visible (before `PutObject`, or before
//!   `CompleteMultipartUpload`), the checksum of those bytes must equal the manifest's;
//!   otherwise the upload is aborted.
//! - Every object records the whole file's SHA-256 in `x-amz-meta-gantry-sha256`. A
//!   single put carries the same SHA-256 (`x-amz-checksum-sha256`), checked against the
//!   manifest's. A multipart upload uses S3's full-object CRC64NVME instead: each part
//!   carries its own CRC64NVME, and `CompleteMultipartUpload` the whole object's, which
//!   S3 checks against the parts. release.json records every artifact's CRC64NVME
//!   beside its SHA-256, both computed from the same read when it was packaged, so the
//!   CRC of the bytes sent is compared with the manifest's directly, and so is the one
//!   S3 reports. A CRC costs a twentieth of a SHA-256 here (8 GB/s against 1.5 GB/s), and
//!   the upload computes it for the parts anyway. Only for a manifest without CRC64NVMEs
//!   (written by an older gantry) does the reader hash the file whole for its SHA-256.
//! - The server is not trusted to have validated anything (moto does not). gantry
//!   compares a checksum the server reports with one it computed itself: the part
//!   checksum echoed by `UploadPart`, the full-object one returned by
//!   `CompleteMultipartUpload`, and, after every upload, the one `HeadObject` returns
//!   with checksum mode. A server that keeps no checksum for a multipart object (s3s-fs)
//!   is checked by ETag instead: each part's ETag must be the MD5 of the bytes sent, and
//!   the object's ETag the MD5 of those MD5s, `-N`, as S3 defines it. Only when neither
//!   is available (an ETag that is not an MD5) is the object read back and hashed.
//! - An endpoint that refuses CRC64NVME at `CreateMultipartUpload` (an S3-compatible store
//!   without it) gets the upload again without any checksum header (`Checksums::None`),
//!   checked by ETag as above; the CRC of the bytes sent is still the manifest's.
//!
//! Large files go up as multipart uploads: one thread reads the file in order, and at
//! most `PART_CONCURRENCY` parts are checksummed and sent at a time: about 80 MiB of
//! parts in memory for any file up to 78 GiB (beyond that S3's 10,000-part limit makes
//! parts larger, and fewer go at once).
//! An upload that fails or is interrupted is aborted; uploads of the same key left
//! behind by a killed run are aborted before a new one starts.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::create_multipart_upload::CreateMultipartUploadError;

use crate::package::manifest::crc64nvme_b64 as b64_crc;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, ChecksumType, CompletedMultipartUpload, CompletedPart};
use base64::Engine;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use md5::Md5;
use sha2::{Digest, Sha256};

/// Files larger than this are uploaded in parts.
pub const MULTIPART_THRESHOLD: u64 = 16 << 20;
/// Smallest part (S3's floor is 5 MiB). Parts are held in memory while they are hashed
/// and sent, so this times `PART_CONCURRENCY + 2` bounds the memory an upload takes.
const MIN_PART: u64 = 8 << 20;
/// S3 allows at most 10,000 parts.
const MAX_PARTS: u64 = 10_000;
/// Parts in flight at once, per object (fewer when S3's part limit makes parts larger
/// than `MIN_PART`, so that the parts in memory stay within `PART_CONCURRENCY * MIN_PART`).
const PART_CONCURRENCY: usize = 8;
/// Multipart uploads of the same key older than this are taken as abandoned and aborted.
const ABANDONED_AFTER: Duration = Duration::from_secs(15 * 60);
/// Per-attempt deadline of `CompleteMultipartUpload`, which can take minutes on a large
/// object (S3 says so; s3s-fs copies every part into place). The default deadline, sized
/// for one part, would cut it and retry a call whose first attempt already consumed the
/// upload.
const COMPLETE_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15 * 60);
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
    /// S3's full-object CRC64NVME (base64, big-endian), kept for gantry's multipart uploads.
    pub checksum_crc64nvme: Option<String>,
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
    /// The whole file's CRC64NVME, when release.json records it. A multipart upload then
    /// proves the bytes it sent by their CRC64NVME, which it computes anyway, and reads
    /// the file without hashing it a second time for its SHA-256.
    pub crc64nvme: Option<u64>,
}

/// A finished upload.
#[derive(Debug, Clone)]
pub struct Uploaded {
    pub version_id: Option<String>,
    /// The checksum S3 reported, as checked.
    pub checksum: String,
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
    #[error("{} changed while it was being uploaded: release.json says {expected}, the bytes read have {actual}", path.display())]
    Changed { path: std::path::PathBuf, expected: String, actual: String },
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
                checksum_crc64nvme: out.checksum_crc64_nvme().map(str::to_owned),
                etag: out.e_tag().map(str::to_owned),
                version_id: out.version_id().map(str::to_owned),
            })),
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(self.classify("HeadObject", key, e)),
        }
    }

    /// The whole object under `key` (for small ones such as a release's `release.json`);
    /// `None` when there is none.
    pub async fn get_small(&self, key: &str) -> Result<Option<Vec<u8>>, S3Error> {
        let out = match self.client.get_object().bucket(&self.name).key(key).send().await {
            Ok(out) => out,
            Err(e) if status(&e) == Some(404) => return Ok(None),
            Err(e) => return Err(self.classify("GetObject", key, e)),
        };
        let bytes = out.body.collect().await.map_err(|e| S3Error::Request {
            op: "GetObject",
            bucket: self.name.clone(),
            key: key.to_owned(),
            status: None,
            source: Box::new(e),
        })?;
        Ok(Some(bytes.into_bytes().to_vec()))
    }

    /// A URL that lets anyone holding it GET the object under `key` until `expires_in`
    /// has passed (SigV4 query-string auth, signed here: no request is made). For a
    /// service that fetches a release's artifact itself, such as Azure Static Web Apps.
    pub async fn presigned_get(&self, key: &str, expires_in: std::time::Duration) -> Result<String, S3Error> {
        let config =
            aws_sdk_s3::presigning::PresigningConfig::expires_in(expires_in).map_err(|e| S3Error::Request {
                op: "GetObject (presign)",
                bucket: self.name.clone(),
                key: key.to_owned(),
                status: None,
                source: Box::new(e),
            })?;
        let request = self
            .client
            .get_object()
            .bucket(&self.name)
            .key(key)
            .presigned(config)
            .await
            .map_err(|e| self.classify("GetObject (presign)", key, e))?;
        Ok(request.uri().to_owned())
    }

    /// Uploads `file` under `key`, in parts when large, then checks what S3 stored.
    /// `progress` is called with bytes as they are sent.
    pub async fn put_file(
        &self,
        key: &str,
        file: &LocalFile<'_>,
        condition: Option<Condition>,
        cancel: &AtomicBool,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Uploaded, S3Error> {
        let LocalFile { path, size, sha256, .. } = *file;
        let (version_id, expected) = if size > MULTIPART_THRESHOLD {
            self.put_multipart(key, file, condition, cancel, progress).await?
        } else {
            let bytes = read_range(path, 0, size).await?;
            let body = bytes.clone();
            let digest: [u8; 32] = off_thread(move || Sha256::digest(&body).into()).await;
            if digest != sha256 {
                return Err(S3Error::Changed {
                    path: path.to_owned(),
                    expected: format!("sha256 {}", hex(&sha256)),
                    actual: format!("sha256 {}", hex(&digest)),
                });
            }
            let mut request = self
                .client
                .put_object()
                .bucket(&self.name)
                .key(key)
                .body(ByteStream::from(bytes))
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
            // The body is covered by its signed `x-amz-checksum-sha256`; hashing it a
            // second time for the signature would add nothing.
            let out = request
                .customize()
                .disable_payload_signing()
                .send()
                .await
                .map_err(|e| self.classify("PutObject", key, e))?;
            progress(size);
            let expected = Expected { algorithm: Algorithm::Sha256, checksum: b64(&sha256), etag: None };
            (out.version_id().map(str::to_owned), expected)
        };
        let checksum = self.verify(key, file, &expected, version_id.as_deref()).await?;
        Ok(Uploaded { version_id, checksum })
    }

    async fn put_multipart(
        &self,
        key: &str,
        file: &LocalFile<'_>,
        condition: Option<Condition>,
        cancel: &AtomicBool,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<(Option<String>, Expected), S3Error> {
        self.abort_abandoned(key).await;
        let (upload_id, checksums) = match self.create_upload(key, file, Checksums::Crc64Nvme).await {
            Ok(id) => (id, Checksums::Crc64Nvme),
            // An S3-compatible store without S3's full-object checksums: the parts are then
            // checked by their ETags (MD5s), as on a store that ignores the request.
            Err(e) if refuses_checksums(&e) => {
                tracing::warn!(
                    key,
                    error = %aws_sdk_s3::error::DisplayErrorContext(&e),
                    "the endpoint refuses CRC64NVME full-object checksums; parts are checked by their ETags instead"
                );
                let id = self.create_upload(key, file, Checksums::None).await;
                (id.map_err(|e| self.classify("CreateMultipartUpload", key, e))?, Checksums::None)
            }
            Err(e) => return Err(self.classify("CreateMultipartUpload", key, e)),
        };

        let mut parts = match self.upload_parts(key, file, &upload_id, checksums, cancel, progress).await {
            Ok(parts) => parts,
            Err(e) => {
                self.abort(key, &upload_id).await;
                return Err(e);
            }
        };
        let whole = b64_crc(whole_crc64(&parts));
        let mut expected = Expected { algorithm: Algorithm::Crc64Nvme, checksum: whole, etag: None };
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(
                parts
                    .iter()
                    .map(|p| {
                        let part = CompletedPart::builder().part_number(p.number).e_tag(&p.etag);
                        match checksums {
                            Checksums::Crc64Nvme => part.checksum_crc64_nvme(b64_crc(p.crc64)).build(),
                            Checksums::None => part.build(),
                        }
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
        if checksums == Checksums::Crc64Nvme {
            request = request.checksum_type(ChecksumType::FullObject).checksum_crc64_nvme(&expected.checksum);
        }
        request = match condition {
            Some(Condition::Absent) => request.if_none_match("*"),
            Some(Condition::Unchanged(etag)) => request.if_match(etag),
            None => request,
        };
        let patient = checksums.config().timeout_config(
            aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                .operation_attempt_timeout(COMPLETE_ATTEMPT_TIMEOUT)
                .build(),
        );
        // A server that echoed no part checksum is checked by ETags, which need each part's
        // MD5. They are computed here, while the server assembles the object (a wait of
        // seconds on a large one), rather than beside the uploads that compete for the CPU.
        let unechoed: Vec<(i32, u64)> = parts.iter().filter(|p| !p.echoed).map(|p| (p.number, p.crc64)).collect();
        let md5s = (!unechoed.is_empty()).then(|| {
            let path = file.path.to_owned();
            let part_size = part_size(file.size);
            tokio::task::spawn_blocking(move || part_md5s(&path, part_size, &unechoed))
        });
        let completed = request.customize().config_override(patient).send().await;
        if let Some(task) = md5s {
            // A part that cannot be re-read as it was sent keeps no MD5: `verify` then
            // reads the object back instead.
            let found = task.await.ok().and_then(Result::ok).unwrap_or_default();
            for part in &mut parts {
                part.md5 = found.get(&part.number).copied();
            }
            expected.etag = multipart_etag(&parts);
        }
        match completed {
            Ok(out) => {
                let version_id = out.version_id().map(str::to_owned);
                // The full-object checksum S3 answers with must be the one gantry computed (a
                // composite one, `...-N`, is of the parts: `verify` decides then).
                if let Some(actual) = out.checksum_crc64_nvme().filter(|c| whole_object(c))
                    && actual != expected.checksum
                {
                    return Err(self.reject(key, version_id.as_deref(), &expected.checksum, actual.to_owned()).await);
                }
                Ok((version_id, expected))
            }
            Err(e) => {
                self.abort(key, &upload_id).await;
                Err(self.classify("CompleteMultipartUpload", key, e))
            }
        }
    }

    /// Starts a multipart upload of `file`; its id.
    async fn create_upload(
        &self,
        key: &str,
        file: &LocalFile<'_>,
        checksums: Checksums,
    ) -> Result<String, SdkError<CreateMultipartUploadError, aws_sdk_s3::config::http::HttpResponse>> {
        let mut request = self
            .client
            .create_multipart_upload()
            .bucket(&self.name)
            .key(key)
            .content_type(content_type(key))
            .metadata(SHA256_META, hex(&file.sha256));
        if checksums == Checksums::Crc64Nvme {
            request = request.checksum_algorithm(ChecksumAlgorithm::Crc64Nvme).checksum_type(ChecksumType::FullObject);
        }
        let created = request.customize().config_override(checksums.config()).send().await?;
        Ok(created.upload_id().unwrap_or_default().to_owned())
    }

    /// Reads `file` once, in order, on one blocking thread, while up to
    /// `PART_CONCURRENCY` parts are checksummed and sent. Fails with `Changed` when the
    /// bytes read are not the manifest's: their CRC64NVME, combined from the parts', must
    /// be the one release.json records; without one, the reader also hashes the file
    /// whole for its SHA-256.
    async fn upload_parts(
        &self,
        key: &str,
        file: &LocalFile<'_>,
        upload_id: &str,
        checksums: Checksums,
        cancel: &AtomicBool,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Vec<Part>, S3Error> {
        let LocalFile { path, size, sha256, crc64nvme } = *file;
        let part_size = part_size(size);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(i32, Bytes)>(1);
        let owned = path.to_owned();
        let reader = tokio::task::spawn_blocking(move || -> std::io::Result<Option<[u8; 32]>> {
            use std::io::Read;
            let mut source = std::fs::File::open(&owned)?;
            let mut whole = crc64nvme.is_none().then(Sha256::new);
            for i in 0..size.div_ceil(part_size) {
                let len = part_size.min(size - i * part_size);
                let mut buf = Vec::with_capacity(usize::try_from(len).expect("a part fits in memory"));
                (&mut source).take(len).read_to_end(&mut buf)?;
                if buf.len() as u64 != len {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                if let Some(whole) = &mut whole {
                    whole.update(&buf);
                }
                let number = i32::try_from(i + 1).expect("at most 10,000 parts");
                if tx.blocking_send((number, Bytes::from(buf))).is_err() {
                    break; // the upload failed; its error is reported
                }
            }
            Ok(whole.map(|w| w.finalize().into()))
        });
        let parts = futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
            .map(|(number, bytes)| async move {
                if cancel.load(Ordering::Relaxed) {
                    return Err(S3Error::Interrupted);
                }
                self.upload_part(key, upload_id, number, bytes, checksums, progress).await
            })
            .buffer_unordered(concurrency(part_size))
            .try_collect::<Vec<_>>()
            .await;
        let read = reader.await.map_err(std::io::Error::other).and_then(|r| r);
        let mut parts = parts?;
        let digest = read.map_err(|source| S3Error::Read { path: path.to_owned(), source })?;
        parts.sort_by_key(|p| p.number);
        let changed = |expected: String, actual: String| S3Error::Changed { path: path.to_owned(), expected, actual };
        if parts.len() as u64 != size.div_ceil(part_size) {
            let sent: u64 = parts.iter().map(|p| p.len).sum();
            return Err(changed(format!("{size} bytes"), format!("{sent} bytes")));
        }
        match (crc64nvme, digest) {
            (Some(recorded), _) => {
                let sent = whole_crc64(&parts);
                if sent != recorded {
                    let crc = |c| format!("crc64nvme {}", b64_crc(c));
                    return Err(changed(crc(recorded), crc(sent)));
                }
            }
            (None, Some(digest)) if digest != sha256 => {
                return Err(changed(format!("sha256 {}", hex(&sha256)), format!("sha256 {}", hex(&digest))));
            }
            _ => {}
        }
        Ok(parts)
    }

    /// Sends one part and checks what the server says it received: the CRC64NVME it
    /// echoes, or else its ETag against the part's MD5.
    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        bytes: Bytes,
        checksums: Checksums,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Part, S3Error> {
        let len = bytes.len() as u64;
        let crc64 = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Nvme, &bytes);
        let mut request = self
            .client
            .upload_part()
            .bucket(&self.name)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(bytes.clone()))
            .content_length(i64::try_from(len).unwrap_or(i64::MAX));
        if checksums == Checksums::Crc64Nvme {
            request = request.checksum_algorithm(ChecksumAlgorithm::Crc64Nvme).checksum_crc64_nvme(b64_crc(crc64));
        }
        let mut request = request.customize().disable_payload_signing();
        if checksums == Checksums::None {
            // Only then: the parts of a usual upload keep the client's settings as they are.
            request = request.config_override(checksums.config());
        }
        let out = request.send().await.map_err(|e| self.classify("UploadPart", key, e))?;
        progress(len);
        let etag = out.e_tag().unwrap_or_default().to_owned();
        let echoed = match out.checksum_crc64_nvme() {
            Some(echoed) if echoed == b64_crc(crc64) => true,
            Some(echoed) => {
                return Err(S3Error::Integrity {
                    bucket: self.name.clone(),
                    key: key.to_owned(),
                    expected: format!("{} for part {number}", b64_crc(crc64)),
                    actual: echoed.to_owned(),
                });
            }
            // No checksum echoed: the ETag is to be checked against the part's MD5
            // (`part_md5s`), computed while the server assembles the object.
            None => false,
        };
        Ok(Part { number, etag, crc64, len, echoed, md5: None })
    }

    /// Reads back what S3 stored and compares it with what gantry computed: the
    /// checksum when the endpoint keeps one; else the multipart ETag, when every part's
    /// ETag was its MD5; else the object's bytes, read back and hashed. An object that
    /// fails the check is deleted, so a later run cannot take it for a good one.
    async fn verify(
        &self,
        key: &str,
        file: &LocalFile<'_>,
        expected: &Expected,
        version_id: Option<&str>,
    ) -> Result<String, S3Error> {
        let remote = self.head(key).await?;
        let (ok, actual) = match remote {
            None => (false, "(no object)".to_owned()),
            Some(r) if r.size != file.size => (false, format!("{} bytes instead of {}", r.size, file.size)),
            Some(r) if expected.algorithm.reported(&r).is_some() => {
                let c = expected.algorithm.reported(&r).unwrap_or_default().to_owned();
                (c == expected.checksum, c)
            }
            Some(Remote { etag: Some(etag), .. })
                if expected.etag.as_deref().is_some_and(|e| e == etag.trim_matches('"')) =>
            {
                tracing::debug!(key, etag, "the endpoint keeps no checksum: verified by the parts' and object's ETags");
                (true, format!("ETag {}", etag.trim_matches('"')))
            }
            Some(_) => {
                tracing::debug!(key, "the endpoint keeps no checksum: verifying by reading the object back");
                let digest = self.read_back_sha256(key).await?;
                (digest == file.sha256, format!("{} (read back)", b64(&digest)))
            }
        };
        if ok {
            return Ok(actual);
        }
        Err(self.reject(key, version_id, &expected.checksum, actual).await)
    }

    /// Deletes an object that failed its check and says why.
    async fn reject(&self, key: &str, version_id: Option<&str>, expected: &str, actual: String) -> S3Error {
        let mut delete = self.client.delete_object().bucket(&self.name).key(key);
        if let Some(version) = version_id {
            delete = delete.version_id(version);
        }
        if let Err(e) = delete.send().await {
            tracing::warn!(key, error = %aws_sdk_s3::error::DisplayErrorContext(&e), "could not delete an object that failed its check");
        }
        S3Error::Integrity { bucket: self.name.clone(), key: key.to_owned(), expected: expected.to_owned(), actual }
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
    /// own checksum whenever the endpoint keeps one that can be compared (a whole-object
    /// SHA-256, or a CRC64NVME when the file's is known).
    pub fn holds(remote: &Remote, file: &LocalFile<'_>) -> bool {
        let recorded = remote.recorded_sha256.as_deref() == Some(hex(&file.sha256).as_str());
        let checksum = match &remote.checksum_sha256 {
            // A whole-object checksum must be this file's.
            Some(c) if file.size <= MULTIPART_THRESHOLD && whole_object(c) => *c == b64(&file.sha256),
            // A multipart object's composite checksum was checked part by part when gantry
            // uploaded it, and objects that failed were deleted: the recorded SHA-256 decides.
            _ => true,
        };
        // S3's CRC64NVME is always of the whole object, whoever uploaded it and however
        // (a composite one, `...-N`, from an S3-compatible store, is not comparable).
        let crc = match (Algorithm::Crc64Nvme.reported(remote), file.crc64nvme) {
            (Some(c), Some(local)) => c == b64_crc(local),
            _ => true,
        };
        remote.size == file.size && recorded && checksum && crc
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
    /// CRC64NVME of the bytes sent, and how many there were.
    crc64: u64,
    len: u64,
    /// Whether the server echoed the part's CRC64NVME (else its ETag is checked).
    echoed: bool,
    /// The part's MD5, when the server echoed no checksum and its ETag is to be checked.
    md5: Option<[u8; 16]>,
}

/// What a stored object must show, as gantry computed it from the bytes it sent.
#[derive(Debug)]
struct Expected {
    algorithm: Algorithm,
    /// Base64 SHA-256 of a single put, or the full-object CRC64NVME of a multipart one.
    checksum: String,
    /// The multipart ETag (hex MD5 of the parts' MD5s, `-N`), when every part's ETag was
    /// found to be its MD5: the check for endpoints that keep no multipart checksum.
    etag: Option<String>,
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

/// Parts in flight for parts of `part_size` bytes: `PART_CONCURRENCY` of `MIN_PART`, fewer
/// of larger ones (files over 78 GiB), at least one.
fn concurrency(part_size: u64) -> usize {
    usize::try_from(PART_CONCURRENCY as u64 * MIN_PART / part_size).unwrap_or(1).clamp(1, PART_CONCURRENCY)
}

/// What the requests of a multipart upload carry: S3's full-object CRC64NVME, or, for an
/// endpoint that refuses it, no checksum at all (the parts are then checked by ETag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Checksums {
    Crc64Nvme,
    None,
}

impl Checksums {
    /// The client settings for these requests: with `None`, the SDK must not add a
    /// checksum of its own either (it would send a CRC32 by default).
    fn config(self) -> aws_sdk_s3::config::Builder {
        let config = aws_sdk_s3::config::Builder::default();
        match self {
            Checksums::Crc64Nvme => config,
            Checksums::None => {
                config.request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
            }
        }
    }
}

/// Whether `CreateMultipartUpload` failed because the endpoint does not implement the
/// checksum it was asked for: `501 NotImplemented` (how R2 answered before it had
/// CRC64NVME), or a `400` whose message is about the checksum.
fn refuses_checksums<R: HasStatus>(err: &SdkError<CreateMultipartUploadError, R>) -> bool {
    let code = err.code().unwrap_or_default();
    let about_checksums = err.message().unwrap_or_default().to_ascii_lowercase().contains("checksum");
    match status(err) {
        Some(501) => true,
        Some(400) => about_checksums && matches!(code, "InvalidArgument" | "InvalidRequest" | "NotImplemented"),
        _ => code == "NotImplemented",
    }
}

/// The checksum gantry gives an object: SHA-256 when put whole, CRC64NVME (full object)
/// when uploaded in parts.
#[derive(Debug, Clone, Copy)]
enum Algorithm {
    Sha256,
    Crc64Nvme,
}

impl Algorithm {
    /// The server's checksum of this kind, if it reports one.
    fn reported(self, remote: &Remote) -> Option<&str> {
        match self {
            Algorithm::Sha256 => remote.checksum_sha256.as_deref(),
            // S3 keeps CRC64NVME only for the whole object; a composite value (`...-N`, as
            // some S3-compatible stores write) is of the parts and cannot be compared.
            Algorithm::Crc64Nvme => remote.checksum_crc64nvme.as_deref().filter(|c| whole_object(c)),
        }
    }
}

/// Whether an S3 checksum is of the whole object, not a composite of its parts' (`...-N`).
fn whole_object(checksum: &str) -> bool {
    !checksum.contains('-')
}

/// The whole object's CRC64NVME, from its parts' (in order) as they were sent: what S3's
/// full-object checksum of the assembled object must be.
fn whole_crc64(parts: &[Part]) -> u64 {
    let mut parts = parts.iter();
    let first = parts.next().map_or(0, |p| p.crc64);
    parts.fold(first, |crc, p| crc_fast::checksum_combine(crc_fast::CrcAlgorithm::Crc64Nvme, crc, p.crc64, p.len))
}

/// The multipart ETag S3 gives an object whose parts' ETags are their MD5s: the MD5 of
/// the parts' MD5s, `-N`. `None` when some part's ETag was not its MD5 (or not checked
/// because the server echoed its checksum).
fn multipart_etag(parts: &[Part]) -> Option<String> {
    let mut hasher = Md5::new();
    for part in parts {
        let md5 = part.md5?;
        if part.etag.trim_matches('"') != hex(&md5) {
            return None;
        }
        hasher.update(md5);
    }
    Some(format!("{}-{}", hex(&hasher.finalize()), parts.len()))
}

/// The MD5 of each listed part of `path` (number, CRC64NVME of the bytes sent), read
/// again from disk. A part whose bytes now have another CRC64NVME than the ones sent
/// (the file changed since) is left out: its MD5 would not be of what the server got.
fn part_md5s(
    path: &Path,
    part_size: u64,
    parts: &[(i32, u64)],
) -> std::io::Result<std::collections::HashMap<i32, [u8; 16]>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut found = std::collections::HashMap::new();
    for &(number, sent_crc) in parts {
        file.seek(SeekFrom::Start(u64::try_from(number - 1).unwrap_or(0) * part_size))?;
        let mut part = (&mut file).take(part_size);
        let mut md5 = Md5::new();
        let mut crc = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Nvme);
        loop {
            let n = part.read(&mut buf)?;
            if n == 0 {
                break;
            }
            md5.update(&buf[..n]);
            crc.update(&buf[..n]);
        }
        if crc.finalize() == sent_crc {
            found.insert(number, md5.finalize().into());
        }
    }
    Ok(found)
}

/// `len` bytes of `path` from `offset`, read off the async threads.
async fn read_range(path: &Path, offset: u64, len: u64) -> Result<Bytes, S3Error> {
    let owned = path.to_owned();
    let read_err = |source| S3Error::Read { path: path.to_owned(), source };
    tokio::task::spawn_blocking(move || -> std::io::Result<Bytes> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = std::fs::File::open(&owned)?;
        file.seek(SeekFrom::Start(offset))?;
        let mut buf = Vec::with_capacity(usize::try_from(len).expect("a part fits in memory"));
        file.take(len).read_to_end(&mut buf)?;
        if buf.len() as u64 != len {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(Bytes::from(buf))
    })
    .await
    .map_err(|e| read_err(std::io::Error::other(e)))?
    .map_err(read_err)
}

/// Runs CPU-bound work (hashing) off the async threads.
async fn off_thread<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work).await.expect("hashing does not panic")
}

pub fn b64(digest: &[u8; 32]) -> String {
    base64::engine::general_purpose::STANDARD.encode(digest)
}

pub fn hex(digest: &[u8]) -> String {
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
        assert_eq!(part_size(100 << 20), 8 << 20);
        let huge = 5u64 << 40; // 5 TiB, S3's largest object
        assert!(huge.div_ceil(part_size(huge)) <= MAX_PARTS);
        assert_eq!(part_size(huge) % (1 << 20), 0);
        assert_eq!(concurrency(part_size(5 << 30)), PART_CONCURRENCY);
        assert_eq!(concurrency(part_size(huge)), 1, "huge parts go one at a time");
    }

    #[test]
    fn part_checksums_are_crc64nvme_written_as_s3_writes_them() {
        // The CRC-64/NVME check value (the CRC of "123456789"), as in the NVMe spec and
        // the CRC catalogue, and S3's form of it: base64 of the 8 big-endian bytes.
        let crc = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Nvme, b"123456789");
        assert_eq!(crc, 0xAE8B_1486_0A79_9888);
        assert_eq!(b64_crc(crc), "rosUhgp5mIg=");
        // The whole object's CRC, combined from its parts', is the CRC of all the bytes.
        let part = |n: i32, data: &[u8]| Part {
            number: n,
            etag: String::new(),
            crc64: crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Nvme, data),
            len: data.len() as u64,
            echoed: true,
            md5: None,
        };
        assert_eq!(whole_crc64(&[part(1, b"1234"), part(2, b"567"), part(3, b"89")]), crc);
        assert_eq!(whole_crc64(&[part(1, b"123456789")]), crc);
    }

    #[test]
    fn part_md5s_are_of_the_bytes_sent_and_a_part_changed_since_has_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.zip");
        let data: Vec<u8> = (0..2500u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let crc = |b: &[u8]| crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Nvme, b);
        let chunks: Vec<&[u8]> = data.chunks(1000).collect();
        // Part 2 was sent with other bytes than the file now holds.
        let sent = [(1, crc(chunks[0])), (2, crc(b"something else")), (3, crc(chunks[2]))];
        let found = part_md5s(&path, 1000, &sent).unwrap();
        assert_eq!(found.get(&1), Some(&<[u8; 16]>::from(Md5::digest(chunks[0]))));
        assert_eq!(found.get(&2), None, "no MD5 for bytes that were not the ones sent");
        assert_eq!(found.get(&3), Some(&<[u8; 16]>::from(Md5::digest(chunks[2]))), "the short last part");
        // Only the listed parts are read.
        assert_eq!(part_md5s(&path, 1000, &sent[2..]).unwrap().len(), 1);
    }

    #[test]
    fn only_a_refused_checksum_makes_a_multipart_upload_go_without_one() {
        let refused = |status: u16, code: &str, message: &str| {
            let meta = aws_sdk_s3::error::ErrorMetadata::builder().code(code).message(message).build();
            let raw = aws_sdk_s3::config::http::HttpResponse::new(
                status.try_into().unwrap(),
                aws_sdk_s3::primitives::SdkBody::empty(),
            );
            refuses_checksums(&SdkError::service_error(CreateMultipartUploadError::generic(meta), raw))
        };
        let r2 = "Header 'x-amz-checksum-algorithm' with value 'CRC64NVME' not implemented";
        assert!(refused(501, "NotImplemented", r2));
        assert!(refused(400, "InvalidArgument", "Unsupported checksum type FULL_OBJECT"));
        assert!(refused(400, "InvalidRequest", "Checksum algorithm CRC64NVME is not supported"));
        // Anything else is an error to report, not a reason to upload unchecked.
        assert!(!refused(400, "InvalidArgument", "Invalid storage class"));
        assert!(!refused(403, "AccessDenied", "checksum"));
        assert!(!refused(404, "NoSuchBucket", "The specified bucket does not exist"));
        assert!(!refused(500, "InternalError", "We encountered an internal error"));
    }

    #[test]
    fn a_stored_object_is_ours_when_its_whole_object_crc64nvme_is_the_files() {
        let path = Path::new("blob.zip");
        let data = b"123456789";
        let sha256: [u8; 32] = Sha256::digest(data).into();
        let crc = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Nvme, data);
        let file = LocalFile { path, size: 9, sha256, crc64nvme: Some(crc) };
        let remote = |checksum_crc64nvme: Option<&str>| Remote {
            size: 9,
            recorded_sha256: Some(hex(&sha256)),
            checksum_sha256: None,
            checksum_crc64nvme: checksum_crc64nvme.map(str::to_owned),
            etag: None,
            version_id: None,
        };
        assert!(Bucket::holds(&remote(Some("rosUhgp5mIg=")), &file));
        assert!(!Bucket::holds(&remote(Some("AAAAAAAAAAE=")), &file), "other bytes under the same metadata");
        assert!(Bucket::holds(&remote(None), &file), "no CRC kept: the recorded SHA-256 decides");
        // A composite CRC64NVME (of the parts, `-N`) is not the object's: not compared, and
        // not taken for the full-object checksum an upload is verified by.
        assert!(Bucket::holds(&remote(Some("sP7gLb80aAY=-4")), &file));
        assert_eq!(Algorithm::Crc64Nvme.reported(&remote(Some("sP7gLb80aAY=-4"))), None);
        assert_eq!(Algorithm::Crc64Nvme.reported(&remote(Some("rosUhgp5mIg="))), Some("rosUhgp5mIg="));
        // Without the file's CRC (an older release.json), S3's is not compared either.
        assert!(Bucket::holds(&remote(Some("AAAAAAAAAAE=")), &LocalFile { crc64nvme: None, ..file }));
    }

    #[test]
    fn the_multipart_etag_is_the_md5_of_part_md5s_and_needs_every_part_proven() {
        let part = |n: i32, data: &[u8], etag: Option<&str>| {
            let md5: [u8; 16] = Md5::digest(data).into();
            let etag = etag.map_or_else(|| format!("\"{}\"", hex(&md5)), str::to_owned);
            Part { number: n, etag, crc64: 0, len: 0, echoed: false, md5: Some(md5) }
        };
        let mut h = Md5::new();
        h.update(Md5::digest(b"a"));
        h.update(Md5::digest(b"b"));
        let expected = format!("{}-2", hex(&h.finalize()));
        assert_eq!(multipart_etag(&[part(1, b"a", None), part(2, b"b", None)]), Some(expected));
        // A part whose ETag is not the MD5 of the bytes sent proves nothing (corrupt, or an
        // ETag of another kind): the object must then be read back.
        let odd = part(2, b"b", Some("\"0123456789abcdef0123456789abcdef\""));
        assert_eq!(multipart_etag(&[part(1, b"a", None), odd]), None);
        // A part checked by its echoed checksum has no MD5: no ETag to expect.
        let echoed = Part { md5: None, ..part(2, b"b", None) };
        assert_eq!(multipart_etag(&[part(1, b"a", None), echoed]), None);
    }
}
