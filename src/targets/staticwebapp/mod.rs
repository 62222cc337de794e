//! The `staticwebapp` target: an Azure Static Web App, deployed through Azure Resource
//! Manager (`Microsoft.Web/staticSites`, api-version 2024-04-01), each call as its REST
//! reference names it:
//!
//! - "Static Sites - Get Static Site": `GET .../staticSites/{name}`: `properties.defaultHostname`
//!   and `sku` (`Free`, `Standard`);
//! - "Static Sites - Create Zip Deployment For Static Site": `POST .../staticSites/{name}/zipdeploy`
//!   with `{"properties": {"appZipUrl", "deploymentTitle", "provider"}}`: Azure fetches the zip
//!   from `appZipUrl` itself, a long-running operation;
//! - "Static Sites - Get Static Site Build": `GET .../staticSites/{name}/builds/default`:
//!   `properties.status` (`WaitingForDeployment`, `Uploading`, `Deploying`, `Ready`, `Failed`,
//!   `Deleting`, `Detached`) of the production environment;
//! - "Tags - Update At Scope" for the site's tags (`super::direct`).
//!
//! The zip is the artifact `gantry publish` stored in the environment's release bucket, handed
//! to Azure as a presigned S3 URL that expires after an hour: nothing is uploaded from the
//! machine that deploys, and a rollback can deploy any published release again, from anywhere.
//!
//! This is the mode without `token_env`: it authenticates like `appservice` (Entra ID client
//! secret or GitHub OIDC federation, `crate::azure`). With `token_env`, `token.rs` deploys with
//! the deployment token through the SWA CLI instead, because the token is only taken by
//! `StaticSitesClient`, a closed binary whose upload protocol has no published reference
//! (ARCHITECTURE.md, "Static Web Apps").
//!
//! Cutover is direct (`super::direct`): a Static Web App's production environment takes the
//! new content atomically when the deployment is `Ready`, so `gate-new` checks the live URL,
//! and a failure deploys the previous release again. Named preview environments (the
//! `builds/{environmentName}/zipdeploy` call) are reported to answer `NotImplemented`
//! (Azure/azure-rest-api-specs#22267), so blue-green through them is not offered.

pub mod token;

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use tokio::sync::OnceCell;

use super::direct::{NONE, Tagged, label, live_version, parse_label};
use super::{Live, Progress, Release, Target, TargetEnv, TargetError};
use crate::azure::{Arm, AzureError};
use crate::config;
use crate::rollout::Step;

const WEB_API: &str = "2024-04-01";
/// How long the presigned URL Azure fetches the zip from stays valid.
const URL_LIFETIME: Duration = Duration::from_secs(3600);
/// Longest wait for a deployment to become `Ready` once ARM accepted it.
const READY_DEADLINE: Duration = Duration::from_secs(15 * 60);

pub struct StaticWebAppTarget {
    name: String,
    settings: config::StaticWebAppTarget,
    env: TargetEnv,
    site: OnceCell<Site>,
    s3: OnceCell<aws_sdk_s3::Client>,
    progress: Option<Progress>,
}

/// The static site as ARM reports it, read once per process.
#[derive(Debug, Clone)]
struct Site {
    tagged: Tagged,
    /// `https://DEFAULT_HOSTNAME`.
    url: String,
    /// `Free`, `Standard`.
    sku: String,
}

impl StaticWebAppTarget {
    pub fn new(name: &str, settings: &config::StaticWebAppTarget, env: TargetEnv) -> Self {
        Self {
            name: name.to_owned(),
            settings: settings.clone(),
            env,
            site: OnceCell::new(),
            s3: OnceCell::new(),
            progress: None,
        }
    }

    pub fn set_progress(&mut self, progress: Progress) {
        self.progress = Some(progress);
    }

    fn note(&self, message: String) {
        if let Some(p) = &self.progress {
            let _ = p.send(message);
        }
    }

    async fn site(&self) -> Result<&Site, AzureError> {
        self.site
            .get_or_try_init(|| async {
                let s = &self.settings;
                // Checked by config validation: set whenever `token_env` is not.
                let subscription = s.subscription.as_deref().unwrap_or_default();
                let resource_group = s.resource_group.as_deref().unwrap_or_default();
                let arm = Arm::from_env()?;
                let tagged = Tagged {
                    arm,
                    path: format!(
                        "/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/Microsoft.Web/staticSites/{}",
                        s.app
                    ),
                    api_version: WEB_API,
                    what: format!(
                        "Static Web App `{}` in resource group `{resource_group}` (subscription `{subscription}`)",
                        s.app
                    ),
                };
                let resource = tagged.arm.get(&tagged.path, WEB_API, &tagged.what).await.map_err(|e| {
                    if e.is_not_found() {
                        let hint = format!(
                            "check `subscription`, `resource_group` and `app` in [targets.{}.staticwebapp], and that the identity can read them",
                            self.name
                        );
                        e.with_hint(hint)
                    } else {
                        e
                    }
                })?;
                let host = resource["properties"]["defaultHostname"].as_str().ok_or_else(|| {
                    AzureError::new(format!("ARM reports no default host name for {}", tagged.what))
                })?;
                let url = tagged.arm.host_url(host);
                let sku = resource["sku"]["name"].as_str().unwrap_or("unknown").to_owned();
                Ok(Site { tagged, url, sku })
            })
            .await
    }

    async fn s3(&self) -> &aws_sdk_s3::Client {
        self.s3
            .get_or_init(|| async {
                let sdk = crate::aws::load_for(self.env.publish_region.as_deref(), self.env.role_arn.as_deref()).await;
                crate::aws::s3(&sdk)
            })
            .await
    }

    /// The release's zip on disk, from the configured artifact.
    fn zip<'r>(&self, release: &'r Release) -> Result<&'r std::path::PathBuf, TargetError> {
        release.artifact(self.settings.artifact.as_str())
    }

    /// The release bucket, or what to set.
    fn bucket(&self) -> Result<String, TargetError> {
        self.env.release_bucket.clone().ok_or_else(|| {
            TargetError::new(format!(
                "environment `{}` has no `release_bucket`: a staticwebapp target deploys the zip `gantry publish` put there",
                self.env.name
            ))
            .with_hint(format!("set `release_bucket` (and `region`) under [environments.{}]", self.env.name))
        })
    }

    /// The release's artifact in the release bucket, checked against the bytes packaged here.
    async fn published(&self, release: &Release) -> Result<(String, String), TargetError> {
        self.bucket()?;
        let path = self.zip(release)?;
        let bytes = std::fs::read(path)
            .map_err(|e| TargetError::new(format!("cannot read {}", path.display())).with_source(e))?;
        let file = path.file_name().and_then(|f| f.to_str()).unwrap_or_default().to_owned();
        let sha256: [u8; 32] = Sha256::digest(&bytes).into();
        self.env
            .published_artifact(self.s3().await, "a staticwebapp target deploys the zip", release, &file, &sha256)
            .await
    }

    /// The artifact of a release deployed earlier, named by its label: read from the
    /// `release.json` published with it, whose digest must be the label's.
    async fn published_by_label(&self, label: &str) -> Result<(String, String), TargetError> {
        let (version, digest) = parse_label(label)
            .ok_or_else(|| TargetError::new(format!("`{label}` in the tags of the site names no gantry release")))?;
        let bucket = self.bucket()?;
        let key = self.env.artifact_key(&version, crate::package::manifest::MANIFEST_FILE);
        let store = crate::publish::s3::Bucket::new(self.s3().await.clone(), bucket.clone());
        let gone = || {
            TargetError::new(format!(
                "release {version} (sha256:{}) is not in s3://{bucket}/{key}, so it cannot be deployed again",
                &digest[..digest.len().min(12)]
            ))
            .with_hint(format!(
                "publish it again (`gantry publish --env {} --version {version}`), or deploy a good release",
                self.env.name
            ))
        };
        let bytes = store
            .get_small(&key)
            .await
            .map_err(|e| TargetError::new(format!("cannot read s3://{bucket}/{key}")).with_source(e))?
            .ok_or_else(gone)?;
        let actual = crate::publish::s3::hex(&Sha256::digest(&bytes));
        if actual != digest {
            return Err(gone());
        }
        let manifest: crate::package::manifest::Manifest = serde_json::from_slice(&bytes).map_err(|_| gone())?;
        let artifact =
            manifest.artifacts.iter().find(|a| a.name == self.settings.artifact.as_str()).ok_or_else(|| {
                TargetError::new(format!("release {version} has no artifact `{}`", self.settings.artifact))
            })?;
        Ok((bucket, self.env.artifact_key(&version, &artifact.file)))
    }

    /// Has Azure deploy the zip at `s3://bucket/key` to production and waits until the
    /// production environment is `Ready` again.
    async fn deploy(&self, bucket: &str, key: &str, title: &str) -> Result<(), TargetError> {
        let site = self.site().await.map_err(AzureError::into_target)?;
        let store = crate::publish::s3::Bucket::new(self.s3().await.clone(), bucket.to_owned());
        let url = store
            .presigned_get(key, URL_LIFETIME)
            .await
            .map_err(|e| TargetError::new(format!("cannot sign a URL for s3://{bucket}/{key}")).with_source(e))?;
        let body = json!({ "properties": { "appZipUrl": url, "deploymentTitle": title, "provider": "gantry" } });
        let what = format!("{} (zip deploy of {title})", site.tagged.what);
        self.note(format!("zip deploy of {title}: Azure fetches s3://{bucket}/{key}"));
        let arm = &site.tagged.arm;
        arm.send(Method::POST, &format!("{}/zipdeploy", site.tagged.path), WEB_API, Some(&body), &what)
            .await
            .map_err(AzureError::into_target)?;
        self.wait_ready(title).await
    }

    /// Polls the production environment's build until it is `Ready` (or `Failed`).
    async fn wait_ready(&self, title: &str) -> Result<(), TargetError> {
        let site = self.site().await.map_err(AzureError::into_target)?;
        let path = format!("{}/builds/default", site.tagged.path);
        let what = format!("the production environment of {}", site.tagged.what);
        let started = Instant::now();
        let mut last = String::new();
        loop {
            let build = site.tagged.arm.get(&path, WEB_API, &what).await.map_err(AzureError::into_target)?;
            let status = build["properties"]["status"].as_str().unwrap_or("Unknown").to_owned();
            if status != last {
                self.note(format!("{title}: {status}"));
            }
            match status.as_str() {
                "Ready" => return Ok(()),
                "Failed" | "Detached" | "Deleting" => {
                    return Err(TargetError::new(format!("the deployment of {title} to {what} ended {status}"))
                        .with_hint("see the site's deployment history in the Azure portal; check that the artifact is the built site (index.html at its root)"));
                }
                _ => {}
            }
            if started.elapsed() > READY_DEADLINE {
                return Err(TargetError::new(format!(
                    "{what} was not Ready within {} (status: {status})",
                    humantime::format_duration(READY_DEADLINE)
                ))
                .with_hint("see the site's deployment history in the Azure portal; it may still finish"));
            }
            last = status;
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// `gantry plan`'s view: the site, its SKU, the cutover and what a failure goes back to.
    pub async fn plan_notes(&mut self, release: Option<&Release>) -> Result<Vec<String>, TargetError> {
        self.bucket()?;
        let site = self.site().await.map_err(AzureError::into_target)?.clone();
        let mut notes = vec![format!("Static Web App `{}` ({} plan) at {}", self.settings.app, site.sku, site.url)];
        notes.push(format!(
            "direct deploy: ARM zip deploy to the production environment from a presigned URL of the published artifact (valid {}); the site switches to the new content when the deployment is Ready, so gate-new checks {}; a failure deploys the previous release again from the release bucket",
            humantime::format_duration(URL_LIFETIME),
            self.public_url()
        ));
        let roles = site.tagged.roles().await.map_err(AzureError::into_target)?;
        match roles.stable.as_deref().filter(|s| *s != NONE) {
            Some(live) => match self.published_by_label(live).await {
                Ok(_) => notes.push(format!("rollback target: {live}")),
                Err(e) => notes.push(format!("warning: the live release ({live}) cannot be deployed again: {e}")),
            },
            None => notes.push(
                "warning: no release gantry deployed is live: a failed first deploy cannot be rolled back".into(),
            ),
        }
        if let Some(release) = release
            && !release.artifacts.is_empty()
        {
            let (bucket, key) = self.published(release).await?;
            notes.push(format!("deploys s3://{bucket}/{key}"));
        }
        Ok(notes)
    }
}

/// `shift`: a site serves one deployment whole, which took all traffic when it was deployed.
fn whole(percent: u8) -> Result<(), TargetError> {
    match percent {
        0 | 100 => Ok(()),
        p => Err(TargetError::new(format!("a Static Web App serves one deployment, not {p}% of one"))
            .with_hint("use the all-at-once strategy")),
    }
}

fn err(e: AzureError) -> TargetError {
    e.into_target()
}

impl Target for StaticWebAppTarget {
    fn replicas(&self) -> u32 {
        1
    }

    fn public_url(&self) -> String {
        if let Some(url) = &self.settings.url {
            return url.trim_end_matches('/').to_owned();
        }
        self.site.get().map_or_else(|| format!("https://{}.azurestaticapps.net", self.settings.app), |s| s.url.clone())
    }

    fn new_version_url(&self, _preview: &str) -> String {
        self.public_url()
    }

    fn step_detail(&self, step: &Step) -> Option<String> {
        Some(match step {
            Step::StartNew { .. } => {
                "zip-deploy the published artifact to production (ARM zipdeploy from a presigned URL), wait until Ready"
                    .into()
            }
            Step::GateNew => "health-gate the site (a Static Web App has no preview for a direct deploy)".into(),
            Step::Shift { .. } => "nothing to shift: the site serves the new content once it is Ready".into(),
            Step::Bake { duration } => {
                format!("bake for {}: watch the site's health", humantime::format_duration(*duration))
            }
            Step::RetireOld => "record the release as production's in the site's tags".into(),
            _ => return None,
        })
    }

    async fn observe(&mut self) -> Result<Live, TargetError> {
        let roles = self.site().await.map_err(err)?.tagged.roles().await.map_err(err)?;
        let stable = live_version(roles.stable.as_deref());
        let new = live_version(roles.new.as_deref());
        let new_weight = if new.is_some() { roles.percent } else { 0 };
        Ok(Live { stable, new, new_weight })
    }

    async fn preflight(&mut self, release: &Release) -> Result<(), TargetError> {
        self.published(release).await?;
        self.site().await.map_err(err)?;
        Ok(())
    }

    async fn start_new(&mut self, release: &Release, _replicas: u32) -> Result<String, TargetError> {
        let (bucket, key) = self.published(release).await?;
        let site = self.site().await.map_err(err)?.clone();
        site.tagged.begin(&label(release)).await.map_err(err)?;
        self.deploy(&bucket, &key, &format!("{} {}", self.env.project, release.version)).await?;
        Ok(self.public_url())
    }

    async fn shift(&mut self, percent: u8) -> Result<(), TargetError> {
        whole(percent)
    }

    async fn replace(&mut self, _old: u32) -> Result<(), TargetError> {
        Ok(())
    }

    async fn retire_old(&mut self) -> Result<(), TargetError> {
        self.site().await.map_err(err)?.tagged.finish().await.map_err(err)
    }

    async fn rollback(&mut self) -> Result<(), TargetError> {
        let tagged = self.site().await.map_err(err)?.tagged.clone();
        let Some(previous) = tagged.to_restore().await? else { return Ok(()) };
        let (bucket, key) = self.published_by_label(&previous).await?;
        let version = parse_label(&previous).map(|(v, _)| v.to_string()).unwrap_or_default();
        self.note(format!("redeploying {previous} to production"));
        self.deploy(&bucket, &key, &format!("{} {version}", self.env.project)).await?;
        tagged.restored(&previous).await.map_err(err)
    }
}
