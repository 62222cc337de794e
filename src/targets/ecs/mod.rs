//! The `ecs` target: an ECS service (Fargate or EC2), optionally behind an ALB.
//!
//! Every release runs as a new task definition revision, registered from the live one with
//! the container's image replaced by the release's image *by digest* (from ECR, see
//! `image.rs`), the declared changes applied, and two docker labels (`gantry.version`,
//! `gantry.release`) that say which release a revision runs (`taskdef.rs`).
//!
//! Two ways to cut over, chosen by the strategy (`rolling.rs`, `bluegreen.rs`):
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
mod bluegreen;
pub(crate) mod image;
mod plan;
mod rolling;
mod service;
mod taskdef;

use std::time::{Duration, Instant};

use aws_sdk_ecs::types::Service;

use self::service::Ecs;
use self::taskdef::Changes;
use crate::config::{self, StrategyKind};
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
    /// The target's region (its own `region`, else the environment's): ECS and ELB calls.
    pub region: Option<String>,
    /// The environment's region, where `gantry image push` put the image: ECR calls (ECS
    /// pulls images across regions).
    pub registry_region: Option<String>,
    /// The role to assume with GitHub's OIDC token in Actions.
    pub role_arn: Option<String>,
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
            let role = self.settings.role_arn.as_deref();
            let sdk = crate::aws::load_for(self.settings.region.as_deref(), role).await;
            let ecr = if self.settings.registry_region == self.settings.region {
                crate::aws::ecr(&sdk)
            } else {
                crate::aws::ecr(&crate::aws::load_for(self.settings.registry_region.as_deref(), role).await)
            };
            self.clients = Some(Clients { ecs: crate::aws::ecs(&sdk), elb: crate::aws::elbv2(&sdk), ecr });
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
        let settings = Settings {
            environment: "dev".into(),
            region: None,
            registry_region: None,
            role_arn: None,
            registry: None,
            repository: "r".into(),
            strategy,
        };
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
