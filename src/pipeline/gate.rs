//! The production gate. An environment with `approval = "required"` is deployed only from
//! inside its pipeline's Deploy stage, after that execution's Manual approval succeeded, for
//! the release that execution carries.
//!
//! The environment says where gantry claims to run: `CODEBUILD_BUILD_ID` (set by CodeBuild)
//! and `GANTRY_PIPELINE_EXECUTION_ID` (the buildspec passes `#{codepipeline.PipelineExecutionId}`).
//! Neither is trusted alone: ListActionExecutions must show, for that execution of the
//! environment's pipeline, a running build action whose external id is this build, and a
//! succeeded approval action that finished before it started; GetPipelineExecution must show
//! the execution still running. A faked id, another execution's approval, a rejected or
//! expired approval, or a finished execution is refused with exit 5.
//!
//! The execution's release is read from the service, never from the deploy's environment:
//! when the environment has a release bucket, it is the release inside the pipeline source
//! object version the execution runs (its S3 source revision, `artifactRevisions`), so an
//! execution the S3 source started on a publish carries its release without any variable.
//! A `version` variable set to something other than its default must agree with it. Without
//! a release bucket (or a source revision), the variable alone names the release. A deploy
//! that names a version must name exactly that one; one that names none deploys it.

use super::source::ReleaseBucket;
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
    Ok(check(loaded.config.project.name.as_str(), name.as_str(), environment, version).await?)
}

/// `require` for one resolved environment. The approval record's `version` is the release
/// the execution carries: the one to deploy when `version` is `None`.
pub async fn check(
    project: &str,
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
    let sdk = crate::aws::load_env(env).await;
    let pipeline = Pipeline::new(crate::aws::codepipeline(&sdk), name);
    let bucket = ReleaseBucket::for_env(crate::aws::s3(&sdk), project, env);
    verify(&pipeline, bucket.as_ref(), &execution, &build, version).await.map_err(|e| match e {
        PipelineError::Gate { reason, .. } => refuse(reason),
        PipelineError::ExecutionNotFound { execution, .. } => {
            refuse(format!("pipeline `{name}` has no execution {execution}"))
        }
        other => other,
    })
}

/// Checks the claim against the API; returns the approval to record. The order gives the
/// most telling reason first: the approval, then the execution, the build, the release.
pub async fn verify(
    pipeline: &Pipeline,
    bucket: Option<&ReleaseBucket>,
    execution: &str,
    build: &str,
    version: Option<&str>,
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
    let carried = release_of(pipeline, bucket, &info).await?;
    let carried = match carried {
        Carried::Release { version, revision } => (version, revision),
        Carried::Disagree(reason) | Carried::Unreadable(reason) => return Err(refuse(reason)),
        Carried::Nothing => {
            return Err(refuse(format!(
                "execution {execution} names no release (no source revision of the release bucket's pipeline source, no pipeline variable `version`)"
            )));
        }
    };
    if let Some(asked) = version {
        let asked = asked.trim().trim_start_matches('v');
        if asked != carried.0 {
            return Err(refuse(format!("execution {execution} was approved for release {}, not {asked}", carried.0)));
        }
    }
    Ok(Some(serde_json::json!({
        "pipeline": pipeline.name,
        "execution": execution,
        "version": carried.0,
        "source_revision": carried.1,
        "trigger": info.trigger,
        "stage": approval.stage,
        "action": approval.action,
        "approved_by": approval.updated_by,
        "summary": approval.summary,
        "approved_at": approval.updated,
        "build": build,
    })))
}

/// The release an execution carries.
enum Carried {
    Release {
        version: String,
        revision: Option<String>,
    },
    /// The source revision and the `version` variable name different releases.
    Disagree(String),
    /// The source revision could not be read as a release.
    Unreadable(String),
    Nothing,
}

/// The release inside the execution's source revision (an object version of the pipeline
/// source the environment's bucket holds), checked against a `version` variable that is not
/// its default; the variable alone when there is no bucket or revision.
async fn release_of(
    pipeline: &Pipeline,
    bucket: Option<&ReleaseBucket>,
    info: &super::ExecutionInfo,
) -> Result<Carried, PipelineError> {
    let declared = pipeline.declaration().await?;
    let default = declared.variables.get("version").cloned().flatten();
    let variable = info.version().filter(|v| Some(*v) != default.as_deref()).map(str::to_owned);
    let source = bucket.and_then(|b| {
        let action = declared.s3_source_action(&b.bucket, &b.source_key)?;
        let revision = info.revisions.iter().find(|r| action.outputs.contains(&r.name))?;
        Some((b, revision.id.clone()))
    });
    let Some((bucket, revision)) = source else {
        return Ok(variable.map_or(Carried::Nothing, |version| Carried::Release { version, revision: None }));
    };
    let release = match bucket.source_release(&revision).await {
        Ok(m) => m.version.to_string(),
        Err(e) => {
            let cause = std::error::Error::source(&e).map(|c| format!(": {c}")).unwrap_or_default();
            return Ok(Carried::Unreadable(format!(
                "the release of execution {}'s source revision {revision} cannot be read: {e}{cause}",
                info.id
            )));
        }
    };
    match variable {
        Some(v) if v.trim_start_matches('v') != release => Ok(Carried::Disagree(format!(
            "execution {} runs source revision {revision} (release {release}), but its `version` variable says {v}",
            info.id
        ))),
        _ => Ok(Carried::Release { version: release, revision: Some(revision) }),
    }
}
