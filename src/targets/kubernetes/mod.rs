//! The `kubernetes` target: a Deployment in any cluster (AKS, EKS, kind, ...), driven through
//! the Kubernetes API with kube-rs. The cluster, credentials and context come from the
//! kubeconfig `kubectl` uses (`KUBECONFIG`, else `~/.kube/config`; `context` picks one).
//!
//! Which release a pod template runs is written on it: the template's annotations
//! `gantry.dev/version` and `gantry.dev/release` (the release digest). Changing them with
//! the image is a template change, so every release gets its own ReplicaSet, and the
//! ReplicaSets' templates say which release each one ran.
//!
//! Two ways to cut over, chosen by the strategy (`rolling.rs`, `bluegreen.rs`):
//!
//! - **rolling** (and all-at-once): the Deployment controller does the batches.
//!   `start-new` notes the live ReplicaSet's `pod-template-hash` on the Deployment
//!   (`gantry.dev/previous-template-hash`, with `gantry.dev/deploying`), patches the
//!   container's image and the annotations (strategic merge, as `kubectl set image` does),
//!   with `maxSurge` = the batch and `maxUnavailable` 0, and follows the rollout through the
//!   Deployment's status the way `kubectl rollout status` does: observedGeneration,
//!   updated/available replicas, and the `Progressing` condition (`ProgressDeadlineExceeded`
//!   fails at once). `rollback` puts the previous ReplicaSet's template back, as
//!   `kubectl rollout undo` does, and follows that rollout.
//! - **blue-green**: the Service's selector carries `gantry.dev/colour`. The release runs in
//!   `DEPLOYMENT-<other colour>` (created from the live Deployment, annotated
//!   `gantry.dev/role=new` and `gantry.dev/previous=<live Deployment>`), gated on
//!   `preview_url`, then `shift` switches the selector; `rollback` switches it back and
//!   deletes the new Deployment; `retire-old` deletes the old colour Deployment (the
//!   configured `deployment` itself is scaled to 0 instead, never deleted).
//!
//! Like the other cloud kinds, it keeps nothing on this machine: every call reads the
//! cluster, so a later process finishes or undoes what an earlier one started.

mod api;
mod bluegreen;
mod plan;
mod rolling;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::PodTemplateSpec;

use self::api::Cluster;
use crate::config::{self, StrategyKind};
use crate::rollout::Step;
use crate::targets::{Live, LiveVersion, Progress, Release, Target, TargetError};

/// Template annotation: the release version a pod template runs.
const VERSION_ANNOTATION: &str = "gantry.dev/version";
/// Template annotation: the release's digest.
const RELEASE_ANNOTATION: &str = "gantry.dev/release";
/// Deployment annotation (rolling): the release being rolled out, until retired or undone.
const DEPLOYING_ANNOTATION: &str = "gantry.dev/deploying";
/// Deployment annotation (rolling): `pod-template-hash` of the ReplicaSet live before.
const PREVIOUS_HASH_ANNOTATION: &str = "gantry.dev/previous-template-hash";
/// Deployment annotation (blue-green): `new` on the Deployment being brought up.
const ROLE_ANNOTATION: &str = "gantry.dev/role";
/// Deployment annotation (blue-green): the Deployment that was live before the new one.
const PREVIOUS_ANNOTATION: &str = "gantry.dev/previous";
/// Label in the Service's selector and the colour Deployments' pods (blue-green).
const COLOUR_LABEL: &str = "gantry.dev/colour";
/// The label the Deployment controller puts on each ReplicaSet and its pods.
const HASH_LABEL: &str = "pod-template-hash";
/// The Deployment controller's revision annotation on Deployments and ReplicaSets.
const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
const DEFAULT_POLL: Duration = Duration::from_secs(2);

/// What the rest of gantry.toml tells the target.
pub struct Settings {
    pub environment: String,
    pub region: Option<String>,
    pub role_arn: Option<String>,
    pub registry: Option<String>,
    /// ECR repository of the target's image (used when `image_ref` is not set).
    pub repository: String,
    pub strategy: config::StrategyConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Rolling,
    BlueGreen,
}

pub struct KubernetesTarget {
    cfg: config::KubernetesTarget,
    settings: Settings,
    mode: Mode,
    cluster: Option<Cluster>,
    progress: Option<Progress>,
}

impl KubernetesTarget {
    pub fn new(cfg: &config::KubernetesTarget, settings: Settings) -> Self {
        let mode = if settings.strategy.kind == StrategyKind::BlueGreen { Mode::BlueGreen } else { Mode::Rolling };
        Self { cfg: cfg.clone(), settings, mode, cluster: None, progress: None }
    }

    /// Sends progress lines (rollout status, selector switches) to `progress`.
    pub fn set_progress(&mut self, progress: Progress) {
        self.progress = Some(progress);
    }

    fn note(&self, line: String) {
        if let Some(tx) = &self.progress {
            let _ = tx.send(line);
        }
    }

    /// Builds the cluster's client on first use, from the kubeconfig.
    async fn connect(&mut self) -> Result<(), TargetError> {
        if self.cluster.is_none() {
            let poll = self.cfg.poll_interval.map_or(DEFAULT_POLL, |d| d.get());
            self.cluster = Some(Cluster::connect(self.cfg.context.as_deref(), &self.cfg.namespace, poll).await?);
        }
        Ok(())
    }

    fn k8s(&self) -> &Cluster {
        self.cluster.as_ref().expect("connected")
    }

    /// Fails unless the template has the configured container.
    fn check_container(&self, d: &Deployment) -> Result<(), TargetError> {
        let name = d.metadata.name.as_deref().unwrap_or_default();
        let containers: Vec<&str> = d
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .map(|p| p.containers.iter().map(|c| c.name.as_str()).collect())
            .unwrap_or_default();
        if containers.contains(&self.cfg.container.as_str()) {
            return Ok(());
        }
        Err(TargetError::new(format!(
            "Deployment `{name}` in namespace `{}` has no container `{}`",
            self.cfg.namespace, self.cfg.container
        ))
        .with_hint(format!(
            "set `container` to one of its containers: {}",
            containers.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
        )))
    }

    /// The image reference for `release`: `image_ref` with `{version}` filled in, or the
    /// version tag's digest in ECR.
    async fn image(&self, release: &Release) -> Result<String, TargetError> {
        let tag = crate::publish::image::tags::version_tag(&release.version);
        if let Some(reference) = &self.cfg.image_ref {
            return Ok(reference.replace("{version}", &tag));
        }
        let sdk = crate::aws::load_for(self.settings.region.as_deref(), self.settings.role_arn.as_deref()).await;
        let pinned = crate::targets::ecs::image::resolve(
            &crate::aws::ecr(&sdk),
            self.cfg.image.as_str(),
            &self.settings.repository,
            self.settings.registry.as_deref(),
            &release.version,
            &self.settings.environment,
        )
        .await?;
        Ok(pinned.reference())
    }

    /// The configured Deployment's template with `release` and `image` in it.
    fn release_template(&self, base: &PodTemplateSpec, release: &Release, image: &str) -> PodTemplateSpec {
        let mut template = base.clone();
        let meta = template.metadata.get_or_insert_with(Default::default);
        let annotations = meta.annotations.get_or_insert_with(BTreeMap::new);
        annotations.insert(VERSION_ANNOTATION.into(), release.version.to_string());
        annotations.insert(RELEASE_ANNOTATION.into(), release.digest.clone());
        if let Some(labels) = meta.labels.as_mut() {
            labels.remove(HASH_LABEL);
        }
        if let Some(spec) = template.spec.as_mut() {
            for c in spec.containers.iter_mut().filter(|c| c.name == self.cfg.container) {
                c.image = Some(image.to_owned());
            }
        }
        template
    }
}

/// The release a pod template runs, from its annotations.
fn release_of(template: Option<&PodTemplateSpec>) -> Option<(semver::Version, String)> {
    let annotations = template?.metadata.as_ref()?.annotations.as_ref()?;
    let version = annotations.get(VERSION_ANNOTATION)?.parse().ok()?;
    Some((version, annotations.get(RELEASE_ANNOTATION)?.clone()))
}

fn live_version(template: Option<&PodTemplateSpec>, replicas: i32) -> Option<LiveVersion> {
    release_of(template).map(|(version, digest)| LiveVersion { version, digest, replicas: replicas.max(0) as u32 })
}

fn annotation<'d>(d: &'d Deployment, key: &str) -> Option<&'d str> {
    d.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

/// The image the named container of a template runs.
fn container_image<'t>(template: &'t PodTemplateSpec, container: &str) -> Option<&'t str> {
    template.spec.as_ref()?.containers.iter().find(|c| c.name == container)?.image.as_deref()
}

/// The rollout of a Deployment as `kubectl rollout status` judges it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rollout {
    /// Every replica runs the current template and is available.
    Done,
    /// Still going: why, in `kubectl rollout status`'s words.
    Waiting(String),
    /// The controller gave up: the `Progressing` condition's reason is
    /// `ProgressDeadlineExceeded`; its message.
    Failed(String),
}

fn rollout(d: &Deployment) -> Rollout {
    let generation = d.metadata.generation.unwrap_or(0);
    let Some(status) = d.status.as_ref() else {
        return Rollout::Waiting("waiting for the Deployment controller to report status".into());
    };
    if status.observed_generation.unwrap_or(0) < generation {
        return Rollout::Waiting("waiting for the Deployment spec update to be observed".into());
    }
    let progressing = status.conditions.iter().flatten().find(|c| c.type_ == "Progressing");
    if let Some(c) = progressing.filter(|c| c.reason.as_deref() == Some("ProgressDeadlineExceeded")) {
        return Rollout::Failed(c.message.clone().unwrap_or_else(|| "progress deadline exceeded".into()));
    }
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if updated < desired {
        Rollout::Waiting(format!("{updated} out of {desired} new replicas have been updated"))
    } else if total > updated {
        Rollout::Waiting(format!("{} old replicas are pending termination", total - updated))
    } else if available < updated {
        Rollout::Waiting(format!("{available} of {updated} updated replicas are available"))
    } else {
        Rollout::Done
    }
}

impl Target for KubernetesTarget {
    fn replicas(&self) -> u32 {
        // Rolling is one controller-driven rollout (the batch is its maxSurge); blue-green
        // starts the whole Deployment at once.
        1
    }

    fn public_url(&self) -> String {
        self.cfg.url.clone()
    }

    fn step_detail(&self, step: &Step) -> Option<String> {
        let d = &self.cfg.deployment;
        Some(match (self.mode, step) {
            (Mode::Rolling, Step::StartNew { .. }) => format!(
                "set container `{}` of Deployment `{d}` to the release's image and follow the rollout \
                 (the controller replaces pods {}; readiness probes gate them; ProgressDeadlineExceeded fails it)",
                self.cfg.container,
                self.surge_words()
            ),
            (Mode::Rolling, Step::GateNew) => "health-gate the service (the Service already sends users to ready new pods)".into(),
            (Mode::Rolling, Step::Replace { .. }) => "nothing left to do: the Deployment controller replaced every pod".into(),
            (Mode::Rolling, Step::Shift { .. }) => "nothing left to do: the Service followed the pods".into(),
            (Mode::Rolling, Step::Verify) => format!(
                "verify that Deployment `{d}` runs the release's template on every replica, all available"
            ),
            (Mode::Rolling, Step::RetireOld) => "forget the previous ReplicaSet (the controller scaled it to 0)".into(),
            (Mode::BlueGreen, Step::StartNew { .. }) => {
                "create or update the idle colour's Deployment from the live one with the release, wait until available; no user traffic".into()
            }
            (Mode::BlueGreen, Step::GateNew) => "health-gate the new colour on preview_url".into(),
            (Mode::BlueGreen, Step::Shift { .. }) => format!(
                "switch Service `{}`'s selector ({COLOUR_LABEL}) to the new colour",
                self.cfg.service.as_deref().unwrap_or_default()
            ),
            (Mode::BlueGreen, Step::Verify) => "verify that the Service selects the new colour's Deployment".into(),
            (Mode::BlueGreen, Step::RetireOld) => "delete the old colour's Deployment".into(),
            _ => return None,
        })
    }

    async fn observe(&mut self) -> Result<Live, TargetError> {
        self.connect().await?;
        match self.mode {
            Mode::Rolling => self.observe_rolling().await,
            Mode::BlueGreen => self.observe_blue_green().await,
        }
    }

    async fn preflight(&mut self, release: &Release) -> Result<(), TargetError> {
        self.image(release).await.map(drop)
    }

    async fn start_new(&mut self, release: &Release, _replicas: u32) -> Result<String, TargetError> {
        self.connect().await?;
        match self.mode {
            Mode::Rolling => self.start_rolling(release).await,
            Mode::BlueGreen => self.start_blue_green(release).await,
        }
    }

    async fn shift(&mut self, percent: u8) -> Result<(), TargetError> {
        self.connect().await?;
        match self.mode {
            Mode::Rolling => Ok(()),
            Mode::BlueGreen if percent == 0 => Ok(()),
            Mode::BlueGreen => self.switch_to_new().await,
        }
    }

    async fn replace(&mut self, _old: u32) -> Result<(), TargetError> {
        // Only rolling plans replace, and the Deployment controller did it in start-new.
        Ok(())
    }

    async fn retire_old(&mut self) -> Result<(), TargetError> {
        self.connect().await?;
        match self.mode {
            Mode::Rolling => self.retire_rolling().await,
            Mode::BlueGreen => self.retire_blue_green().await,
        }
    }

    async fn rollback(&mut self) -> Result<(), TargetError> {
        self.connect().await?;
        match self.mode {
            Mode::Rolling => self.rollback_rolling().await,
            Mode::BlueGreen => self.rollback_blue_green().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(status: serde_json::Value, generation: i64) -> Deployment {
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": "api", "generation": generation },
            "spec": { "replicas": 3, "selector": {}, "template": {} },
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn rollouts_are_judged_as_kubectl_rollout_status_does() {
        let d = |s| deployment(s, 2);
        assert_eq!(
            rollout(&d(serde_json::json!({ "observedGeneration": 1 }))),
            Rollout::Waiting("waiting for the Deployment spec update to be observed".into())
        );
        assert_eq!(
            rollout(&d(serde_json::json!({ "observedGeneration": 2, "replicas": 4, "updatedReplicas": 1 }))),
            Rollout::Waiting("1 out of 3 new replicas have been updated".into())
        );
        assert_eq!(
            rollout(&d(serde_json::json!({ "observedGeneration": 2, "replicas": 4, "updatedReplicas": 3 }))),
            Rollout::Waiting("1 old replicas are pending termination".into())
        );
        assert_eq!(
            rollout(&d(serde_json::json!({
                "observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 2 }))),
            Rollout::Waiting("2 of 3 updated replicas are available".into())
        );
        assert_eq!(
            rollout(&d(serde_json::json!({
                "observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3 }))),
            Rollout::Done
        );
        let stuck = d(serde_json::json!({
            "observedGeneration": 2, "replicas": 4, "updatedReplicas": 1,
            "conditions": [{ "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                             "message": "ReplicaSet \"api-5d\" has timed out progressing." }] }));
        assert_eq!(rollout(&stuck), Rollout::Failed("ReplicaSet \"api-5d\" has timed out progressing.".into()));
    }

    #[test]
    fn templates_say_which_release_they_run() {
        let t: PodTemplateSpec = serde_json::from_value(serde_json::json!({
            "metadata": { "annotations": { VERSION_ANNOTATION: "1.2.0", RELEASE_ANNOTATION: "abc" } }
        }))
        .unwrap();
        assert_eq!(release_of(Some(&t)), Some(("1.2.0".parse().unwrap(), "abc".into())));
        assert_eq!(release_of(Some(&PodTemplateSpec::default())), None);
    }
}
