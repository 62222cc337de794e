//! Prints `gantry image push` events: a status line per step and per blob, a byte
//! progress bar for the transfers on a terminal, and the outcome per image. Events come
//! from several upload tasks at once, so the reporter is shared and locks its bar.

use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};

use super::{Printer, human_bytes};
use crate::publish::image::{BlobOutcome, Event, ImageReport, Status, TagChange};

pub struct ImageReporter {
    printer: Printer,
    bar: Mutex<Option<ProgressBar>>,
}

impl ImageReporter {
    pub fn new(printer: &Printer) -> Self {
        Self { printer: printer.clone(), bar: Mutex::new(None) }
    }

    pub fn event(&self, event: Event) {
        match event {
            Event::LoggedIn { registry } => self.status("Logged in", format!("to {registry}")),
            Event::InputsHashed { image, files, tag } => {
                let noun = if files == 1 { "file" } else { "files" };
                self.status("Hashed", format!("{image}: {files} input {noun} -> {tag}"));
            }
            Event::Unchanged { .. } | Event::Preparing { .. } => {}
            Event::Prepared { image, source, digest, blobs, bytes } => self.status(
                "Prepared",
                format!("{image} from {source}: {} ({blobs} blobs, {})", digest.short(), human_bytes(bytes)),
            ),
            Event::Transferring { image, blobs, bytes } => {
                if self.printer.progress() {
                    let bar = ProgressBar::new(bytes);
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{prefix:>12.cyan.bold} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {eta}",
                        )
                        .expect("valid template")
                        .progress_chars("=> "),
                    );
                    bar.set_prefix("Pushing");
                    *self.bar.lock().expect("not poisoned") = Some(bar);
                } else {
                    self.status("Pushing", format!("{image}: {blobs} blobs, {}", human_bytes(bytes)));
                }
            }
            Event::Progress { bytes } => {
                if let Some(bar) = self.bar.lock().expect("not poisoned").as_ref() {
                    bar.inc(bytes);
                }
            }
            Event::Blob { digest, size, outcome } => {
                if outcome != BlobOutcome::Uploaded
                    && let Some(bar) = self.bar.lock().expect("not poisoned").as_ref()
                {
                    bar.inc(size);
                }
                let verb = match outcome {
                    BlobOutcome::Uploaded => "Uploaded",
                    BlobOutcome::Skipped => "Exists",
                    BlobOutcome::Mounted => "Mounted",
                };
                self.status(verb, format!("{} ({})", digest.short(), human_bytes(size)));
            }
            Event::Tagged { reference, change } => {
                if let Some(bar) = self.bar.lock().expect("not poisoned").take() {
                    bar.finish_and_clear();
                }
                let note = match change {
                    TagChange::Created => String::new(),
                    TagChange::AlreadyThere => " (already there)".into(),
                    TagChange::Moved { from } => format!(" (moved from {})", from.short()),
                };
                self.status("Tagged", format!("{reference}{note}"));
            }
        }
    }

    /// The outcome line of one image.
    pub fn finished(&self, report: &ImageReport) {
        if let Some(bar) = self.bar.lock().expect("not poisoned").take() {
            bar.finish_and_clear();
        }
        let at = format!("{}/{}", report.registry, report.repository);
        // Step outputs: `image-digest` (the last image pushed), and one per image by name.
        self.printer.output("image-digest", &report.digest.to_string());
        self.printer.output(&format!("image-digest-{}", report.image), &report.digest.to_string());
        match report.status {
            Status::Pushed => self.status(
                "Pushed",
                format!(
                    "{} {} to {at} ({} uploaded, {} present, {} mounted; {} in {:.2}s)",
                    report.image,
                    report.digest.short(),
                    report.blobs.uploaded,
                    report.blobs.skipped,
                    report.blobs.mounted,
                    human_bytes(report.bytes_uploaded),
                    report.elapsed_seconds
                ),
            ),
            Status::Unchanged => self.status(
                "Skipped",
                format!(
                    "{} unchanged: {at} already has {} ({})",
                    report.image,
                    report.tags.last().map_or("", |t| t),
                    report.digest.short()
                ),
            ),
        }
    }

    /// A status line, drawn above the bar when there is one.
    fn status(&self, verb: &str, message: String) {
        match self.bar.lock().expect("not poisoned").as_ref() {
            Some(bar) => bar.suspend(|| self.printer.status(verb, &message)),
            None => self.printer.status(verb, message),
        }
    }
}
