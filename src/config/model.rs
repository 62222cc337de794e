//! The types of gantry.toml. Every struct denies unknown fields; values with rules
//! are newtypes (see `values.rs`) so a bad value fails where it is written.
//!
//! Shapes that would need serde's internally tagged or flattened enums are kept flat
//! (a `kind`/`type` key plus optional settings) and checked in `validate.rs`:
//! serde buffers tagged enums and loses the line and column of errors inside them.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::values::{
    AccountId, BatchSize, BucketName, Duration, Glob, Name, Percent, Region, RegionName, RelPath, RoleArn, StateUrl,
    StatusRange,
};

/// A whole gantry.toml.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The project being released.
    pub project: Project,
    /// Release artifacts, each packaged into one zip: `[artifacts.NAME]`.
    #[serde(default)]
    pub artifacts: BTreeMap<Name, Artifact>,
    /// Container images pushed to ECR: `[images.NAME]`.
    #[serde(default)]
    pub images: BTreeMap<Name, Image>,
    /// Deployment environments (dev, stg, prd, ...): `[environments.NAME]`.
    #[serde(default)]
    pub environments: BTreeMap<Name, Environment>,
    /// Deploy targets, referred to by environments: `[targets.NAME]`.
    #[serde(default)]
    pub targets: BTreeMap<Name, Target>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Project {
    /// Project name, used in artifact keys: `s3://BUCKET/PREFIX/PROJECT/VERSION/`.
    pub name: Name,
    /// Where `gantry package` writes, relative to gantry.toml. Default: `dist`.
    #[serde(default)]
    pub dist: Option<RelPath>,
    /// GitHub repository `OWNER/NAME` for `gantry release` and deployments. Default:
    /// `GITHUB_REPOSITORY`, else the `origin` remote.
    #[serde(default)]
    pub repository: Option<String>,
}

/// One release artifact: a folder packaged into a reproducible zip.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// Folder whose files go into the zip, relative to gantry.toml.
    pub root: RelPath,
    /// Files to include, as gitignore-style globs relative to `root`. Default: everything.
    #[serde(default = "default_include")]
    pub include: Vec<Glob>,
    /// Files to leave out, as gitignore-style globs relative to `root`.
    #[serde(default)]
    pub exclude: Vec<Glob>,
    /// Skip files ignored by `.gitignore` files under `root`. Default: true.
    #[serde(default = "yes")]
    pub gitignore: bool,
    /// Shell command run first, in the folder of gantry.toml, with GANTRY_VERSION,
    /// GANTRY_ARTIFACT and SOURCE_DATE_EPOCH set.
    #[serde(default)]
    pub build: Option<String>,
}

fn default_include() -> Vec<Glob> {
    vec![Glob::any()]
}

fn yes() -> bool {
    true
}

/// A container image. Exactly one source: `oci_layout`, `oci_archive`,
/// `docker_archive` (built by any tool), or `base` plus `layers` (assembled by gantry).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// ECR repository name, e.g. `acme/deployer`.
    pub repository: String,
    /// Paths whose content decides whether the image changed (globs, relative to gantry.toml).
    pub inputs: Vec<Glob>,
    /// An OCI image layout folder produced by a builder.
    #[serde(default)]
    pub oci_layout: Option<RelPath>,
    /// An OCI image layout as a tar archive.
    #[serde(default)]
    pub oci_archive: Option<RelPath>,
    /// A `docker save` tarball.
    #[serde(default)]
    pub docker_archive: Option<RelPath>,
    /// Base image to assemble on: `scratch` or a reference pinned by digest.
    #[serde(default)]
    pub base: Option<String>,
    /// File layers added on top of `base`, in order.
    #[serde(default)]
    pub layers: Vec<Layer>,
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub workdir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
}

/// Local files added to an assembled image.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    /// File or folder, relative to gantry.toml.
    pub src: RelPath,
    /// Absolute path inside the image.
    pub dest: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// AWS region, e.g. `us-east-1`.
    #[serde(default)]
    pub region: Option<Region>,
    /// AWS account id (12 digits): gantry refuses to act with credentials for another account.
    #[serde(default)]
    pub account: Option<AccountId>,
    /// S3 bucket releases are published to.
    #[serde(default)]
    pub release_bucket: Option<BucketName>,
    /// Key prefix inside the release bucket. Default: `releases`.
    #[serde(default)]
    pub release_prefix: Option<String>,
    /// CodePipeline name that deploys this environment.
    #[serde(default)]
    pub pipeline: Option<String>,
    /// Key in the release bucket that the pipeline's S3 source action watches; `gantry publish`
    /// writes it (a zip of release.json and gantry.toml) after the artifacts. Default:
    /// `PREFIX/PROJECT/pipeline-source.zip`.
    #[serde(default)]
    pub pipeline_source_key: Option<String>,
    /// Container registry host to push images to, e.g. `123456789012.dkr.ecr.us-east-1.amazonaws.com`.
    /// Default: the registry ECR names for the credentials' account.
    #[serde(default)]
    pub registry: Option<String>,
    /// How long `gantry pipeline watch` follows an execution before giving up (the pipeline
    /// goes on), e.g. `2h`; `--timeout` overrides it. Default: 1h.
    #[serde(default)]
    pub pipeline_timeout: Option<Duration>,
    /// `required`: never deployed without a pipeline approval for the release.
    #[serde(default)]
    pub approval: Approval,
    /// IAM role gantry assumes for this environment in GitHub Actions, with the workflow's
    /// OIDC token (`AssumeRoleWithWebIdentity`, refreshed before it expires); elsewhere the
    /// standard AWS credential chain applies.
    #[serde(default)]
    pub role_arn: Option<RoleArn>,
    /// Targets deployed in this environment, in order.
    #[serde(default)]
    pub targets: Vec<Name>,
    /// Multi-region: the targets grouped into waves, deployed one wave after another, e.g.
    /// `[["api-use1"], ["api-usw2", "web-usw2"]]`. Inside a wave targets go in this order; when
    /// a later wave fails, every finished wave is rolled back. Default: one wave per region,
    /// in the order the regions first appear in `targets` (a target's `region`, else this
    /// environment's), so an environment in one region is one wave, as before.
    #[serde(default)]
    pub waves: Option<Vec<Vec<Name>>>,
    /// Multi-region: how long to keep checking the health of every finished wave's targets
    /// (their live URL, with their own checks) before the next wave starts, e.g. `10m`. A
    /// failure during it fails the deploy and rolls back the finished waves. Default: 0s.
    #[serde(default)]
    pub wave_bake: Option<Duration>,
    /// Where the deployment ledger and lock live: a folder (`.gantry/state/dev`,
    /// `file:///abs/path`) or `s3://bucket/prefix`. Default: `.gantry/state/ENV`.
    #[serde(default)]
    pub state: Option<StateUrl>,
    /// Per-target settings for this environment, merged over `[targets.NAME]`:
    /// `[environments.prd.overrides.api]` takes any key of a target.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, BTreeMap<String, serde_json::Value>>")]
    pub overrides: BTreeMap<Name, toml::Table>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Approval {
    /// Deploy without an approval.
    #[default]
    None,
    /// A manual approval for this release is required before any deploy.
    Required,
}

/// Something gantry deploys to. `kind` says which provider; the provider's settings
/// live in the table of the same name (`ecs = { cluster = "...", service = "..." }`).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub kind: TargetKind,
    /// The region this target runs in, when it is not the environment's `region`: AWS kinds
    /// call the platform there (the release's artifacts and images are still read where the
    /// environment publishes them). It also names the target's deploy wave (see `waves`).
    #[serde(default)]
    pub region: Option<RegionName>,
    /// How the cutover happens. Default: all-at-once.
    #[serde(default)]
    pub strategy: StrategyConfig,
    /// HTTP checks that gate every phase of the cutover.
    #[serde(default)]
    pub health: Vec<HealthCheck>,
    #[serde(default)]
    pub local: Option<LocalTarget>,
    #[serde(default)]
    pub ecs: Option<EcsTarget>,
    #[serde(default)]
    pub lambda: Option<LambdaTarget>,
    #[serde(default, rename = "static")]
    pub static_site: Option<StaticTarget>,
    #[serde(default)]
    pub appservice: Option<AppServiceTarget>,
    #[serde(default)]
    pub staticwebapp: Option<StaticWebAppTarget>,
    #[serde(default)]
    pub containerapps: Option<ContainerAppsTarget>,
    #[serde(default)]
    pub render: Option<RenderTarget>,
    #[serde(default)]
    pub kubernetes: Option<KubernetesTarget>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    /// Replica processes on this machine behind nginx (dev deploys and the demo).
    Local,
    /// An ECS service (Fargate or EC2), optionally behind an ALB.
    Ecs,
    /// A Lambda function alias, e.g. behind API Gateway.
    Lambda,
    /// A static site in S3 behind CloudFront.
    Static,
    /// Azure App Service.
    Appservice,
    /// Azure Static Web Apps.
    Staticwebapp,
    /// Azure Container Apps.
    Containerapps,
    /// A Render service.
    Render,
    /// A Kubernetes Deployment (AKS or any cluster).
    Kubernetes,
}

impl TargetKind {
    /// The key of this kind's settings table inside `[targets.NAME]`.
    pub fn key(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Ecs => "ecs",
            Self::Lambda => "lambda",
            Self::Static => "static",
            Self::Appservice => "appservice",
            Self::Staticwebapp => "staticwebapp",
            Self::Containerapps => "containerapps",
            Self::Render => "render",
            Self::Kubernetes => "kubernetes",
        }
    }
}

/// `strategy = { type = "canary", steps = [10, 50, 100], bake = "5m" }`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StrategyConfig {
    #[serde(default, rename = "type")]
    pub kind: StrategyKind,
    /// rolling: replicas per batch, a count (`2`) or a share (`"25%"`).
    #[serde(default)]
    pub batch: Option<BatchSize>,
    /// canary: traffic percentages, rising, ending at 100.
    #[serde(default)]
    pub steps: Option<Vec<Percent>>,
    /// linear: traffic added at each step, e.g. 10 for 10, 20, ... 100.
    #[serde(default)]
    pub increment: Option<Percent>,
    /// blue-green, canary, linear (and all-at-once on `render`, after the cutover): how long
    /// to watch health at each step before going on.
    #[serde(default)]
    pub bake: Option<Duration>,
    /// blue-green: keep the old version running this long after the switch, for instant rollback.
    #[serde(default)]
    pub keep_previous: Option<Duration>,
    /// Longest any one phase may take before it counts as failed. Default: 10m.
    #[serde(default)]
    pub phase_deadline: Option<Duration>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyKind {
    #[default]
    AllAtOnce,
    Rolling,
    BlueGreen,
    Canary,
    Linear,
}

/// An HTTP health check.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// URL to request. `{url}` stands for the endpoint of the version being checked.
    pub url: String,
    #[serde(default)]
    pub method: HttpMethod,
    /// Expected status: `200`, `200-299` or `2xx`. Default: `200-299`.
    #[serde(default)]
    pub expect_status: StatusRange,
    /// The body must contain this text.
    #[serde(default)]
    pub body_contains: Option<String>,
    /// A JSON field must equal a value: `{ pointer = "/status", equals = "OK" }`.
    #[serde(default)]
    pub json: Option<JsonMatch>,
    /// Time between checks. Default: 5s.
    #[serde(default = "default_interval")]
    pub interval: Duration,
    /// Time one request may take. Default: 2s.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// Consecutive successes that make a version healthy. Default: 3.
    #[serde(default = "default_healthy")]
    pub healthy_threshold: u32,
    /// Consecutive failures that make a version unhealthy. Default: 2.
    #[serde(default = "default_unhealthy")]
    pub unhealthy_threshold: u32,
}

fn default_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_healthy() -> u32 {
    3
}
fn default_unhealthy() -> u32 {
    2
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    #[default]
    Get,
    Head,
    Post,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonMatch {
    /// JSON pointer (RFC 6901), e.g. `/apiStatus`.
    pub pointer: String,
    /// The value the field must equal.
    #[schemars(with = "serde_json::Value")]
    pub equals: toml::Value,
}

/// `kind = "local"`: the release's app as replica processes behind nginx on loopback.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalTarget {
    /// Artifact holding the app.
    pub artifact: Name,
    /// Command that starts one replica, run inside the unpacked artifact; `$PORT` is its port.
    pub command: String,
    /// Number of replicas. Default: 2.
    #[serde(default = "default_replicas")]
    pub replicas: u32,
    /// Address nginx listens on, e.g. `127.0.0.1:8080`.
    pub listen: String,
    /// Address nginx serves the new version alone on, for health gates before it takes
    /// user traffic. Default: the `listen` port + 1.
    #[serde(default)]
    pub preview: Option<String>,
    /// How long to wait after a replica leaves nginx's upstream (and nginx's old workers
    /// finished their requests, which is the drain itself) before stopping it, for apps that
    /// finish work in the background. Default: 0s.
    #[serde(default)]
    pub drain: Option<Duration>,
}

fn default_replicas() -> u32 {
    2
}

/// `kind = "ecs"`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EcsTarget {
    pub cluster: String,
    pub service: String,
    /// Container in the task definition that runs the release image.
    pub container: String,
    /// Image under `[images]` deployed to the container.
    pub image: Name,
    /// ALB listener for blue-green and canary.
    #[serde(default)]
    pub listener_arn: Option<String>,
    /// Listener serving only the new version, for health gating before traffic.
    #[serde(default)]
    pub test_listener_arn: Option<String>,
    #[serde(default)]
    pub blue_target_group_arn: Option<String>,
    #[serde(default)]
    pub green_target_group_arn: Option<String>,
    /// One-off task run before the cutover (e.g. migrations): the command, run once with the
    /// new task definition in the service's network; a non-zero exit fails the deploy.
    #[serde(default)]
    pub run_before: Option<Vec<String>>,
    /// How long the `run_before` task may take. Default: 10m.
    #[serde(default)]
    pub run_before_timeout: Option<Duration>,
    /// blue-green, canary, linear: the second service, on the other target group. gantry
    /// creates it from `service`'s settings when missing. Default: `SERVICE-green`.
    #[serde(default)]
    pub green_service: Option<String>,
    /// URL users reach the service on (the production listener): `{url}` in health checks
    /// once users are routed. Default: the listener's load balancer DNS name and port.
    #[serde(default)]
    pub url: Option<String>,
    /// URL of the test listener, which reaches only the new version: `{url}` while it is
    /// gated. Default: the test listener's load balancer DNS name and port.
    #[serde(default)]
    pub test_url: Option<String>,
    /// Tasks the new version runs. Default: the live service's desired count (at least 1).
    #[serde(default)]
    pub desired_count: Option<u32>,
    /// How long the old version keeps its tasks after traffic left it, before it is scaled
    /// down. Default: the old target group's `deregistration_delay.timeout_seconds`.
    #[serde(default)]
    pub deregistration_delay: Option<Duration>,
    /// Time between reads of the service while a deployment runs. Default: 5s.
    #[serde(default)]
    pub poll_interval: Option<Duration>,
    /// Environment variables set on the container in the new task definition revision (the
    /// declared changes; everything else is copied from the live revision).
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Task-level CPU units for the new revision, e.g. `"512"`. Default: the live revision's.
    #[serde(default)]
    pub cpu: Option<String>,
    /// Task-level memory (MiB) for the new revision, e.g. `"1024"`. Default: the live revision's.
    #[serde(default)]
    pub memory: Option<String>,
}

/// `kind = "lambda"`: a function alias (e.g. the one API Gateway invokes) moved to each
/// release's published version, with the other traffic on the version before.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LambdaTarget {
    pub function: String,
    /// Alias that API Gateway invokes. Default: `live`.
    #[serde(default)]
    pub alias: Option<String>,
    /// Alias gantry points at the new version before it takes traffic, so `preview_url`
    /// reaches it alone. Default: `preview`.
    #[serde(default)]
    pub preview_alias: Option<String>,
    /// Artifact holding the function code (zip), or `image` for container functions.
    #[serde(default)]
    pub artifact: Option<Name>,
    #[serde(default)]
    pub image: Option<Name>,
    /// CodeDeploy-style preset instead of `strategy`, e.g. `Canary10Percent5Minutes`,
    /// `Linear10PercentEvery1Minute` or `AllAtOnce`.
    #[serde(default)]
    pub preset: Option<String>,
    /// CloudWatch alarms that fail the deploy when they fire (state `ALARM`).
    #[serde(default)]
    pub alarms: Vec<String>,
    /// The API endpoint users call (the alias behind API Gateway): `{url}` in health
    /// checks once users are routed to the new version.
    pub url: String,
    /// An endpoint that invokes the preview alias alone (an API Gateway stage or route
    /// whose integration names `FUNCTION:preview`, or the preview alias's function URL):
    /// `{url}` in health checks before the new version takes traffic.
    pub preview_url: String,
}

/// `kind = "static"`: a site from a release zip in an S3 bucket, behind CloudFront.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StaticTarget {
    pub bucket: BucketName,
    /// Key prefix of the site in the bucket (the site's root), e.g. `www`.
    #[serde(default)]
    pub prefix: Option<String>,
    pub artifact: Name,
    /// CloudFront distribution id: changed paths are invalidated, and `blue-green` switches
    /// its origin path.
    #[serde(default)]
    pub distribution: Option<String>,
    /// blue-green: id of the distribution's origin whose path is switched. Default: its
    /// only origin.
    #[serde(default)]
    pub origin_id: Option<String>,
    /// Releases whose assets are kept. Default: 3.
    #[serde(default)]
    pub keep_releases: Option<u32>,
    /// The site's URL (`{url}` in health checks once the release is live).
    pub url: String,
    /// URL that serves one release's own copy: `{prefix}` stands for its key prefix
    /// (`PREFIX/releases/VERSION-DIGEST12`), e.g. a second origin or the S3 website endpoint.
    pub preview_url: String,
}

/// `kind = "appservice"`: an Azure App Service app, zip-deployed through Kudu's OneDeploy.
/// On a plan with deployment slots (Standard and up) and a `slot` named, the release goes
/// to the slot, is gated there and swapped into production; otherwise (Free, Shared, Basic
/// plans) it is deployed straight to production, gated on health, and a failure redeploys
/// the previous release. `gantry plan` says which applies.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppServiceTarget {
    /// Azure subscription id (a GUID).
    pub subscription: String,
    pub resource_group: String,
    /// The app's name (`NAME.azurewebsites.net`).
    pub app: String,
    /// Artifact deployed as the app's zip package.
    pub artifact: Name,
    /// Deployment slot for blue-green, e.g. `staging` (used when the plan has slots).
    #[serde(default)]
    pub slot: Option<String>,
    /// URL users reach the app on, e.g. its custom domain: `{url}` in health checks once the
    /// release is live. Default: `https://` and the app's default host name.
    #[serde(default)]
    pub url: Option<String>,
}

/// `kind = "staticwebapp"`: an Azure Static Web App. Without `token_env`, deployed through
/// Azure Resource Manager from the artifact `gantry publish` put in the environment's release
/// bucket (ARM fetches it from a short-lived presigned URL); with `token_env`, deployed with
/// the site's deployment token by the Azure Static Web Apps CLI (`swa deploy`).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StaticWebAppTarget {
    /// Azure subscription id (a GUID). Required without `token_env`.
    #[serde(default)]
    pub subscription: Option<String>,
    /// Required without `token_env`.
    #[serde(default)]
    pub resource_group: Option<String>,
    /// The static web app's name.
    pub app: String,
    /// Artifact deployed as the site's content (the built site: `index.html` at its root).
    pub artifact: Name,
    /// URL users reach the site on, e.g. its custom domain: `{url}` in health checks.
    /// Default: `https://` and the app's default host name (read through ARM). Required with
    /// `token_env`.
    #[serde(default)]
    pub url: Option<String>,
    /// Environment variable that holds the site's deployment token, e.g.
    /// `AZURE_STATIC_WEB_APPS_API_TOKEN`: deploy with the SWA CLI instead of through ARM.
    #[serde(default)]
    pub token_env: Option<String>,
}

/// `kind = "containerapps"`: an Azure Container App in multiple-revision mode. Each release
/// becomes a revision running the release's image, gated on the revision's own FQDN, then
/// given traffic by the strategy's weights.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContainerAppsTarget {
    /// Azure subscription id (a GUID).
    pub subscription: String,
    pub resource_group: String,
    /// The container app's name.
    pub app: String,
    /// Image under `[images]`: the revision runs `REGISTRY/REPOSITORY:VERSION`.
    pub image: Name,
    /// Container of the app's template that runs the image. Default: its first container.
    #[serde(default)]
    pub container: Option<String>,
    /// Registry host the app pulls from, e.g. `acme.azurecr.io`. Default: the environment's
    /// `registry`.
    #[serde(default)]
    pub registry: Option<String>,
    /// URL users reach the app on: `{url}` in health checks once users are routed. Default:
    /// `https://` and the app's ingress FQDN.
    #[serde(default)]
    pub url: Option<String>,
}

/// `kind = "render"`: a Render web or private service, deployed through Render's REST API
/// (`POST /v1/services/{id}/deploys`). An image-backed service gets the release's image tag
/// (the service's own image path with the tag `VERSION`); a Git-backed one gets the release's
/// commit. Render cuts over all at once: a deploy takes every request once it is live.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RenderTarget {
    /// Render service id, e.g. `srv-abc123` (the Dashboard's URL and Settings page show it).
    pub service: String,
    /// Environment variable that holds the API key (Account Settings → API Keys). Default:
    /// `RENDER_API_KEY`. The key itself never goes in gantry.toml.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Image under `[images]` the service runs: checked against the service's image path.
    /// Default: whatever image path the service is configured with.
    #[serde(default)]
    pub image: Option<Name>,
    /// URL users reach the service on (`{url}` in health checks), e.g. a custom domain.
    /// Default: the service's `onrender.com` URL as Render reports it.
    #[serde(default)]
    pub url: Option<String>,
    /// Time between reads of a deploy while it runs. Default: 5s.
    #[serde(default)]
    pub poll_interval: Option<Duration>,
}

/// `kind = "kubernetes"`: a Deployment in any cluster (AKS, EKS, kind, ...), reached with
/// the kubeconfig `kubectl` uses (`KUBECONFIG`, else `~/.kube/config`).
///
/// `rolling` (and `all-at-once`) update the Deployment's container image and follow its
/// rollout; `blue-green` runs the release in a second Deployment (`DEPLOYMENT-blue` or
/// `DEPLOYMENT-green`) and switches `service`'s selector to it.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KubernetesTarget {
    /// kubeconfig context to use. Default: the kubeconfig's `current-context`.
    #[serde(default)]
    pub context: Option<String>,
    pub namespace: String,
    /// The Deployment that runs the service (for blue-green: the one live before the
    /// first blue-green deploy, and the base of the colour Deployments' names).
    pub deployment: String,
    /// Container in the pod template that runs the release image.
    pub container: String,
    /// Image under `[images]` deployed to the container: by default the release's version
    /// tag in that image's ECR repository, pinned by digest (as the `ecs` kind does).
    pub image: Name,
    /// The image reference to deploy instead of looking it up in ECR, with `{version}`
    /// standing for the release's version tag, e.g. `myregistry.azurecr.io/api:{version}`
    /// (or a digest reference).
    #[serde(default)]
    pub image_ref: Option<String>,
    /// blue-green: the Service whose selector is switched between the colours (its
    /// selector carries `gantry.dev/colour`).
    #[serde(default)]
    pub service: Option<String>,
    /// URL users reach the service on (its Ingress or load balancer): `{url}` in health
    /// checks once users are routed to the new version.
    pub url: String,
    /// blue-green: URL that reaches one colour's Deployment alone (e.g. a per-colour
    /// Service behind an Ingress host), with `{colour}` (`blue`/`green`) and `{deployment}`
    /// (the colour Deployment's name) filled in: `{url}` while the new version is gated.
    #[serde(default)]
    pub preview_url: Option<String>,
    /// Time between reads of the Deployment while a rollout runs. Default: 2s.
    #[serde(default)]
    pub poll_interval: Option<Duration>,
}

/// CodeDeploy's Lambda deployment configurations, by name, as gantry strategies: a
/// canary shifts 10% and then the rest, a linear one adds 10% at each step; each step is
/// followed by its wait as a bake (gantry also bakes after the last step, before the old
/// version is retired).
pub const LAMBDA_PRESETS: &[&str] = &[
    "AllAtOnce",
    "Canary10Percent5Minutes",
    "Canary10Percent10Minutes",
    "Canary10Percent15Minutes",
    "Canary10Percent30Minutes",
    "Linear10PercentEvery1Minute",
    "Linear10PercentEvery2Minutes",
    "Linear10PercentEvery3Minutes",
    "Linear10PercentEvery10Minutes",
];

/// The strategy a CodeDeploy preset name stands for (also accepted with the
/// `LambdaCanary…`/`LambdaLinear…`/`LambdaAllAtOnce` prefix CodeDeploy itself uses).
pub fn lambda_preset(name: &str) -> Option<StrategyConfig> {
    let name = name.strip_prefix("CodeDeployDefault.").unwrap_or(name);
    let name = name.strip_prefix("Lambda").unwrap_or(name);
    if !LAMBDA_PRESETS.contains(&name) {
        return None;
    }
    let ten = Percent::new(10).expect("10 is a percentage");
    let minutes = |digits: &str| digits.parse::<u64>().ok().map(|m| Duration::from_secs(m * 60));
    let strategy = if name == "AllAtOnce" {
        StrategyConfig::default()
    } else if let Some(rest) = name.strip_prefix("Canary10Percent") {
        StrategyConfig {
            kind: StrategyKind::Canary,
            steps: Some(vec![ten, Percent::new(100).expect("100 is a percentage")]),
            bake: minutes(rest.trim_end_matches("Minutes")),
            ..StrategyConfig::default()
        }
    } else {
        let rest = name.strip_prefix("Linear10PercentEvery")?;
        StrategyConfig {
            kind: StrategyKind::Linear,
            increment: Some(ten),
            bake: minutes(rest.trim_end_matches("Minutes").trim_end_matches("Minute")),
            ..StrategyConfig::default()
        }
    };
    Some(strategy)
}

impl Target {
    /// Turns a lambda target's `preset` into its `strategy` (keeping `phase_deadline`).
    /// Called after validation, which refuses a preset beside strategy keys.
    pub fn resolve_preset(&mut self) {
        let Some(preset) = self.lambda.as_ref().and_then(|l| l.preset.as_deref()).and_then(lambda_preset) else {
            return;
        };
        let deadline = self.strategy.phase_deadline;
        self.strategy = StrategyConfig { phase_deadline: deadline, ..preset };
    }
}
