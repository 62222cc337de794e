//! One push, start to end: log in once, then for each image decide unchanged or not by its
//! inputs tag, prepare it, refuse before uploading anything if an immutable tag would have
//! to move, transfer the blobs, tag (the version first, the inputs tag last, so the inputs
//! tag only ever names a complete push), and read every tag back to verify its digest.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bytes::Bytes;

use super::digest::Digest;
use super::ecr::{self, EcrToken};
use super::registry::{Credentials, Registry, Scope, push_scope};
use super::tags::{TagPolicy, version_tag};
use super::transfer::{self, Transfer};
use super::{BlobCounts, Event, Events, ImageError, ImageReport, PushRequest, Status, TagChange, inputs, source};
use crate::config;

/// Pushes every image of the request, in order; stops at the first failure.
pub async fn push(
    request: &PushRequest,
    ecr_client: aws_sdk_ecr::Client,
    events: Events,
    cancel: Arc<AtomicBool>,
) -> Result<Vec<ImageReport>, ImageError> {
    if request.images.is_empty() {
        return Err(ImageError::NoImages);
    }
    let token = Arc::new(EcrToken::new(ecr_client.clone()));
    let host = match &request.registry {
        Some(registry) => registry.clone(),
        None => token.proxy_host().await?.ok_or_else(|| ImageError::Ecr {
            operation: "get an ECR authorization token",
            message: "the answer names no registry (proxyEndpoint)".into(),
        })?,
    };
    let registry = Arc::new(Registry::new(&host, Credentials::Ecr(token))?);
    registry.login().await?;
    events(Event::LoggedIn { registry: registry.host().to_owned() });
    let scratch = tempfile::Builder::new()
        .prefix("gantry-image-")
        .tempdir()
        .map_err(|source| ImageError::Read { context: "cannot create a temporary folder".into(), source })?;
    let mut reports = Vec::new();
    for (name, image) in &request.images {
        let job = Job {
            request,
            name,
            image,
            registry: &registry,
            scratch: scratch.path(),
            events: &events,
            cancel: &cancel,
        };
        reports.push(job.run(&ecr_client).await?);
    }
    Ok(reports)
}

struct Job<'a> {
    request: &'a PushRequest,
    name: &'a config::Name,
    image: &'a config::Image,
    registry: &'a Arc<Registry>,
    scratch: &'a std::path::Path,
    events: &'a Events,
    cancel: &'a Arc<AtomicBool>,
}

impl Job<'_> {
    async fn run(&self, ecr_client: &aws_sdk_ecr::Client) -> Result<ImageReport, ImageError> {
        let started = Instant::now();
        let (name, repo) = (self.name.to_string(), self.image.repository.as_str());
        let (dir, globs, image) = (self.request.project_dir.clone(), self.image.inputs.clone(), name.clone());
        let hashing = async {
            tokio::task::spawn_blocking(move || inputs::hash(&image, &dir, &globs))
                .await
                .expect("hashing does not panic")
        };
        let describing = ecr::repository(ecr_client, repo, &name, self.request.region.as_deref());
        let (inputs, policy) = tokio::try_join!(hashing, describing)?;
        let inputs_tag = inputs.tag();
        (self.events)(Event::InputsHashed { image: name.clone(), files: inputs.files, tag: inputs_tag.clone() });
        let scope = push_scope(repo);
        let version = self.request.version.as_ref().map(version_tag);
        let mut report = ImageReport {
            image: name.clone(),
            repository: repo.to_owned(),
            registry: self.registry.host().to_owned(),
            reference: String::new(),
            digest: Digest::of(b""),
            tags: version.iter().cloned().chain([inputs_tag.clone()]).collect(),
            inputs_hash: inputs.hex.clone(),
            status: Status::Unchanged,
            blobs: BlobCounts::default(),
            bytes_uploaded: 0,
            elapsed_seconds: 0.0,
        };

        if let Some(existing) = self.registry.manifest_digest(repo, &inputs_tag, &scope).await? {
            (self.events)(Event::Unchanged { image: name.clone(), reference: self.reference(repo, &inputs_tag) });
            if let Some(tag) = &version {
                let change = self.check_tag(repo, &policy, tag, &existing, &scope).await?;
                if change != TagChange::AlreadyThere {
                    let fetched = self.registry.manifest(repo, existing.as_str(), &scope).await?.ok_or_else(|| {
                        ImageError::VerifyMismatch {
                            repository: repo.to_owned(),
                            tag: inputs_tag.clone(),
                            expected: existing.clone(),
                            actual: "missing".into(),
                        }
                    })?;
                    self.put_tag(repo, tag, &fetched.bytes, &fetched.media_type, &existing, &scope).await?;
                }
                self.verify(repo, tag, &existing, &scope).await?;
                (self.events)(Event::Tagged { reference: self.reference(repo, tag), change });
            }
            return Ok(self.finish(report, existing, started));
        }

        self.check_cancel()?;
        (self.events)(Event::Preparing { image: name.clone() });
        let ctx = source::Context {
            image: &name,
            project_dir: &self.request.project_dir,
            scratch: self.scratch,
            source_date_epoch: self.request.source_date_epoch,
            target: self.registry,
            cancel: self.cancel,
        };
        let local = source::prepare(self.image, &ctx).await?;
        (self.events)(Event::Prepared {
            image: name.clone(),
            source: local.source.clone(),
            digest: local.digest.clone(),
            blobs: local.blobs.len(),
            bytes: local.blobs.iter().map(|b| b.size).sum(),
        });
        // Every tag is checked before any upload: a conflict changes nothing.
        let mut planned = Vec::new();
        for tag in &report.tags {
            planned.push((tag.clone(), self.check_tag(repo, &policy, tag, &local.digest, &scope).await?));
        }
        self.check_cancel()?;
        let transfer = Arc::new(Transfer {
            image: name.clone(),
            registry: Arc::clone(self.registry),
            repository: repo.to_owned(),
            scratch: self.scratch.to_owned(),
            events: Arc::clone(self.events),
            cancel: Arc::clone(self.cancel),
        });
        let (counts, uploaded) = transfer::blobs(transfer, local.blobs).await?;
        self.check_cancel()?;
        for (tag, change) in planned {
            if change != TagChange::AlreadyThere {
                self.put_tag(repo, &tag, &local.manifest, &local.media_type, &local.digest, &scope).await?;
            }
            self.verify(repo, &tag, &local.digest, &scope).await?;
            (self.events)(Event::Tagged { reference: self.reference(repo, &tag), change });
        }
        report.status = Status::Pushed;
        report.blobs = counts;
        report.bytes_uploaded = uploaded;
        Ok(self.finish(report, local.digest, started))
    }

    /// What `tag` points at now; an error if it must move and may not.
    async fn check_tag(
        &self,
        repo: &str,
        policy: &TagPolicy,
        tag: &str,
        digest: &Digest,
        scope: &Scope,
    ) -> Result<TagChange, ImageError> {
        match self.registry.manifest_digest(repo, tag, scope).await? {
            None => Ok(TagChange::Created),
            Some(current) if &current == digest => Ok(TagChange::AlreadyThere),
            Some(current) if policy.is_immutable(tag) => Err(ImageError::TagConflict {
                tag: tag.to_owned(),
                repository: format!("{}/{repo}", self.registry.host()),
                existing: current,
                digest: digest.clone(),
            }),
            Some(current) => Ok(TagChange::Moved { from: current }),
        }
    }

    async fn put_tag(
        &self,
        repo: &str,
        tag: &str,
        manifest: &Bytes,
        media_type: &str,
        digest: &Digest,
        scope: &Scope,
    ) -> Result<(), ImageError> {
        let stored = self.registry.put_manifest(repo, tag, manifest, media_type, scope).await?;
        match stored {
            Some(stored) if stored != digest.as_str() => Err(self.mismatch(repo, tag, digest, stored)),
            _ => Ok(()),
        }
    }

    /// Reads the tag back: it must name exactly the digest gantry computed.
    async fn verify(&self, repo: &str, tag: &str, digest: &Digest, scope: &Scope) -> Result<(), ImageError> {
        match self.registry.manifest_digest(repo, tag, scope).await? {
            Some(actual) if &actual == digest => Ok(()),
            other => Err(self.mismatch(repo, tag, digest, other.map_or("missing".into(), |d| d.to_string()))),
        }
    }

    fn mismatch(&self, repo: &str, tag: &str, expected: &Digest, actual: String) -> ImageError {
        let repository = format!("{}/{repo}", self.registry.host());
        ImageError::VerifyMismatch { repository, tag: tag.to_owned(), expected: expected.clone(), actual }
    }

    fn reference(&self, repo: &str, tag: &str) -> String {
        format!("{}/{repo}:{tag}", self.registry.host())
    }

    fn check_cancel(&self) -> Result<(), ImageError> {
        if self.cancel.load(Ordering::Relaxed) { Err(ImageError::Interrupted) } else { Ok(()) }
    }

    fn finish(&self, mut report: ImageReport, digest: Digest, started: Instant) -> ImageReport {
        report.reference = format!("{}/{}@{digest}", report.registry, report.repository);
        report.digest = digest;
        report.elapsed_seconds = (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
        report
    }
}
