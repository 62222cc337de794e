//! `gantry release`: the next version and changelog from git (`release::history`), then,
//! unless `--dry-run`: package it, tag it here and on GitHub, create the GitHub release as a
//! draft, make its assets exactly the packaged files, publish it, publish the release to the
//! production environment and start its pipeline, which waits for approval.
//!
//! Every step is safe to repeat, so running again after a failure finishes the same
//! release: HEAD's tag is resumed, the draft is found by its tag, assets with the same size
//! and SHA-256 are kept, S3 objects with the same bytes are unchanged, and `pipeline start`
//! finds the execution already running the release.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::cli::{self, OutputFormat, PublishArgs, ReleaseArgs};
use crate::github::releases::LocalAsset;
use crate::github::{self, GitHub, GithubError, Repo};
use crate::package::{self, MANIFEST_FILE, Manifest, SUMS_FILE};
use crate::pipeline::source::ReleaseBucket;
use crate::pipeline::{self, Pipeline, StartSettings};
use crate::release::{self, Bump, History, ReleaseError};
use crate::report::{PackageReporter, Printer, ReleaseReporter};
use crate::{Error, config};

pub async fn release(
    loaded: &config::Loaded,
    env: Option<&str>,
    args: &ReleaseArgs,
    printer: &Printer,
    cancel: Arc<AtomicBool>,
) -> Result<(), Error> {
    let bump = match args.bump {
        cli::Bump::Auto => Bump::Auto,
        cli::Bump::Major => Bump::Major,
        cli::Bump::Minor => Bump::Minor,
        cli::Bump::Patch => Bump::Patch,
    };
    let history = release::history::read(&loaded.dir, bump, args.pre.as_deref())?;
    let repo = repository(loaded)?;
    let changelog = release::changelog(&history, &repo.web_url());
    let production = production(loaded, env)?;
    let artifacts: Vec<String> = loaded.config.artifacts.keys().map(ToString::to_string).collect();
    let steps = release::steps(
        &history,
        &repo.to_string(),
        &artifacts,
        production.map(|(n, e)| (n.as_str(), e.release_bucket.as_ref().map(|b| b.as_str()), e.pipeline.as_deref())),
    );
    let reporter = ReleaseReporter::new(printer);
    let how = match (history.resumed, history.level, &history.previous) {
        (true, _, _) => "resuming: HEAD carries its tag".to_owned(),
        (false, Some(level), Some(p)) => {
            format!("{} since {p}", serde_json::to_value(level).unwrap_or_default().as_str().unwrap_or(""))
        }
        (false, Some(_), None) => "first release".to_owned(),
        (false, None, _) => format!("--bump {:?}", args.bump).to_lowercase(),
    };
    printer.status("Version", format!("{} ({how}, {} commits)", history.version, history.changes.len()));
    reporter.plan(&changelog, &steps, args.dry_run);
    let mut summary = serde_json::json!({
        "version": history.version.to_string(),
        "tag": history.tag,
        "previous": history.previous,
        "commit": history.commit,
        "level": history.level,
        "resumed": history.resumed,
        "repository": repo.to_string(),
        "changelog": changelog,
        "changes": history.changes,
        "dry_run": args.dry_run,
    });
    if args.dry_run {
        summary["steps"] = steps.into();
        printer.json(&summary);
        return Ok(());
    }

    printer.output("version", &history.version.to_string());
    let token = github::token_from_env().ok_or(ReleaseError::from(GithubError::NoToken))?;
    let gh = GitHub::new(&token, &github::api_url(), repo).map_err(ReleaseError::from)?;
    let existing = gh.release_by_tag(&history.tag).await.map_err(ReleaseError::from)?;
    if history.resumed
        && let Some(done) = existing.as_ref().filter(|r| !r.draft)
    {
        return Err(ReleaseError::AlreadyReleased {
            tag: history.tag.clone(),
            url: done.html_url.clone(),
            version: history.version.to_string(),
        }
        .into());
    }
    if let Some(commit) = gh.tag_commit(&history.tag).await.map_err(ReleaseError::from)?
        && commit != history.commit
    {
        return Err(ReleaseError::TagElsewhere {
            tag: history.tag.clone(),
            commit,
            head: history.commit.clone(),
            remote: true,
        }
        .into());
    }

    let manifest = package_release(loaded, &history, printer, cancel.clone()).await?;
    tag(loaded, &gh, &history, printer).await?;
    let draft = match existing {
        Some(found) => {
            printer.status(
                "Found",
                format!("release {} ({})", found.tag_name, if found.draft { "draft" } else { "published" }),
            );
            found
        }
        None => {
            let created = gh
                .create_draft(&history.tag, &history.commit, &changelog, !history.version.pre.is_empty())
                .await
                .map_err(ReleaseError::from)?;
            printer.status("Created", format!("draft release {}", created.tag_name));
            created
        }
    };
    let files = assets(&loaded.dist_dir(), &manifest)?;
    let assets = gh.sync_assets(&draft, &files, &|r| reporter.asset(r)).await.map_err(ReleaseError::from)?;
    let published = if draft.draft { gh.publish(&draft).await.map_err(ReleaseError::from)? } else { draft };
    printer.status("Published", format!("release {} {}", published.tag_name, published.html_url));
    summary["release"] = serde_json::json!({ "id": published.id, "url": published.html_url, "draft": published.draft });
    summary["assets"] = serde_json::to_value(&assets).unwrap_or_default();

    if let Some((name, environment)) = production {
        let version = history.version.to_string();
        if environment.release_bucket.is_some() {
            let publish = PublishArgs { release_version: Some(version.clone()), dist: None, force: false };
            let report = super::publish::upload(loaded, Some(name.as_str()), &publish, printer, &cancel).await?;
            summary["published"] = serde_json::json!({
                "environment": name.as_str(),
                "bucket": report.bucket,
                "source_revision": report.pipeline_source.as_ref().and_then(|s| serde_json::to_value(s).ok()),
            });
        }
        if let Some(pipeline_name) = environment.pipeline.as_deref() {
            let region = environment.region.as_ref().map(config::Region::as_str);
            let sdk = crate::aws::load_env(environment).await;
            let pipeline = Pipeline::new(crate::aws::codepipeline(&sdk), pipeline_name);
            let bucket = ReleaseBucket::for_env(crate::aws::s3(&sdk), loaded.config.project.name.as_str(), environment);
            let started = pipeline::start::start(
                &pipeline,
                bucket.as_ref(),
                name.as_str(),
                Some(&version),
                &StartSettings::from_env(false),
            )
            .await?;
            let verb = if started.found { "Found" } else { "Started" };
            printer.status(verb, format!("{} execution {} for {version}", started.pipeline, started.execution_id));
            let region = region.map(str::to_owned).or_else(|| sdk.region().map(ToString::to_string));
            let console = console_url(region.as_deref().unwrap_or("us-east-1"), pipeline_name, &started.execution_id);
            let approve = format!("gantry approve --env {name} --execution {}", started.execution_id);
            reporter.next(&approve, &console);
            printer.output("pipeline-execution-id", &started.execution_id);
            summary["pipeline"] = serde_json::json!({
                "name": started.pipeline,
                "execution_id": started.execution_id,
                "found": started.found,
                "console_url": console,
                "approve": approve,
            });
        }
    } else {
        printer.warn("no production environment (approval = \"required\", or --env): the release went nowhere else");
    }
    if printer.format == OutputFormat::Json {
        printer.json(&summary);
    }
    Ok(())
}

/// `project.repository`, else `GITHUB_REPOSITORY`, else the `origin` remote's URL.
fn repository(loaded: &config::Loaded) -> Result<Repo, ReleaseError> {
    if let Some(text) = &loaded.config.project.repository {
        return Repo::parse(text).ok_or_else(|| GithubError::NoRepo.into());
    }
    if let Some(repo) = std::env::var("GITHUB_REPOSITORY").ok().as_deref().and_then(Repo::parse) {
        return Ok(repo);
    }
    let git = package::version::Git { dir: &loaded.dir };
    git.run_ok(&["remote", "get-url", "origin"])
        .as_deref()
        .and_then(Repo::from_remote_url)
        .ok_or_else(|| GithubError::NoRepo.into())
}

/// `--env`, else the one environment whose `approval` is `required`.
fn production<'c>(
    loaded: &'c config::Loaded,
    env: Option<&str>,
) -> Result<Option<(&'c config::Name, &'c config::Environment)>, Error> {
    if env.is_some() {
        return super::environment(loaded, env, "release").map(Some);
    }
    Ok(loaded.config.environments.iter().find(|(_, e)| e.approval == config::Approval::Required))
}

/// Packages the release into dist/ (reproducible: a second run writes the same bytes).
async fn package_release(
    loaded: &config::Loaded,
    history: &History,
    printer: &Printer,
    cancel: Arc<AtomicBool>,
) -> Result<Manifest, Error> {
    let request = package::PackageRequest {
        project: loaded.config.project.name.to_string(),
        project_dir: loaded.dir.clone(),
        artifacts: loaded.config.artifacts.iter().map(|(n, a)| (n.clone(), a.clone())).collect(),
        out_dir: loaded.dist_dir(),
        version: Some(history.version.to_string()),
        source_date_epoch: std::env::var("SOURCE_DATE_EPOCH").ok(),
        run_builds: true,
        threads: 0,
    };
    let printer = printer.clone();
    tokio::task::spawn_blocking(move || {
        let plan = package::plan(&request)?;
        let mut reporter = PackageReporter::new(&printer);
        Ok(package::apply(&request, &plan, &cancel, &mut |e| reporter.event(e))?)
    })
    .await
    .map_err(|e| Error::Io { context: "packaging stopped unexpectedly".into(), source: std::io::Error::other(e) })?
}

/// The tag on GitHub ("Create a reference"), then in this checkout (lightweight, on HEAD):
/// GitHub first, so a commit GitHub does not have leaves no local tag behind.
async fn tag(loaded: &config::Loaded, gh: &GitHub, history: &History, printer: &Printer) -> Result<(), Error> {
    if gh.tag_commit(&history.tag).await.map_err(ReleaseError::from)?.is_none() {
        gh.create_tag(&history.tag, &history.commit).await.map_err(|e| match e.status() {
            // "Create a reference": 422 when the commit is not on GitHub.
            Some(422) => ReleaseError::NotPushed {
                tag: history.tag.clone(),
                commit: history.commit.clone(),
                source: Box::new(e),
            },
            _ => e.into(),
        })?;
    }
    if !history.resumed {
        let git = package::version::Git { dir: &loaded.dir };
        git.run(&["tag", &history.tag, &history.commit]).map_err(ReleaseError::from)?;
    }
    printer.status("Tagged", format!("{} on {}", history.tag, &history.commit[..history.commit.len().min(12)]));
    Ok(())
}

/// The release's files: each zip, SHA256SUMS and release.json, with sizes and SHA-256.
fn assets(dist: &std::path::Path, manifest: &Manifest) -> Result<Vec<LocalAsset>, ReleaseError> {
    let mut files: Vec<LocalAsset> = manifest
        .artifacts
        .iter()
        .map(|a| LocalAsset { name: a.file.clone(), path: dist.join(&a.file), size: a.size, sha256: a.sha256.clone() })
        .collect();
    for name in [SUMS_FILE, MANIFEST_FILE] {
        let path = dist.join(name);
        let bytes =
            std::fs::read(&path).map_err(|source| ReleaseError::Dist { dir: dist.display().to_string(), source })?;
        use sha2::Digest;
        let sha256 = github::releases::hex(&sha2::Sha256::digest(&bytes));
        files.push(LocalAsset { name: name.to_owned(), path, size: bytes.len() as u64, sha256 });
    }
    Ok(files)
}

/// The execution's page in the AWS console.
fn console_url(region: &str, pipeline: &str, execution: &str) -> String {
    format!(
        "https://{region}.console.aws.amazon.com/codesuite/codepipeline/pipelines/{pipeline}/executions/{execution}/timeline?region={region}"
    )
}
