//! The error every command returns: one variant per domain, each carrying its own
//! typed error. `main` prints it once, with its cause chain and a hint, and exits
//! with `exit_code()`.

use crate::app::deploy::DeployError;
use crate::{config, exit, package, pipeline, publish, release};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Package(#[from] package::PackageError),
    #[error(transparent)]
    Image(#[from] publish::image::ImageError),
    #[error(transparent)]
    Publish(#[from] publish::PublishError),
    #[error(transparent)]
    Deploy(#[from] DeployError),
    #[error(transparent)]
    Pipeline(#[from] pipeline::PipelineError),
    #[error(transparent)]
    Release(#[from] release::ReleaseError),
    /// A command that a later version of gantry will provide.
    #[error("`gantry {command}` is not available yet in this version of gantry")]
    NotAvailable { command: &'static str },
    /// Bad usage that clap cannot see (e.g. a file that would be overwritten).
    #[error("{message}")]
    Usage { message: String, hint: Option<String> },
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) | Self::NotAvailable { .. } | Self::Usage { .. } => exit::USAGE,
            Self::Package(e) => e.exit_code(),
            Self::Image(e) => e.exit_code(),
            Self::Publish(e) => e.exit_code(),
            Self::Deploy(e) => e.exit_code(),
            Self::Pipeline(e) => e.exit_code(),
            Self::Release(e) => e.exit_code(),
            Self::Io { .. } => exit::FAILED,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Config(e) => e.hint(),
            Self::Package(e) => e.hint(),
            Self::Image(e) => e.hint(),
            Self::Publish(e) => e.hint(),
            Self::Deploy(e) => e.hint(),
            Self::Pipeline(e) => e.hint(),
            Self::Release(e) => e.hint(),
            Self::Usage { hint, .. } => hint.clone(),
            Self::NotAvailable { .. } | Self::Io { .. } => None,
        }
    }
}
