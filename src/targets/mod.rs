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

#[cfg(feature = "cloud")]
pub mod appservice;
#[cfg(feature = "cloud")]
pub mod containerapps;
#[cfg(feature = "cloud")]
pub mod direct;
#[cfg(feature = "cloud")]
pub mod ecs;
#[cfg(feature = "cloud")]
pub mod kubernetes;
#[cfg(feature = "cloud")]
pub mod lambda;
pub mod local;
#[cfg(feature = "cloud")]
pub mod render;
#[cfg(feature = "cloud")]
pub mod rest;
#[cfg(feature = "cloud")]
pub mod static_site;
#[cfg(feature = "cloud")]
pub mod staticwebapp;

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

    /// The zip of artifact `name`, or an error that says how to package it.
    pub fn artifact(&self, name: &str) -> Result<&PathBuf, TargetError> {
        self.artifacts.get(name).ok_or_else(|| {
            TargetError::new(format!("release {} has no artifact `{name}`", self.label()))
                .with_hint(format!("package it with `[artifacts.{name}]` in gantry.toml"))
        })
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

/// Where a target sends progress lines while an operation runs (platform events, stopped
/// tasks, weights): the app turns each into an `Event::Progress`. Targets never print.
pub type Progress = tokio::sync::mpsc::UnboundedSender<String>;

/// What a target may need from gantry.toml besides its own table.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub environment: &'a crate::config::Name,
    pub env: &'a crate::config::Environment,
    pub config: &'a crate::config::Config,
    /// The environment's ledger records (oldest first), as read when the command started:
    /// kinds whose platform cannot carry gantry's own labels tell releases apart with it
    /// (`render`; `staticwebapp` with a deployment token). Empty for the other kinds.
    pub ledger: &'a [crate::state::record::Deployment],
    /// The release store (`.gantry/releases/` beside gantry.toml).
    pub releases_dir: &'a std::path::Path,
}

/// What a cloud target needs to know of the environment it deploys in.
#[derive(Debug, Clone, Default)]
pub struct TargetEnv {
    /// The environment's name (for messages).
    pub name: String,
    /// The project's name: published artifacts are under `PREFIX/PROJECT/VERSION/`.
    pub project: String,
    /// The region the target's platform calls go to: its own `region`, else the
    /// environment's; without either the SDK's own chain decides.
    pub region: Option<String>,
    /// The environment's region: where `gantry publish` put the release (the release
    /// bucket) and `gantry image push` its images.
    pub publish_region: Option<String>,
    /// The role to assume with GitHub's OIDC token in Actions (`role_arn`).
    pub role_arn: Option<String>,
    /// The bucket `gantry publish` put the release in.
    pub release_bucket: Option<String>,
    /// Key prefix in that bucket (`releases` by default).
    pub release_prefix: String,
}

impl TargetEnv {
    /// From the environment `name` in gantry.toml.
    pub fn new(project: &str, name: &str, env: &crate::config::Environment) -> Self {
        Self {
            name: name.to_owned(),
            project: project.to_owned(),
            region: env.region.as_ref().map(|r| r.as_str().to_owned()),
            publish_region: env.region.as_ref().map(|r| r.as_str().to_owned()),
            role_arn: env.role_arn.as_ref().map(|r| r.as_str().to_owned()),
            release_bucket: env.release_bucket.as_ref().map(|b| b.as_str().to_owned()),
            release_prefix: env.release_prefix.clone().unwrap_or_else(|| "releases".into()),
        }
    }

    /// `s3://BUCKET/PREFIX/PROJECT/VERSION/FILE`: where `gantry publish` put one artifact.
    pub fn artifact_key(&self, version: &semver::Version, file: &str) -> String {
        let version = version.to_string().replace('+', "_");
        [self.release_prefix.as_str(), self.project.as_str(), version.as_str(), file]
            .iter()
            .map(|p| p.trim_matches('/'))
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("/")
    }
}

#[cfg(feature = "cloud")]
impl TargetEnv {
    /// Where `gantry publish` put `file` of `release` (bucket, key), after checking that the
    /// object exists and holds the release's bytes (`sha256`). `needs` starts the message
    /// when the environment has no release bucket: "a lambda target deploys the zip".
    pub async fn published_artifact(
        &self,
        s3: &aws_sdk_s3::Client,
        needs: &str,
        release: &Release,
        file: &str,
        sha256: &[u8; 32],
    ) -> Result<(String, String), TargetError> {
        let Some(bucket) = self.release_bucket.clone() else {
            return Err(TargetError::new(format!(
                "environment `{}` has no `release_bucket`: {needs} `gantry publish` put there",
                self.name
            ))
            .with_hint(format!("set `release_bucket` under [environments.{}]", self.name)));
        };
        let key = self.artifact_key(&release.version, file);
        let store = crate::publish::s3::Bucket::new(s3.clone(), bucket.clone());
        let remote = store
            .head(&key)
            .await
            .map_err(|e| TargetError::new(format!("cannot read s3://{bucket}/{key}")).with_source(e))?;
        let Some(remote) = remote else {
            return Err(TargetError::new(format!(
                "release {} is not published: s3://{bucket}/{key} does not exist",
                release.version
            ))
            .with_hint(format!(
                "publish it first: `gantry publish --env {} --version {}`",
                self.name, release.version
            )));
        };
        let hex = crate::publish::s3::hex(sha256);
        let b64 = crate::publish::s3::b64(sha256);
        let same =
            remote.recorded_sha256.as_deref().map(|r| r == hex).or(remote.checksum_sha256.as_deref().map(|c| c == b64));
        if same == Some(false) {
            return Err(TargetError::new(format!(
                "s3://{bucket}/{key} does not hold release {}'s `{file}` (sha256 {hex})",
                release.label()
            ))
            .with_hint("the published release differs from the one packaged here: deploy the published one, or publish this one under a new version"));
        }
        Ok((bucket, key))
    }
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

    /// What `step` does on this platform, when the engine's generic words would mislead
    /// (shown by `plan` and in the phase events).
    fn step_detail(&self, _step: &crate::rollout::Step) -> Option<String> {
        None
    }

    /// Where the new version answers alone now, given the preview `start_new` returned:
    /// bakes watch it. The preview itself, unless a switch moved the new version (an App
    /// Service slot swap puts it on production and the old one in the slot).
    fn new_version_url(&self, preview: &str) -> String {
        preview.to_owned()
    }

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

    /// Checks, before anything changes, that `release` can be deployed here (its artifact
    /// is there, published where the platform reads it, ...). Kinds with nothing to check
    /// pass.
    async fn preflight(&mut self, release: &Release) -> Result<(), TargetError> {
        let _ = release;
        Ok(())
    }

    /// Platform alarms that fail a deployment while they fire (CloudWatch alarms in state
    /// `ALARM`): each one's name and reason. The engine asks during every health gate and
    /// bake. Kinds without alarms have none.
    async fn alarms(&self) -> Result<Vec<String>, TargetError> {
        Ok(Vec::new())
    }
}

/// Every target kind gantry can deploy, dispatched by one `match`.
pub enum AnyTarget {
    Local(local::LocalTarget),
    #[cfg(feature = "cloud")]
    Ecs(ecs::EcsTarget),
    #[cfg(feature = "cloud")]
    Lambda(lambda::LambdaTarget),
    #[cfg(feature = "cloud")]
    Static(static_site::StaticTarget),
    #[cfg(feature = "cloud")]
    Kubernetes(kubernetes::KubernetesTarget),
    #[cfg(feature = "cloud")]
    Render(Box<render::RenderTarget>),
    #[cfg(feature = "cloud")]
    AppService(appservice::AppServiceTarget),
    #[cfg(feature = "cloud")]
    ContainerApps(containerapps::ContainerAppsTarget),
    #[cfg(feature = "cloud")]
    StaticWebApp(staticwebapp::StaticWebAppTarget),
    #[cfg(feature = "cloud")]
    StaticWebAppToken(staticwebapp::token::TokenSite),
}

/// `each!(target, t => t.method())`: the same call on whichever kind `target` holds. The
/// one place the kinds are listed for dispatch (cloud kinds only with the `cloud` feature).
macro_rules! each {
    ($target:expr, $t:ident => $body:expr) => {
        match $target {
            AnyTarget::Local($t) => $body,
            #[cfg(feature = "cloud")]
            AnyTarget::Ecs($t) => $body,
            #[cfg(feature = "cloud")]
            AnyTarget::Lambda($t) => $body,
            #[cfg(feature = "cloud")]
            AnyTarget::Static($t) => $body,
            #[cfg(feature = "cloud")]
            AnyTarget::Render($t) => $body,
            #[cfg(feature = "cloud")]
            AnyTarget::Kubernetes($t) => $body,
            #[cfg(feature = "cloud")]
            AnyTarget::AppService($t) => $body,
            #[cfg(feature = "cloud")]
            AnyTarget::ContainerApps($t) => $body,
            #[cfg(feature = "cloud")]
            AnyTarget::StaticWebApp($t) => $body,
            #[cfg(feature = "cloud")]
            AnyTarget::StaticWebAppToken($t) => $body,
        }
    };
}

/// Builds the target `name` from its settings; `state_dir` is where a kind that keeps
/// local state (the `local` kind) keeps it, `ctx` the environment it deploys in.
pub fn build(
    name: &str,
    cfg: &crate::config::Target,
    state_dir: PathBuf,
    ctx: Context<'_>,
) -> Result<AnyTarget, TargetError> {
    use crate::config::TargetKind;
    let missing = || TargetError::new(format!("target `{name}` has no [{}] settings", cfg.kind.key()));
    // Where a cloud target's platform calls go: its own `region`, else the environment's.
    #[cfg(feature = "cloud")]
    let env = {
        let mut env = TargetEnv::new(ctx.config.project.name.as_str(), ctx.environment.as_str(), ctx.env);
        if let Some(own) = &cfg.region {
            env.region = Some(own.as_str().to_owned());
        }
        env
    };
    match cfg.kind {
        TargetKind::Local => {
            let local = cfg.local.as_ref().ok_or_else(missing)?;
            Ok(AnyTarget::Local(local::LocalTarget::new(name, local, state_dir)?))
        }
        #[cfg(feature = "cloud")]
        TargetKind::Ecs => {
            let e = cfg.ecs.as_ref().ok_or_else(missing)?;
            let repository = ctx
                .config
                .images
                .get(&e.image)
                .map(|i| i.repository.clone())
                .ok_or_else(|| TargetError::new(format!("target `{name}`: unknown image `{}`", e.image)))?;
            let settings = ecs::Settings {
                environment: ctx.environment.to_string(),
                region: env.region.clone(),
                registry_region: env.publish_region.clone(),
                role_arn: ctx.env.role_arn.as_ref().map(|r| r.as_str().to_owned()),
                registry: ctx.env.registry.clone().filter(|r| !r.trim().is_empty()),
                repository,
                strategy: cfg.strategy.clone(),
            };
            Ok(AnyTarget::Ecs(ecs::EcsTarget::new(e, settings)))
        }
        #[cfg(feature = "cloud")]
        TargetKind::Lambda => {
            let settings = cfg
                .lambda
                .as_ref()
                .ok_or_else(|| TargetError::new(format!("target `{name}` has no [lambda] settings")))?;
            let image_repository = match &settings.image {
                Some(image) => Some((
                    ctx.config
                        .images
                        .get(image)
                        .map(|i| i.repository.clone())
                        .ok_or_else(|| TargetError::new(format!("target `{name}`: unknown image `{image}`")))?,
                    ctx.env.registry.clone().filter(|r| !r.trim().is_empty()),
                )),
                None => None,
            };
            Ok(AnyTarget::Lambda(lambda::LambdaTarget::new(name, settings, env, image_repository)))
        }
        #[cfg(feature = "cloud")]
        TargetKind::Static => {
            let settings = cfg
                .static_site
                .as_ref()
                .ok_or_else(|| TargetError::new(format!("target `{name}` has no [static] settings")))?;
            let blue_green = cfg.strategy.kind == crate::config::StrategyKind::BlueGreen;
            Ok(AnyTarget::Static(static_site::StaticTarget::new(name, settings, blue_green, env)))
        }
        #[cfg(feature = "cloud")]
        TargetKind::Kubernetes => {
            let k = cfg.kubernetes.as_ref().ok_or_else(missing)?;
            let repository = ctx
                .config
                .images
                .get(&k.image)
                .map(|i| i.repository.clone())
                .ok_or_else(|| TargetError::new(format!("target `{name}`: unknown image `{}`", k.image)))?;
            let settings = kubernetes::Settings {
                environment: ctx.environment.to_string(),
                region: ctx.env.region.as_ref().map(ToString::to_string),
                role_arn: ctx.env.role_arn.as_ref().map(|r| r.as_str().to_owned()),
                registry: ctx.env.registry.clone().filter(|r| !r.trim().is_empty()),
                repository,
                strategy: cfg.strategy.clone(),
            };
            Ok(AnyTarget::Kubernetes(kubernetes::KubernetesTarget::new(k, settings)))
        }
        #[cfg(feature = "cloud")]
        TargetKind::Render => {
            let settings = cfg.render.as_ref().ok_or_else(missing)?;
            let image_repository = match &settings.image {
                Some(image) => Some(
                    ctx.config
                        .images
                        .get(image)
                        .map(|i| i.repository.clone())
                        .ok_or_else(|| TargetError::new(format!("target `{name}`: unknown image `{image}`")))?,
                ),
                None => None,
            };
            Ok(AnyTarget::Render(Box::new(render::RenderTarget::new(
                name,
                settings,
                image_repository,
                ctx.ledger,
                ctx.releases_dir.to_path_buf(),
            ))))
        }
        #[cfg(feature = "cloud")]
        TargetKind::Appservice => {
            let settings = cfg.appservice.as_ref().ok_or_else(missing)?;
            Ok(AnyTarget::AppService(appservice::AppServiceTarget::new(name, settings, ctx.releases_dir)))
        }
        #[cfg(feature = "cloud")]
        TargetKind::Containerapps => {
            let settings = cfg.containerapps.as_ref().ok_or_else(missing)?;
            let registry =
                settings.registry.clone().or_else(|| ctx.env.registry.clone()).filter(|r| !r.trim().is_empty());
            let image = match (ctx.config.images.get(&settings.image), registry) {
                (None, _) => Err(format!("unknown image `{}`", settings.image)),
                (Some(_), None) => Err("no registry to pull the image from".to_owned()),
                (Some(i), Some(r)) => Ok(format!("{}/{}", r.trim_end_matches('/'), i.repository)),
            };
            Ok(AnyTarget::ContainerApps(containerapps::ContainerAppsTarget::new(name, settings, image)))
        }
        #[cfg(feature = "cloud")]
        TargetKind::Staticwebapp => {
            let settings = cfg.staticwebapp.as_ref().ok_or_else(missing)?;
            if settings.token_env.is_some() {
                let store = ctx.releases_dir.to_path_buf();
                return Ok(AnyTarget::StaticWebAppToken(staticwebapp::token::TokenSite::new(
                    name, settings, ctx.ledger, store,
                )));
            }
            Ok(AnyTarget::StaticWebApp(staticwebapp::StaticWebAppTarget::new(name, settings, env)))
        }
        #[cfg(not(feature = "cloud"))]
        other => {
            let _ = ctx;
            Err(TargetError::new(format!(
                "target `{name}`: this build of gantry deploys `local` targets only, not `{}`",
                other.key()
            ))
            .with_hint(
                "it was built without the `cloud` feature: build gantry with its default features (`cargo build`)",
            ))
        }
    }
}

impl AnyTarget {
    /// Sends the target's progress lines to `progress` (kinds that have none ignore it).
    pub fn set_progress(&mut self, progress: Progress) {
        #[cfg(feature = "cloud")]
        match self {
            Self::Ecs(t) => t.set_progress(progress),
            Self::Kubernetes(t) => t.set_progress(progress),
            Self::Render(t) => t.set_progress(progress),
            Self::AppService(t) => t.set_progress(progress),
            Self::ContainerApps(t) => t.set_progress(progress),
            Self::StaticWebApp(t) => t.set_progress(progress),
            Self::StaticWebAppToken(t) => t.set_progress(progress),
            _ => {}
        }
        #[cfg(not(feature = "cloud"))]
        let _ = progress;
    }

    /// Lines for `gantry plan` beyond the steps: how they map onto the platform and what a
    /// deploy of `release` would change there. Reads only.
    pub async fn plan_notes(&mut self, release: Option<&Release>) -> Result<Vec<String>, TargetError> {
        #[cfg(feature = "cloud")]
        match self {
            Self::Ecs(t) => return t.plan_notes(release).await,
            Self::Render(t) => return t.plan_notes(release).await,
            Self::Kubernetes(t) => return t.plan_notes(release).await,
            Self::AppService(t) => return t.plan_notes(release).await,
            Self::ContainerApps(t) => return t.plan_notes(release).await,
            Self::StaticWebApp(t) => return t.plan_notes(release).await,
            Self::StaticWebAppToken(t) => return t.plan_notes(release).await,
            _ => {}
        }
        let _ = release;
        Ok(Vec::new())
    }
}

impl Target for AnyTarget {
    fn replicas(&self) -> u32 {
        each!(self, t => t.replicas())
    }

    fn public_url(&self) -> String {
        each!(self, t => t.public_url())
    }

    fn step_detail(&self, step: &crate::rollout::Step) -> Option<String> {
        each!(self, t => t.step_detail(step))
    }

    fn new_version_url(&self, preview: &str) -> String {
        each!(self, t => t.new_version_url(preview))
    }

    async fn observe(&mut self) -> Result<Live, TargetError> {
        each!(self, t => t.observe().await)
    }

    async fn start_new(&mut self, release: &Release, replicas: u32) -> Result<String, TargetError> {
        each!(self, t => t.start_new(release, replicas).await)
    }

    async fn shift(&mut self, percent: u8) -> Result<(), TargetError> {
        each!(self, t => t.shift(percent).await)
    }

    async fn replace(&mut self, old: u32) -> Result<(), TargetError> {
        each!(self, t => t.replace(old).await)
    }

    async fn retire_old(&mut self) -> Result<(), TargetError> {
        each!(self, t => t.retire_old().await)
    }

    async fn rollback(&mut self) -> Result<(), TargetError> {
        each!(self, t => t.rollback().await)
    }

    async fn alarms(&self) -> Result<Vec<String>, TargetError> {
        each!(self, t => t.alarms().await)
    }

    async fn preflight(&mut self, release: &Release) -> Result<(), TargetError> {
        each!(self, t => t.preflight(release).await)
    }
}
