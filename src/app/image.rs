//! `gantry image push`: arguments, gantry.toml and the environment to a
//! `publish::image::PushRequest`; events to `report::ImageReporter`; the reports to JSON.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::cli::{ImagePushArgs, OutputFormat};
use crate::publish::image::{self, Events, ImageError, PushRequest};
use crate::report::{ImageReporter, Printer};
use crate::{Error, config, package};

pub async fn push(
    loaded: &config::Loaded,
    env: Option<&str>,
    args: &ImagePushArgs,
    printer: &Printer,
    cancel: &Arc<AtomicBool>,
) -> Result<(), Error> {
    let (_, environment) = super::environment(loaded, env, "image push")?;
    let images = select(&loaded.config, args.name.as_deref())?;
    let version =
        args.release_version.as_deref().map(package::parse_version).transpose().map_err(package::PackageError::from)?;
    let request = PushRequest {
        project_dir: loaded.dir.clone(),
        images,
        region: environment.region.as_ref().map(ToString::to_string),
        registry: environment.registry.clone().filter(|r| !r.trim().is_empty()),
        version,
        source_date_epoch: source_date_epoch()?,
    };
    let sdk = crate::aws::load_env(environment).await;
    let ecr = crate::aws::ecr(&sdk);
    let reporter = Arc::new(ImageReporter::new(printer));
    let events: Events = {
        let reporter = Arc::clone(&reporter);
        Arc::new(move |event| reporter.event(event))
    };
    let reports = image::push(&request, ecr, events, Arc::clone(cancel)).await?;
    for report in &reports {
        reporter.finished(report);
    }
    if printer.format == OutputFormat::Json {
        let doc = match (&args.name, reports.as_slice()) {
            (Some(_), [one]) => serde_json::to_value(one),
            _ => serde_json::to_value(serde_json::json!({ "images": reports })),
        };
        printer.json(&doc.expect("reports serialize"));
    }
    Ok(())
}

fn select(cfg: &config::Config, wanted: Option<&str>) -> Result<Vec<(config::Name, config::Image)>, ImageError> {
    if cfg.images.is_empty() {
        return Err(ImageError::NoImages);
    }
    match wanted {
        None => Ok(cfg.images.iter().map(|(n, i)| (n.clone(), i.clone())).collect()),
        Some(w) => {
            cfg.images.iter().find(|(n, _)| n.as_str() == w).map(|(n, i)| vec![(n.clone(), i.clone())]).ok_or_else(
                || ImageError::UnknownImage {
                    name: w.to_owned(),
                    known: cfg.images.keys().map(ToString::to_string).collect(),
                },
            )
        }
    }
}

/// `SOURCE_DATE_EPOCH` (Unix seconds), or 0 when unset.
fn source_date_epoch() -> Result<i64, Error> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().map_err(|_| Error::Usage {
            message: format!("SOURCE_DATE_EPOCH is `{v}`, not a number of seconds"),
            hint: Some("set it to a Unix time, e.g. `git log -1 --format=%ct`".into()),
        }),
        _ => Ok(0),
    }
}
