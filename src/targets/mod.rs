//! Deploy targets: one module per provider behind the small [`Target`] trait that the
//! rollout engine drives. Which provider a `[targets.NAME]` uses is one `match` on its
//! `kind` in [`build`]; targets never print (they return values and errors), and they
//! never decide *when* to move traffic: that is the engine's job (`crate::rollout`).
//!
//! The model every target maps onto: a **stable** version serving users, and during a
//! deployment a **new** version started beside it. The new version answers on its own
//! preview endpoint before it takes any user traffic (that is what `{url}` in a health
//! check means while the new version is gated), then takes a share of user traffic
//! (`shift`), or, for rolling, replaces the stable replicas batch by batch (`replace`).
//! `retire_old` makes the new version the stable one; `rollback` puts everything back
//! on the stable version and removes the new one, from whatever state it finds.

pub mod local;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A release as the targets see it: its identity and where its artifacts are on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub version: semver::Version,
    /// SHA-256 of the release's `release.json`: two releases with the same version but
    /// different contents never look alike.
    pub digest: String,
    /// Artifact name → its zip on disk (for the `local` target: in the release store).
    #[serde(default)]
    pub artifacts: BTreeMap<String, PathBuf>,
}

impl Release {
    /// `1.2.3 (sha256:abcd1234)`: for messages.
    pub fn label(&self) -> String {
        format!("{} (sha256:{})", self.version, &self.digest[..self.digest.len().min(12)])
    }
}

/// What a target reports as running now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Live {
    /// The version serving users, when one does.
    pub stable: Option<LiveVersion>,
    /// A new version started beside it by a deployment that has not finished.
    pub new: Option<LiveVersion>,
    /// Share of user traffic the new version takes (0 when none).
    pub new_weight: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveVersion {
    pub version: semver::Version,
    pub digest: String,
    /// Replicas running (or instances, tasks; 1 where the platform has no such notion).
    pub replicas: u32,
}

/// A failure of one target operation. `hint` says what to do by hand when it helps.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TargetError {
    pub message: String,
    pub hint: Option<String>,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl TargetError {
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), hint: None, source: None }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }
}

/// The operations the rollout engine drives. Every method is safe to call again after a
/// failure or a crash: each one converges the target to the state it names.
///
/// `async fn` in a trait: the engine is generic over `T: Target` and is never spawned onto
/// another thread, so the futures need not be `Send`.
#[allow(async_fn_in_trait)]
pub trait Target {
    /// The number of replicas the target runs (rolling batches are cut from it); 1 where
    /// the platform has no such notion.
    fn replicas(&self) -> u32;

    /// The URL users reach the target on (`{url}` in health checks once users are routed
    /// to the new version).
    fn public_url(&self) -> String;

    /// What runs now.
    async fn observe(&mut self) -> Result<Live, TargetError>;

    /// Start the release beside the stable version until `replicas` of it run, taking no
    /// user traffic, and return the URL that reaches only the new version (its preview).
    /// Called again with a larger count by rolling batches.
    async fn start_new(&mut self, release: &Release, replicas: u32) -> Result<String, TargetError>;

    /// Send `percent` (0 to 100) of user traffic to the new version, the rest to the stable.
    async fn shift(&mut self, percent: u8) -> Result<(), TargetError>;

    /// Rolling: serve users from every running new replica and `old` stable replicas, with
    /// equal shares per replica; drain and stop the stable replicas beyond `old`.
    async fn replace(&mut self, old: u32) -> Result<(), TargetError>;

    /// The new version becomes the stable one: drain and stop the old version.
    async fn retire_old(&mut self) -> Result<(), TargetError>;

    /// Put all traffic back on the stable version at its full replica count, and stop and
    /// remove the new version, from whatever state a deployment (or a crash) left.
    async fn rollback(&mut self) -> Result<(), TargetError>;
}
