//! gantry: take a release from source to production.
//!
//! `cli` parses, `app` dispatches each command to its domain module, and `report`
//! is the only place that prints. See ARCHITECTURE.md for the map.

pub mod app;
pub mod aws;
pub mod azure;
pub mod cli;
pub mod config;
pub mod error;
pub mod exit;
pub mod github;
pub mod package;
pub mod pipeline;
pub mod publish;
pub mod release;
pub mod report;
pub mod rollout;
pub mod state;
pub mod targets;

pub use error::Error;
