//! `gantry image push`: images to ECR (or any OCI registry) without a Docker daemon.
//!
//! For each image: hash its inputs (`inputs.rs`); if the repository already has the
//! `inputs-<hash>` tag, the image is unchanged and only a missing `--version` tag is
//! added. Otherwise read or assemble it (`source/`), check that no immutable tag would
//! have to move, upload the blobs the repository lacks (`transfer.rs`, over the OCI client
//! in `registry/`), put the manifest under the version tag and then the inputs tag, and
//! read both tags back to check they name the digest gantry computed (`push.rs`).
//! ECR (`ecr.rs`) supplies the login token, the registry host and the tag policy.
//!
//! Nothing here prints: progress goes out as `Event`s, the outcome as `ImageReport`s.

mod digest;
mod ecr;
mod error;
mod inputs;
mod oci;
mod push;
mod registry;
mod source;
pub mod tags;
mod transfer;

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use crate::config;

pub use digest::Digest;
pub use error::ImageError;
pub use inputs::{InputsHash, hash as hash_inputs};
pub use push::push;
pub use registry::RegistryError;
pub use source::LayerError;
pub use tags::version_tag;

/// What to push, resolved from the command line, gantry.toml and the environment.
#[derive(Debug, Clone)]
pub struct PushRequest {
    /// Folder of gantry.toml: inputs and sources are relative to it.
    pub project_dir: PathBuf,
    pub images: Vec<(config::Name, config::Image)>,
    /// The environment's region (for messages; the ECR client already has it).
    pub region: Option<String>,
    /// The environment's `registry`; `None`: the one ECR names.
    pub registry: Option<String>,
    /// `--version`: also tag the image with it.
    pub version: Option<semver::Version>,
    /// `SOURCE_DATE_EPOCH`, or 0: the `created` time of assembled images and their files' mtime.
    pub source_date_epoch: i64,
}

/// Typed progress, consumed by `report::ImageReporter`. Sent from upload tasks too.
#[derive(Debug, Clone)]
pub enum Event {
    LoggedIn {
        registry: String,
    },
    InputsHashed {
        image: String,
        files: usize,
        tag: String,
    },
    Unchanged {
        image: String,
        reference: String,
    },
    Preparing {
        image: String,
    },
    Prepared {
        image: String,
        source: String,
        digest: Digest,
        blobs: usize,
        bytes: u64,
    },
    /// Blob transfers begin: `bytes` is the size of every blob, present or not.
    Transferring {
        image: String,
        blobs: usize,
        bytes: u64,
    },
    /// Bytes sent of an upload in progress.
    Progress {
        bytes: u64,
    },
    Blob {
        digest: Digest,
        size: u64,
        outcome: BlobOutcome,
    },
    Tagged {
        reference: String,
        change: TagChange,
    },
}

/// Where events go. Called from several tasks at once.
pub type Events = Arc<dyn Fn(Event) + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobOutcome {
    Uploaded,
    /// Already in the repository.
    Skipped,
    /// Linked from another repository of the same registry.
    Mounted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagChange {
    Created,
    AlreadyThere,
    /// The tag pointed at another image (a mutable repository).
    Moved {
        from: Digest,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pushed,
    Unchanged,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BlobCounts {
    pub uploaded: usize,
    pub skipped: usize,
    pub mounted: usize,
}

/// The outcome for one image: the `--output json` document.
#[derive(Debug, Clone, Serialize)]
pub struct ImageReport {
    pub image: String,
    pub repository: String,
    pub registry: String,
    /// `registry/repository@digest`: what to deploy.
    pub reference: String,
    pub digest: Digest,
    pub tags: Vec<String>,
    pub inputs_hash: String,
    pub status: Status,
    pub blobs: BlobCounts,
    pub bytes_uploaded: u64,
    pub elapsed_seconds: f64,
}
