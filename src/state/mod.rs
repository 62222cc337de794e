//! The deployment ledger and the environment lock. Two backends with the same layout
//! and JSON: a folder (the default, for `local` environments) and S3 (`s3://bucket/prefix`,
//! for cloud environments):
//!
//! ```text
//! deployments/ID.json   one record per deployment of one target (see `record.rs`)
//! lock.json             the holder of the environment's lock, with its lease
//! ```
//!
//! One deployment per environment at a time: the lock is taken with an atomic create (a
//! `flock`-guarded file, or an S3 conditional write), kept alive by a heartbeat that
//! extends its lease, and taken over once the lease has run out (or, on the same machine,
//! once the holder's process is gone).

pub mod local;
pub mod record;
#[cfg(feature = "cloud")]
pub mod s3;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::exit;
use record::{Deployment, State};

/// Default lease of the environment lock; the heartbeat renews it every third of that.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// Where a ledger lives.
#[derive(Debug, Clone)]
pub enum Store {
    Folder(local::Folder),
    #[cfg(feature = "cloud")]
    S3(s3::S3Store),
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{location} is not a valid gantry ledger file: {message}")]
    Corrupt { location: String, message: String },
    #[error("the ledger at {location} cannot be used: {message}")]
    Remote { location: String, message: String },
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("the environment is locked by {0}")]
    Held(Box<Holder>),
    #[error("this deployment lost the environment lock{}", .0.as_ref().map(|h| format!(" to {h}")).unwrap_or_default())]
    Lost(Option<Box<Holder>>),
    #[error(transparent)]
    State(#[from] StateError),
}

impl LockError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Held(_) | Self::Lost(_) => exit::LOCKED,
            Self::State(_) => exit::FAILED,
        }
    }
}

/// Who holds the lock, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// Random per acquisition: renewals and releases check it.
    pub token: String,
    /// What the holder is doing: `deploy 1.2.0` or `rollback`.
    pub purpose: String,
    pub user: String,
    pub host: String,
    pub pid: u32,
    /// RFC 3339 time the lock was taken.
    pub since: String,
    /// Unix milliseconds when the lease runs out unless renewed.
    pub expires_ms: i64,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}, pid {} on {}) since {}", self.user, self.purpose, self.pid, self.host, self.since)
    }
}

impl Holder {
    pub fn new(purpose: &str, user: &str, lease: Duration) -> Self {
        let token = format!("{:016x}", rand_u64());
        Self {
            token,
            purpose: purpose.into(),
            user: user.into(),
            host: crate::rollout::engine::hostname(),
            pid: std::process::id(),
            since: record::now(),
            expires_ms: now_ms() + lease.as_millis() as i64,
        }
    }

    /// The lease ran out, or the holder's process is gone from this machine.
    pub fn is_stale(&self) -> bool {
        now_ms() > self.expires_ms || self.is_dead_here()
    }

    /// On this machine, and its process no longer exists.
    pub fn is_dead_here(&self) -> bool {
        self.host == crate::rollout::engine::hostname()
            && self.pid != std::process::id()
            && !Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

impl Store {
    pub async fn save(&self, deployment: &Deployment) -> Result<(), StateError> {
        match self {
            Self::Folder(f) => f.save(deployment),
            #[cfg(feature = "cloud")]
            Self::S3(s) => s.save(deployment).await,
        }
    }

    /// Every record, oldest first.
    pub async fn list(&self) -> Result<Vec<Deployment>, StateError> {
        match self {
            Self::Folder(f) => f.list(),
            #[cfg(feature = "cloud")]
            Self::S3(s) => s.list().await,
        }
    }

    pub async fn read_lock(&self) -> Result<Option<Holder>, StateError> {
        match self {
            Self::Folder(f) => f.read_lock(),
            #[cfg(feature = "cloud")]
            Self::S3(s) => s.read_lock().await.map(|l| l.map(|(h, _)| h)),
        }
    }

    /// Takes the lock; on success returns a stale holder that was taken over, if any.
    pub async fn acquire(&self, holder: &Holder) -> Result<Option<Holder>, LockError> {
        match self {
            Self::Folder(f) => f.acquire(holder),
            #[cfg(feature = "cloud")]
            Self::S3(s) => s.acquire(holder).await,
        }
    }

    pub async fn renew(&self, holder: &Holder) -> Result<(), LockError> {
        match self {
            Self::Folder(f) => f.renew(holder),
            #[cfg(feature = "cloud")]
            Self::S3(s) => s.renew(holder).await,
        }
    }

    pub async fn release(&self, holder: &Holder) -> Result<(), LockError> {
        match self {
            Self::Folder(f) => f.release(holder),
            #[cfg(feature = "cloud")]
            Self::S3(s) => s.release(holder).await,
        }
    }

    /// `/abs/.gantry/state/dev` or `s3://bucket/prefix`, for messages.
    pub fn location(&self) -> String {
        match self {
            Self::Folder(f) => f.root().display().to_string(),
            #[cfg(feature = "cloud")]
            Self::S3(s) => s.location(),
        }
    }

    /// Takes the lock, waiting up to `wait` for a holder to finish, and keeps it alive with
    /// a heartbeat until the returned guard is released.
    pub async fn lock(&self, purpose: &str, user: &str, lease: Duration, wait: Duration) -> Result<Lock, LockError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut pause = Duration::from_millis(200);
        loop {
            let holder = Holder::new(purpose, user, lease);
            match self.acquire(&holder).await {
                Ok(taken_over) => return Ok(Lock::start(self.clone(), holder, lease, taken_over)),
                Err(LockError::Held(current)) if tokio::time::Instant::now() + pause < deadline => {
                    tracing::debug!("waiting for the lock held by {current}");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// A held lock. Its heartbeat extends the lease every third of it; `release` ends both.
pub struct Lock {
    store: Store,
    holder: Arc<tokio::sync::Mutex<Holder>>,
    heartbeat: tokio::task::JoinHandle<()>,
    /// A holder whose lease had run out (or whose process had died) and was taken over.
    pub taken_over: Option<Holder>,
}

impl Lock {
    fn start(store: Store, holder: Holder, lease: Duration, taken_over: Option<Holder>) -> Self {
        let holder = Arc::new(tokio::sync::Mutex::new(holder));
        let heartbeat = {
            let store = store.clone();
            let holder = Arc::clone(&holder);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(lease / 3).await;
                    let mut h = holder.lock().await;
                    h.expires_ms = now_ms() + lease.as_millis() as i64;
                    if let Err(e) = store.renew(&h).await {
                        tracing::warn!("cannot renew the environment lock: {e}");
                    }
                }
            })
        };
        Self { store, holder, heartbeat, taken_over }
    }

    pub async fn release(self) -> Result<(), LockError> {
        self.heartbeat.abort();
        let holder = self.holder.lock().await.clone();
        self.store.release(&holder).await
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

/// Per target: the last succeeded deployment (what is live), and any unfinished one.
#[derive(Debug, Clone, Default)]
pub struct TargetHistory<'a> {
    pub live: Option<&'a Deployment>,
    /// The good release before `live`: what `gantry rollback` goes back to.
    pub previous_good: Option<&'a Deployment>,
    pub running: Option<&'a Deployment>,
}

/// Reads `records` (oldest first) for one target.
pub fn target_history<'a>(records: &'a [Deployment], target: &str) -> TargetHistory<'a> {
    let mine: Vec<&Deployment> = records.iter().filter(|d| d.target == target).collect();
    let mut good = mine.iter().rev().filter(|d| d.state == State::Succeeded || d.state == State::Failed);
    let live = good.next().copied();
    let previous_good = live.and_then(|l| good.find(|d| d.release.digest != l.release.digest)).copied();
    let running = mine.iter().rev().find(|d| d.state == State::Running).copied();
    TargetHistory { live, previous_good, running }
}

pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// A random number from the OS (for lock tokens, and where a `local` replica starts probing
/// for a port), without another crate.
pub(crate) fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now_ms() as u64);
    h.write_u32(std::process::id());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_heartbeat_keeps_the_lease_alive_until_release() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::Folder(local::Folder::new(dir.path().to_path_buf()));
        let lease = Duration::from_millis(300);
        let lock = store.lock("deploy 1", "t", lease, Duration::ZERO).await.unwrap();
        tokio::time::sleep(Duration::from_millis(900)).await;
        let holder = store.read_lock().await.unwrap().unwrap();
        assert!(holder.expires_ms > now_ms(), "renewed past three leases");
        let mut other = Holder::new("deploy 2", "t", lease);
        other.host = "elsewhere".into();
        assert!(matches!(store.acquire(&other).await, Err(LockError::Held(_))));
        lock.release().await.unwrap();
        assert!(store.read_lock().await.unwrap().is_none());
        // --wait-lock: a second deploy waits for the first to finish.
        let first = store.lock("deploy 1", "t", lease, Duration::ZERO).await.unwrap();
        let waiter = {
            let store = store.clone();
            tokio::spawn(async move {
                store.lock("deploy 2", "t", lease, Duration::from_secs(10)).await.map(|l| l.taken_over.clone())
            })
        };
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(!waiter.is_finished(), "it waits while the lock is held");
        first.release().await.unwrap();
        assert!(waiter.await.unwrap().unwrap().is_none(), "taken after release, not over");
    }
}
