//! Prints `gantry package` events: a progress bar per artifact on a terminal, one
//! line per step otherwise (CI logs), nothing but the final JSON with `--output json`.

use indicatif::{ProgressBar, ProgressStyle};

use super::{Printer, human_bytes};
use crate::package::Event;

pub struct PackageReporter<'p> {
    printer: &'p Printer,
    bar: Option<ProgressBar>,
}

impl<'p> PackageReporter<'p> {
    pub fn new(printer: &'p Printer) -> Self {
        Self { printer, bar: None }
    }

    pub fn event(&mut self, event: Event<'_>) {
        match event {
            Event::BuildStarted { artifact, command } => {
                self.printer.status("Building", format!("{artifact}: {command}"))
            }
            Event::BuildFinished { artifact, elapsed } => {
                self.printer.status("Built", format!("{artifact} in {:.1}s", elapsed.as_secs_f64()));
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
