//! Which files go into an artifact: a walk of its root that honours `.gitignore`
//! files under the root (never the user's global excludes: those differ between
//! machines), then `include` and `exclude` globs. Symlinks are never followed; a
//! link that resolves inside the root is stored as a link, one that points outside
//! is an error.

use std::path::{Component, Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::config::Glob;

/// One file of an artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Name inside the zip: relative to the root, `/`-separated.
    pub name: String,
    pub path: PathBuf,
    pub kind: EntryKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    File { size: u64, executable: bool },
    Symlink { target: String },
}

#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("artifact root {} does not exist or is not a folder", .0.display())]
    NoRoot(PathBuf),
    #[error("cannot read {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("symlink {name} points outside the artifact root (to {target})")]
    SymlinkEscapes { name: String, target: String },
    #[error("{name} is not a regular file, folder or symlink (a pipe, socket or device)")]
    Special { name: String },
    #[error("file name {} is not valid UTF-8", .0.display())]
    NotUtf8(PathBuf),
    #[error("invalid glob `{glob}`")]
    Glob {
        glob: String,
        #[source]
        source: globset::Error,
    },
}

/// Lists the files under `root` selected by the globs, sorted by name (byte order).
pub fn collect(root: &Path, include: &[Glob], exclude: &[Glob], gitignore: bool) -> Result<Vec<Entry>, WalkError> {
    if !root.is_dir() {
        return Err(WalkError::NoRoot(root.to_owned()));
    }
    let include = Matcher::new(include)?;
    let exclude = Matcher::new(exclude)?;

    let walker = ignore::WalkBuilder::new(root)
        .hidden(false)
        .parents(false)
        .ignore(false)
        .git_global(false)
        .git_exclude(false)
        .git_ignore(gitignore)
        .require_git(false)
        .follow_links(false)
        .filter_entry(|e| e.file_name() != ".git")
        .build();

    let mut entries = Vec::new();
    for item in walker {
        let item = item.map_err(|e| walk_io(root, e))?;
        let Some(file_type) = item.file_type() else {
            continue;
        };
        if file_type.is_dir() {
            continue;
        }
        let path = item.path();
        let rel = path.strip_prefix(root).expect("walk stays under its root");
        let name = rel.to_str().ok_or_else(|| WalkError::NotUtf8(path.to_owned()))?.replace('\\', "/");
        if !include.matches(&name) || exclude.matches(&name) {
            continue;
        }
        let kind = if file_type.is_symlink() {
            let target = std::fs::read_link(path).map_err(|source| WalkError::Io { path: path.to_owned(), source })?;
            let target = target.to_str().ok_or_else(|| WalkError::NotUtf8(target.clone()))?.to_owned();
            if !stays_inside(rel, &target) {
                return Err(WalkError::SymlinkEscapes { name, target });
            }
            EntryKind::Symlink { target }
        } else if !file_type.is_file() {
            return Err(WalkError::Special { name });
        } else {
            let meta = item.metadata().map_err(|e| walk_io(path, e))?;
            EntryKind::File { size: meta.len(), executable: is_executable(&meta) }
        };
        entries.push(Entry { name, path: path.to_owned(), kind });
    }
    entries.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    Ok(entries)
}

/// Whether a link at `link` (relative to the root) with `target` resolves inside the root,
/// judged lexically: the target is never read, so a chain of links cannot escape either
/// (each link is checked the same way).
fn stays_inside(link: &Path, target: &str) -> bool {
    let target = Path::new(target);
    if target.is_absolute() {
        return false;
    }
    let mut depth: i64 = link.components().count() as i64 - 1;
    for part in target.components() {
        match part {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

#[cfg(unix)]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_: &std::fs::Metadata) -> bool {
    false
}

fn walk_io(path: &Path, e: ignore::Error) -> WalkError {
    let source = e.into_io_error().unwrap_or_else(|| std::io::Error::other("walk failed"));
    WalkError::Io { path: path.to_owned(), source }
}

/// gitignore-flavoured globs: a pattern without `/` matches at any depth, a
/// pattern with one is anchored at the root, `dir/` matches everything below `dir`.
struct Matcher {
    set: GlobSet,
    negated: GlobSet,
    empty: bool,
}

impl Matcher {
    fn new(globs: &[Glob]) -> Result<Self, WalkError> {
        let mut set = GlobSetBuilder::new();
        let mut negated = GlobSetBuilder::new();
        for glob in globs {
            let raw = glob.as_str();
            let (builder, pattern) = match raw.strip_prefix('!') {
                Some(p) => (&mut negated, p),
                None => (&mut set, raw),
            };
            for expanded in expand(pattern) {
                let compiled = GlobBuilder::new(&expanded)
                    .literal_separator(true)
                    .build()
                    .map_err(|source| WalkError::Glob { glob: raw.to_owned(), source })?;
                builder.add(compiled);
            }
        }
        let build = |b: GlobSetBuilder| b.build().expect("each glob already compiled");
        Ok(Self { set: build(set), negated: build(negated), empty: globs.is_empty() })
    }

    fn matches(&self, name: &str) -> bool {
        !self.empty && self.set.is_match(name) && !self.negated.is_match(name)
    }
}

/// Turns one gitignore-style pattern into plain globs over full relative names.
fn expand(pattern: &str) -> Vec<String> {
    let dir_only = pattern.ends_with('/');
    let p = pattern.trim_end_matches('/');
    let anchored = p.starts_with('/') || p.contains('/');
    let p = p.trim_start_matches('/');
    let base = if anchored || p.starts_with("**") { p.to_owned() } else { format!("**/{p}") };
    if dir_only { vec![format!("{base}/**")] } else { vec![base.clone(), format!("{base}/**")] }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for f in files {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, f).unwrap();
        }
        dir
    }

    fn names(root: &Path, include: &[&str], exclude: &[&str]) -> Vec<String> {
        let g = |v: &[&str]| v.iter().map(|s| s.parse::<Glob>().unwrap()).collect::<Vec<_>>();
        collect(root, &g(include), &g(exclude), true).unwrap().into_iter().map(|e| e.name).collect()
    }

    #[test]
    fn sorted_with_globs_and_gitignore() {
        let dir = tree(&["b.txt", "a/z.js", "a/y.log", "B/c.txt", ".env", "node_modules/x.js", ".gitignore"]);
        std::fs::write(dir.path().join(".gitignore"), "node_modules/\n").unwrap();
        assert_eq!(names(dir.path(), &["**"], &["*.log", ".env"]), [".gitignore", "B/c.txt", "a/z.js", "b.txt"]);
        assert_eq!(names(dir.path(), &["*.js"], &[]), ["a/z.js"]);
        assert_eq!(names(dir.path(), &["a/"], &[]), ["a/y.log", "a/z.js"]);
        assert_eq!(names(dir.path(), &["**", "!*.txt"], &[]), [".env", ".gitignore", "a/y.log", "a/z.js"]);
    }

    #[test]
    fn symlinks_inside_are_kept_outside_are_rejected() {
        let dir = tree(&["lib/real.txt"]);
        std::os::unix::fs::symlink("real.txt", dir.path().join("lib/link.txt")).unwrap();
        let entries = collect(dir.path(), &[Glob::any()], &[], true).unwrap();
        assert_eq!(entries[0].kind, EntryKind::Symlink { target: "real.txt".into() });

        std::os::unix::fs::symlink("../../etc/passwd", dir.path().join("lib/bad")).unwrap();
        let err = collect(dir.path(), &[Glob::any()], &[], true).unwrap_err();
        assert!(matches!(err, WalkError::SymlinkEscapes { .. }), "{err}");
        assert!(err.to_string().contains("lib/bad"));
    }

    #[test]
    fn special_files_are_refused_not_read() {
        let dir = tree(&["ok.txt"]);
        let fifo = dir.path().join("pipe");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let err = collect(dir.path(), &[Glob::any()], &[], true).unwrap_err();
        assert!(matches!(err, WalkError::Special { ref name } if name == "pipe"), "{err}");
        let excluded: Vec<Glob> = vec!["pipe".parse().unwrap()];
        assert_eq!(collect(dir.path(), &[Glob::any()], &excluded, true).unwrap().len(), 1, "unless excluded");
    }

    #[test]
    fn link_escape_is_judged_lexically() {
        assert!(stays_inside(Path::new("a/b/link"), "../c"));
        assert!(!stays_inside(Path::new("a/link"), "../../c"));
        assert!(!stays_inside(Path::new("link"), "/etc/passwd"));
        assert!(stays_inside(Path::new("link"), "./x/../y"));
    }

    #[test]
    fn missing_root_is_named() {
        let err = collect(Path::new("/nonexistent/x"), &[Glob::any()], &[], true).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x"));
    }
}
