//! Releases, their assets, and tag refs (REST: "Releases", "Release assets", "Git
//! references"). `sync_assets` makes a release's assets exactly the given files: an asset
//! whose size and SHA-256 match is kept, a different or broken one is deleted and uploaded
//! again, a missing one is uploaded; nothing is duplicated.

use std::path::PathBuf;

use bytes::Bytes;
use http::Method;
use sha2::{Digest, Sha256};

use super::{Body, GitHub, GithubError};

/// The fields of a release gantry reads (REST "Get a release").
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct Release {
    pub id: u64,
    pub tag_name: String,
    pub draft: bool,
    #[serde(default)]
    pub prerelease: bool,
    pub html_url: String,
    pub upload_url: String,
    #[serde(default)]
    pub target_commitish: Option<String>,
}

/// The fields of a release asset gantry reads (REST "List release assets").
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Asset {
    pub id: u64,
    pub name: String,
    pub size: u64,
    /// `uploaded` once complete; an interrupted upload leaves another state (`starter`).
    #[serde(default)]
    pub state: Option<String>,
    /// `sha256:HEX`, on API versions that expose it.
    #[serde(default)]
    pub digest: Option<String>,
    #[serde(default)]
    pub browser_download_url: Option<String>,
}

/// A local file to attach to a release.
#[derive(Debug, Clone)]
pub struct LocalAsset {
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
}

/// What `sync_assets` did with one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AssetAction {
    Kept,
    Uploaded,
    Replaced,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct AssetReport {
    pub name: String,
    pub size: u64,
    pub sha256: String,
    pub action: AssetAction,
    pub url: Option<String>,
}

impl GitHub {
    /// The release for `tag`, draft or published. "Get a release by tag name" returns
    /// published releases only, so a draft is found by listing (paginated, `Link: rel="next"`).
    pub async fn release_by_tag(&self, tag: &str) -> Result<Option<Release>, GithubError> {
        let path = self.path(&format!("/releases/tags/{}", encode(tag)));
        let reply = self.send(Method::GET, &path, Body::None).await?;
        if reply.status.is_success() {
            return Ok(Some(reply.json(&Method::GET, &path)?));
        }
        if reply.status != http::StatusCode::NOT_FOUND {
            super::ok(Method::GET, &path, reply)?;
        }
        let mut next = Some(self.path("/releases?per_page=100"));
        while let Some(url) = next {
            let reply = self.call(Method::GET, &url, Body::None).await?;
            let page: Vec<Release> = reply.json(&Method::GET, &url)?;
            if let Some(found) = page.into_iter().find(|r| r.tag_name == tag) {
                return Ok(Some(found));
            }
            next = reply.next_page();
        }
        Ok(None)
    }

    /// Creates a draft release of `tag` at `commit`. When one exists already (422
    /// `already_exists`, e.g. a run that raced this one), that one is returned.
    pub async fn create_draft(
        &self,
        tag: &str,
        commit: &str,
        notes: &str,
        prerelease: bool,
    ) -> Result<Release, GithubError> {
        let path = self.path("/releases");
        let body = serde_json::json!({
            "tag_name": tag,
            "target_commitish": commit,
            "name": tag,
            "body": notes,
            "draft": true,
            "prerelease": prerelease,
        });
        match self.call(Method::POST, &path, Body::Json(&body)).await {
            Ok(reply) => reply.json(&Method::POST, &path),
            Err(e) if e.is_unprocessable("already_exists") => match self.release_by_tag(tag).await? {
                Some(found) => Ok(found),
                None => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Publishes a draft ("Update a release" with `draft: false`); a stable release becomes latest.
    pub async fn publish(&self, release: &Release) -> Result<Release, GithubError> {
        let path = self.path(&format!("/releases/{}", release.id));
        let latest = if release.prerelease { "false" } else { "true" };
        let body = serde_json::json!({ "draft": false, "make_latest": latest });
        self.call(Method::PATCH, &path, Body::Json(&body)).await?.json(&Method::PATCH, &path)
    }

    /// Every asset of a release, following pagination.
    pub async fn assets(&self, release: u64) -> Result<Vec<Asset>, GithubError> {
        let mut all = Vec::new();
        let mut next = Some(self.path(&format!("/releases/{release}/assets?per_page=100")));
        while let Some(url) = next {
            let reply = self.call(Method::GET, &url, Body::None).await?;
            all.extend(reply.json::<Vec<Asset>>(&Method::GET, &url)?);
            next = reply.next_page();
        }
        Ok(all)
    }

    pub async fn delete_asset(&self, asset: u64) -> Result<(), GithubError> {
        let path = self.path(&format!("/releases/assets/{asset}"));
        let reply = self.send(Method::DELETE, &path, Body::None).await?;
        if reply.status == http::StatusCode::NOT_FOUND {
            return Ok(());
        }
        super::ok(Method::DELETE, &path, reply).map(|_| ())
    }

    /// The SHA-256 of an asset: its `digest`, else its bytes downloaded and hashed.
    pub async fn asset_sha256(&self, asset: &Asset) -> Result<String, GithubError> {
        if let Some(hex) = asset.digest.as_deref().and_then(|d| d.strip_prefix("sha256:")) {
            return Ok(hex.to_ascii_lowercase());
        }
        let path = self.path(&format!("/releases/assets/{}", asset.id));
        let reply = self.call(Method::GET, &path, Body::Download).await?;
        Ok(hex(&Sha256::digest(&reply.body)))
    }

    /// Uploads one file to the release's uploads host ("Upload a release asset": `POST
    /// {upload_url}?name=NAME` with the raw bytes).
    pub async fn upload(&self, release: &Release, file: &LocalAsset) -> Result<Asset, GithubError> {
        let data = tokio::fs::read(&file.path)
            .await
            .map_err(|e| GithubError::Asset { path: file.path.display().to_string(), message: e.to_string() })?;
        let got = hex(&Sha256::digest(&data));
        if got != file.sha256 {
            return Err(GithubError::Asset {
                path: file.path.display().to_string(),
                message: format!("it changed since it was packaged: SHA-256 {got}, expected {}", file.sha256),
            });
        }
        let base = release.upload_url.split('{').next().unwrap_or(&release.upload_url);
        let url = format!("{base}?name={}", encode(&file.name));
        let crab = self.uploads(&release.upload_url)?;
        let body = Body::Bytes { content_type: content_type(&file.name), data: Bytes::from(data) };
        let reply = super::send(&crab, Method::POST, &url, body).await?;
        let asset: Asset = super::ok(Method::POST, &url, reply)?.json(&Method::POST, &url)?;
        Ok(asset)
    }

    /// Makes the release's assets exactly `files` (see the module documentation).
    /// `progress` is told each file's outcome as it happens.
    pub async fn sync_assets(
        &self,
        release: &Release,
        files: &[LocalAsset],
        progress: &(dyn Fn(&AssetReport) + Sync),
    ) -> Result<Vec<AssetReport>, GithubError> {
        let existing = self.assets(release.id).await?;
        let mut reports = Vec::new();
        for file in files {
            let same_name: Vec<&Asset> = existing.iter().filter(|a| a.name == file.name).collect();
            let mut action = AssetAction::Uploaded;
            let mut kept = None;
            for asset in same_name {
                let complete = asset.state.as_deref().is_none_or(|s| s == "uploaded");
                if kept.is_none()
                    && complete
                    && asset.size == file.size
                    && self.asset_sha256(asset).await? == file.sha256
                {
                    kept = Some(asset);
                    continue;
                }
                self.delete_asset(asset.id).await?;
                action = AssetAction::Replaced;
            }
            let report = match kept {
                Some(asset) => AssetReport {
                    name: file.name.clone(),
                    size: file.size,
                    sha256: file.sha256.clone(),
                    action: AssetAction::Kept,
                    url: asset.browser_download_url.clone(),
                },
                None => {
                    let asset = match self.upload(release, file).await {
                        Ok(asset) => asset,
                        // A retried upload whose first attempt left a broken asset behind.
                        Err(e) if e.is_unprocessable("already_exists") => {
                            for stale in self.assets(release.id).await?.iter().filter(|a| a.name == file.name) {
                                self.delete_asset(stale.id).await?;
                            }
                            action = AssetAction::Replaced;
                            self.upload(release, file).await?
                        }
                        Err(e) => return Err(e),
                    };
                    AssetReport {
                        name: file.name.clone(),
                        size: file.size,
                        sha256: file.sha256.clone(),
                        action,
                        url: asset.browser_download_url,
                    }
                }
            };
            progress(&report);
            reports.push(report);
        }
        Ok(reports)
    }

    /// The commit a tag names on GitHub ("Get a reference"), peeling an annotated tag.
    pub async fn tag_commit(&self, tag: &str) -> Result<Option<String>, GithubError> {
        let path = self.path(&format!("/git/ref/tags/{}", encode(tag)));
        let reply = self.send(Method::GET, &path, Body::None).await?;
        if reply.status == http::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let reference: serde_json::Value = super::ok(Method::GET, &path, reply)?.json(&Method::GET, &path)?;
        let sha = reference["object"]["sha"].as_str().unwrap_or_default().to_owned();
        if reference["object"]["type"] == "tag" {
            let path = self.path(&format!("/git/tags/{sha}"));
            let tag: serde_json::Value = self.call(Method::GET, &path, Body::None).await?.json(&Method::GET, &path)?;
            return Ok(tag["object"]["sha"].as_str().map(str::to_owned));
        }
        Ok(Some(sha))
    }

    /// Creates `refs/tags/TAG` at `commit` ("Create a reference").
    pub async fn create_tag(&self, tag: &str, commit: &str) -> Result<(), GithubError> {
        let path = self.path("/git/refs");
        let body = serde_json::json!({ "ref": format!("refs/tags/{tag}"), "sha": commit });
        self.call(Method::POST, &path, Body::Json(&body)).await.map(|_| ())
    }
}

fn content_type(name: &str) -> &'static str {
    if name.ends_with(".zip") {
        "application/zip"
    } else if name.ends_with(".json") {
        "application/json"
    } else {
        "application/octet-stream"
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub(crate) fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
