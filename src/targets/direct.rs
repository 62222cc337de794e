//! Direct deploys on Azure, recorded in the resource's own tags: how the `appservice` target
//! deploys to an app without slots and how the `staticwebapp` target deploys a site. The
//! release replaces production as it is deployed, so there is no preview; a failure is
//! undone by deploying the previous release again.
//!
//! Tags change no configuration (they restart nothing), and every later process reads them:
//! - `gantry-release`: what production runs, once a deployment finished;
//! - `gantry-deploying`: the release being deployed (set before the deploy starts);
//! - `gantry-previous`: what ran before it (`none` when nothing gantry knows of), set once
//!   per deployment, so a retried deploy never records its own release as the previous one.
//!
//! A release is named `VERSION sha256:DIGEST` (the digest of its `release.json`), here and in
//! the `containerapps` target's revisions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{LiveVersion, Release, TargetError};
use crate::azure::{Arm, AzureError};

pub const TAG_DEPLOYING: &str = "gantry-deploying";
pub const TAG_PREVIOUS: &str = "gantry-previous";
pub const TAG_RELEASE: &str = "gantry-release";
/// `gantry-previous` when nothing gantry deployed ran before.
pub const NONE: &str = "none";

/// Who is stable and who is new.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roles {
    pub stable: Option<String>,
    pub new: Option<String>,
    pub percent: u8,
}

/// Direct deploys: `gantry-deploying` set means production runs (or is getting) that
/// release, and `gantry-previous` ran before it.
pub fn direct_roles(release: Option<String>, previous: Option<String>, deploying: Option<String>) -> Roles {
    match deploying {
        Some(new) => Roles { stable: previous.filter(|p| p != NONE), new: Some(new), percent: 100 },
        None => Roles { stable: release, new: None, percent: 0 },
    }
}

/// `VERSION sha256:DIGEST`: how a release is named in settings and tags.
pub fn label(release: &Release) -> String {
    format!("{} sha256:{}", release.version, release.digest)
}

pub fn parse_label(label: &str) -> Option<(semver::Version, String)> {
    let (version, digest) = label.trim().split_once(' ')?;
    Some((version.parse().ok()?, digest.strip_prefix("sha256:")?.to_owned()))
}

pub fn live_version(label: Option<&str>) -> Option<LiveVersion> {
    parse_label(label?).map(|(version, digest)| LiveVersion { version, digest, replicas: 1 })
}

/// The zip of `artifact` of a release deployed earlier, from the release store
/// (`.gantry/releases/VERSION-DIGEST12/`), after checking that its `release.json` has `digest`.
pub fn stored_artifact(
    store: &Path,
    version: &semver::Version,
    digest: &str,
    artifact: &str,
) -> Result<PathBuf, TargetError> {
    let short = &digest[..digest.len().min(12)];
    let dir = store.join(format!("{}-{short}", version.to_string().replace('+', "_")));
    let missing = || {
        TargetError::new(format!(
            "release {version} (sha256:{short}) is not in the release store {}, so it cannot be deployed again",
            store.display()
        ))
        .with_hint(format!(
            "package it here (`git checkout v{version} && gantry package`, then `gantry deploy --version {version}`), or deploy a good release"
        ))
    };
    let bytes = std::fs::read(dir.join(crate::package::manifest::MANIFEST_FILE)).map_err(|_| missing())?;
    use sha2::Digest as _;
    let actual: String = sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    if actual != digest {
        return Err(missing());
    }
    let manifest: crate::package::manifest::Manifest = serde_json::from_slice(&bytes).map_err(|_| missing())?;
    let file = manifest
        .artifacts
        .iter()
        .find(|a| a.name == artifact)
        .ok_or_else(|| TargetError::new(format!("release {version} has no artifact `{artifact}`")))?;
    Ok(dir.join(&file.file))
}

/// A resource's `tags`.
pub fn tags_of(resource: &Value) -> BTreeMap<String, String> {
    resource["tags"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
        .unwrap_or_default()
}

/// One ARM resource whose tags record where its deployments stand.
#[derive(Debug, Clone)]
pub struct Tagged {
    pub arm: Arm,
    /// `/subscriptions/.../providers/Microsoft.Web/sites/NAME`.
    pub path: String,
    /// The resource's own api-version (for reading it).
    pub api_version: &'static str,
    /// The resource, for messages.
    pub what: String,
}

impl Tagged {
    pub async fn tags(&self) -> Result<BTreeMap<String, String>, AzureError> {
        Ok(tags_of(&self.arm.get(&self.path, self.api_version, &self.what).await?))
    }

    /// Adds or replaces tags.
    pub async fn merge(&self, tags: &[(&str, &str)]) -> Result<(), AzureError> {
        self.arm.update_tags(&self.path, "Merge", tags, &self.what).await
    }

    /// Removes the tags named, whatever their values.
    pub async fn delete(&self, names: &[&str]) -> Result<(), AzureError> {
        let current = self.tags().await?;
        let present: Vec<(&str, &str)> =
            names.iter().filter_map(|n| current.get(*n).map(|v| (*n, v.as_str()))).collect();
        if present.is_empty() {
            return Ok(());
        }
        self.arm.update_tags(&self.path, "Delete", &present, &self.what).await
    }

    /// Who is stable and who is new, by the tags of a direct deploy.
    pub async fn roles(&self) -> Result<Roles, AzureError> {
        let tags = self.tags().await?;
        let tag = |name: &str| tags.get(name).filter(|v| !v.is_empty()).cloned();
        Ok(direct_roles(tag(TAG_RELEASE), tag(TAG_PREVIOUS), tag(TAG_DEPLOYING)))
    }

    /// Before deploying `label`: records what production ran before this deployment (only
    /// when none is under way) and what is being deployed.
    pub async fn begin(&self, label: &str) -> Result<(), AzureError> {
        let tags = self.tags().await?;
        if tags.get(TAG_DEPLOYING).is_none_or(String::is_empty) {
            let previous = tags.get(TAG_RELEASE).filter(|v| !v.is_empty()).cloned().unwrap_or_else(|| NONE.into());
            self.merge(&[(TAG_PREVIOUS, &previous), (TAG_DEPLOYING, label)]).await
        } else {
            self.merge(&[(TAG_DEPLOYING, label)]).await
        }
    }

    /// After a deployment succeeded: the release deployed is production's.
    pub async fn finish(&self) -> Result<(), AzureError> {
        let tags = self.tags().await?;
        if let Some(deploying) = tags.get(TAG_DEPLOYING).filter(|v| !v.is_empty()) {
            self.merge(&[(TAG_RELEASE, deploying)]).await?;
        }
        self.delete(&[TAG_DEPLOYING, TAG_PREVIOUS]).await
    }

    /// What a rollback must deploy again: `None` when no deployment is under way (there is
    /// nothing to undo), the previous release's label otherwise; an error when no release
    /// gantry deployed ran before the one under way.
    pub async fn to_restore(&self) -> Result<Option<String>, TargetError> {
        let tags = self.tags().await.map_err(AzureError::into_target)?;
        let tag = |name: &str| tags.get(name).filter(|v| !v.is_empty()).cloned();
        let (Some(deploying), previous) = (tag(TAG_DEPLOYING), tag(TAG_PREVIOUS)) else {
            self.delete(&[TAG_PREVIOUS]).await.map_err(AzureError::into_target)?;
            return Ok(None);
        };
        match previous.filter(|p| p != NONE) {
            Some(previous) => Ok(Some(previous)),
            None => Err(TargetError::new(format!(
                "{} runs {deploying} now, and no release gantry deployed ran before it to go back to",
                self.what
            ))
            .with_hint("deploy a good release")),
        }
    }

    /// After `previous` was deployed again: it is production's, and nothing is under way.
    pub async fn restored(&self, previous: &str) -> Result<(), AzureError> {
        self.merge(&[(TAG_RELEASE, previous)]).await?;
        self.delete(&[TAG_DEPLOYING, TAG_PREVIOUS]).await
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn s(v: &str) -> Option<String> {
        Some(v.to_owned())
    }

    pub(crate) fn roles(stable: Option<&str>, new: Option<&str>, percent: u8) -> Roles {
        Roles { stable: stable.map(Into::into), new: new.map(Into::into), percent }
    }

    #[test]
    fn direct_tags_say_who_is_stable_and_who_is_new() {
        assert_eq!(direct_roles(s("1"), None, None), roles(Some("1"), None, 0));
        assert_eq!(direct_roles(s("1"), s("1"), s("2")), roles(Some("1"), Some("2"), 100));
        assert_eq!(direct_roles(None, s("none"), s("1")), roles(None, Some("1"), 100));
    }

    #[test]
    fn labels_name_releases() {
        let (v, d) = parse_label("1.2.3-rc.1 sha256:abc").unwrap();
        assert_eq!((v.to_string(), d.as_str()), ("1.2.3-rc.1".into(), "abc"));
        assert_eq!(parse_label("none"), None);
    }
}
