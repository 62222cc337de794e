//! Runs one command: turns parsed arguments into a domain request, calls the
//! domain module, and hands its events and result to a reporter. Also owns the
//! process-wide concerns: the async runtime, logging, and Ctrl-C.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::CommandFactory;

use crate::cli::{Cli, Command, ImageCommand, InitArgs, OutputFormat, PackageArgs, PipelineCommand};
use crate::report::{PackageReporter, Printer, Verbosity};
use crate::{Error, config, exit, package};

/// Runs the command and returns the process exit code.
pub fn main(cli: Cli) -> u8 {
    let printer = Printer::from_args(&cli.global);
    init_logging(&cli, &printer);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit::FAILED;
        }
    };
    let cancel = Arc::new(AtomicBool::new(false));
    runtime.spawn(watch_interrupts(Arc::clone(&cancel)));
    let result = runtime.block_on(run(cli, &printer, cancel));
    // Blocking work checks `cancel` and finishes on its own; do not wait on stragglers.
    runtime.shutdown_background();
    match result {
        Ok(()) => exit::OK,
        Err(error) => {
            printer.error(&error);
            error.exit_code()
        }
    }
}

/// First Ctrl-C: ask the running command to stop cleanly. Second: leave at once.
async fn watch_interrupts(cancel: Arc<AtomicBool>) {
    if tokio::signal::ctrl_c().await.is_err() {
        return;
    }
    cancel.store(true, Ordering::SeqCst);
    eprintln!("\ninterrupted: stopping cleanly (press Ctrl-C again to quit at once)");
    if tokio::signal::ctrl_c().await.is_ok() {
        std::process::exit(i32::from(exit::INTERRUPTED));
    }
}

fn init_logging(cli: &Cli, printer: &Printer) {
    let default = match (printer.verbosity, cli.global.verbose) {
        (Verbosity::Quiet, _) => "error",
        (_, 0) => "warn",
        (_, 1) => "gantry=debug,info",
        _ => "gantry=trace,debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("GANTRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(printer.color)
        .without_time()
        .with_target(false)
        .try_init();
}

async fn run(cli: Cli, printer: &Printer, cancel: Arc<AtomicBool>) -> Result<(), Error> {
    let global = &cli.global;
    match cli.command {
        Command::Init(args) => init(&args, printer),
        Command::Package(args) => {
            let loaded = load_config(global.config.as_ref())?;
            let printer = printer.clone();
            tokio::task::spawn_blocking(move || package(&loaded, &args, &printer, &cancel)).await.map_err(|e| {
                Error::Io { context: "packaging stopped unexpectedly".into(), source: std::io::Error::other(e) }
            })?
        }
        Command::Completions(args) => {
            clap_complete::generate(args.shell, &mut Cli::command(), "gantry", &mut std::io::stdout());
            Ok(())
        }
        Command::Plan(_) => not_available("plan"),
        Command::Publish(_) => not_available("publish"),
        Command::Image(ImageCommand::Push(_)) => not_available("image push"),
        Command::Pipeline(PipelineCommand::Start(_)) => not_available("pipeline start"),
        Command::Pipeline(PipelineCommand::Watch(_)) => not_available("pipeline watch"),
        Command::Pipeline(PipelineCommand::Status) => not_available("pipeline status"),
        Command::Approve(_) => not_available("approve"),
        Command::Reject(_) => not_available("reject"),
        Command::Deploy(_) => not_available("deploy"),
        Command::Rollback(_) => not_available("rollback"),
        Command::Release(_) => not_available("release"),
        Command::Status(_) => not_available("status"),
        Command::History(_) => not_available("history"),
    }
}

fn not_available(command: &'static str) -> Result<(), Error> {
    Err(Error::NotAvailable { command })
}

fn load_config(explicit: Option<&PathBuf>) -> Result<config::Loaded, Error> {
    let path = match explicit {
        Some(path) => path.clone(),
        None => {
            let cwd = std::env::current_dir()
                .map_err(|source| Error::Io { context: "cannot read the current folder".into(), source })?;
            config::discover(&cwd)?
        }
    };
    Ok(config::load(&path)?)
}

fn init(args: &InitArgs, printer: &Printer) -> Result<(), Error> {
    let cwd = std::env::current_dir()
        .map_err(|source| Error::Io { context: "cannot read the current folder".into(), source })?;
    let path = cwd.join(config::FILE_NAME);
    if path.exists() && !args.force {
        return Err(Error::Usage {
            message: format!("{} already exists", path.display()),
            hint: Some("pass --force to overwrite it".into()),
        });
    }
    let name = match &args.name {
        Some(n) => n.clone(),
        None => config::project_name_from_dir(&cwd),
    };
    let name: config::Name = name.parse().map_err(|message: String| Error::Usage {
        message,
        hint: Some("pass --name with a valid project name".into()),
    })?;
    std::fs::write(&path, config::starter(&name))
        .map_err(|source| Error::Io { context: format!("cannot write {}", path.display()), source })?;
    printer.status("Created", path.display());
    printer.json(&serde_json::json!({ "created": path }));
    Ok(())
}

fn package(loaded: &config::Loaded, args: &PackageArgs, printer: &Printer, cancel: &AtomicBool) -> Result<(), Error> {
    let cfg = &loaded.config;
    let artifacts = select_artifacts(cfg, &args.artifacts)?;
    let out_dir = match &args.out {
        Some(out) => out.clone(),
        None => loaded.dir.join(cfg.project.dist.as_ref().map_or("dist", |d| d.as_str())),
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
