//! The error every command returns: one variant per domain, each carrying its own
//! typed error. `main` prints it once, with its cause chain and a hint, and exits
//! with `exit_code()`.

use crate::app::deploy::DeployError;
use crate::{config, exit, package};
#[cfg(feature = "cloud")]
use crate::{pipeline, publish, release};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Package(#[from] package::PackageError),
    #[cfg(feature = "cloud")]
    #[error(transparent)]
    Image(#[from] publish::image::ImageError),
    #[cfg(feature = "cloud")]
    #[error(transparent)]
    Publish(#[from] publish::PublishError),
    #[error(transparent)]
    Deploy(#[from] DeployError),
    #[cfg(feature = "cloud")]
    #[error(transparent)]
    Pipeline(#[from] pipeline::PipelineError),
    #[cfg(feature = "cloud")]
    #[error(transparent)]
    Release(#[from] release::ReleaseError),
    /// A command this build of gantry leaves out: one built without the `cloud` feature
    /// (`make demo`'s quick build) has no AWS or GitHub commands.
    #[error("`gantry {command}` is not in this build of gantry: it was built without the `cloud` feature")]
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
            #[cfg(feature = "cloud")]
            Self::Image(e) => e.exit_code(),
            #[cfg(feature = "cloud")]
            Self::Publish(e) => e.exit_code(),
            Self::Deploy(e) => e.exit_code(),
            #[cfg(feature = "cloud")]
            Self::Pipeline(e) => e.exit_code(),
            #[cfg(feature = "cloud")]
            Self::Release(e) => e.exit_code(),
            Self::Io { .. } => exit::FAILED,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Config(e) => e.hint(),
            Self::Package(e) => e.hint(),
            #[cfg(feature = "cloud")]
            Self::Image(e) => e.hint(),
            #[cfg(feature = "cloud")]
            Self::Publish(e) => e.hint(),
            Self::Deploy(e) => e.hint(),
            #[cfg(feature = "cloud")]
            Self::Pipeline(e) => e.hint(),
            #[cfg(feature = "cloud")]
            Self::Release(e) => e.hint(),
            Self::Usage { hint, .. } => hint.clone(),
            Self::NotAvailable { .. } => {
                Some("build gantry with its default features (`cargo build`, or `cargo install --path .`)".into())
            }
            Self::Io { .. } => None,
        }
    }
}
