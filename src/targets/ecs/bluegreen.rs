//! Blue-green, canary and linear on ECS: two services, each on one target group behind the
//! listener. The side being deployed is tagged `gantry:role=new`; without that tag the live
//! side is the one the listener favours. Weights move on every route of the listener.

use std::time::{Duration, Instant, SystemTime};

use aws_sdk_ecs::types::{LoadBalancer, Service, Tag};

use super::{EcsTarget, Pair, ROLE_TAG, Side, alb, api, bound, service, short_tg};
use crate::targets::{Live, Release, TargetError};

impl EcsTarget {
    pub(super) fn target_groups(&self) -> (&str, &str) {
        (
            self.cfg.blue_target_group_arn.as_deref().unwrap_or_default(),
            self.cfg.green_target_group_arn.as_deref().unwrap_or_default(),
        )
    }

    pub(super) async fn pair(&self) -> Result<Pair, TargetError> {
        let (blue, green) = self.target_groups();
        let listener = self.cfg.listener_arn.as_deref().unwrap_or_default();
        let forward = alb::routes(self.elb(), listener, blue, green).await?;
        if let Some(test) = &self.cfg.test_listener_arn {
            alb::routes(self.elb(), test, blue, green).await?;
        }
        let ecs = self.ecs();
        let main = ecs.existing(&self.cfg.service).await?;
        let main_tg = bound(&main, blue, green).ok_or_else(|| {
            TargetError::new(format!("ECS service `{}` is not on the blue or the green target group", self.cfg.service))
                .with_hint("its load balancer settings must name `blue_target_group_arn` or `green_target_group_arn`")
        })?;
        let other_tg = if main_tg == blue { green } else { blue };
        let second_name = self.green_service();
        let second = ecs.service(&second_name).await?;
        if let Some(s) = &second
            && bound(s, blue, green) != Some(other_tg)
        {
            return Err(TargetError::new(format!(
                "ECS service `{second_name}` is not on target group {other_tg}, the one `{}` is not on",
                self.cfg.service
            ))
            .with_hint("each of the two services must sit on its own target group"));
        }
        let a = Side { service: self.cfg.service.clone(), target_group: main_tg.to_owned(), svc: Some(main) };
        let b = Side { service: second_name, target_group: other_tg.to_owned(), svc: second };
        let (stable, other, deploying) = if b.is_new() {
            (a, b, true)
        } else if a.is_new() {
            (b, a, true)
        } else if forward.lean(&b.target_group, &a.target_group) > 0 {
            (b, a, false)
        } else {
            (a, b, false)
        };
        Ok(Pair { stable, other, deploying, forward })
    }

    pub(super) async fn observe_alb(&self) -> Result<Live, TargetError> {
        let pair = self.pair().await?;
        let side = |s: &Side| s.svc.as_ref().map(|svc| (svc.task_definition().map(str::to_owned), svc.running_count()));
        let (stable_td, stable_n) = side(&pair.stable).unwrap_or((None, 0));
        let stable = self.live_version(stable_td.as_deref(), stable_n).await?;
        if !pair.deploying {
            return Ok(Live { stable, new: None, new_weight: 0 });
        }
        let (new_td, new_n) = side(&pair.other).unwrap_or((None, 0));
        let new = self.live_version(new_td.as_deref(), new_n).await?;
        Ok(Live { stable, new, new_weight: pair.forward.percent(&pair.other.target_group) })
    }

    pub(super) async fn start_alb(&mut self, release: &Release) -> Result<String, TargetError> {
        // A missing image fails here, before the new side is touched.
        self.image(release).await?;
        let pair = self.pair().await?;
        let ecs = self.ecs();
        let stable_svc = pair.stable.svc.clone().ok_or_else(|| TargetError::new("the live side has no service"))?;
        let base = stable_svc.task_definition().unwrap_or_default().to_owned();
        let desired = self.cfg.desired_count.map_or(stable_svc.desired_count().max(1), |n| n as i32);
        let new_side = pair.other;
        let svc = match &new_side.svc {
            Some(svc) => {
                ecs.tag(svc, ROLE_TAG, "new").await?;
                svc.clone()
            }
            None => self.create_second(&stable_svc, &new_side, &base).await?,
        };
        let existing = svc.task_definition().map(str::to_owned);
        let new_arn = self.revision(&base, release, existing.as_deref()).await?;
        let ecs = self.ecs();
        let settled = svc.task_definition() == Some(new_arn.as_str()) && svc.desired_count() == desired;
        let since = SystemTime::now();
        if !settled {
            if svc.task_definition() != Some(new_arn.as_str()) {
                self.run_before(&stable_svc, &new_arn).await?;
            }
            ecs.client
                .update_service()
                .cluster(&self.cfg.cluster)
                .service(&new_side.service)
                .task_definition(&new_arn)
                .desired_count(desired)
                .send()
                .await
                .map_err(|e| api::error(format!("update ECS service `{}`", new_side.service), e))?;
            self.notes.send(format!(
                "{}: starting {desired} task(s) of {} on target group {}",
                new_side.service,
                service::short(&new_arn),
                short_tg(&new_side.target_group)
            ));
        }
        ecs.follow(&new_side.service, &new_arn, since).await?;
        if let Some(test) = &self.cfg.test_listener_arn {
            let (blue, green) = self.target_groups();
            let current = alb::routes(self.elb(), test, blue, green).await?;
            let only_new = [(new_side.target_group.as_str(), 1)];
            if !current.is(&only_new) {
                alb::set_weights(self.elb(), &current, &only_new).await?;
            }
            self.notes.send(format!("test listener → {} ({})", new_side.service, short_tg(&new_side.target_group)));
        }
        Ok(self.test_url.clone())
    }

    /// Creates the second service from the live one's settings, on the other target group,
    /// with no tasks, tagged as the side being deployed.
    pub(super) async fn create_second(
        &self,
        live: &Service,
        side: &Side,
        task_definition: &str,
    ) -> Result<Service, TargetError> {
        let mut lb = live.load_balancers().first().cloned().unwrap_or_else(|| LoadBalancer::builder().build());
        lb.target_group_arn = Some(side.target_group.clone());
        let providers = live.capacity_provider_strategy().to_vec();
        let out = self
            .ecs()
            .client
            .create_service()
            .cluster(&self.cfg.cluster)
            .service_name(&side.service)
            .task_definition(task_definition)
            .desired_count(0)
            .load_balancers(lb)
            .set_launch_type(if providers.is_empty() { live.launch_type().cloned() } else { None })
            .set_capacity_provider_strategy(if providers.is_empty() { None } else { Some(providers) })
            .set_platform_version(live.platform_version().map(str::to_owned))
            .set_network_configuration(live.network_configuration().cloned())
            .set_deployment_configuration(live.deployment_configuration().cloned())
            .set_health_check_grace_period_seconds(live.health_check_grace_period_seconds())
            .tags(Tag::builder().key(ROLE_TAG).value("new").build())
            .send()
            .await
            .map_err(|e| api::error(format!("create ECS service `{}`", side.service), e))?;
        self.notes.send(format!("created service {} on target group {}", side.service, short_tg(&side.target_group)));
        out.service.ok_or_else(|| TargetError::new(format!("CreateService returned no service `{}`", side.service)))
    }

    pub(super) async fn shift_alb(&mut self, percent: u8) -> Result<(), TargetError> {
        let pair = self.pair().await?;
        if !pair.deploying {
            return Err(TargetError::new("no new version is running beside the live one"));
        }
        let (new_tg, old_tg) = (pair.other.target_group.as_str(), pair.stable.target_group.as_str());
        let weights = [(new_tg, i32::from(percent)), (old_tg, 100 - i32::from(percent))];
        if !pair.forward.is(&weights) {
            alb::set_weights(self.elb(), &pair.forward, &weights).await?;
        }
        self.notes.send(format!(
            "listener weights: {} {percent}, {} {}",
            pair.other.service,
            pair.stable.service,
            100 - percent
        ));
        if percent == 100 {
            self.traffic_left_old.get_or_insert_with(Instant::now);
        } else {
            self.traffic_left_old = None;
        }
        Ok(())
    }

    pub(super) async fn retire_alb(&mut self) -> Result<(), TargetError> {
        let pair = self.pair().await?;
        if !pair.deploying {
            return Ok(());
        }
        let new_svc = pair.other.svc.clone().expect("a side tagged new has a service");
        if pair.forward.percent(&pair.other.target_group) != 100 {
            return Err(TargetError::new(format!(
                "the new version on `{}` does not take all traffic yet",
                pair.other.service
            )));
        }
        if let Some(old) = &pair.stable.svc
            && (old.desired_count() > 0 || old.running_count() > 0)
        {
            let delay = match self.cfg.deregistration_delay {
                Some(d) => d.get(),
                None => alb::deregistration_delay(self.elb(), &pair.stable.target_group).await?,
            };
            let waited = self.traffic_left_old.map_or(Duration::ZERO, |t| t.elapsed());
            if let Some(left) = delay.checked_sub(waited).filter(|d| !d.is_zero()) {
                self.notes.send(format!(
                    "draining {}: waiting {} (the target group's deregistration delay) before scaling it down",
                    pair.stable.service,
                    humantime::format_duration(Duration::from_millis(left.as_millis() as u64))
                ));
                tokio::time::sleep(left).await;
            }
            let ecs = self.ecs();
            ecs.client
                .update_service()
                .cluster(&self.cfg.cluster)
                .service(&pair.stable.service)
                .desired_count(0)
                .send()
                .await
                .map_err(|e| api::error(format!("scale ECS service `{}` down", pair.stable.service), e))?;
            ecs.scaled_down(&pair.stable.service).await?;
            self.notes.send(format!("{}: scaled down to 0", pair.stable.service));
        }
        self.ecs().untag(&new_svc, &[ROLE_TAG]).await
    }

    pub(super) async fn rollback_alb(&mut self) -> Result<(), TargetError> {
        let pair = self.pair().await?;
        let (old_tg, new_tg) = (pair.stable.target_group.as_str(), pair.other.target_group.as_str());
        let back = [(old_tg, 100), (new_tg, 0)];
        if !pair.forward.is(&back) {
            alb::set_weights(self.elb(), &pair.forward, &back).await?;
            self.notes.send(format!("listener weights: {} 100, {} 0", pair.stable.service, pair.other.service));
        }
        self.traffic_left_old = None;
        if let Some(svc) = pair.other.svc.as_ref().filter(|_| pair.deploying) {
            if svc.desired_count() > 0 {
                self.ecs()
                    .client
                    .update_service()
                    .cluster(&self.cfg.cluster)
                    .service(&pair.other.service)
                    .desired_count(0)
                    .send()
                    .await
                    .map_err(|e| api::error(format!("scale ECS service `{}` down", pair.other.service), e))?;
                self.notes.send(format!("{}: scaled down to 0", pair.other.service));
            }
            self.ecs().untag(svc, &[ROLE_TAG]).await?;
        }
        Ok(())
    }
}
