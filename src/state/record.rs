//! The ledger's record of one deployment of one target, the same JSON in every backend.
//! It is written when the deployment starts and again at every phase boundary, so after a
//! crash it says exactly which phase was in progress.

use serde::{Deserialize, Serialize};

use crate::targets::Release;

/// Format version of a record.
pub const SCHEMA: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    pub schema: u32,
    /// `20261123T071502Z-web-1a2b3c`: sorts by start time.
    pub id: String,
    pub environment: String,
    pub target: String,
    pub kind: Kind,
    pub release: ReleaseRef,
    /// What was live before, and what a rollback restores.
    pub previous: Option<ReleaseRef>,
    pub strategy: String,
    /// `user@host`, or the GitHub actor in Actions.
    pub started_by: String,
    /// The machine and process running it, to tell a live holder from a dead one.
    pub host: String,
    pub pid: u32,
    /// The approval this deployment was allowed by, when the environment needs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<serde_json::Value>,
    /// Multi-region: the deploy wave this target went in (1-based; absent with one wave).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave: Option<usize>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub phases: Vec<Phase>,
    pub state: State,
    /// Why it failed, was rolled back, or was interrupted.
    pub reason: Option<String>,
    /// What is live after a rollback (none when nothing was live before).
    pub restored: Option<ReleaseRef>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Deploy,
    Rollback,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRef {
    pub version: semver::Version,
    pub digest: String,
}

impl From<&Release> for ReleaseRef {
    fn from(r: &Release) -> Self {
        Self { version: r.version.clone(), digest: r.digest.clone() }
    }
}

impl std::fmt::Display for ReleaseRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.version)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phase {
    pub name: String,
    pub detail: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub elapsed_ms: Option<u64>,
    pub ok: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// In progress, or left unfinished by a process that died.
    Running,
    Succeeded,
    /// A health gate (or an interrupt) failed it, and what was live before is live again.
    RolledBack,
    /// It failed and so did its rollback: manual action needed.
    RollbackFailed,
    /// It failed after the new version took all traffic (retiring the old one).
    Failed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::RolledBack => "rolled-back",
            Self::RollbackFailed => "rollback-failed",
            Self::Failed => "failed",
        }
    }
}

impl Deployment {
    /// The last phase started, and whether it finished.
    pub fn current_phase(&self) -> Option<&Phase> {
        self.phases.last()
    }

    /// Whether the deployment had verified that all traffic went to its release: past that
    /// point, finishing it is safer than undoing it.
    pub fn verified(&self) -> bool {
        self.phases.iter().any(|p| p.name == "verify" && p.ok == Some(true))
    }
}

/// Now, as RFC 3339 UTC with milliseconds.
pub fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// A new deployment id: the start time, the target and a random suffix.
pub fn new_id(target: &str) -> String {
    let stamp = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%S%.3fZ").to_string().replace('.', "");
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let salt = (u64::from(nanos) ^ u64::from(std::process::id()).rotate_left(17)) & 0xff_ffff;
    format!("{stamp}-{target}-{salt:06x}")
}
