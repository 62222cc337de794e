//! Release folders: each release's artifact zip unpacked once into
//! `releases/<version>-<digest12>/`, and old folders pruned.

use std::path::{Path, PathBuf};

use crate::targets::Release;

/// Release folders kept besides the ones in use.
pub const KEEP: usize = 3;

/// The folder `release` runs from, under `releases`.
pub fn folder(releases: &Path, release: &Release) -> PathBuf {
    let digest = release.digest.trim_start_matches("sha256:");
    let digest: String = digest.chars().filter(char::is_ascii_alphanumeric).take(12).collect();
    releases.join(format!("{}-{digest}", release.version))
}

/// Unpacks `zip` into `dest` unless it is there already. The zip goes into a temp
/// folder beside `dest` that is renamed into place, so `dest` is always complete.
pub fn unpack(zip: &Path, dest: &Path) -> Result<(), String> {
    if dest.is_dir() {
        return Ok(());
    }
    let parent = dest.parent().expect("a release folder has a parent");
    std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    let file = std::fs::File::open(zip).map_err(|e| format!("cannot open {}: {e}", zip.display()))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| format!("cannot read {}: {e}", zip.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".unpack-")
        .tempdir_in(parent)
        .map_err(|e| format!("cannot create a temp folder in {}: {e}", parent.display()))?;
    archive.extract(tmp.path()).map_err(|e| format!("cannot unpack {}: {e}", zip.display()))?;
    std::fs::rename(tmp.keep(), dest).map_err(|e| format!("cannot move the release to {}: {e}", dest.display()))
}

/// Removes release folders beyond the `KEEP` newest, never one in `in_use`, and returns
/// the names of those removed.
pub fn prune(releases: &Path, in_use: &[&Path]) -> std::io::Result<Vec<String>> {
    let mut folders: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(releases)?
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| (e.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH), e.path()))
        .collect();
    folders.sort_by(|a, b| b.cmp(a));
    let mut removed = Vec::new();
    for (_, path) in folders.into_iter().skip(KEEP) {
        if !in_use.contains(&path.as_path()) {
            std::fs::remove_dir_all(&path)?;
            removed.extend(path.file_name().map(|n| n.to_string_lossy().into_owned()));
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_keeps_the_newest_and_those_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let names = ["a", "b", "c", "d", "e"];
        for (i, name) in names.iter().enumerate() {
            let path = dir.path().join(name);
            std::fs::create_dir(&path).unwrap();
            let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1000 + i as u64);
            std::fs::File::open(&path).unwrap().set_modified(time).unwrap();
        }
        assert_eq!(prune(dir.path(), &[&dir.path().join("a")]).unwrap(), ["b"]);
        let mut left: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, ["a", "c", "d", "e"]);
    }
}
