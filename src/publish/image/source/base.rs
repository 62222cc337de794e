//! A base image pinned by digest, read from its registry: the manifest (the linux/amd64
//! one when the digest names a multi-platform index) and the config, both checked against
//! their digests. Its layers stay where they are; at push time they are mounted (same
//! registry) or copied.

use std::sync::Arc;

use super::Context;
use crate::publish::image::ImageError;
use crate::publish::image::digest::Digest;
use crate::publish::image::oci::{Index, Manifest, is_index, pick_platform};
use crate::publish::image::registry::{Credentials, Registry, pull_scope};

/// `registry/repository@sha256:...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `host[:port]`; Docker Hub references resolve to `registry-1.docker.io`.
    pub registry: String,
    pub repository: String,
    pub digest: Digest,
}

/// A pulled base: what the new image builds on.
pub struct Base {
    pub reference: Reference,
    pub manifest: Manifest,
    pub config: serde_json::Value,
    pub registry: Arc<Registry>,
}

pub fn parse(text: &str) -> Result<Reference, String> {
    let (name, digest) = text.rsplit_once('@').ok_or("the reference has no @sha256: digest")?;
    let digest: Digest = digest.parse()?;
    // A tag beside the digest (`alpine:3.20@sha256:...`) is informational: the digest wins.
    let name = match name.rsplit_once(':') {
        Some((before, tag)) if !tag.contains('/') => before,
        _ => name,
    };
    let (registry, repository) = match name.split_once('/') {
        Some((host, rest)) if host.contains(['.', ':']) || host == "localhost" => (host.to_owned(), rest.to_owned()),
        Some(_) => ("docker.io".to_owned(), name.to_owned()),
        None => ("docker.io".to_owned(), format!("library/{name}")),
    };
    let registry = if registry == "docker.io" { "registry-1.docker.io".to_owned() } else { registry };
    if repository.is_empty() || repository.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!("`{name}` is not a valid repository name"));
    }
    Ok(Reference { registry, repository, digest })
}

pub async fn pull(text: &str, ctx: &Context<'_>) -> Result<Base, ImageError> {
    let fail = |message: String| ImageError::Base { base: text.to_owned(), message };
    let reference = parse(text).map_err(fail)?;
    let registry = if reference.registry == ctx.target.host() {
        Arc::clone(ctx.target)
    } else {
        let registry = Arc::new(Registry::new(&reference.registry, Credentials::Anonymous)?);
        registry.login().await?;
        registry
    };
    let (repo, scope) = (&reference.repository, pull_scope(&reference.repository));
    let fetched = registry
        .manifest(repo, reference.digest.as_str(), &scope)
        .await?
        .ok_or_else(|| fail(format!("{} has no manifest {}", reference.registry, reference.digest)))?;
    if fetched.digest != reference.digest {
        return Err(fail(format!("the registry answered with a manifest whose digest is {}", fetched.digest)));
    }
    let mut bytes = fetched.bytes;
    if is_index(&fetched.media_type) {
        let index: Index = serde_json::from_slice(&bytes).map_err(|e| fail(format!("image index: {e}")))?;
        let chosen = pick_platform(&index, "linux", "amd64")
            .ok_or_else(|| fail("the image index has no linux/amd64 image".into()))?
            .digest
            .clone();
        let one = registry
            .manifest(repo, chosen.as_str(), &scope)
            .await?
            .ok_or_else(|| fail(format!("the linux/amd64 manifest {chosen} is missing")))?;
        if one.digest != chosen {
            return Err(fail(format!("the registry answered {chosen} with a manifest whose digest is {}", one.digest)));
        }
        bytes = one.bytes;
    }
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| fail(format!("manifest: {e}")))?;
    let config = registry.blob_bytes(repo, &manifest.config.digest).await?;
    let config = serde_json::from_slice(&config).map_err(|e| fail(format!("config: {e}")))?;
    Ok(Base { reference, manifest, config, registry })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn references_name_registry_and_repository() {
        let r = parse(&format!("127.0.0.1:5000/base/python@{D}")).unwrap();
        assert_eq!((r.registry.as_str(), r.repository.as_str()), ("127.0.0.1:5000", "base/python"));
        let r = parse(&format!("public.ecr.aws/docker/library/alpine:3.20@{D}")).unwrap();
        assert_eq!((r.registry.as_str(), r.repository.as_str()), ("public.ecr.aws", "docker/library/alpine"));
        let r = parse(&format!("alpine@{D}")).unwrap();
        assert_eq!((r.registry.as_str(), r.repository.as_str()), ("registry-1.docker.io", "library/alpine"));
        let r = parse(&format!("localhost/x@{D}")).unwrap();
        assert_eq!(r.registry, "localhost");
        assert!(parse("alpine:3.20").is_err());
        assert!(parse("alpine@sha256:abc").is_err());
    }
}
