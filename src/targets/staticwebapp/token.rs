//! The `staticwebapp` target with a deployment token (`token_env`): the release's site is
//! deployed by the Azure Static Web Apps CLI, `swa deploy DIR --env production`, the
//! documented client that takes the token ("Deploy a static web app with Azure Static Web
//! Apps CLI"; `npm install -g @azure/static-web-apps-cli`). The token is handed to it in
//! `SWA_CLI_DEPLOYMENT_TOKEN`, never on its command line, and removed from anything it prints.
//!
//! Nothing on Azure records which release a site runs without ARM, so gantry's ledger does:
//! the live release is the last one that succeeded here, and a deployment left unfinished by a
//! dead process is new (at 100%) over its `previous`. A failure deploys the previous release
//! again from the release store (`.gantry/releases/`), as `appservice` does without slots.

use std::path::PathBuf;
use std::process::Stdio;

use super::super::direct::stored_artifact;
use super::super::{Live, LiveVersion, Progress, Release, Target, TargetError};
use crate::config;
use crate::rollout::Step;
use crate::state::record::{Deployment, ReleaseRef, State};

/// The CLI's name on `PATH` (`GANTRY_SWA_CLI` overrides it).
const SWA: &str = "swa";
const INSTALL: &str = "install it (`npm install -g @azure/static-web-apps-cli`), or set GANTRY_SWA_CLI to its path; or drop `token_env` to deploy through Azure Resource Manager";
/// Lines of the CLI's output kept in an error.
const OUTPUT_LINES: usize = 20;

pub struct TokenSite {
    settings: config::StaticWebAppTarget,
    /// What gantry's ledger says is live, and a deployment a dead process left unfinished.
    live: Option<ReleaseRef>,
    unfinished: Option<(ReleaseRef, Option<ReleaseRef>)>,
    /// This process's deployment: the release and what was live before it.
    deploying: Option<(ReleaseRef, Option<ReleaseRef>)>,
    release_store: PathBuf,
    progress: Option<Progress>,
}

impl TokenSite {
    pub fn new(
        name: &str,
        settings: &config::StaticWebAppTarget,
        ledger: &[Deployment],
        release_store: PathBuf,
    ) -> Self {
        let history = crate::state::target_history(ledger, name);
        Self {
            settings: settings.clone(),
            live: history.live.map(|d| d.release.clone()),
            unfinished: history
                .running
                .filter(|d| d.state == State::Running)
                .map(|d| (d.release.clone(), d.previous.clone())),
            deploying: None,
            release_store,
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

    fn token_env(&self) -> &str {
        self.settings.token_env.as_deref().unwrap_or("AZURE_STATIC_WEB_APPS_API_TOKEN")
    }

    /// The deployment token, from the variable `token_env` names.
    fn token(&self) -> Result<String, TargetError> {
        let var = self.token_env();
        std::env::var(var).ok().map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()).ok_or_else(|| {
            TargetError::new(format!("the deployment token variable {var} is not set"))
                .with_hint(format!(
                    "set {var} to the site's deployment token (`az staticwebapp secrets list --name {} --query properties.apiKey`), e.g. from a GitHub secret",
                    self.settings.app
                ))
        })
    }

    fn cli(&self) -> String {
        std::env::var("GANTRY_SWA_CLI").ok().filter(|c| !c.trim().is_empty()).unwrap_or_else(|| SWA.to_owned())
    }

    /// The release's zip, from the configured artifact.
    fn zip<'r>(&self, release: &'r Release) -> Result<&'r PathBuf, TargetError> {
        release.artifact(self.settings.artifact.as_str())
    }

    /// Unpacks `zip` into a temporary folder and runs `swa deploy` on it.
    async fn deploy(&self, zip: &std::path::Path, what: &str) -> Result<(), TargetError> {
        let token = self.token()?;
        let dir = tempfile::tempdir().map_err(|e| TargetError::new("cannot make a temporary folder").with_source(e))?;
        let file = std::fs::File::open(zip)
            .map_err(|e| TargetError::new(format!("cannot read {}", zip.display())).with_source(e))?;
        zip::ZipArchive::new(file)
            .and_then(|mut a| a.extract(dir.path()))
            .map_err(|e| TargetError::new(format!("cannot unpack {}", zip.display())).with_source(e))?;
        let cli = self.cli();
        self.note(format!("{cli} deploy {what} --env production"));
        let child = tokio::process::Command::new(&cli)
            .arg("deploy")
            .arg(dir.path())
            .args(["--env", "production"])
            .env("SWA_CLI_DEPLOYMENT_TOKEN", &token)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // The engine's phase deadline drops this future: the CLI goes with it.
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                TargetError::new(format!("cannot run `{cli}` (the Azure Static Web Apps CLI)"))
                    .with_source(e)
                    .with_hint(INSTALL)
            })?;
        let out =
            child.wait_with_output().await.map_err(|e| TargetError::new(format!("`{cli}` failed")).with_source(e))?;
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
            .replace(&token, "***");
        if !out.status.success() {
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            let tail = lines[lines.len().saturating_sub(OUTPUT_LINES)..].join("\n");
            return Err(TargetError::new(format!(
                "`{cli} deploy` of {what} to Static Web App `{}` failed ({}):\n{tail}",
                self.settings.app, out.status
            ))
            .with_hint(format!(
                "check that {} holds this site's current deployment token (it changes when reset)",
                self.token_env()
            )));
        }
        Ok(())
    }

    pub async fn plan_notes(&mut self, _release: Option<&Release>) -> Result<Vec<String>, TargetError> {
        let mut notes = vec![format!(
            "direct deploy with the deployment token in {}: `swa deploy` (the Azure Static Web Apps CLI) to the production environment of `{}`; gate-new checks {}; a failure deploys the previous release again from the release store",
            self.token_env(),
            self.settings.app,
            self.public_url()
        )];
        match &self.live {
            Some(live) => match stored_artifact(&self.release_store, &live.version, &live.digest, self.settings.artifact.as_str()) {
                Ok(_) => notes.push(format!("rollback target: {} (from the ledger)", live.version)),
                Err(_) => notes.push(format!(
                    "warning: the live release ({}) is not in the release store here: a failed deploy could not be rolled back from this machine",
                    live.version
                )),
            },
            None => notes.push("warning: the ledger has no release live here: a failed first deploy cannot be rolled back".into()),
        }
        if self.token().is_err() {
            notes.push(format!(
                "warning: {} is not set: a deploy would stop before changing anything",
                self.token_env()
            ));
        }
        Ok(notes)
    }
}

/// `program` as the shell would find it: a path when it has a `/`, else on `PATH`.
fn find_program(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let runnable =
        |p: &std::path::Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if program.contains('/') {
        let path = PathBuf::from(program);
        return runnable(&path).then_some(path);
    }
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(program)).find(|p| runnable(p))
}

fn live_version(r: &ReleaseRef) -> LiveVersion {
    LiveVersion { version: r.version.clone(), digest: r.digest.clone(), replicas: 1 }
}

impl Target for TokenSite {
    fn replicas(&self) -> u32 {
        1
    }

    fn public_url(&self) -> String {
        // Validation requires `url` with `token_env`: without ARM the host name is unknown.
        self.settings.url.as_deref().unwrap_or_default().trim_end_matches('/').to_owned()
    }

    fn new_version_url(&self, _preview: &str) -> String {
        self.public_url()
    }

    fn step_detail(&self, step: &Step) -> Option<String> {
        Some(match step {
            Step::StartNew { .. } => {
                "deploy the release's site with `swa deploy --env production` (the deployment token)".into()
            }
            Step::GateNew => "health-gate the site (a direct deploy has no preview)".into(),
            Step::Shift { .. } => "nothing to shift: the site serves the new content once deployed".into(),
            Step::Bake { duration } => {
                format!("bake for {}: watch the site's health", humantime::format_duration(*duration))
            }
            Step::RetireOld => "nothing to retire: the ledger records the release as live".into(),
            _ => return None,
        })
    }

    async fn observe(&mut self) -> Result<Live, TargetError> {
        let under_way = self.deploying.clone().or_else(|| self.unfinished.clone());
        Ok(match under_way {
            Some((new, previous)) => {
                Live { stable: previous.as_ref().map(live_version), new: Some(live_version(&new)), new_weight: 100 }
            }
            None => Live { stable: self.live.as_ref().map(live_version), new: None, new_weight: 0 },
        })
    }

    async fn preflight(&mut self, release: &Release) -> Result<(), TargetError> {
        self.token()?;
        let cli = self.cli();
        if find_program(&cli).is_none() {
            return Err(
                TargetError::new(format!("cannot find `{cli}` (the Azure Static Web Apps CLI)")).with_hint(INSTALL)
            );
        }
        let zip = self.zip(release)?;
        std::fs::metadata(zip)
            .map_err(|e| TargetError::new(format!("cannot read {}", zip.display())).with_source(e))?;
        Ok(())
    }

    async fn start_new(&mut self, release: &Release, _replicas: u32) -> Result<String, TargetError> {
        let zip = self.zip(release)?.clone();
        let previous = match &self.unfinished {
            Some((_, previous)) => previous.clone(),
            None => self.live.clone(),
        };
        self.deploying = Some((ReleaseRef::from(release), previous));
        self.deploy(&zip, &release.version.to_string()).await?;
        Ok(self.public_url())
    }

    async fn shift(&mut self, percent: u8) -> Result<(), TargetError> {
        super::whole(percent)
    }

    async fn replace(&mut self, _old: u32) -> Result<(), TargetError> {
        Ok(())
    }

    async fn retire_old(&mut self) -> Result<(), TargetError> {
        if let Some((new, _)) = self.deploying.take().or_else(|| self.unfinished.take()) {
            self.live = Some(new);
        }
        Ok(())
    }

    async fn rollback(&mut self) -> Result<(), TargetError> {
        let Some((new, previous)) = self.deploying.take().or_else(|| self.unfinished.take()) else {
            return Ok(());
        };
        let Some(previous) = previous else {
            return Err(TargetError::new(format!(
                "Static Web App `{}` runs {} now, and no release gantry deployed ran before it to go back to",
                self.settings.app, new.version
            ))
            .with_hint("deploy a good release"));
        };
        let zip =
            stored_artifact(&self.release_store, &previous.version, &previous.digest, self.settings.artifact.as_str())?;
        self.note(format!("redeploying {} to production", previous.version));
        self.deploy(&zip, &previous.version.to_string()).await?;
        self.live = Some(previous);
        Ok(())
    }
}
