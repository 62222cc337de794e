//! The S3 side of an environment's pipeline: what `gantry publish` wrote in the release
//! bucket, read back. `pipeline start` takes the latest published release from here and the
//! version id of the pipeline source object that holds it; the production gate reads which
//! release an execution's source revision (an object version id) carries.
//!
//! The layout is publish's (`publish::release`): `PREFIX/PROJECT/VERSION/release.json` is a
//! release's commit point (VERSION with `+` written `_`), and the pipeline source object is
//! a zip of that release.json and gantry.toml at one key, replaced by every publish. The
//! bucket is versioned (CodePipeline's S3 source requires it), so each publish leaves an
//! object version, and a version's release is the release.json inside its zip.

use std::io::Read;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use super::PipelineError;
use crate::config;
use crate::package::{MANIFEST_FILE, Manifest};

/// How many versions of the pipeline source object a lookup by release reads at most.
const MAX_SOURCE_VERSIONS: usize = 200;

/// The environment's release bucket, as publish lays it out.
#[derive(Debug, Clone)]
pub struct ReleaseBucket {
    client: aws_sdk_s3::Client,
    pub bucket: String,
    /// `PREFIX/PROJECT/`: every release's folder is below it.
    pub releases: String,
    /// The key of the pipeline source object.
    pub source_key: String,
}

/// One version of the pipeline source object.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceObject {
    pub version_id: String,
    /// Epoch seconds, S3's clock.
    pub last_modified: Option<f64>,
}

impl ReleaseBucket {
    /// `releases` is `PREFIX/PROJECT/`.
    pub fn new(
        client: aws_sdk_s3::Client,
        bucket: impl Into<String>,
        releases: impl Into<String>,
        source_key: impl Into<String>,
    ) -> Self {
        Self { client, bucket: bucket.into(), releases: releases.into(), source_key: source_key.into() }
    }

    /// The environment's bucket, or `None` when it names no `release_bucket`.
    pub fn for_env(client: aws_sdk_s3::Client, project: &str, env: &config::Environment) -> Option<Self> {
        let bucket = env.release_bucket.as_ref()?.to_string();
        let prefix = env.release_prefix.clone().unwrap_or_else(|| "releases".into());
        let releases =
            [prefix.trim_matches('/'), project].iter().filter(|p| !p.is_empty()).copied().collect::<Vec<_>>().join("/")
                + "/";
        Some(Self { client, bucket, releases, source_key: super::check::source_key(project, env) })
    }

    /// The key of a release's release.json.
    pub fn manifest_key(&self, version: &semver::Version) -> String {
        format!("{}{}/{MANIFEST_FILE}", self.releases, version.to_string().replace('+', "_"))
    }

    /// The highest version whose release.json is committed, if any.
    pub async fn latest_published(&self) -> Result<Option<semver::Version>, PipelineError> {
        let mut versions = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&self.releases)
            .delimiter("/")
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error("ListObjectsV2", &self.releases, e))?;
            for p in page.common_prefixes() {
                let folder = p.prefix().unwrap_or_default();
                let name = folder.strip_prefix(self.releases.as_str()).unwrap_or(folder).trim_end_matches('/');
                if let Ok(v) = semver::Version::parse(&name.replace('_', "+")) {
                    versions.push(v);
                }
            }
        }
        // Newest first; a folder without release.json is a publish that never committed.
        versions.sort_by(|a, b| b.cmp(a));
        for v in versions {
            if self.committed(&v).await? {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    /// Whether `version`'s release.json is in the bucket.
    pub async fn committed(&self, version: &semver::Version) -> Result<bool, PipelineError> {
        let key = self.manifest_key(version);
        match self.client.head_object().bucket(&self.bucket).key(&key).send().await {
            Ok(_) => Ok(true),
            Err(e) if status(&e) == Some(404) => Ok(false),
            Err(e) => Err(self.error("HeadObject", &key, e)),
        }
    }

    /// The current version of the pipeline source object, if there is one.
    pub async fn current_source(&self) -> Result<Option<SourceObject>, PipelineError> {
        let key = &self.source_key;
        match self.client.head_object().bucket(&self.bucket).key(key).send().await {
            Ok(out) => Ok(out.version_id().filter(|v| *v != "null").map(|v| SourceObject {
                version_id: v.to_owned(),
                last_modified: out.last_modified().map(|t| t.as_secs_f64()),
            })),
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(self.error("HeadObject", key, e)),
        }
    }

    /// The release inside one version of the pipeline source object.
    pub async fn source_release(&self, version_id: &str) -> Result<Manifest, PipelineError> {
        let key = &self.source_key;
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .version_id(version_id)
            .send()
            .await
            .map_err(|e| self.error("GetObject", key, e))?;
        let bytes = out.body.collect().await.map_err(|e| PipelineError::Bucket {
            operation: "GetObject",
            bucket: self.bucket.clone(),
            key: key.clone(),
            source: Box::new(e),
        })?;
        manifest_in_zip(&bytes.into_bytes()).map_err(|reason| PipelineError::BadSource {
            bucket: self.bucket.clone(),
            key: key.clone(),
            version_id: version_id.to_owned(),
            reason,
        })
    }

    /// The newest version of the pipeline source object that holds `release`, with its
    /// time; `None` when no version does (among the newest `MAX_SOURCE_VERSIONS`).
    pub async fn source_for(&self, release: &semver::Version) -> Result<Option<SourceObject>, PipelineError> {
        let key = &self.source_key;
        let out = self
            .client
            .list_object_versions()
            .bucket(&self.bucket)
            .prefix(key)
            .max_keys(i32::try_from(MAX_SOURCE_VERSIONS).unwrap_or(1000))
            .send()
            .await
            .map_err(|e| self.error("ListObjectVersions", key, e))?;
        let mut versions: Vec<SourceObject> = out
            .versions()
            .iter()
            .filter(|v| v.key() == Some(key.as_str()))
            .filter_map(|v| {
                Some(SourceObject {
                    version_id: v.version_id().filter(|id| *id != "null")?.to_owned(),
                    last_modified: v.last_modified().map(|t| t.as_secs_f64()),
                })
            })
            .collect();
        versions.sort_by(|a, b| b.last_modified.unwrap_or(0.0).total_cmp(&a.last_modified.unwrap_or(0.0)));
        for v in versions {
            if self.source_release(&v.version_id).await?.version == *release {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    fn error<E>(&self, operation: &'static str, key: &str, e: SdkError<E, HttpResponse>) -> PipelineError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        if e.code() == Some("NoSuchBucket") {
            return PipelineError::NoBucket { bucket: self.bucket.clone() };
        }
        PipelineError::Bucket {
            operation,
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            source: aws_sdk_s3::error::DisplayErrorContext(&e).to_string().into(),
        }
    }
}

fn status<E>(e: &SdkError<E, HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// The release.json inside a pipeline source zip.
fn manifest_in_zip(bytes: &[u8]) -> Result<Manifest, String> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| format!("not a zip: {e}"))?;
    let mut file = zip.by_name(MANIFEST_FILE).map_err(|e| format!("no {MANIFEST_FILE} inside: {e}"))?;
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(|e| format!("cannot read {MANIFEST_FILE}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("{MANIFEST_FILE} inside is not a release manifest: {e}"))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn zip_of(files: &[(&str, &str)]) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, text) in files {
            zip.start_file(*name, options).unwrap();
            zip.write_all(text.as_bytes()).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    #[test]
    fn the_release_is_the_manifest_inside_the_source_zip() {
        let manifest = r#"{"schema":1,"project":"hello","version":"1.2.3+build.7","commit":null,
            "created":"2026-01-01T00:00:00Z","source_date_epoch":0,"artifacts":[]}"#;
        let found = manifest_in_zip(&zip_of(&[("gantry.toml", ""), (MANIFEST_FILE, manifest)])).unwrap();
        assert_eq!(found.version.to_string(), "1.2.3+build.7");
        let missing = manifest_in_zip(&zip_of(&[("gantry.toml", "")])).unwrap_err();
        assert!(missing.starts_with("no release.json inside"), "{missing}");
        let bad = manifest_in_zip(&zip_of(&[(MANIFEST_FILE, "{}")])).unwrap_err();
        assert!(bad.starts_with("release.json inside is not a release manifest"), "{bad}");
        assert!(manifest_in_zip(b"not a zip").unwrap_err().starts_with("not a zip"));
    }
}
