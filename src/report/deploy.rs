//! Prints deployment events: a live status line on a terminal (phase, weight, health
//! streak, elapsed against the deadline), one plain line per phase and per failed check in
//! CI logs, and one JSON object per event (JSON lines) on stdout with `--output json`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::Printer;
use super::github::DeploySummary;
use crate::cli::OutputFormat;
use crate::rollout::Event;

pub struct DeployReporter<'p> {
    printer: &'p Printer,
    bar: ProgressBar,
    state: Mutex<Live>,
    /// In GitHub Actions: what happened, for the step summary and outputs written on drop.
    summary: Option<Mutex<DeploySummary>>,
}

#[derive(Default)]
struct Live {
    steps: usize,
    phase: String,
    detail: String,
    deadline: Duration,
    started: Option<Instant>,
    weight: u8,
    health: String,
}

impl<'p> DeployReporter<'p> {
    pub fn new(printer: &'p Printer) -> Self {
        let bar = if printer.progress() { ProgressBar::new_spinner() } else { ProgressBar::hidden() };
        bar.set_style(ProgressStyle::with_template("{spinner:.cyan} {msg}").expect("valid template"));
        bar.enable_steady_tick(Duration::from_millis(120));
        let summary = printer.actions.as_ref().map(|_| Mutex::new(DeploySummary::default()));
        Self { printer, bar, state: Mutex::new(Live::default()), summary }
    }

    pub fn event(&self, event: &Event) {
        if let Some(summary) = &self.summary {
            summary.lock().expect("summary state").record(event);
            match event {
                Event::Started { environment, target, version, .. } => {
                    self.bar.suspend(|| self.printer.group(&format!("Deploy {version} to {environment}/{target}")));
                }
                Event::Finished { .. } => self.bar.suspend(|| self.printer.endgroup()),
                _ => {}
            }
        }
        if self.printer.format == OutputFormat::Json {
            let mut line = serde_json::to_value(event).expect("events serialize");
            line["time"] = serde_json::json!(crate::state::record::now());
            self.printer.json_line(&line);
            return;
        }
        let mut live = self.state.lock().expect("reporter state");
        match event {
            Event::Started { environment, target, version, previous, strategy, steps, .. } => {
                live.steps = *steps;
                live.weight = 0;
                let from = previous.as_deref().map_or_else(|| "nothing live".to_owned(), |p| format!("from {p}"));
                self.line("Deploying", format!("{version} to {environment}/{target} ({strategy}, {from})"));
            }
            Event::PhaseStarted { target, index, phase, detail, deadline_ms } => {
                live.phase = format!("{target} {}/{} {phase}", index + 1, live.steps.max(index + 1));
                live.detail.clone_from(detail);
                live.deadline = Duration::from_millis(*deadline_ms);
                live.started = Some(Instant::now());
                live.health.clear();
                if !self.printer.progress() {
                    self.line("Phase", format!("{}: {detail}", live.phase));
                }
            }
            Event::Health { ok, detail, streak, needed, url, .. } => {
                let mark = if *ok { "healthy" } else { "failing" };
                live.health = if *streak <= *needed {
                    format!("{mark} {streak}/{needed}")
                } else {
                    format!("{mark}, {streak} in a row")
                };
                if !*ok && !self.printer.progress() {
                    self.printer.warn(format!("{url}: {detail} ({streak}/{needed} failures)"));
                } else if !*ok {
                    self.bar.suspend(|| self.printer.warn(format!("{url}: {detail} ({streak}/{needed} failures)")));
                }
            }
            Event::Traffic { new_weight, .. } => live.weight = *new_weight,
            Event::Progress { target, message } => {
                let line = format!("{target}: {message}");
                if self.printer.progress() {
                    self.bar.suspend(|| self.line("Platform", line));
                } else {
                    self.line("Platform", line);
                }
            }
            Event::PhaseFinished { phase, ok, elapsed_ms, note, target, .. } => {
                let verb = if *ok { "Done" } else { "Failed" };
                let note = note.as_deref().map(|n| format!(": {n}")).unwrap_or_default();
                self.line(verb, format!("{target} {phase} in {}{note}", secs(*elapsed_ms)));
                live.started = None;
            }
            Event::RollbackStarted { target, reason } => self.line("Rolling back", format!("{target}: {reason}")),
            Event::RollbackFinished { target, ok, restored, detail } => {
                let what = restored.as_deref().unwrap_or("nothing");
                if *ok {
                    self.line("Rolled back", format!("{target}: {what} is live ({detail})"));
                } else {
                    self.line("Failed", format!("{target}: rollback failed: {detail}"));
                }
            }
            Event::Recovering { target, deployment, phase, action } => {
                let at = phase.as_deref().map(|p| format!(" at phase `{p}`")).unwrap_or_default();
                self.line("Recovering", format!("{target}: deployment {deployment} was left unfinished{at}: {action}"));
            }
            Event::WaveStarted { wave, waves, region, targets } => {
                let region = region.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
                self.line("Wave", format!("{wave} of {waves}{region}: {}", targets.join(", ")));
            }
            Event::WaveFinished { wave, waves, ok, elapsed_ms, detail, .. } => {
                if *ok {
                    self.line("Wave done", format!("{wave} of {waves} in {}", secs(*elapsed_ms)));
                } else {
                    let why = detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default();
                    self.line("Wave failed", format!("{wave} of {waves} after {}{why}", secs(*elapsed_ms)));
                }
            }
            Event::WaveBakeStarted { wave, waves, targets, duration_ms } => {
                live.phase = format!("bake after wave {wave}/{waves}");
                live.detail = format!("watching {}", targets.join(", "));
                live.deadline = Duration::from_millis(*duration_ms);
                live.started = Some(Instant::now());
                live.health.clear();
                self.line(
                    "Baking",
                    format!("after wave {wave} of {waves}: watching {} for {}", targets.join(", "), secs(*duration_ms)),
                );
            }
            Event::WaveBakeFinished { wave, ok, elapsed_ms, detail } => {
                live.started = None;
                if *ok {
                    self.line(
                        "Baked",
                        format!("after wave {wave} in {}: every finished target healthy", secs(*elapsed_ms)),
                    );
                } else {
                    let why = detail.as_deref().unwrap_or("failed");
                    self.line("Failed", format!("bake after wave {wave} after {}: {why}", secs(*elapsed_ms)));
                }
            }
            Event::WavesRollingBack { failed_wave, reason, targets } => {
                let who = if targets.is_empty() { "nothing to roll back".to_owned() } else { targets.join(", ") };
                self.line("Rolling back", format!("finished waves, since wave {failed_wave} failed ({reason}): {who}"));
            }
            Event::Finished { target, result, elapsed_ms, health_ms, .. } => {
                self.line(
                    "Finished",
                    format!(
                        "{target}: {result} in {} ({} in health gates and bakes)",
                        secs(*elapsed_ms),
                        secs(*health_ms)
                    ),
                );
            }
        }
        if let Some(started) = live.started {
            let weight = if live.weight > 0 { format!(" · new takes {}%", live.weight) } else { String::new() };
            let health = if live.health.is_empty() { String::new() } else { format!(" · {}", live.health) };
            self.bar.set_message(format!(
                "{}: {}{weight}{health} · {:.0}s / {}",
                live.phase,
                live.detail,
                started.elapsed().as_secs_f64(),
                humantime::format_duration(live.deadline)
            ));
        } else {
            self.bar.set_message(String::new());
        }
    }

    /// A target already runs exactly this release.
    pub fn unchanged(&self, target: &str, version: &str) {
        if self.printer.format == OutputFormat::Json {
            self.printer.json_line(&serde_json::json!({"event": "unchanged", "target": target, "version": version}));
        } else {
            self.line("Unchanged", format!("{target} already runs {version}"));
        }
    }

    pub fn done(&self, environment: &str, version: &str) {
        self.bar.finish_and_clear();
        if self.printer.format == OutputFormat::Json {
            self.printer
                .json_line(&serde_json::json!({"event": "done", "environment": environment, "version": version}));
        } else {
            self.printer.status("Live", format!("{version} on every target of {environment}"));
        }
    }

    fn line(&self, verb: &str, message: String) {
        self.bar.suspend(|| self.printer.status(verb, message));
    }
}

impl Drop for DeployReporter<'_> {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
        // The step summary and outputs, once, whether the deploy succeeded or not.
        if let Some(summary) = self.summary.take() {
            let summary = summary.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
            if !summary.is_empty() {
                self.printer.summary(&summary.markdown());
                self.printer.output("deployment-id", &summary.deployments().join("\n"));
                self.printer.output("version", summary.version());
            }
        }
    }
}

fn secs(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}
