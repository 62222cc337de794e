//! The site bucket: puts with their SHA-256 checked against what S3 echoes, server-side
//! copies that keep each object's headers, small JSON records, listing and deleting.
//! Every object gantry writes records its bytes' SHA-256 in `x-amz-meta-gantry-sha256`,
//! which is how an unchanged file is recognised and skipped.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, Delete, MetadataDirective, ObjectIdentifier};
use futures::{StreamExt, TryStreamExt};

use super::files::SiteFile;
use crate::publish::s3::{SHA256_META, b64, hex};
use crate::targets::TargetError;
use crate::targets::lambda::sdk;

/// Objects written at once.
const CONCURRENCY: usize = 8;

#[derive(Debug, Clone)]
pub struct Store {
    pub client: aws_sdk_s3::Client,
    pub bucket: String,
}

impl Store {
    fn what(&self, key: &str) -> String {
        if key.is_empty() { format!("S3 bucket `{}`", self.bucket) } else { format!("s3://{}/{key}", self.bucket) }
    }

    /// Fails clearly when the bucket is missing or not ours.
    pub async fn check(&self) -> Result<(), TargetError> {
        self.client.head_bucket().bucket(&self.bucket).send().await.map(|_| ()).map_err(|e| {
            sdk::error(
                "s3:ListBucket",
                &self.what(""),
                "create the bucket, or check `bucket` in the target's settings and the environment's region",
                e,
            )
        })
    }

    /// The SHA-256 gantry recorded for `key` (hex), or `None` when there is no object.
    pub async fn recorded_sha256(&self, key: &str) -> Result<Option<String>, TargetError> {
        let out =
            self.client.head_object().bucket(&self.bucket).key(key).checksum_mode(ChecksumMode::Enabled).send().await;
        match out {
            Ok(head) => Ok(Some(head.metadata().and_then(|m| m.get(SHA256_META)).cloned().unwrap_or_default())),
            Err(e) if sdk::kind(&e) == sdk::Kind::NotFound => Ok(None),
            Err(e) => Err(sdk::error("s3:GetObject", &self.what(key), "", e)),
        }
    }

    /// Puts each file under `prefix` with its headers, skipping those already stored with
    /// the same SHA-256; `files` in the order given, at most `CONCURRENCY` at a time.
    /// Returns how many were sent.
    pub async fn put_files(&self, prefix: &str, files: &[&SiteFile]) -> Result<usize, TargetError> {
        let sent = futures::stream::iter(files.iter().map(|f| self.put_file(prefix, f)))
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<bool>>()
            .await?;
        Ok(sent.into_iter().filter(|s| *s).count())
    }

    async fn put_file(&self, prefix: &str, file: &SiteFile) -> Result<bool, TargetError> {
        let key = format!("{prefix}{}", file.path);
        let sha = hex(&file.sha256);
        if self.recorded_sha256(&key).await?.as_deref() == Some(sha.as_str()) {
            return Ok(false);
        }
        let expected = b64(&file.sha256);
        let out = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .body(ByteStream::from(file.bytes.clone()))
            .content_type(file.content_type)
            .cache_control(file.cache_control())
            .checksum_sha256(&expected)
            .metadata(SHA256_META, &sha)
            .send()
            .await
            .map_err(|e| sdk::error("s3:PutObject", &self.what(&key), "", e))?;
        match out.checksum_sha256() {
            Some(echoed) if echoed != expected => Err(TargetError::new(format!(
                "{} does not hold what was sent: S3 reports checksum {echoed}, gantry computed {expected}",
                self.what(&key)
            ))),
            _ => Ok(true),
        }
    }

    /// Copies `from` to `to` inside the bucket with its headers and metadata, unless `to`
    /// already holds `sha256`. Returns whether it copied.
    pub async fn copy(&self, from: &str, to: &str, sha256: &str) -> Result<bool, TargetError> {
        if self.recorded_sha256(to).await?.as_deref() == Some(sha256) {
            return Ok(false);
        }
        self.client
            .copy_object()
            .bucket(&self.bucket)
            .key(to)
            .copy_source(format!("{}/{}", self.bucket, encode_key(from)))
            .metadata_directive(MetadataDirective::Copy)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .send()
            .await
            .map_err(|e| {
                sdk::error("s3:CopyObject", &self.what(from), "the release's files are gone: deploy it again", e)
            })?;
        match self.recorded_sha256(to).await? {
            Some(found) if found == sha256 => Ok(true),
            found => Err(TargetError::new(format!(
                "after copying {} to {} it records sha256 {}, expected {sha256}",
                self.what(from),
                self.what(to),
                found.unwrap_or_else(|| "nothing".into())
            ))),
        }
    }

    /// Copies each `(from, to, sha256)`, at most `CONCURRENCY` at a time.
    pub async fn copy_all(&self, copies: &[(String, String, String)]) -> Result<usize, TargetError> {
        let copied = futures::stream::iter(copies.iter().map(|(from, to, sha)| self.copy(from, to, sha)))
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<bool>>()
            .await?;
        Ok(copied.into_iter().filter(|c| *c).count())
    }

    /// A JSON record, or `None` when there is none.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, TargetError> {
        let out = match self.client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(out) => out,
            Err(e) if sdk::kind(&e) == sdk::Kind::NotFound => return Ok(None),
            Err(e) => return Err(sdk::error("s3:GetObject", &self.what(key), "", e)),
        };
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| TargetError::new(format!("cannot read {}", self.what(key))).with_source(e))?
            .into_bytes();
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            TargetError::new(format!("{} is not a gantry record", self.what(key)))
                .with_hint("it is gantry's own bookkeeping: restore it from the bucket's versions, or delete it to start afresh")
                .with_source(e)
        })
    }

    pub async fn put_json<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<(), TargetError> {
        let bytes = serde_json::to_vec_pretty(value).expect("records serialize");
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(bytes))
            .content_type("application/json")
            .cache_control(super::files::NO_CACHE)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk::error("s3:PutObject", &self.what(key), "", e))
    }

    /// Every key under `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, TargetError> {
        let mut keys = Vec::new();
        let mut pages = self.client.list_objects_v2().bucket(&self.bucket).prefix(prefix).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| sdk::error("s3:ListBucket", &self.what(prefix), "", e))?;
            keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_owned)));
        }
        Ok(keys)
    }

    /// Deletes `keys`, 1,000 at a time (S3's limit per call).
    pub async fn delete(&self, keys: &[String]) -> Result<(), TargetError> {
        for chunk in keys.chunks(1000) {
            let objects = chunk
                .iter()
                .map(|k| ObjectIdentifier::builder().key(k).build().expect("a key is set"))
                .collect::<Vec<_>>();
            let delete = Delete::builder().set_objects(Some(objects)).quiet(true).build().expect("objects are set");
            let out = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| sdk::error("s3:DeleteObject", &self.what(&chunk[0]), "", e))?;
            if let Some(failed) = out.errors().first() {
                return Err(TargetError::new(format!(
                    "cannot delete {}: {}",
                    self.what(failed.key().unwrap_or_default()),
                    failed.message().or(failed.code()).unwrap_or("no reason given")
                )));
            }
        }
        Ok(())
    }
}

/// A key as `x-amz-copy-source` wants it: each segment percent-encoded, `/` kept.
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn copy_sources_are_percent_encoded_but_keep_slashes() {
        assert_eq!(super::encode_key("www/releases/1.0.0-ab/a b+c.js"), "www/releases/1.0.0-ab/a%20b%2Bc.js");
    }
}
