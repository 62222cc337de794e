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
/// new content, never a part. Not fsync'd: a killed gantry loses nothing (the kernel has the
/// write), and a machine that loses power loses its local target too; cloud environments keep
/// their ledger in S3.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::with_prefix_in(format!(".{name}."), dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(dir.join(name)).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};
    use std::time::Duration;

    use super::*;
    use crate::state::record::{self, Kind, State};
    use crate::state::target_history;
    use crate::targets::Release;

    fn folder() -> (tempfile::TempDir, Folder) {
        let dir = tempfile::tempdir().unwrap();
        let f = Folder::new(dir.path().join("state"));
        (dir, f)
    }

    #[test]
    fn of_ten_racing_processes_exactly_one_takes_the_lock() {
        let (_dir, f) = folder();
        let start = Arc::new(Barrier::new(10));
        let handles: Vec<_> = (0..10)
            .map(|i| {
                let (f, start) = (f.clone(), Arc::clone(&start));
                std::thread::spawn(move || {
                    let holder = Holder::new(&format!("deploy {i}"), "t", Duration::from_secs(30));
                    start.wait();
                    f.acquire(&holder).map(|_| holder)
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let winners: Vec<&Holder> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1);
        for r in &results {
            if let Err(LockError::Held(h)) = r {
                assert_eq!(h.token, winners[0].token, "losers name the winner");
            } else {
                assert!(r.is_ok());
            }
        }
        assert_eq!(f.read_lock().unwrap().unwrap().token, winners[0].token);
    }

    #[test]
    fn a_lock_whose_lease_ran_out_is_taken_over_and_the_old_holder_loses_it() {
        let (_dir, f) = folder();
        let mut old = Holder::new("deploy 1", "t", Duration::from_secs(30));
        old.host = "another-machine".into();
        old.expires_ms = crate::state::now_ms() - 1;
        f.acquire(&old).unwrap();
        let new = Holder::new("deploy 2", "t", Duration::from_secs(30));
        let taken = f.acquire(&new).unwrap();
        assert_eq!(taken.map(|h| h.token), Some(old.token.clone()));
        assert!(matches!(f.renew(&old), Err(LockError::Lost(Some(_)))));
        f.release(&old).unwrap();
        assert_eq!(f.read_lock().unwrap().unwrap().token, new.token, "a stale holder cannot release it");
        f.release(&new).unwrap();
        assert!(f.read_lock().unwrap().is_none());
    }

    #[test]
    fn a_live_lease_on_another_machine_is_respected_and_a_dead_process_here_is_not() {
        let (_dir, f) = folder();
        let mut remote = Holder::new("deploy 1", "t", Duration::from_secs(30));
        remote.host = "another-machine".into();
        remote.pid = 1;
        f.acquire(&remote).unwrap();
        assert!(matches!(f.acquire(&Holder::new("x", "t", Duration::from_secs(30))), Err(LockError::Held(_))));
        f.release(&remote).unwrap();

        let mut dead = Holder::new("deploy 1", "t", Duration::from_secs(30));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        dead.pid = child.id();
        child.wait().unwrap();
        f.acquire(&dead).unwrap();
        let taken = f.acquire(&Holder::new("deploy 2", "t", Duration::from_secs(30))).unwrap();
        assert_eq!(taken.map(|h| h.pid), Some(dead.pid));
    }

    #[test]
    fn records_round_trip_and_history_reads_them() {
        let (_dir, f) = folder();
        let release =
            |v: &str| Release { version: v.parse().unwrap(), digest: format!("d{v}"), artifacts: Default::default() };
        let make = |v: &str, state: State| {
            let mut d =
                crate::rollout::engine::new_record("dev", "web", Kind::Deploy, &release(v), None, "canary", "t");
            d.state = state;
            f.save(&d).unwrap();
            std::thread::sleep(Duration::from_millis(2));
            d
        };
        let one = make("1.0.0", State::Succeeded);
        make("1.1.0", State::RolledBack);
        let two = make("2.0.0", State::Succeeded);
        let three = make("3.0.0", State::Running);
        let records = f.list().unwrap();
        assert_eq!(
            records.iter().map(|d| d.release.version.to_string()).collect::<Vec<_>>(),
            ["1.0.0", "1.1.0", "2.0.0", "3.0.0"]
        );
        let h = target_history(&records, "web");
        assert_eq!(h.live, Some(&two));
        assert_eq!(h.previous_good, Some(&one), "a rolled-back release is never gone back to");
        assert_eq!(h.running, Some(&three));
        assert_eq!(record::SCHEMA, records[0].schema);
    }
}
