//! `gantry release`: the domain half. `history` reads the next version and its changes
//! from git; `steps` lists what a release does, in order, for `--dry-run` and the log.
//! `app::release` carries the steps out with `github`, `package`, `publish` and `pipeline`.

pub mod history;

use crate::exit;
use crate::github::GithubError;
use crate::package::VersionError;

pub use history::{Bump, Change, History, Kind, Level, changelog};

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("cannot release: {dir} is not a git checkout with commits")]
    NotGit { dir: String },
    #[error("invalid pre-release label `{label}`")]
    BadLabel { label: String },
    #[error("cannot release from a dirty tree: {files}")]
    Dirty { files: String },
    #[error("nothing to release: no commits since {}", if tag.is_empty() { "the start" } else { tag })]
    NoCommits { tag: String },
    #[error("nothing to release: HEAD is {tag}, already released at {url}")]
    AlreadyReleased { tag: String, url: String, version: String },
    #[error("tag {tag} already exists {} on commit {commit}, not on HEAD ({head})", if *remote { "on GitHub" } else { "locally" })]
    TagElsewhere { tag: String, commit: String, head: String, remote: bool },
    #[error("GitHub cannot create tag {tag} on commit {commit}")]
    NotPushed {
        tag: String,
        commit: String,
        #[source]
        source: Box<GithubError>,
    },
    #[error(transparent)]
    Git(#[from] VersionError),
    #[error(transparent)]
    Github(Box<GithubError>),
    #[error("cannot read the packaged release in {dir}")]
    Dist {
        dir: String,
        #[source]
        source: std::io::Error,
    },
}

impl From<GithubError> for ReleaseError {
    fn from(e: GithubError) -> Self {
        Self::Github(Box::new(e))
    }
}

impl ReleaseError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::NotGit { .. }
            | Self::BadLabel { .. }
            | Self::Dirty { .. }
            | Self::NoCommits { .. }
            | Self::AlreadyReleased { .. }
            | Self::TagElsewhere { .. } => exit::USAGE,
            Self::Github(e) => e.exit_code(),
            Self::Git(_) | Self::Dist { .. } | Self::NotPushed { .. } => exit::FAILED,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            Self::NotGit { .. } => Some("run gantry release inside the project's git checkout".into()),
            Self::BadLabel { .. } => Some("a label is letters, digits and hyphens, e.g. rc, beta".into()),
            Self::Dirty { .. } => Some(
                "commit or stash the changes first (a release is exactly a commit); add build output such as dist/ to .gitignore"
                    .into(),
            ),
            Self::NoCommits { .. } => Some("commit the changes to release first".into()),
            Self::AlreadyReleased { version, .. } => Some(format!(
                "to send it to production again: gantry publish --env ENV --version {version}, then gantry pipeline start --env ENV --version {version}"
            )),
            Self::TagElsewhere { tag, .. } => Some(format!(
                "a release names one commit: check out that commit to finish its release, or delete the stray tag (git tag -d {tag}; git push --delete origin {tag})"
            )),
            Self::NotPushed { .. } => {
                Some("push the commit to GitHub first (git push origin HEAD), then run gantry release again".into())
            }
            Self::Git(e) => e.hint(),
            Self::Github(e) => e.hint(),
            Self::Dist { .. } => Some("run `gantry package` to see why packaging failed".into()),
        }
    }
}

/// What a release does, in order: the lines `--dry-run` prints.
pub fn steps(
    history: &History,
    repo: &str,
    artifacts: &[String],
    production: Option<(&str, Option<&str>, Option<&str>)>,
) -> Vec<String> {
    let v = &history.version;
    let tag = &history.tag;
    let short = &history.commit[..history.commit.len().min(12)];
    let mut steps = vec![
        format!("package {v} ({}) into dist/ with SHA256SUMS and release.json", artifacts.join(", ")),
        format!("tag {tag} on {short} in this checkout and on GitHub ({repo})"),
        format!("find the release for {tag} on GitHub, or create it as a draft with the changelog"),
        format!(
            "upload the assets ({}, SHA256SUMS, release.json): keep those whose size and SHA-256 match, replace the rest",
            artifacts.iter().map(|a| crate::package::archive_file_name(a, v)).collect::<Vec<_>>().join(", ")
        ),
        format!("publish the release{}", if v.pre.is_empty() { " as the latest" } else { " as a pre-release" }),
    ];
    match production {
        Some((env, bucket, pipeline)) => {
            if let Some(bucket) = bucket {
                steps.push(format!("publish {v} to environment `{env}` (s3://{bucket})"));
            }
            if let Some(pipeline) = pipeline {
                steps.push(format!(
                    "start pipeline `{pipeline}` for {v} (it waits for approval: gantry approve --env {env})"
                ));
            }
        }
        None => steps.push("no production environment (approval = \"required\", or --env): stop here".into()),
    }
    steps
}
