//! What can go wrong pushing an image, each error naming the image, repository, tag or
//! blob it is about, with its exit code and a hint where one helps.

use std::path::PathBuf;

use super::digest::Digest;
use super::registry::RegistryError;
use crate::exit;
use crate::package::WalkError;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("gantry.toml has no [images] to push")]
    NoImages,
    #[error("no image named `{name}` in gantry.toml")]
    UnknownImage { name: String, known: Vec<String> },
    #[error("cannot list the inputs of image `{image}`")]
    Inputs {
        image: String,
        #[source]
        source: Box<WalkError>,
    },
    #[error("the inputs of image `{image}` select no files (inputs = [{}])", globs.join(", "))]
    NoInputs { image: String, globs: Vec<String> },
    #[error("`{key}` of image `{image}` does not exist: {}", path.display())]
    SourceMissing { image: String, key: &'static str, path: PathBuf },
    #[error("image `{image}`: {message}")]
    Source { image: String, message: String },
    #[error("image `{image}`: blob {expected} in {location} is corrupt (its content hashes to {actual})")]
    Corrupt { image: String, location: String, expected: Digest, actual: Digest },
    #[error("image `{image}`: cannot build layer {index} ({src})")]
    Layer {
        image: String,
        index: usize,
        src: String,
        #[source]
        source: Box<super::source::LayerError>,
    },
    #[error("base image `{base}`: {message}")]
    Base { base: String, message: String },
    #[error("{context}")]
    Read {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot {operation} (ECR)")]
    Ecr { operation: &'static str, message: String },
    #[error("ECR repository `{repository}` does not exist{}", region.as_deref().map(|r| format!(" in {r}")).unwrap_or_default())]
    RepositoryNotFound { repository: String, region: Option<String>, image: String },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(
        "tag `{tag}` of immutable repository {repository} already points at {existing}, not at {digest} (the image being pushed)"
    )]
    TagConflict { tag: String, repository: String, existing: Digest, digest: Digest },
    #[error("after pushing, {repository}:{tag} is {actual}, but gantry pushed {expected}")]
    VerifyMismatch { repository: String, tag: String, expected: Digest, actual: String },
    #[error("interrupted; no tag was moved")]
    Interrupted,
}

impl ImageError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::NoImages
            | Self::UnknownImage { .. }
            | Self::NoInputs { .. }
            | Self::SourceMissing { .. }
            | Self::RepositoryNotFound { .. }
            | Self::TagConflict { .. } => exit::USAGE,
            Self::Inputs { source, .. }
                if matches!(
                    **source,
                    WalkError::SymlinkEscapes { .. } | WalkError::NoRoot(_) | WalkError::Special { .. }
                ) =>
            {
                exit::USAGE
            }
            Self::Interrupted => exit::INTERRUPTED,
            _ => exit::FAILED,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            Self::NoImages => Some("add an [images.NAME] table with `repository`, `inputs` and a source".into()),
            Self::UnknownImage { known, .. } => Some(format!("images in gantry.toml: {}", known.join(", "))),
            Self::NoInputs { .. } => Some(
                "`inputs` are globs relative to gantry.toml (files ignored by .gitignore are left out); \
                 list the files the image is built from"
                    .into(),
            ),
            Self::SourceMissing { key, .. } => Some(format!(
                "`{key}` is relative to gantry.toml; build the image first (e.g. with buildah, kaniko or `docker save`)"
            )),
            Self::RepositoryNotFound { repository, image, .. } => Some(format!(
                "create it (`aws ecr create-repository --repository-name {repository}`, or in your infrastructure code), \
                 or fix `repository` under [images.{image}]"
            )),
            Self::TagConflict { tag, .. } => Some(format!(
                "tags cannot move in this repository: release under a new --version, or delete `{tag}` first if it \
                 was pushed by mistake"
            )),
            Self::Ecr { .. } => Some(
                "check the AWS credentials and region (AWS_PROFILE, AWS_REGION or the environment's `region`); \
                 pushing needs ecr:GetAuthorizationToken and ecr:DescribeRepositories"
                    .into(),
            ),
            Self::Registry(e) => e.hint(),
            Self::Corrupt { .. } => Some("rebuild the image: the file on disk does not match its own manifest".into()),
            _ => None,
        }
    }
}
