//! Runs one command: turns parsed arguments into a domain request, calls the
//! domain module, and hands its events and result to a reporter. Also owns the
//! process-wide concerns: the async runtime, logging, and Ctrl-C.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::CommandFactory;

use crate::cli::{Cli, Command};
#[cfg(feature = "cloud")]
use crate::cli::{ImageCommand, PipelineCommand};
use crate::report::{Printer, Verbosity};
use crate::rollout::Cancel;
use crate::{Error, config, exit};

pub mod deploy;
#[cfg(feature = "cloud")]
mod image;
mod init;
mod package;
#[cfg(feature = "cloud")]
mod pipeline;
#[cfg(feature = "cloud")]
mod publish;
#[cfg(feature = "cloud")]
mod release;
mod releases;
mod status;

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
    let (interrupt_tx, interrupt_rx) = tokio::sync::watch::channel(false);
    runtime.spawn(watch_interrupts(Arc::clone(&cancel), interrupt_tx));
    let result = runtime.block_on(run(cli, &printer, cancel, Cancel::new(interrupt_rx)));
    // Blocking work checks `cancel` and finishes on its own; do not wait on stragglers.
    runtime.shutdown_background();
    let code = match result {
        Ok(()) => exit::OK,
        Err(error) => {
            printer.error(&error);
            error.exit_code()
        }
    };
    // In GitHub Actions, every command's `result` output: `ok`, or what its exit code means.
    printer.output("result", exit::result_name(code));
    code
}

/// First Ctrl-C: ask the running command to stop cleanly. Second: leave at once.
async fn watch_interrupts(cancel: Arc<AtomicBool>, interrupt: tokio::sync::watch::Sender<bool>) {
    if tokio::signal::ctrl_c().await.is_err() {
        return;
    }
    cancel.store(true, Ordering::SeqCst);
    interrupt.send_replace(true);
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

async fn run(cli: Cli, printer: &Printer, cancel: Arc<AtomicBool>, interrupt: Cancel) -> Result<(), Error> {
    let global = &cli.global;
    match cli.command {
        #[cfg(feature = "cloud")]
        Command::Init(args) if args.pipeline => {
            let loaded = load_config(global.config.as_ref())?;
            init::pipeline(&loaded, global.env.as_deref(), &args, printer)
        }
        #[cfg(not(feature = "cloud"))]
        Command::Init(args) if args.pipeline => Err(Error::NotAvailable { command: "init --pipeline" }),
        Command::Init(args) if args.github => init::github(&args, printer),
        Command::Init(args) => init::init(&args, printer),
        Command::Package(args) => {
            let loaded = load_config(global.config.as_ref())?;
            let printer = printer.clone();
            tokio::task::spawn_blocking(move || package::package(&loaded, &args, &printer, &cancel)).await.map_err(
                |e| Error::Io { context: "packaging stopped unexpectedly".into(), source: std::io::Error::other(e) },
            )?
        }
        Command::Completions(args) => {
            clap_complete::generate(args.shell, &mut Cli::command(), "gantry", &mut std::io::stdout());
            Ok(())
        }
        Command::Plan(args) => {
            let loaded = load_config(global.config.as_ref())?;
            status::plan(&loaded, global.env.as_deref(), &args, printer).await
        }
        #[cfg(feature = "cloud")]
        Command::Publish(args) => {
            let loaded = load_config(global.config.as_ref())?;
            publish::publish(&loaded, global.env.as_deref(), &args, printer, &cancel).await
        }
        #[cfg(feature = "cloud")]
        Command::Image(ImageCommand::Push(args)) => {
            let loaded = load_config(global.config.as_ref())?;
            image::push(&loaded, global.env.as_deref(), &args, printer, &cancel).await
        }
        #[cfg(feature = "cloud")]
        Command::Pipeline(PipelineCommand::Start(args)) => {
            let loaded = load_config(global.config.as_ref())?;
            pipeline::start(&loaded, global.env.as_deref(), &args, printer).await
        }
        #[cfg(feature = "cloud")]
        Command::Pipeline(PipelineCommand::Watch(args)) => {
            let loaded = load_config(global.config.as_ref())?;
            pipeline::watch(&loaded, global.env.as_deref(), &args, printer, interrupt).await
        }
        #[cfg(feature = "cloud")]
        Command::Pipeline(PipelineCommand::Status) => {
            let loaded = load_config(global.config.as_ref())?;
            pipeline::status(&loaded, global.env.as_deref(), printer).await
        }
        #[cfg(feature = "cloud")]
        Command::Approve(args) => {
            let loaded = load_config(global.config.as_ref())?;
            pipeline::decide(&loaded, global.env.as_deref(), &args, true, printer).await
        }
        #[cfg(feature = "cloud")]
        Command::Reject(args) => {
            let loaded = load_config(global.config.as_ref())?;
            pipeline::decide(&loaded, global.env.as_deref(), &args, false, printer).await
        }
        Command::Deploy(args) => {
            let loaded = load_config(global.config.as_ref())?;
            deploy::deploy(&loaded, global.env.as_deref(), &args, printer, interrupt).await
        }
        Command::Rollback(args) => {
            let loaded = load_config(global.config.as_ref())?;
            deploy::rollback(&loaded, global.env.as_deref(), &args, printer, interrupt).await
        }
        #[cfg(feature = "cloud")]
        Command::Release(args) => {
            let loaded = load_config(global.config.as_ref())?;
            release::release(&loaded, global.env.as_deref(), &args, printer, cancel).await
        }
        #[cfg(not(feature = "cloud"))]
        Command::Publish(_) => Err(Error::NotAvailable { command: "publish" }),
        #[cfg(not(feature = "cloud"))]
        Command::Image(_) => Err(Error::NotAvailable { command: "image push" }),
        #[cfg(not(feature = "cloud"))]
        Command::Pipeline(_) => Err(Error::NotAvailable { command: "pipeline" }),
        #[cfg(not(feature = "cloud"))]
        Command::Approve(_) | Command::Reject(_) => Err(Error::NotAvailable { command: "approve/reject" }),
        #[cfg(not(feature = "cloud"))]
        Command::Release(_) => Err(Error::NotAvailable { command: "release" }),
        Command::Status(args) => {
            let loaded = load_config(global.config.as_ref())?;
            status::status(&loaded, global.env.as_deref(), &args, printer).await
        }
        Command::History(args) => {
            let loaded = load_config(global.config.as_ref())?;
            status::history(&loaded, global.env.as_deref(), &args, printer).await
        }
    }
}

/// The environment named by `--env`, with a hint naming the ones gantry.toml has.
pub(crate) fn environment<'c>(
    loaded: &'c config::Loaded,
    name: Option<&str>,
    command: &str,
) -> Result<(&'c config::Name, &'c config::Environment), Error> {
    let envs = &loaded.config.environments;
    let known = || envs.keys().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
    let Some(name) = name else {
        return Err(Error::Usage {
            message: format!("`gantry {command}` needs an environment: pass --env NAME (or set GANTRY_ENV)"),
            hint: Some(if envs.is_empty() {
                "add an [environments.NAME] table to gantry.toml".into()
            } else {
                format!("environments in gantry.toml: {}", known())
            }),
        });
    };
    envs.iter().find(|(n, _)| n.as_str() == name).ok_or_else(|| Error::Usage {
        message: format!("no environment named `{name}` in {}", loaded.path.display()),
        hint: Some(match config::did_you_mean(name, envs.keys().map(config::Name::as_str)) {
            Some(close) => format!("did you mean `{close}`?"),
            None => format!("environments in gantry.toml: {}", known()),
        }),
    })
}

pub(crate) fn load_config(explicit: Option<&PathBuf>) -> Result<config::Loaded, Error> {
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
