//! The release's image, by digest: `gantry image push --version V` tags the image with the
//! version tag (`1.2.0`, `+` written `_`) in its ECR repository, and ECR knows the digest
//! the tag names (`DescribeImages`). Task definitions name the image by that digest, so a
//! tag moved later never changes what a revision runs.

use aws_sdk_ecr::types::ImageIdentifier;

use super::api;
use crate::publish::image::tags::version_tag;
use crate::targets::TargetError;

/// An image in ECR pinned by digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinned {
    /// `REGISTRY/REPOSITORY`, what task definitions name.
    pub uri: String,
    pub repository: String,
    pub tag: String,
    /// `sha256:...`
    pub digest: String,
}

impl Pinned {
    /// `REGISTRY/REPOSITORY@sha256:...`
    pub fn reference(&self) -> String {
        format!("{}@{}", self.uri, self.digest)
    }
}

/// The digest the release's version tag names in `repository`, checked to be in ECR.
/// `registry` is the environment's registry host when set (else ECR's repository URI).
pub async fn resolve(
    ecr: &aws_sdk_ecr::Client,
    image: &str,
    repository: &str,
    registry: Option<&str>,
    version: &semver::Version,
    env: &str,
) -> Result<Pinned, TargetError> {
    let repos = ecr
        .describe_repositories()
        .repository_names(repository)
        .send()
        .await
        .map_err(|e| api::error(format!("describe ECR repository `{repository}`"), e))?;
    let uri = match registry {
        Some(host) => format!("{}/{repository}", host.trim_end_matches('/')),
        None => repos
            .repositories()
            .first()
            .and_then(|r| r.repository_uri())
            .map(str::to_owned)
            .ok_or_else(|| TargetError::new(format!("ECR names no URI for repository `{repository}`")))?,
    };
    let tag = version_tag(version);
    let by_tag = ecr
        .describe_images()
        .repository_name(repository)
        .image_ids(ImageIdentifier::builder().image_tag(&tag).build())
        .send()
        .await;
    let digest = match by_tag {
        Ok(out) => out.image_details().first().and_then(|d| d.image_digest()).map(str::to_owned),
        Err(e) if api::is(&e, "ImageNotFoundException") => None,
        Err(e) => return Err(api::error(format!("describe image `{repository}:{tag}` in ECR"), e)),
    };
    let Some(digest) = digest else {
        return Err(TargetError::new(format!(
            "image `{image}` of release {version}: tag `{tag}` is not in ECR repository `{repository}`"
        ))
        .with_hint(format!("push it first: `gantry image push --env {env} --version {version} {image}`")));
    };
    check_digest(ecr, repository, &digest).await?;
    Ok(Pinned { uri, repository: repository.to_owned(), tag, digest })
}

/// Fails unless `digest` is an image in `repository`.
pub async fn check_digest(ecr: &aws_sdk_ecr::Client, repository: &str, digest: &str) -> Result<(), TargetError> {
    let found = ecr
        .describe_images()
        .repository_name(repository)
        .image_ids(ImageIdentifier::builder().image_digest(digest).build())
        .send()
        .await;
    match found {
        Ok(out) if !out.image_details().is_empty() => Ok(()),
        Ok(_) => Err(not_in_ecr(repository, digest)),
        Err(e) if api::is(&e, "ImageNotFoundException") => Err(not_in_ecr(repository, digest)),
        Err(e) => Err(api::error(format!("describe image `{repository}@{digest}` in ECR"), e)),
    }
}

fn not_in_ecr(repository: &str, digest: &str) -> TargetError {
    TargetError::new(format!("image digest {digest} not in ECR repository `{repository}`"))
        .with_hint("the image was deleted or pushed elsewhere: push the release's image again with `gantry image push`")
}
