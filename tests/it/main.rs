//! The one integration-test binary: each module drives the real `gantry` binary or
//! the library against real files, git repositories and tools.

mod cli;
mod codepipeline;
mod config;
mod deploy;
mod github;
mod image;
mod local;
mod package;
mod pipeline;
mod proxy;
mod publish;
mod release;
mod services;
mod state;
mod support;
