//! The inputs hash: what decides whether an image changed. A SHA-256 over the files the
//! image's `inputs` globs select under the folder of gantry.toml (the same selection
//! rules as an artifact's `include`, `.gitignore` honoured), sorted by name, each as
//! its relative name, its kind (file, executable file, symlink) and its content's
//! SHA-256 (a symlink's content is its target). Names are NUL-terminated and digests
//! fixed-size, so no two different trees hash alike. Never of mtimes, owners or the
//! checkout path. The image is tagged `inputs-<first 16 hex digits>`.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::ImageError;
use super::digest::hex;
use crate::config::Glob;
use crate::package::walk;
use crate::package::{Entry, EntryKind};

/// The hash of an image's inputs and how many files went into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputsHash {
    /// 64 lower-case hex digits.
    pub hex: String,
    pub files: usize,
}

impl InputsHash {
    /// The tag that marks an image built from these inputs.
    pub fn tag(&self) -> String {
        format!("inputs-{}", &self.hex[..16])
    }
}

/// Hashes the files `inputs` selects under `dir`. Selecting nothing is an error: an
/// image whose inputs are empty would never be pushed again.
pub fn hash(image: &str, dir: &Path, inputs: &[Glob]) -> Result<InputsHash, ImageError> {
    let entries = walk::collect(dir, inputs, &[], true)
        .map_err(|source| ImageError::Inputs { image: image.to_owned(), source: Box::new(source) })?;
    if entries.is_empty() {
        return Err(ImageError::NoInputs {
            image: image.to_owned(),
            globs: inputs.iter().map(ToString::to_string).collect(),
        });
    }
    let mut tree = Sha256::new();
    for entry in &entries {
        let (kind, content) = entry_digest(entry).map_err(|source| ImageError::Read {
            context: format!("cannot read input {} of image `{image}`", entry.name),
            source,
        })?;
        tree.update(entry.name.as_bytes());
        tree.update([0, kind]);
        tree.update(content);
    }
    Ok(InputsHash { hex: hex(&tree.finalize()), files: entries.len() })
}

/// The kind byte (`f` file, `x` executable file, `l` symlink) and the content's SHA-256.
fn entry_digest(entry: &Entry) -> std::io::Result<(u8, [u8; 32])> {
    let mut hasher = Sha256::new();
    let kind = match &entry.kind {
        EntryKind::Symlink { target } => {
            hasher.update(target.as_bytes());
            b'l'
        }
        EntryKind::File { executable, .. } => {
            let mut file = File::open(&entry.path)?;
            let mut buf = vec![0; 1 << 20];
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            if *executable { b'x' } else { b'f' }
        }
    };
    Ok((kind, hasher.finalize().into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn globs(v: &[&str]) -> Vec<Glob> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn write(dir: &Path, name: &str, content: &str) {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    #[test]
    fn same_tree_same_hash_anywhere() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for dir in [a.path(), b.path()] {
            write(dir, "src/main.py", "print(1)");
            write(dir, "Dockerfile.txt", "x");
        }
        let ha = hash("i", a.path(), &globs(&["src/", "Dockerfile.txt"])).unwrap();
        let hb = hash("i", b.path(), &globs(&["src/", "Dockerfile.txt"])).unwrap();
        assert_eq!(ha, hb);
        assert_eq!(ha.files, 2);
        assert!(ha.tag().starts_with("inputs-") && ha.tag().len() == 23);
    }

    #[test]
    fn content_names_and_executable_bit_count() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.sh", "echo");
        let g = globs(&["*.sh"]);
        let first = hash("i", dir.path(), &g).unwrap();
        std::fs::set_permissions(dir.path().join("a.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let exec = hash("i", dir.path(), &g).unwrap();
        assert_ne!(first, exec);
        write(dir.path(), "a.sh", "echo!");
        assert_ne!(exec, hash("i", dir.path(), &g).unwrap());
        std::fs::rename(dir.path().join("a.sh"), dir.path().join("b.sh")).unwrap();
        assert_ne!(exec, hash("i", dir.path(), &g).unwrap());
    }

    #[test]
    fn selecting_nothing_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = hash("deployer", dir.path(), &globs(&["src/"])).unwrap_err();
        assert!(matches!(err, ImageError::NoInputs { .. }), "{err}");
        assert!(err.to_string().contains("deployer"));
    }
}
