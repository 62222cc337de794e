//! CodePipeline: start an environment's pipeline, watch an execution stage by stage,
//! approve or reject its manual approval, and the production gate that `deploy` calls.
//!
//! Everything here goes through `Pipeline`, a CodePipeline client bound to one pipeline
//! name, built once from `aws::codepipeline`. The watch loop emits `Event`s; only
//! `report::PipelineReporter` prints them.

pub mod approval;
pub mod check;
mod error;
pub mod gate;
mod snapshot;
pub mod source;
pub mod start;
pub mod template;
pub mod watch;

use std::collections::BTreeMap;

use aws_sdk_codepipeline::types::{
    ActionExecutionFilter, PipelineVariable, SourceRevisionOverride, SourceRevisionType,
};

pub use error::PipelineError;
pub use snapshot::{ActionInfo, ActionRun, ExecutionInfo, Revision, StageInfo, Status, status};
pub use start::{StartSettings, Started};
pub use watch::{Event, WatchSettings};

use error::api;

/// A CodePipeline client bound to one pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub client: aws_sdk_codepipeline::Client,
    pub name: String,
}

impl Pipeline {
    pub fn new(client: aws_sdk_codepipeline::Client, name: impl Into<String>) -> Self {
        Self { client, name: name.into() }
    }

    /// StartPipelineExecution, passing `version` as the `version` variable when the pipeline
    /// declares one (V2), and pinning a source action to an S3 object version when `pin`
    /// names one (`action`, version id). Without a pin the pipeline takes the newest source
    /// revision. Returns the execution id and whether the variable was passed.
    pub async fn start(
        &self,
        declared: &Declaration,
        version: Option<&str>,
        pin: Option<(&str, &str)>,
    ) -> Result<(String, bool), PipelineError> {
        let pinned = version.is_some() && declared.variables.contains_key("version");
        let mut req = self.client.start_pipeline_execution().name(&self.name);
        if let (true, Some(v)) = (pinned, version) {
            let var = PipelineVariable::builder()
                .name("version")
                .value(v)
                .build()
                .map_err(|e| api("StartPipelineExecution", &self.name, e))?;
            req = req.variables(var);
        }
        if let Some((action, version_id)) = pin {
            let over = SourceRevisionOverride::builder()
                .action_name(action)
                .revision_type(SourceRevisionType::S3ObjectVersionId)
                .revision_value(version_id)
                .build()
                .map_err(|e| api("StartPipelineExecution", &self.name, e))?;
            req = req.source_revisions(over);
        }
        let out = req.send().await.map_err(|e| api("StartPipelineExecution", &self.name, e))?;
        Ok((out.pipeline_execution_id().unwrap_or_default().to_owned(), pinned))
    }

    /// GetPipeline, reduced to what gantry checks: stages with their actions, and variables.
    pub async fn declaration(&self) -> Result<Declaration, PipelineError> {
        let out =
            self.client.get_pipeline().name(&self.name).send().await.map_err(|e| api("GetPipeline", &self.name, e))?;
        let Some(p) = out.pipeline() else {
            return Err(PipelineError::NotFound { pipeline: self.name.clone() });
        };
        let stages = p
            .stages()
            .iter()
            .map(|s| DeclaredStage {
                name: s.name().to_owned(),
                actions: s
                    .actions()
                    .iter()
                    .map(|a| DeclaredAction {
                        name: a.name().to_owned(),
                        category: a.action_type_id().map(|t| t.category().as_str().to_owned()).unwrap_or_default(),
                        provider: a.action_type_id().map(|t| t.provider().to_owned()).unwrap_or_default(),
                        configuration: a.configuration().cloned().unwrap_or_default().into_iter().collect(),
                        outputs: a.output_artifacts().iter().map(|o| o.name().to_owned()).collect(),
                    })
                    .collect(),
            })
            .collect();
        let variables =
            p.variables().iter().map(|v| (v.name().to_owned(), v.default_value().map(str::to_owned))).collect();
        Ok(Declaration { stages, variables })
    }

    /// GetPipelineExecution: status, summary and resolved variables.
    pub async fn execution(&self, id: &str) -> Result<ExecutionInfo, PipelineError> {
        let out = self
            .client
            .get_pipeline_execution()
            .pipeline_name(&self.name)
            .pipeline_execution_id(id)
            .send()
            .await
            .map_err(|e| api("GetPipelineExecution", &self.name, e).for_execution(id))?;
        let e = out.pipeline_execution().ok_or_else(|| PipelineError::ExecutionNotFound {
            pipeline: self.name.clone(),
            execution: id.to_owned(),
        })?;
        Ok(ExecutionInfo {
            id: id.to_owned(),
            status: e.status().map(|s| s.as_str().to_owned()).unwrap_or_default(),
            summary: e.status_summary().map(str::to_owned),
            variables: e
                .variables()
                .iter()
                .filter_map(|v| Some((v.name()?.to_owned(), v.resolved_value()?.to_owned())))
                .collect::<BTreeMap<_, _>>(),
            started: None,
            trigger: e.trigger().and_then(|t| t.trigger_type()).map(|t| t.as_str().to_owned()),
            revisions: e
                .artifact_revisions()
                .iter()
                .filter_map(|r| {
                    Some(Revision {
                        name: r.name().unwrap_or_default().to_owned(),
                        id: r.revision_id()?.to_owned(),
                        summary: r.revision_summary().map(str::to_owned),
                    })
                })
                .collect(),
        })
    }

    /// ListPipelineExecutions: the newest `max` executions, newest first.
    pub async fn executions(&self, max: i32) -> Result<Vec<ExecutionInfo>, PipelineError> {
        let out = self
            .client
            .list_pipeline_executions()
            .pipeline_name(&self.name)
            .max_results(max)
            .send()
            .await
            .map_err(|e| api("ListPipelineExecutions", &self.name, e))?;
        Ok(out
            .pipeline_execution_summaries()
            .iter()
            .map(|s| ExecutionInfo {
                id: s.pipeline_execution_id().unwrap_or_default().to_owned(),
                status: s.status().map(|s| s.as_str().to_owned()).unwrap_or_default(),
                summary: s.status_summary().map(str::to_owned),
                variables: BTreeMap::new(),
                started: s.start_time().map(|t| t.as_secs_f64()),
                trigger: s.trigger().and_then(|t| t.trigger_type()).map(|t| t.as_str().to_owned()),
                revisions: s
                    .source_revisions()
                    .iter()
                    .filter_map(|r| {
                        Some(Revision {
                            name: r.action_name().to_owned(),
                            id: r.revision_id()?.to_owned(),
                            summary: r.revision_summary().map(str::to_owned),
                        })
                    })
                    .collect(),
            })
            .collect())
    }

    /// ListActionExecutions for one execution, oldest first.
    pub async fn action_runs(&self, execution: &str) -> Result<Vec<ActionRun>, PipelineError> {
        let filter = ActionExecutionFilter::builder().pipeline_execution_id(execution).build();
        let mut runs = Vec::new();
        let mut pages =
            self.client.list_action_executions().pipeline_name(&self.name).filter(filter).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| api("ListActionExecutions", &self.name, e).for_execution(execution))?;
            runs.extend(page.action_execution_details().iter().map(ActionRun::from_detail));
        }
        runs.sort_by(|a, b| a.started.total_cmp(&b.started).then_with(|| a.id.cmp(&b.id)));
        Ok(runs)
    }

    /// GetPipelineState: each stage's latest execution and its actions.
    pub async fn state(&self) -> Result<Vec<StageInfo>, PipelineError> {
        let out = self
            .client
            .get_pipeline_state()
            .name(&self.name)
            .send()
            .await
            .map_err(|e| api("GetPipelineState", &self.name, e))?;
        Ok(out.stage_states().iter().map(StageInfo::from_state).collect())
    }
}

/// What GetPipeline declares.
#[derive(Debug, Clone)]
pub struct Declaration {
    pub stages: Vec<DeclaredStage>,
    /// Pipeline variables (V2) and their defaults.
    pub variables: BTreeMap<String, Option<String>>,
}

impl Declaration {
    /// The name of the S3 source action watching `bucket`/`key`.
    pub fn s3_source(&self, bucket: &str, key: &str) -> Option<&str> {
        self.s3_source_action(bucket, key).map(|a| a.name.as_str())
    }

    /// The S3 source action watching `bucket`/`key`.
    pub fn s3_source_action(&self, bucket: &str, key: &str) -> Option<&DeclaredAction> {
        self.stages.iter().flat_map(|s| &s.actions).find(|a| {
            let config = |k: &str| a.configuration.get(k).map(String::as_str);
            a.category == "Source"
                && a.provider == "S3"
                && config("S3Bucket") == Some(bucket)
                && config("S3ObjectKey") == Some(key)
        })
    }
}

#[derive(Debug, Clone)]
pub struct DeclaredStage {
    pub name: String,
    pub actions: Vec<DeclaredAction>,
}

#[derive(Debug, Clone)]
pub struct DeclaredAction {
    pub name: String,
    /// `Source`, `Approval`, `Build`, `Deploy`, ...
    pub category: String,
    pub provider: String,
    pub configuration: BTreeMap<String, String>,
    /// Names of its output artifacts (a source action's revision is named after its artifact).
    pub outputs: Vec<String>,
}
