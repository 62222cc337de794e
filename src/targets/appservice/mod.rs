//! The `appservice` target: an Azure App Service app, zip-deployed through Kudu's OneDeploy
//! (`kudu.rs`), with ARM (`site.rs`) for everything else. Which way it cuts over is decided
//! by the app's plan, read through ARM, and `gantry plan` says which applies:
//!
//! - **Slot swap** (the plan's tier has deployment slots, Standard and up, and the target
//!   names a `slot`): `start-new` deploys to the slot, whose own host name is the preview
//!   that `gate-new` checks; `shift 100%` swaps the slot into production (ARM `slotsswap`, a
//!   long-running operation); after the swap the new version answers on production, so bakes
//!   watch that; a failure after the swap swaps back. The old version stays warm in the slot.
//! - **Direct** (Free, Shared and Basic plans have no slots, or no `slot` is named): the
//!   release is deployed straight to production and takes user traffic as it starts, so
//!   `gate-new` checks the live URL. A failure redeploys the previous release: the ledger
//!   names it, and its zip comes from the release store (`.gantry/releases/`) on this machine.
//!
//! What a new process needs lives in Azure. Which release a slot runs is the application
//! setting `GANTRY_RELEASE` (`VERSION sha256:DIGEST`), set on the slot before its deploy:
//! settings that are not slot settings move with the content in a swap, so the setting
//! stays true through one, even if gantry dies half way. Where a deployment stands is kept
//! in the site's tags, which restart nothing: `gantry-deploying` (the release being
//! deployed), `gantry-previous` (what ran before it, `none` when nothing gantry knows of)
//! and, for direct deploys, `gantry-release` (what production runs).

mod kudu;
mod site;

use std::path::{Path, PathBuf};

use tokio::sync::OnceCell;

use self::site::{Hosts, Plan, Site};
use super::direct::{
    NONE, Roles, TAG_DEPLOYING, TAG_PREVIOUS, TAG_RELEASE, direct_roles, label, live_version, parse_label,
};
use super::{Live, Progress, Release, Target, TargetError};
use crate::azure::{Arm, AzureError};
use crate::config;
use crate::rollout::Step;

/// The application setting naming the release a slot runs.
const RELEASE_SETTING: &str = "GANTRY_RELEASE";

pub struct AppServiceTarget {
    name: String,
    settings: config::AppServiceTarget,
    /// Where deployed releases are kept (`.gantry/releases/`): a direct rollback's zip.
    release_store: PathBuf,
    site: OnceCell<Site>,
    layout: OnceCell<Layout>,
    /// This process swapped the new version into production (bakes then watch production).
    swapped: bool,
    progress: Option<Progress>,
}

/// How the app is laid out, read once per process.
#[derive(Debug, Clone)]
struct Layout {
    plan: Plan,
    production: Hosts,
    mode: Mode,
}

#[derive(Debug, Clone)]
enum Mode {
    Swap { slot: String, hosts: Hosts },
    Direct,
}

impl AppServiceTarget {
    pub fn new(name: &str, settings: &config::AppServiceTarget, release_store: &Path) -> Self {
        Self {
            name: name.to_owned(),
            settings: settings.clone(),
            release_store: release_store.to_owned(),
            site: OnceCell::new(),
            layout: OnceCell::new(),
            swapped: false,
            progress: None,
        }
    }

    pub fn set_progress(&mut self, progress: Progress) {
        self.progress = Some(progress);
    }

    async fn site(&self) -> Result<&Site, AzureError> {
        self.site
            .get_or_try_init(|| async {
                let arm = Arm::from_env()?;
                let s = &self.settings;
                Ok(Site::new(arm, &s.subscription, &s.resource_group, &s.app))
            })
            .await
    }

    async fn layout(&self) -> Result<&Layout, AzureError> {
        self.layout
            .get_or_try_init(|| async {
                let site = self.site().await?;
                let resource = site.get(None).await.map_err(|e| self.config_hint(e))?;
                let plan = site.plan(&resource).await?;
                let production = site.hosts(&resource, None)?;
                let mode = match &self.settings.slot {
                    Some(slot) if plan.has_slots() => {
                        let resource = site.get(Some(slot)).await.map_err(|e| {
                            if e.is_not_found() {
                                AzureError::new(format!("{} does not exist", site.slot_what(Some(slot)))).with_hint(format!(
                                    "create it: `az webapp deployment slot create --name {} --resource-group {} --slot {slot}`, or remove `slot` from [targets.{}.appservice] to deploy straight to production",
                                    self.settings.app, self.settings.resource_group, self.name
                                ))
                            } else {
                                e
                            }
                        })?;
                        Mode::Swap { slot: slot.clone(), hosts: site.hosts(&resource, Some(slot))? }
                    }
                    _ => Mode::Direct,
                };
                Ok(Layout { plan, production, mode })
            })
            .await
    }

    /// A not-found app gets a hint that names the target's settings.
    fn config_hint(&self, e: AzureError) -> AzureError {
        if e.is_not_found() {
            let hint = format!(
                "check `subscription`, `resource_group` and `app` in [targets.{}.appservice], and that the identity can read them",
                self.name
            );
            e.with_hint(hint)
        } else {
            e
        }
    }

    /// The release's zip, from the configured artifact.
    fn zip<'r>(&self, release: &'r Release) -> Result<&'r PathBuf, TargetError> {
        release.artifact(self.settings.artifact.as_str())
    }

    /// The zip of a release deployed earlier, from the release store: `LABEL` is
    /// `VERSION sha256:DIGEST`.
    fn stored_zip(&self, label: &str) -> Result<PathBuf, TargetError> {
        let (version, digest) = parse_label(label)
            .ok_or_else(|| TargetError::new(format!("`{label}` in the tags of the app names no gantry release")))?;
        super::direct::stored_artifact(&self.release_store, &version, &digest, self.settings.artifact.as_str())
    }

    async fn roles(&self) -> Result<Roles, AzureError> {
        let layout = self.layout().await?;
        let site = self.site().await?;
        let tags = site.tags().await?;
        let tag = |name: &str| tags.get(name).filter(|v| !v.is_empty()).cloned();
        Ok(match &layout.mode {
            Mode::Direct => direct_roles(tag(TAG_RELEASE), tag(TAG_PREVIOUS), tag(TAG_DEPLOYING)),
            Mode::Swap { slot, .. } => {
                let production = site.settings(None).await?.remove(RELEASE_SETTING);
                let staged = site.settings(Some(slot)).await?.remove(RELEASE_SETTING);
                swap_roles(production, staged, tag(TAG_PREVIOUS), tag(TAG_DEPLOYING))
            }
        })
    }

    fn note(&self, message: String) {
        if let Some(p) = &self.progress {
            let _ = p.send(message);
        }
    }

    /// `gantry plan`'s view: the plan, which way the cutover goes, and the hosts.
    pub async fn plan_notes(&mut self, release: Option<&Release>) -> Result<Vec<String>, TargetError> {
        let layout = self.layout().await.map_err(AzureError::into_target)?.clone();
        let plan = &layout.plan;
        let mut notes = vec![format!(
            "App Service plan `{}` is {} ({}): {}",
            plan.name,
            plan.sku,
            plan.tier,
            if plan.has_slots() { "it has deployment slots" } else { "it has no deployment slots" }
        )];
        match &layout.mode {
            Mode::Swap { slot, hosts } => {
                notes.push(format!(
                    "blue-green by slot swap: deploy to slot `{slot}` (OneDeploy on {}), gate on {}, swap it into production, bake on {}; a failure after the swap swaps back, and the old version stays in the slot",
                    hosts.scm, hosts.url, self.public_url()
                ));
            }
            Mode::Direct => {
                let why = match &self.settings.slot {
                    Some(slot) => format!("`slot = \"{slot}\"` applies once the plan is Standard or higher"),
                    None if plan.has_slots() => {
                        format!("set `slot` in [targets.{}.appservice] to deploy blue-green through a slot", self.name)
                    }
                    None => "no slot is configured".into(),
                };
                notes.push(format!(
                    "direct deploy ({why}): OneDeploy to production on {}; the release takes user traffic as it starts, so gate-new checks {}; a failure redeploys the previous release from the release store",
                    layout.production.scm,
                    self.public_url()
                ));
                let roles = self.roles().await.map_err(AzureError::into_target)?;
                match roles.stable.as_deref().filter(|s| *s != NONE) {
                    Some(live) if self.stored_zip(live).is_err() => notes.push(format!(
                        "warning: the live release ({live}) is not in the release store here: a failed deploy could not be rolled back from this machine"
                    )),
                    Some(live) => notes.push(format!("rollback target: {live}")),
                    None => notes.push(
                        "warning: no release gantry deployed is live: a failed first deploy cannot be rolled back".into(),
                    ),
                }
            }
        }
        if let Some(release) = release
            && !release.artifacts.is_empty()
        {
            self.zip(release)?;
        }
        Ok(notes)
    }

    fn swap_slot(&self) -> Option<&str> {
        match self.layout.get().map(|l| &l.mode) {
            Some(Mode::Swap { slot, .. }) => Some(slot),
            _ => None,
        }
    }

    async fn start_swap(&mut self, release: &Release, slot: &str, hosts: &Hosts) -> Result<String, AzureError> {
        let zip = self.zip(release).map_err(|e| AzureError::new(e.to_string()))?.clone();
        let label = label(release);
        let site = self.site().await?;
        site.merge_tags(&[(TAG_DEPLOYING, &label)]).await?;
        site.set_setting(Some(slot), RELEASE_SETTING, &label).await?;
        kudu::deploy(&site.arm, &hosts.scm, &zip, &site.slot_what(Some(slot)), self.progress.as_ref()).await?;
        Ok(hosts.url.clone())
    }

    async fn start_direct(&mut self, release: &Release) -> Result<String, AzureError> {
        let zip = self.zip(release).map_err(|e| AzureError::new(e.to_string()))?.clone();
        let site = self.site().await?;
        site.tagged().begin(&label(release)).await?;
        let scm = self.layout().await?.production.scm.clone();
        kudu::deploy(&site.arm, &scm, &zip, &site.what, self.progress.as_ref()).await?;
        Ok(self.public_url())
    }

    async fn swap(&mut self, slot: &str, back: bool) -> Result<(), AzureError> {
        let site = self.site().await?;
        self.note(if back {
            format!("swapping slot `{slot}` back: production returns to the previous version")
        } else {
            format!("swapping slot `{slot}` into production")
        });
        site.swap(slot).await?;
        self.swapped = !back;
        Ok(())
    }

    async fn rollback_direct(&mut self) -> Result<(), TargetError> {
        let site = self.site().await.map_err(AzureError::into_target)?.clone();
        let tagged = site.tagged();
        let Some(previous) = tagged.to_restore().await? else { return Ok(()) };
        let zip = self.stored_zip(&previous)?;
        self.note(format!("redeploying {previous} to production"));
        let scm = self.layout().await.map_err(AzureError::into_target)?.production.scm.clone();
        kudu::deploy(&site.arm, &scm, &zip, &site.what, self.progress.as_ref())
            .await
            .map_err(AzureError::into_target)?;
        tagged.restored(&previous).await.map_err(AzureError::into_target)
    }
}

/// Slot swaps: what production and the slot run (their `GANTRY_RELEASE`), and the tags.
/// `gantry-previous` that differs from production's release means the swap happened.
fn swap_roles(
    production: Option<String>,
    staged: Option<String>,
    previous: Option<String>,
    deploying: Option<String>,
) -> Roles {
    let live = production.clone().unwrap_or_else(|| NONE.into());
    if let Some(previous) = previous
        && previous != live
    {
        return Roles { stable: Some(previous).filter(|p| p != NONE), new: production, percent: 100 };
    }
    match (deploying, staged) {
        (Some(d), Some(s)) if d == s && production.as_deref() != Some(&s) => {
            Roles { stable: production, new: Some(s), percent: 0 }
        }
        _ => Roles { stable: production, new: None, percent: 0 },
    }
}

fn err(e: AzureError) -> TargetError {
    e.into_target()
}

impl Target for AppServiceTarget {
    fn replicas(&self) -> u32 {
        1
    }

    fn public_url(&self) -> String {
        if let Some(url) = &self.settings.url {
            return url.trim_end_matches('/').to_owned();
        }
        self.layout
            .get()
            .map_or_else(|| format!("https://{}.azurewebsites.net", self.settings.app), |l| l.production.url.clone())
    }

    fn new_version_url(&self, preview: &str) -> String {
        if self.swapped { self.public_url() } else { preview.to_owned() }
    }

    fn step_detail(&self, step: &Step) -> Option<String> {
        let layout = self.layout.get()?;
        Some(match (&layout.mode, step) {
            (Mode::Swap { slot, .. }, Step::StartNew { .. }) => {
                format!("zip-deploy the release to slot `{slot}` (OneDeploy), no user traffic")
            }
            (Mode::Swap { slot, .. }, Step::GateNew) => format!("health-gate slot `{slot}` on its own host name"),
            (Mode::Swap { slot, .. }, Step::Shift { percent: 100 }) => {
                format!("swap slot `{slot}` into production (ARM slotsswap)")
            }
            (Mode::Swap { .. }, Step::Bake { duration }) => format!(
                "bake for {}: watch production's health (the new version since the swap)",
                humantime::format_duration(*duration)
            ),
            (Mode::Swap { slot, .. }, Step::RetireOld) => {
                format!("clear gantry's tags; the old version stays in slot `{slot}`, ready to swap back by hand")
            }
            (Mode::Direct, Step::StartNew { .. }) => {
                "zip-deploy the release to production (OneDeploy): it takes user traffic as it starts".into()
            }
            (Mode::Direct, Step::GateNew) => "health-gate production (a direct deploy has no preview)".into(),
            (Mode::Direct, Step::Bake { duration }) => format!(
                "bake for {}: watch production's health (the new version since its deploy)",
                humantime::format_duration(*duration)
            ),
            (Mode::Direct, Step::Shift { .. }) => "nothing to shift: a direct deploy is live once deployed".into(),
            (Mode::Direct, Step::RetireOld) => "record the release as production's in the app's tags".into(),
            _ => return None,
        })
    }

    async fn observe(&mut self) -> Result<Live, TargetError> {
        let roles = self.roles().await.map_err(err)?;
        let stable = live_version(roles.stable.as_deref());
        let new = live_version(roles.new.as_deref());
        let new_weight = if new.is_some() { roles.percent } else { 0 };
        Ok(Live { stable, new, new_weight })
    }

    async fn preflight(&mut self, release: &Release) -> Result<(), TargetError> {
        let zip = self.zip(release)?;
        std::fs::metadata(zip).map_err(|e| TargetError::new(format!("cannot read {}: {e}", zip.display())))?;
        self.layout().await.map_err(err)?;
        Ok(())
    }

    async fn start_new(&mut self, release: &Release, _replicas: u32) -> Result<String, TargetError> {
        let layout = self.layout().await.map_err(err)?.clone();
        self.swapped = false;
        match &layout.mode {
            Mode::Swap { slot, hosts } => self.start_swap(release, slot, hosts).await.map_err(err),
            Mode::Direct => self.start_direct(release).await.map_err(err),
        }
    }

    async fn shift(&mut self, percent: u8) -> Result<(), TargetError> {
        self.layout().await.map_err(err)?;
        let Some(slot) = self.swap_slot().map(str::to_owned) else {
            // A direct deploy took all traffic when it was deployed.
            return Ok(());
        };
        let roles = self.roles().await.map_err(err)?;
        let swapped = roles.percent == 100;
        match percent {
            100 if !swapped => {
                let Some(new) = roles.new else {
                    return Err(TargetError::new(format!(
                        "slot `{slot}` holds no release being deployed: nothing to swap into production"
                    )));
                };
                let live = roles.stable.unwrap_or_else(|| NONE.into());
                self.site().await.map_err(err)?.merge_tags(&[(TAG_PREVIOUS, &live)]).await.map_err(err)?;
                self.note(format!("swapping {new} into production"));
                self.swap(&slot, false).await.map_err(err)
            }
            0 if swapped => self.swap(&slot, true).await.map_err(err),
            0 | 100 => Ok(()),
            p => Err(TargetError::new(format!("an App Service slot swap moves all traffic at once, not {p}%"))
                .with_hint("use a blue-green or all-at-once strategy")),
        }
    }

    async fn replace(&mut self, old: u32) -> Result<(), TargetError> {
        self.shift(if old == 0 { 100 } else { 0 }).await
    }

    async fn retire_old(&mut self) -> Result<(), TargetError> {
        self.layout().await.map_err(err)?;
        let site = self.site().await.map_err(err)?.clone();
        if self.swap_slot().is_none() {
            return site.tagged().finish().await.map_err(err);
        }
        site.delete_tags(&[TAG_DEPLOYING, TAG_PREVIOUS]).await.map_err(err)
    }

    async fn rollback(&mut self) -> Result<(), TargetError> {
        self.layout().await.map_err(err)?;
        let Some(slot) = self.swap_slot().map(str::to_owned) else {
            return self.rollback_direct().await;
        };
        let roles = self.roles().await.map_err(err)?;
        if roles.percent == 100 {
            self.swap(&slot, true).await.map_err(err)?;
        }
        let site = self.site().await.map_err(err)?;
        site.delete_tags(&[TAG_DEPLOYING, TAG_PREVIOUS]).await.map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::direct::tests::{roles, s};

    #[test]
    fn slot_settings_and_tags_say_who_is_stable_and_who_is_new() {
        assert_eq!(swap_roles(s("1"), s("0"), None, None), roles(Some("1"), None, 0), "nothing under way");
        assert_eq!(swap_roles(s("1"), s("2"), None, s("2")), roles(Some("1"), Some("2"), 0), "staged");
        assert_eq!(swap_roles(s("1"), s("2"), None, None), roles(Some("1"), None, 0), "a slot gantry is not using");
        assert_eq!(swap_roles(s("2"), s("1"), s("1"), s("2")), roles(Some("1"), Some("2"), 100), "swapped");
        assert_eq!(swap_roles(s("1"), s("2"), s("1"), s("2")), roles(Some("1"), Some("2"), 0), "about to swap");
        assert_eq!(swap_roles(s("2"), None, s("none"), s("2")), roles(None, Some("2"), 100), "first swap");
        assert_eq!(swap_roles(None, s("2"), s("none"), s("2")), roles(None, Some("2"), 0), "first, swapped back");
    }
}
