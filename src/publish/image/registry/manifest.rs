//! Manifest requests: what a tag points at (HEAD, `Docker-Content-Digest`), a manifest's
//! bytes (GET, digest computed by gantry, never taken on trust), and PUT under a tag.

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE};

use super::{Registry, RegistryError, Scope};
use crate::publish::image::digest::Digest;
use crate::publish::image::oci::{MANIFEST_TYPES, Probe};

const DIGEST_HEADER: &str = "Docker-Content-Digest";

/// A manifest as the registry stores it.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: Bytes,
    pub media_type: String,
    pub digest: Digest,
}

impl Registry {
    /// The digest `reference` (a tag or digest) resolves to in `repository`; `None` if absent.
    pub async fn manifest_digest(
        &self,
        repository: &str,
        reference: &str,
        scope: &Scope,
    ) -> Result<Option<Digest>, RegistryError> {
        let url = self.url(&format!("/v2/{repository}/manifests/{reference}"));
        let accept = MANIFEST_TYPES.join(", ");
        let response = self.send("look up a tag", scope, |c| c.head(url.clone()).header(ACCEPT, &accept)).await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => {
                let header = response.headers().get(DIGEST_HEADER).and_then(|v| v.to_str().ok());
                match header.and_then(|h| h.parse::<Digest>().ok()) {
                    Some(digest) => Ok(Some(digest)),
                    // Without the header, the bytes decide.
                    None => Ok(self.manifest(repository, reference, scope).await?.map(|m| m.digest)),
                }
            }
            _ => Err(self.unexpected("look up a tag", response).await),
        }
    }

    /// The manifest `reference` names in `repository`; `None` if absent.
    pub async fn manifest(
        &self,
        repository: &str,
        reference: &str,
        scope: &Scope,
    ) -> Result<Option<Fetched>, RegistryError> {
        let url = self.url(&format!("/v2/{repository}/manifests/{reference}"));
        let accept = MANIFEST_TYPES.join(", ");
        let response = self.send("get a manifest", scope, |c| c.get(url.clone()).header(ACCEPT, &accept)).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(self.unexpected("get a manifest", response).await);
        }
        let header_type = response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let bytes = response.bytes().await.map_err(|source| RegistryError::Transport {
            registry: self.host.clone(),
            operation: "get a manifest".into(),
            source,
        })?;
        let media_type = match header_type.filter(|t| MANIFEST_TYPES.contains(&t.as_str())) {
            Some(t) => t,
            None => Probe::kind(&bytes).map_err(|e| RegistryError::Protocol {
                registry: self.host.clone(),
                operation: "get a manifest".into(),
                detail: format!("the manifest is not JSON: {e}"),
            })?,
        };
        Ok(Some(Fetched { digest: Digest::of(&bytes), bytes, media_type }))
    }

    /// Stores `manifest` under `tag`; returns the digest the registry says it stored.
    pub async fn put_manifest(
        &self,
        repository: &str,
        tag: &str,
        manifest: &Bytes,
        media_type: &str,
        scope: &Scope,
    ) -> Result<Option<String>, RegistryError> {
        let url = self.url(&format!("/v2/{repository}/manifests/{tag}"));
        let response = self
            .send("push the manifest", scope, |c| {
                c.put(url.clone()).header(CONTENT_TYPE, media_type).body(manifest.clone())
            })
            .await?;
        if !response.status().is_success() {
            return Err(self.unexpected("push the manifest", response).await);
        }
        Ok(response.headers().get(DIGEST_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned))
    }
}
