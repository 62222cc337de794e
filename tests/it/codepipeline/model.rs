//! The emulator's state and operations. Field names, status values and error types follow
//! the CodePipeline API reference; timestamps are epoch seconds, as JSON 1.1 sends them.

use std::collections::{BTreeMap, HashMap};
use std::process::{Child, Command};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::BuildCommand;
use super::s3::{ObjectVersion, S3, source_action};

/// An error as the service returns it: `__type` and `message`, HTTP 400.
#[derive(Debug)]
pub struct ApiError {
    pub kind: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: &'static str, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }
}

/// Faults a test can inject.
#[derive(Debug, Default)]
pub struct Faults {
    /// The next N calls of an operation answer `ThrottlingException`.
    pub throttle: HashMap<String, u32>,
    /// The next N requests (any operation) are read and then the connection is closed unanswered.
    pub drop_connections: u32,
    /// `(pipeline, action)` → (error summary, external link): that action fails when it runs.
    pub fail_action: HashMap<(String, String), (String, String)>,
    /// S3 change events are held back (as EventBridge can be late) until this is cleared.
    pub hold_s3_events: bool,
}

#[derive(Default)]
pub struct State {
    pub pipelines: BTreeMap<String, Pipeline>,
    pub builds: HashMap<String, BuildCommand>,
    pub faults: Faults,
    /// Every `X-Amz-Target` received, in order.
    pub requests: Vec<String>,
    /// The S3 the pipelines' S3 sources read, once `Emulator::watch_s3` set it.
    pub s3: Option<std::sync::Arc<S3>>,
    seq: u64,
}

pub struct Pipeline {
    pub declaration: Value,
    pub created: f64,
    /// Oldest first.
    pub executions: Vec<Execution>,
}

pub struct Execution {
    pub id: String,
    pub status: &'static str,
    pub summary: Option<String>,
    pub started: f64,
    pub updated: f64,
    pub variables: BTreeMap<String, String>,
    pub trigger: &'static str,
    pub actions: Vec<ActionRun>,
    /// StopPipelineExecution without abandon: finish the running action, then stop.
    pub stopping: bool,
    /// The S3 source's revision: the object version this execution runs.
    pub revision: Option<Revision>,
}

/// The source revision of an execution with an S3 source.
#[derive(Debug, Clone)]
pub struct Revision {
    /// The source action's name (`SourceRevision.actionName`).
    pub action: String,
    /// Its output artifact's name (`ArtifactRevision.name`).
    pub artifact: String,
    pub object: ObjectVersion,
}

pub struct ActionRun {
    pub stage: String,
    pub name: String,
    pub category: String,
    pub provider: String,
    pub configuration: Value,
    pub run: Option<Run>,
}

pub struct Run {
    pub id: String,
    pub status: &'static str,
    pub started: f64,
    pub updated: f64,
    pub token: Option<String>,
    pub summary: Option<String>,
    pub updated_by: Option<String>,
    pub external_id: Option<String>,
    pub external_url: Option<String>,
    pub error: Option<(String, String)>,
    pub child: Option<Child>,
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

impl State {
    fn id(&mut self) -> String {
        self.seq += 1;
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            nanos,
            self.seq & 0xffff,
            self.seq % 0xfff,
            nanos % 0xfff,
            self.seq
        )
    }

    pub fn create(&mut self, declaration: Value) {
        let name = declaration["name"].as_str().expect("pipeline has a name").to_owned();
        self.pipelines.insert(name, Pipeline { declaration, created: now(), executions: Vec::new() });
    }

    pub fn execution(&self, pipeline: &str, id: &str) -> Option<&Execution> {
        self.pipelines.get(pipeline)?.executions.iter().find(|e| e.id == id)
    }

    pub fn execution_mut(&mut self, pipeline: &str, id: &str) -> Option<&mut Execution> {
        self.pipelines.get_mut(pipeline)?.executions.iter_mut().find(|e| e.id == id)
    }

    /// Marks an execution superseded by a newer one, as SUPERSEDED mode does to an execution
    /// waiting to enter a stage; its running actions are abandoned.
    pub fn supersede(&mut self, pipeline: &str, id: &str) {
        let exec = self.execution_mut(pipeline, id).expect("execution exists");
        exec.finish("Superseded", None);
    }

    /// The running Manual approval of an execution times out (AWS: after 7 days).
    pub fn expire_approval(&mut self, pipeline: &str, id: &str) {
        let exec = self.execution_mut(pipeline, id).expect("execution exists");
        let action = exec.actions.iter_mut().find(|a| a.category == "Approval").expect("has an approval");
        let run = action.run.as_mut().expect("approval is running");
        run.status = "Failed";
        run.token = None;
        run.error = Some(("JobFailed".into(), "The approval request expired".into()));
        run.updated = now();
        exec.finish("Failed", Some("The approval request expired".into()));
    }

    pub fn kill_builds(&mut self) {
        for p in self.pipelines.values_mut() {
            for e in &mut p.executions {
                for a in &mut e.actions {
                    if let Some(child) = a.run.as_mut().and_then(|r| r.child.as_mut()) {
                        let _ = child.kill();
                    }
                }
            }
        }
    }

    /// Starts an execution; with an S3 source (and `watch_s3`), its revision is the key's
    /// current object version, as StartPipelineExecution without an override takes.
    pub fn start(
        &mut self,
        pipeline: &str,
        given: BTreeMap<String, String>,
        trigger: &'static str,
    ) -> Result<String, ApiError> {
        let latest = match (&self.s3, self.pipelines.get(pipeline).and_then(|p| source_action(&p.declaration))) {
            (Some(s3), Some((_, _, bucket, key))) => s3.head(&bucket, &key),
            _ => None,
        };
        self.start_with_revision(pipeline, given, trigger, latest)
    }

    /// Starts an execution that runs `object` as its S3 source revision.
    pub fn start_with_revision(
        &mut self,
        pipeline: &str,
        given: BTreeMap<String, String>,
        trigger: &'static str,
        object: Option<ObjectVersion>,
    ) -> Result<String, ApiError> {
        let id = self.id();
        let Some(p) = self.pipelines.get_mut(pipeline) else {
            return Err(ApiError::new(
                "PipelineNotFoundException",
                format!("Account '123456789012' does not have a pipeline with name '{pipeline}'"),
            ));
        };
        let mut variables = BTreeMap::new();
        for v in p.declaration["variables"].as_array().into_iter().flatten() {
            let name = v["name"].as_str().unwrap_or_default().to_owned();
            variables.insert(name, v["defaultValue"].as_str().unwrap_or_default().to_owned());
        }
        for (k, v) in given {
            if !variables.contains_key(&k) {
                return Err(ApiError::new(
                    "ValidationException",
                    format!("Variable '{k}' is not declared in the pipeline"),
                ));
            }
            variables.insert(k, v);
        }
        let mut actions = Vec::new();
        for stage in p.declaration["stages"].as_array().into_iter().flatten() {
            for a in stage["actions"].as_array().into_iter().flatten() {
                actions.push(ActionRun {
                    stage: stage["name"].as_str().unwrap_or_default().to_owned(),
                    name: a["name"].as_str().unwrap_or_default().to_owned(),
                    category: a["actionTypeId"]["category"].as_str().unwrap_or_default().to_owned(),
                    provider: a["actionTypeId"]["provider"].as_str().unwrap_or_default().to_owned(),
                    configuration: if a["configuration"].is_object() { a["configuration"].clone() } else { json!({}) },
                    run: None,
                });
            }
        }
        let revision = object.zip(source_action(&p.declaration)).map(|(object, (action, artifact, _, _))| Revision {
            action,
            artifact,
            object,
        });
        let t = now();
        p.executions.push(Execution {
            revision,
            id: id.clone(),
            status: "InProgress",
            summary: None,
            started: t,
            updated: t,
            variables,
            trigger,
            actions,
            stopping: false,
        });
        Ok(id)
    }

    /// One step of progress for every running execution.
    pub fn tick(&mut self) {
        let names: Vec<String> = self.pipelines.keys().cloned().collect();
        for name in names {
            let count = self.pipelines[&name].executions.len();
            for i in 0..count {
                if self.pipelines[&name].executions[i].status == "InProgress"
                    || self.pipelines[&name].executions[i].status == "Stopping"
                {
                    self.step(&name, i);
                }
            }
        }
    }

    fn step(&mut self, pipeline: &str, index: usize) {
        let new_id = self.id();
        let token = self.id();
        let builds = self.builds.clone();
        let fail = self.faults.fail_action.clone();
        let blocked = self.blocked_at(pipeline, index);
        let p = self.pipelines.get_mut(pipeline).unwrap();
        if let Some(stage) = &blocked {
            // SUPERSEDED mode: one execution waits at a stage's entrance; a newer one arriving
            // there supersedes it.
            let newer_waits = (index + 1..p.executions.len()).any(|j| blocked_at(p, j).as_ref() == Some(stage));
            if newer_waits {
                p.executions[index].finish("Superseded", None);
            }
            return;
        }
        let exec = &mut p.executions[index];
        let Some(pos) = exec.actions.iter().position(|a| a.run.as_ref().is_none_or(|r| r.status == "InProgress"))
        else {
            exec.finish("Succeeded", None);
            return;
        };
        let exec_id = exec.id.clone();
        let variables = exec.variables.clone();
        let stopping = exec.stopping;
        let action = &mut exec.actions[pos];
        let t = now();
        let Some(run) = action.run.as_mut() else {
            if stopping {
                exec.finish("Stopped", None);
                return;
            }
            let mut run = Run {
                id: new_id.clone(),
                status: "InProgress",
                started: t,
                updated: t,
                token: None,
                summary: None,
                updated_by: None,
                external_id: None,
                external_url: None,
                error: None,
                child: None,
            };
            match action.category.as_str() {
                "Approval" => run.token = Some(token),
                "Build" => {
                    let project = action.configuration["ProjectName"].as_str().unwrap_or_default().to_owned();
                    let build_id = format!("{project}:{new_id}");
                    run.external_url = Some(format!(
                        "https://console.aws.amazon.com/codebuild/home?region=us-east-1#/builds/{build_id}/view/new"
                    ));
                    run.external_id = Some(build_id.clone());
                    if let Some(cmd) = builds.get(&project) {
                        let mut command = Command::new(&cmd.program);
                        command.args(&cmd.args).current_dir(&cmd.dir).env("CODEBUILD_BUILD_ID", &build_id);
                        command.envs(cmd.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                        let vars: Vec<Value> = action.configuration["EnvironmentVariables"]
                            .as_str()
                            .and_then(|s| serde_json::from_str(s).ok())
                            .unwrap_or_default();
                        for v in vars {
                            let value = resolve(v["value"].as_str().unwrap_or_default(), &exec_id, &variables);
                            command.env(v["name"].as_str().unwrap_or_default(), value);
                        }
                        // The build's output goes to a log beside it, as CodeBuild's goes to CloudWatch.
                        let log = std::fs::File::create(cmd.dir.join(format!("codebuild-{new_id}.log")))
                            .expect("the build log can be created");
                        command.stdout(log.try_clone().expect("clone the log")).stderr(log);
                        run.child = Some(command.spawn().expect("the build command starts"));
                    }
                }
                _ => {}
            }
            action.run = Some(run);
            exec.updated = t;
            return;
        };
        // The action is running.
        let failure = fail.get(&(pipeline.to_owned(), action.name.clone()));
        match action.category.as_str() {
            "Approval" => {
                if stopping {
                    run.status = "Abandoned";
                    run.token = None;
                    run.updated = t;
                    exec.finish("Stopped", None);
                }
            }
            "Build" => {
                let outcome = match run.child.as_mut() {
                    Some(child) => match child.try_wait() {
                        Ok(None) => return,
                        Ok(Some(status)) if status.success() => None,
                        Ok(Some(status)) => Some(format!("Build failed: the command exited with {status}")),
                        Err(e) => Some(format!("Build failed: {e}")),
                    },
                    None => None,
                };
                let outcome = failure.map(|(summary, _)| summary.clone()).or(outcome);
                if let Some((_, link)) = failure {
                    run.external_url = Some(link.clone());
                }
                run.updated = t;
                if let Some(message) = outcome {
                    run.status = "Failed";
                    run.error = Some(("JobFailed".into(), message.clone()));
                    exec.finish("Failed", Some(message));
                } else {
                    run.status = "Succeeded";
                    run.summary = Some("Build succeeded".into());
                    exec.updated = t;
                }
            }
            _ => {
                run.updated = t;
                if let Some((summary, link)) = failure {
                    run.status = "Failed";
                    run.error = Some(("JobFailed".into(), summary.clone()));
                    run.external_url = Some(link.clone());
                    exec.finish("Failed", Some(summary.clone()));
                } else {
                    run.status = "Succeeded";
                    if action.category == "Source" {
                        match exec.revision.as_ref().filter(|r| r.action == action.name) {
                            Some(r) => run.external_id = Some(r.object.version_id.clone()),
                            None => {
                                run.summary =
                                    Some(format!("release {}", variables.get("version").map_or("", String::as_str)));
                                run.external_id = Some(format!("objectversion-{index}"));
                            }
                        }
                    }
                    exec.updated = t;
                }
            }
        }
    }

    fn blocked_at(&self, pipeline: &str, index: usize) -> Option<String> {
        blocked_at(&self.pipelines[pipeline], index)
    }

    /// Answers one operation.
    pub fn handle(&mut self, op: &str, input: &Value) -> Result<Value, ApiError> {
        match op {
            "GetPipeline" => {
                let p = self.pipeline(input["name"].as_str())?;
                Ok(json!({
                    "pipeline": p.declaration,
                    "metadata": {
                        "pipelineArn": format!("arn:aws:codepipeline:us-east-1:123456789012:{}", p.declaration["name"].as_str().unwrap_or_default()),
                        "created": p.created,
                        "updated": p.created
                    }
                }))
            }
            "GetPipelineState" => {
                let name = input["name"].as_str();
                let p = self.pipeline(name)?;
                Ok(pipeline_state(p))
            }
            "StartPipelineExecution" => {
                let name = input["name"].as_str().unwrap_or_default().to_owned();
                let mut vars = BTreeMap::new();
                for v in input["variables"].as_array().into_iter().flatten() {
                    vars.insert(
                        v["name"].as_str().unwrap_or_default().to_owned(),
                        v["value"].as_str().unwrap_or_default().to_owned(),
                    );
                }
                let overrides = input["sourceRevisions"].as_array().cloned().unwrap_or_default();
                if overrides.is_empty() {
                    let id = self.start(&name, vars, "StartPipelineExecution")?;
                    return Ok(json!({"pipelineExecutionId": id}));
                }
                let object = self.source_override(&name, &overrides)?;
                let id = self.start_with_revision(&name, vars, "StartPipelineExecution", Some(object))?;
                Ok(json!({"pipelineExecutionId": id}))
            }
            "GetPipelineExecution" => {
                let p = self.pipeline(input["pipelineName"].as_str())?;
                let e = find_execution(p, input["pipelineExecutionId"].as_str())?;
                let mut out = json!({
                    "pipelineName": p.declaration["name"],
                    "pipelineVersion": p.declaration["version"],
                    "pipelineExecutionId": e.id,
                    "status": e.status,
                    "artifactRevisions": e.revision.iter().map(|r| json!({
                        "name": r.artifact,
                        "revisionId": r.object.version_id,
                        "revisionChangeIdentifier": r.object.etag,
                        "created": r.object.last_modified
                    })).collect::<Vec<_>>(),
                    "variables": e.variables.iter().map(|(k, v)| json!({"name": k, "resolvedValue": v})).collect::<Vec<_>>(),
                    "trigger": {"triggerType": e.trigger, "triggerDetail": ""},
                    "executionMode": "SUPERSEDED"
                });
                if let Some(s) = &e.summary {
                    out["statusSummary"] = json!(s);
                }
                Ok(json!({"pipelineExecution": out}))
            }
            "ListPipelineExecutions" => {
                let p = self.pipeline(input["pipelineName"].as_str())?;
                let max = input["maxResults"].as_u64().unwrap_or(100) as usize;
                let list: Vec<Value> = p.executions.iter().rev().take(max).map(execution_summary).collect();
                Ok(json!({"pipelineExecutionSummaries": list}))
            }
            "ListActionExecutions" => {
                let p = self.pipeline(input["pipelineName"].as_str())?;
                let filter = input["filter"]["pipelineExecutionId"].as_str();
                if let Some(id) = filter {
                    find_execution(p, Some(id))?;
                }
                let mut details = Vec::new();
                for e in p.executions.iter().rev().filter(|e| filter.is_none_or(|f| f == e.id)) {
                    for a in e.actions.iter().rev() {
                        if let Some(run) = &a.run {
                            details.push(action_detail(p, e, a, run));
                        }
                    }
                }
                Ok(json!({"actionExecutionDetails": details}))
            }
            "PutApprovalResult" => self.put_approval(input),
            "StopPipelineExecution" => {
                let pipeline = input["pipelineName"].as_str().unwrap_or_default().to_owned();
                let p = self.pipeline(Some(&pipeline))?;
                let e = find_execution(p, input["pipelineExecutionId"].as_str())?;
                let id = e.id.clone();
                if e.status == "Stopping" {
                    return Err(ApiError::new("DuplicatedStopRequestException", "Execution is already stopping"));
                }
                if e.status != "InProgress" {
                    return Err(ApiError::new(
                        "PipelineExecutionNotStoppableException",
                        format!("Execution {id} is {} and cannot be stopped", e.status),
                    ));
                }
                let exec = self.execution_mut(&pipeline, &id).unwrap();
                if input["abandon"].as_bool().unwrap_or(false) {
                    exec.finish("Stopped", input["reason"].as_str().map(str::to_owned));
                } else {
                    exec.status = "Stopping";
                    exec.stopping = true;
                }
                Ok(json!({"pipelineExecutionId": id}))
            }
            _ => Err(ApiError::new("UnknownOperationException", format!("the emulator does not implement {op}"))),
        }
    }

    fn pipeline(&self, name: Option<&str>) -> Result<&Pipeline, ApiError> {
        let name = name.ok_or_else(|| {
            ApiError::new("ValidationException", "1 validation error detected: name must not be null")
        })?;
        self.pipelines.get(name).ok_or_else(|| {
            ApiError::new(
                "PipelineNotFoundException",
                format!("Account '123456789012' does not have a pipeline with name '{name}'"),
            )
        })
    }

    /// The object version `sourceRevisions` pins (StartPipelineExecution), checked as the
    /// API reference describes: the action must be the pipeline's S3 source, the type
    /// `S3_OBJECT_VERSION_ID`, and (with `watch_s3`) the version must exist.
    fn source_override(&self, pipeline: &str, overrides: &[Value]) -> Result<ObjectVersion, ApiError> {
        let p = self.pipeline(Some(pipeline))?;
        let Some((action, _, bucket, key)) = source_action(&p.declaration) else {
            return Err(ApiError::new("ValidationException", "The pipeline has no S3 source action to override"));
        };
        let [o] = overrides else {
            return Err(ApiError::new("ValidationException", "One source revision override per source action"));
        };
        if o["actionName"].as_str() != Some(action.as_str()) {
            return Err(ApiError::new(
                "ValidationException",
                format!(
                    "Source action '{}' does not exist in the pipeline",
                    o["actionName"].as_str().unwrap_or_default()
                ),
            ));
        }
        if o["revisionType"] != "S3_OBJECT_VERSION_ID" {
            return Err(ApiError::new(
                "ValidationException",
                format!("Revision type {} is not supported for an S3 source", o["revisionType"]),
            ));
        }
        let version_id = o["revisionValue"].as_str().unwrap_or_default();
        match &self.s3 {
            Some(s3) => s3.head_version(&bucket, &key, version_id).ok_or_else(|| {
                ApiError::new(
                    "ValidationException",
                    format!("The object version {version_id} of s3://{bucket}/{key} does not exist"),
                )
            }),
            None => Ok(ObjectVersion { version_id: version_id.to_owned(), etag: None, last_modified: now() }),
        }
    }

    fn put_approval(&mut self, input: &Value) -> Result<Value, ApiError> {
        let pipeline = input["pipelineName"].as_str().unwrap_or_default().to_owned();
        let p = self.pipeline(Some(&pipeline))?;
        let (stage, action) =
            (input["stageName"].as_str().unwrap_or_default(), input["actionName"].as_str().unwrap_or_default());
        let stages = p.declaration["stages"].as_array().cloned().unwrap_or_default();
        let Some(decl) = stages.iter().find(|s| s["name"] == stage) else {
            return Err(ApiError::new("StageNotFoundException", format!("Stage {stage} not found")));
        };
        if !decl["actions"].as_array().into_iter().flatten().any(|a| a["name"] == action) {
            return Err(ApiError::new("ActionNotFoundException", format!("Action {action} not found")));
        }
        let token = input["token"].as_str().unwrap_or_default();
        let status = input["result"]["status"].as_str().unwrap_or_default();
        if status != "Approved" && status != "Rejected" {
            return Err(ApiError::new("ValidationException", "result.status must be Approved or Rejected"));
        }
        let summary = input["result"]["summary"].as_str().map(str::to_owned);
        let p = self.pipelines.get_mut(&pipeline).unwrap();
        for exec in &mut p.executions {
            for a in &mut exec.actions {
                let Some(run) = a.run.as_mut() else { continue };
                if a.stage != stage || a.name != action || run.token.as_deref() != Some(token) {
                    continue;
                }
                if run.status != "InProgress" || !matches!(exec.status, "InProgress") {
                    return Err(ApiError::new(
                        "ApprovalAlreadyCompletedException",
                        "The approval action has already been completed",
                    ));
                }
                let t = now();
                run.updated = t;
                run.summary = summary.clone();
                run.updated_by = Some("arn:aws:iam::123456789012:user/approver".into());
                if status == "Approved" {
                    run.status = "Succeeded";
                    exec.updated = t;
                } else {
                    run.status = "Failed";
                    run.error =
                        Some(("JobFailed".into(), format!("Rejected: {}", summary.clone().unwrap_or_default())));
                    exec.finish("Failed", Some("Approval rejected".into()));
                }
                return Ok(json!({"approvedAt": t}));
            }
        }
        Err(ApiError::new(
            "InvalidApprovalTokenException",
            format!("The token {token} is not valid for {stage}/{action}"),
        ))
    }
}

impl Execution {
    /// Ends the execution; running actions are abandoned (builds killed), as AWS does on a stop.
    pub fn finish(&mut self, status: &'static str, summary: Option<String>) {
        let t = now();
        self.status = status;
        self.summary = summary;
        self.updated = t;
        self.stopping = false;
        for a in &mut self.actions {
            if let Some(run) = a.run.as_mut().filter(|r| r.status == "InProgress") {
                run.status = "Abandoned";
                run.token = None;
                run.updated = t;
                if let Some(child) = run.child.as_mut() {
                    let _ = child.kill();
                }
            }
        }
    }
}

/// The stage an execution waits to enter because another execution holds it: its next
/// action is the first of a stage in which another execution has a running action.
fn blocked_at(p: &Pipeline, index: usize) -> Option<String> {
    let exec = &p.executions[index];
    if exec.status != "InProgress" {
        return None;
    }
    let pos = exec.actions.iter().position(|a| a.run.as_ref().is_none_or(|r| r.status == "InProgress"))?;
    let next = &exec.actions[pos];
    if next.run.is_some() || (pos > 0 && exec.actions[pos - 1].stage == next.stage) {
        return None;
    }
    let held = p.executions.iter().enumerate().any(|(j, other)| {
        j != index
            && other
                .actions
                .iter()
                .any(|a| a.stage == next.stage && a.run.as_ref().is_some_and(|r| r.status == "InProgress"))
    });
    held.then(|| next.stage.clone())
}

fn resolve(template: &str, exec_id: &str, variables: &BTreeMap<String, String>) -> String {
    let mut out = template.replace("#{codepipeline.PipelineExecutionId}", exec_id);
    for (k, v) in variables {
        out = out.replace(&format!("#{{variables.{k}}}"), v);
    }
    out
}

fn find_execution<'p>(p: &'p Pipeline, id: Option<&str>) -> Result<&'p Execution, ApiError> {
    let id = id.unwrap_or_default();
    p.executions.iter().find(|e| e.id == id).ok_or_else(|| {
        ApiError::new(
            "PipelineExecutionNotFoundException",
            format!(
                "Pipeline execution with id '{id}' does not exist in pipeline '{}'",
                p.declaration["name"].as_str().unwrap_or_default()
            ),
        )
    })
}

fn execution_summary(e: &Execution) -> Value {
    let mut out = json!({
        "pipelineExecutionId": e.id,
        "status": e.status,
        "startTime": e.started,
        "lastUpdateTime": e.updated,
        "sourceRevisions": e.revision.iter().map(|r| json!({
            "actionName": r.action,
            "revisionId": r.object.version_id
        })).collect::<Vec<_>>(),
        "trigger": {"triggerType": e.trigger, "triggerDetail": ""},
        "executionMode": "SUPERSEDED"
    });
    if let Some(s) = &e.summary {
        out["statusSummary"] = json!(s);
    }
    out
}

fn run_json(run: &Run) -> Value {
    let mut out = json!({
        "actionExecutionId": run.id,
        "status": run.status,
        "lastStatusChange": run.updated
    });
    let fields = [
        ("summary", &run.summary),
        ("token", &run.token),
        ("lastUpdatedBy", &run.updated_by),
        ("externalExecutionId", &run.external_id),
        ("externalExecutionUrl", &run.external_url),
    ];
    for (key, value) in fields {
        if let Some(v) = value {
            out[key] = json!(v);
        }
    }
    if let Some((code, message)) = &run.error {
        out["errorDetails"] = json!({"code": code, "message": message});
    }
    out
}

/// GetPipelineState: each stage with its latest execution, each action with its latest run.
fn pipeline_state(p: &Pipeline) -> Value {
    let mut stages = Vec::new();
    for stage in p.declaration["stages"].as_array().into_iter().flatten() {
        let stage_name = stage["name"].as_str().unwrap_or_default();
        // The latest execution that reached this stage.
        let latest =
            p.executions.iter().rev().find(|e| e.actions.iter().any(|a| a.stage == stage_name && a.run.is_some()));
        let mut actions = Vec::new();
        for a in stage["actions"].as_array().into_iter().flatten() {
            let action_name = a["name"].as_str().unwrap_or_default();
            let mut state = json!({"actionName": action_name});
            if let Some(run) = latest
                .and_then(|e| e.actions.iter().find(|r| r.stage == stage_name && r.name == action_name))
                .and_then(|r| r.run.as_ref())
            {
                state["latestExecution"] = run_json(run);
            }
            actions.push(state);
        }
        let mut out =
            json!({"stageName": stage_name, "inboundTransitionState": {"enabled": true}, "actionStates": actions});
        if let Some(e) = latest {
            let runs: Vec<&Run> =
                e.actions.iter().filter(|a| a.stage == stage_name).filter_map(|a| a.run.as_ref()).collect();
            let status = if runs.iter().any(|r| r.status == "Failed") {
                "Failed"
            } else if runs.iter().any(|r| r.status == "InProgress") {
                if e.status == "Stopping" { "Stopping" } else { "InProgress" }
            } else if runs.iter().any(|r| r.status == "Abandoned") {
                if e.status == "Superseded" { "Cancelled" } else { "Stopped" }
            } else if e.actions.iter().filter(|a| a.stage == stage_name).all(|a| a.run.is_some()) {
                "Succeeded"
            } else {
                "InProgress"
            };
            out["latestExecution"] = json!({"pipelineExecutionId": e.id, "status": status});
        }
        stages.push(out);
    }
    json!({
        "pipelineName": p.declaration["name"],
        "pipelineVersion": p.declaration["version"],
        "stageStates": stages,
        "created": p.created,
        "updated": p.created
    })
}

fn action_detail(p: &Pipeline, e: &Execution, a: &ActionRun, run: &Run) -> Value {
    let mut result = json!({});
    for (key, value) in [
        ("externalExecutionId", &run.external_id),
        ("externalExecutionSummary", &run.summary),
        ("externalExecutionUrl", &run.external_url),
    ] {
        if let Some(v) = value {
            result[key] = json!(v);
        }
    }
    if let Some((code, message)) = &run.error {
        result["errorDetails"] = json!({"code": code, "message": message});
    }
    let mut out = json!({
        "pipelineExecutionId": e.id,
        "actionExecutionId": run.id,
        "pipelineVersion": p.declaration["version"],
        "stageName": a.stage,
        "actionName": a.name,
        "startTime": run.started,
        "lastUpdateTime": run.updated,
        "status": run.status,
        "input": {
            "actionTypeId": {"category": a.category, "owner": "AWS", "provider": a.provider, "version": "1"},
            "configuration": a.configuration,
            "region": "us-east-1"
        },
        "output": {"executionResult": result}
    });
    // An S3 source action's output variables (its namespace's `ETag` and `VersionId`).
    if let Some(r) = e.revision.as_ref().filter(|r| r.action == a.name && run.status == "Succeeded") {
        out["output"]["outputVariables"] =
            json!({"VersionId": r.object.version_id, "ETag": r.object.etag.clone().unwrap_or_default()});
    }
    if let Some(by) = &run.updated_by {
        out["updatedBy"] = json!(by);
    }
    out
}
