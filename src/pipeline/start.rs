//! `gantry pipeline start`: run an environment's pipeline for a published release, or find
//! the execution that publishing it already started.
//!
//! With a release bucket, the release is `--version` (checked to be published) or the
//! latest published one, and the pipeline source object version that holds it is looked up
//! (`source::ReleaseBucket`). When an execution already carries that object version as its
//! source revision (the S3 source started it when publish wrote the object), that execution
//! is the answer and nothing is started. Right after a publish, its execution may not be
//! listed yet: the lookup is repeated until `StartSettings::trigger_wait` after the object
//! was written. Otherwise a new execution starts, with the `version` variable and the source
//! pinned to that object version (`sourceRevisions`), so its variable and its source agree.
//!
//! Without a release bucket there is nothing to correlate: `--version` is required and
//! passed as the variable, as before.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::source::{ReleaseBucket, SourceObject};
use super::{ExecutionInfo, Pipeline, PipelineError};

/// How `start` looks for an execution the S3 source started.
#[derive(Debug, Clone)]
pub struct StartSettings {
    /// How long after the source object was written its execution may take to appear.
    pub trigger_wait: Duration,
    /// The first pause between lookups (doubling, at most 2 s).
    pub poll: Duration,
    /// Start a new execution even if one already runs (or ran) this source revision.
    pub new: bool,
}

impl StartSettings {
    /// 30 s after a publish, polled from 250 ms; `GANTRY_PIPELINE_TRIGGER_WAIT` and
    /// `GANTRY_PIPELINE_POLL` change them.
    pub fn from_env(new: bool) -> Self {
        let var = |k: &str| std::env::var(k).ok().and_then(|v| humantime::parse_duration(&v).ok());
        Self {
            trigger_wait: var("GANTRY_PIPELINE_TRIGGER_WAIT").unwrap_or(Duration::from_secs(30)),
            poll: var("GANTRY_PIPELINE_POLL").unwrap_or(Duration::from_millis(250)),
            new,
        }
    }
}

/// The result of `gantry pipeline start`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Started {
    pub pipeline: String,
    pub execution_id: String,
    pub version: Option<String>,
    /// `true` when an execution the S3 source started was found; `false` when one was started.
    pub found: bool,
    /// Whether the version was passed as the pipeline's `version` variable (V2 pipelines).
    pub pinned: bool,
    /// The pipeline source object version the execution runs, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_revision: Option<String>,
    /// How the found execution was started (`CloudWatchEvent` for an S3 source change).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// The found execution's status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// See the module documentation. `env` names the environment in errors.
pub async fn start(
    pipeline: &Pipeline,
    bucket: Option<&ReleaseBucket>,
    env: &str,
    version: Option<&str>,
    settings: &StartSettings,
) -> Result<Started, PipelineError> {
    let declared = pipeline.declaration().await?;
    let Some(bucket) = bucket else {
        let Some(version) = version else {
            return Err(PipelineError::NoReleaseBucket { env: env.to_owned() });
        };
        let (id, pinned) = pipeline.start(&declared, Some(version), None).await?;
        return Ok(started(pipeline, id, Some(version.to_owned()), pinned, None));
    };
    let version = match version {
        Some(v) => {
            let parsed = crate::package::parse_version(v).map_err(|_| PipelineError::NotPublished {
                env: env.to_owned(),
                bucket: bucket.bucket.clone(),
                key: format!("{}{v}/{}", bucket.releases, crate::package::MANIFEST_FILE),
                version: v.to_owned(),
            })?;
            if !bucket.committed(&parsed).await? {
                return Err(PipelineError::NotPublished {
                    env: env.to_owned(),
                    bucket: bucket.bucket.clone(),
                    key: bucket.manifest_key(&parsed),
                    version: parsed.to_string(),
                });
            }
            parsed
        }
        None => bucket.latest_published().await?.ok_or_else(|| PipelineError::NothingPublished {
            env: env.to_owned(),
            bucket: bucket.bucket.clone(),
            prefix: bucket.releases.clone(),
        })?,
    };
    let source = match bucket.current_source().await? {
        Some(current) if bucket.source_release(&current.version_id).await?.version == version => Some(current),
        _ => bucket.source_for(&version).await?,
    };
    let Some(source) = source else {
        return Err(PipelineError::NoSourceRevision {
            env: env.to_owned(),
            bucket: bucket.bucket.clone(),
            key: bucket.source_key.clone(),
            version: version.to_string(),
        });
    };
    if !settings.new
        && let Some(found) = find(pipeline, &source, settings).await?
    {
        return Ok(Started {
            pipeline: pipeline.name.clone(),
            execution_id: found.id,
            version: Some(version.to_string()),
            found: true,
            pinned: false,
            source_revision: Some(source.version_id),
            trigger: found.trigger,
            status: Some(found.status),
        });
    }
    let action = declared.s3_source(&bucket.bucket, &bucket.source_key);
    let pin = action.map(|a| (a, source.version_id.as_str()));
    let (id, pinned) = pipeline.start(&declared, Some(&version.to_string()), pin).await?;
    Ok(started(pipeline, id, Some(version.to_string()), pinned, pin.map(|(_, v)| v.to_owned())))
}

fn started(
    pipeline: &Pipeline,
    id: String,
    version: Option<String>,
    pinned: bool,
    revision: Option<String>,
) -> Started {
    Started {
        pipeline: pipeline.name.clone(),
        execution_id: id,
        version,
        found: false,
        pinned,
        source_revision: revision,
        trigger: None,
        status: None,
    }
}

/// An execution running (or that ran to success) `source`, looked for until
/// `trigger_wait` after the object was written. Failed, stopped and superseded ones do
/// not count: starting again is how a release is retried.
async fn find(
    pipeline: &Pipeline,
    source: &SourceObject,
    settings: &StartSettings,
) -> Result<Option<ExecutionInfo>, PipelineError> {
    let deadline = source.last_modified.map_or(0.0, |t| t + settings.trigger_wait.as_secs_f64());
    let mut pause = settings.poll;
    loop {
        match pipeline.executions(100).await {
            Ok(list) => {
                let found = list.into_iter().find(|e| {
                    e.runs_revision(&source.version_id)
                        && matches!(e.status.as_str(), "InProgress" | "Stopping" | "Succeeded")
                });
                if found.is_some() {
                    return Ok(found);
                }
            }
            Err(e) if e.is_transient() => {}
            Err(e) => return Err(e),
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        if now >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(pause.min(Duration::from_secs_f64(deadline - now))).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}
