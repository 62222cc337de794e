//! `dist/.gantry-hashes.json`: the SHA-256 of each archive as last computed from its
//! bytes, keyed by what `stat` says of the file (size, mtime, ctime, inode, device), so
//! `gantry publish` need not read a 1 GiB archive again just to plan.
//!
//! `gantry package` writes it after the archives are in place; `gantry publish` adds
//! the files it had to hash. An entry is used only while every stat field still matches;
//! ctime cannot be set back by a user (unlike mtime), so a rewrite always misses.
//!
//! This is a shortcut for planning only, never the integrity check: publish hashes the
//! bytes it sends and refuses to commit an object whose hash is not the manifest's. A
//! wrong entry can at worst move the refusal of a changed file from the plan to the upload.
//! It is best effort: a missing, unreadable or stale file means "hash it".

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub const HASHES_FILE: &str = ".gantry-hashes.json";

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct HashCache {
    files: BTreeMap<String, Entry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    stat: Stat,
    sha256: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Stat {
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    ino: u64,
    dev: u64,
}

impl HashCache {
    /// The cache in `dir`, or an empty one.
    pub fn load(dir: &Path) -> Self {
        std::fs::read(dir.join(HASHES_FILE)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }

    /// The recorded hex SHA-256 of `dir/file`, if the file is untouched since.
    pub fn sha256(&self, dir: &Path, file: &str) -> Option<&str> {
        let entry = self.files.get(file)?;
        (stat(&dir.join(file))? == entry.stat).then_some(entry.sha256.as_str())
    }

    /// Records `sha256` (hex) for `dir/file` as it is now.
    pub fn record(&mut self, dir: &Path, file: &str, sha256: &str) {
        match stat(&dir.join(file)) {
            Some(stat) => self.files.insert(file.to_owned(), Entry { stat, sha256: sha256.to_owned() }),
            None => self.files.remove(file),
        };
    }

    /// Writes the cache into `dir`. Failing is harmless: the files get hashed next time.
    pub fn save(&self, dir: &Path) {
        let json = serde_json::to_vec_pretty(self).expect("plain data serializes");
        if let Err(e) = super::write_atomic(&dir.join(HASHES_FILE), &json) {
            tracing::debug!(error = %e, "cannot write the hash cache");
        }
    }
}

#[cfg(unix)]
fn stat(path: &Path) -> Option<Stat> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
    Some(Stat {
        size: m.len(),
        mtime_ns: ns(m.mtime(), m.mtime_nsec()),
        ctime_ns: ns(m.ctime(), m.ctime_nsec()),
        ino: m.ino(),
        dev: m.dev(),
    })
}

/// Without ctime and inode numbers nothing is trusted: every file is hashed.
#[cfg(not(unix))]
fn stat(_: &Path) -> Option<Stat> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_holds_until_the_file_is_touched_even_with_its_size_and_mtime_restored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.zip");
        std::fs::write(&path, b"first").unwrap();
        let mut cache = HashCache::default();
        cache.record(dir.path(), "a.zip", "abc");
        cache.save(dir.path());
        let cache = HashCache::load(dir.path());
        assert_eq!(cache.sha256(dir.path(), "a.zip"), Some("abc"));
        assert_eq!(cache.sha256(dir.path(), "b.zip"), None);

        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, b"other").unwrap();
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(mtime).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), mtime);
        assert_eq!(cache.sha256(dir.path(), "a.zip"), None, "same size and mtime, but ctime moved");
    }

    #[test]
    fn a_missing_or_garbled_cache_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(HashCache::load(dir.path()).files.is_empty());
        std::fs::write(dir.path().join(HASHES_FILE), b"{not json").unwrap();
        assert!(HashCache::load(dir.path()).files.is_empty());
    }
}
