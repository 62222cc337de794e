//! The release version and source facts (commit, source date) from `--version`,
//! git tags and `SOURCE_DATE_EPOCH`.
//!
//! Rules, in order:
//! 1. `--version` (or `GANTRY_VERSION`) wins; a leading `v` is dropped; it must be semver.
//! 2. HEAD carries `vX.Y.Z` tags and the tree is clean: the highest of them.
//! 3. Otherwise the nearest `v*` tag below HEAD, patch bumped (or, for a pre-release tag,
//!    kept), with `-dev.N` for the N commits since it and `+gHASH` build metadata
//!    (`.dirty` appended for uncommitted changes): `1.2.4-dev.5+gabc1234`. With no tag
//!    at all, `0.0.1-dev.N+gHASH` where N counts every commit.
//!
//! Git is run as a program (`git`), not linked: it is what the user's checkout uses.

use std::path::Path;
use std::process::Command;

use semver::{BuildMetadata, Prerelease, Version};

/// What the source says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceInfo {
    pub version: Version,
    /// Full commit hash of HEAD, when in a git checkout.
    pub commit: Option<String>,
    /// Seconds since the epoch stamped on every archive entry: `SOURCE_DATE_EPOCH`,
    /// else the commit time, else 1980-01-01 (the earliest a zip can hold).
    pub source_date_epoch: i64,
}

/// The earliest time a zip entry can carry: 1980-01-01T00:00:00Z.
pub const ZIP_EPOCH: i64 = 315_532_800;

#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    #[error("invalid version `{given}`: {source}")]
    Invalid {
        given: String,
        #[source]
        source: semver::Error,
    },
    #[error("tag `{tag}` is not a semantic version")]
    BadTag {
        tag: String,
        #[source]
        source: semver::Error,
    },
    #[error("cannot tell the release version: {dir} is not inside a git repository")]
    NoGit { dir: String },
    #[error("invalid SOURCE_DATE_EPOCH `{0}`: expected whole seconds since 1970-01-01")]
    SourceDate(String),
    #[error("git failed: {0}")]
    Git(String),
}

impl VersionError {
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Invalid { .. } => Some("write a semantic version such as 1.2.3 or 1.3.0-rc.1".into()),
            Self::BadTag { .. } => {
                Some("tags gantry reads look like v1.2.3; delete or rename the tag, or pass --version".into())
            }
            Self::NoGit { .. } => {
                Some("pass --version 1.2.3 (or set GANTRY_VERSION), or run inside a git checkout".into())
            }
            Self::SourceDate(_) => Some("unset SOURCE_DATE_EPOCH to use the commit time".into()),
            Self::Git(_) => None,
        }
    }
}

/// Parses a user-given version, accepting a leading `v`.
pub fn parse_version(given: &str) -> Result<Version, VersionError> {
    let trimmed = given.trim();
    let bare = trimmed.strip_prefix('v').unwrap_or(trimmed);
    Version::parse(bare).map_err(|source| VersionError::Invalid { given: given.to_owned(), source })
}

/// Resolves the version, commit and source date for the checkout at `dir`.
/// `explicit` is `--version`; `source_date_env` is the value of `SOURCE_DATE_EPOCH`.
pub fn resolve(dir: &Path, explicit: Option<&str>, source_date_env: Option<&str>) -> Result<SourceInfo, VersionError> {
    let explicit = explicit.map(parse_version).transpose()?;
    let env_epoch = source_date_env
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse::<i64>().map_err(|_| VersionError::SourceDate(s.to_owned())))
        .transpose()?;

    let git = Git { dir };
    let head = if git.is_repo() { git.head()? } else { None };
    let Some(head) = head else {
        let version = explicit.ok_or_else(|| VersionError::NoGit { dir: dir.display().to_string() })?;
        return Ok(SourceInfo { version, commit: None, source_date_epoch: env_epoch.unwrap_or(ZIP_EPOCH) });
    };

    let commit_time: i64 = git
        .run(&["log", "-1", "--format=%ct", "HEAD"])?
        .trim()
        .parse()
        .map_err(|_| VersionError::Git("unreadable commit time".into()))?;
    let version = match explicit {
        Some(v) => v,
        None => version_from_tags(&git, &head)?,
    };
    let date_source = if env_epoch.is_some() { "SOURCE_DATE_EPOCH" } else { "the commit time" };
    tracing::debug!(%version, commit = %head, "source date from {date_source}");
    Ok(SourceInfo { version, commit: Some(head), source_date_epoch: env_epoch.unwrap_or(commit_time) })
}

fn version_from_tags(git: &Git<'_>, head: &str) -> Result<Version, VersionError> {
    let dirty = !git.run(&["status", "--porcelain", "--untracked-files=no"])?.trim().is_empty();
    let short = &head[..head.len().min(7)];

    if !dirty {
        let on_head = git.run(&["tag", "--points-at", "HEAD", "--list", "v[0-9]*"])?;
        let best = on_head.lines().map(tag_version).collect::<Result<Vec<_>, _>>()?.into_iter().max();
        if let Some(v) = best {
            return Ok(v);
        }
    }

    // The nearest reachable v-tag; `--abbrev=0` prints only its name.
    let nearest = git.run_ok(&["describe", "--tags", "--abbrev=0", "--match", "v[0-9]*", "HEAD"]);
    let (base, since) = match nearest {
        Some(tag) => {
            let tag = tag.trim().to_owned();
            let count = git.run(&["rev-list", "--count", &format!("{tag}..HEAD")])?;
            (Some(tag_version(&tag)?), count.trim().parse::<u64>().unwrap_or(0))
        }
        None => (None, git.run(&["rev-list", "--count", "HEAD"])?.trim().parse::<u64>().unwrap_or(0)),
    };
    Ok(dev_version(base, since, short, dirty))
}

/// The pre-release version of a commit `since` commits after `base`.
fn dev_version(base: Option<Version>, since: u64, short_hash: &str, dirty: bool) -> Version {
    let mut v = base.unwrap_or_else(|| Version::new(0, 0, 0));
    let pre = if v.pre.is_empty() {
        v.patch += 1;
        format!("dev.{since}")
    } else {
        format!("{}.dev.{since}", v.pre)
    };
    v.pre = Prerelease::new(&pre).expect("dev pre-release is valid");
    let build = if dirty { format!("g{short_hash}.dirty") } else { format!("g{short_hash}") };
    v.build = BuildMetadata::new(&build).expect("hash build metadata is valid");
    v
}

pub(crate) fn tag_version(tag: &str) -> Result<Version, VersionError> {
    let bare = tag.trim().strip_prefix('v').unwrap_or(tag.trim());
    Version::parse(bare).map_err(|source| VersionError::BadTag { tag: tag.trim().to_owned(), source })
}

/// The `git` program run in one checkout (also used by `crate::release`).
pub(crate) struct Git<'a> {
    pub dir: &'a Path,
}

impl Git<'_> {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("git");
        cmd.arg("-C").arg(self.dir).args(args);
        // The user's pager, editor and locale must not change what we parse.
        cmd.env("GIT_PAGER", "cat").env("LC_ALL", "C");
        cmd
    }

    pub(crate) fn is_repo(&self) -> bool {
        self.command(&["rev-parse", "--git-dir"]).output().is_ok_and(|o| o.status.success())
    }

    /// HEAD's hash, or None in a repository with no commits yet.
    pub(crate) fn head(&self) -> Result<Option<String>, VersionError> {
        Ok(self.run_ok(&["rev-parse", "--verify", "--quiet", "HEAD"]).map(|s| s.trim().to_owned()))
    }

    pub(crate) fn run(&self, args: &[&str]) -> Result<String, VersionError> {
        let out = self.command(args).output().map_err(|e| VersionError::Git(format!("cannot run git: {e}")))?;
        if !out.status.success() {
            return Err(VersionError::Git(format!(
                "`git {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub(crate) fn run_ok(&self, args: &[&str]) -> Option<String> {
        self.command(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) {
        let status = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_DATE", "1700000000 +0000")
            .env("GIT_AUTHOR_DATE", "1700000000 +0000")
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    }

    fn commit(dir: &Path, file: &str) {
        std::fs::write(dir.join(file), file).unwrap();
        git(dir, &["add", "."]);
        git(dir, &["commit", "-q", "-m", file]);
    }

    fn repo() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        git(dir.path(), &["init", "-q", "-b", "main"]);
        dir
    }

    fn head_short(dir: &Path) -> String {
        Git { dir }.run(&["rev-parse", "--short=7", "HEAD"]).unwrap().trim().to_owned()
    }

    #[test]
    fn explicit_version_wins_and_accepts_v() {
        let dir = repo();
        commit(dir.path(), "a");
        git(dir.path(), &["tag", "v1.0.0"]);
        let info = resolve(dir.path(), Some("v2.3.4-rc.1"), None).unwrap();
        assert_eq!(info.version.to_string(), "2.3.4-rc.1");
        assert_eq!(info.source_date_epoch, 1_700_000_000);
        assert_eq!(info.commit.as_deref().map(str::len), Some(40));
    }

    #[test]
    fn bad_explicit_version_is_an_error() {
        let dir = repo();
        commit(dir.path(), "a");
        let err = resolve(dir.path(), Some("1.2"), None).unwrap_err();
        assert!(matches!(err, VersionError::Invalid { .. }), "{err}");
        assert!(err.to_string().contains("`1.2`"));
    }

    #[test]
    fn tagged_commit_is_the_tag_version() {
        let dir = repo();
        commit(dir.path(), "a");
        git(dir.path(), &["tag", "v1.2.3"]);
        git(dir.path(), &["tag", "v1.2.10"]);
        git(dir.path(), &["tag", "not-a-version"]);
        assert_eq!(resolve(dir.path(), None, None).unwrap().version.to_string(), "1.2.10");
    }

    #[test]
    fn untagged_commit_gets_a_dev_prerelease() {
        let dir = repo();
        commit(dir.path(), "a");
        git(dir.path(), &["tag", "v1.2.3"]);
        for f in ["b", "c", "d", "e", "f"] {
            commit(dir.path(), f);
        }
        let v = resolve(dir.path(), None, None).unwrap().version;
        assert_eq!(v.to_string(), format!("1.2.4-dev.5+g{}", head_short(dir.path())));
        assert!(v > Version::parse("1.2.3").unwrap());
    }

    #[test]
    fn prerelease_tag_is_kept_and_extended() {
        let dir = repo();
        commit(dir.path(), "a");
        git(dir.path(), &["tag", "v1.3.0-rc.1"]);
        commit(dir.path(), "b");
        let v = resolve(dir.path(), None, None).unwrap().version;
        assert_eq!(v.to_string(), format!("1.3.0-rc.1.dev.1+g{}", head_short(dir.path())));
        assert!(v > Version::parse("1.3.0-rc.1").unwrap());
    }

    #[test]
    fn no_tags_counts_all_commits_and_dirty_is_marked() {
        let dir = repo();
        commit(dir.path(), "a");
        commit(dir.path(), "b");
        std::fs::write(dir.path().join("a"), "changed").unwrap();
        let v = resolve(dir.path(), None, None).unwrap().version;
        assert_eq!(v.to_string(), format!("0.0.1-dev.2+g{}.dirty", head_short(dir.path())));
    }

    #[test]
    fn dirty_tagged_commit_is_not_the_release() {
        let dir = repo();
        commit(dir.path(), "a");
        git(dir.path(), &["tag", "v1.0.0"]);
        std::fs::write(dir.path().join("a"), "changed").unwrap();
        let v = resolve(dir.path(), None, None).unwrap().version;
        assert_eq!(v.to_string(), format!("1.0.1-dev.0+g{}.dirty", head_short(dir.path())));
    }

    #[test]
    fn source_date_epoch_overrides_commit_time() {
        let dir = repo();
        commit(dir.path(), "a");
        assert_eq!(resolve(dir.path(), None, Some("1234567890")).unwrap().source_date_epoch, 1_234_567_890);
        assert!(matches!(resolve(dir.path(), None, Some("yesterday")), Err(VersionError::SourceDate(_))));
    }

    #[test]
    fn outside_git_needs_an_explicit_version() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve(dir.path(), None, None).unwrap_err();
        assert!(matches!(err, VersionError::NoGit { .. }));
        let info = resolve(dir.path(), Some("1.0.0"), None).unwrap();
        assert_eq!(info.source_date_epoch, ZIP_EPOCH);
        assert_eq!(info.commit, None);
    }

    #[test]
    fn bad_tag_names_the_tag() {
        let dir = repo();
        commit(dir.path(), "a");
        git(dir.path(), &["tag", "v1.x"]);
        let err = resolve(dir.path(), None, None).unwrap_err();
        assert!(err.to_string().contains("`v1.x`"), "{err}");
    }
}
