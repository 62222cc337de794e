//! `PipelineError`: what can go wrong talking to CodePipeline or at the approval gate, with
//! the exit code and a hint for each.

use aws_sdk_codepipeline::error::{ProvideErrorMetadata, SdkError};

use crate::exit;

type Source = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("environment `{env}` names no pipeline")]
    NoPipeline { env: String },
    #[error("pipeline `{pipeline}` does not exist")]
    NotFound { pipeline: String },
    #[error("pipeline `{pipeline}` has no execution `{execution}`")]
    ExecutionNotFound { pipeline: String, execution: String },
    #[error("pipeline `{pipeline}` has no executions yet")]
    NoExecutions { pipeline: String },
    #[error("{operation} on pipeline `{pipeline}` failed{}", if *.throttled { " (throttled)" } else { "" })]
    Api {
        operation: &'static str,
        pipeline: String,
        /// Throttling, a dropped connection or a timeout: worth another try later.
        transient: bool,
        throttled: bool,
        #[source]
        source: Source,
    },
    /// The execution ended without succeeding.
    #[error("execution {execution} of `{pipeline}` {outcome}")]
    Ended { pipeline: String, execution: String, outcome: String, rejected: bool },
    #[error("no manual approval is waiting in pipeline `{pipeline}`")]
    NothingPending { pipeline: String, execution: Option<String> },
    #[error("the approval waiting in `{pipeline}` belongs to execution {pending}, not {expected}")]
    WrongExecution { pipeline: String, pending: String, expected: String },
    #[error("gave up watching execution {execution} after {timeout}; the pipeline goes on")]
    Timeout { execution: String, timeout: String },
    #[error("stopped watching execution {execution}; the pipeline goes on")]
    Interrupted { execution: String },
    #[error("environment `{env}` names no `release_bucket` to find its published releases in")]
    NoReleaseBucket { env: String },
    #[error("no release is published in s3://{bucket}/{prefix} (no committed release.json under it)")]
    NothingPublished { env: String, bucket: String, prefix: String },
    #[error("release {version} is not published: s3://{bucket}/{key} does not exist")]
    NotPublished { env: String, bucket: String, key: String, version: String },
    #[error("no version of the pipeline source s3://{bucket}/{key} holds release {version}")]
    NoSourceRevision { env: String, bucket: String, key: String, version: String },
    #[error("release bucket `{bucket}` does not exist (or is not visible to these credentials)")]
    NoBucket { bucket: String },
    #[error("{operation} s3://{bucket}/{key} failed")]
    Bucket {
        operation: &'static str,
        bucket: String,
        key: String,
        #[source]
        source: Source,
    },
    #[error("s3://{bucket}/{key} version {version_id} is not a pipeline source gantry publish wrote: {reason}")]
    BadSource { bucket: String, key: String, version_id: String, reason: String },
    /// The production gate refused a deploy.
    #[error("`{env}` needs an approved pipeline execution to deploy: {reason}")]
    Gate { env: String, reason: String },
}

impl PipelineError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::NoPipeline { .. }
            | Self::NoReleaseBucket { .. }
            | Self::NothingPublished { .. }
            | Self::NotPublished { .. }
            | Self::NoSourceRevision { .. }
            | Self::NoBucket { .. } => exit::USAGE,
            Self::NothingPending { .. } | Self::WrongExecution { .. } | Self::Gate { .. } => exit::APPROVAL,
            Self::Ended { rejected: true, .. } => exit::APPROVAL,
            Self::Interrupted { .. } => exit::INTERRUPTED,
            _ => exit::FAILED,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            Self::NoPipeline { env } => Some(format!("set `pipeline = \"NAME\"` under [environments.{env}] in gantry.toml")),
            Self::NotFound { .. } => Some("check the pipeline name in gantry.toml and the region and account of your credentials".into()),
            Self::ExecutionNotFound { pipeline, .. } | Self::NoExecutions { pipeline } => {
                Some(format!("`gantry pipeline status` lists the latest executions of `{pipeline}`"))
            }
            Self::NoReleaseBucket { env } => Some(format!(
                "pass --version, or set `release_bucket` under [environments.{env}] in gantry.toml and `gantry publish --env {env}`"
            )),
            Self::NothingPublished { env, .. } => {
                Some(format!("publish a release first: `gantry package`, then `gantry publish --env {env}`"))
            }
            Self::NotPublished { env, version, .. } => Some(format!(
                "publish it first (`gantry package --version {version}`, then `gantry publish --env {env}`), or leave out --version for the latest published release"
            )),
            Self::NoSourceRevision { env, version, .. } => Some(format!(
                "publish {version} again (`gantry publish --env {env}` with it packaged) to write its pipeline source; the bucket must be versioned"
            )),
            Self::NoBucket { .. } => Some("check `release_bucket` of the environment in gantry.toml".into()),
            Self::Api { throttled: true, .. } => Some("CodePipeline is throttling requests; try again in a minute".into()),
            Self::Ended { rejected: true, .. } => Some("the release was rejected: start a new execution once it is fixed".into()),
            Self::NothingPending { execution: Some(e), .. } => {
                Some(format!("execution {e} is not waiting for an approval; `gantry pipeline status` shows where it is"))
            }
            Self::NothingPending { .. } => Some("`gantry pipeline status` shows where the latest executions are".into()),
            Self::WrongExecution { pending, .. } => {
                Some(format!("to decide on the waiting one, pass --execution {pending}"))
            }
            Self::Timeout { .. } | Self::Interrupted { .. } => {
                Some("`gantry pipeline watch` picks it up again; `gantry pipeline status` shows it".into())
            }
            Self::Gate { .. } => Some(
                "production deploys run only in the pipeline's Deploy stage after its manual approval: `gantry pipeline start`, then `gantry approve`"
                    .into(),
            ),
            _ => None,
        }
    }

    /// Whether a later attempt may succeed (watch keeps polling through these).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Api { transient: true, .. })
    }

    /// Names the execution in an `ExecutionNotFound` from `api`, which cannot know it.
    pub(crate) fn for_execution(self, execution: &str) -> Self {
        match self {
            Self::ExecutionNotFound { pipeline, .. } => {
                Self::ExecutionNotFound { pipeline, execution: execution.to_owned() }
            }
            other => other,
        }
    }
}

/// Sorts an SDK error: unknown pipeline and execution by their error type, throttling and
/// connection trouble as transient, the rest as they are.
pub(crate) fn api(operation: &'static str, pipeline: &str, error: impl Into<AnyError>) -> PipelineError {
    let AnyError { code, transient, source } = error.into();
    let pipeline = pipeline.to_owned();
    match code.as_deref() {
        Some("PipelineNotFoundException") => PipelineError::NotFound { pipeline },
        Some("PipelineExecutionNotFoundException") => {
            PipelineError::ExecutionNotFound { pipeline, execution: String::new() }
        }
        Some("ThrottlingException") => {
            PipelineError::Api { operation, pipeline, transient: true, throttled: true, source }
        }
        _ => PipelineError::Api { operation, pipeline, transient, throttled: false, source },
    }
}

/// Any error `api` accepts: SDK errors and builder errors.
pub(crate) struct AnyError {
    code: Option<String>,
    transient: bool,
    source: Source,
}

impl<E, R> From<SdkError<E, R>> for AnyError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    fn from(e: SdkError<E, R>) -> Self {
        let transient =
            matches!(e, SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_));
        let code = e.code().map(str::to_owned);
        let message = aws_sdk_codepipeline::error::DisplayErrorContext(&e).to_string();
        Self { code, transient, source: message.into() }
    }
}

impl From<aws_sdk_codepipeline::error::BuildError> for AnyError {
    fn from(e: aws_sdk_codepipeline::error::BuildError) -> Self {
        Self { code: None, transient: false, source: Box::new(e) }
    }
}
