//! Releases for deploys on this machine: the working tree packaged on the spot (the dev
//! flow), or a packaged release found by version. Every release deployed is kept in the
//! release store, `.gantry/releases/VERSION-DIGEST12/` beside gantry.toml (release.json and
//! its zips), so a rollback finds the exact bytes it goes back to.

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::deploy::DeployError;
use crate::cli::PackageArgs;
use crate::package::manifest::{MANIFEST_FILE, Manifest};
use crate::report::Printer;
use crate::targets::Release;
use crate::{Error, config};

/// Packages the working tree into dist/ (as `gantry package` does) and stores it.
pub async fn package_working_tree(loaded: &config::Loaded, printer: &Printer) -> Result<Release, Error> {
    let args = PackageArgs { release_version: None, out: None, artifacts: Vec::new(), skip_build: false };
    {
        let loaded = loaded.clone();
        let printer = printer.clone();
        let cancel = std::sync::atomic::AtomicBool::new(false);
        tokio::task::spawn_blocking(move || super::package::package(&loaded, &args, &printer, &cancel))
            .await
            .map_err(|e| Error::Io {
                context: "packaging stopped unexpectedly".into(),
                source: std::io::Error::other(e),
            })??;
    }
    store(loaded, &loaded.dist_dir())
}

/// The release `version` (a leading `v` allowed): from the store (the one with `digest`
/// when given), else from dist/ when that holds it.
pub fn find(loaded: &config::Loaded, version: &str, digest: Option<&str>) -> Result<Release, Error> {
    let version = version.trim_start_matches('v');
    let wanted: semver::Version = version.parse().map_err(|e| Error::Usage {
        message: format!("`{version}` is not a semver version: {e}"),
        hint: Some("e.g. 1.4.0 or 1.4.0-rc.1".into()),
    })?;
    let root = root(loaded);
    let prefix = format!("{}-", dir_version(&wanted));
    let mut candidates: Vec<PathBuf> = fs::read_dir(&root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix)))
        .filter(|p| {
            digest.is_none_or(|d| {
                p.file_name().and_then(|n| n.to_str()) == Some(&format!("{prefix}{}", &d[..12.min(d.len())]))
            })
        })
        .collect();
    candidates.sort_by_key(|p| fs::metadata(p).and_then(|m| m.modified()).ok());
    if let Some(dir) = candidates.last() {
        return open(dir);
    }
    let dist = loaded.dist_dir();
    if let Ok(manifest) = read_manifest(&dist)
        && manifest.0.version == wanted
        && digest.is_none_or(|d| d == manifest.1)
    {
        return store(loaded, &dist);
    }
    Err(Error::Deploy(DeployError::NoRelease {
        message: format!("release {wanted} is not packaged here: not in {} nor in {}", root.display(), dist.display()),
        hint: format!(
            "package it first: `git checkout v{wanted} && gantry package`, or deploy without --version to package the working tree"
        ),
    }))
}

/// Copies a packaged release (dist/) into the store, unless it is there already.
pub fn store(loaded: &config::Loaded, dist: &Path) -> Result<Release, Error> {
    let (manifest, digest) = read_manifest(dist)?;
    let dir = root(loaded).join(format!("{}-{}", dir_version(&manifest.version), &digest[..12]));
    if !dir.join(MANIFEST_FILE).exists() {
        // Several deploys may store the same release at once: each fills its own temp
        // folder, and the first rename wins; the others find the release there.
        let root = root(loaded);
        fs::create_dir_all(&root).map_err(|e| io("create", &root, e))?;
        let tmp = tempfile::Builder::new().prefix(".partial-").tempdir_in(&root).map_err(|e| io("create", &root, e))?;
        for file in manifest.artifacts.iter().map(|a| a.file.as_str()).chain([MANIFEST_FILE]) {
            fs::copy(dist.join(file), tmp.path().join(file)).map_err(|e| io("copy", &dist.join(file), e))?;
        }
        if let Err(e) = fs::rename(tmp.path(), &dir)
            && !dir.join(MANIFEST_FILE).exists()
        {
            return Err(io("create", &dir, e));
        }
    }
    open(&dir)
}

fn open(dir: &Path) -> Result<Release, Error> {
    let (manifest, digest) = read_manifest(dir)?;
    let artifacts = manifest.artifacts.iter().map(|a| (a.name.clone(), dir.join(&a.file))).collect();
    Ok(Release { version: manifest.version, digest, artifacts })
}

/// The manifest and the SHA-256 of its bytes (the release's digest).
fn read_manifest(dir: &Path) -> Result<(Manifest, String), Error> {
    let path = dir.join(MANIFEST_FILE);
    let bytes = fs::read(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::Deploy(DeployError::NoRelease {
                message: format!("no packaged release in {}", dir.display()),
                hint: "run `gantry package` first, or deploy without --version to package the working tree".into(),
            })
        } else {
            io("read", &path, e)
        }
    })?;
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| Error::Usage {
        message: format!("{} is not a gantry release manifest: {e}", path.display()),
        hint: Some("package again with `gantry package`".into()),
    })?;
    let digest = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    Ok((manifest, digest))
}

fn root(loaded: &config::Loaded) -> PathBuf {
    loaded.dir.join(".gantry/releases")
}

/// Semver build metadata's `+` as `_`, as archive names do.
fn dir_version(v: &semver::Version) -> String {
    v.to_string().replace('+', "_")
}

fn io(verb: &str, path: &Path, source: std::io::Error) -> Error {
    Error::Io { context: format!("cannot {verb} {}", path.display()), source }
}
