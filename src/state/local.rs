//! The folder backend: `deployments/ID.json` records and `lock.json`, written atomically
//! (temp file + rename). Every read-check-write of the lock happens under an exclusive
//! `flock` of `.lock.guard`, which the kernel drops when the holder dies, so two processes
//! can never both take the lock or both take over a stale one.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Holder, LockError, StateError};
use crate::state::record::Deployment;

#[derive(Debug, Clone)]
pub struct Folder {
    root: PathBuf,
}

impl Folder {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn save(&self, deployment: &Deployment) -> Result<(), StateError> {
        let dir = self.root.join("deployments");
        let json = serde_json::to_vec_pretty(deployment).expect("record serializes");
        write_atomic(&dir, &format!("{}.json", deployment.id), &json).map_err(|e| self.io("write", &dir, e))
    }

    /// Every record, oldest first.
    pub fn list(&self) -> Result<Vec<Deployment>, StateError> {
        let dir = self.root.join("deployments");
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io("read", &dir, e)),
        };
        let mut records = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| self.io("read", &dir, e))?.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let bytes = fs::read(&path).map_err(|e| self.io("read", &path, e))?;
            let record: Deployment = serde_json::from_slice(&bytes)
                .map_err(|e| StateError::Corrupt { location: path.display().to_string(), message: e.to_string() })?;
            records.push(record);
        }
        records.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(records)
    }

    pub fn read_lock(&self) -> Result<Option<Holder>, StateError> {
        let path = self.root.join("lock.json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StateError::Corrupt { location: path.display().to_string(), message: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io("read", &path, e)),
        }
    }

    /// Takes the lock for `holder`, or says who has it. A holder whose lease ran out, or
    /// whose process is gone from this machine, is taken over; the old holder is returned.
    pub fn acquire(&self, holder: &Holder) -> Result<Option<Holder>, LockError> {
        let _guard = self.guard()?;
        let previous = self.read_lock()?;
        if let Some(current) = &previous
            && !current.is_stale()
        {
            return Err(LockError::Held(Box::new(current.clone())));
        }
        self.write_lock(holder)?;
        Ok(previous)
    }

    /// Extends the lease, if `holder` still has the lock.
    pub fn renew(&self, holder: &Holder) -> Result<(), LockError> {
        let _guard = self.guard()?;
        match self.read_lock()? {
            Some(current) if current.token == holder.token => Ok(self.write_lock(holder)?),
            Some(current) => Err(LockError::Lost(Some(Box::new(current)))),
            None => Err(LockError::Lost(None)),
        }
    }

    pub fn release(&self, holder: &Holder) -> Result<(), LockError> {
        let _guard = self.guard()?;
        if let Some(current) = self.read_lock()?
            && current.token == holder.token
        {
            let path = self.root.join("lock.json");
            fs::remove_file(&path).map_err(|e| self.io("remove", &path, e))?;
        }
        Ok(())
    }

    fn write_lock(&self, holder: &Holder) -> Result<(), StateError> {
        let json = serde_json::to_vec_pretty(holder).expect("holder serializes");
        write_atomic(&self.root, "lock.json", &json).map_err(|e| self.io("write", &self.root.join("lock.json"), e))
    }

    fn guard(&self) -> Result<File, StateError> {
        fs::create_dir_all(&self.root).map_err(|e| self.io("create", &self.root, e))?;
        let path = self.root.join(".lock.guard");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| self.io("open", &path, e))?;
        file.lock().map_err(|e| self.io("lock", &path, e))?;
        Ok(file)
    }

    fn io(&self, verb: &str, path: &Path, source: std::io::Error) -> StateError {
        StateError::Io { context: format!("cannot {verb} {}", path.display()), source }
    }
}

/// Writes `name` in `dir` through a temp file and a rename, so readers see the old or the
/// new content, never a part.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::with_prefix_in(format!(".{name}."), dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_data()?;
    tmp.persist(dir.join(name)).map_err(|e| e.error)?;
    Ok(())
}
