//! The one integration-test binary: each module drives the real `gantry` binary or
//! the library against real files, git repositories and tools.
//!
//! They need the full build: `cargo test` runs them with the default features (`cloud`).
#![cfg(feature = "cloud")]

mod azure;
mod cli;
mod cloudwatch;
mod codepipeline;
mod config;
mod deploy;
mod ecs;
mod github;
mod github_api;
mod image;
mod install;
mod kube_api;
mod lambda;
mod local;
mod oidc;
mod package;
mod pipeline;
mod proxy;
mod publish;
mod release;
mod render_api;
mod services;
mod stand_in;
mod state;
mod static_site;
mod support;
mod waves;
