//! The emulated ECS control plane: task definitions, services with their deployments and
//! events, and tasks. Behaviour follows the ECS API reference and developer guide:
//!
//! - UpdateService with a new task definition makes a new PRIMARY deployment
//!   (`rolloutState` IN_PROGRESS) and turns the old PRIMARY ACTIVE; a change of desired count
//!   alone changes the PRIMARY deployment's count.
//! - Each tick, the PRIMARY deployment starts one task until it runs its desired count, then
//!   one task of an older deployment stops per tick; when none is left the deployment is
//!   COMPLETED and the service "has reached a steady state".
//! - Tasks of an image listed in `failing_images` exit 1 as soon as they start ("Essential
//!   container in task exited"). With the deployment circuit breaker on, the deployment
//!   fails once its failed tasks reach the threshold (min(200, max(3, ceil(desired / 2))),
//!   the developer guide's formula): `rolloutState` FAILED, and with rollback on, a new
//!   PRIMARY deployment of the last completed task definition starts its tasks as any
//!   deployment does, while the old deployment's tasks keep serving until it completes.
//! - RunTask starts a task (PROVISIONING → RUNNING → STOPPED over ticks) whose essential
//!   container exits with the code registered for its command's first word (default 0).
//!
//! Not emulated: placement, capacity, load balancer registration (ELBv2 is moto's), task
//! sets, pagination, SigV4.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";

#[derive(Debug)]
pub struct ApiError {
    pub kind: String,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: &str, message: impl Into<String>) -> Self {
        Self { kind: kind.into(), message: message.into() }
    }
}

#[derive(Debug, Clone)]
pub struct Deployment {
    pub id: String,
    pub status: String,
    pub task_definition: String,
    pub desired: i64,
    pub running: i64,
    pub failed: i64,
    pub rollout: String,
    pub reason: String,
    pub created: f64,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub arn: String,
    pub name: String,
    pub cluster: String,
    pub task_definition: String,
    pub desired: i64,
    pub deployments: Vec<Deployment>,
    /// Newest first, as ECS lists them.
    pub events: Vec<Value>,
    pub tags: BTreeMap<String, String>,
    pub spec: Value,
}

#[derive(Default)]
pub struct State {
    pub clusters: BTreeSet<String>,
    pub task_definitions: BTreeMap<String, Vec<Value>>,
    pub services: BTreeMap<String, Service>,
    pub tasks: Vec<Value>,
    /// Operations received, in order (`UpdateService`, ...).
    pub requests: Vec<String>,
    /// Image references whose tasks exit 1 at start.
    pub failing_images: BTreeSet<String>,
    /// Exit code of RunTask tasks by their command's first word.
    pub run_task_exit: BTreeMap<String, i64>,
    /// RunTask commands (first word) whose task never stops.
    pub hanging: BTreeSet<String>,
    /// Operations answered with AccessDeniedException.
    pub deny: BTreeSet<String>,
    clock: f64,
    next: u64,
}

fn field<'a>(input: &'a Value, key: &str) -> Result<&'a str, ApiError> {
    input[key].as_str().ok_or_else(|| ApiError::new("InvalidParameterException", format!("{key} is required")))
}

impl State {
    fn id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    fn now(&mut self) -> f64 {
        self.clock = self.clock.max(now()) + 0.001;
        self.clock
    }

    pub fn call(&mut self, op: &str, input: &Value) -> Result<Value, ApiError> {
        self.requests.push(op.to_owned());
        if self.deny.contains(op) {
            return Err(ApiError::new(
                "AccessDeniedException",
                format!("User: arn:aws:iam::{ACCOUNT}:user/test is not authorized to perform: ecs:{op}"),
            ));
        }
        match op {
            "CreateCluster" => {
                let name = input["clusterName"].as_str().unwrap_or("default").to_owned();
                self.clusters.insert(name.clone());
                Ok(json!({"cluster": {"clusterName": name, "clusterArn": cluster_arn(&name), "status": "ACTIVE"}}))
            }
            "RegisterTaskDefinition" => self.register(input),
            "DescribeTaskDefinition" => {
                let td = self.task_definition(field(input, "taskDefinition")?)?;
                Ok(json!({"taskDefinition": td, "tags": []}))
            }
            "CreateService" => self.create_service(input),
            "DescribeServices" => self.describe_services(input),
            "UpdateService" => self.update_service(input),
            "TagResource" => {
                let svc = self.service_by_arn(field(input, "resourceArn")?)?;
                for t in input["tags"].as_array().into_iter().flatten() {
                    let (k, v) = (t["key"].as_str().unwrap_or_default(), t["value"].as_str().unwrap_or_default());
                    svc.tags.insert(k.into(), v.into());
                }
                Ok(json!({}))
            }
            "UntagResource" => {
                let svc = self.service_by_arn(field(input, "resourceArn")?)?;
                for k in input["tagKeys"].as_array().into_iter().flatten() {
                    svc.tags.remove(k.as_str().unwrap_or_default());
                }
                Ok(json!({}))
            }
            "ListTagsForResource" => {
                let svc = self.service_by_arn(field(input, "resourceArn")?)?;
                Ok(json!({"tags": tags_json(&svc.tags)}))
            }
            "RunTask" => self.run_task(input),
            "DescribeTasks" => {
                let cluster = self.cluster(input)?;
                let wanted: Vec<&str> =
                    input["tasks"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                let tasks: Vec<Value> = self
                    .tasks
                    .iter()
                    .filter(|t| t["clusterArn"] == cluster_arn(&cluster))
                    .filter(|t| {
                        wanted.iter().any(|w| {
                            t["taskArn"] == *w || t["taskArn"].as_str().is_some_and(|a| a.ends_with(&format!("/{w}")))
                        })
                    })
                    .cloned()
                    .collect();
                Ok(json!({"tasks": tasks, "failures": []}))
            }
            "StopTask" => {
                self.cluster(input)?;
                let arn = field(input, "task")?;
                let reason = input["reason"].as_str().unwrap_or("Task stopped by user").to_owned();
                let task =
                    self.tasks.iter_mut().find(|t| t["taskArn"] == arn).ok_or_else(|| {
                        ApiError::new("InvalidParameterException", "The referenced task was not found.")
                    })?;
                task["lastStatus"] = json!("STOPPED");
                task["desiredStatus"] = json!("STOPPED");
                task["stoppedReason"] = json!(reason);
                task["stopCode"] = json!("UserInitiated");
                Ok(json!({"task": task.clone()}))
            }
            "ListTasks" => {
                let cluster = self.cluster(input)?;
                let group = input["serviceName"].as_str().map(|s| format!("service:{s}"));
                let desired = input["desiredStatus"].as_str().unwrap_or("RUNNING");
                let arns: Vec<Value> = self
                    .tasks
                    .iter()
                    .filter(|t| t["clusterArn"] == cluster_arn(&cluster))
                    .filter(|t| group.as_ref().is_none_or(|g| t["group"] == g.as_str()))
                    .filter(|t| t["desiredStatus"] == desired)
                    .map(|t| t["taskArn"].clone())
                    .collect();
                Ok(json!({"taskArns": arns}))
            }
            other => Err(ApiError::new("InvalidAction", format!("the ECS emulator does not implement {other}"))),
        }
    }

    fn cluster(&self, input: &Value) -> Result<String, ApiError> {
        let name = input["cluster"].as_str().unwrap_or("default");
        let name = name.rsplit('/').next().unwrap_or(name).to_owned();
        if self.clusters.contains(&name) {
            Ok(name)
        } else {
            Err(ApiError::new("ClusterNotFoundException", "Cluster not found."))
        }
    }

    fn register(&mut self, input: &Value) -> Result<Value, ApiError> {
        let family = field(input, "family")?.to_owned();
        if input["containerDefinitions"].as_array().is_none_or(Vec::is_empty) {
            return Err(ApiError::new("ClientException", "Container list cannot be empty."));
        }
        let revisions = self.task_definitions.entry(family.clone()).or_default();
        let revision = revisions.len() + 1;
        let mut td = input.clone();
        let obj = td.as_object_mut().expect("an object");
        obj.remove("tags");
        obj.insert(
            "taskDefinitionArn".into(),
            json!(format!("arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{family}:{revision}")),
        );
        obj.insert("revision".into(), json!(revision));
        obj.insert("status".into(), json!("ACTIVE"));
        obj.insert("registeredAt".into(), json!(now()));
        revisions.push(td.clone());
        Ok(json!({"taskDefinition": td, "tags": []}))
    }

    /// A task definition by ARN, `family:revision` or `family` (the latest).
    pub fn task_definition(&self, reference: &str) -> Result<Value, ApiError> {
        let name = reference.rsplit("task-definition/").next().unwrap_or(reference);
        let (family, revision) = match name.rsplit_once(':') {
            Some((f, r)) => (f, r.parse::<usize>().ok()),
            None => (name, None),
        };
        let revisions = self.task_definitions.get(family);
        let found = match revision {
            Some(r) => revisions.and_then(|v| v.get(r.wrapping_sub(1))),
            None => revisions.and_then(|v| v.last()),
        };
        found.cloned().ok_or_else(|| ApiError::new("ClientException", "Unable to describe task definition."))
    }

    fn create_service(&mut self, input: &Value) -> Result<Value, ApiError> {
        let cluster = self.cluster(input)?;
        let name = field(input, "serviceName")?.to_owned();
        let key = format!("{cluster}/{name}");
        if self.services.contains_key(&key) {
            return Err(ApiError::new("InvalidParameterException", "Creation of service was not idempotent."));
        }
        let td = self.task_definition(field(input, "taskDefinition")?)?;
        let td_arn = td["taskDefinitionArn"].as_str().unwrap_or_default().to_owned();
        let desired = input["desiredCount"].as_i64().unwrap_or(0);
        let id = self.id();
        let created = self.now();
        let svc = Service {
            arn: format!("arn:aws:ecs:{REGION}:{ACCOUNT}:service/{cluster}/{name}"),
            name: name.clone(),
            cluster: cluster.clone(),
            task_definition: td_arn.clone(),
            desired,
            deployments: vec![Deployment {
                id: format!("ecs-svc/{id:019}"),
                status: "PRIMARY".into(),
                task_definition: td_arn,
                desired,
                running: desired,
                failed: 0,
                rollout: "COMPLETED".into(),
                reason: "ECS deployment ecs-svc completed.".into(),
                created,
            }],
            events: Vec::new(),
            tags: input["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| {
                    (
                        t["key"].as_str().unwrap_or_default().to_owned(),
                        t["value"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect(),
            spec: input.clone(),
        };
        self.services.insert(key.clone(), svc);
        Ok(json!({"service": self.service_json(&key, true)}))
    }

    fn describe_services(&mut self, input: &Value) -> Result<Value, ApiError> {
        let cluster = self.cluster(input)?;
        let with_tags = input["include"].as_array().is_some_and(|i| i.iter().any(|v| v == "TAGS"));
        let (mut services, mut failures) = (Vec::new(), Vec::new());
        for name in input["services"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            let name = name.rsplit('/').next().unwrap_or(name);
            let key = format!("{cluster}/{name}");
            if self.services.contains_key(&key) {
                services.push(self.service_json(&key, with_tags));
            } else {
                failures.push(json!({
                    "arn": format!("arn:aws:ecs:{REGION}:{ACCOUNT}:service/{cluster}/{name}"),
                    "reason": "MISSING"
                }));
            }
        }
        Ok(json!({"services": services, "failures": failures}))
    }

    fn update_service(&mut self, input: &Value) -> Result<Value, ApiError> {
        let cluster = self.cluster(input)?;
        let name = field(input, "service")?;
        let key = format!("{cluster}/{}", name.rsplit('/').next().unwrap_or(name));
        if !self.services.contains_key(&key) {
            return Err(ApiError::new("ServiceNotFoundException", "Service not found."));
        }
        let new_td = match input["taskDefinition"].as_str() {
            Some(r) => Some(self.task_definition(r)?["taskDefinitionArn"].as_str().unwrap_or_default().to_owned()),
            None => None,
        };
        let id = self.id();
        let created = self.now();
        let svc = self.services.get_mut(&key).expect("checked");
        if let Some(config) = input.get("deploymentConfiguration") {
            svc.spec["deploymentConfiguration"] = config.clone();
        }
        if let Some(n) = input["desiredCount"].as_i64() {
            svc.desired = n;
        }
        match new_td {
            Some(td) if td != svc.task_definition => {
                for d in &mut svc.deployments {
                    d.status = "ACTIVE".into();
                }
                svc.task_definition.clone_from(&td);
                svc.deployments.insert(
                    0,
                    Deployment {
                        id: format!("ecs-svc/{id:019}"),
                        status: "PRIMARY".into(),
                        task_definition: td,
                        desired: svc.desired,
                        running: 0,
                        failed: 0,
                        rollout: "IN_PROGRESS".into(),
                        reason: "ECS deployment in progress.".into(),
                        created,
                    },
                );
            }
            _ => {
                if let Some(p) = svc.deployments.iter_mut().find(|d| d.status == "PRIMARY") {
                    p.desired = svc.desired;
                }
            }
        }
        Ok(json!({"service": self.service_json(&key, false)}))
    }

    fn run_task(&mut self, input: &Value) -> Result<Value, ApiError> {
        let cluster = self.cluster(input)?;
        let td = self.task_definition(field(input, "taskDefinition")?)?;
        let overrides = input["overrides"]["containerOverrides"].as_array().cloned().unwrap_or_default();
        let id = self.id();
        let arn = format!("arn:aws:ecs:{REGION}:{ACCOUNT}:task/{cluster}/{id:032x}");
        let containers: Vec<Value> = td["containerDefinitions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                let name = c["name"].clone();
                let command =
                    overrides.iter().find(|o| o["name"] == name).map_or(c["command"].clone(), |o| o["command"].clone());
                json!({"name": name, "lastStatus": "PENDING", "command": command})
            })
            .collect();
        let task = json!({
            "taskArn": arn,
            "clusterArn": cluster_arn(&cluster),
            "taskDefinitionArn": td["taskDefinitionArn"],
            "lastStatus": "PROVISIONING",
            "desiredStatus": "RUNNING",
            "startedBy": input["startedBy"],
            "group": format!("family:{}", td["family"].as_str().unwrap_or_default()),
            "launchType": input["launchType"],
            "overrides": input["overrides"],
            "networkConfiguration": input["networkConfiguration"],
            "containers": containers,
            "createdAt": self.now(),
        });
        self.tasks.push(task.clone());
        Ok(json!({"tasks": [task], "failures": []}))
    }

    fn service_by_arn(&mut self, arn: &str) -> Result<&mut Service, ApiError> {
        self.services
            .values_mut()
            .find(|s| s.arn == arn)
            .ok_or_else(|| ApiError::new("InvalidParameterException", "The specified resource is not found."))
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.values().find(|s| s.name == name)
    }

    fn service_json(&self, key: &str, with_tags: bool) -> Value {
        let s = &self.services[key];
        let running: i64 = s.deployments.iter().map(|d| d.running).sum();
        let deployments: Vec<Value> = s
            .deployments
            .iter()
            .map(|d| {
                json!({
                    "id": d.id, "status": d.status, "taskDefinition": d.task_definition,
                    "desiredCount": d.desired, "pendingCount": 0, "runningCount": d.running,
                    "failedTasks": d.failed, "createdAt": d.created, "updatedAt": d.created,
                    "launchType": s.spec["launchType"], "rolloutState": d.rollout, "rolloutStateReason": d.reason,
                })
            })
            .collect();
        let mut v = json!({
            "serviceArn": s.arn, "serviceName": s.name, "clusterArn": cluster_arn(&s.cluster),
            "status": "ACTIVE", "desiredCount": s.desired, "runningCount": running, "pendingCount": 0,
            "taskDefinition": s.task_definition, "deployments": deployments, "events": s.events,
            "loadBalancers": s.spec.get("loadBalancers").cloned().unwrap_or(json!([])),
            "launchType": s.spec["launchType"],
            "networkConfiguration": s.spec["networkConfiguration"],
            "deploymentConfiguration": s.spec.get("deploymentConfiguration").cloned().unwrap_or(json!({
                "maximumPercent": 200, "minimumHealthyPercent": 100,
                "deploymentCircuitBreaker": {"enable": false, "rollback": false}
            })),
            "schedulingStrategy": "REPLICA",
            "deploymentController": {"type": "ECS"},
        });
        if with_tags {
            v["tags"] = json!(tags_json(&s.tags));
        }
        v
    }

    fn event(&mut self, key: &str, message: String) {
        let id = self.id();
        let at = self.now();
        let svc = self.services.get_mut(key).expect("a service");
        svc.events.insert(0, json!({"id": format!("{id:08x}-event"), "createdAt": at, "message": message}));
    }

    fn image_of(&self, td_arn: &str) -> String {
        self.task_definition(td_arn)
            .ok()
            .and_then(|td| td["containerDefinitions"][0]["image"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// One step of time: deployments and tasks move on.
    pub fn tick(&mut self) {
        let keys: Vec<String> = self.services.keys().cloned().collect();
        for key in keys {
            self.tick_service(&key);
        }
        let failing = self.run_task_exit.clone();
        let hanging = self.hanging.clone();
        let at = now();
        for task in &mut self.tasks {
            match task["lastStatus"].as_str() {
                Some("PROVISIONING") => {
                    task["lastStatus"] = json!("RUNNING");
                    for c in task["containers"].as_array_mut().into_iter().flatten() {
                        c["lastStatus"] = json!("RUNNING");
                    }
                }
                Some("RUNNING")
                    if task["group"].as_str().is_some_and(|g| g.starts_with("family:"))
                        && !hanging.contains(task["containers"][0]["command"][0].as_str().unwrap_or_default()) =>
                {
                    for c in task["containers"].as_array_mut().into_iter().flatten() {
                        let first = c["command"][0].as_str().unwrap_or_default().to_owned();
                        c["lastStatus"] = json!("STOPPED");
                        c["exitCode"] = json!(failing.get(&first).copied().unwrap_or(0));
                    }
                    task["lastStatus"] = json!("STOPPED");
                    task["desiredStatus"] = json!("STOPPED");
                    task["stoppedReason"] = json!("Essential container in task exited");
                    task["stopCode"] = json!("EssentialContainerExited");
                    task["stoppedAt"] = json!(at);
                }
                _ => {}
            }
        }
    }

    fn tick_service(&mut self, key: &str) {
        let svc = self.services[key].clone();
        let Some(pi) = svc.deployments.iter().position(|d| d.status == "PRIMARY") else { return };
        let primary = svc.deployments[pi].clone();
        let name = svc.name.clone();
        let failing = self.failing_images.contains(&self.image_of(&primary.task_definition));
        if primary.rollout == "IN_PROGRESS" && failing {
            let task_id = self.stopped_service_task(key, &primary.task_definition);
            self.event(key, format!("(service {name}) has started 1 tasks: (task {task_id})."));
            self.services.get_mut(key).unwrap().deployments[pi].failed += 1;
            let threshold = ((primary.desired + 1) / 2).clamp(3, 200);
            let breaker = &svc.spec["deploymentConfiguration"]["deploymentCircuitBreaker"];
            if primary.failed + 1 >= threshold && breaker["enable"] == true {
                let s = self.services.get_mut(key).unwrap();
                let d = &mut s.deployments[pi];
                d.rollout = "FAILED".into();
                d.reason = "ECS deployment circuit breaker: tasks failed to start.".into();
                d.status = "ACTIVE".into();
                let failed_id = d.id.clone();
                self.event(
                    key,
                    format!("(service {name}) (deployment {failed_id}) deployment failed: tasks failed to start."),
                );
                let previous = svc.deployments.iter().find(|d| d.status == "ACTIVE" && d.rollout != "FAILED").cloned();
                if breaker["rollback"] == true
                    && let Some(prev) = previous
                {
                    let id = self.id();
                    let created = self.now();
                    let s = self.services.get_mut(key).unwrap();
                    s.task_definition.clone_from(&prev.task_definition);
                    s.deployments.insert(
                        0,
                        Deployment {
                            id: format!("ecs-svc/{id:019}"),
                            status: "PRIMARY".into(),
                            task_definition: prev.task_definition.clone(),
                            desired: s.desired,
                            running: 0,
                            failed: 0,
                            rollout: "IN_PROGRESS".into(),
                            reason: "ECS deployment in progress.".into(),
                            created,
                        },
                    );
                    self.event(key, format!("(service {name}) rolling back to deployment {}.", prev.id));
                }
            }
            return;
        }
        let s = self.services.get_mut(key).unwrap();
        let (running, desired, rollout) = {
            let p = &s.deployments[pi];
            (p.running, p.desired, p.rollout.clone())
        };
        let old = s.deployments.iter().position(|d| d.status != "PRIMARY" && d.running > 0);
        if running < desired && !failing {
            s.deployments[pi].running += 1;
            self.event(key, format!("(service {name}) has started 1 tasks: (task {:08x}).", running + 1));
        } else if let Some(old) = old {
            s.deployments[old].running -= 1;
            self.event(key, format!("(service {name}) has stopped 1 running tasks."));
        } else if running > desired {
            s.deployments[pi].running -= 1;
            self.event(key, format!("(service {name}) has stopped 1 running tasks."));
        } else if rollout == "IN_PROGRESS" && running == desired {
            let p = &mut s.deployments[pi];
            p.rollout = "COMPLETED".into();
            p.reason = "ECS deployment completed.".into();
            let id = p.id.clone();
            s.deployments.retain(|d| d.status == "PRIMARY");
            self.event(key, format!("(service {name}) (deployment {id}) deployment completed."));
            self.event(key, format!("(service {name}) has reached a steady state."));
        }
    }

    /// A task of the service that started and exited 1 at once.
    fn stopped_service_task(&mut self, key: &str, td: &str) -> String {
        let id = self.id();
        let svc = &self.services[key];
        let arn = format!("arn:aws:ecs:{REGION}:{ACCOUNT}:task/{}/{id:032x}", svc.cluster);
        let container = self
            .task_definition(td)
            .ok()
            .and_then(|t| t["containerDefinitions"][0]["name"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let task = json!({
            "taskArn": arn, "clusterArn": cluster_arn(&svc.cluster), "taskDefinitionArn": td,
            "lastStatus": "STOPPED", "desiredStatus": "STOPPED", "group": format!("service:{}", svc.name),
            "startedBy": svc.deployments[0].id, "stoppedReason": "Essential container in task exited",
            "stopCode": "EssentialContainerExited", "stoppedAt": now(),
            "containers": [{"name": container, "lastStatus": "STOPPED", "exitCode": 1,
                            "reason": "CannotStartContainerError: app exited: listen tcp :8080: bind: address already in use"}],
        });
        self.tasks.push(task);
        format!("{id:032x}")
    }
}

fn cluster_arn(name: &str) -> String {
    format!("arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{name}")
}

fn tags_json(tags: &BTreeMap<String, String>) -> Vec<Value> {
    tags.iter().map(|(k, v)| json!({"key": k, "value": v})).collect()
}

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}
