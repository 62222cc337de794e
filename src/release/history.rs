//! The next version and its changelog, from git tags and the conventional commits since
//! the last release. Runs the `git` program (`package::version::Git`).
//!
//! Rules:
//! - The last release is the highest `vX.Y.Z` tag reachable from HEAD. A stable release
//!   counts commits since the last stable tag; a pre-release (`--pre LABEL`) since the last
//!   tag of any kind.
//! - `--bump auto`: a breaking change (`type!:` or a `BREAKING CHANGE:`/`BREAKING-CHANGE:`
//!   footer) bumps major, a `feat` minor, anything else (`fix`, `perf`, `chore`, ...) patch.
//!   On 0.y.z, as semver and cargo treat it, everything shifts down one place: a breaking
//!   change bumps minor, anything else patch. With no tag at all the first release is 0.1.0.
//! - `--bump major|minor|patch` is applied as written (so `major` takes 0.y.z to 1.0.0).
//! - `--pre LABEL` gives `X.Y.Z-LABEL.N`, N one above the highest existing `vX.Y.Z-LABEL.*`.
//! - When HEAD already carries the tag of this kind of release (stable, or `LABEL`), that
//!   release is resumed instead: a run that stopped part way is finished.

use std::path::Path;

use semver::{Prerelease, Version};

use crate::package::version::{Git, tag_version};

use super::ReleaseError;

/// `--bump`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Bump {
    Auto,
    Major,
    Minor,
    Patch,
}

/// Which part a release bumps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Patch,
    Minor,
    Major,
}

/// Changelog groups, in the order they are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Breaking,
    Features,
    Fixes,
    Performance,
    Other,
}

impl Kind {
    fn heading(self) -> &'static str {
        match self {
            Self::Breaking => "Breaking changes",
            Self::Features => "Features",
            Self::Fixes => "Fixes",
            Self::Performance => "Performance",
            Self::Other => "Other",
        }
    }
}

/// One commit, read as a conventional commit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    pub sha: String,
    pub author: String,
    pub kind: Kind,
    pub scope: Option<String>,
    pub description: String,
}

/// The release to make.
#[derive(Debug, Clone, serde::Serialize)]
pub struct History {
    pub version: Version,
    pub tag: String,
    /// The tag the changes are counted from.
    pub previous: Option<String>,
    /// HEAD's full hash.
    pub commit: String,
    /// The level `auto` chose (None for a forced bump or a resumed release).
    pub level: Option<Level>,
    /// HEAD already carried the tag: this run finishes that release.
    pub resumed: bool,
    pub changes: Vec<Change>,
}

/// Reads the checkout at `dir`. Refuses a dirty tree, a repository without commits, no
/// commits since the last release, and a tag that exists on another commit.
pub fn read(dir: &Path, bump: Bump, pre: Option<&str>) -> Result<History, ReleaseError> {
    let git = Git { dir };
    if !git.is_repo() {
        return Err(ReleaseError::NotGit { dir: dir.display().to_string() });
    }
    if let Some(label) = pre
        && (label.is_empty() || Prerelease::new(&format!("{label}.1")).is_err() || label.contains('.'))
    {
        return Err(ReleaseError::BadLabel { label: label.to_owned() });
    }
    let head = git.head()?.ok_or_else(|| ReleaseError::NotGit { dir: dir.display().to_string() })?;
    let dirty = git.run(&["status", "--porcelain"])?;
    if !dirty.trim().is_empty() {
        let files: Vec<&str> = dirty.lines().take(5).map(|l| l.get(3..).unwrap_or(l)).collect();
        return Err(ReleaseError::Dirty { files: files.join(", ") });
    }
    let merged = versions(&git.run(&["tag", "--list", "v[0-9]*", "--merged", "HEAD"])?);
    let on_head = versions(&git.run(&["tag", "--list", "v[0-9]*", "--points-at", "HEAD"])?);
    let wanted = |v: &Version| match pre {
        None => v.pre.is_empty(),
        Some(label) => v.pre.as_str().split('.').next() == Some(label),
    };

    // A release of this kind already tagged on HEAD: finish it.
    if let Some(version) = on_head.iter().filter(|v| wanted(v)).max().cloned() {
        let previous = merged.iter().filter(|v| **v < version && (pre.is_some() || v.pre.is_empty())).max();
        let previous = previous.map(tag_of);
        let changes = changes(&git, previous.as_deref())?;
        return Ok(History {
            tag: tag_of(&version),
            version,
            previous,
            commit: head,
            level: None,
            resumed: true,
            changes,
        });
    }

    let last_stable = merged.iter().filter(|v| v.pre.is_empty()).max();
    let from = match pre {
        None => last_stable,
        Some(_) => merged.iter().max(),
    };
    let previous = from.map(tag_of);
    let changes = changes(&git, previous.as_deref())?;
    if changes.is_empty() {
        return Err(ReleaseError::NoCommits { tag: previous.unwrap_or_default() });
    }
    let base = last_stable.cloned();
    // The bump counts everything since the last stable release, even when the changelog of
    // a pre-release starts at the previous pre-release.
    let since_stable =
        if pre.is_some() { self::changes(&git, last_stable.map(tag_of).as_deref())? } else { Vec::new() };
    let counted = if pre.is_some() { &since_stable } else { &changes };
    let (mut version, level) = match bump {
        Bump::Auto => {
            let level = level_of(counted);
            (next(base.as_ref(), level, true), Some(level))
        }
        Bump::Major => (next(base.as_ref(), Level::Major, false), None),
        Bump::Minor => (next(base.as_ref(), Level::Minor, false), None),
        Bump::Patch => (next(base.as_ref(), Level::Patch, false), None),
    };
    if let Some(label) = pre {
        let all = versions(&git.run(&["tag", "--list", &format!("v{version}-{label}.*")])?);
        let n = all
            .iter()
            .filter_map(|v| v.pre.as_str().strip_prefix(&format!("{label}.")).and_then(|n| n.parse::<u64>().ok()))
            .max()
            .unwrap_or(0);
        version.pre = Prerelease::new(&format!("{label}.{}", n + 1)).expect("label was checked");
    }
    let tag = tag_of(&version);
    if let Some(elsewhere) = git.run_ok(&["rev-parse", "--verify", "--quiet", &format!("refs/tags/{tag}^{{commit}}")]) {
        let elsewhere = elsewhere.trim().to_owned();
        if elsewhere != head {
            return Err(ReleaseError::TagElsewhere { tag, commit: elsewhere, head, remote: false });
        }
    }
    Ok(History { version, tag, previous, commit: head, level, resumed: false, changes })
}

pub fn tag_of(version: &Version) -> String {
    format!("v{version}")
}

fn versions(list: &str) -> Vec<Version> {
    list.lines().filter(|l| !l.trim().is_empty()).filter_map(|t| tag_version(t).ok()).collect()
}

/// The commits after `since` (all of them without a tag), oldest first, merges left out.
fn changes(git: &Git<'_>, since: Option<&str>) -> Result<Vec<Change>, ReleaseError> {
    let range = since.map_or_else(|| "HEAD".to_owned(), |t| format!("{t}..HEAD"));
    let log = git.run(&["log", "--reverse", "--no-merges", "--format=%H%x1f%an%x1f%B%x1e", &range])?;
    Ok(log
        .split('\u{1e}')
        .filter_map(|entry| {
            let mut fields = entry.trim_start_matches('\n').splitn(3, '\u{1f}');
            let (sha, author, message) = (fields.next()?, fields.next()?, fields.next()?);
            (!sha.is_empty()).then(|| parse(sha, author, message))
        })
        .collect())
}

/// Reads a commit message as a conventional commit (`type(scope)!: description`, footers).
pub fn parse(sha: &str, author: &str, message: &str) -> Change {
    let subject = message.lines().next().unwrap_or("").trim();
    let footer_breaking =
        message.lines().skip(1).any(|l| l.starts_with("BREAKING CHANGE:") || l.starts_with("BREAKING-CHANGE:"));
    let conventional = subject.split_once(": ").and_then(|(head, description)| {
        let (head, bang) = match head.strip_suffix('!') {
            Some(h) => (h, true),
            None => (head, false),
        };
        let (kind, scope) = match head.split_once('(') {
            Some((k, rest)) => (k, Some(rest.strip_suffix(')')?.to_owned())),
            None => (head, None),
        };
        (!kind.is_empty() && kind.chars().all(|c| c.is_ascii_alphabetic()))
            .then(|| (kind.to_ascii_lowercase(), scope, bang, description.trim().to_owned()))
    });
    let (kind, scope, description) = match conventional {
        Some((kind, scope, bang, description)) => {
            let kind = if bang || footer_breaking {
                Kind::Breaking
            } else {
                match kind.as_str() {
                    "feat" => Kind::Features,
                    "fix" => Kind::Fixes,
                    "perf" => Kind::Performance,
                    _ => Kind::Other,
                }
            };
            (kind, scope, description)
        }
        None => (if footer_breaking { Kind::Breaking } else { Kind::Other }, None, subject.to_owned()),
    };
    Change { sha: sha.trim().to_owned(), author: author.trim().to_owned(), kind, scope, description }
}

fn level_of(changes: &[Change]) -> Level {
    changes
        .iter()
        .map(|c| match c.kind {
            Kind::Breaking => Level::Major,
            Kind::Features => Level::Minor,
            _ => Level::Patch,
        })
        .max()
        .unwrap_or(Level::Patch)
}

/// The version after `base` for `level`. `auto` applies the 0.y.z shift and makes the
/// first release 0.1.0; a forced bump is applied as written.
fn next(base: Option<&Version>, level: Level, auto: bool) -> Version {
    let Some(base) = base else {
        return match (auto, level) {
            (true, _) | (false, Level::Minor) => Version::new(0, 1, 0),
            (false, Level::Major) => Version::new(1, 0, 0),
            (false, Level::Patch) => Version::new(0, 0, 1),
        };
    };
    let level = match (auto && base.major == 0, level) {
        (true, Level::Major) => Level::Minor,
        (true, _) => Level::Patch,
        (false, l) => l,
    };
    match level {
        Level::Major => Version::new(base.major + 1, 0, 0),
        Level::Minor => Version::new(base.major, base.minor + 1, 0),
        Level::Patch => Version::new(base.major, base.minor, base.patch + 1),
    }
}

/// The release notes in Markdown: one section per kind, each change linked to its commit
/// (`REPO_URL/commit/SHA`) with its author.
pub fn changelog(history: &History, repo_url: &str) -> String {
    let mut out = String::new();
    if let Some(previous) = &history.previous {
        out.push_str(&format!("Changes since {previous} ({repo_url}/compare/{previous}...{}).\n", history.tag));
    }
    for kind in [Kind::Breaking, Kind::Features, Kind::Fixes, Kind::Performance, Kind::Other] {
        let items: Vec<&Change> = history.changes.iter().filter(|c| c.kind == kind).collect();
        if items.is_empty() {
            continue;
        }
        out.push_str(&format!("\n### {}\n\n", kind.heading()));
        for c in items {
            let scope = c.scope.as_ref().map(|s| format!("**{s}:** ")).unwrap_or_default();
            let short = &c.sha[..c.sha.len().min(7)];
            out.push_str(&format!(
                "- {scope}{} ([{short}]({repo_url}/commit/{})) by {}\n",
                c.description, c.sha, c.author
            ));
        }
    }
    if history.changes.is_empty() {
        out.push_str("\nNo changes.\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) {
        let status = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_AUTHOR_NAME", "Ada Lovelace")
            .env("GIT_AUTHOR_EMAIL", "ada@example.com")
            .env("GIT_COMMITTER_NAME", "Ada Lovelace")
            .env("GIT_COMMITTER_EMAIL", "ada@example.com")
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    }

    /// A repository whose history is `messages`, one commit each; `tag` tags the commit
    /// after the message named by the first element.
    fn repo(script: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        git(dir.path(), &["init", "-q", "-b", "main"]);
        for (i, step) in script.iter().enumerate() {
            if let Some(tag) = step.strip_prefix("tag ") {
                git(dir.path(), &["tag", tag]);
            } else {
                std::fs::write(dir.path().join(format!("f{i}")), step).unwrap();
                git(dir.path(), &["add", "."]);
                git(dir.path(), &["commit", "-q", "-m", step]);
            }
        }
        dir
    }

    fn version(script: &[&str], bump: Bump, pre: Option<&str>) -> String {
        let dir = repo(script);
        read(dir.path(), bump, pre).unwrap().version.to_string()
    }

    #[test]
    fn feat_bumps_minor_fix_and_perf_patch_breaking_major() {
        assert_eq!(version(&["init", "tag v1.2.3", "fix: a", "feat(api): b"], Bump::Auto, None), "1.3.0");
        assert_eq!(version(&["init", "tag v1.2.3", "fix: a", "perf: faster"], Bump::Auto, None), "1.2.4");
        assert_eq!(version(&["init", "tag v1.2.3", "chore: tidy"], Bump::Auto, None), "1.2.4");
        assert_eq!(version(&["init", "tag v1.2.3", "feat!: drop v1"], Bump::Auto, None), "2.0.0");
        assert_eq!(version(&["init", "tag v1.2.3", "feat(api)!: drop v1"], Bump::Auto, None), "2.0.0");
        assert_eq!(
            version(&["init", "tag v1.2.3", "fix: x\n\nBREAKING CHANGE: config key renamed"], Bump::Auto, None),
            "2.0.0"
        );
    }

    #[test]
    fn zero_major_shifts_down_one_place() {
        assert_eq!(version(&["init", "tag v0.4.1", "feat: b"], Bump::Auto, None), "0.4.2");
        assert_eq!(version(&["init", "tag v0.4.1", "feat!: b"], Bump::Auto, None), "0.5.0");
        assert_eq!(version(&["init", "tag v0.4.1", "fix: b"], Bump::Auto, None), "0.4.2");
        assert_eq!(version(&["init", "feat: first"], Bump::Auto, None), "0.1.0");
        // A forced bump is applied as written.
        assert_eq!(version(&["init", "tag v0.4.1", "feat!: b"], Bump::Major, None), "1.0.0");
        assert_eq!(version(&["init", "tag v1.2.3", "fix: a"], Bump::Minor, None), "1.3.0");
        assert_eq!(version(&["init", "tag v1.2.3", "feat!: a"], Bump::Patch, None), "1.2.4");
    }

    #[test]
    fn pre_releases_count_up_from_existing_tags() {
        assert_eq!(version(&["init", "tag v1.2.0", "feat: a"], Bump::Auto, Some("rc")), "1.3.0-rc.1");
        assert_eq!(
            version(&["init", "tag v1.2.0", "feat: a", "tag v1.3.0-rc.1", "fix: b"], Bump::Auto, Some("rc")),
            "1.3.0-rc.2"
        );
        // The stable release after its release candidates counts from the last stable tag.
        let dir = repo(&["init", "tag v1.2.0", "feat: a", "tag v1.3.0-rc.1", "fix: b"]);
        let h = read(dir.path(), Bump::Auto, None).unwrap();
        assert_eq!((h.version.to_string(), h.previous.as_deref()), ("1.3.0".into(), Some("v1.2.0")));
        assert_eq!(h.changes.len(), 2);
        assert!(matches!(read(dir.path(), Bump::Auto, Some("rc.x")), Err(ReleaseError::BadLabel { .. })));
    }

    #[test]
    fn no_commits_dirty_tree_and_a_tag_on_another_commit_are_refused() {
        // A pre-release with nothing since the last tag.
        let dir = repo(&["init", "feat: a", "tag v1.0.0-rc.1"]);
        git(dir.path(), &["tag", "v1.0.0"]);
        let err = read(dir.path(), Bump::Auto, Some("beta")).unwrap_err();
        assert!(matches!(&err, ReleaseError::NoCommits { tag } if tag == "v1.0.0"), "{err}");
        let dir = repo(&["init", "tag v1.0.0", "fix: a", "tag v0.9.0"]);
        // v1.0.0 is reachable; HEAD carries v0.9.0, an older stable tag: it is resumed as is.
        assert_eq!(read(dir.path(), Bump::Auto, None).unwrap().version.to_string(), "0.9.0");

        let dir = repo(&["init", "tag v1.0.0", "fix: a"]);
        std::fs::write(dir.path().join("f0"), "changed").unwrap();
        let err = read(dir.path(), Bump::Auto, None).unwrap_err();
        assert!(matches!(&err, ReleaseError::Dirty { files } if files.contains("f0")), "{err}");

        let dir = repo(&["init", "tag v1.0.0", "fix: a"]);
        // v1.0.1 on a branch main never merged: not reachable, yet the name is taken.
        git(dir.path(), &["checkout", "-q", "-b", "side", "HEAD~1"]);
        git(dir.path(), &["commit", "-q", "--allow-empty", "-m", "fix: elsewhere"]);
        git(dir.path(), &["tag", "v1.0.1"]);
        git(dir.path(), &["checkout", "-q", "main"]);
        let err = read(dir.path(), Bump::Auto, None).unwrap_err();
        assert!(matches!(&err, ReleaseError::TagElsewhere { tag, .. } if tag == "v1.0.1"), "{err}");
    }

    #[test]
    fn a_release_tagged_on_head_is_resumed() {
        let dir = repo(&["init", "tag v1.0.0", "feat: a", "tag v1.1.0"]);
        let h = read(dir.path(), Bump::Auto, None).unwrap();
        assert!(h.resumed);
        assert_eq!((h.version.to_string(), h.previous.as_deref()), ("1.1.0".into(), Some("v1.0.0")));
        assert_eq!(h.changes.len(), 1);
        // With --pre, a stable tag on HEAD is not this kind of release: nothing new since it.
        let err = read(dir.path(), Bump::Auto, Some("rc")).unwrap_err();
        assert!(matches!(err, ReleaseError::NoCommits { ref tag } if tag == "v1.1.0"), "{err}");
    }

    #[test]
    fn changelog_groups_by_kind_with_links_and_authors() {
        let dir = repo(&[
            "init",
            "tag v1.0.0",
            "feat(api): add /health",
            "fix: trailing slash",
            "perf: cache lookups",
            "docs: readme",
            "refactor!: rename config keys",
            "Merge-free plain message",
        ]);
        let h = read(dir.path(), Bump::Auto, None).unwrap();
        assert_eq!(h.version.to_string(), "2.0.0");
        let log = changelog(&h, "https://github.com/acme/hello");
        let order: Vec<usize> = ["### Breaking", "### Features", "### Fixes", "### Performance", "### Other"]
            .iter()
            .map(|s| log.find(s).unwrap_or_else(|| panic!("{s} in:\n{log}")))
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{log}");
        let feat = h.changes.iter().find(|c| c.kind == Kind::Features).unwrap();
        assert!(
            log.contains(&format!(
                "- **api:** add /health ([{}](https://github.com/acme/hello/commit/{})) by Ada Lovelace",
                &feat.sha[..7],
                feat.sha
            )),
            "{log}"
        );
        assert!(log.contains("rename config keys"), "{log}");
        assert!(log.contains("- Merge-free plain message"), "{log}");
        assert!(log.contains("compare/v1.0.0...v2.0.0"), "{log}");
    }
}
