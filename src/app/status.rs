//! `gantry plan`, `gantry status` and `gantry history`: read the ledger and the targets.
//! `plan` computes the steps with the same code `deploy` runs, and changes nothing.
//! `status` also finishes or rolls back a deployment whose process died (the resume rule),
//! when no live process holds the lock.

use std::fmt::Write as _;

use super::deploy::{self, DeployError, EnvContext};
use crate::cli::{EnvTargetArgs, HistoryArgs, OutputFormat};
use crate::package::manifest::{MANIFEST_FILE, Manifest};
use crate::report::Printer;
use crate::rollout::{engine::describe_live, health, plan};
use crate::state::{self, record::Deployment};
use crate::targets::Target;
use crate::{Error, config};

pub async fn plan(
    loaded: &config::Loaded,
    env: Option<&str>,
    args: &EnvTargetArgs,
    printer: &Printer,
) -> Result<(), Error> {
    let ctx = EnvContext::new(loaded, env, &args.targets, "plan").await?;
    let records = ctx.store.list().await.map_err(DeployError::from)?;
    let dist = loaded.dist_dir().join(MANIFEST_FILE);
    let manifest_bytes = std::fs::read(&dist).ok();
    let packaged: Option<Manifest> = manifest_bytes.as_ref().and_then(|b| serde_json::from_slice(b).ok());
    // The packaged release as targets see it (no artifacts: `plan` only reads).
    let planned = packaged.as_ref().zip(manifest_bytes.as_ref()).map(|(m, bytes)| {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
        crate::targets::Release { version: m.version.clone(), digest, artifacts: Default::default() }
    });
    let release = packaged.as_ref().map_or_else(
        || "the working tree, packaged by `gantry deploy` (no --version given)".to_owned(),
        |m| {
            format!(
                "{} (packaged in {}; `gantry deploy` packages the working tree again unless given --version)",
                m.version,
                dist.display()
            )
        },
    );
    let mut doc = serde_json::json!({ "environment": ctx.name.as_str(), "release": release, "targets": [] });
    let mut text =
        format!("Plan for environment `{}`\n  release: {release}\n  ledger: {}\n", ctx.name, ctx.store.location());
    waves(&ctx, &mut doc, &mut text);
    // In deploy order: wave by wave.
    let ordered =
        ctx.waves.iter().flat_map(|w| w.targets.iter()).filter_map(|n| ctx.targets.iter().find(|(t, _)| t == n));
    for &(name, cfg) in ordered {
        let mut target = ctx.build_target(name, cfg)?;
        let history = state::target_history(&records, name.as_str());
        let live = target.observe().await.map_err(|e| DeployError::Target { target: name.to_string(), source: e })?;
        let steps = plan::steps(&cfg.strategy, target.replicas());
        let notes = target
            .plan_notes(planned.as_ref())
            .await
            .map_err(|e| DeployError::Target { target: name.to_string(), source: e })?;
        let deadline = cfg.strategy.phase_deadline.map_or(plan::DEFAULT_PHASE_DEADLINE, |d| d.get());
        let _ = writeln!(
            text,
            "\ntarget `{name}` ({}, {} replica(s), strategy {})",
            cfg.kind.key(),
            target.replicas(),
            deploy::strategy_name(cfg)
        );
        let _ = writeln!(text, "  live now: {}", describe_live(&live));
        if let Some(l) = history.live {
            let _ = writeln!(text, "  ledger: {} deployed {} by {}", l.release.version, l.started_at, l.started_by);
        }
        if history.running.is_some() {
            let _ = writeln!(text, "  an unfinished deployment will be recovered first (see `gantry status`)");
        }
        let _ = writeln!(text, "  every phase may take at most {}", humantime::format_duration(deadline));
        for (i, step) in steps.iter().enumerate() {
            let detail = target.step_detail(step).unwrap_or_else(|| step.describe());
            let _ = writeln!(text, "  {:>2}. {:<10} {detail}", i + 1, step.phase());
        }
        for note in &notes {
            let _ = writeln!(text, "  {note}");
        }
        if cfg.health.is_empty() {
            let _ =
                writeln!(text, "  health: no checks configured: gates pass at once (add [[targets.{name}.health]])");
        }
        for check in &cfg.health {
            let _ = writeln!(
                text,
                "  health: {} {} expecting {}, every {}, healthy after {} in a row, unhealthy after {}",
                serde_json::to_value(check.method).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
                health::resolve(check, "{url}"),
                check.expect_status,
                humantime::format_duration(check.interval.get()),
                check.healthy_threshold,
                check.unhealthy_threshold
            );
        }
        doc["targets"].as_array_mut().expect("array").push(serde_json::json!({
            "name": name.as_str(),
            "kind": cfg.kind.key(),
            "strategy": deploy::strategy_name(cfg),
            "replicas": target.replicas(),
            "live": live,
            "phase_deadline_ms": deadline.as_millis() as u64,
            "steps": steps,
            "notes": notes,
            "health": cfg.health.iter().map(|c| health::resolve(c, "{url}")).collect::<Vec<_>>(),
        }));
    }
    #[cfg(feature = "cloud")]
    pipeline_check(loaded, &ctx, &mut doc, &mut text).await;
    if printer.format == OutputFormat::Json {
        printer.json(&doc);
    } else {
        printer.text(&text);
    }
    Ok(())
}

/// The deploy waves, when the environment has more than one.
fn waves(ctx: &EnvContext<'_>, doc: &mut serde_json::Value, text: &mut String) {
    if ctx.waves.len() < 2 {
        return;
    }
    let _ = writeln!(text, "  waves: one after another; when one fails, the finished ones are rolled back, last first");
    for w in &ctx.waves {
        let targets = w.targets.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ");
        let region = w.region.as_deref().map_or_else(|| "mixed regions".to_owned(), str::to_owned);
        let _ = writeln!(text, "    {}. {region}: {targets}", w.number);
    }
    if ctx.wave_bake.is_zero() {
        let _ = writeln!(text, "    no bake between waves (set `wave_bake` to watch the finished waves first)");
    } else {
        let _ = writeln!(
            text,
            "    between waves: every finished target's health checks and alarms watched for {}",
            humantime::format_duration(ctx.wave_bake)
        );
    }
    doc["waves"] = serde_json::to_value(&ctx.waves).unwrap_or_default();
    doc["wave_bake_ms"] = serde_json::json!(u64::try_from(ctx.wave_bake.as_millis()).unwrap_or(u64::MAX));
}

/// The environment's pipeline definition, checked by `crate::pipeline::check`.
#[cfg(feature = "cloud")]
async fn pipeline_check(loaded: &config::Loaded, ctx: &EnvContext<'_>, doc: &mut serde_json::Value, text: &mut String) {
    let Some(env) = loaded.config.environments.get(ctx.name) else { return };
    let Some(check) = crate::pipeline::check::definition(loaded.config.project.name.as_str(), env).await else {
        return;
    };
    if check.problems.is_empty() {
        let _ = writeln!(
            text,
            "
pipeline `{}`: source {}, approval and deploy stages as expected",
            check.pipeline, check.expected_source
        );
    } else {
        let _ = writeln!(
            text,
            "
pipeline `{}` is not as expected:",
            check.pipeline
        );
        for p in &check.problems {
            let _ = writeln!(text, "  - {p}");
        }
    }
    doc["pipeline"] = serde_json::to_value(&check).unwrap_or_default();
}

pub async fn status(
    loaded: &config::Loaded,
    env: Option<&str>,
    args: &EnvTargetArgs,
    printer: &Printer,
) -> Result<(), Error> {
    let ctx = EnvContext::new(loaded, env, &args.targets, "status").await?;
    let mut holder = ctx.store.read_lock().await.map_err(DeployError::from)?;
    let records = ctx.store.list().await.map_err(DeployError::from)?;
    let unfinished = ctx.targets.iter().any(|(n, _)| state::target_history(&records, n.as_str()).running.is_some());
    if unfinished && holder.as_ref().is_none_or(state::Holder::is_stale) {
        // Its process is gone: finish or roll it back now, under the lock.
        let lock = ctx.store.lock("recover", &deploy::user(), state::DEFAULT_LEASE, std::time::Duration::ZERO).await;
        if let Ok(lock) = lock {
            let result = deploy::recover(&ctx, printer).await;
            let _ = lock.release().await;
            result?;
            holder = None;
        }
    }
    let records = ctx.store.list().await.map_err(DeployError::from)?;
    let mut doc = serde_json::json!({
        "environment": ctx.name.as_str(),
        "ledger": ctx.store.location(),
        "lock": holder,
        "targets": [],
    });
    let mut text = format!("Environment `{}` (ledger: {})\n", ctx.name, ctx.store.location());
    match &holder {
        Some(h) => {
            let _ =
                writeln!(text, "  lock: held by {h}{}", if h.is_stale() { " (stale: its lease ran out)" } else { "" });
        }
        None => text.push_str("  lock: free\n"),
    }
    for &(name, cfg) in &ctx.targets {
        let history = state::target_history(&records, name.as_str());
        let observed = match ctx.build_target(name, cfg) {
            Ok(mut t) => t.observe().await.map(|l| describe_live(&l)).unwrap_or_else(|e| format!("cannot tell: {e}")),
            Err(e) => format!("cannot tell: {e}"),
        };
        let _ = writeln!(text, "\ntarget `{name}` ({})", cfg.kind.key());
        match history.live {
            Some(d) => {
                let _ = writeln!(
                    text,
                    "  live: {} (deployed {} by {}, {})",
                    d.release.version, d.started_at, d.started_by, d.id
                );
            }
            None => text.push_str("  live: nothing deployed yet\n"),
        }
        let _ = writeln!(text, "  running: {observed}");
        if let Some(r) = history.running {
            let phase = r.current_phase().map_or("starting", |p| p.name.as_str());
            let _ =
                writeln!(text, "  in flight: {} of {} by {}, phase `{phase}`", r.id, r.release.version, r.started_by);
        }
        if let Some(last) = records.iter().rev().find(|d| d.target == name.as_str())
            && Some(last) != history.live
            && Some(last) != history.running
        {
            let _ = writeln!(
                text,
                "  last attempt: {} {} {}{}",
                last.release.version,
                last.state.as_str(),
                last.started_at,
                last.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
            );
        }
        doc["targets"].as_array_mut().expect("array").push(serde_json::json!({
            "name": name.as_str(),
            "live": history.live.map(|d| &d.release),
            "live_deployment": history.live.map(|d| &d.id),
            "running": observed,
            "in_flight": history.running.map(|d| &d.id),
        }));
    }
    if printer.format == OutputFormat::Json {
        printer.json(&doc);
    } else {
        printer.text(&text);
    }
    Ok(())
}

pub async fn history(
    loaded: &config::Loaded,
    env: Option<&str>,
    args: &HistoryArgs,
    printer: &Printer,
) -> Result<(), Error> {
    let ctx = EnvContext::new(loaded, env, &[], "history").await?;
    let records = ctx.store.list().await.map_err(DeployError::from)?;
    let newest: Vec<&Deployment> = records.iter().rev().take(args.limit).collect();
    if printer.format == OutputFormat::Json {
        printer.json(&serde_json::to_value(&newest).expect("records serialize"));
        return Ok(());
    }
    if newest.is_empty() {
        printer.text(&format!("no deployments of `{}` yet\n", ctx.name));
        return Ok(());
    }
    let mut text = format!(
        "{:<19}  {:<10} {:<20} {:<9} {:<15} {:>8}  {}\n",
        "started", "target", "version", "kind", "result", "took", "by"
    );
    for d in newest {
        let took = d.phases.iter().filter_map(|p| p.elapsed_ms).sum::<u64>();
        let kind = match d.kind {
            state::record::Kind::Deploy => "deploy",
            state::record::Kind::Rollback => "rollback",
        };
        let _ = writeln!(
            text,
            "{:<19}  {:<10} {:<20} {:<9} {:<15} {:>7.1}s  {}",
            d.started_at.get(..19).unwrap_or(&d.started_at).replace('T', " "),
            d.target,
            d.release.version.to_string(),
            kind,
            d.state.as_str(),
            took as f64 / 1000.0,
            d.started_by
        );
        if let Some(reason) = &d.reason {
            let _ = writeln!(text, "{:<21}{reason}", "");
        }
    }
    printer.text(&text);
    Ok(())
}
