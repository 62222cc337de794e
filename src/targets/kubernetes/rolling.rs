//! Rolling on Kubernetes: the Deployment controller does the batches. `start-new` patches
//! the container's image and the release annotations into the pod template (a strategic
//! merge patch, merged into `containers` by name as `kubectl set image` does) and follows
//! the rollout; `rollback` puts the previous ReplicaSet's template back, as
//! `kubectl rollout undo` does. The Deployment's annotations `gantry.dev/deploying` and
//! `gantry.dev/previous-template-hash` say a rollout is gantry's and where to go back to,
//! so any later process can finish or undo it.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::Patch;
use serde_json::json;

use super::{
    DEPLOYING_ANNOTATION, HASH_LABEL, KubernetesTarget, PREVIOUS_HASH_ANNOTATION, RELEASE_ANNOTATION,
    REVISION_ANNOTATION, Rollout, VERSION_ANNOTATION, annotation, container_image, live_version, release_of, rollout,
};
use crate::config::{BatchSize, StrategyKind};
use crate::targets::{Live, Release, TargetError};

/// The revision the Deployment controller gave a ReplicaSet (its annotation).
fn revision(rs: &ReplicaSet) -> i64 {
    rs.metadata.annotations.as_ref().and_then(|a| a.get(REVISION_ANNOTATION)).and_then(|r| r.parse().ok()).unwrap_or(0)
}

fn hash(rs: &ReplicaSet) -> Option<&str> {
    rs.metadata.labels.as_ref()?.get(HASH_LABEL).map(String::as_str)
}

/// The ReplicaSet running the Deployment's current template: the newest revision.
pub(super) fn current(sets: &[ReplicaSet]) -> Option<&ReplicaSet> {
    sets.iter().max_by_key(|rs| revision(rs))
}

/// The ReplicaSet to go back to: the one whose hash gantry noted, else the one before the
/// newest revision (what `kubectl rollout undo` picks).
pub(super) fn previous<'s>(sets: &'s [ReplicaSet], noted: Option<&str>) -> Option<&'s ReplicaSet> {
    if let Some(noted) = noted.filter(|n| !n.is_empty()) {
        return sets.iter().find(|rs| hash(rs) == Some(noted));
    }
    let newest = revision(current(sets)?);
    sets.iter().filter(|rs| revision(rs) < newest).max_by_key(|rs| revision(rs))
}

/// `name-hash (revision N)`, for messages.
pub(super) fn describe(rs: &ReplicaSet) -> String {
    format!("ReplicaSet `{}` (revision {})", rs.metadata.name.as_deref().unwrap_or_default(), revision(rs))
}

impl KubernetesTarget {
    /// maxSurge for the strategy: the batch (a count or a share), all of it for all-at-once.
    fn surge(&self) -> serde_json::Value {
        match (self.settings.strategy.kind, self.settings.strategy.batch) {
            (StrategyKind::Rolling, Some(BatchSize::Count(n))) => json!(n.max(1)),
            (StrategyKind::Rolling, Some(BatchSize::Percent(p))) => json!(format!("{}%", p.get())),
            (StrategyKind::Rolling, None) => json!(1),
            _ => json!("100%"),
        }
    }

    pub(super) fn surge_words(&self) -> String {
        match self.surge() {
            serde_json::Value::String(s) => format!("{s} of the replicas at a time (maxSurge {s}, maxUnavailable 0)"),
            n => format!("{n} at a time (maxSurge {n}, maxUnavailable 0)"),
        }
    }

    fn runs(&self, d: &Deployment, release: &Release, image: &str) -> bool {
        let template = d.spec.as_ref().map(|s| &s.template);
        release_of(template) == Some((release.version.clone(), release.digest.clone()))
            && template.and_then(|t| container_image(t, &self.cfg.container)) == Some(image)
    }

    pub(super) async fn observe_rolling(&self) -> Result<Live, TargetError> {
        let k8s = self.k8s();
        let d = k8s.existing(&self.cfg.deployment).await?;
        let template = d.spec.as_ref().map(|s| &s.template);
        let status = d.status.clone().unwrap_or_default();
        if annotation(&d, DEPLOYING_ANNOTATION).is_none() {
            let stable = live_version(template, status.available_replicas.unwrap_or(0));
            return Ok(Live { stable, new: None, new_weight: 0 });
        }
        let sets = k8s.replica_sets(&d).await?;
        let previous = previous(&sets, annotation(&d, PREVIOUS_HASH_ANNOTATION));
        let stable = previous.and_then(|rs| {
            live_version(
                rs.spec.as_ref().and_then(|s| s.template.as_ref()),
                rs.status.as_ref().map_or(0, |s| s.available_replicas.unwrap_or(0)),
            )
        });
        // Undone (the template is the previous one again): nothing new runs.
        let undone = previous.is_some_and(|p| current(&sets).is_some_and(|c| hash(c) == hash(p)));
        let new = if undone { None } else { live_version(template, status.updated_replicas.unwrap_or(0)) };
        let total = status.replicas.unwrap_or(0);
        let new_weight = match (&new, rollout(&d)) {
            (None, _) => 0,
            (Some(_), Rollout::Done) => 100,
            (Some(_), _) if total > 0 => (status.updated_replicas.unwrap_or(0) * 100 / total).clamp(0, 99) as u8,
            _ => 0,
        };
        Ok(Live { stable, new, new_weight })
    }

    pub(super) async fn start_rolling(&mut self, release: &Release) -> Result<String, TargetError> {
        let image = self.image(release).await?;
        let k8s = self.k8s();
        let name = &self.cfg.deployment;
        let d = k8s.existing(name).await?;
        self.check_container(&d)?;
        if !self.runs(&d, release, &image) {
            let noted = match (annotation(&d, DEPLOYING_ANNOTATION), annotation(&d, PREVIOUS_HASH_ANNOTATION)) {
                (Some(_), Some(noted)) => noted.to_owned(),
                _ => {
                    let sets = k8s.replica_sets(&d).await?;
                    current(&sets).and_then(hash).unwrap_or_default().to_owned()
                }
            };
            let recreate =
                d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.type_.as_deref()) == Some("Recreate");
            let mut spec = json!({
                "template": {
                    "metadata": { "annotations": {
                        VERSION_ANNOTATION: release.version.to_string(),
                        RELEASE_ANNOTATION: release.digest,
                    } },
                    "spec": { "containers": [{ "name": self.cfg.container, "image": image }] },
                },
            });
            if !recreate {
                spec["strategy"] = json!({ "type": "RollingUpdate", "rollingUpdate": { "maxSurge": self.surge(), "maxUnavailable": 0 } });
            }
            let patch = json!({
                "metadata": { "annotations": {
                    DEPLOYING_ANNOTATION: format!("{} {}", release.version, release.digest),
                    PREVIOUS_HASH_ANNOTATION: noted,
                } },
                "spec": spec,
            });
            k8s.patch(name, &Patch::Strategic(patch)).await?;
            self.note(format!("deployment `{name}`: container `{}` set to {image}", self.cfg.container));
        }
        self.k8s().follow(name, &|line: String| self.note(line)).await?;
        Ok(self.cfg.url.clone())
    }

    pub(super) async fn retire_rolling(&mut self) -> Result<(), TargetError> {
        let k8s = self.k8s();
        let name = &self.cfg.deployment;
        let d = k8s.existing(name).await?;
        if annotation(&d, DEPLOYING_ANNOTATION).is_none() {
            return Ok(());
        }
        k8s.follow(name, &|line: String| self.note(line)).await?;
        self.forget().await
    }

    /// Drops gantry's rollout annotations from the Deployment.
    async fn forget(&self) -> Result<(), TargetError> {
        let patch =
            json!({ "metadata": { "annotations": { DEPLOYING_ANNOTATION: null, PREVIOUS_HASH_ANNOTATION: null } } });
        self.k8s().patch(&self.cfg.deployment, &Patch::Merge(patch)).await.map(drop)
    }

    pub(super) async fn rollback_rolling(&mut self) -> Result<(), TargetError> {
        let k8s = self.k8s();
        let name = &self.cfg.deployment;
        let mut d = k8s.existing(name).await?;
        if annotation(&d, DEPLOYING_ANNOTATION).is_none() {
            return Ok(());
        }
        let noted = annotation(&d, PREVIOUS_HASH_ANNOTATION).map(str::to_owned);
        let mut sets = k8s.replica_sets(&d).await?;
        if noted.as_deref().is_some_and(|n| !n.is_empty()) || sets.len() > 1 {
            let Some(prev) = previous(&sets, noted.as_deref()).cloned() else {
                return Err(TargetError::new(format!(
                    "Deployment `{name}` has no ReplicaSet with pod-template-hash `{}` to roll back to",
                    noted.unwrap_or_default()
                ))
                .with_hint(format!(
                    "`{k} rollout history deployment/{name}` lists the revisions; `{k} rollout undo deployment/{name} \
                     --to-revision=N` puts one back, then remove the {DEPLOYING_ANNOTATION} annotation",
                    k = k8s.kubectl
                )));
            };
            // The template goes back as `kubectl rollout undo` puts it: the ReplicaSet's own,
            // without the controller's pod-template-hash label. A replace under the read
            // resourceVersion; on a 409 Conflict read again and retry.
            let mut attempts = 0;
            while current(&sets).and_then(hash) != hash(&prev) {
                let mut template = prev.spec.as_ref().and_then(|s| s.template.clone()).unwrap_or_default();
                if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
                    labels.remove(HASH_LABEL);
                }
                if let Some(spec) = d.spec.as_mut() {
                    spec.template = template;
                }
                d.status = None;
                if k8s.replace(&d).await?.is_some() {
                    self.note(format!("deployment `{name}`: template set back to {}", describe(&prev)));
                    break;
                }
                attempts += 1;
                if attempts == 5 {
                    return Err(TargetError::new(format!(
                        "Deployment `{name}` kept changing while gantry put the previous template back (409 Conflict 5 times)"
                    ))
                    .with_hint("another controller or person is editing it: stop them, then run `gantry status` to finish the rollback"));
                }
                d = k8s.existing(name).await?;
                sets = k8s.replica_sets(&d).await?;
            }
        }
        self.k8s().follow(name, &|line: String| self.note(line)).await?;
        self.forget().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(hash: &str, revision: u32) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {
                "name": format!("api-{hash}"),
                "labels": { HASH_LABEL: hash },
                "annotations": { REVISION_ANNOTATION: revision.to_string() },
            }
        }))
        .unwrap()
    }

    #[test]
    fn the_previous_replica_set_is_the_noted_one_else_the_revision_before() {
        let sets = vec![rs("a", 1), rs("c", 3), rs("b", 2)];
        assert_eq!(current(&sets).and_then(hash), Some("c"));
        assert_eq!(previous(&sets, None).and_then(hash), Some("b"));
        assert_eq!(previous(&sets, Some("a")).and_then(hash), Some("a"));
        assert_eq!(previous(&sets, Some("")).and_then(hash), Some("b"));
        assert!(previous(&sets, Some("zz")).is_none());
        assert!(previous(&sets[..1], None).is_none());
    }
}
