//! Prints `gantry package` events: a progress bar per artifact on a terminal, one
//! line per step otherwise (CI logs), nothing but the final JSON with `--output json`.

use indicatif::{ProgressBar, ProgressStyle};

use super::{Printer, human_bytes};
use crate::package::{Event, Manifest};

pub struct PackageReporter<'p> {
    printer: &'p Printer,
    bar: Option<ProgressBar>,
    /// A `::group::` is open for a build (closed on drop if the build failed).
    building: bool,
}

impl<'p> PackageReporter<'p> {
    pub fn new(printer: &'p Printer) -> Self {
        Self { printer, bar: None, building: false }
    }

    /// The release is complete: in GitHub Actions, the step outputs (`version`,
    /// `artifact-sha256`: the one artifact's digest, or `SHA256SUMS` lines for several) and
    /// a summary table of the artifacts.
    pub fn finish(&self, manifest: &Manifest) {
        if self.printer.actions.is_none() {
            return;
        }
        let version = manifest.version.to_string();
        self.printer.output("version", &version);
        let sums = match manifest.artifacts.as_slice() {
            [one] => one.sha256.clone(),
            _ => manifest.sha256sums().trim_end().to_owned(),
        };
        self.printer.output("artifact-sha256", &sums);
        let commit =
            manifest.commit.as_deref().map(|c| format!(" (commit `{}`)", &c[..c.len().min(12)])).unwrap_or_default();
        let mut md = format!(
            "## gantry package: {} {version}{commit}\n\n| artifact | file | entries | size | sha256 |\n|---|---|---|---|---|\n",
            manifest.project
        );
        for a in &manifest.artifacts {
            md.push_str(&format!(
                "| {} | `{}` | {} | {} | `{}` |\n",
                a.name,
                a.file,
                a.entries,
                human_bytes(a.size),
                a.sha256
            ));
        }
        self.printer.summary(&md);
    }

    pub fn event(&mut self, event: Event<'_>) {
        match event {
            Event::BuildStarted { artifact, command } => {
                // In Actions the build's own output folds under one log section.
                self.printer.group(&format!("Build {artifact}: {command}"));
                self.building = true;
                self.printer.status("Building", format!("{artifact}: {command}"))
            }
            Event::BuildFinished { artifact, elapsed } => {
                self.printer.status("Built", format!("{artifact} in {:.1}s", elapsed.as_secs_f64()));
                self.printer.endgroup();
                self.building = false;
            }
            Event::ArtifactStarted { artifact, file, files, bytes } => {
                if self.printer.progress() {
                    let bar = ProgressBar::new(bytes);
                    bar.set_style(
                        ProgressStyle::with_template("{prefix:>12.cyan.bold} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {eta}")
                            .expect("valid template")
                            .progress_chars("=> "),
                    );
                    bar.set_prefix("Packaging");
                    self.bar = Some(bar);
                } else {
                    self.printer
                        .status("Packaging", format!("{artifact} -> {file} ({files} files, {})", human_bytes(bytes)));
                }
            }
            Event::Progress { bytes } => {
                if let Some(bar) = &self.bar {
                    bar.inc(bytes);
                }
            }
            Event::ArtifactFinished { artifact, elapsed } => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
                self.printer.status(
                    "Packaged",
                    format!(
                        "{} ({} entries, {}) sha256:{} in {:.2}s",
                        artifact.file,
                        artifact.entries,
                        human_bytes(artifact.size),
                        &artifact.sha256[..12],
                        elapsed.as_secs_f64()
                    ),
                );
            }
        }
    }
}

impl Drop for PackageReporter<'_> {
    fn drop(&mut self) {
        if self.building {
            self.printer.endgroup();
        }
    }
}
