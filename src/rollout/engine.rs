//! The engine: runs a plan's steps against one target, each as a phase under a deadline,
//! records every phase in the ledger before and after it runs, emits events, and rolls
//! back at once when a step fails or the user interrupts.
//!
//! Rules it keeps:
//! - No user traffic reaches the new version before it passed `gate-new` on its own endpoint.
//! - Success is reported only after `verify` saw, from the platform itself, that all user
//!   traffic goes to the release (a platform that rolled back by itself is a failure).
//! - The first interrupt stops advancing and rolls back the step in progress; the ledger
//!   says which phase was in progress whenever the process dies.
//! - Resume rule (a deployment found unfinished after a crash): if it had passed `verify`,
//!   it is finished (`retire-old`); otherwise it is rolled back. Either way no traffic
//!   split is left behind.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::event::Event;
use super::health::{self, Mode, Probe};
use super::plan::Step;
use crate::config::HealthCheck;
use crate::state::record::{self, Deployment, Phase, ReleaseRef, State};
use crate::targets::{Release, Target, TargetError};

/// Persists a deployment record (the ledger). Called before and after every phase.
#[allow(async_fn_in_trait)]
pub trait Journal {
    async fn save(&mut self, deployment: &Deployment) -> Result<(), String>;
}

/// A journal that keeps nothing (tests, dry runs).
pub struct NoJournal;

impl Journal for NoJournal {
    async fn save(&mut self, _: &Deployment) -> Result<(), String> {
        Ok(())
    }
}

/// Set by the first Ctrl-C.
#[derive(Debug, Clone)]
pub struct Cancel(watch::Receiver<bool>);

impl Cancel {
    pub fn new(rx: watch::Receiver<bool>) -> Self {
        Self(rx)
    }

    /// One that never fires.
    pub fn never() -> Self {
        let (tx, rx) = watch::channel(false);
        std::mem::forget(tx);
        Self(rx)
    }

    pub fn is_cancelled(&self) -> bool {
        *self.0.borrow()
    }

    pub async fn cancelled(&mut self) {
        if self.0.wait_for(|c| *c).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// How a deployment of one target ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    /// A step failed (or an interrupt came) and the rollback restored what was live.
    RolledBack {
        reason: String,
        interrupted: bool,
    },
    /// A step failed and so did the rollback.
    RollbackFailed {
        reason: String,
        rollback_error: String,
    },
    /// All traffic reached the release, but retiring the old version failed.
    Failed {
        reason: String,
    },
}

impl Outcome {
    pub fn state(&self) -> State {
        match self {
            Self::Succeeded => State::Succeeded,
            Self::RolledBack { .. } => State::RolledBack,
            Self::RollbackFailed { .. } => State::RollbackFailed,
            Self::Failed { .. } => State::Failed,
        }
    }
}

/// Why a step failed.
enum StepError {
    Failed(String),
    Interrupted,
}

/// Runs deployments of one target.
pub struct Engine<'a, T: Target, P: Probe, J: Journal> {
    pub target: &'a mut T,
    pub probe: &'a P,
    pub journal: &'a mut J,
    pub checks: &'a [HealthCheck],
    pub phase_deadline: Duration,
    pub cancel: Cancel,
    pub emit: &'a dyn Fn(Event),
}

impl<T: Target, P: Probe, J: Journal> Engine<'_, T, P, J> {
    /// Runs `steps` to cut the target over to `release`. `record` is the ledger entry,
    /// already filled in (state `Running`, no phases); it is saved as it changes.
    pub async fn run(&mut self, record: &mut Deployment, release: &Release, steps: &[Step]) -> Outcome {
        let started = Instant::now();
        let mut health_time = Duration::ZERO;
        (self.emit)(Event::Started {
            deployment: record.id.clone(),
            environment: record.environment.clone(),
            target: record.target.clone(),
            version: release.version.to_string(),
            previous: record.previous.as_ref().map(ToString::to_string),
            strategy: record.strategy.clone(),
            steps: steps.len(),
        });
        let mut failure = self.save(record).await.err().map(StepError::Failed);
        let mut preview = String::new();
        if failure.is_none() {
            for (index, step) in steps.iter().enumerate() {
                if self.cancel.is_cancelled() {
                    failure = Some(StepError::Interrupted);
                    break;
                }
                let phase_start = Instant::now();
                if let Err(e) = self.begin(record, index, step).await {
                    failure = Some(StepError::Failed(e));
                    break;
                }
                let result = self.step(record, release, step, &mut preview).await;
                if step.is_health_window() {
                    health_time += phase_start.elapsed();
                }
                let ok = result.is_ok();
                let note = match &result {
                    Ok(note) => note.clone(),
                    Err(StepError::Failed(reason)) => Some(reason.clone()),
                    Err(StepError::Interrupted) => Some("interrupted".into()),
                };
                self.end(record, index, step.phase(), ok, note, phase_start).await;
                if let Err(e) = result {
                    if *step == Step::RetireOld {
                        let reason = match e {
                            StepError::Failed(r) => r,
                            StepError::Interrupted => "interrupted while retiring the old version".into(),
                        };
                        return self.finish(record, Outcome::Failed { reason }, started, health_time).await;
                    }
                    failure = Some(e);
                    break;
                }
            }
        }
        let outcome = match failure {
            None => Outcome::Succeeded,
            Some(e) => {
                let (reason, interrupted) = match e {
                    StepError::Failed(r) => (r, false),
                    StepError::Interrupted => (interrupted_reason(record), true),
                };
                self.roll_back(record, reason, interrupted).await
            }
        };
        self.finish(record, outcome, started, health_time).await
    }

    /// Finishes a deployment an earlier process left `Running`, by the resume rule.
    pub async fn resume(&mut self, record: &mut Deployment) -> Outcome {
        let started = Instant::now();
        let phase = record.current_phase().map(|p| p.name.clone());
        let finish = record.verified();
        (self.emit)(Event::Recovering {
            target: record.target.clone(),
            deployment: record.id.clone(),
            phase: phase.clone(),
            action: if finish { "finish: it had verified the new version" } else { "roll back" }.into(),
        });
        let outcome = if finish {
            let step = Step::RetireOld;
            let index = record.phases.len();
            let phase_start = Instant::now();
            match self.begin(record, index, &step).await {
                Err(reason) => Outcome::Failed { reason },
                Ok(()) => match within(self.target_deadline(), self.phase_deadline, self.target.retire_old()).await {
                    Ok(()) => {
                        self.end(record, index, step.phase(), true, Some("on resume".into()), phase_start).await;
                        Outcome::Succeeded
                    }
                    Err(reason) => {
                        self.end(record, index, step.phase(), false, Some(reason.clone()), phase_start).await;
                        Outcome::Failed { reason }
                    }
                },
            }
        } else {
            let reason = format!(
                "an earlier gantry process stopped {} (pid {} on {})",
                where_stopped(record),
                record.pid,
                record.host
            );
            self.roll_back(record, reason, true).await
        };
        self.finish(record, outcome, started, Duration::ZERO).await
    }

    async fn step(
        &mut self,
        record: &Deployment,
        release: &Release,
        step: &Step,
        preview: &mut String,
    ) -> Result<Option<String>, StepError> {
        let deadline = Instant::now() + self.phase_deadline;
        let target_name = record.target.clone();
        let phase = step.phase().to_owned();
        let mut cancel = self.cancel.clone();
        let work = async {
            match step {
                Step::StartNew { replicas } => {
                    *preview = within(deadline, self.phase_deadline, self.target.start_new(release, *replicas)).await?;
                    Ok(Some(format!("preview at {preview}")))
                }
                Step::GateNew => {
                    self.gate(&target_name, &phase, preview.clone(), Mode::UntilHealthy, deadline, true).await
                }
                Step::GateLive => {
                    let url = self.target.public_url();
                    self.gate(&target_name, &phase, url, Mode::UntilHealthy, deadline, true).await
                }
                Step::Bake { duration } | Step::KeepPrevious { duration } => {
                    // The new version's own endpoint: at a canary's 10% the live one reaches it in 1
                    // check of 10, so a failing canary would seldom fail twice in a row there.
                    let url = if preview.is_empty() {
                        self.target.public_url()
                    } else {
                        self.target.new_version_url(preview)
                    };
                    self.gate(&target_name, &phase, url, Mode::Watch(*duration), deadline + *duration, true).await
                }
                Step::Shift { percent } => {
                    within(deadline, self.phase_deadline, self.target.shift(*percent)).await?;
                    (self.emit)(Event::Traffic { target: target_name.clone(), new_weight: *percent });
                    Ok(None)
                }
                Step::Replace { old } => {
                    within(deadline, self.phase_deadline, self.target.replace(*old)).await?;
                    Ok(None)
                }
                Step::Verify => {
                    let live = within(deadline, self.phase_deadline, self.target.observe()).await?;
                    let on_new =
                        live.new.as_ref().is_some_and(|n| n.version == release.version && n.digest == release.digest)
                            && (live.new_weight == 100 || live.stable.as_ref().is_none_or(|s| s.replicas == 0));
                    if on_new {
                        Ok(Some(format!("all user traffic goes to {}", release.version)))
                    } else {
                        Err(format!(
                            "the platform does not serve {} to all users: it reports {}",
                            release.version,
                            describe_live(&live)
                        ))
                    }
                }
                Step::RetireOld => {
                    within(deadline, self.phase_deadline, self.target.retire_old()).await?;
                    let live = within(deadline, self.phase_deadline, self.target.observe()).await?;
                    match &live.stable {
                        Some(s) if s.version == release.version && live.new.is_none() => Ok(None),
                        _ => {
                            Err(format!("after retiring the old version the platform reports {}", describe_live(&live)))
                        }
                    }
                }
            }
        };
        tokio::select! {
            biased;
            () = cancel.cancelled() => Err(StepError::Interrupted),
            result = work => result.map_err(StepError::Failed),
        }
    }

    async fn gate(
        &self,
        target: &str,
        phase: &str,
        url: String,
        mode: Mode,
        deadline: Instant,
        alarms: bool,
    ) -> Result<Option<String>, String> {
        let emit = self.emit;
        let started = Instant::now();
        let checks = health::gate(self.probe, self.checks, &url, mode, deadline, |s| {
            emit(Event::Health {
                target: target.to_owned(),
                phase: phase.to_owned(),
                url: s.url,
                ok: s.ok,
                detail: s.detail,
                streak: s.streak,
                needed: s.needed,
            });
        });
        // The platform's alarms are watched beside the checks (when `alarms`), and read once
        // more when the checks pass: a firing alarm fails the gate whatever the checks say.
        let watch = async { if alarms { self.watch_alarms().await } else { std::future::pending().await } };
        let passed = tokio::select! {
            result = checks => result.map_err(|f| format!("health check failed: {f}")),
            firing = watch => Err(firing),
        };
        passed?;
        if alarms && let Some(firing) = self.firing_alarms().await {
            return Err(firing);
        }
        Ok(Some(if self.checks.is_empty() {
            "no health checks configured".to_owned()
        } else {
            format!("healthy after {}", humantime::format_duration(ms(started.elapsed())))
        }))
    }

    /// Asks the target for firing alarms at the checks' shortest interval (5 s without
    /// checks); returns why the gate fails once one fires or they cannot be read.
    async fn watch_alarms(&self) -> String {
        let every = self.checks.iter().map(|c| c.interval.get()).min().unwrap_or(Duration::from_secs(5));
        loop {
            if let Some(firing) = self.firing_alarms().await {
                return firing;
            }
            tokio::time::sleep(every).await;
        }
    }

    async fn firing_alarms(&self) -> Option<String> {
        firing_alarms(&*self.target).await
    }

    fn target_deadline(&self) -> Instant {
        Instant::now() + self.phase_deadline
    }

    /// Back to what was live: at once, skipping every remaining step, then verified and
    /// health-gated on the live endpoint.
    async fn roll_back(&mut self, record: &mut Deployment, reason: String, interrupted: bool) -> Outcome {
        let target = record.target.clone();
        (self.emit)(Event::RollbackStarted { target: target.clone(), reason: reason.clone() });
        let index = record.phases.len();
        let phase_start = Instant::now();
        record.phases.push(Phase {
            name: "rollback".into(),
            detail: match &record.previous {
                Some(p) => format!("route all traffic back to {p} and remove the new version"),
                None => "remove the new version (nothing was live before)".into(),
            },
            started_at: record::now(),
            finished_at: None,
            elapsed_ms: None,
            ok: None,
            note: None,
        });
        let _ = self.save(record).await;
        (self.emit)(Event::PhaseStarted {
            target: target.clone(),
            index,
            phase: "rollback".into(),
            detail: record.phases[index].detail.clone(),
            deadline_ms: ms(self.phase_deadline).as_millis() as u64,
        });
        let result = self.restore(record).await;
        let ok = result.is_ok();
        let detail = match &result {
            Ok(d) | Err(d) => d.clone(),
        };
        self.end(record, index, "rollback", ok, Some(detail.clone()), phase_start).await;
        let restored = if ok { record.previous.clone() } else { None };
        (self.emit)(Event::RollbackFinished {
            target,
            ok,
            restored: restored.as_ref().map(ToString::to_string),
            detail: detail.clone(),
        });
        record.restored = restored;
        match result {
            Ok(_) => Outcome::RolledBack { reason, interrupted },
            Err(rollback_error) => Outcome::RollbackFailed { reason, rollback_error },
        }
    }

    async fn restore(&mut self, record: &Deployment) -> Result<String, String> {
        let deadline = self.target_deadline();
        within(deadline, self.phase_deadline, self.target.rollback()).await?;
        let live = within(deadline, self.phase_deadline, self.target.observe()).await?;
        let expected = record.previous.as_ref();
        let matches = match (&live.stable, expected) {
            (Some(s), Some(p)) => s.version == p.version && s.digest == p.digest,
            (None, None) => true,
            _ => false,
        };
        if !matches || live.new.is_some() || live.new_weight != 0 {
            return Err(format!(
                "after the rollback the platform reports {}, expected {} only",
                describe_live(&live),
                expected.map_or_else(|| "nothing".to_owned(), ToString::to_string)
            ));
        }
        if expected.is_none() {
            return Ok("the new version was removed; nothing was live before".into());
        }
        let url = self.target.public_url();
        let phase = "rollback".to_owned();
        let target = record.target.clone();
        // Health checks alone: the alarm that caused the rollback may fire for minutes yet.
        self.gate(&target, &phase, url, Mode::UntilHealthy, deadline, false).await?;
        Ok(format!("{} is live and healthy", expected.map(ToString::to_string).unwrap_or_default()))
    }

    async fn begin(&mut self, record: &mut Deployment, index: usize, step: &Step) -> Result<(), String> {
        let detail = self.target.step_detail(step).unwrap_or_else(|| step.describe());
        record.phases.push(Phase {
            name: step.phase().into(),
            detail: detail.clone(),
            started_at: record::now(),
            finished_at: None,
            elapsed_ms: None,
            ok: None,
            note: None,
        });
        let deadline = match step {
            Step::Bake { duration } | Step::KeepPrevious { duration } => *duration + self.phase_deadline,
            _ => self.phase_deadline,
        };
        // Saved before it is announced: whoever sees the event can rely on the ledger.
        self.save(record).await?;
        (self.emit)(Event::PhaseStarted {
            target: record.target.clone(),
            index,
            phase: step.phase().into(),
            detail,
            deadline_ms: deadline.as_millis() as u64,
        });
        Ok(())
    }

    async fn end(
        &mut self,
        record: &mut Deployment,
        index: usize,
        phase: &str,
        ok: bool,
        note: Option<String>,
        started: Instant,
    ) {
        let elapsed_ms = started.elapsed().as_millis() as u64;
        if let Some(p) = record.phases.get_mut(index) {
            p.finished_at = Some(record::now());
            p.elapsed_ms = Some(elapsed_ms);
            p.ok = Some(ok);
            p.note.clone_from(&note);
        }
        (self.emit)(Event::PhaseFinished {
            target: record.target.clone(),
            index,
            phase: phase.into(),
            ok,
            elapsed_ms,
            note,
        });
        let _ = self.save(record).await;
    }

    async fn finish(
        &mut self,
        record: &mut Deployment,
        outcome: Outcome,
        started: Instant,
        health: Duration,
    ) -> Outcome {
        record.state = outcome.state();
        record.finished_at = Some(record::now());
        record.reason = match &outcome {
            Outcome::Succeeded => None,
            Outcome::RolledBack { reason, .. } | Outcome::Failed { reason } => Some(reason.clone()),
            Outcome::RollbackFailed { reason, rollback_error } => {
                Some(format!("{reason}; the rollback failed too: {rollback_error}"))
            }
        };
        let _ = self.save(record).await;
        (self.emit)(Event::Finished {
            deployment: record.id.clone(),
            target: record.target.clone(),
            result: record.state.as_str().into(),
            elapsed_ms: started.elapsed().as_millis() as u64,
            health_ms: health.as_millis() as u64,
        });
        outcome
    }

    async fn save(&mut self, record: &Deployment) -> Result<(), String> {
        self.journal.save(record).await.map_err(|e| format!("cannot write the deployment ledger: {e}"))
    }
}

async fn within<F, R>(deadline: Instant, phase_deadline: Duration, work: F) -> Result<R, String>
where
    F: std::future::Future<Output = Result<R, TargetError>>,
{
    match tokio::time::timeout_at(deadline, work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(chain(&e)),
        Err(_) => Err(format!(
            "the target did not finish within the phase deadline ({})",
            humantime::format_duration(phase_deadline)
        )),
    }
}

/// `during phase `bake``, or `after phase `shift`` when that phase had finished.
fn where_stopped(record: &Deployment) -> String {
    match record.current_phase() {
        Some(p) if p.ok.is_some() => format!("after phase `{}`", p.name),
        Some(p) => format!("during phase `{}`", p.name),
        None => "before its first phase".into(),
    }
}

fn interrupted_reason(record: &Deployment) -> String {
    match record.current_phase() {
        Some(p) => format!("interrupted during phase `{}`", p.name),
        None => "interrupted before the first phase".into(),
    }
}

/// `1.2.3 on 4 replica(s), 2.0.0 on 2 replica(s) taking 10%`.
pub fn describe_live(live: &crate::targets::Live) -> String {
    let mut parts = Vec::new();
    if let Some(s) = &live.stable {
        parts.push(format!("{} on {} replica(s)", s.version, s.replicas));
    }
    if let Some(n) = &live.new {
        parts.push(format!("{} on {} replica(s) taking {}% of traffic", n.version, n.replicas, live.new_weight));
    }
    if parts.is_empty() { "nothing running".into() } else { parts.join(", ") }
}

/// Why `target`'s alarms fail a gate: the firing ones, or that they cannot be read.
pub(crate) async fn firing_alarms<T: Target>(target: &T) -> Option<String> {
    match target.alarms().await {
        Ok(firing) if firing.is_empty() => None,
        Ok(firing) => Some(format!("alarm firing: {}", firing.join("; "))),
        Err(e) => Some(format!("cannot read the target's alarms: {}", chain(&e))),
    }
}

fn chain(e: &TargetError) -> String {
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

fn ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

/// A fresh ledger record for a deployment about to start.
pub fn new_record(
    environment: &str,
    target: &str,
    kind: record::Kind,
    release: &Release,
    previous: Option<ReleaseRef>,
    strategy: &str,
    started_by: &str,
) -> Deployment {
    Deployment {
        schema: record::SCHEMA,
        id: record::new_id(target),
        environment: environment.into(),
        target: target.into(),
        kind,
        release: release.into(),
        previous,
        strategy: strategy.into(),
        started_by: started_by.into(),
        host: hostname(),
        pid: std::process::id(),
        approval: None,
        wave: None,
        started_at: record::now(),
        finished_at: None,
        phases: Vec::new(),
        state: State::Running,
        reason: None,
        restored: None,
    }
}

/// This machine's name, for lock holders and ledger records.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
