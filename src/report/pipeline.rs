//! Prints pipeline events (`gantry pipeline watch`): one line per action that starts or
//! ends, with its duration, the error summary and the external link (the CodeBuild log) on
//! a failure, the exact approve command while an approval waits, and the time split at the
//! end. With `--output json`, one JSON object per event on stdout.

use std::time::Duration;

use super::Printer;
use crate::cli::OutputFormat;
use crate::pipeline::{Event, Status};

pub struct PipelineReporter<'p> {
    printer: &'p Printer,
    /// In GitHub Actions: one Markdown table row per finished action, for the step summary.
    rows: std::sync::Mutex<Vec<String>>,
}

impl<'p> PipelineReporter<'p> {
    pub fn new(printer: &'p Printer) -> Self {
        Self { printer, rows: std::sync::Mutex::new(Vec::new()) }
    }

    pub fn event(&self, event: &Event) {
        if self.printer.actions.is_some() {
            self.github(event);
        }
        if self.printer.format == OutputFormat::Json {
            self.printer.json_line(&json(event));
            return;
        }
        let p = self.printer;
        match event {
            Event::Watching { pipeline, execution } => {
                p.status("Watching", format!("{pipeline} execution {execution}"))
            }
            Event::ActionStarted { run } => p.status("Started", format!("{}/{}", run.stage, run.action)),
            Event::ApprovalWaiting { run, command } => {
                p.status(
                    "Waiting",
                    format!("for a manual approval at {}/{}; to approve: {command}", run.stage, run.action),
                );
            }
            Event::ActionFinished { run, seconds } => {
                let name = format!("{}/{}", run.stage, run.action);
                let took = seconds_text(*seconds);
                match (run.status.as_str(), run.is_approval()) {
                    ("Succeeded", true) => p.status(
                        "Approved",
                        format!(
                            "{name} after {took} waiting{}",
                            run.updated_by.as_deref().map(|b| format!(" ({b})")).unwrap_or_default()
                        ),
                    ),
                    ("Succeeded", false) => p.status("Succeeded", format!("{name} in {took}")),
                    ("Failed", _) => {
                        p.status(
                            "Failed",
                            format!("{name} after {took}: {}", run.error.as_deref().unwrap_or("no error summary")),
                        );
                        if let Some(link) = &run.link {
                            p.status("Log", link);
                        }
                    }
                    (other, _) => p.status(other, format!("{name} after {took}")),
                }
            }
            Event::Retrying { error, wait } => {
                p.warn(format!(
                    "cannot read the pipeline ({error}); trying again in {}",
                    seconds_text(wait.as_secs_f64())
                ));
            }
            Event::Finished { execution, summary } => p.status(
                "Finished",
                format!(
                    "execution {} {} after {} ({} active, {} waiting for approval)",
                    execution.id,
                    execution.status,
                    seconds_text(summary.total_seconds),
                    seconds_text(summary.active_seconds),
                    seconds_text(summary.approval_wait_seconds),
                ),
            ),
        }
    }

    /// GitHub Actions: the execution id output, and at the end a step summary of every action
    /// with its status and duration, and where the time went.
    fn github(&self, event: &Event) {
        let mut rows = self.rows.lock().expect("rows");
        match event {
            Event::Watching { execution, .. } => self.printer.output("pipeline-execution-id", execution),
            Event::ActionFinished { run, seconds } => {
                let cell = |s: &str| s.replace('|', "\\|").replace(['\r', '\n'], " ");
                let detail = run.error.as_deref().or(run.updated_by.as_deref()).map(cell).unwrap_or_default();
                let link = run.link.as_deref().map(|l| format!(" [log]({l})")).unwrap_or_default();
                rows.push(format!(
                    "| {} | {} | {} | {} | {detail}{link} |",
                    cell(&run.stage),
                    cell(&run.action),
                    cell(&run.status),
                    seconds_text(*seconds)
                ));
            }
            Event::Finished { execution, summary } => {
                let mut md = format!(
                    "## gantry pipeline: execution `{}` {}\n\n{} in all: {} active, {} waiting for approval\n\n\
                     | stage | action | status | time | detail |\n|---|---|---|---|---|\n",
                    execution.id,
                    execution.status,
                    seconds_text(summary.total_seconds),
                    seconds_text(summary.active_seconds),
                    seconds_text(summary.approval_wait_seconds)
                );
                for row in rows.drain(..) {
                    md.push_str(&row);
                    md.push('\n');
                }
                self.printer.summary(&md);
            }
            Event::ActionStarted { .. } | Event::ApprovalWaiting { .. } | Event::Retrying { .. } => {}
        }
    }

    /// `gantry pipeline status`: JSON on stdout, or two tables.
    pub fn status(&self, status: &Status) {
        if self.printer.format == OutputFormat::Json {
            self.printer.json(&serde_json::to_value(status).unwrap_or_default());
            return;
        }
        let mut out =
            format!("pipeline {}\n\nEXECUTION                             STATUS      STARTED\n", status.pipeline);
        for e in &status.executions {
            let started = e
                .started
                .and_then(|s| jiff::Timestamp::from_second(s as i64).ok())
                .map(|t| t.to_string())
                .unwrap_or_default();
            out.push_str(&format!("{:<37} {:<11} {started}\n", e.id, e.status));
        }
        if status.executions.is_empty() {
            out.push_str("(no executions yet)\n");
        }
        out.push_str("\nSTAGE            STATUS      EXECUTION                             ACTIONS\n");
        for s in &status.stages {
            let actions: Vec<String> =
                s.actions.iter().map(|a| format!("{}: {}", a.action, a.status.as_deref().unwrap_or("-"))).collect();
            out.push_str(&format!(
                "{:<16} {:<11} {:<37} {}\n",
                s.stage,
                s.status.as_deref().unwrap_or("-"),
                s.execution.as_deref().unwrap_or("-"),
                actions.join(", ")
            ));
        }
        self.printer.text(&out);
    }
}

fn json(event: &Event) -> serde_json::Value {
    match event {
        Event::Watching { pipeline, execution } => {
            serde_json::json!({"event": "watching", "pipeline": pipeline, "execution": execution})
        }
        Event::ActionStarted { run } => serde_json::json!({"event": "action_started", "run": run}),
        Event::ApprovalWaiting { run, command } => {
            serde_json::json!({"event": "approval_waiting", "run": run, "approve_command": command})
        }
        Event::ActionFinished { run, seconds } => {
            serde_json::json!({"event": "action_finished", "run": run, "seconds": seconds})
        }
        Event::Retrying { error, wait } => {
            serde_json::json!({"event": "retrying", "error": error, "wait_seconds": wait.as_secs_f64()})
        }
        Event::Finished { execution, summary } => {
            serde_json::json!({"event": "finished", "execution": execution, "timing": summary})
        }
    }
}

/// `0.4s`, `12.0s`, `3m 5s`.
fn seconds_text(seconds: f64) -> String {
    if seconds < 60.0 {
        format!("{seconds:.1}s")
    } else {
        humantime::format_duration(Duration::from_secs(seconds.round() as u64)).to_string()
    }
}
