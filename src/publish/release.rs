//! `gantry publish`: a packaged release into the environment's S3 release bucket.
//!
//! Plan, then apply. `plan` reads `dist/release.json`, checks every file it names
//! against its recorded size, SHA-256 and CRC64NVME (a file changed after packaging is
//! refused), and lays out the keys; it touches nothing remote. An archive whose stat still
//! matches `dist/.gantry-hashes.json` is not read again to plan: the upload checksums every
//! byte it sends and refuses to commit anything that is not the manifest's (`s3`). `apply` uploads, in this order:
//! 1. every artifact and `SHA256SUMS` under `PREFIX/PROJECT/VERSION/`;
//! 2. the pipeline source object (a zip of release.json and gantry.toml at the key
//!    the environment's CodePipeline S3 source watches), when the environment has a pipeline;
//! 3. `release.json` last: the commit point. It never names an object that is not
//!    fully uploaded and verified, and it is written with `If-None-Match: *`, so of two
//!    concurrent publishes of one version exactly one commits.
//!
//! Re-running is always safe: an object already stored with the same SHA-256 is
//! `unchanged` and not sent again. A published version is immutable: different bytes
//! under an existing key are refused unless `force`, and then replaced only if the
//! object is still the one gantry looked at (`If-Match`).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use serde::Serialize;

use super::s3::{self, Bucket, Condition, S3Error};
use crate::package::{self, MANIFEST_FILE, Manifest, SUMS_FILE};

/// What to publish where, from the command line and gantry.toml.
#[derive(Debug, Clone)]
pub struct PublishRequest {
    pub environment: String,
    pub bucket: String,
    /// Key prefix in the bucket (no leading or trailing `/`), e.g. `releases`.
    pub prefix: String,
    /// Key the pipeline's S3 source watches; `None` when the environment has no pipeline.
    pub source_key: Option<String>,
    pub dist: PathBuf,
    /// gantry.toml, packed into the pipeline source object beside release.json.
    pub config_path: PathBuf,
    /// `--version`: must match the packaged release.
    pub version: Option<String>,
    pub force: bool,
}

/// One object to put.
#[derive(Debug, Clone)]
pub struct PlannedObject {
    pub key: String,
    pub path: PathBuf,
    pub size: u64,
    pub sha256: [u8; 32],
    /// The file's CRC64NVME, as release.json records it for an artifact (computed for
    /// the other objects). A multipart upload proves its bytes by it.
    pub crc64nvme: Option<u64>,
    pub role: Role,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Artifact,
    Checksums,
    PipelineSource,
    Manifest,
}

/// The resolved plan: exactly what `apply` will put, in order.
#[derive(Debug)]
pub struct PublishPlan {
    pub manifest: Manifest,
    pub bucket: String,
    /// `PREFIX/PROJECT/VERSION/`
    pub release_prefix: String,
    /// Artifacts and SHA256SUMS, then the pipeline source object, then release.json.
    pub objects: Vec<PlannedObject>,
    /// Holds the pipeline source zip's temporary file for as long as the plan lives.
    _source_zip: Option<tempfile::NamedTempFile>,
}

/// What happened to one object.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectReport {
    pub key: String,
    pub role: Role,
    pub size: u64,
    pub sha256: String,
    /// The file's CRC64NVME (base64, as S3 reports it): the checksum S3 keeps for an
    /// object uploaded in parts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crc64nvme: Option<String>,
    pub status: Status,
    pub version_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Sent and verified.
    Uploaded,
    /// Already stored with the same SHA-256: not sent.
    Unchanged,
    /// Different bytes were stored; replaced because of `--force`.
    Replaced,
}

#[derive(Debug, Serialize)]
pub struct PublishReport {
    pub project: String,
    pub version: String,
    pub environment: String,
    pub bucket: String,
    pub prefix: String,
    pub objects: Vec<ObjectReport>,
    /// The pipeline source object as stored, when the environment has a pipeline: its
    /// version id is the source revision of the execution the S3 source starts.
    pub pipeline_source: Option<SourceReport>,
    pub bytes_uploaded: u64,
    pub elapsed_ms: u128,
}

/// Where the pipeline source object is, and which object version this publish left there.
#[derive(Debug, Clone, Serialize)]
pub struct SourceReport {
    pub key: String,
    pub version_id: Option<String>,
    pub status: Status,
}

/// Typed progress, consumed by `report::PublishReporter`.
#[derive(Debug)]
pub enum Event<'a> {
    Started { bucket: &'a str, prefix: &'a str, objects: usize, bytes: u64 },
    Progress { bytes: u64 },
    Object(&'a ObjectReport),
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("no packaged release in {}: {MANIFEST_FILE} is missing", .0.display())]
    NotPackaged(PathBuf),
    #[error("{} is not a release manifest", path.display())]
    BadManifest {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("the packaged release is {packaged}, not {asked}")]
    VersionMismatch { packaged: String, asked: String },
    #[error("{file} changed after it was packaged ({what})")]
    Changed { file: String, what: String },
    #[error("s3://{bucket}/{key} already holds different bytes: version {version} is published and immutable")]
    Immutable { bucket: String, key: String, version: String },
    #[error("another publish of {version} committed s3://{bucket}/{key} first, with different content")]
    LostRace { bucket: String, key: String, version: String },
    #[error(transparent)]
    S3(#[from] S3Error),
    #[error("cannot read {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl PublishError {
    pub fn exit_code(&self) -> u8 {
        use crate::exit;
        match self {
            Self::NotPackaged(_) | Self::BadManifest { .. } | Self::VersionMismatch { .. } => exit::USAGE,
            Self::S3(S3Error::NoBucket { .. }) => exit::USAGE,
            Self::S3(S3Error::Interrupted) => exit::INTERRUPTED,
            _ => exit::FAILED,
        }
    }

    pub fn hint(&self) -> Option<String> {
        Some(match self {
            Self::NotPackaged(_) | Self::BadManifest { .. } => "run `gantry package` first (or pass --dist DIR)".into(),
            Self::VersionMismatch { .. } => "package that version first, or leave out --version".into(),
            Self::Changed { .. } | Self::S3(S3Error::Changed { .. }) => {
                "run `gantry package` again: publish sends exactly what was packaged".into()
            }
            Self::Immutable { .. } => {
                "a published version never changes: package a new version, or pass --force to replace it".into()
            }
            Self::LostRace { .. } => "two publishes of one version raced; check which one you meant to ship".into(),
            Self::S3(S3Error::NoBucket { .. }) => "check `release_bucket` of the environment in gantry.toml".into(),
            Self::S3(S3Error::AccessDenied { .. }) => {
                "check the AWS credentials (AWS_PROFILE, role) and that they may read and write the bucket".into()
            }
            Self::S3(S3Error::Integrity { .. }) => {
                "nothing was committed: release.json was not written. Publish again; if it repeats, the network or the endpoint alters data".into()
            }
            _ => return None,
        })
    }
}

/// Reads the packaged release and lays out what to upload. Touches nothing remote.
pub fn plan(request: &PublishRequest) -> Result<PublishPlan, PublishError> {
    let manifest_path = request.dist.join(MANIFEST_FILE);
    if !manifest_path.is_file() {
        return Err(PublishError::NotPackaged(request.dist.clone()));
    }
    let manifest_bytes =
        std::fs::read(&manifest_path).map_err(|source| PublishError::Io { path: manifest_path.clone(), source })?;
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|source| PublishError::BadManifest { path: manifest_path.clone(), source })?;
    if let Some(asked) = &request.version {
        let asked = package::parse_version(asked).map_err(|_| PublishError::VersionMismatch {
            packaged: manifest.version.to_string(),
            asked: asked.clone(),
        })?;
        if asked != manifest.version {
            return Err(PublishError::VersionMismatch {
                packaged: manifest.version.to_string(),
                asked: asked.to_string(),
            });
        }
    }

    let version = manifest.version.to_string().replace('+', "_");
    let release_prefix = join_key(&[&request.prefix, &manifest.project, &version]) + "/";
    let mut objects = Vec::new();
    let mut hashes = package::HashCache::load(&request.dist);
    let mut hashed = false;
    for artifact in &manifest.artifacts {
        let path = request.dist.join(&artifact.file);
        let recorded_crc = match &artifact.crc64nvme {
            Some(b64) => Some(package::manifest::parse_crc64nvme(b64).ok_or_else(|| PublishError::Changed {
                file: MANIFEST_FILE.into(),
                what: format!("`{b64}` (crc64nvme of {}) is not a CRC64NVME", artifact.file),
            })?),
            None => None,
        };
        let (size, sha256, crc64nvme) = match hashes.sha256(&request.dist, &artifact.file) {
            // Untouched since it was hashed: no need to read it (the upload checks what it sends).
            Some(known) if known == artifact.sha256 => (artifact.size, parse_hex(&artifact.sha256)?, recorded_crc),
            _ => {
                let expected = Recorded { size: artifact.size, sha256: &artifact.sha256, crc64nvme: recorded_crc };
                let (size, sha256, crc) = checked(&path, &artifact.file, Some(expected))?;
                hashes.record(&request.dist, &artifact.file, &artifact.sha256);
                hashed = true;
                (size, sha256, Some(crc))
            }
        };
        objects.push(PlannedObject {
            key: format!("{release_prefix}{}", artifact.file),
            path,
            size,
            sha256,
            crc64nvme,
            role: Role::Artifact,
        });
    }
    if hashed {
        hashes.save(&request.dist);
    }
    let sums_path = request.dist.join(SUMS_FILE);
    let sums =
        std::fs::read_to_string(&sums_path).map_err(|source| PublishError::Io { path: sums_path.clone(), source })?;
    if sums != manifest.sha256sums() {
        return Err(PublishError::Changed { file: SUMS_FILE.into(), what: "it does not match release.json".into() });
    }
    let (size, sha256, crc) = checked(&sums_path, SUMS_FILE, None)?;
    objects.push(PlannedObject {
        key: format!("{release_prefix}{SUMS_FILE}"),
        path: sums_path,
        size,
        sha256,
        crc64nvme: Some(crc),
        role: Role::Checksums,
    });

    let source_zip = match &request.source_key {
        Some(key) => {
            let zip = source_zip(&manifest_path, &request.config_path, &request.dist, manifest.source_date_epoch)?;
            let (size, sha256, crc) = checked(zip.path(), "pipeline source", None)?;
            objects.push(PlannedObject {
                key: key.clone(),
                path: zip.path().to_owned(),
                size,
                sha256,
                crc64nvme: Some(crc),
                role: Role::PipelineSource,
            });
            Some(zip)
        }
        None => None,
    };
    let (size, sha256, crc) = checked(&manifest_path, MANIFEST_FILE, None)?;
    objects.push(PlannedObject {
        key: format!("{release_prefix}{MANIFEST_FILE}"),
        path: manifest_path,
        size,
        sha256,
        crc64nvme: Some(crc),
        role: Role::Manifest,
    });
    Ok(PublishPlan { manifest, bucket: request.bucket.clone(), release_prefix, objects, _source_zip: source_zip })
}

/// Uploads the plan's objects in order; see the module documentation.
pub async fn apply(
    request: &PublishRequest,
    plan: &PublishPlan,
    bucket: &Bucket,
    cancel: &AtomicBool,
    events: &(dyn Fn(Event<'_>) + Sync),
) -> Result<PublishReport, PublishError> {
    let started = Instant::now();
    bucket.check().await?;
    let total = plan.objects.iter().map(|o| o.size).sum();
    events(Event::Started {
        bucket: &plan.bucket,
        prefix: &plan.release_prefix,
        objects: plan.objects.len(),
        bytes: total,
    });
    let version = plan.manifest.version.to_string();
    let mut reports = Vec::with_capacity(plan.objects.len());
    let mut bytes_uploaded = 0;
    for object in &plan.objects {
        let report = put_one(request, bucket, object, &version, cancel, events).await?;
        if report.status != Status::Unchanged {
            bytes_uploaded += object.size;
        }
        events(Event::Object(&report));
        reports.push(report);
    }
    let pipeline_source = reports.iter().find(|r| r.role == Role::PipelineSource).map(|r| SourceReport {
        key: r.key.clone(),
        version_id: r.version_id.clone(),
        status: r.status,
    });
    Ok(PublishReport {
        project: plan.manifest.project.clone(),
        version,
        environment: request.environment.clone(),
        bucket: plan.bucket.clone(),
        prefix: plan.release_prefix.clone(),
        objects: reports,
        pipeline_source,
        bytes_uploaded,
        elapsed_ms: started.elapsed().as_millis(),
    })
}

async fn put_one(
    request: &PublishRequest,
    bucket: &Bucket,
    object: &PlannedObject,
    version: &str,
    cancel: &AtomicBool,
    events: &(dyn Fn(Event<'_>) + Sync),
) -> Result<ObjectReport, PublishError> {
    let hex = s3::hex(&object.sha256);
    let report = |status, version_id| ObjectReport {
        key: object.key.clone(),
        role: object.role,
        size: object.size,
        sha256: hex.clone(),
        crc64nvme: object.crc64nvme.map(package::manifest::crc64nvme_b64),
        status,
        version_id,
    };
    let existing = bucket.head(&object.key).await?;
    let local =
        s3::LocalFile { path: &object.path, size: object.size, sha256: object.sha256, crc64nvme: object.crc64nvme };
    let same = |r: &s3::Remote| s3::Bucket::holds(r, &local);
    // The pipeline source is a pointer to the latest release: it is replaced, never refused.
    let replaceable = object.role == Role::PipelineSource || request.force;
    let (condition, status) = match &existing {
        Some(remote) if same(remote) => return Ok(report(Status::Unchanged, remote.version_id.clone())),
        Some(remote) if replaceable => (remote.etag.clone().map(Condition::Unchanged), Status::Replaced),
        Some(_) => {
            return Err(PublishError::Immutable {
                bucket: bucket.name.clone(),
                key: object.key.clone(),
                version: version.into(),
            });
        }
        None => (Some(Condition::Absent), Status::Uploaded),
    };
    let progress = |n| events(Event::Progress { bytes: n });
    match bucket.put_file(&object.key, &local, condition, cancel, &progress).await {
        Ok(up) => Ok(report(status, up.version_id)),
        // Someone else wrote the key between our look and our write: same bytes are fine.
        Err(S3Error::PreconditionFailed { .. }) => match bucket.head(&object.key).await? {
            Some(remote) if same(&remote) => Ok(report(Status::Unchanged, remote.version_id)),
            _ if object.role == Role::Manifest => Err(PublishError::LostRace {
                bucket: bucket.name.clone(),
                key: object.key.clone(),
                version: version.into(),
            }),
            _ => Err(PublishError::Immutable {
                bucket: bucket.name.clone(),
                key: object.key.clone(),
                version: version.into(),
            }),
        },
        Err(e) => Err(e.into()),
    }
}

/// What release.json records of an artifact.
struct Recorded<'a> {
    size: u64,
    sha256: &'a str,
    crc64nvme: Option<u64>,
}

/// Size, SHA-256 and CRC64NVME of `path`, checked against what the manifest recorded.
fn checked(path: &Path, name: &str, expected: Option<Recorded<'_>>) -> Result<(u64, [u8; 32], u64), PublishError> {
    let found = package::hash_file(path).map_err(|e| match e {
        package::PackageError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            PublishError::Changed { file: name.to_owned(), what: "it is missing".into() }
        }
        package::PackageError::Io { source, path, .. } => PublishError::Io { path, source },
        other => PublishError::Io { path: path.to_owned(), source: std::io::Error::other(other.to_string()) },
    })?;
    if let Some(want) = expected
        && (found.size != want.size
            || found.sha256 != want.sha256
            || want.crc64nvme.is_some_and(|crc| crc != found.crc64nvme))
    {
        let what = format!(
            "release.json says {} bytes, sha256 {}{}; it is {} bytes, sha256 {}{}",
            want.size,
            &want.sha256[..want.sha256.len().min(12)],
            want.crc64nvme.map(|c| format!(", crc64nvme {}", package::manifest::crc64nvme_b64(c))).unwrap_or_default(),
            found.size,
            &found.sha256[..12],
            want.crc64nvme
                .map(|_| format!(", crc64nvme {}", package::manifest::crc64nvme_b64(found.crc64nvme)))
                .unwrap_or_default(),
        );
        return Err(PublishError::Changed { file: name.to_owned(), what });
    }
    Ok((found.size, parse_hex(&found.sha256)?, found.crc64nvme))
}

/// A hex SHA-256 (from release.json or `hash_file`) as bytes.
fn parse_hex(hex: &str) -> Result<[u8; 32], PublishError> {
    let mut digest = [0; 32];
    let bad = || PublishError::Changed { file: MANIFEST_FILE.into(), what: format!("`{hex}` is not a SHA-256") };
    if hex.len() != 64 {
        return Err(bad());
    }
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16).map_err(|_| bad())?;
    }
    Ok(digest)
}

/// The pipeline source object: release.json and gantry.toml in a reproducible zip.
fn source_zip(manifest: &Path, config: &Path, dir: &Path, epoch: i64) -> Result<tempfile::NamedTempFile, PublishError> {
    fn io_err(path: &Path) -> impl Fn(std::io::Error) -> PublishError + '_ {
        move |source| PublishError::Io { path: path.to_owned(), source }
    }
    let entry = |name: &str, path: &Path| -> Result<package::Entry, PublishError> {
        let size = std::fs::metadata(path).map_err(io_err(path))?.len();
        Ok(package::Entry {
            name: name.into(),
            path: path.to_owned(),
            kind: package::EntryKind::File { size, executable: false },
        })
    };
    let entries = vec![entry("gantry.toml", config)?, entry(MANIFEST_FILE, manifest)?];
    let temp = package::create_temp_in(dir).map_err(io_err(dir))?;
    let file = temp.as_file().try_clone().map_err(io_err(temp.path()))?;
    let options = package::ArchiveOptions { source_date_epoch: epoch, threads: 1, spool_dir: dir.to_owned() };
    package::write_archive(file, &entries, &options, &AtomicBool::new(false), &mut |_| {})
        .map_err(|e| PublishError::Io { path: temp.path().to_owned(), source: std::io::Error::other(e.to_string()) })?;
    Ok(temp)
}

fn join_key(parts: &[&str]) -> String {
    parts.iter().map(|p| p.trim_matches('/')).filter(|p| !p.is_empty()).collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_join_without_doubled_slashes() {
        assert_eq!(join_key(&["releases/", "/hello", "1.0.0"]), "releases/hello/1.0.0");
        assert_eq!(join_key(&["", "hello", "1.0.0"]), "hello/1.0.0");
    }
}
