//! `gantry publish`: the environment's bucket and keys from gantry.toml, the plan from
//! the packaged release, then the upload with events to the reporter.

use std::sync::atomic::AtomicBool;

use crate::cli::{OutputFormat, PublishArgs};
use crate::report::{Printer, PublishReporter};
use crate::{Error, aws, config, publish};

pub async fn publish(
    loaded: &config::Loaded,
    env: Option<&str>,
    args: &PublishArgs,
    printer: &Printer,
    cancel: &AtomicBool,
) -> Result<(), Error> {
    let report = upload(loaded, env, args, printer, cancel).await?;
    if printer.format == OutputFormat::Json {
        printer.json(&serde_json::to_value(&report).expect("report serializes"));
    }
    Ok(())
}

/// Publishes with progress on stderr and returns the report (also for `gantry release`).
pub(crate) async fn upload(
    loaded: &config::Loaded,
    env: Option<&str>,
    args: &PublishArgs,
    printer: &Printer,
    cancel: &AtomicBool,
) -> Result<publish::PublishReport, Error> {
    let (name, environment) = super::environment(loaded, env, "publish")?;
    let Some(bucket) = &environment.release_bucket else {
        return Err(Error::Usage {
            message: format!("environment `{name}` has no `release_bucket` to publish to"),
            hint: Some(format!("set `release_bucket` under [environments.{name}] in gantry.toml")),
        });
    };
    let project = &loaded.config.project;
    let prefix = environment.release_prefix.clone().unwrap_or_else(|| "releases".into());
    let source_key = environment.pipeline.as_ref().map(|_| {
        environment
            .pipeline_source_key
            .clone()
            .unwrap_or_else(|| format!("{prefix}/{}/pipeline-source.zip", project.name))
    });
    let dist = match &args.dist {
        Some(dist) => dist.clone(),
        None => loaded.dist_dir(),
    };
    let request = publish::PublishRequest {
        environment: name.to_string(),
        bucket: bucket.to_string(),
        prefix,
        source_key,
        dist,
        config_path: loaded.path.clone(),
        version: args.release_version.clone(),
        force: args.force,
    };
    // Planning hashes every artifact: off the async threads.
    let plan = {
        let request = request.clone();
        tokio::task::spawn_blocking(move || publish::plan(&request)).await.map_err(|e| Error::Io {
            context: "planning stopped unexpectedly".into(),
            source: std::io::Error::other(e),
        })??
    };
    let sdk = aws::load_env(environment).await;
    let bucket = publish::s3::Bucket::new(aws::s3(&sdk), bucket.to_string());
    let reporter = PublishReporter::new(printer);
    let report = publish::apply(&request, &plan, &bucket, cancel, &|e| reporter.event(e)).await?;
    reporter.finish(&report);
    Ok(report)
}
