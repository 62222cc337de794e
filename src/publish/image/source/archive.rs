//! An index of an uncompressed tar archive (an OCI archive or a `docker save` file):
//! where each member's bytes start and how long they are. Blobs are then read, hashed
//! and uploaded straight from the archive, never extracted.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The members of a tar archive by normalised name (no leading `./`).
pub struct TarIndex {
    pub path: PathBuf,
    members: HashMap<String, Member>,
}

enum Member {
    Data {
        offset: u64,
        size: u64,
    },
    /// A symbolic or hard link to another member (`docker save` links repeated layers).
    Link(String),
}

impl TarIndex {
    pub fn open(path: &Path) -> io::Result<Self> {
        let mut file = File::open(path)?;
        let mut magic = [0u8; 2];
        if file.read(&mut magic)? == 2 && magic == [0x1f, 0x8b] {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the archive is gzip-compressed; gantry reads uncompressed tar archives (gunzip it first)",
            ));
        }
        file.seek(SeekFrom::Start(0))?;
        let mut archive = tar::Archive::new(file);
        let mut members = HashMap::new();
        for entry in archive.entries()? {
            let entry = entry?;
            let name = normalise(&String::from_utf8_lossy(&entry.path_bytes()));
            let kind = entry.header().entry_type();
            let member = if kind.is_symlink() || kind.is_hard_link() {
                let target = entry.link_name_bytes().map(|t| String::from_utf8_lossy(&t).into_owned());
                let target = target.unwrap_or_default();
                // Symlinks are relative to the member's folder; hard links to the archive root.
                let resolved = if kind.is_symlink() { resolve(&name, &target) } else { normalise(&target) };
                Member::Link(resolved)
            } else if kind.is_file() {
                Member::Data { offset: entry.raw_file_position(), size: entry.size() }
            } else {
                continue;
            };
            members.insert(name, member);
        }
        Ok(Self { path: path.to_owned(), members })
    }

    /// Offset and size of member `name`, following links.
    pub fn locate(&self, name: &str) -> Option<(u64, u64)> {
        let mut name = normalise(name);
        for _ in 0..8 {
            match self.members.get(&name)? {
                Member::Data { offset, size } => return Some((*offset, *size)),
                Member::Link(target) => name = target.clone(),
            }
        }
        None
    }

    /// The whole content of member `name` (for small JSON members).
    pub fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        let (offset, size) = self.locate(name).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("{name} is not in {}", self.path.display()))
        })?;
        let mut file = File::open(&self.path)?;
        file.seek(SeekFrom::Start(offset))?;
        let mut buf = vec![0; size as usize];
        file.read_exact(&mut buf)?;
        Ok(buf)
    }
}

fn normalise(name: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

fn resolve(member: &str, target: &str) -> String {
    if target.starts_with('/') {
        return normalise(target);
    }
    let dir = member.rsplit_once('/').map_or("", |(d, _)| d);
    normalise(&format!("{dir}/{target}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_found_by_offset_and_through_links() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar");
        let mut builder = tar::Builder::new(File::create(&path).unwrap());
        let mut header = tar::Header::new_gnu();
        header.set_size(5);
        header.set_mode(0o644);
        builder.append_data(&mut header, "./one/layer.tar", &b"hello"[..]).unwrap();
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_size(0);
        builder.append_link(&mut link, "two/layer.tar", "../one/layer.tar").unwrap();
        builder.into_inner().unwrap();

        let index = TarIndex::open(&path).unwrap();
        assert_eq!(index.read("one/layer.tar").unwrap(), b"hello");
        assert_eq!(index.read("./two/layer.tar").unwrap(), b"hello");
        assert_eq!(index.locate("one/layer.tar").unwrap().0, 512);
        assert!(index.read("missing").is_err());
    }

    #[test]
    fn names_normalise() {
        assert_eq!(normalise("./blobs//sha256/x"), "blobs/sha256/x");
        assert_eq!(resolve("a/b/layer.tar", "../c/layer.tar"), "a/c/layer.tar");
    }
}
