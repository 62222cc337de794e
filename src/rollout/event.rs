//! The typed events a deployment emits while it runs. Reporters (`crate::report`) turn
//! them into terminal progress, CI log lines, JSON lines and the GitHub step summary;
//! the engine itself never prints.

use serde::Serialize;

/// One thing that happened, in the order it happened. Serialized as one JSON line each
/// with `--output json`: `{"event":"phase-started",...}`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// A deployment of one target begins.
    Started {
        deployment: String,
        environment: String,
        target: String,
        version: String,
        /// What was live before, when anything was.
        previous: Option<String>,
        strategy: String,
        steps: usize,
    },
    /// A phase begins; `deadline_ms` is the longest it may take.
    PhaseStarted { target: String, index: usize, phase: String, detail: String, deadline_ms: u64 },
    /// One health check answered.
    Health { target: String, phase: String, url: String, ok: bool, detail: String, streak: u32, needed: u32 },
    /// User traffic moved: `new_weight` percent now goes to the new version.
    Traffic { target: String, new_weight: u8 },
    /// Something the platform reported while a target operation ran (a service event, a
    /// stopped task's reason, a weight set), passed on as the target sent it.
    Progress { target: String, message: String },
    /// A phase ended.
    PhaseFinished { target: String, index: usize, phase: String, ok: bool, elapsed_ms: u64, note: Option<String> },
    /// A failure or an interrupt: the target goes back to what was live.
    RollbackStarted { target: String, reason: String },
    /// The rollback ended; `restored` is what is live now (none when nothing was before).
    RollbackFinished { target: String, ok: bool, restored: Option<String>, detail: String },
    /// An unfinished deployment from an earlier run (a crash, a kill) was found.
    Recovering { target: String, deployment: String, phase: Option<String>, action: String },
    /// Multi-region: a wave of targets begins (only environments with two or more waves
    /// emit wave events). `wave` counts from 1.
    WaveStarted { wave: usize, waves: usize, region: Option<String>, targets: Vec<String> },
    /// The finished waves' targets are watched for `duration_ms` before the next wave.
    WaveBakeStarted { wave: usize, waves: usize, targets: Vec<String>, duration_ms: u64 },
    /// The bake after `wave` ended; `detail` says what failed when it did.
    WaveBakeFinished { wave: usize, ok: bool, elapsed_ms: u64, detail: Option<String> },
    /// A wave ended: every target in it succeeded (`ok`), or one failed or was stopped.
    WaveFinished {
        wave: usize,
        waves: usize,
        region: Option<String>,
        ok: bool,
        elapsed_ms: u64,
        detail: Option<String>,
    },
    /// A wave (or its bake) failed: the finished waves' targets are rolled back, last first.
    WavesRollingBack { failed_wave: usize, reason: String, targets: Vec<String> },
    /// The deployment of one target ended.
    Finished {
        deployment: String,
        target: String,
        result: String,
        elapsed_ms: u64,
        /// Time spent in health gates and bakes: the windows the user configured.
        health_ms: u64,
    },
}
