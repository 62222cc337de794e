//! ECS services and tasks: read a service (with its tags), update it, follow a deployment
//! to its end while reporting the service's events and the reasons tasks stopped, wait for a
//! scale-down, and run the one-off task before a cutover.
//!
//! A deployment is done when the deployment that runs the new revision is PRIMARY and its
//! `rolloutState` is COMPLETED (or, where ECS reports no rollout state, it is the only one
//! and runs every desired task). FAILED (the deployment circuit breaker) fails at once, and
//! so does a PRIMARY that runs another revision: ECS rolled back by itself.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::{
    ContainerOverride, DeploymentRolloutState, DesiredStatus, Service, ServiceField, Task, TaskDefinition, TaskOverride,
};

use super::{Notes, api};
use crate::targets::TargetError;

/// Tasks whose stop reasons an error quotes.
const QUOTED_TASKS: usize = 3;

/// One cluster, with how often to poll and where progress goes.
pub struct Ecs<'a> {
    pub client: &'a Client,
    pub cluster: &'a str,
    pub poll: Duration,
    pub notes: &'a Notes,
}

impl Ecs<'_> {
    /// The service, or `None` when it does not exist (or is INACTIVE, deleted).
    pub async fn service(&self, name: &str) -> Result<Option<Service>, TargetError> {
        let out = self
            .client
            .describe_services()
            .cluster(self.cluster)
            .services(name)
            .include(ServiceField::Tags)
            .send()
            .await
            .map_err(|e| api::error(format!("describe ECS service `{name}` in cluster `{}`", self.cluster), e))?;
        Ok(out.services().iter().find(|s| s.status() != Some("INACTIVE")).cloned())
    }

    /// The service, or an error naming it.
    pub async fn existing(&self, name: &str) -> Result<Service, TargetError> {
        self.service(name).await?.ok_or_else(|| {
            TargetError::new(format!("ECS service `{name}` does not exist in cluster `{}`", self.cluster))
                .with_hint("check `cluster` and `service` in the target's `ecs` table, and the environment's region")
        })
    }

    pub async fn task_definition(&self, arn: &str) -> Result<TaskDefinition, TargetError> {
        let out = self
            .client
            .describe_task_definition()
            .task_definition(arn)
            .send()
            .await
            .map_err(|e| api::error(format!("describe task definition {arn}"), e))?;
        out.task_definition.ok_or_else(|| TargetError::new(format!("task definition {arn} not found")))
    }

    pub async fn tag(&self, service: &Service, key: &str, value: &str) -> Result<(), TargetError> {
        let arn = service.service_arn().unwrap_or_default();
        self.client
            .tag_resource()
            .resource_arn(arn)
            .tags(aws_sdk_ecs::types::Tag::builder().key(key).value(value).build())
            .send()
            .await
            .map_err(|e| api::error(format!("tag ECS service {arn}"), e))?;
        Ok(())
    }

    pub async fn untag(&self, service: &Service, keys: &[&str]) -> Result<(), TargetError> {
        let arn = service.service_arn().unwrap_or_default();
        self.client
            .untag_resource()
            .resource_arn(arn)
            .set_tag_keys(Some(keys.iter().map(|k| (*k).to_owned()).collect()))
            .send()
            .await
            .map_err(|e| api::error(format!("untag ECS service {arn}"), e))?;
        Ok(())
    }

    /// Follows the deployment of `task_definition` on `service` until it is done; `since`
    /// is when it was asked for (older service events are not news).
    pub async fn follow(&self, service: &str, task_definition: &str, since: SystemTime) -> Result<(), TargetError> {
        let mut seen_events = HashSet::new();
        let mut seen_tasks = HashSet::new();
        let mut stopped: Vec<String> = Vec::new();
        // The service's own word on a failure, when it gave one.
        let mut failure_event = None;
        loop {
            let svc = self.existing(service).await?;
            for m in self.report_events(&svc, since, &mut seen_events) {
                if m.contains("deployment failed") || m.contains("rolling back") {
                    failure_event = Some(m);
                }
            }
            for line in self.stopped_tasks(service, task_definition, &mut seen_tasks).await? {
                self.notes.send(format!("{service}: {line}"));
                stopped.push(line);
            }
            let deployments = svc.deployments();
            let ours = deployments.iter().find(|d| d.task_definition() == Some(task_definition));
            let primary = deployments.iter().find(|d| d.status() == Some("PRIMARY"));
            let quoted = || {
                if stopped.is_empty() {
                    String::new()
                } else {
                    let n = stopped.len().saturating_sub(QUOTED_TASKS);
                    format!("; stopped tasks: {}", stopped[n..].join("; "))
                }
            };
            match ours {
                Some(d) if d.rollout_state() == Some(&DeploymentRolloutState::Failed) => {
                    return Err(TargetError::new(format!(
                        "ECS deployment {} of service `{service}` failed: {}{}",
                        d.id().unwrap_or_default(),
                        d.rollout_state_reason().unwrap_or("no reason given"),
                        quoted()
                    ))
                    .with_hint(
                        "the deployment circuit breaker stopped it (ECS rolls the service back by itself when \
                         rollback is on); the stopped tasks' reasons say why the new tasks did not stay up",
                    ));
                }
                Some(d) if d.status() == Some("PRIMARY") && done(d, deployments.len()) => return Ok(()),
                Some(_) => {}
                None => {
                    let other = primary.and_then(|p| p.task_definition()).unwrap_or("nothing");
                    let said = failure_event.as_deref().map(|m| format!(" (ECS: {m})")).unwrap_or_default();
                    return Err(TargetError::new(format!(
                        "ECS service `{service}` no longer deploys {task_definition}: its PRIMARY deployment runs {other}{said}{}",
                        quoted()
                    ))
                    .with_hint("ECS rolled back by itself, or another deploy changed the service"));
                }
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    /// Waits until `service` runs no task.
    pub async fn scaled_down(&self, service: &str) -> Result<(), TargetError> {
        loop {
            let svc = self.existing(service).await?;
            if svc.running_count() == 0 && svc.pending_count() == 0 {
                return Ok(());
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    /// Reports the service's events since `since` not seen yet; returns their messages.
    fn report_events(&self, svc: &Service, since: SystemTime, seen: &mut HashSet<String>) -> Vec<String> {
        let since = aws_sdk_ecs::primitives::DateTime::from(since);
        let mut fresh: Vec<_> = svc
            .events()
            .iter()
            .filter(|e| e.created_at().is_some_and(|t| t.as_secs_f64() >= since.as_secs_f64()))
            .filter(|e| seen.insert(e.id().unwrap_or_default().to_owned()))
            .collect();
        fresh.reverse(); // ECS lists the newest first
        let messages: Vec<String> = fresh.iter().map(|e| e.message().unwrap_or_default().to_owned()).collect();
        for m in &messages {
            self.notes.send(m.clone());
        }
        messages
    }

    /// New stopped tasks of `task_definition`, one line each: why they stopped.
    async fn stopped_tasks(
        &self,
        service: &str,
        task_definition: &str,
        seen: &mut HashSet<String>,
    ) -> Result<Vec<String>, TargetError> {
        let list = self
            .client
            .list_tasks()
            .cluster(self.cluster)
            .service_name(service)
            .desired_status(DesiredStatus::Stopped)
            .send()
            .await
            .map_err(|e| api::error(format!("list the stopped tasks of ECS service `{service}`"), e))?;
        let fresh: Vec<String> = list.task_arns().iter().filter(|a| !seen.contains(*a)).cloned().collect();
        if fresh.is_empty() {
            return Ok(Vec::new());
        }
        let tasks = self.tasks(&fresh).await?;
        let mut lines = Vec::new();
        for task in tasks {
            let arn = task.task_arn().unwrap_or_default().to_owned();
            if task.last_status() != Some("STOPPED") {
                continue;
            }
            seen.insert(arn);
            if task.task_definition_arn() == Some(task_definition) {
                lines.push(describe_stop(&task));
            }
        }
        Ok(lines)
    }

    async fn tasks(&self, arns: &[String]) -> Result<Vec<Task>, TargetError> {
        let out = self
            .client
            .describe_tasks()
            .cluster(self.cluster)
            .set_tasks(Some(arns.to_vec()))
            .send()
            .await
            .map_err(|e| api::error(format!("describe tasks in cluster `{}`", self.cluster), e))?;
        Ok(out.tasks().to_vec())
    }

    /// Runs `command` once in `container` of `task_definition`, in `service`'s network, and
    /// waits (up to `timeout`) for it to stop; fails unless the container exited with 0.
    pub async fn run_once(
        &self,
        service: &Service,
        task_definition: &str,
        container: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<(), TargetError> {
        let shown = command.join(" ");
        let providers = service.capacity_provider_strategy().to_vec();
        let out = self
            .client
            .run_task()
            .cluster(self.cluster)
            .task_definition(task_definition)
            .count(1)
            .started_by("gantry")
            .set_launch_type(if providers.is_empty() { service.launch_type().cloned() } else { None })
            .set_capacity_provider_strategy(if providers.is_empty() { None } else { Some(providers) })
            .set_platform_version(service.platform_version().map(str::to_owned))
            .set_network_configuration(service.network_configuration().cloned())
            .overrides(
                TaskOverride::builder()
                    .container_overrides(
                        ContainerOverride::builder().name(container).set_command(Some(command.to_vec())).build(),
                    )
                    .build(),
            )
            .send()
            .await
            .map_err(|e| api::error(format!("run the one-off task `{shown}`"), e))?;
        if let Some(f) = out.failures().first() {
            return Err(TargetError::new(format!(
                "ECS could not start the one-off task `{shown}`: {} {}",
                f.reason().unwrap_or_default(),
                f.detail().unwrap_or_default()
            )));
        }
        let arn = out
            .tasks()
            .first()
            .and_then(|t| t.task_arn())
            .ok_or_else(|| TargetError::new(format!("ECS started no task for `{shown}`")))?
            .to_owned();
        let id = short(&arn);
        self.notes.send(format!("one-off task {id} started: {shown}"));
        let wait = async {
            loop {
                let task = self.tasks(std::slice::from_ref(&arn)).await?.into_iter().next();
                if let Some(task) = task.filter(|t| t.last_status() == Some("STOPPED")) {
                    return Ok(task);
                }
                tokio::time::sleep(self.poll).await;
            }
        };
        let Ok(task) = tokio::time::timeout(timeout, wait).await else {
            let stopped = self
                .client
                .stop_task()
                .cluster(self.cluster)
                .task(&arn)
                .reason("gantry: run_before_timeout passed")
                .send()
                .await;
            let fate = if stopped.is_ok() {
                "gantry stopped it"
            } else {
                "it may still run: stop it with `aws ecs stop-task`"
            };
            return Err(TargetError::new(format!(
                "the one-off task {id} (`{shown}`) did not stop within {}; {fate}",
                humantime::format_duration(timeout)
            ))
            .with_hint("raise `run_before_timeout` if the task needs longer, or see its logs"));
        };
        let task = task?;
        let exit = task.containers().iter().find(|c| c.name() == Some(container)).and_then(|c| c.exit_code());
        match exit {
            Some(0) => {
                self.notes.send(format!("one-off task {id} exited with 0"));
                Ok(())
            }
            _ => Err(TargetError::new(format!("the one-off task {id} (`{shown}`) failed: {}", describe_stop(&task)))
                .with_hint("the cutover did not start; fix the task (see its logs) and deploy again")),
        }
    }
}

/// Whether a PRIMARY deployment finished.
fn done(d: &aws_sdk_ecs::types::Deployment, deployments: usize) -> bool {
    let all_running = d.running_count() == d.desired_count();
    match d.rollout_state() {
        Some(state) => *state == DeploymentRolloutState::Completed && all_running,
        None => deployments == 1 && all_running,
    }
}

/// `task 0a1b2c3d stopped: Essential container in task exited (container api exit code 1)`.
pub fn describe_stop(task: &Task) -> String {
    let containers: Vec<String> = task
        .containers()
        .iter()
        .map(|c| {
            let code = c.exit_code().map_or_else(|| "no exit code".to_owned(), |x| format!("exit code {x}"));
            let reason = c.reason().map(|r| format!(", {r}")).unwrap_or_default();
            format!("container {} {code}{reason}", c.name().unwrap_or("?"))
        })
        .collect();
    format!(
        "task {} stopped: {} ({})",
        short(task.task_arn().unwrap_or_default()),
        task.stopped_reason().unwrap_or("no reason given"),
        containers.join("; ")
    )
}

/// The id at the end of an ARN.
pub fn short(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::types::Deployment;

    fn deployment(state: Option<DeploymentRolloutState>, running: i32, desired: i32) -> Deployment {
        Deployment::builder()
            .status("PRIMARY")
            .set_rollout_state(state)
            .running_count(running)
            .desired_count(desired)
            .build()
    }

    #[test]
    fn a_deployment_is_done_when_completed_with_every_task_running() {
        assert!(done(&deployment(Some(DeploymentRolloutState::Completed), 2, 2), 1));
        assert!(!done(&deployment(Some(DeploymentRolloutState::Completed), 1, 2), 1));
        assert!(!done(&deployment(Some(DeploymentRolloutState::InProgress), 2, 2), 2));
        // Services without rollout states (older deployment controllers): the only one, full.
        assert!(done(&deployment(None, 2, 2), 1));
        assert!(!done(&deployment(None, 2, 2), 2));
    }

    #[test]
    fn ids_are_the_end_of_the_arn() {
        assert_eq!(short("arn:aws:ecs:us-east-1:1:task-definition/api:7"), "api:7");
        assert_eq!(short("plain"), "plain");
    }
}
