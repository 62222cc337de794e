//! `gantry pipeline start|watch|status`, `gantry approve` and `gantry reject`: resolve the
//! environment's pipeline, build the clients once, call `crate::pipeline`, report.

use std::time::Duration;

use crate::cli::{ApprovalArgs, PipelineStartArgs, PipelineWatchArgs};
use crate::pipeline::source::ReleaseBucket;
use crate::pipeline::{self, Pipeline, PipelineError, StartSettings, WatchSettings, approval};
use crate::report::{PipelineReporter, Printer};
use crate::rollout::Cancel;
use crate::{Error, config};

/// How long `watch` follows an execution without `--timeout` or `pipeline_timeout`.
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(60 * 60);

struct Bound {
    env: String,
    pipeline: Pipeline,
    sdk: aws_config::SdkConfig,
}

async fn bind(loaded: &config::Loaded, env: Option<&str>, command: &str) -> Result<Bound, Error> {
    let (name, environment) = super::environment(loaded, env, command)?;
    let Some(pipeline) = environment.pipeline.as_deref() else {
        return Err(PipelineError::NoPipeline { env: name.to_string() }.into());
    };
    let sdk = crate::aws::load_env(environment).await;
    let client = crate::aws::codepipeline(&sdk);
    Ok(Bound { env: name.to_string(), pipeline: Pipeline::new(client, pipeline), sdk })
}

pub async fn start(
    loaded: &config::Loaded,
    env: Option<&str>,
    args: &PipelineStartArgs,
    printer: &Printer,
) -> Result<(), Error> {
    let b = bind(loaded, env, "pipeline start").await?;
    let environment = super::environment(loaded, env, "pipeline start")?.1;
    let bucket = ReleaseBucket::for_env(crate::aws::s3(&b.sdk), loaded.config.project.name.as_str(), environment);
    let settings = StartSettings::from_env(args.new);
    let started =
        pipeline::start::start(&b.pipeline, bucket.as_ref(), &b.env, args.release_version.as_deref(), &settings)
            .await?;
    if let (Some(v), false, false, None) = (&started.version, started.pinned, started.found, &started.source_revision) {
        printer.warn(format!(
            "pipeline `{}` declares no `version` variable, so it runs its newest source revision, which may not be {v}",
            started.pipeline
        ));
    }
    let release = started.version.as_deref().map(|v| format!(" for {v}")).unwrap_or_default();
    let revision = started.source_revision.as_deref().map(|r| format!(", source revision {r}")).unwrap_or_default();
    if started.found {
        printer.status(
            "Found",
            format!(
                "{} execution {}{release} ({}{revision}): publish already started it",
                started.pipeline,
                started.execution_id,
                started.status.as_deref().unwrap_or("running")
            ),
        );
    } else {
        printer
            .status("Started", format!("{} execution {}{release}{revision}", started.pipeline, started.execution_id));
    }
    printer.json(&serde_json::to_value(&started).unwrap_or_default());
    printer.output("pipeline-execution-id", &started.execution_id);
    if printer.format == crate::cli::OutputFormat::Human {
        printer.text(&format!("{}\n", started.execution_id));
    }
    Ok(())
}

pub async fn watch(
    loaded: &config::Loaded,
    env: Option<&str>,
    args: &PipelineWatchArgs,
    printer: &Printer,
    mut cancel: Cancel,
) -> Result<(), Error> {
    let b = bind(loaded, env, "pipeline watch").await?;
    let configured = super::environment(loaded, env, "pipeline watch")?.1.pipeline_timeout;
    let timeout = match &args.timeout {
        Some(t) => humantime::parse_duration(t).map_err(|e| Error::Usage {
            message: format!("--timeout `{t}` is not a duration: {e}"),
            hint: Some("write it like 45m, 1h30m or 90s".into()),
        })?,
        None => configured.map_or(DEFAULT_WATCH_TIMEOUT, |d| d.get()),
    };
    let execution = match &args.execution {
        Some(id) => id.clone(),
        None => latest(&b.pipeline).await?,
    };
    let reporter = PipelineReporter::new(printer);
    let approve = format!("gantry approve --env {} --execution {execution}", b.env);
    let stop = async move { cancel.cancelled().await };
    let run = pipeline::watch::watch(&b.pipeline, &execution, WatchSettings::from_env(), &approve, stop, |e| {
        reporter.event(&e)
    });
    match tokio::time::timeout(timeout, run).await {
        Ok(result) => result.map(|_| ()).map_err(Error::from),
        Err(_) => {
            Err(PipelineError::Timeout { execution, timeout: humantime::format_duration(timeout).to_string() }.into())
        }
    }
}

async fn latest(pipeline: &Pipeline) -> Result<String, PipelineError> {
    let list = pipeline.executions(1).await?;
    list.into_iter().next().map(|e| e.id).ok_or_else(|| PipelineError::NoExecutions { pipeline: pipeline.name.clone() })
}

pub async fn status(loaded: &config::Loaded, env: Option<&str>, printer: &Printer) -> Result<(), Error> {
    let b = bind(loaded, env, "pipeline status").await?;
    let status = pipeline::status(&b.pipeline, 5).await?;
    PipelineReporter::new(printer).status(&status);
    Ok(())
}

/// `approve` (`approve = true`) and `reject`.
pub async fn decide(
    loaded: &config::Loaded,
    env: Option<&str>,
    args: &ApprovalArgs,
    approve: bool,
    printer: &Printer,
) -> Result<(), Error> {
    let b = bind(loaded, env, if approve { "approve" } else { "reject" }).await?;
    let pending = approval::pending(&b.pipeline, args.execution.as_deref()).await?;
    let identity = identity(&b.sdk, printer).await;
    let decision = approval::decide(&b.pipeline, &pending, approve, identity, args.comment.as_deref()).await?;
    printer.status(
        if approve { "Approved" } else { "Rejected" },
        format!(
            "{} execution {}{} at {}/{}",
            decision.pipeline,
            decision.execution,
            decision.version.as_deref().map(|v| format!(" (release {v})")).unwrap_or_default(),
            decision.stage,
            decision.action
        ),
    );
    printer.json(&serde_json::to_value(&decision).unwrap_or_default());
    Ok(())
}

/// The caller's ARN from STS, and `GITHUB_ACTOR` inside GitHub Actions.
async fn identity(sdk: &aws_config::SdkConfig, printer: &Printer) -> approval::Identity {
    let arn = match crate::aws::sts(sdk).get_caller_identity().send().await {
        Ok(out) => out.arn().map(str::to_owned),
        Err(e) => {
            printer.warn(format!(
                "cannot read the caller identity from STS ({}); the approval records no ARN",
                aws_sdk_sts::error::DisplayErrorContext(&e)
            ));
            None
        }
    };
    let github_actor = if printer.github_actions { std::env::var("GITHUB_ACTOR").ok() } else { None };
    approval::Identity { arn, github_actor }
}
