//! The local target's state file (`state.json` in its state dir): which versions run,
//! on which replica processes, and how user traffic is split. It is written atomically
//! (temp file + rename) before every change it describes, so a later process (after a
//! crash) finds every replica an operation may have started.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::process::ProcessId;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The version serving users.
    pub stable: Option<Deployed>,
    /// A new version started beside it by a deployment that has not finished.
    pub new: Option<Deployed>,
    /// How user traffic is split between them.
    #[serde(default)]
    pub routing: Routing,
    /// Replicas taken out of the upstream, waiting for their drain and stop.
    #[serde(default)]
    pub retiring: Vec<Replica>,
}

/// How the public upstream is made up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum Routing {
    /// Only the stable version (the new one, if any, only on the preview address).
    #[default]
    Stable,
    /// `percent` of traffic to the new version (blue-green and canary).
    Weighted { percent: u8 },
    /// Every running new replica and the first `old` stable replicas, equal shares.
    Rolling { old: u32 },
}

/// One version's release folder and replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployed {
    pub version: semver::Version,
    pub digest: String,
    /// The unpacked artifact the replicas run in.
    pub dir: PathBuf,
    pub replicas: Vec<Replica>,
}

/// One replica process. `process` is `None` only between recording the replica and
/// spawning it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replica {
    pub port: u16,
    pub log: PathBuf,
    pub process: Option<ProcessId>,
}

impl State {
    /// Reads the state file; a missing file is an empty state.
    pub fn load(path: &Path) -> std::io::Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e),
        }
    }

    /// Writes the state file atomically: a temp file beside it, then renamed. Not fsync'd: it
    /// must outlive a killed gantry (the kernel has the write), and a power cut that could lose
    /// it also ends every process it describes.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let dir = path.parent().expect("the state file has a folder");
        std::fs::create_dir_all(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        serde_json::to_writer_pretty(&mut tmp, self).map_err(std::io::Error::other)?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }

    /// Every replica the state knows of, whichever version it belongs to.
    pub fn all_replicas(&self) -> impl Iterator<Item = &Replica> {
        let stable = self.stable.iter().flat_map(|d| &d.replicas);
        let new = self.new.iter().flat_map(|d| &d.replicas);
        stable.chain(new).chain(&self.retiring)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert_eq!(State::load(&path).unwrap(), State::default());
        let state = State {
            stable: Some(Deployed {
                version: "1.0.0".parse().unwrap(),
                digest: "ab".repeat(32),
                dir: dir.path().join("releases/1.0.0"),
                replicas: vec![Replica {
                    port: 4000,
                    log: dir.path().join("a.log"),
                    process: Some(ProcessId { pid: 42, start_time: 7 }),
                }],
            }),
            new: None,
            routing: Routing::Weighted { percent: 10 },
            retiring: vec![],
        };
        state.save(&path).unwrap();
        assert_eq!(State::load(&path).unwrap(), state);
        assert_eq!(state.all_replicas().count(), 1);
    }
}
