//! What gantry reads back from CodePipeline, as plain values: an execution, one run of an
//! action, a stage's state. Timestamps stay the service's (epoch seconds), so durations
//! are the same whichever process or poll computes them.

use std::collections::BTreeMap;

use aws_sdk_codepipeline::types::{ActionExecutionDetail, StageState};

/// One pipeline execution.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExecutionInfo {
    pub id: String,
    /// `InProgress`, `Stopped`, `Stopping`, `Succeeded`, `Superseded`, `Failed` (and `Cancelled`).
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
    /// Start time, epoch seconds (from ListPipelineExecutions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started: Option<f64>,
    /// What started it: `StartPipelineExecution`, `CloudWatchEvent` (an S3 source change), ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// Its source revisions: for an S3 source, the object version id it runs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub revisions: Vec<Revision>,
}

/// One source revision of an execution: `artifactRevisions` of GetPipelineExecution
/// (named by artifact) or `sourceRevisions` of ListPipelineExecutions (named by action).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Revision {
    pub name: String,
    /// For an S3 source, the object's version id.
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

impl ExecutionInfo {
    pub fn version(&self) -> Option<&str> {
        self.variables.get("version").map(String::as_str)
    }

    /// Whether it carries `revision` (an S3 object version id) as a source revision.
    pub fn runs_revision(&self, revision: &str) -> bool {
        self.revisions.iter().any(|r| r.id == revision)
    }
}

/// One run of one action in one execution (ListActionExecutions).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ActionRun {
    pub id: String,
    pub execution: String,
    pub stage: String,
    pub action: String,
    /// `Source`, `Approval`, `Build`, `Deploy`, ...
    pub category: String,
    /// `InProgress`, `Abandoned`, `Succeeded`, `Failed`.
    pub status: String,
    pub started: f64,
    pub updated: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
}

impl ActionRun {
    pub(crate) fn from_detail(d: &ActionExecutionDetail) -> Self {
        let result = d.output().and_then(|o| o.execution_result());
        Self {
            id: d.action_execution_id().unwrap_or_default().to_owned(),
            execution: d.pipeline_execution_id().unwrap_or_default().to_owned(),
            stage: d.stage_name().unwrap_or_default().to_owned(),
            action: d.action_name().unwrap_or_default().to_owned(),
            category: d
                .input()
                .and_then(|i| i.action_type_id())
                .map(|t| t.category().as_str().to_owned())
                .unwrap_or_default(),
            status: d.status().map(|s| s.as_str().to_owned()).unwrap_or_default(),
            started: d.start_time().map_or(0.0, |t| t.as_secs_f64()),
            updated: d.last_update_time().map_or(0.0, |t| t.as_secs_f64()),
            summary: result.and_then(|r| r.external_execution_summary()).map(str::to_owned),
            error: result.and_then(|r| r.error_details()).and_then(|e| e.message()).map(str::to_owned),
            external_id: result.and_then(|r| r.external_execution_id()).map(str::to_owned),
            link: result.and_then(|r| r.external_execution_url()).map(str::to_owned),
            updated_by: d.updated_by().map(str::to_owned),
        }
    }

    pub fn is_approval(&self) -> bool {
        self.category == "Approval"
    }

    /// Seconds from start to the last update (to now while running).
    pub fn seconds(&self, now: f64) -> f64 {
        let end = if self.status == "InProgress" { now } else { self.updated };
        (end - self.started).max(0.0)
    }
}

/// One stage in GetPipelineState.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StageInfo {
    pub stage: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    pub actions: Vec<ActionInfo>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ActionInfo {
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The approval token, while a Manual approval waits.
    #[serde(skip)]
    pub token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

impl StageInfo {
    pub(crate) fn from_state(s: &StageState) -> Self {
        let latest = s.latest_execution();
        Self {
            stage: s.stage_name().unwrap_or_default().to_owned(),
            execution: latest.map(|l| l.pipeline_execution_id().to_owned()),
            status: latest.map(|l| l.status().as_str().to_owned()),
            actions: s
                .action_states()
                .iter()
                .map(|a| {
                    let run = a.latest_execution();
                    ActionInfo {
                        action: a.action_name().unwrap_or_default().to_owned(),
                        status: run.and_then(|r| r.status()).map(|s| s.as_str().to_owned()),
                        token: run.and_then(|r| r.token()).map(str::to_owned),
                        summary: run.and_then(|r| r.summary()).map(str::to_owned),
                        error: run.and_then(|r| r.error_details()).and_then(|e| e.message()).map(str::to_owned),
                        link: run.and_then(|r| r.external_execution_url()).map(str::to_owned),
                    }
                })
                .collect(),
        }
    }
}

/// `gantry pipeline status`: the latest executions and every stage's state.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    pub pipeline: String,
    pub executions: Vec<ExecutionInfo>,
    pub stages: Vec<StageInfo>,
}

/// Reads what `gantry pipeline status` shows.
pub async fn status(pipeline: &super::Pipeline, max: i32) -> Result<Status, super::PipelineError> {
    let executions = pipeline.executions(max).await?;
    let stages = pipeline.state().await?;
    Ok(Status { pipeline: pipeline.name.clone(), executions, stages })
}
