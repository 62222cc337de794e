//! The `render` target: a Render service deployed through Render's REST API (`api.rs`).
//!
//! Render runs one live deploy per service and cuts over all at once: a new deploy takes
//! every request when it goes live (after Render's own health check on the service's health
//! check path), and the deploy it replaces becomes `deactivated`. So the engine's steps map
//! onto Render like this (`step_detail` says the same in `plan`):
//! - `start-new`: Trigger deploy (the release's image tag, or its commit), or, when an
//!   earlier deploy of the same release exists, Roll back deploy to it (Render reuses its
//!   build); then follow it until `live` (a failed status fails the phase at once, and the
//!   engine's phase deadline bounds the wait). The "no traffic before `gate-new`" rule is
//!   Render's on this path: its own health check, not gantry's, admits the new instance.
//! - `gate-new`, `bake`, `gate-live`: gantry's health checks on the service URL.
//! - `shift`: nothing (Render already sends all traffic to the live deploy).
//! - `verify`: the live deploy is the one gantry triggered, running the release.
//! - `retire-old`: nothing on Render (it deactivated the old deploy itself).
//! - `rollback`: Cancel deploy when it is still in progress, then Roll back deploy to the
//!   deploy that was live before, followed until live.
//!
//! Which release a deploy runs: for an image-backed service the tag of the image reference
//! the deploy was created with (`HOST/REPO:VERSION`, `+` written `_`), for a Git-backed one
//! its commit. Version (or commit) alone names a release only together with gantry's
//! records: the ledger's releases for this target (version and digest) and, for commits,
//! each release's `release.json` in the release store. A deploy matching none of them is
//! reported as not gantry's (nothing known live).

mod api;

use std::path::PathBuf;
use std::time::Duration;

use self::api::{Api, Deploy, Service};
use super::{Live, LiveVersion, Progress, Release, Target, TargetError};
use crate::config;
use crate::rollout::Step;
use crate::state::record::{Deployment, ReleaseRef, State};

pub use self::api::API_URL_ENV;

/// Deploys read when looking for the live one and for the one to roll back to.
const DEPLOYS_READ: u32 = 50;

pub struct RenderTarget {
    settings: config::RenderTarget,
    /// `[images.X].repository` when `image` is set.
    image_repository: Option<String>,
    /// Releases gantry deployed here (newest first), from the ledger and this run.
    known: Vec<Known>,
    /// The ledger's unfinished deployment of this target, if a dead process left one.
    unfinished: Option<Deploying>,
    releases_dir: PathBuf,
    api: Option<Api>,
    service: Option<Service>,
    deploying: Option<Deploying>,
    progress: Option<Progress>,
}

/// A release and what identifies it on Render besides its version.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Known {
    release: ReleaseRef,
    commit: Option<String>,
}

/// The deployment in progress: what goes live and what was live.
#[derive(Debug, Clone)]
struct Deploying {
    release: ReleaseRef,
    previous: Option<ReleaseRef>,
    /// The deploy gantry triggered (or rolled back to) for `release`.
    deploy: Option<String>,
    /// The deploy that was live before.
    before: Option<String>,
}

impl RenderTarget {
    /// `ledger` is the environment's deployment records; `releases_dir` the release store.
    pub fn new(
        name: &str,
        settings: &config::RenderTarget,
        image_repository: Option<String>,
        ledger: &[Deployment],
        releases_dir: PathBuf,
    ) -> Self {
        let mine: Vec<&Deployment> = ledger.iter().rev().filter(|d| d.target == name).collect();
        let mut known: Vec<Known> = Vec::new();
        for d in &mine {
            for r in std::iter::once(&d.release).chain(d.previous.iter()) {
                if !known.iter().any(|k| k.release == *r) {
                    known.push(Known { release: r.clone(), commit: commit_of(&releases_dir, r) });
                }
            }
        }
        let unfinished = mine.iter().find(|d| d.state == State::Running).map(|d| Deploying {
            release: d.release.clone(),
            previous: d.previous.clone(),
            deploy: None,
            before: None,
        });
        Self {
            settings: settings.clone(),
            image_repository,
            known,
            unfinished,
            releases_dir,
            api: None,
            service: None,
            deploying: None,
            progress: None,
        }
    }

    pub fn set_progress(&mut self, progress: Progress) {
        self.progress = Some(progress);
    }

    fn say(&self, line: String) {
        if let Some(p) = &self.progress {
            let _ = p.send(line);
        }
    }

    fn key_env(&self) -> &str {
        self.settings.api_key_env.as_deref().unwrap_or("RENDER_API_KEY")
    }

    fn poll(&self) -> Duration {
        self.settings.poll_interval.map_or(Duration::from_secs(5), |d| d.get())
    }

    fn api(&mut self) -> Result<&Api, TargetError> {
        if self.api.is_none() {
            self.api = Some(Api::new(&self.settings.service, self.key_env())?);
        }
        Ok(self.api.as_ref().expect("just set"))
    }

    /// The service, read once per process.
    async fn service(&mut self) -> Result<Service, TargetError> {
        if let Some(s) = &self.service {
            return Ok(s.clone());
        }
        let progress = self.progress.clone();
        let say = move |line: String| {
            if let Some(p) = &progress {
                let _ = p.send(line);
            }
        };
        let service = self.api()?.service(&say).await?;
        self.service = Some(service.clone());
        Ok(service)
    }

    async fn deploys(&mut self) -> Result<Vec<Deploy>, TargetError> {
        let progress = self.progress.clone();
        let say = move |line: String| {
            if let Some(p) = &progress {
                let _ = p.send(line);
            }
        };
        self.api()?.deploys(DEPLOYS_READ, &say).await
    }

    fn replicas_of(&self) -> u32 {
        self.service.as_ref().and_then(|s| s.service_details.num_instances).unwrap_or(1).max(1)
    }

    /// Which release `deploy` runs, when it is one gantry knows.
    fn identify(&self, deploy: &Deploy) -> Option<ReleaseRef> {
        if let Some(d) = &self.deploying
            && d.deploy.as_deref() == Some(deploy.id.as_str())
        {
            return Some(d.release.clone());
        }
        let reference = deploy.image.as_ref().and_then(|i| i.reference.as_deref());
        match (reference, &deploy.commit) {
            (Some(reference), _) => {
                let version = version_of_tag(reference)?;
                self.known.iter().find(|k| k.release.version == version).map(|k| k.release.clone())
            }
            (None, Some(commit)) => self
                .known
                .iter()
                .find(|k| k.commit.as_deref().is_some_and(|c| same_commit(c, &commit.id)))
                .map(|k| k.release.clone()),
            _ => None,
        }
    }

    fn live_version(&self, release: &ReleaseRef, replicas: u32) -> LiveVersion {
        LiveVersion { version: release.version.clone(), digest: release.digest.clone(), replicas }
    }

    /// What the deploy for `release` is: `imageUrl` or `commitId`, and a phrase for messages.
    fn source_for(&self, service: &Service, release: &Release) -> Result<(serde_json::Value, String), TargetError> {
        let tag = release.version.to_string().replace('+', "_");
        match &service.image_path {
            Some(path) => {
                let repository = repository_of(path);
                if let Some(wanted) = &self.image_repository
                    && !repository.trim_end_matches('/').ends_with(wanted.trim_matches('/'))
                {
                    return Err(TargetError::new(format!(
                        "Render service `{}` runs image `{path}`, not the repository `{wanted}` of `image = \"{}\"`",
                        self.settings.service,
                        self.settings.image.as_ref().map(ToString::to_string).unwrap_or_default()
                    ))
                    .with_hint(
                        "Render deploys only images of the repository the service is configured with: fix `image` in gantry.toml or the service's image in Render",
                    ));
                }
                let url = format!("{repository}:{tag}");
                Ok((serde_json::json!({ "imageUrl": url }), format!("image {url}")))
            }
            None => {
                if self.settings.image.is_some() {
                    return Err(TargetError::new(format!(
                        "Render service `{}` builds from Git ({}), but the target sets `image`",
                        self.settings.service,
                        service.repo.as_deref().unwrap_or("a repository")
                    ))
                    .with_hint(
                        "remove `image` to deploy the release's commit, or point `service` at an image-backed service",
                    ));
                }
                let Some(commit) = commit_of(&self.releases_dir, &release.into()) else {
                    return Err(TargetError::new(format!(
                        "release {} records no Git commit, and Render service `{}` builds from Git",
                        release.label(),
                        self.settings.service
                    ))
                    .with_hint(
                        "package the release from a Git checkout (its release.json names the commit Render builds)",
                    ));
                };
                let short = commit[..commit.len().min(12)].to_owned();
                Ok((serde_json::json!({ "commitId": commit }), format!("commit {short}")))
            }
        }
    }

    /// Follows deploy `id` until it is finished; a failed status is an error.
    async fn follow(&mut self, id: &str, what: &str) -> Result<Deploy, TargetError> {
        let poll = self.poll();
        let mut last = String::new();
        let progress = self.progress.clone();
        let say = move |line: String| {
            if let Some(p) = &progress {
                let _ = p.send(line);
            }
        };
        loop {
            let deploy = self.api()?.deploy(id, &say).await?;
            if deploy.status != last {
                say(format!("deploy {id} ({what}): {}", deploy.status));
                last.clone_from(&deploy.status);
            }
            if deploy.finished() {
                if deploy.failed() || deploy.status == "deactivated" {
                    let why = match deploy.status.as_str() {
                        "build_failed" => "the build failed (its logs are in the Render Dashboard)",
                        "update_failed" => {
                            "the new instance did not start or failed Render's health check (see the deploy's logs)"
                        }
                        "pre_deploy_failed" => "the pre-deploy command failed (see the deploy's logs)",
                        "canceled" => "it was canceled",
                        _ => "a newer deploy replaced it before gantry saw it live",
                    };
                    return Err(TargetError::new(format!(
                        "Render deploy {id} of service `{}` ({what}) ended `{}`: {why}",
                        self.settings.service, deploy.status
                    )));
                }
                return Ok(deploy);
            }
            tokio::time::sleep(poll).await;
        }
    }
}

impl Target for RenderTarget {
    fn replicas(&self) -> u32 {
        1
    }

    fn public_url(&self) -> String {
        self.settings
            .url
            .clone()
            .or_else(|| self.service.as_ref().and_then(|s| s.service_details.url.clone()))
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_owned()
    }

    fn step_detail(&self, step: &Step) -> Option<String> {
        let service = &self.settings.service;
        Some(match step {
            Step::StartNew { .. } => format!(
                "trigger a Render deploy of the release on `{service}` and follow it until live (Render moves all traffic to it then, after its own health check)"
            ),
            Step::GateNew => "health-gate the service URL, which the new deploy now serves".into(),
            Step::Shift { .. } => "nothing to do: Render already sends all traffic to the live deploy".into(),
            Step::GateLive => "health-gate the service URL".into(),
            Step::Bake { duration } => format!(
                "bake for {}: watch the service URL's health (the new deploy serves everyone already)",
                humantime::format_duration(*duration)
            ),
            Step::Verify => {
                "verify that the service's live deploy is the one gantry triggered, running the release".into()
            }
            Step::RetireOld => "nothing to do on Render: it deactivated the previous deploy itself".into(),
            _ => return None,
        })
    }

    async fn observe(&mut self) -> Result<Live, TargetError> {
        self.service().await?;
        let deploys = self.deploys().await?;
        let replicas = self.replicas_of();
        let live = deploys.iter().find(|d| d.status == "live");
        let Some(d) = self.deploying.clone() else {
            let stable = live.and_then(|l| self.identify(l)).map(|r| self.live_version(&r, replicas));
            return Ok(Live { stable, new: None, new_weight: 0 });
        };
        let ours = d.deploy.as_deref().and_then(|id| deploys.iter().find(|x| x.id == id));
        let ours_live = ours.is_some_and(|o| o.status == "live");
        let new = ours
            .filter(|o| !o.failed() && o.status != "deactivated")
            .map(|_| self.live_version(&d.release, if ours_live { replicas } else { 0 }));
        let stable = if ours_live {
            d.previous.as_ref().map(|p| self.live_version(p, 0))
        } else {
            live.and_then(|l| self.identify(l)).map(|r| self.live_version(&r, replicas))
        };
        Ok(Live { stable, new_weight: if ours_live && new.is_some() { 100 } else { 0 }, new })
    }

    async fn preflight(&mut self, release: &Release) -> Result<(), TargetError> {
        let service = self.service().await?;
        if service.suspended == "suspended" {
            return Err(TargetError::new(format!("Render service `{}` ({}) is suspended", service.id, service.name))
                .with_hint("resume it in the Render Dashboard (or POST /v1/services/{id}/resume) first"));
        }
        if matches!(service.kind.as_str(), "static_site" | "cron_job" | "background_worker") {
            return Err(TargetError::new(format!(
                "Render service `{}` is a {}: gantry deploys web and private services, which serve health checks",
                service.id, service.kind
            ))
            .with_hint("point `service` at a web service"));
        }
        self.source_for(&service, release)?;
        if self.public_url().is_empty() {
            return Err(TargetError::new(format!("Render reports no URL for service `{}`", service.id))
                .with_hint("set `url` in the target (the address users reach it on)"));
        }
        Ok(())
    }

    async fn start_new(&mut self, release: &Release, _replicas: u32) -> Result<String, TargetError> {
        let service = self.service().await?;
        let wanted = ReleaseRef::from(release);
        if !self.known.iter().any(|k| k.release == wanted) {
            let commit = commit_of(&self.releases_dir, &wanted);
            self.known.insert(0, Known { release: wanted.clone(), commit });
        }
        let (body, what) = self.source_for(&service, release)?;
        if self.deploying.as_ref().is_none_or(|d| d.release != wanted) {
            let deploys = self.deploys().await?;
            let live = deploys.iter().find(|d| d.status == "live");
            self.deploying = Some(Deploying {
                release: wanted.clone(),
                previous: live.and_then(|l| self.identify(l)),
                deploy: None,
                before: live.map(|l| l.id.clone()),
            });
        }
        let started = self.deploying.as_ref().and_then(|d| d.deploy.clone());
        let id = match started {
            Some(id) => id,
            None => {
                let deploys = self.deploys().await?;
                let before = self.deploying.as_ref().and_then(|d| d.before.clone());
                // A deploy of this very release that was live before: Render reuses its build.
                let earlier = deploys
                    .iter()
                    .filter(|d| d.status == "deactivated" && Some(&d.id) != before.as_ref())
                    .find(|d| self.identify(d).as_ref() == Some(&wanted))
                    .map(|d| d.id.clone());
                let progress = self.progress.clone();
                let say = move |line: String| {
                    if let Some(p) = &progress {
                        let _ = p.send(line);
                    }
                };
                let deploy = match earlier {
                    Some(earlier) => {
                        let d = self.api()?.rollback(&earlier, &say).await?;
                        say(format!("rolling back to deploy {earlier} of {what}: new deploy {}", d.id));
                        d
                    }
                    None => {
                        let d = self.api()?.trigger(body, &say).await?;
                        say(format!("triggered deploy {} of {what}", d.id));
                        d
                    }
                };
                if let Some(dep) = self.deploying.as_mut() {
                    dep.deploy = Some(deploy.id.clone());
                }
                deploy.id
            }
        };
        let deploy = self.follow(&id, &what).await?;
        self.say(format!("deploy {id} is live: {}", deploy.source()));
        Ok(self.public_url())
    }

    async fn shift(&mut self, _percent: u8) -> Result<(), TargetError> {
        Ok(())
    }

    async fn replace(&mut self, _old: u32) -> Result<(), TargetError> {
        Ok(())
    }

    async fn retire_old(&mut self) -> Result<(), TargetError> {
        self.deploying = None;
        self.unfinished = None;
        Ok(())
    }

    async fn rollback(&mut self) -> Result<(), TargetError> {
        let Some(d) = self.deploying.clone().or_else(|| self.unfinished.clone()) else { return Ok(()) };
        self.service().await?;
        let mut deploys = self.deploys().await?;
        // A fresh process knows the release, not the deploy: the newest one running it.
        let ours_id = d.deploy.clone().or_else(|| {
            deploys
                .iter()
                .find(|x| !x.failed() && x.status != "deactivated" && self.identify(x).as_ref() == Some(&d.release))
                .map(|x| x.id.clone())
        });
        let progress = self.progress.clone();
        let say = move |line: String| {
            if let Some(p) = &progress {
                let _ = p.send(line);
            }
        };
        if let Some(ours) = ours_id.as_deref().and_then(|id| deploys.iter().find(|x| x.id == id))
            && !ours.finished()
        {
            let id = ours.id.clone();
            let canceled = self.api()?.cancel(&id, &say).await?;
            say(format!("canceled deploy {id}: {}", canceled.status));
            // It may have gone live meanwhile; read again.
            deploys = self.deploys().await?;
        }
        let live = deploys.iter().find(|x| x.status == "live");
        let live_is_ours = live.is_some_and(|l| Some(&l.id) == ours_id.as_ref());
        let back = live.is_some_and(|l| !live_is_ours && self.identify(l) == d.previous)
            || (live.is_none() && d.previous.is_none());
        if !back {
            let position = ours_id.as_ref().and_then(|id| deploys.iter().position(|x| &x.id == id));
            let older = |x: &(usize, &Deploy)| position.is_none_or(|p| x.0 > p);
            let target = d.before.clone().filter(|b| Some(b) != ours_id.as_ref()).or_else(|| {
                deploys
                    .iter()
                    .enumerate()
                    .filter(older)
                    .filter(|(_, x)| matches!(x.status.as_str(), "deactivated" | "live"))
                    .find(|(_, x)| d.previous.is_none() || self.identify(x) == d.previous)
                    .map(|(_, x)| x.id.clone())
            });
            let Some(target) = target else {
                return Err(TargetError::new(format!(
                    "Render service `{}` has no earlier deploy{} to roll back to",
                    self.settings.service,
                    d.previous.as_ref().map(|p| format!(" of {}", p.version)).unwrap_or_default()
                ))
                .with_hint("deploy a good release, or suspend the service in the Render Dashboard"));
            };
            let deploy = self.api()?.rollback(&target, &say).await?;
            say(format!("rolling back to deploy {target}: new deploy {}", deploy.id));
            let back_to =
                d.previous.as_ref().map_or_else(|| "the previous deploy".to_owned(), |p| p.version.to_string());
            // The rollback's deploy runs the earlier deploy's build, so it is that release.
            self.follow(&deploy.id, &format!("rollback to {back_to}")).await?;
        }
        self.deploying = None;
        self.unfinished = None;
        Ok(())
    }
}

impl RenderTarget {
    /// `plan`'s view: how the steps map onto Render, the service and what a deploy sends.
    pub async fn plan_notes(&mut self, release: Option<&Release>) -> Result<Vec<String>, TargetError> {
        let service = self.service().await?;
        let health = service.service_details.health_check_path.clone().filter(|p| !p.is_empty());
        let mut notes = vec![
            format!(
                "Render cuts over all at once: a deploy takes all traffic when it goes live{}; gantry then gates `{}` and, on failure, rolls back to the deploy live before (Roll back deploy)",
                health.as_ref().map(|h| format!(" (after Render's own health check on `{h}`)")).unwrap_or_default(),
                self.public_url()
            ),
            format!(
                "service `{}` ({}, {}): {}",
                service.name,
                service.id,
                service.kind,
                match (&service.image_path, &service.repo) {
                    (Some(image), _) =>
                        format!("image-backed ({image}): deploys send `imageUrl` {}:VERSION", repository_of(image)),
                    (None, repo) => format!(
                        "Git-backed ({}{}): deploys send the release's commit as `commitId`",
                        repo.as_deref().unwrap_or("a repository"),
                        service.branch.as_ref().map(|b| format!(" @ {b}")).unwrap_or_default()
                    ),
                }
            ),
        ];
        if let Some(release) = release {
            match self.source_for(&service, release) {
                Ok((_, what)) => notes.push(format!("a deploy of {} sends {what}", release.version)),
                Err(e) => return Err(e),
            }
        }
        let deploys = self.deploys().await?;
        match deploys.iter().find(|d| d.status == "live") {
            Some(live) => notes.push(format!(
                "live deploy {}: {}{}",
                live.id,
                live.source(),
                match self.identify(live) {
                    Some(r) => format!(" = release {}", r.version),
                    None => ", not a release gantry deployed here".into(),
                }
            )),
            None => notes.push("no live deploy yet".into()),
        }
        if let Some(running) = deploys.iter().find(|d| !d.finished()) {
            notes.push(format!(
                "deploy {} is in progress ({}, {}): a new deploy waits behind it",
                running.id,
                running.status,
                running.source()
            ));
        }
        Ok(notes)
    }
}

/// `docker.io/acme/api:1.0@sha256:…` → `docker.io/acme/api`.
fn repository_of(reference: &str) -> String {
    let no_digest = reference.split('@').next().unwrap_or(reference);
    match no_digest.rfind(':') {
        Some(i) if !no_digest[i..].contains('/') => no_digest[..i].to_owned(),
        _ => no_digest.to_owned(),
    }
}

/// The version an image reference's tag names (`_` for semver's `+`), if it is one.
fn version_of_tag(reference: &str) -> Option<semver::Version> {
    let no_digest = reference.split('@').next()?;
    let i = no_digest.rfind(':')?;
    let tag = &no_digest[i + 1..];
    if tag.contains('/') {
        return None;
    }
    tag.trim_start_matches('v').replace('_', "+").parse().ok()
}

fn same_commit(a: &str, b: &str) -> bool {
    let n = a.len().min(b.len());
    n >= 7 && a[..n].eq_ignore_ascii_case(&b[..n])
}

/// The commit in a release's `release.json` in the release store, if it is there.
fn commit_of(releases_dir: &std::path::Path, release: &ReleaseRef) -> Option<String> {
    let dir = format!(
        "{}-{}",
        release.version.to_string().replace('+', "_"),
        &release.digest[..release.digest.len().min(12)]
    );
    let text = std::fs::read(releases_dir.join(dir).join("release.json")).ok()?;
    let manifest: serde_json::Value = serde_json::from_slice(&text).ok()?;
    manifest["commit"].as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_name_their_repository_and_version() {
        assert_eq!(repository_of("docker.io/acme/api:latest"), "docker.io/acme/api");
        assert_eq!(repository_of("localhost:5000/acme/api:1.2.0@sha256:ab"), "localhost:5000/acme/api");
        assert_eq!(repository_of("localhost:5000/acme/api"), "localhost:5000/acme/api");
        assert_eq!(version_of_tag("ghcr.io/a/b:1.2.0_build.5"), Some("1.2.0+build.5".parse().unwrap()));
        assert_eq!(version_of_tag("ghcr.io/a/b:v2.0.0@sha256:ff"), Some("2.0.0".parse().unwrap()));
        assert_eq!(version_of_tag("ghcr.io/a/b:latest"), None);
        assert_eq!(version_of_tag("localhost:5000/a/b"), None);
        assert!(same_commit("abcdef1234", "ABCDEF1"));
        assert!(!same_commit("abc", "abc"));
    }
}
