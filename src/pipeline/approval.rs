//! `gantry approve` and `gantry reject`: find the Manual approval that is waiting (its token
//! is only in GetPipelineState), check it belongs to the execution the user means, and send
//! PutApprovalResult with a summary that records who decided.

use aws_sdk_codepipeline::types::{ApprovalResult, ApprovalStatus};

use super::error::api;
use super::{Pipeline, PipelineError};

/// A Manual approval action waiting for a decision.
#[derive(Debug, Clone)]
pub struct Pending {
    pub execution: String,
    pub stage: String,
    pub action: String,
    pub token: String,
}

/// Who decides: the AWS identity (STS GetCallerIdentity) and, in GitHub Actions, the actor.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Identity {
    pub arn: Option<String>,
    pub github_actor: Option<String>,
}

/// A decision as sent and recorded.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Decision {
    pub pipeline: String,
    pub execution: String,
    pub version: Option<String>,
    pub stage: String,
    pub action: String,
    pub decision: &'static str,
    pub by: Identity,
    pub comment: Option<String>,
    /// What PutApprovalResult recorded as the approval's summary.
    pub summary: String,
}

/// The waiting approval; with `execution`, only that execution's.
pub async fn pending(pipeline: &Pipeline, execution: Option<&str>) -> Result<Pending, PipelineError> {
    let stages = pipeline.state().await?;
    let mut waiting = Vec::new();
    for stage in &stages {
        for action in &stage.actions {
            if let (Some("InProgress"), Some(token), Some(exec)) =
                (action.status.as_deref(), &action.token, &stage.execution)
            {
                waiting.push(Pending {
                    execution: exec.clone(),
                    stage: stage.stage.clone(),
                    action: action.action.clone(),
                    token: token.clone(),
                });
            }
        }
    }
    match execution {
        None => waiting
            .into_iter()
            .next()
            .ok_or(PipelineError::NothingPending { pipeline: pipeline.name.clone(), execution: None }),
        Some(id) => {
            if let Some(found) = waiting.iter().find(|p| p.execution == id) {
                return Ok(found.clone());
            }
            // Distinguish a typo from an execution that is not waiting.
            pipeline.execution(id).await?;
            match waiting.into_iter().next() {
                Some(other) => Err(PipelineError::WrongExecution {
                    pipeline: pipeline.name.clone(),
                    pending: other.execution,
                    expected: id.to_owned(),
                }),
                None => Err(PipelineError::NothingPending {
                    pipeline: pipeline.name.clone(),
                    execution: Some(id.to_owned()),
                }),
            }
        }
    }
}

/// Sends the decision for `pending`.
pub async fn decide(
    pipeline: &Pipeline,
    pending: &Pending,
    approve: bool,
    by: Identity,
    comment: Option<&str>,
) -> Result<Decision, PipelineError> {
    let info = pipeline.execution(&pending.execution).await?;
    let decision = if approve { "Approved" } else { "Rejected" };
    let mut summary = format!("{decision} by {}", by.arn.as_deref().unwrap_or("an unknown identity"));
    if let Some(actor) = &by.github_actor {
        summary.push_str(&format!(" (GitHub: {actor})"));
    }
    if let Some(v) = info.version() {
        summary.push_str(&format!(" for release {v}"));
    }
    if let Some(c) = comment {
        summary.push_str(&format!(": {c}"));
    }
    // The API takes at most 512 characters.
    let summary: String = summary.chars().take(512).collect();
    let result = ApprovalResult::builder()
        .summary(&summary)
        .status(if approve { ApprovalStatus::Approved } else { ApprovalStatus::Rejected })
        .build()
        .map_err(|e| api("PutApprovalResult", &pipeline.name, e))?;
    pipeline
        .client
        .put_approval_result()
        .pipeline_name(&pipeline.name)
        .stage_name(&pending.stage)
        .action_name(&pending.action)
        .token(&pending.token)
        .result(result)
        .send()
        .await
        .map_err(|e| api("PutApprovalResult", &pipeline.name, e))?;
    Ok(Decision {
        pipeline: pipeline.name.clone(),
        execution: pending.execution.clone(),
        version: info.version().map(str::to_owned),
        stage: pending.stage.clone(),
        action: pending.action.clone(),
        decision: if approve { "approved" } else { "rejected" },
        by,
        comment: comment.map(str::to_owned),
        summary,
    })
}
