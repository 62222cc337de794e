//! The production gate. An environment with `approval = "required"` is deployed only from
//! inside its pipeline's Deploy stage, after that execution's Manual approval succeeded, for
//! the version that execution carries.
//!
//! The environment says where gantry claims to run: `CODEBUILD_BUILD_ID` (set by CodeBuild)
//! and `GANTRY_PIPELINE_EXECUTION_ID` (the buildspec passes `#{codepipeline.PipelineExecutionId}`).
//! Neither is trusted alone: ListActionExecutions must show, for that execution of the
//! environment's pipeline, a running build action whose external id is this build, and a
//! succeeded approval action that finished before it started; GetPipelineExecution must show
//! the execution still running with this version. A faked id, another execution's approval,
//! a rejected or expired approval, or a finished execution is refused with exit 5.

use super::{ActionRun, Pipeline, PipelineError};
use crate::config;

/// The variable the buildspec sets to the pipeline execution id.
pub const EXECUTION_VAR: &str = "GANTRY_PIPELINE_EXECUTION_ID";
/// Set by CodeBuild in every build.
pub const BUILD_VAR: &str = "CODEBUILD_BUILD_ID";

/// Where gantry says it runs, read from the environment.
#[derive(Debug, Clone)]
pub struct Claim {
    pub execution: Option<String>,
    pub build: Option<String>,
}

impl Claim {
    pub fn from_env() -> Self {
        let var = |k| std::env::var(k).ok().filter(|v: &String| !v.is_empty());
        Self { execution: var(EXECUTION_VAR), build: var(BUILD_VAR) }
    }
}

/// The call at the top of `deploy` and `rollback`: `Ok(None)` when the environment needs
/// no approval (or is unknown: the command's own lookup reports that), `Ok(Some(record))`
/// with the approval to keep in the ledger, or the refusal (exit 5).
pub async fn require(
    loaded: &config::Loaded,
    env: Option<&str>,
    version: Option<&str>,
) -> Result<Option<serde_json::Value>, crate::Error> {
    let Some((name, environment)) = env.and_then(|e| loaded.config.environments.iter().find(|(n, _)| n.as_str() == e))
    else {
        return Ok(None);
    };
    Ok(check(name.as_str(), environment, version).await?)
}

/// `require` for one resolved environment.
pub async fn check(
    env_name: &str,
    env: &config::Environment,
    version: Option<&str>,
) -> Result<Option<serde_json::Value>, PipelineError> {
    if env.approval != config::Approval::Required {
        return Ok(None);
    }
    let refuse = |reason: String| PipelineError::Gate { env: env_name.to_owned(), reason };
    let Some(name) = env.pipeline.as_deref() else {
        return Err(PipelineError::NoPipeline { env: env_name.to_owned() });
    };
    let claim = Claim::from_env();
    let (Some(execution), Some(build)) = (claim.execution, claim.build) else {
        return Err(refuse(format!(
            "this is not the pipeline's Deploy stage ({BUILD_VAR} and {EXECUTION_VAR} are not both set)"
        )));
    };
    let Some(version) = version else {
        return Err(refuse("a deploy from the pipeline names its release: pass --version".into()));
    };
    let sdk = crate::aws::load(env.region.as_ref().map(config::Region::as_str)).await;
    let pipeline = Pipeline::new(crate::aws::codepipeline(&sdk), name);
    verify(&pipeline, &execution, &build, version).await.map_err(|e| match e {
        PipelineError::Gate { reason, .. } => refuse(reason),
        PipelineError::ExecutionNotFound { execution, .. } => {
            refuse(format!("pipeline `{name}` has no execution {execution}"))
        }
        other => other,
    })
}

/// Checks the claim against the API; returns the approval to record. The order gives the
/// most telling reason first: the approval, then the execution, the build, the version.
pub async fn verify(
    pipeline: &Pipeline,
    execution: &str,
    build: &str,
    version: &str,
) -> Result<Option<serde_json::Value>, PipelineError> {
    let refuse = |reason: String| PipelineError::Gate { env: String::new(), reason };
    let info = pipeline.execution(execution).await?;
    let runs = pipeline.action_runs(execution).await?;
    let approvals: Vec<&ActionRun> = runs.iter().filter(|r| r.is_approval()).collect();
    let Some(approval) = approvals.iter().find(|r| r.status == "Succeeded") else {
        return Err(refuse(match approvals.first() {
            Some(r) => format!(
                "the approval of execution {execution} is {}{}",
                r.status,
                r.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
            ),
            None => format!("execution {execution} passed no manual approval"),
        }));
    };
    if info.status != "InProgress" {
        return Err(refuse(format!("execution {execution} is {}, not running", info.status)));
    }
    let deploy = runs
        .iter()
        .find(|r| r.status == "InProgress" && !r.is_approval() && r.external_id.as_deref() == Some(build))
        .ok_or_else(|| refuse(format!("build {build} is not a running action of execution {execution}")))?;
    if approval.updated > deploy.started {
        return Err(refuse(format!("the approval of execution {execution} came after its deploy action started")));
    }
    match info.version() {
        Some(v) if v == version.trim_start_matches('v') => {}
        Some(v) => return Err(refuse(format!("execution {execution} was approved for release {v}, not {version}"))),
        None => return Err(refuse(format!("execution {execution} names no release (pipeline variable `version`)"))),
    }
    Ok(Some(serde_json::json!({
        "pipeline": pipeline.name,
        "execution": execution,
        "version": version,
        "stage": approval.stage,
        "action": approval.action,
        "approved_by": approval.updated_by,
        "summary": approval.summary,
        "approved_at": approval.updated,
        "build": build,
    })))
}
