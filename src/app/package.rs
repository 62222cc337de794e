//! `gantry package`: arguments to a `package::PackageRequest`, events to the reporter.

use std::sync::atomic::AtomicBool;

use crate::cli::{OutputFormat, PackageArgs};
use crate::report::{PackageReporter, Printer};
use crate::{Error, config, package};

pub fn package(
    loaded: &config::Loaded,
    args: &PackageArgs,
    printer: &Printer,
    cancel: &AtomicBool,
) -> Result<(), Error> {
    let cfg = &loaded.config;
    let artifacts = select_artifacts(cfg, &args.artifacts)?;
    let out_dir = match &args.out {
        Some(out) => out.clone(),
        None => loaded.dist_dir(),
    };
    let request = package::PackageRequest {
        project: cfg.project.name.to_string(),
        project_dir: loaded.dir.clone(),
        artifacts,
        out_dir,
        version: args.release_version.clone(),
        source_date_epoch: std::env::var("SOURCE_DATE_EPOCH").ok(),
        run_builds: !args.skip_build,
        threads: 0,
    };
    let plan = package::plan(&request)?;
    printer.status(
        "Version",
        format!(
            "{} ({})",
            plan.source.version,
            plan.source.commit.as_deref().map_or("no git commit", |c| &c[..c.len().min(12)])
        ),
    );
    let mut reporter = PackageReporter::new(printer);
    let manifest = package::apply(&request, &plan, cancel, &mut |e| reporter.event(e))?;
    let count = manifest.artifacts.len();
    let noun = if count == 1 { "artifact" } else { "artifacts" };
    let summary = format!("{count} {noun} of {} {}", manifest.project, manifest.version);
    printer.status("Finished", format!("{summary} in {}", plan.out_dir.display()));
    reporter.finish(&manifest);
    if printer.format == OutputFormat::Json {
        let mut doc = serde_json::to_value(&manifest).expect("manifest serializes");
        doc["dist"] = serde_json::json!(plan.out_dir);
        printer.json(&doc);
    }
    Ok(())
}

fn select_artifacts(cfg: &config::Config, wanted: &[String]) -> Result<Vec<(config::Name, config::Artifact)>, Error> {
    let all = cfg.artifacts.iter().map(|(n, a)| (n.clone(), a.clone()));
    if wanted.is_empty() {
        return Ok(all.collect());
    }
    wanted
        .iter()
        .map(|w| {
            cfg.artifacts.iter().find(|(n, _)| n.as_str() == w).map(|(n, a)| (n.clone(), a.clone())).ok_or_else(|| {
                package::PackageError::UnknownArtifact {
                    name: w.clone(),
                    known: cfg.artifacts.keys().map(ToString::to_string).collect(),
                }
                .into()
            })
        })
        .collect()
}
