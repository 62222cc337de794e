//! What `gantry plan` shows for an ECS target besides the steps: how they map onto ECS, the
//! circuit breaker, the one-off task, and the task definition diff. Reads only; `deploy`
//! runs it first as its preflight.

use super::{
    DEFAULT_RUN_BEFORE_TIMEOUT, DEPLOYING_TAG, EcsTarget, Mode, PREVIOUS_TAG, alb, service, short_tg, tag, taskdef,
};
use crate::targets::{Release, TargetError};

impl EcsTarget {
    /// What `gantry plan` shows besides the steps: how the steps map onto ECS, and the
    /// task definition diff for `release`. Reads only.
    pub async fn plan_notes(&mut self, release: Option<&Release>) -> Result<Vec<String>, TargetError> {
        self.connect().await?;
        let mut notes = Vec::new();
        let ecs = self.ecs();
        let svc = ecs.existing(&self.cfg.service).await?;
        let base = match self.mode {
            Mode::Rolling => {
                let breaker = svc
                    .deployment_configuration()
                    .and_then(|c| c.deployment_circuit_breaker())
                    .is_some_and(|b| b.enable());
                notes.push(format!(
                    "ECS runs the rollout: start-new registers the revision{}, updates service `{}` \
                     (maximumPercent {}, minimumHealthyPercent 100) and follows the deployment to COMPLETED; \
                     replace and shift have nothing left to do; verify checks that the PRIMARY deployment runs the new revision",
                    if self.cfg.run_before.is_some() { ", runs the one-off task" } else { "" },
                    self.cfg.service,
                    self.max_percent(svc.desired_count())
                ));
                notes.push(if breaker {
                    "deployment circuit breaker: on (a FAILED rollout fails the deploy at once)".to_owned()
                } else {
                    "deployment circuit breaker: off (a deployment that never settles fails at the phase deadline)"
                        .to_owned()
                });
                tag(&svc, PREVIOUS_TAG)
                    .filter(|_| tag(&svc, DEPLOYING_TAG).is_some())
                    .map_or_else(|| svc.task_definition().unwrap_or_default().to_owned(), str::to_owned)
            }
            Mode::Alb => {
                let pair = self.pair().await?;
                let delay = match self.cfg.deregistration_delay {
                    Some(d) => d.get(),
                    None => alb::deregistration_delay(self.elb(), &pair.stable.target_group).await?,
                };
                notes.push(format!(
                    "live side: service `{}` on target group {} ({}% of traffic); new side: service `{}` on {}{}",
                    pair.stable.service,
                    short_tg(&pair.stable.target_group),
                    pair.forward.percent(&pair.stable.target_group),
                    pair.other.service,
                    short_tg(&pair.other.target_group),
                    if pair.other.svc.is_none() { " (gantry creates it from the live service's settings)" } else { "" }
                ));
                if pair.forward.rules() > 0 {
                    notes.push(format!(
                        "{} listener rule(s) forward to the pair too: weights move on them with the default action",
                        pair.forward.rules()
                    ));
                }
                notes.push(format!(
                    "start-new{} updates the new side and points the test listener at it; gate-new checks {}; \
                     shift sets the listener's weights; retire-old waits the deregistration delay ({}) and scales the old side to 0",
                    if self.cfg.run_before.is_some() { " runs the one-off task," } else { "" },
                    self.test_url,
                    humantime::format_duration(delay)
                ));
                pair.stable.svc.as_ref().and_then(|s| s.task_definition()).unwrap_or_default().to_owned()
            }
        };
        if let Some(cmd) = &self.cfg.run_before {
            notes.push(format!(
                "one-off task before the cutover: `{}` (at most {})",
                cmd.join(" "),
                humantime::format_duration(self.cfg.run_before_timeout.map_or(DEFAULT_RUN_BEFORE_TIMEOUT, |d| d.get()))
            ));
        }
        let Some(release) = release else {
            notes.push("task definition: package the release (`gantry package`) to see what changes".into());
            return Ok(notes);
        };
        let pinned = self.image(release).await?;
        let live = self.ecs().task_definition(&base).await?;
        if taskdef::release_of(&live, &self.cfg.container).is_none() {
            notes.push(format!(
                "{} was not deployed by gantry (no {} label): it counts as nothing live, and stays in service if the first deploy rolls back",
                service::short(&base),
                taskdef::VERSION_LABEL
            ));
        }
        let new = taskdef::build(&live, &self.cfg.container, release, &self.changes(pinned.reference()))?;
        let diff = taskdef::diff(&live, &new, &self.cfg.container);
        notes.push(format!(
            "task definition: a new revision of `{}` from {}{}",
            live.family().unwrap_or_default(),
            service::short(&base),
            if diff.is_empty() { ", unchanged" } else { ":" }
        ));
        notes.extend(diff.into_iter().map(|l| format!("  {l}")));
        Ok(notes)
    }
}
