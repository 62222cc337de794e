//! Rolling on ECS: ECS does the batches. The revision goes to the one service with
//! UpdateService (maximumPercent = 100 + the batch share) and the deployment is followed to
//! COMPLETED; the service's tags `gantry:previous` and `gantry:deploying` name the revisions,
//! so any later process can finish or undo it.

use std::time::SystemTime;

use aws_sdk_ecs::types::DeploymentConfiguration;

use super::{DEPLOYING_TAG, EcsTarget, PREVIOUS_TAG, api, service, tag};
use crate::config::{BatchSize, StrategyKind};
use crate::targets::{Live, Release, TargetError};

impl EcsTarget {
    pub(super) fn max_percent(&self, desired: i32) -> i32 {
        let desired = desired.max(1);
        match (self.settings.strategy.kind, self.settings.strategy.batch) {
            (StrategyKind::Rolling, Some(BatchSize::Count(n))) => {
                100 + ((n as i32).min(desired) * 100).div_euclid(desired).max(1)
            }
            (StrategyKind::Rolling, Some(BatchSize::Percent(p))) => 100 + i32::from(p.get()),
            (StrategyKind::Rolling, None) => 100 + (100 / desired).max(1),
            _ => 200,
        }
    }

    pub(super) async fn observe_rolling(&self) -> Result<Live, TargetError> {
        let ecs = self.ecs();
        let svc = ecs.existing(&self.cfg.service).await?;
        let deployments = svc.deployments();
        let primary = deployments.iter().find(|d| d.status() == Some("PRIMARY"));
        let running = |td: &str| {
            deployments.iter().filter(|d| d.task_definition() == Some(td)).map(|d| d.running_count()).sum::<i32>()
        };
        match tag(&svc, DEPLOYING_TAG) {
            None => {
                let stable = self.live_version(svc.task_definition(), svc.running_count()).await?;
                Ok(Live { stable, new: None, new_weight: 0 })
            }
            Some(new_arn) => {
                let prev = tag(&svc, PREVIOUS_TAG);
                let stable = match prev {
                    Some(p) => self.live_version(Some(p), running(p)).await?,
                    None => None,
                };
                let new = self.live_version(Some(new_arn), running(new_arn)).await?;
                let all_new = primary.is_some_and(|p| {
                    p.task_definition() == Some(new_arn)
                        && (p.rollout_state() == Some(&aws_sdk_ecs::types::DeploymentRolloutState::Completed)
                            || (p.rollout_state().is_none() && deployments.len() == 1))
                });
                let total: i32 = deployments.iter().map(|d| d.running_count()).sum();
                let new_weight = if all_new {
                    100
                } else if total > 0 {
                    (running(new_arn) * 100 / total).min(99) as u8
                } else {
                    0
                };
                Ok(Live { stable, new, new_weight })
            }
        }
    }

    pub(super) async fn start_rolling(&mut self, release: &Release) -> Result<String, TargetError> {
        let ecs = self.ecs();
        let svc = ecs.existing(&self.cfg.service).await?;
        let base = match (tag(&svc, DEPLOYING_TAG), tag(&svc, PREVIOUS_TAG)) {
            (Some(_), Some(prev)) => prev.to_owned(),
            _ => svc.task_definition().unwrap_or_default().to_owned(),
        };
        let new_arn = self.revision(&base, release, tag(&svc, DEPLOYING_TAG)).await?;
        let ecs = self.ecs();
        ecs.tag(&svc, PREVIOUS_TAG, &base).await?;
        ecs.tag(&svc, DEPLOYING_TAG, &new_arn).await?;
        let primary =
            svc.deployments().iter().find(|d| d.status() == Some("PRIMARY")).and_then(|d| d.task_definition());
        let since = SystemTime::now();
        if primary != Some(new_arn.as_str()) {
            self.run_before(&svc, &new_arn).await?;
            let mut config =
                svc.deployment_configuration().cloned().unwrap_or_else(|| DeploymentConfiguration::builder().build());
            let max = self.max_percent(svc.desired_count());
            config.maximum_percent = Some(max);
            config.minimum_healthy_percent = Some(100);
            ecs.client
                .update_service()
                .cluster(&self.cfg.cluster)
                .service(&self.cfg.service)
                .task_definition(&new_arn)
                .deployment_configuration(config)
                .send()
                .await
                .map_err(|e| api::error(format!("update ECS service `{}`", self.cfg.service), e))?;
            self.notes.send(format!(
                "{}: deploying {} (ECS replaces tasks, at most {max}% running at once)",
                self.cfg.service,
                service::short(&new_arn)
            ));
        }
        ecs.follow(&self.cfg.service, &new_arn, since).await?;
        Ok(self.url.clone())
    }

    pub(super) async fn retire_rolling(&mut self) -> Result<(), TargetError> {
        let ecs = self.ecs();
        let svc = ecs.existing(&self.cfg.service).await?;
        let Some(new_arn) = tag(&svc, DEPLOYING_TAG).map(str::to_owned) else { return Ok(()) };
        // Settled on the new revision (a no-op when it is): then the old revision is gone.
        ecs.follow(&self.cfg.service, &new_arn, SystemTime::now()).await?;
        ecs.untag(&svc, &[DEPLOYING_TAG, PREVIOUS_TAG]).await
    }

    pub(super) async fn rollback_rolling(&mut self) -> Result<(), TargetError> {
        let ecs = self.ecs();
        let svc = ecs.existing(&self.cfg.service).await?;
        if tag(&svc, DEPLOYING_TAG).is_none() {
            return Ok(());
        }
        let Some(prev) = tag(&svc, PREVIOUS_TAG).map(str::to_owned) else {
            return Err(TargetError::new(format!(
                "ECS service `{}` is tagged {DEPLOYING_TAG} without {PREVIOUS_TAG}: gantry cannot tell what ran before",
                self.cfg.service
            ))
            .with_hint("update the service to the task definition it should run, then remove the tag"));
        };
        let primary =
            svc.deployments().iter().find(|d| d.status() == Some("PRIMARY")).and_then(|d| d.task_definition());
        let since = SystemTime::now();
        if primary != Some(prev.as_str()) {
            ecs.client
                .update_service()
                .cluster(&self.cfg.cluster)
                .service(&self.cfg.service)
                .task_definition(&prev)
                .send()
                .await
                .map_err(|e| api::error(format!("update ECS service `{}` back to {prev}", self.cfg.service), e))?;
            self.notes.send(format!("{}: back to {}", self.cfg.service, service::short(&prev)));
        } else {
            self.notes.send(format!("{}: ECS already runs {} again", self.cfg.service, service::short(&prev)));
        }
        ecs.follow(&self.cfg.service, &prev, since).await?;
        ecs.untag(&svc, &[DEPLOYING_TAG, PREVIOUS_TAG]).await
    }
}
