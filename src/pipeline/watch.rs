//! Following one execution until it ends. Each poll reads the execution, then its action
//! runs (ListActionExecutions), and reports what changed since the last poll. What was
//! reported is remembered by action execution id and status, so a poll that fails (a
//! dropped connection, throttling) is simply tried again later and nothing is reported
//! twice. The deadline is the caller's (`tokio::time::timeout`); Ctrl-C is the `stop` future.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{ActionRun, ExecutionInfo, Pipeline, PipelineError};

/// How often to poll. CodePipeline's read APIs allow a few calls a second per account;
/// gantry makes two calls per poll and backs off while nothing changes.
#[derive(Debug, Clone, Copy)]
pub struct WatchSettings {
    pub poll: Duration,
    pub max_poll: Duration,
}

impl WatchSettings {
    /// 2 s growing to 20 s while nothing changes; `GANTRY_PIPELINE_POLL` (e.g. `20ms`) sets
    /// the first interval, for tests.
    pub fn from_env() -> Self {
        let poll = std::env::var("GANTRY_PIPELINE_POLL")
            .ok()
            .and_then(|v| humantime::parse_duration(&v).ok())
            .unwrap_or(Duration::from_secs(2));
        Self { poll, max_poll: (poll * 10).max(poll) }
    }
}

/// What the watch saw happen.
#[derive(Debug, Clone)]
pub enum Event {
    Watching {
        pipeline: String,
        execution: String,
    },
    ActionStarted {
        run: ActionRun,
    },
    /// A Manual approval is waiting; `command` is the exact command that approves it.
    ApprovalWaiting {
        run: ActionRun,
        command: String,
    },
    ActionFinished {
        run: ActionRun,
        seconds: f64,
    },
    /// A poll failed in a way worth retrying.
    Retrying {
        error: String,
        wait: Duration,
    },
    Finished {
        execution: ExecutionInfo,
        summary: Timing,
    },
}

/// Time split: waiting for approval, apart from the rest.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Timing {
    pub total_seconds: f64,
    pub approval_wait_seconds: f64,
    pub active_seconds: f64,
}

/// Follows `execution` until it ends. `Ok` only when it succeeded; `approve_command` is what
/// `ApprovalWaiting` tells the user to run. Returns `Interrupted` when `stop` completes.
pub async fn watch(
    pipeline: &Pipeline,
    execution: &str,
    settings: WatchSettings,
    approve_command: &str,
    stop: impl Future<Output = ()>,
    mut emit: impl FnMut(Event),
) -> Result<ExecutionInfo, PipelineError> {
    let mut stop = std::pin::pin!(stop);
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut delay = settings.poll;
    emit(Event::Watching { pipeline: pipeline.name.clone(), execution: execution.to_owned() });
    loop {
        match poll(pipeline, execution).await {
            Ok((info, runs)) => {
                let changed = report(&runs, &mut seen, approve_command, &mut emit);
                if !matches!(info.status.as_str(), "InProgress" | "Stopping") {
                    let summary = timing(&runs);
                    emit(Event::Finished { execution: info.clone(), summary });
                    return outcome(pipeline, info, &runs);
                }
                delay = if changed { settings.poll } else { (delay * 2).min(settings.max_poll) };
            }
            Err(e) if e.is_transient() => {
                delay = (delay * 2).min(settings.max_poll);
                emit(Event::Retrying { error: error_chain(&e), wait: delay });
            }
            Err(e) => return Err(e),
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = &mut stop => return Err(PipelineError::Interrupted { execution: execution.to_owned() }),
        }
    }
}

async fn poll(pipeline: &Pipeline, execution: &str) -> Result<(ExecutionInfo, Vec<ActionRun>), PipelineError> {
    // The execution first: when it has ended, the runs read after it are final too.
    let info = pipeline.execution(execution).await?;
    let runs = pipeline.action_runs(execution).await?;
    Ok((info, runs))
}

/// Emits what is new since the last poll; returns whether anything was.
fn report(runs: &[ActionRun], seen: &mut HashMap<String, String>, approve: &str, emit: &mut impl FnMut(Event)) -> bool {
    let mut changed = false;
    for run in runs {
        let before = seen.insert(run.id.clone(), run.status.clone());
        if before.as_deref() == Some(run.status.as_str()) {
            continue;
        }
        changed = true;
        if run.status == "InProgress" {
            emit(Event::ActionStarted { run: run.clone() });
            if run.is_approval() {
                emit(Event::ApprovalWaiting { run: run.clone(), command: approve.to_owned() });
            }
        } else {
            emit(Event::ActionFinished { run: run.clone(), seconds: run.seconds(now()) });
        }
    }
    changed
}

fn timing(runs: &[ActionRun]) -> Timing {
    let start = runs.iter().map(|r| r.started).fold(f64::INFINITY, f64::min);
    let end = runs.iter().map(|r| r.updated).fold(0.0, f64::max);
    let total = if runs.is_empty() { 0.0 } else { (end - start).max(0.0) };
    let approval: f64 = runs.iter().filter(|r| r.is_approval()).map(|r| r.seconds(end)).sum();
    Timing { total_seconds: total, approval_wait_seconds: approval, active_seconds: (total - approval).max(0.0) }
}

fn outcome(pipeline: &Pipeline, info: ExecutionInfo, runs: &[ActionRun]) -> Result<ExecutionInfo, PipelineError> {
    let failed = runs.iter().rev().find(|r| r.status == "Failed");
    let rejected = failed.is_some_and(ActionRun::is_approval);
    let outcome = match info.status.as_str() {
        "Succeeded" => return Ok(info),
        "Superseded" => "was superseded by a newer execution".to_owned(),
        "Stopped" => "was stopped".to_owned(),
        "Cancelled" => "was cancelled".to_owned(),
        "Failed" => match failed {
            Some(run) => format!(
                "failed at {}/{}: {}",
                run.stage,
                run.action,
                run.error.as_deref().or(info.summary.as_deref()).unwrap_or("no error summary")
            ),
            None => format!("failed: {}", info.summary.as_deref().unwrap_or("no error summary")),
        },
        other => format!("ended as {other}"),
    };
    Err(PipelineError::Ended { pipeline: pipeline.name.clone(), execution: info.id, outcome, rejected })
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: &str, category: &str, status: &str, started: f64, updated: f64) -> ActionRun {
        ActionRun {
            id: id.into(),
            execution: "e".into(),
            stage: "S".into(),
            action: id.into(),
            category: category.into(),
            status: status.into(),
            started,
            updated,
            summary: None,
            error: None,
            external_id: None,
            link: None,
            updated_by: None,
        }
    }

    #[test]
    fn approval_wait_is_counted_apart() {
        let runs = [
            run("a", "Source", "Succeeded", 100.0, 101.0),
            run("b", "Approval", "Succeeded", 101.0, 161.0),
            run("c", "Build", "Succeeded", 161.0, 171.0),
        ];
        let t = timing(&runs);
        assert_eq!((t.total_seconds, t.approval_wait_seconds, t.active_seconds), (71.0, 60.0, 11.0));
    }

    #[test]
    fn a_run_is_reported_once_per_status() {
        let mut seen = HashMap::new();
        let mut events = Vec::new();
        let first = [run("a", "Approval", "InProgress", 1.0, 1.0)];
        assert!(report(&first, &mut seen, "gantry approve", &mut |e| events.push(e)));
        assert!(!report(&first, &mut seen, "gantry approve", &mut |e| events.push(e)));
        let second = [run("a", "Approval", "Succeeded", 1.0, 5.0)];
        assert!(report(&second, &mut seen, "gantry approve", &mut |e| events.push(e)));
        let kinds: Vec<_> = events
            .iter()
            .map(|e| match e {
                Event::ActionStarted { .. } => "started",
                Event::ApprovalWaiting { .. } => "waiting",
                Event::ActionFinished { .. } => "finished",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["started", "waiting", "finished"]);
    }
}
