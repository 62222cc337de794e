//! Blob requests: is it there (HEAD), mount it from another repository of the same
//! registry, start an upload session, and download one (for a base image kept in
//! another registry), verifying its digest on the way to disk.

use std::io::Write;
use std::path::Path;

use futures::StreamExt;
use reqwest::StatusCode;
use reqwest::Url;
use reqwest::header::LOCATION;
use sha2::{Digest as _, Sha256};

use super::{Registry, RegistryError, pull_scope, push_scope};
use crate::publish::image::digest::Digest;

impl Registry {
    /// Whether `repository` already has the blob.
    pub async fn blob_exists(&self, repository: &str, digest: &Digest) -> Result<bool, RegistryError> {
        let url = self.url(&format!("/v2/{repository}/blobs/{digest}"));
        let response = self.send("check a blob", &push_scope(repository), |c| c.head(url.clone())).await?;
        match response.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.unexpected("check a blob", response).await),
        }
    }

    /// Links the blob from `from` into `repository` without moving its bytes. `false`
    /// when the registry declined (it then opened an upload session, cancelled here).
    pub async fn mount(&self, repository: &str, digest: &Digest, from: &str) -> Result<bool, RegistryError> {
        let mut url = self.url(&format!("/v2/{repository}/blobs/uploads/"));
        url.query_pairs_mut().append_pair("mount", digest.as_str()).append_pair("from", from);
        let mut scope = push_scope(repository);
        scope.extend(pull_scope(from));
        let response = self.send("mount a blob", &scope, |c| c.post(url.clone())).await?;
        match response.status() {
            StatusCode::CREATED => Ok(true),
            StatusCode::ACCEPTED => {
                if let Ok(session) = self.location(&response, "mount a blob") {
                    let _ = self.send("cancel an upload", &scope, |c| c.delete(session.clone())).await;
                }
                Ok(false)
            }
            _ => Err(self.unexpected("mount a blob", response).await),
        }
    }

    /// Opens an upload session and returns its URL.
    pub(super) async fn start_upload(&self, repository: &str) -> Result<Url, RegistryError> {
        let url = self.url(&format!("/v2/{repository}/blobs/uploads/"));
        let response = self.send("start an upload", &push_scope(repository), |c| c.post(url.clone())).await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(self.unexpected("start an upload", response).await);
        }
        self.location(&response, "start an upload")
    }

    /// The `Location` header, resolved against the registry (it may be relative).
    pub(super) fn location(&self, response: &reqwest::Response, operation: &str) -> Result<Url, RegistryError> {
        let protocol = |detail: &str| RegistryError::Protocol {
            registry: self.host.clone(),
            operation: operation.to_owned(),
            detail: detail.to_owned(),
        };
        let value = response.headers().get(LOCATION).ok_or_else(|| protocol("no Location header"))?;
        let value = value.to_str().map_err(|_| protocol("Location is not text"))?;
        self.base.join(value).map_err(|_| protocol("Location is not a URL"))
    }

    /// A small blob (an image config) in memory, checked against its digest.
    pub async fn blob_bytes(&self, repository: &str, digest: &Digest) -> Result<bytes::Bytes, RegistryError> {
        let url = self.url(&format!("/v2/{repository}/blobs/{digest}"));
        let response = self.send("get a blob", &pull_scope(repository), |c| c.get(url.clone())).await?;
        if !response.status().is_success() {
            return Err(self.unexpected("get a blob", response).await);
        }
        let bytes = response.bytes().await.map_err(|source| RegistryError::Transport {
            registry: self.host.clone(),
            operation: "get a blob".into(),
            source,
        })?;
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(RegistryError::DigestMismatch { expected: digest.clone(), actual });
        }
        Ok(bytes)
    }

    /// Downloads a blob of `repository` to `dest`, checking its digest.
    pub async fn download(&self, repository: &str, digest: &Digest, dest: &Path) -> Result<u64, RegistryError> {
        let url = self.url(&format!("/v2/{repository}/blobs/{digest}"));
        let response = self.send("download a blob", &pull_scope(repository), |c| c.get(url.clone())).await?;
        if !response.status().is_success() {
            return Err(self.unexpected("download a blob", response).await);
        }
        let local = |source| RegistryError::Local { what: dest.display().to_string(), source };
        let mut file = std::io::BufWriter::new(std::fs::File::create(dest).map_err(local)?);
        let mut hasher = Sha256::new();
        let mut size = 0;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|source| RegistryError::Transport {
                registry: self.host.clone(),
                operation: "download a blob".into(),
                source,
            })?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            file.write_all(&chunk).map_err(local)?;
        }
        file.flush().map_err(local)?;
        let actual = Digest::from_hasher(hasher);
        if &actual != digest {
            return Err(RegistryError::DigestMismatch { expected: digest.clone(), actual });
        }
        Ok(size)
    }
}
