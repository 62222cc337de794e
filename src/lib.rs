//! gantry: take a release from source to production.
//!
//! `cli` parses, `app` dispatches each command to its domain module, and `report`
//! is the only place that prints. See ARCHITECTURE.md for the map.

pub mod app;
#[cfg(feature = "cloud")]
pub mod aws;
#[cfg(feature = "cloud")]
pub mod azure;
pub mod cli;
pub mod config;
pub mod error;
pub mod exit;
#[cfg(feature = "cloud")]
pub mod github;
pub mod package;
#[cfg(feature = "cloud")]
pub mod pipeline;
#[cfg(feature = "cloud")]
pub mod publish;
#[cfg(feature = "cloud")]
pub mod release;
pub mod report;
pub mod rollout;
pub mod state;
pub mod targets;

pub use error::Error;
