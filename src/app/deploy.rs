//! `gantry deploy` and `gantry rollback`: resolve the release, take the environment's lock,
//! finish anything an earlier process left unfinished, then cut each target over with the
//! rollout engine, in the environment's order. When a later target fails, the targets this
//! run already moved are rolled back too, so the environment is never left half on a release.

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{DeployArgs, RollbackArgs};
use crate::report::{DeployReporter, Printer};
use crate::rollout::{self, Cancel, Engine, Outcome, Step, engine, health::HttpProbe, plan};
use crate::state::record::{Deployment, Kind, ReleaseRef};
use crate::state::{self, Store};
use crate::targets::{self, AnyTarget, Release, Target};
use crate::{Error, config, exit};

use super::releases;

/// Everything a deploy or rollback of one environment needs, resolved once.
pub(crate) struct EnvContext<'a> {
    pub loaded: &'a config::Loaded,
    pub name: &'a config::Name,
    pub targets: Vec<(&'a config::Name, &'a config::Target)>,
    /// The targets grouped into deploy waves (one wave unless the environment spans regions
    /// or lists `waves`).
    pub waves: Vec<config::waves::Wave<'a>>,
    /// How long the finished waves are watched before the next wave starts.
    pub wave_bake: Duration,
    pub store: Store,
    /// The approval the production gate verified (kept in each ledger record).
    pub approval: Option<serde_json::Value>,
    /// The ledger as read when the command started (targets that identify releases by it).
    pub ledger: Vec<Deployment>,
}

impl<'a> EnvContext<'a> {
    pub async fn new(
        loaded: &'a config::Loaded,
        env: Option<&str>,
        only: &[String],
        command: &str,
    ) -> Result<Self, Error> {
        let (name, environment) = super::environment(loaded, env, command)?;
        let merged = loaded.env_targets.get(name);
        let mut targets = Vec::new();
        for t in &environment.targets {
            let Some(cfg) = merged.and_then(|m| m.get(t)).or_else(|| loaded.config.targets.get(t)) else { continue };
            if only.is_empty() || only.iter().any(|o| o == t.as_str()) {
                targets.push((t, cfg));
            }
        }
        if let Some(unknown) = only.iter().find(|o| !environment.targets.iter().any(|t| t.as_str() == o.as_str())) {
            return Err(Error::Usage {
                message: format!("environment `{name}` has no target `{unknown}`"),
                hint: Some(format!(
                    "its targets: {}",
                    environment.targets.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")
                )),
            });
        }
        if targets.is_empty() {
            return Err(Error::Usage {
                message: format!("environment `{name}` has no targets to deploy"),
                hint: Some(format!("list them in `targets = [...]` under [environments.{name}]")),
            });
        }
        let waves = config::waves::plan(environment, &targets);
        let wave_bake = environment.wave_bake.map_or(Duration::ZERO, |d| d.get());
        let store = open_store(loaded, name, environment).await?;
        // Only kinds that read it need the ledger here; the commands read it again as they go.
        let needs_ledger = targets.iter().any(|(_, t)| {
            t.kind == config::TargetKind::Render || t.staticwebapp.as_ref().is_some_and(|s| s.token_env.is_some())
        });
        let ledger = if needs_ledger { store.list().await.map_err(DeployError::from)? } else { Vec::new() };
        Ok(Self { loaded, name, targets, waves, wave_bake, store, approval: None, ledger })
    }

    /// The settings of target `name` (one of `targets`).
    fn target_config(&self, name: &config::Name) -> &'a config::Target {
        self.targets
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, cfg)| *cfg)
            .expect("waves hold the environment's targets")
    }

    pub fn build_target(&self, name: &config::Name, cfg: &config::Target) -> Result<AnyTarget, Error> {
        #[cfg(not(feature = "cloud"))]
        if cfg.kind != config::TargetKind::Local {
            return Err(Error::Usage {
                message: format!(
                    "target `{name}`: this build of gantry deploys `local` targets only, not `{}`",
                    cfg.kind.key()
                ),
                hint: Some(
                    "it was built without the `cloud` feature: build gantry with its default features (`cargo build`)"
                        .into(),
                ),
            });
        }
        let dir = self.loaded.dir.join(".gantry/local").join(self.name.as_str()).join(name.as_str());
        let env = &self.loaded.config.environments[self.name];
        let releases_dir = self.loaded.dir.join(".gantry/releases");
        let ctx = targets::Context {
            environment: self.name,
            env,
            config: &self.loaded.config,
            ledger: &self.ledger,
            releases_dir: &releases_dir,
        };
        targets::build(name.as_str(), cfg, dir, ctx)
            .map_err(|e| Error::Deploy(DeployError::Target { target: name.to_string(), source: e }))
    }
}

/// The ledger for `environment`: its `state` setting, or `.gantry/state/ENV` beside gantry.toml.
pub(crate) async fn open_store(
    loaded: &config::Loaded,
    name: &config::Name,
    env: &config::Environment,
) -> Result<Store, Error> {
    let url = env.state.as_ref().map(|s| s.as_str().to_owned());
    Ok(match url {
        #[cfg(feature = "cloud")]
        Some(url) if url.starts_with("s3://") => {
            let sdk = crate::aws::load_env(env).await;
            Store::S3(state::s3::S3Store::new(crate::aws::s3(&sdk), &url))
        }
        #[cfg(not(feature = "cloud"))]
        Some(url) if url.starts_with("s3://") => {
            let _ = url;
            return Err(Error::NotAvailable { command: "deploy with an S3 ledger (`state = \"s3://...\"`)" });
        }
        Some(url) => {
            let path = url.strip_prefix("file://").map_or_else(|| loaded.dir.join(&url), PathBuf::from);
            Store::Folder(state::local::Folder::new(path))
        }
        None => Store::Folder(state::local::Folder::new(loaded.dir.join(".gantry/state").join(name.as_str()))),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("target `{target}`: {source}")]
    Target {
        target: String,
        #[source]
        source: targets::TargetError,
    },
    #[error("{0}")]
    Lock(#[from] state::LockError),
    #[error("cannot read the deployment ledger")]
    State(#[from] state::StateError),
    #[error("deploy of {version} to `{environment}` failed and was rolled back: {reason}")]
    RolledBack { environment: String, version: String, reason: String, restored: String },
    #[error("interrupted: {reason}; rolled back")]
    Interrupted { reason: String, restored: String },
    #[error("deploy of {version} to `{environment}` failed and so did its rollback: {reason}")]
    RollbackFailed { environment: String, version: String, reason: String, manual: String },
    #[error("{version} took all traffic on `{target}`, but retiring the old version failed: {reason}")]
    RetireFailed { target: String, version: String, reason: String },
    #[error("{message}")]
    NoRelease { message: String, hint: String },
}

impl DeployError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Lock(e) => e.exit_code(),
            Self::RolledBack { .. } => exit::ROLLED_BACK,
            Self::Interrupted { .. } => exit::INTERRUPTED,
            Self::RollbackFailed { .. } => exit::ROLLBACK_FAILED,
            Self::NoRelease { .. } => exit::USAGE,
            Self::Target { .. } | Self::State(_) | Self::RetireFailed { .. } => exit::FAILED,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Lock(state::LockError::Held(h)) => Some(format!(
                "wait for it to finish, or pass --wait-lock 10m to wait; a holder that died is taken over once its lease ends (at {})",
                jiff::Timestamp::from_millisecond(h.expires_ms).map(|t| t.to_string()).unwrap_or_default()
            )),
            Self::RolledBack { restored, .. } | Self::Interrupted { restored, .. } => {
                Some(format!("live now: {restored}"))
            }
            Self::RollbackFailed { manual, .. } => Some(manual.clone()),
            Self::RetireFailed { .. } => Some(
                "the new version serves users; run `gantry status` and stop the old one by hand if it still runs"
                    .into(),
            ),
            Self::Target { source, .. } => source.hint.clone(),
            Self::NoRelease { hint, .. } => Some(hint.clone()),
            Self::State(_) | Self::Lock(_) => None,
        }
    }
}

pub async fn deploy(
    loaded: &config::Loaded,
    env: Option<&str>,
    args: &DeployArgs,
    printer: &Printer,
    cancel: Cancel,
) -> Result<(), Error> {
    // Bad usage is reported before anything is packaged or asked of the pipeline.
    let wait = parse_wait(args.wait_lock.as_deref())?;
    let approval = approval_gate(loaded, env, args.release_version.as_deref()).await?;
    let mut ctx = EnvContext::new(loaded, env, &args.targets, "deploy").await?;
    // Inside the pipeline the release is the one the approved execution carries.
    let gated = approval.as_ref().and_then(|a| a["version"].as_str()).map(str::to_owned);
    ctx.approval = approval;
    let release = match args.release_version.as_ref().or(gated.as_ref()) {
        Some(v) => releases::find(loaded, v, None)?,
        None => releases::package_working_tree(loaded, printer).await?,
    };
    let lock = ctx
        .store
        .lock(&format!("deploy {}", release.version), &user(), lease(), wait)
        .await
        .map_err(DeployError::from)?;
    warn_taken_over(&lock, printer);
    let mut github = GithubSink::start(loaded, ctx.name, &release, printer).await;
    let result = deploy_locked(&ctx, &release, Kind::Deploy, None, printer, cancel).await;
    github.finish(&result, &release, printer).await;
    let _ = lock.release().await;
    result
}

/// The production gate (`pipeline::gate`): the approval record an environment with
/// `approval = "required"` needs, or `None` for environments without one.
#[cfg(feature = "cloud")]
async fn approval_gate(
    loaded: &config::Loaded,
    env: Option<&str>,
    version: Option<&str>,
) -> Result<Option<serde_json::Value>, Error> {
    crate::pipeline::gate::require(loaded, env, version).await
}

/// Without the `cloud` feature there is no pipeline to ask: environments that need an
/// approval are refused.
#[cfg(not(feature = "cloud"))]
async fn approval_gate(
    loaded: &config::Loaded,
    env: Option<&str>,
    _version: Option<&str>,
) -> Result<Option<serde_json::Value>, Error> {
    let gated = env.and_then(|e| loaded.config.environments.iter().find(|(n, _)| n.as_str() == e));
    match gated {
        Some((_, environment)) if environment.approval == config::Approval::Required => {
            Err(Error::NotAvailable { command: "deploy to an environment with `approval = \"required\"`" })
        }
        _ => Ok(None),
    }
}

/// In GitHub Actions, a GitHub Deployment of the environment with its statuses
/// (`github::deployments`). Talking to GitHub never fails a deploy: problems are warnings.
#[cfg(feature = "cloud")]
struct GithubSink(Option<crate::github::deployments::Tracker>);

/// Without the `cloud` feature there is no GitHub client: nothing is recorded.
#[cfg(not(feature = "cloud"))]
struct GithubSink;

#[cfg(not(feature = "cloud"))]
impl GithubSink {
    async fn start(_: &config::Loaded, _: &config::Name, _: &Release, _: &Printer) -> Self {
        Self
    }

    async fn finish(&mut self, _: &Result<(), Error>, _: &Release, _: &Printer) {}
}

#[cfg(feature = "cloud")]
impl GithubSink {
    async fn start(loaded: &config::Loaded, env: &config::Name, release: &Release, printer: &Printer) -> Self {
        let production = loaded.config.environments.get(env).is_some_and(|e| e.approval == config::Approval::Required);
        let Some(mut tracker) = crate::github::deployments::Tracker::from_env(
            env.as_str(),
            production,
            loaded.config.project.repository.as_deref(),
        ) else {
            return Self(None);
        };
        if let Err(e) = tracker.start(&release.version.to_string(), None).await {
            printer.warn(format!("cannot record the GitHub deployment of `{env}`: {e}"));
        }
        Self(Some(tracker))
    }

    async fn finish(&mut self, result: &Result<(), Error>, release: &Release, printer: &Printer) {
        use crate::github::deployments::Outcome;
        let Some(tracker) = &self.0 else { return };
        let (outcome, description) = match result {
            Ok(()) => (Outcome::Success, format!("{} is live", release.version)),
            Err(Error::Deploy(DeployError::RollbackFailed { .. })) => {
                (Outcome::Error, format!("{} failed and so did its rollback", release.version))
            }
            Err(_) => (Outcome::Failure, format!("{} failed; the previous release stays live", release.version)),
        };
        if let Err(e) = tracker.finish(outcome, &description, None).await {
            printer.warn(format!("cannot update the GitHub deployment status: {e}"));
        }
    }
}

pub async fn rollback(
    loaded: &config::Loaded,
    env: Option<&str>,
    args: &RollbackArgs,
    printer: &Printer,
    cancel: Cancel,
) -> Result<(), Error> {
    let approval = approval_gate(loaded, env, args.to.as_deref()).await?;
    // Inside the pipeline, only the release the approved execution carries may go live.
    let to = args.to.clone().or_else(|| approval.as_ref().and_then(|a| a["version"].as_str()).map(str::to_owned));
    let mut ctx = EnvContext::new(loaded, env, &args.targets, "rollback").await?;
    ctx.approval = approval;
    let lock = ctx.store.lock("rollback", &user(), lease(), Duration::ZERO).await.map_err(DeployError::from)?;
    warn_taken_over(&lock, printer);
    let result = async {
        recover(&ctx, printer).await?;
        let records = ctx.store.list().await.map_err(DeployError::from)?;
        // Every target goes back to one release: the named one, or the one before what the
        // first target runs now.
        let (first, _) = ctx.targets[0];
        let history = state::target_history(&records, first.as_str());
        let to = match &to {
            Some(v) => {
                let known = records.iter().find(|d| d.release.version.to_string() == v.trim_start_matches('v'));
                releases::find(loaded, v, known.map(|d| d.release.digest.as_str()))?
            }
            None => {
                let Some(prev) = history.previous_good else {
                    return Err(Error::Deploy(DeployError::NoRelease {
                        message: format!("`{first}` has no earlier good release to go back to"),
                        hint: "see `gantry history`; pass --to VERSION to choose one".into(),
                    }));
                };
                releases::find(loaded, &prev.release.version.to_string(), Some(&prev.release.digest))?
            }
        };
        deploy_locked(&ctx, &to, Kind::Rollback, Some(plan::fast_path(1)), printer, cancel).await
    }
    .await;
    let _ = lock.release().await;
    result
}

fn warn_taken_over(lock: &state::Lock, printer: &Printer) {
    if let Some(old) = &lock.taken_over {
        let why = if old.is_dead_here() { "its process is gone" } else { "its lease ran out" };
        printer.warn(format!("took over the environment lock from {old}: {why}"));
    }
}

/// A target this run moved, and what to put back if a later one fails.
struct Moved<'a> {
    name: &'a config::Name,
    cfg: &'a config::Target,
    previous: Option<ReleaseRef>,
    wave: usize,
}

/// With the lock held: recover, then deploy `release` wave by wave, each wave's targets in
/// order, baking the finished waves between waves. When a target (or a bake) fails, every
/// target this run moved goes back, last first.
async fn deploy_locked(
    ctx: &EnvContext<'_>,
    release: &Release,
    kind: Kind,
    fast_path: Option<Vec<Step>>,
    printer: &Printer,
    cancel: Cancel,
) -> Result<(), Error> {
    recover(ctx, printer).await?;
    let records = ctx.store.list().await.map_err(DeployError::from)?;
    let reporter = DeployReporter::new(printer);
    let emit = |e: rollout::Event| reporter.event(&e);
    // Every target checks the release first, and makes the checks `plan` makes (the
    // release's image exists, the platform is set up as configured), so a bad release or
    // setup is found before anything moves on any target, in any wave.
    for &(name, cfg) in &ctx.targets {
        let mut target = ctx.build_target(name, cfg)?;
        let fail = |e| DeployError::Target { target: name.to_string(), source: e };
        target.preflight(release).await.map_err(fail)?;
        target.plan_notes(Some(release)).await.map_err(fail)?;
    }
    let count = ctx.waves.len();
    // Wave events only where there are waves to tell apart.
    let multi = count > 1;
    let mut moved: Vec<Moved<'_>> = Vec::new();
    // Every target of the finished waves, moved or already on the release: what bakes watch.
    let mut finished: Vec<(&config::Name, &config::Target)> = Vec::new();
    for wave in &ctx.waves {
        let wave_started = std::time::Instant::now();
        let label = wave.label(count);
        if multi {
            emit(rollout::Event::WaveStarted {
                wave: wave.number,
                waves: count,
                region: wave.region.clone(),
                targets: wave.targets.iter().map(ToString::to_string).collect(),
            });
        }
        for &name in &wave.targets {
            let cfg = ctx.target_config(name);
            let history = state::target_history(&records, name.as_str());
            let previous = history.live.map(|d| d.release.clone());
            let mut target = ctx.build_target(name, cfg)?;
            let live =
                target.observe().await.map_err(|e| DeployError::Target { target: name.to_string(), source: e })?;
            if previous.as_ref().is_some_and(|p| p.digest == release.digest)
                && live.stable.as_ref().is_some_and(|s| s.digest == release.digest)
                && live.new.is_none()
            {
                reporter.unchanged(name.as_str(), &release.version.to_string());
                finished.push((name, cfg));
                continue;
            }
            let steps = match &fast_path {
                Some(_) => plan::fast_path(target.replicas()),
                None => plan::steps(&cfg.strategy, target.replicas()),
            };
            let strategy = if fast_path.is_some() { "fast-path" } else { strategy_name(cfg) };
            let mut record = engine::new_record(
                ctx.name.as_str(),
                name.as_str(),
                kind,
                release,
                previous.clone(),
                strategy,
                &user(),
            );
            record.approval.clone_from(&ctx.approval);
            record.wave = multi.then_some(wave.number);
            let outcome = run_engine(
                ctx,
                &mut target,
                cfg,
                &mut record,
                Job::Run { release, steps: &steps },
                &reporter,
                cancel.clone(),
            )
            .await;
            if outcome == Outcome::Succeeded {
                moved.push(Moved { name, cfg, previous, wave: wave.number });
                finished.push((name, cfg));
                continue;
            }
            if !multi {
                undo(ctx, &moved, &reporter).await;
                return Err(outcome_error(ctx, release, &record, outcome, None).into());
            }
            let why = outcome_reason(&outcome);
            emit(rollout::Event::WaveFinished {
                wave: wave.number,
                waves: count,
                region: wave.region.clone(),
                ok: false,
                elapsed_ms: elapsed_ms(wave_started),
                detail: Some(format!("target `{name}`: {why}")),
            });
            let undone = roll_back_waves(ctx, &moved, wave.number, &why, &reporter).await;
            let waves = WaveFailure { label: label.clone(), undone };
            return Err(outcome_error(ctx, release, &record, outcome, Some(waves)).into());
        }
        if !multi {
            continue;
        }
        emit(rollout::Event::WaveFinished {
            wave: wave.number,
            waves: count,
            region: wave.region.clone(),
            ok: true,
            elapsed_ms: elapsed_ms(wave_started),
            detail: None,
        });
        if wave.number == count || ctx.wave_bake.is_zero() || kind == Kind::Rollback {
            continue;
        }
        if let Err(failure) = bake_waves(ctx, wave.number, &finished, &reporter, cancel.clone()).await {
            let reason = format!("the bake after {label} failed: {failure}");
            let undone = roll_back_waves(ctx, &moved, wave.number, &reason, &reporter).await;
            return Err(wave_bake_error(ctx, release, &failure, &label, undone).into());
        }
    }
    reporter.done(ctx.name.as_str(), &release.version.to_string());
    Ok(())
}

/// The bake after wave `number`: every finished target watched at once on its live URL.
async fn bake_waves(
    ctx: &EnvContext<'_>,
    number: usize,
    finished: &[(&config::Name, &config::Target)],
    reporter: &DeployReporter<'_>,
    cancel: Cancel,
) -> Result<(), rollout::wave::BakeFailure> {
    let emit = |e: rollout::Event| reporter.event(&e);
    let mut built = Vec::new();
    for &(name, cfg) in finished {
        match ctx.build_target(name, cfg) {
            Ok(target) => built.push((name, cfg, target)),
            Err(e) => {
                return Err(rollout::wave::BakeFailure::Unhealthy { target: name.to_string(), reason: e.to_string() });
            }
        }
    }
    let watched: Vec<_> = built
        .iter()
        .map(|(name, cfg, target)| rollout::wave::Watched { name: name.as_str(), target, checks: &cfg.health })
        .collect();
    emit(rollout::Event::WaveBakeStarted {
        wave: number,
        waves: ctx.waves.len(),
        targets: finished.iter().map(|(n, _)| n.to_string()).collect(),
        duration_ms: u64::try_from(ctx.wave_bake.as_millis()).unwrap_or(u64::MAX),
    });
    let started = std::time::Instant::now();
    let probe = HttpProbe::new();
    let result = rollout::wave::bake(&probe, &watched, ctx.wave_bake, cancel, &emit).await;
    emit(rollout::Event::WaveBakeFinished {
        wave: number,
        ok: result.is_ok(),
        elapsed_ms: elapsed_ms(started),
        detail: result.as_ref().err().map(ToString::to_string),
    });
    result
}

/// A later wave (or a bake) failed: announce which targets go back, then undo them.
async fn roll_back_waves(
    ctx: &EnvContext<'_>,
    moved: &[Moved<'_>],
    failed_wave: usize,
    reason: &str,
    reporter: &DeployReporter<'_>,
) -> Vec<Undone> {
    reporter.event(&rollout::Event::WavesRollingBack {
        failed_wave,
        reason: reason.to_owned(),
        targets: moved.iter().rev().map(|m| m.name.to_string()).collect(),
    });
    undo(ctx, moved, reporter).await
}

fn elapsed_ms(since: std::time::Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// What the engine is asked to do: run steps toward a release, or resume a record.
enum Job<'j> {
    Run { release: &'j Release, steps: &'j [Step] },
    Resume,
}

async fn run_engine(
    ctx: &EnvContext<'_>,
    target: &mut AnyTarget,
    cfg: &config::Target,
    record: &mut Deployment,
    job: Job<'_>,
    reporter: &DeployReporter<'_>,
    cancel: Cancel,
) -> Outcome {
    let probe = HttpProbe::new();
    let mut journal = Ledger(ctx.store.clone());
    let emit = |e: rollout::Event| reporter.event(&e);
    // What the target reports while an operation runs becomes `Progress` events.
    let (progress, mut notes) = tokio::sync::mpsc::unbounded_channel();
    target.set_progress(progress);
    let name = record.target.clone();
    let relay = |message: String| reporter.event(&rollout::Event::Progress { target: name.clone(), message });
    let mut engine = Engine {
        target,
        probe: &probe,
        journal: &mut journal,
        checks: &cfg.health,
        phase_deadline: cfg.strategy.phase_deadline.map_or(plan::DEFAULT_PHASE_DEADLINE, |d| d.get()),
        cancel,
        emit: &emit,
    };
    let run = async {
        match job {
            Job::Run { release, steps } => engine.run(record, release, steps).await,
            Job::Resume => engine.resume(record).await,
        }
    };
    tokio::pin!(run);
    let outcome = loop {
        tokio::select! {
            outcome = &mut run => break outcome,
            Some(message) = notes.recv() => relay(message),
        }
    };
    while let Ok(message) = notes.try_recv() {
        relay(message);
    }
    outcome
}

/// What became of one moved target when a later one failed.
struct Undone {
    target: String,
    wave: usize,
    /// `back on 1.0.0`, `nothing was live before: left on 1.1.0`, or why it failed.
    what: String,
    ok: bool,
}

/// Targets this run moved before a later one failed go back to what they ran before, last
/// first.
async fn undo(ctx: &EnvContext<'_>, moved: &[Moved<'_>], reporter: &DeployReporter<'_>) -> Vec<Undone> {
    let mut undone = Vec::new();
    for m in moved.iter().rev() {
        let (name, cfg) = (m.name, m.cfg);
        let mut note = |what: String, ok: bool| {
            undone.push(Undone { target: name.to_string(), wave: m.wave, what, ok });
        };
        let Some(previous) = &m.previous else {
            note("nothing was live before, so nothing to go back to: left as deployed".into(), true);
            continue;
        };
        let release = match releases::find(ctx.loaded, &previous.version.to_string(), Some(&previous.digest)) {
            Ok(release) => release,
            Err(e) => {
                note(format!("cannot find release {} to go back to: {e}", previous.version), false);
                continue;
            }
        };
        let mut target = match ctx.build_target(name, cfg) {
            Ok(target) => target,
            Err(e) => {
                note(e.to_string(), false);
                continue;
            }
        };
        let steps = plan::fast_path(target.replicas());
        let mut record =
            engine::new_record(ctx.name.as_str(), name.as_str(), Kind::Rollback, &release, None, "fast-path", &user());
        record.reason = Some("a later target of the same deploy failed".into());
        let outcome = run_engine(
            ctx,
            &mut target,
            cfg,
            &mut record,
            Job::Run { release: &release, steps: &steps },
            reporter,
            Cancel::never(),
        )
        .await;
        match outcome {
            Outcome::Succeeded => note(format!("back on {}", previous.version), true),
            failed => note(format!("going back to {} failed: {}", previous.version, outcome_reason(&failed)), false),
        }
    }
    undone
}

/// The wave that failed and what happened to the targets moved before it.
struct WaveFailure {
    label: String,
    undone: Vec<Undone>,
}

impl WaveFailure {
    /// `` `api-use1` (wave 1): back on 1.0.0; ... ``
    fn summary(&self) -> String {
        if self.undone.is_empty() {
            return "no earlier wave had moved".into();
        }
        self.undone
            .iter()
            .map(|u| format!("`{}` (wave {}): {}", u.target, u.wave, u.what))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn failed(&self) -> Option<&Undone> {
        self.undone.iter().find(|u| !u.ok)
    }
}

fn outcome_reason(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Succeeded => "succeeded".into(),
        Outcome::RolledBack { reason, .. } | Outcome::Failed { reason } => reason.clone(),
        Outcome::RollbackFailed { reason, rollback_error } => format!("{reason}; rollback: {rollback_error}"),
    }
}

/// The error for a failed bake between waves (the finished waves were rolled back).
fn wave_bake_error(
    ctx: &EnvContext<'_>,
    release: &Release,
    failure: &rollout::wave::BakeFailure,
    label: &str,
    undone: Vec<Undone>,
) -> DeployError {
    let waves = WaveFailure { label: label.to_owned(), undone };
    if let Some(bad) = waves.failed() {
        return DeployError::RollbackFailed {
            environment: ctx.name.to_string(),
            version: release.version.to_string(),
            reason: format!("the bake after {label} failed: {failure}; rolling back: {}", waves.summary()),
            manual: manual_steps(&bad.target, &bad.what),
        };
    }
    match failure {
        rollout::wave::BakeFailure::Interrupted => DeployError::Interrupted {
            reason: format!("during the bake after {label}"),
            restored: format!("rolled back {}", waves.summary()),
        },
        rollout::wave::BakeFailure::Unhealthy { .. } => DeployError::RolledBack {
            environment: ctx.name.to_string(),
            version: release.version.to_string(),
            reason: format!("the bake after {label} failed: {failure}"),
            restored: format!("rolled back {}", waves.summary()),
        },
    }
}

/// Finishes or rolls back deployments a dead process left running (the lock is ours now,
/// so their holder is gone). The rule is the engine's: finish what verified, undo the rest.
pub(crate) async fn recover(ctx: &EnvContext<'_>, printer: &Printer) -> Result<(), Error> {
    let records = ctx.store.list().await.map_err(DeployError::from)?;
    let reporter = DeployReporter::new(printer);
    for &(name, cfg) in &ctx.targets {
        let Some(running) = state::target_history(&records, name.as_str()).running else { continue };
        let mut record = running.clone();
        let mut target = ctx.build_target(name, cfg)?;
        let outcome = run_engine(ctx, &mut target, cfg, &mut record, Job::Resume, &reporter, Cancel::never()).await;
        if let Outcome::RollbackFailed { reason, rollback_error } = outcome {
            return Err(Error::Deploy(DeployError::RollbackFailed {
                environment: ctx.name.to_string(),
                version: record.release.version.to_string(),
                reason,
                manual: manual_steps(name.as_str(), &rollback_error),
            }));
        }
    }
    Ok(())
}

/// The error for a target that failed; `waves` when the environment deploys in waves (the
/// failed wave's label, and what became of the targets moved in earlier waves).
fn outcome_error(
    ctx: &EnvContext<'_>,
    release: &Release,
    record: &Deployment,
    outcome: Outcome,
    waves: Option<WaveFailure>,
) -> DeployError {
    let mut restored =
        record.restored.as_ref().map_or_else(|| "nothing (nothing was live before)".to_owned(), |r| r.to_string());
    let mut at = format!("target `{}`", record.target);
    if let Some(w) = &waves {
        at = format!("{}, target `{}`", w.label, record.target);
        restored = format!("`{}`: {restored}; rolled back {}", record.target, w.summary());
        if let Some(bad) = w.failed() {
            return DeployError::RollbackFailed {
                environment: ctx.name.to_string(),
                version: release.version.to_string(),
                reason: format!("{at}: {}; rolling back the finished waves: {}", outcome_reason(&outcome), w.summary()),
                manual: manual_steps(&bad.target, &bad.what),
            };
        }
    }
    match outcome {
        Outcome::Succeeded => unreachable!("only failures are errors"),
        Outcome::RolledBack { reason, interrupted: true } => {
            let reason = if waves.is_some() { format!("{reason} ({at})") } else { reason };
            DeployError::Interrupted { reason, restored }
        }
        Outcome::RolledBack { reason, interrupted: false } => DeployError::RolledBack {
            environment: ctx.name.to_string(),
            version: release.version.to_string(),
            reason: format!("{at}: {reason}"),
            restored,
        },
        Outcome::RollbackFailed { reason, rollback_error } => DeployError::RollbackFailed {
            environment: ctx.name.to_string(),
            version: release.version.to_string(),
            reason: format!("{at}: {reason}; rollback: {rollback_error}"),
            manual: manual_steps(&record.target, &rollback_error),
        },
        Outcome::Failed { reason } => {
            DeployError::RetireFailed { target: record.target.clone(), version: release.version.to_string(), reason }
        }
    }
}

fn manual_steps(target: &str, error: &str) -> String {
    format!(
        "target `{target}` needs a hand: check what runs with `gantry status`, fix the cause ({error}), then run `gantry rollback` or deploy a good release"
    )
}

/// The ledger as the engine's journal.
struct Ledger(Store);

impl rollout::Journal for Ledger {
    async fn save(&mut self, deployment: &Deployment) -> Result<(), String> {
        self.0.save(deployment).await.map_err(|e| {
            let mut s = e.to_string();
            if let Some(source) = std::error::Error::source(&e) {
                s.push_str(&format!(": {source}"));
            }
            s
        })
    }
}

pub(crate) fn strategy_name(cfg: &config::Target) -> &'static str {
    match cfg.strategy.kind {
        config::StrategyKind::AllAtOnce => "all-at-once",
        config::StrategyKind::Rolling => "rolling",
        config::StrategyKind::BlueGreen => "blue-green",
        config::StrategyKind::Canary => "canary",
        config::StrategyKind::Linear => "linear",
    }
}

/// Who is deploying: the GitHub actor in Actions, else `user@host`.
pub(crate) fn user() -> String {
    if let Ok(actor) = std::env::var("GITHUB_ACTOR")
        && !actor.is_empty()
    {
        return format!("{actor} (GitHub Actions)");
    }
    let name = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|n| !n.is_empty())
        .or_else(|| nix::unistd::User::from_uid(nix::unistd::getuid()).ok().flatten().map(|u| u.name))
        .unwrap_or_else(|| format!("uid {}", nix::unistd::getuid()));
    format!("{name}@{}", engine::hostname())
}

/// The lock's lease: `GANTRY_LOCK_LEASE` (e.g. `10s`), else 30 s.
fn lease() -> Duration {
    std::env::var("GANTRY_LOCK_LEASE")
        .ok()
        .and_then(|v| humantime::parse_duration(&v).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(state::DEFAULT_LEASE)
}

fn parse_wait(value: Option<&str>) -> Result<Duration, Error> {
    value.map_or(Ok(Duration::ZERO), |v| {
        humantime::parse_duration(v).map_err(|e| Error::Usage {
            message: format!("invalid --wait-lock `{v}`: {e}"),
            hint: Some("a duration such as 30s, 5m or 1h".into()),
        })
    })
}
