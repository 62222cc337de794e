//! The `ecs` target: an ECS service (Fargate or EC2), optionally behind an ALB.
//!
//! Every release runs as a new task definition revision, registered from the live one with
//! the container's image replaced by the release's image *by digest* (from ECR, see
//! `image.rs`), the declared changes applied, and two docker labels (`gantry.version`,
//! `gantry.release`) that say which release a revision runs (`taskdef.rs`).
//!
//! Two ways to cut over, chosen by the strategy:
//!
//! - **rolling** (and all-at-once without a listener): ECS does the batches. `start-new`
//!   registers the revision, runs the `run_before` task, calls UpdateService (maximumPercent
//!   = 100 + the batch share, minimumHealthyPercent 100) and follows the deployment to
//!   COMPLETED, reporting service events and stopped tasks, failing at once on the circuit
//!   breaker (FAILED) or when ECS rolled back by itself. `replace` and `shift` have nothing
//!   left to do. `verify` reads the service again: the PRIMARY deployment must run the new
//!   revision. `rollback` updates the service back to the revision it ran before.
//!   The service's tags `gantry:previous` and `gantry:deploying` (task definition ARNs) hold
//!   what a crashed process needs to finish or undo.
//! - **blue-green, canary, linear** (and all-at-once with a listener): two services, each on
//!   one target group behind the production listener. The side taking no traffic is tagged
//!   `gantry:role=new`, gets the new revision and the desired count, and is gated on the
//!   test listener (pointed at its target group) before any user traffic; `shift` sets the
//!   listener's weights; `retire-old` waits the old target group's deregistration delay after
//!   traffic left it, scales the old side to 0 and drops the tag, so the roles swap on every
//!   deploy. `rollback` puts the weights back at once and scales the new side to 0.
//!
//! The target keeps nothing on this machine: every call reads the service, its tags and the
//! listener, so any later process converges what an earlier one started.

mod alb;
mod api;
mod image;
mod service;
mod taskdef;

use std::time::{Duration, Instant, SystemTime};

use aws_sdk_ecs::types::{DeploymentConfiguration, LoadBalancer, Service, Tag};

use self::service::Ecs;
use self::taskdef::Changes;
use crate::config::{self, BatchSize, StrategyKind};
use crate::rollout::Step;
use crate::targets::{Live, LiveVersion, Progress, Release, Target, TargetError};

const PREVIOUS_TAG: &str = "gantry:previous";
const DEPLOYING_TAG: &str = "gantry:deploying";
const ROLE_TAG: &str = "gantry:role";
const DEFAULT_POLL: Duration = Duration::from_secs(5);
const DEFAULT_RUN_BEFORE_TIMEOUT: Duration = Duration::from_secs(600);

/// Where progress lines go (the engine's events), when anyone listens.
#[derive(Default)]
pub struct Notes(Option<Progress>);

impl Notes {
    pub fn send(&self, line: String) {
        if let Some(tx) = &self.0 {
            let _ = tx.send(line);
        }
    }
}

/// What the rest of gantry.toml tells the target.
pub struct Settings {
    pub environment: String,
    pub region: Option<String>,
    pub registry: Option<String>,
    /// ECR repository of the target's image.
    pub repository: String,
    pub strategy: config::StrategyConfig,
}

struct Clients {
    ecs: aws_sdk_ecs::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
    ecr: aws_sdk_ecr::Client,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Rolling,
    Alb,
}

pub struct EcsTarget {
    cfg: Box<config::EcsTarget>,
    settings: Box<Settings>,
    mode: Mode,
    clients: Option<Clients>,
    notes: Notes,
    url: String,
    test_url: String,
    /// When the old side's weight went to 0 in this process (the drain started).
    traffic_left_old: Option<Instant>,
}

/// One side of a blue-green pair: a service on a target group.
#[derive(Debug, Clone)]
struct Side {
    service: String,
    target_group: String,
    svc: Option<Service>,
}

impl Side {
    fn is_new(&self) -> bool {
        self.svc.as_ref().is_some_and(|s| tag(s, ROLE_TAG) == Some("new"))
    }
}

struct Pair {
    stable: Side,
    /// The side a deployment is bringing up (tagged), or the idle one.
    other: Side,
    deploying: bool,
    forward: alb::Routes,
}

impl EcsTarget {
    pub fn new(cfg: &config::EcsTarget, settings: Settings) -> Self {
        let through_alb =
            matches!(settings.strategy.kind, StrategyKind::BlueGreen | StrategyKind::Canary | StrategyKind::Linear)
                || (settings.strategy.kind == StrategyKind::AllAtOnce && cfg.listener_arn.is_some());
        Self {
            cfg: Box::new(cfg.clone()),
            mode: if through_alb { Mode::Alb } else { Mode::Rolling },
            settings: Box::new(settings),
            clients: None,
            notes: Notes::default(),
            url: cfg.url.clone().unwrap_or_default(),
            test_url: cfg.test_url.clone().unwrap_or_default(),
            traffic_left_old: None,
        }
    }

    /// Sends progress lines (service events, stopped tasks, weights) to `progress`.
    pub fn set_progress(&mut self, progress: Progress) {
        self.notes = Notes(Some(progress));
    }

    async fn connect(&mut self) -> Result<(), TargetError> {
        if self.clients.is_none() {
            let sdk = crate::aws::load(self.settings.region.as_deref()).await;
            self.clients =
                Some(Clients { ecs: crate::aws::ecs(&sdk), elb: crate::aws::elbv2(&sdk), ecr: crate::aws::ecr(&sdk) });
        }
        if self.mode == Mode::Alb {
            let elb = &self.clients.as_ref().expect("connected").elb;
            if self.url.is_empty()
                && let Some(arn) = &self.cfg.listener_arn
            {
                self.url = alb::url(elb, arn).await?;
            }
            if self.test_url.is_empty()
                && let Some(arn) = &self.cfg.test_listener_arn
            {
                self.test_url = alb::url(elb, arn).await?;
            }
        }
        Ok(())
    }

    fn ecs(&self) -> Ecs<'_> {
        Ecs {
            client: &self.clients.as_ref().expect("connected").ecs,
            cluster: &self.cfg.cluster,
            poll: self.cfg.poll_interval.map_or(DEFAULT_POLL, |d| d.get()),
            notes: &self.notes,
        }
    }

    fn elb(&self) -> &aws_sdk_elasticloadbalancingv2::Client {
        &self.clients.as_ref().expect("connected").elb
    }

    fn green_service(&self) -> String {
        self.cfg.green_service.clone().unwrap_or_else(|| format!("{}-green", self.cfg.service))
    }

    fn changes(&self, image: String) -> Changes {
        Changes {
            image,
            environment: self.cfg.environment.clone(),
            cpu: self.cfg.cpu.clone(),
            memory: self.cfg.memory.clone(),
        }
    }

    /// The release's image, pinned by digest and checked to be in ECR.
    async fn image(&self, release: &Release) -> Result<image::Pinned, TargetError> {
        image::resolve(
            &self.clients.as_ref().expect("connected").ecr,
            self.cfg.image.as_str(),
            &self.settings.repository,
            self.settings.registry.as_deref(),
            &release.version,
            &self.settings.environment,
        )
        .await
    }

    /// The revision for `release` built from `base` (registered unless `existing` is it).
    async fn revision(&self, base: &str, release: &Release, existing: Option<&str>) -> Result<String, TargetError> {
        let ecs = self.ecs();
        let pinned = self.image(release).await?;
        let changes = self.changes(pinned.reference());
        if let Some(arn) = existing {
            let td = ecs.task_definition(arn).await?;
            if taskdef::runs(&td, &self.cfg.container, release, &changes) {
                return Ok(arn.to_owned());
            }
        }
        let live = ecs.task_definition(base).await?;
        let new = taskdef::build(&live, &self.cfg.container, release, &changes)?;
        let out = taskdef::register(ecs.client, &new).send().await.map_err(|e| {
            api::error(format!("register a revision of task definition `{}`", new.family().unwrap_or_default()), e)
        })?;
        let arn = out
            .task_definition()
            .and_then(|t| t.task_definition_arn())
            .ok_or_else(|| TargetError::new("RegisterTaskDefinition returned no ARN"))?
            .to_owned();
        self.notes.send(format!("registered {} running {}", service::short(&arn), pinned.reference()));
        Ok(arn)
    }

    async fn live_version(&self, td_arn: Option<&str>, replicas: i32) -> Result<Option<LiveVersion>, TargetError> {
        let Some(arn) = td_arn else { return Ok(None) };
        let td = self.ecs().task_definition(arn).await?;
        Ok(taskdef::release_of(&td, &self.cfg.container).map(|(version, digest)| LiveVersion {
            version,
            digest,
            replicas: replicas.max(0) as u32,
        }))
    }

    async fn run_before(&self, svc: &Service, td_arn: &str) -> Result<(), TargetError> {
        let Some(command) = &self.cfg.run_before else { return Ok(()) };
        let timeout = self.cfg.run_before_timeout.map_or(DEFAULT_RUN_BEFORE_TIMEOUT, |d| d.get());
        self.ecs().run_once(svc, td_arn, &self.cfg.container, command, timeout).await
    }

    // ---- rolling: ECS replaces the tasks ----

    fn max_percent(&self, desired: i32) -> i32 {
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

    async fn observe_rolling(&self) -> Result<Live, TargetError> {
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

    async fn start_rolling(&mut self, release: &Release) -> Result<String, TargetError> {
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

    async fn retire_rolling(&mut self) -> Result<(), TargetError> {
        let ecs = self.ecs();
        let svc = ecs.existing(&self.cfg.service).await?;
        let Some(new_arn) = tag(&svc, DEPLOYING_TAG).map(str::to_owned) else { return Ok(()) };
        // Settled on the new revision (a no-op when it is): then the old revision is gone.
        ecs.follow(&self.cfg.service, &new_arn, SystemTime::now()).await?;
        ecs.untag(&svc, &[DEPLOYING_TAG, PREVIOUS_TAG]).await
    }

    async fn rollback_rolling(&mut self) -> Result<(), TargetError> {
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

    // ---- blue-green and canary: two services behind the listener ----

    fn target_groups(&self) -> (&str, &str) {
        (
            self.cfg.blue_target_group_arn.as_deref().unwrap_or_default(),
            self.cfg.green_target_group_arn.as_deref().unwrap_or_default(),
        )
    }

    async fn pair(&self) -> Result<Pair, TargetError> {
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

    async fn observe_alb(&self) -> Result<Live, TargetError> {
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

    async fn start_alb(&mut self, release: &Release) -> Result<String, TargetError> {
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
    async fn create_second(&self, live: &Service, side: &Side, task_definition: &str) -> Result<Service, TargetError> {
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

    async fn shift_alb(&mut self, percent: u8) -> Result<(), TargetError> {
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

    async fn retire_alb(&mut self) -> Result<(), TargetError> {
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

    async fn rollback_alb(&mut self) -> Result<(), TargetError> {
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

fn tag<'s>(svc: &'s Service, key: &str) -> Option<&'s str> {
    svc.tags().iter().find(|t| t.key() == Some(key)).and_then(|t| t.value())
}

/// The target group (blue or green) a service's load balancer settings name.
fn bound<'a>(svc: &Service, blue: &'a str, green: &'a str) -> Option<&'a str> {
    svc.load_balancers().iter().find_map(|lb| match lb.target_group_arn() {
        Some(tg) if tg == blue => Some(blue),
        Some(tg) if tg == green => Some(green),
        _ => None,
    })
}

/// `targetgroup/api-blue/0123` from a target group ARN.
fn short_tg(arn: &str) -> &str {
    arn.split_once(":targetgroup/").map_or(arn, |(_, rest)| rest.split('/').next().unwrap_or(rest))
}

impl Target for EcsTarget {
    fn replicas(&self) -> u32 {
        // Rolling on ECS is one platform-driven deployment: one batch in the plan.
        match self.mode {
            Mode::Rolling => 1,
            Mode::Alb => self.cfg.desired_count.unwrap_or(1),
        }
    }

    fn public_url(&self) -> String {
        self.url.clone()
    }

    fn step_detail(&self, step: &Step) -> Option<String> {
        let run_before = if self.cfg.run_before.is_some() { ", run the one-off task" } else { "" };
        Some(match (self.mode, step) {
            (Mode::Rolling, Step::StartNew { .. }) => format!(
                "register the new revision{run_before}, update service `{}` and follow the ECS deployment to \
                 COMPLETED (ECS replaces the tasks in batches and its health checks gate them)",
                self.cfg.service
            ),
            (Mode::Rolling, Step::GateNew) => {
                "health-gate the service (ECS already serves users from the new tasks)".into()
            }
            (Mode::Rolling, Step::Replace { .. }) => "nothing left to do: ECS replaced every task".into(),
            (Mode::Rolling, Step::Shift { .. }) => {
                "nothing left to do: ECS moved the traffic as it replaced the tasks".into()
            }
            (Mode::Rolling, Step::Verify) => {
                "verify that the service's PRIMARY deployment runs the new revision and is COMPLETED".into()
            }
            (Mode::Rolling, Step::RetireOld) => "forget the old revision (ECS stopped its tasks)".into(),
            (Mode::Alb, Step::StartNew { .. }) => format!(
                "register the new revision{run_before}, start it on the idle service at the live desired count, \
                 point the test listener at it; no user traffic"
            ),
            (Mode::Alb, Step::GateNew) => "health-gate the new version through the test listener".into(),
            (Mode::Alb, Step::Shift { percent }) => {
                format!("set the listener's weights: new version {percent}, old version {}", 100 - percent)
            }
            (Mode::Alb, Step::Verify) => {
                "verify that the listener sends all user traffic to the new version's target group".into()
            }
            (Mode::Alb, Step::RetireOld) => {
                "wait the old target group's deregistration delay, then scale the old service to 0".into()
            }
            _ => return None,
        })
    }

    async fn observe(&mut self) -> Result<Live, TargetError> {
        self.connect().await?;
        match self.mode {
            Mode::Rolling => self.observe_rolling().await,
            Mode::Alb => self.observe_alb().await,
        }
    }

    async fn start_new(&mut self, release: &Release, _replicas: u32) -> Result<String, TargetError> {
        self.connect().await?;
        match self.mode {
            Mode::Rolling => self.start_rolling(release).await,
            Mode::Alb => self.start_alb(release).await,
        }
    }

    async fn shift(&mut self, percent: u8) -> Result<(), TargetError> {
        self.connect().await?;
        match self.mode {
            // ECS moved the traffic while it replaced the tasks.
            Mode::Rolling => Ok(()),
            Mode::Alb => self.shift_alb(percent).await,
        }
    }

    async fn replace(&mut self, _old: u32) -> Result<(), TargetError> {
        // Only rolling plans replace, and on ECS the deployment in start-new did it.
        Ok(())
    }

    async fn retire_old(&mut self) -> Result<(), TargetError> {
        self.connect().await?;
        match self.mode {
            Mode::Rolling => self.retire_rolling().await,
            Mode::Alb => self.retire_alb().await,
        }
    }

    async fn rollback(&mut self) -> Result<(), TargetError> {
        self.connect().await?;
        match self.mode {
            Mode::Rolling => self.rollback_rolling().await,
            Mode::Alb => self.rollback_alb().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_group_names_are_short_in_messages() {
        assert_eq!(
            short_tg("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/api-blue/0123abcd"),
            "api-blue"
        );
        assert_eq!(short_tg("tg"), "tg");
    }

    fn target(strategy: &str, ecs_extra: &str) -> EcsTarget {
        let cfg: config::EcsTarget =
            toml::from_str(&format!("cluster = 'c'\nservice = 's'\ncontainer = 'c'\nimage = 'i'\n{ecs_extra}"))
                .unwrap();
        let strategy: config::StrategyConfig = toml::from_str(strategy).unwrap();
        let settings =
            Settings { environment: "dev".into(), region: None, registry: None, repository: "r".into(), strategy };
        EcsTarget::new(&cfg, settings)
    }

    #[test]
    fn the_rolling_batch_is_ecs_maximum_percent() {
        assert_eq!(target("type = 'rolling'\nbatch = '25%'", "").max_percent(4), 125);
        assert_eq!(target("type = 'rolling'\nbatch = 1", "").max_percent(4), 125);
        assert_eq!(target("type = 'rolling'\nbatch = 3", "").max_percent(2), 200);
        assert_eq!(target("type = 'all-at-once'", "").max_percent(4), 200);
    }

    #[test]
    fn the_strategy_and_a_listener_choose_the_mode() {
        assert_eq!(target("type = 'rolling'\nbatch = 1", "").mode, Mode::Rolling);
        assert_eq!(target("type = 'all-at-once'", "").mode, Mode::Rolling);
        assert_eq!(target("type = 'all-at-once'", "listener_arn = 'l'").mode, Mode::Alb);
        assert_eq!(target("type = 'canary'\nsteps = [10, 100]", "listener_arn = 'l'").mode, Mode::Alb);
        assert_eq!(target("type = 'blue-green'", "listener_arn = 'l'").replicas(), 1);
        assert_eq!(target("type = 'blue-green'", "desired_count = 3").replicas(), 3);
    }
}
