//! The `containerapps` target: an Azure Container App in multiple-revision mode, through ARM
//! (`Microsoft.App`, api-version 2024-03-01), each call as its REST reference names it:
//! - "Container Apps - Get": `configuration.activeRevisionsMode` (must be `Multiple`: a
//!   traffic split needs two active revisions), `configuration.ingress` (`fqdn`, `traffic`:
//!   `[{revisionName | latestRevision, weight}]`), `template`, `latestRevisionName`;
//! - "Container Apps - Update": `PATCH` (JSON merge patch, a long-running operation) with a
//!   new `template` (the release's image, `revisionSuffix` from the version, the release in
//!   the container's `GANTRY_RELEASE` variable), which makes a new revision, or with new
//!   `ingress.traffic` weights;
//! - "Container Apps Revisions - Get": the revision's `provisioningState`, `runningState`,
//!   `healthState` and its own `fqdn`, which `gate-new` and the bakes check;
//! - "Container Apps Revisions - Deactivate": `POST .../revisions/{name}/deactivate`.
//!
//! `start-new` pins the traffic on revision names first (a `latestRevision: true` entry would
//! hand the new revision its weight the moment it exists), in the same update as the template.
//! The app's tags (`Arm::update_tags`) name the revisions of a deployment: `gantry-stable` and
//! `gantry-new`; the weights are ingress's own. `retire-old` puts all traffic on the new
//! revision and deactivates the old one; `rollback` puts all traffic back on the stable one
//! and deactivates the new one.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use super::direct::{label, parse_label};
use super::{Live, LiveVersion, Progress, Release, Target, TargetError};
use crate::azure::{Arm, AzureError};
use crate::config;
use crate::rollout::Step;

const API: &str = "2024-03-01";
const RELEASE_ENV: &str = "GANTRY_RELEASE";
const TAG_STABLE: &str = "gantry-stable";
const TAG_NEW: &str = "gantry-new";
/// Longest wait for a new revision to be provisioned and running.
const REVISION_DEADLINE: Duration = Duration::from_secs(20 * 60);

pub struct ContainerAppsTarget {
    name: String,
    settings: config::ContainerAppsTarget,
    /// `REGISTRY/REPOSITORY`, without the tag.
    image: Result<String, String>,
    arm: OnceCell<Arm>,
    /// The app's ingress URL, once read.
    public: Option<String>,
    progress: Option<Progress>,
}

/// Which revision is stable, which is new, and the new one's weight.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Roles {
    stable: Option<String>,
    new: Option<String>,
    percent: u8,
}

impl ContainerAppsTarget {
    /// `image`: `REGISTRY/REPOSITORY` the revisions pull from, or why it cannot be known.
    pub fn new(name: &str, settings: &config::ContainerAppsTarget, image: Result<String, String>) -> Self {
        Self {
            name: name.to_owned(),
            settings: settings.clone(),
            image,
            arm: OnceCell::new(),
            public: settings.url.clone(),
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

    async fn arm(&self) -> Result<&Arm, TargetError> {
        self.arm.get_or_try_init(|| async { Arm::from_env() }).await.map_err(AzureError::into_target)
    }

    fn path(&self) -> String {
        let s = &self.settings;
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.App/containerApps/{}",
            s.subscription, s.resource_group, s.app
        )
    }

    fn what(&self) -> String {
        let s = &self.settings;
        format!(
            "container app `{}` in resource group `{}` (subscription `{}`)",
            s.app, s.resource_group, s.subscription
        )
    }

    /// The app, checked to be in multiple-revision mode with ingress.
    async fn app(&mut self) -> Result<Value, TargetError> {
        let what = self.what();
        let app = self.arm().await?.get(&self.path(), API, &what).await.map_err(|e| {
            let not_found = e.is_not_found();
            let e = e.into_target();
            if not_found {
                e.with_hint(format!(
                    "check `subscription`, `resource_group` and `app` in [targets.{}.containerapps]",
                    self.name
                ))
            } else {
                e
            }
        })?;
        let config = &app["properties"]["configuration"];
        let mode = config["activeRevisionsMode"].as_str().unwrap_or("Single");
        if !mode.eq_ignore_ascii_case("multiple") {
            return Err(TargetError::new(format!(
                "{what} is in `{mode}` revision mode: gantry shifts traffic between two revisions, which needs `Multiple`"
            ))
            .with_hint(format!(
                "az containerapp revision set-mode --name {} --resource-group {} --mode multiple",
                self.settings.app, self.settings.resource_group
            )));
        }
        let Some(fqdn) = config["ingress"]["fqdn"].as_str() else {
            return Err(TargetError::new(format!("{what} has no ingress: there is no traffic to shift"))
                .with_hint(format!(
                    "enable ingress: az containerapp ingress enable --name {} --resource-group {} --type external --target-port PORT",
                    self.settings.app, self.settings.resource_group
                )));
        };
        if self.public.is_none() {
            self.public = Some(self.arm().await?.host_url(fqdn));
        }
        Ok(app)
    }

    async fn revision(&self, name: &str) -> Result<Option<Value>, TargetError> {
        let path = format!("{}/revisions/{name}", self.path());
        match self.arm().await?.get(&path, API, &format!("revision `{name}` of {}", self.what())).await {
            Ok(r) => Ok(Some(r)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into_target()),
        }
    }

    async fn roles(&mut self) -> Result<Roles, TargetError> {
        let app = self.app().await?;
        Ok(roles(&app))
    }

    async fn release_of(&self, revision: Option<&str>) -> Result<Option<LiveVersion>, TargetError> {
        let Some(name) = revision else { return Ok(None) };
        let Some(rev) = self.revision(name).await? else { return Ok(None) };
        Ok(label_of(&rev["properties"]["template"]).and_then(|l| parse_label(&l)).map(|(version, digest)| {
            LiveVersion { version, digest, replicas: rev["properties"]["replicas"].as_u64().unwrap_or(1) as u32 }
        }))
    }

    async fn patch(&self, body: &Value, what: &str) -> Result<(), TargetError> {
        self.arm()
            .await?
            .send(Method::PATCH, &self.path(), API, Some(body), what)
            .await
            .map_err(AzureError::into_target)?;
        Ok(())
    }

    async fn set_traffic(&self, weights: &[(&str, u8)]) -> Result<(), TargetError> {
        let traffic: Vec<Value> = weights.iter().map(|(r, w)| json!({ "revisionName": r, "weight": w })).collect();
        let shown: Vec<String> = weights.iter().map(|(r, w)| format!("{r} {w}%")).collect();
        self.note(format!("traffic: {}", shown.join(", ")));
        let body = json!({ "properties": { "configuration": { "ingress": { "traffic": traffic } } } });
        self.patch(&body, &format!("{} (traffic weights)", self.what())).await
    }

    async fn tags(&self, operation: &str, tags: &[(&str, &str)]) -> Result<(), TargetError> {
        self.arm()
            .await?
            .update_tags(&self.path(), operation, tags, &self.what())
            .await
            .map_err(AzureError::into_target)
    }

    async fn deactivate(&self, revision: &str) -> Result<(), TargetError> {
        let Some(rev) = self.revision(revision).await? else { return Ok(()) };
        if rev["properties"]["active"].as_bool() == Some(false) {
            return Ok(());
        }
        self.note(format!("deactivating revision {revision}"));
        let path = format!("{}/revisions/{revision}/deactivate", self.path());
        let what = format!("revision `{revision}` of {}", self.what());
        self.arm().await?.send(Method::POST, &path, API, None, &what).await.map_err(AzureError::into_target)?;
        Ok(())
    }

    fn image_reference(&self, release: &Release) -> Result<String, TargetError> {
        let base = self.image.clone().map_err(|why| {
            TargetError::new(format!("target `{}`: {why}", self.name))
                .with_hint(format!("set `registry` in [targets.{}.containerapps] or in the environment", self.name))
        })?;
        Ok(format!("{base}:{}", crate::publish::image::tags::version_tag(&release.version)))
    }

    /// Waits until `name` is provisioned and running (or failed).
    async fn wait_revision(&self, name: &str) -> Result<Value, TargetError> {
        let started = tokio::time::Instant::now();
        let mut last = String::new();
        let mut delay = Duration::from_millis(500);
        loop {
            let Some(rev) = self.revision(name).await? else {
                return Err(TargetError::new(format!("{} made no revision `{name}`", self.what())));
            };
            let p = &rev["properties"];
            let state = format!(
                "provisioning {}, running {}, health {}",
                p["provisioningState"].as_str().unwrap_or("?"),
                p["runningState"].as_str().unwrap_or("?"),
                p["healthState"].as_str().unwrap_or("?")
            );
            if state != last {
                self.note(format!("revision {name}: {state}"));
                last.clone_from(&state);
            }
            let failed = p["provisioningState"].as_str() == Some("Failed")
                || matches!(p["runningState"].as_str(), Some("Failed" | "Degraded"));
            if failed {
                let why = ["provisioningError", "runningStateDetails"]
                    .iter()
                    .filter_map(|k| p[*k].as_str())
                    .find(|s| !s.is_empty())
                    .unwrap_or("no reason given");
                return Err(TargetError::new(format!("revision `{name}` of {} failed: {why}", self.what()))
                    .with_hint("see the revision's system logs: az containerapp logs show --type system"));
            }
            if p["provisioningState"].as_str() == Some("Provisioned")
                && !matches!(p["runningState"].as_str(), Some("Processing" | "Activating"))
            {
                return Ok(rev);
            }
            if started.elapsed() + delay > REVISION_DEADLINE {
                return Err(TargetError::new(format!(
                    "revision `{name}` was not running within {} ({last})",
                    humantime::format_duration(REVISION_DEADLINE)
                )));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    pub async fn plan_notes(&mut self, release: Option<&Release>) -> Result<Vec<String>, TargetError> {
        let app = self.app().await?;
        let roles = roles(&app);
        let mut notes = vec![format!(
            "multiple-revision mode; traffic now: {}",
            traffic(&app).iter().map(|(r, w)| format!("{r} {w}%")).collect::<Vec<_>>().join(", ")
        )];
        if let Some(release) = release {
            notes.push(format!(
                "new revision `{}--{}` running {}, gated on its own FQDN; weights move between it and `{}`; a rollback puts all traffic back on `{}` and deactivates the new revision",
                self.settings.app,
                revision_suffix(release),
                self.image_reference(release)?,
                roles.stable.as_deref().unwrap_or("?"),
                roles.stable.as_deref().unwrap_or("?")
            ));
        }
        Ok(notes)
    }
}

/// Ingress weights by revision name (`latestRevision: true` resolved to the latest revision).
fn traffic(app: &Value) -> Vec<(String, u8)> {
    let latest = app["properties"]["latestRevisionName"].as_str().unwrap_or_default();
    app["properties"]["configuration"]["ingress"]["traffic"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| {
            let name = t["revisionName"]
                .as_str()
                .or_else(|| (t["latestRevision"].as_bool() == Some(true)).then_some(latest))?;
            Some((name.to_owned(), t["weight"].as_u64().unwrap_or(0).min(100) as u8))
        })
        .collect()
}

fn roles(app: &Value) -> Roles {
    let tags = &app["tags"];
    let weights = traffic(app);
    let weight = |r: &str| weights.iter().filter(|(n, _)| n == r).map(|(_, w)| *w).sum::<u8>();
    let new = tags[TAG_NEW].as_str().filter(|s| !s.is_empty()).map(str::to_owned);
    let stable = tags[TAG_STABLE].as_str().filter(|s| !s.is_empty()).map(str::to_owned).or_else(|| {
        weights.iter().filter(|(n, _)| Some(n) != new.as_ref()).max_by_key(|(_, w)| *w).map(|(n, _)| n.clone())
    });
    let percent = new.as_deref().map_or(0, weight);
    Roles { stable, new, percent }
}

/// The release a template runs: its containers' `GANTRY_RELEASE`.
fn label_of(template: &Value) -> Option<String> {
    template["containers"].as_array()?.iter().find_map(|c| {
        c["env"]
            .as_array()?
            .iter()
            .find(|e| e["name"] == RELEASE_ENV)
            .and_then(|e| e["value"].as_str().map(str::to_owned))
    })
}

/// `v1-2-3-rc-1-abcdef12`: lower-case letters, digits and single hyphens, starting with a
/// letter (Container Apps' rule for revision suffixes), unique per release by its digest.
fn revision_suffix(release: &Release) -> String {
    let raw = format!("v{}-{}", release.version, &release.digest[..release.digest.len().min(8)]).to_ascii_lowercase();
    let mut out = String::new();
    for c in raw.chars() {
        let c = if c.is_ascii_alphanumeric() { c } else { '-' };
        if !(c == '-' && out.ends_with('-')) {
            out.push(c);
        }
    }
    out.trim_end_matches('-').to_owned()
}

impl Target for ContainerAppsTarget {
    fn replicas(&self) -> u32 {
        1
    }

    fn public_url(&self) -> String {
        self.public.clone().unwrap_or_else(|| format!("https://{}", self.settings.app))
    }

    fn step_detail(&self, step: &Step) -> Option<String> {
        Some(match step {
            Step::StartNew { .. } => {
                "create a revision with the release's image (no traffic), wait until it runs".into()
            }
            Step::GateNew => "health-gate the new revision on its own FQDN".into(),
            Step::Shift { percent } => {
                format!("set ingress traffic: {percent}% to the new revision, the rest to the stable one")
            }
            Step::RetireOld => "all traffic on the new revision; deactivate the old revision".into(),
            _ => return None,
        })
    }

    async fn observe(&mut self) -> Result<Live, TargetError> {
        let roles = self.roles().await?;
        let stable = self.release_of(roles.stable.as_deref()).await?;
        let new = match (&roles.new, &roles.stable) {
            (Some(n), Some(s)) if n == s => None,
            (n, _) => self.release_of(n.as_deref()).await?,
        };
        let new_weight = if new.is_some() { roles.percent } else { 0 };
        Ok(Live { stable, new, new_weight })
    }

    async fn preflight(&mut self, release: &Release) -> Result<(), TargetError> {
        self.image_reference(release)?;
        self.app().await?;
        Ok(())
    }

    async fn start_new(&mut self, release: &Release, _replicas: u32) -> Result<String, TargetError> {
        let image = self.image_reference(release)?;
        let app = self.app().await?;
        let suffix = revision_suffix(release);
        let name = format!("{}--{suffix}", self.settings.app);
        let label = label(release);
        let roles = roles(&app);
        let Some(stable) = roles.stable.clone().filter(|s| *s != name) else {
            return Err(TargetError::new(format!("no revision of {} takes traffic to go back to", self.what()))
                .with_hint("deploy the app's first revision with `az containerapp update`, then use gantry"));
        };
        self.tags("Merge", &[(TAG_STABLE, &stable), (TAG_NEW, &name)]).await?;
        let existing = self.revision(&name).await?;
        if existing.as_ref().is_none_or(|r| label_of(&r["properties"]["template"]).as_deref() != Some(label.as_str())) {
            let mut template = app["properties"]["template"].clone();
            template["revisionSuffix"] = json!(suffix);
            let containers = template["containers"]
                .as_array_mut()
                .ok_or_else(|| TargetError::new(format!("{} has no containers in its template", self.what())))?;
            let container = match &self.settings.container {
                Some(c) => containers.iter_mut().find(|x| x["name"] == c.as_str()).ok_or_else(|| {
                    TargetError::new(format!("{} has no container `{c}`", self.what()))
                        .with_hint(format!("check `container` in [targets.{}.containerapps]", self.name))
                })?,
                None => containers
                    .first_mut()
                    .ok_or_else(|| TargetError::new(format!("{} has no containers", self.what())))?,
            };
            container["image"] = json!(image);
            let env = container["env"].as_array().cloned().unwrap_or_default();
            let mut env: Vec<Value> = env.into_iter().filter(|e| e["name"] != RELEASE_ENV).collect();
            env.push(json!({ "name": RELEASE_ENV, "value": label }));
            container["env"] = json!(env);
            // Pinned by name, so the new revision takes no traffic when it appears.
            let pinned: Vec<Value> =
                traffic(&app).iter().map(|(r, w)| json!({ "revisionName": r, "weight": w })).collect();
            let body = json!({ "properties": { "configuration": { "ingress": { "traffic": pinned } }, "template": template } });
            self.note(format!("creating revision {name} with {image}"));
            self.patch(&body, &format!("{} (new revision {name})", self.what())).await?;
        }
        let rev = self.wait_revision(&name).await?;
        let fqdn = rev["properties"]["fqdn"]
            .as_str()
            .ok_or_else(|| TargetError::new(format!("revision `{name}` has no FQDN")))?;
        Ok(self.arm().await?.host_url(fqdn))
    }

    async fn shift(&mut self, percent: u8) -> Result<(), TargetError> {
        let roles = self.roles().await?;
        let (Some(stable), Some(new)) = (roles.stable, roles.new) else {
            return Err(TargetError::new(format!("no new revision of {} to send traffic to", self.what())));
        };
        self.set_traffic(&[(&stable, 100 - percent), (&new, percent)]).await
    }

    async fn replace(&mut self, old: u32) -> Result<(), TargetError> {
        self.shift(if old == 0 { 100 } else { 0 }).await
    }

    async fn retire_old(&mut self) -> Result<(), TargetError> {
        let roles = self.roles().await?;
        let Some(new) = roles.new else { return Ok(()) };
        if roles.percent != 100 {
            self.set_traffic(&[(&new, 100)]).await?;
        }
        if let Some(stable) = roles.stable.filter(|s| *s != new) {
            self.deactivate(&stable).await?;
        }
        self.tags("Merge", &[(TAG_STABLE, &new)]).await?;
        self.tags("Delete", &[(TAG_NEW, &new)]).await
    }

    async fn rollback(&mut self) -> Result<(), TargetError> {
        let roles = self.roles().await?;
        let Some(new) = roles.new else { return Ok(()) };
        let Some(stable) = roles.stable.filter(|s| *s != new) else {
            return Err(TargetError::new(format!("no earlier revision of {} to put traffic back on", self.what())));
        };
        self.set_traffic(&[(&stable, 100)]).await?;
        self.deactivate(&new).await?;
        let app = self.app().await?;
        let current = app["tags"][TAG_NEW].as_str().unwrap_or_default().to_owned();
        self.tags("Delete", &[(TAG_NEW, &current)]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_suffixes_follow_the_naming_rule() {
        let release = |v: &str| Release {
            version: v.parse().unwrap(),
            digest: "ABCDEF1234567890".into(),
            artifacts: Default::default(),
        };
        assert_eq!(revision_suffix(&release("1.2.3")), "v1-2-3-abcdef12");
        assert_eq!(revision_suffix(&release("1.2.3-rc.1+build.5")), "v1-2-3-rc-1-build-5-abcdef12");
    }

    #[test]
    fn weights_and_tags_say_who_is_stable_and_who_is_new() {
        let app = json!({ "tags": {}, "properties": { "latestRevisionName": "a--one",
            "configuration": { "ingress": { "traffic": [{ "latestRevision": true, "weight": 100 }] } } } });
        assert_eq!(roles(&app), Roles { stable: Some("a--one".into()), new: None, percent: 0 });
        let app = json!({ "tags": { "gantry-stable": "a--one", "gantry-new": "a--two" }, "properties": {
            "configuration": { "ingress": { "traffic": [{ "revisionName": "a--one", "weight": 90 }, { "revisionName": "a--two", "weight": 10 }] } } } });
        assert_eq!(roles(&app), Roles { stable: Some("a--one".into()), new: Some("a--two".into()), percent: 10 });
    }
}
