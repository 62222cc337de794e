//! GitHub Actions: the sink the reporters write to when `GITHUB_ACTIONS=true`.
//!
//! - `$GITHUB_OUTPUT`: step outputs, always in the heredoc form (`key<<DELIM`, value,
//!   `DELIM`) with a delimiter that does not occur in the value, so multi-line values
//!   and values holding `=` are safe.
//! - `$GITHUB_STEP_SUMMARY`: Markdown appended by each reporter when its command ends
//!   (see `DeploySummary` for the deploy's phases and Mermaid gantt).
//! - Workflow commands on stderr (the runner reads commands from both streams; stdout is
//!   gantry's data stream): `::group::`/`::endgroup::` and `::error file=…,line=…,col=…::`.
//!   Data is escaped (`%`, CR, LF) and so are properties (also `:` and `,`), as the
//!   runner's own toolkit does.
//!
//! Nothing here reads credentials or tokens, and no value written here comes from one.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use sha2::Digest;

use crate::rollout::Event;

/// The Actions files of this step. `None` from `from_env` outside Actions.
#[derive(Debug, Clone)]
pub struct Actions {
    output: Option<PathBuf>,
    summary: Option<PathBuf>,
}

impl Actions {
    /// In Actions (`GITHUB_ACTIONS=true`): the step's output and summary files, when set.
    pub fn from_env() -> Option<Self> {
        if std::env::var("GITHUB_ACTIONS").ok().as_deref() != Some("true") {
            return None;
        }
        let file = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        Some(Self { output: file("GITHUB_OUTPUT"), summary: file("GITHUB_STEP_SUMMARY") })
    }

    /// Sets a step output. Errors writing the file are logged, never fatal: the command's
    /// own result matters more than its echo in the workflow.
    pub fn set_output(&self, key: &str, value: &str) {
        let Some(path) = &self.output else { return };
        append(path, &output_entry(key, value));
    }

    /// Appends Markdown to the step summary.
    pub fn summary(&self, markdown: &str) {
        let Some(path) = &self.summary else { return };
        append(path, markdown);
    }
}

fn append(path: &std::path::Path, text: &str) {
    let result =
        std::fs::OpenOptions::new().create(true).append(true).open(path).and_then(|mut f| f.write_all(text.as_bytes()));
    if let Err(e) = result {
        tracing::warn!(path = %path.display(), error = %e, "cannot write to a GitHub Actions file");
    }
}

/// One `$GITHUB_OUTPUT` entry in the heredoc form, with a delimiter absent from the value.
pub fn output_entry(key: &str, value: &str) -> String {
    let mut seed = sha2::Sha256::new();
    seed.update(key.as_bytes());
    seed.update(std::process::id().to_le_bytes());
    seed.update(format!("{:?}", std::time::SystemTime::now()).as_bytes());
    let mut n = 0u32;
    loop {
        let mut h = seed.clone();
        h.update(n.to_le_bytes());
        let hex: String = h.finalize().iter().take(12).map(|b| format!("{b:02x}")).collect();
        let delimiter = format!("ghadelimiter_{hex}");
        if !value.contains(&delimiter) {
            return format!("{key}<<{delimiter}\n{value}\n{delimiter}\n");
        }
        n += 1;
    }
}

/// Escapes a workflow command's message.
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// Escapes a workflow command's property value (`file=`, `title=`, ...).
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// `::group::TITLE`: the lines after it fold under TITLE in the log.
pub fn group(title: &str) {
    eprintln!("::group::{}", escape_data(title));
}

pub fn endgroup() {
    eprintln!("::endgroup::");
}

/// An `::error` annotation; `props` are `file`, `line`, `col`, `title`, ... in order.
pub fn error_command(props: &[(&str, String)], message: &str) -> String {
    let props: Vec<String> = props.iter().map(|(k, v)| format!("{k}={}", escape_property(v))).collect();
    let sep = if props.is_empty() { "" } else { " " };
    format!("::error{sep}{}::{}", props.join(","), escape_data(message))
}

/// Text for a Markdown table cell: no pipes or line breaks.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\r', '\n'], " ")
}

/// A Mermaid task name: Mermaid reads `:` as the end of the name and `#`/`;` specially.
fn task_name(s: &str) -> String {
    s.replace([':', '#', ';'], " ")
}

/// What one deploy did, collected from its events, for the step summary.
#[derive(Debug, Default)]
pub struct DeploySummary {
    started: Option<Instant>,
    environment: String,
    version: String,
    targets: Vec<TargetRun>,
    /// Multi-region deploys: each wave, in order.
    waves: Vec<WaveRun>,
    /// Which targets went back because a later wave failed, and why.
    waves_rolled_back: Option<String>,
}

#[derive(Debug, Default)]
struct WaveRun {
    number: usize,
    region: Option<String>,
    targets: Vec<String>,
    result: Option<String>,
    elapsed_ms: u64,
    bake: Option<String>,
}

#[derive(Debug, Default)]
struct TargetRun {
    target: String,
    deployment: String,
    previous: Option<String>,
    strategy: String,
    phases: Vec<PhaseRun>,
    rollback: Option<String>,
    result: Option<String>,
    elapsed_ms: u64,
    health_ms: u64,
}

#[derive(Debug)]
struct PhaseRun {
    phase: String,
    detail: String,
    start_ms: u64,
    elapsed_ms: Option<u64>,
    ok: bool,
    note: Option<String>,
}

impl DeploySummary {
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    /// Deployment ids of every target, in order (the `deployment-id` output).
    pub fn deployments(&self) -> Vec<&str> {
        self.targets.iter().map(|t| t.deployment.as_str()).collect()
    }

    pub fn record(&mut self, event: &Event) {
        let now = Instant::now();
        let origin = *self.started.get_or_insert(now);
        let offset = u64::try_from(now.duration_since(origin).as_millis()).unwrap_or(u64::MAX);
        match event {
            Event::Started { deployment, environment, target, version, previous, strategy, .. } => {
                self.environment.clone_from(environment);
                self.version.clone_from(version);
                self.targets.push(TargetRun {
                    target: target.clone(),
                    deployment: deployment.clone(),
                    previous: previous.clone(),
                    strategy: strategy.clone(),
                    ..TargetRun::default()
                });
            }
            Event::PhaseStarted { target, phase, detail, .. } => {
                if let Some(t) = self.target(target) {
                    t.phases.push(PhaseRun {
                        phase: phase.clone(),
                        detail: detail.clone(),
                        start_ms: offset,
                        elapsed_ms: None,
                        ok: false,
                        note: None,
                    });
                }
            }
            Event::PhaseFinished { target, phase, ok, elapsed_ms, note, .. } => {
                if let Some(p) = self.target(target).and_then(|t| t.phases.iter_mut().rev().find(|p| &p.phase == phase))
                {
                    p.elapsed_ms = Some(*elapsed_ms);
                    p.ok = *ok;
                    p.note.clone_from(note);
                }
            }
            Event::RollbackFinished { target, ok, restored, detail } => {
                if let Some(t) = self.target(target) {
                    let what = restored.as_deref().unwrap_or("nothing");
                    t.rollback = Some(if *ok {
                        format!("rolled back: {what} is live ({detail})")
                    } else {
                        format!("rollback failed: {detail}")
                    });
                }
            }
            Event::Finished { target, result, elapsed_ms, health_ms, .. } => {
                if let Some(t) = self.target(target) {
                    t.result = Some(result.clone());
                    t.elapsed_ms = *elapsed_ms;
                    t.health_ms = *health_ms;
                }
            }
            Event::WaveStarted { wave, region, targets, .. } => self.waves.push(WaveRun {
                number: *wave,
                region: region.clone(),
                targets: targets.clone(),
                ..WaveRun::default()
            }),
            Event::WaveFinished { wave, ok, elapsed_ms, detail, .. } => {
                if let Some(w) = self.waves.iter_mut().find(|w| w.number == *wave) {
                    w.result = Some(if *ok {
                        "ok".into()
                    } else {
                        format!("failed{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())
                    });
                    w.elapsed_ms = *elapsed_ms;
                }
            }
            Event::WaveBakeStarted { wave, duration_ms, .. } => {
                if let Some(w) = self.waves.iter_mut().find(|w| w.number == *wave) {
                    w.bake = Some(format!("baking {}", secs(*duration_ms)));
                }
            }
            Event::WaveBakeFinished { wave, ok, elapsed_ms, detail } => {
                if let Some(w) = self.waves.iter_mut().find(|w| w.number == *wave) {
                    w.bake = Some(if *ok {
                        format!("healthy for {}", secs(*elapsed_ms))
                    } else {
                        format!("failed after {}: {}", secs(*elapsed_ms), detail.as_deref().unwrap_or_default())
                    });
                }
            }
            Event::WavesRollingBack { failed_wave, reason, targets } => {
                let who = if targets.is_empty() {
                    "nothing had moved".to_owned()
                } else {
                    targets.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")
                };
                self.waves_rolled_back = Some(format!("wave {failed_wave} failed ({reason}); rolled back: {who}"));
            }
            Event::Health { .. }
            | Event::Traffic { .. }
            | Event::Progress { .. }
            | Event::RollbackStarted { .. }
            | Event::Recovering { .. } => {}
        }
    }

    fn target(&mut self, name: &str) -> Option<&mut TargetRun> {
        self.targets.iter_mut().rev().find(|t| t.target == name)
    }

    /// The step summary: the release, a table of targets, each target's phases with
    /// durations, and a Mermaid gantt of the cutover.
    pub fn markdown(&self) -> String {
        let mut md = format!("## gantry deploy: {} to `{}`\n\n", self.version, self.environment);
        if !self.waves.is_empty() {
            md.push_str("| wave | region | targets | result | time | bake after it |\n|---|---|---|---|---|---|\n");
            for w in &self.waves {
                md.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {} |\n",
                    w.number,
                    cell(w.region.as_deref().unwrap_or("-")),
                    cell(&w.targets.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")),
                    cell(w.result.as_deref().unwrap_or("unfinished")),
                    secs(w.elapsed_ms),
                    cell(w.bake.as_deref().unwrap_or("-"))
                ));
            }
            if let Some(rolled) = &self.waves_rolled_back {
                md.push_str(&format!("\n**{}**\n", cell(rolled)));
            }
            md.push('\n');
        }
        md.push_str("| target | strategy | from | result | time | in health gates |\n|---|---|---|---|---|---|\n");
        for t in &self.targets {
            md.push_str(&format!(
                "| `{}` | {} | {} | {} | {} | {} |\n",
                cell(&t.target),
                cell(&t.strategy),
                cell(t.previous.as_deref().unwrap_or("nothing live")),
                cell(t.result.as_deref().unwrap_or("unfinished")),
                secs(t.elapsed_ms),
                secs(t.health_ms)
            ));
        }
        for t in &self.targets {
            md.push_str(&format!("\n### `{}` (deployment `{}`)\n\n", cell(&t.target), cell(&t.deployment)));
            md.push_str("| # | phase | what | result | duration |\n|---|---|---|---|---|\n");
            for (i, p) in t.phases.iter().enumerate() {
                let result = match (p.elapsed_ms, p.ok) {
                    (None, _) => "did not finish".to_owned(),
                    (Some(_), true) => "ok".to_owned(),
                    (Some(_), false) => {
                        format!("failed{}", p.note.as_deref().map(|n| format!(": {n}")).unwrap_or_default())
                    }
                };
                let took = p.elapsed_ms.map_or_else(|| "-".to_owned(), secs);
                md.push_str(&format!(
                    "| {} | {} | {} | {} | {took} |\n",
                    i + 1,
                    cell(&p.phase),
                    cell(&p.detail),
                    cell(&result)
                ));
            }
            if let Some(rollback) = &t.rollback {
                md.push_str(&format!("\n**{}**\n", cell(rollback)));
            }
        }
        md.push_str(&self.gantt());
        md
    }

    /// Mermaid gantt: one section per target, one bar per phase (failed ones `crit`), on a
    /// time axis of milliseconds since the deploy began.
    fn gantt(&self) -> String {
        let mut g = format!(
            "\n```mermaid\ngantt\n    title Cutover of {} to {}\n    dateFormat x\n    axisFormat %M:%S\n",
            task_name(&self.version),
            task_name(&self.environment)
        );
        // Each bar: tags, an id, then start and end (both dates in the `x` format).
        for (ti, t) in self.targets.iter().enumerate() {
            g.push_str(&format!("    section {}\n", task_name(&t.target)));
            for (pi, p) in t.phases.iter().enumerate() {
                let took = p.elapsed_ms.unwrap_or(0).max(1);
                let tag = if p.ok { "done" } else { "crit" };
                g.push_str(&format!(
                    "    {} ({}) :{tag}, t{ti}p{pi}, {}, {}\n",
                    task_name(&p.phase),
                    secs(p.elapsed_ms.unwrap_or(0)),
                    p.start_ms,
                    p.start_ms + took
                ));
            }
        }
        g.push_str("```\n");
        g
    }
}

fn secs(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_use_the_heredoc_form_with_a_delimiter_absent_from_the_value() {
        let entry = output_entry("sums", "a=b\nc");
        let mut lines = entry.lines();
        let head = lines.next().unwrap();
        let delimiter = head.strip_prefix("sums<<").unwrap();
        assert!(delimiter.starts_with("ghadelimiter_"));
        assert_eq!(lines.collect::<Vec<_>>(), ["a=b", "c", delimiter]);
        // A value that holds the delimiter that would have been chosen gets another one.
        let tricky = format!("x\n{delimiter}\ny");
        let entry = output_entry("sums", &tricky);
        let delimiter2 = entry.lines().next().unwrap().strip_prefix("sums<<").unwrap().to_owned();
        assert!(!tricky.contains(&delimiter2));
        assert!(entry.ends_with(&format!("\n{delimiter2}\n")));
    }

    #[test]
    fn workflow_command_data_and_properties_are_escaped() {
        assert_eq!(escape_data("50% done\r\nnext"), "50%25 done%0D%0Anext");
        assert_eq!(escape_property("a:b,c%\n"), "a%3Ab%2Cc%25%0A");
        let cmd = error_command(
            &[("file", "conf/gantry,1.toml".into()), ("line", "3".into()), ("col", "7".into())],
            "unknown field `helth`\nsecond line",
        );
        assert_eq!(cmd, "::error file=conf/gantry%2C1.toml,line=3,col=7::unknown field `helth`%0Asecond line");
        assert_eq!(error_command(&[], "x"), "::error::x");
    }

    #[test]
    fn the_deploy_summary_has_every_phase_and_a_gantt() {
        let mut s = DeploySummary::default();
        s.record(&Event::Started {
            deployment: "d-1".into(),
            environment: "dev".into(),
            target: "web".into(),
            version: "1.2.0".into(),
            previous: Some("1.1.0".into()),
            strategy: "blue-green".into(),
            steps: 2,
        });
        for (i, phase) in ["start-new", "gate-new"].iter().enumerate() {
            s.record(&Event::PhaseStarted {
                target: "web".into(),
                index: i,
                phase: (*phase).into(),
                detail: format!("{phase}: a|b"),
                deadline_ms: 1000,
            });
            s.record(&Event::PhaseFinished {
                target: "web".into(),
                index: i,
                phase: (*phase).into(),
                ok: i == 0,
                elapsed_ms: 1500,
                note: (i == 1).then(|| "503".into()),
            });
        }
        s.record(&Event::Finished {
            deployment: "d-1".into(),
            target: "web".into(),
            result: "rolled-back".into(),
            elapsed_ms: 3000,
            health_ms: 1500,
        });
        let md = s.markdown();
        assert!(md.contains("## gantry deploy: 1.2.0 to `dev`"), "{md}");
        assert!(md.contains("| `web` | blue-green | 1.1.0 | rolled-back | 3.0s | 1.5s |"), "{md}");
        assert!(md.contains("| 1 | start-new | start-new: a\\|b | ok | 1.5s |"), "{md}");
        assert!(md.contains("| 2 | gate-new | gate-new: a\\|b | failed: 503 | 1.5s |"), "{md}");
        assert!(md.contains("```mermaid\ngantt\n"), "{md}");
        assert!(md.contains("    section web\n    start-new (1.5s) :done, t0p0, "), "{md}");
        assert!(md.contains("    gate-new (1.5s) :crit, t0p1, "), "{md}");
        assert_eq!(s.deployments(), ["d-1"]);
    }
}
