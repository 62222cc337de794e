//! Prints `gantry publish` events: one bar for all bytes on a terminal, a line per
//! object otherwise, and a closing summary.

use indicatif::{ProgressBar, ProgressStyle};

use super::{Printer, human_bytes};
use crate::publish::{Event, PublishReport, Status};

pub struct PublishReporter<'p> {
    printer: &'p Printer,
    bar: ProgressBar,
}

impl<'p> PublishReporter<'p> {
    pub fn new(printer: &'p Printer) -> Self {
        let bar = if printer.progress() { ProgressBar::new(0) } else { ProgressBar::hidden() };
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>12.cyan.bold} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix("Uploading");
        Self { printer, bar }
    }

    /// Called from several upload tasks at once: only shared, thread-safe state here.
    pub fn event(&self, event: Event<'_>) {
        match event {
            Event::Started { bucket, prefix, objects, bytes } => {
                self.bar.set_length(bytes);
                self.printer.status(
                    "Publishing",
                    format!("{objects} objects ({}) to s3://{bucket}/{prefix}", human_bytes(bytes)),
                );
            }
            Event::Progress { bytes } => self.bar.inc(bytes),
            Event::Object(object) => {
                let verb = match object.status {
                    Status::Uploaded => "Uploaded",
                    Status::Unchanged => {
                        self.bar.inc(object.size);
                        "Unchanged"
                    }
                    Status::Replaced => "Replaced",
                };
                let version = object.version_id.as_deref().map(|v| format!(" version {v}")).unwrap_or_default();
                self.bar.suspend(|| {
                    self.printer.status(verb, format!("{} ({}){version}", object.key, human_bytes(object.size)));
                });
            }
        }
    }

    pub fn finish(&self, report: &PublishReport) {
        self.bar.finish_and_clear();
        self.printer.output("version", &report.version);
        if self.printer.actions.is_some() {
            let mut md = format!(
                "## gantry publish: {} {} to `{}`\n\n`s3://{}/{}`\n\n| object | size | status |\n|---|---|---|\n",
                report.project, report.version, report.environment, report.bucket, report.prefix
            );
            for o in &report.objects {
                md.push_str(&format!("| `{}` | {} | {:?} |\n", o.key, human_bytes(o.size), o.status));
            }
            self.printer.summary(&md);
        }
        let sent = report.objects.iter().filter(|o| o.status != Status::Unchanged).count();
        self.printer.status(
            "Published",
            format!(
                "{} {} to {}: {sent} of {} objects sent ({}) in {:.1}s",
                report.project,
                report.version,
                report.environment,
                report.objects.len(),
                human_bytes(report.bytes_uploaded),
                report.elapsed_ms as f64 / 1000.0
            ),
        );
        if let Some(source) = &report.pipeline_source {
            let version = source.version_id.as_deref().unwrap_or("none (the bucket is not versioned)");
            let what = if source.status == Status::Unchanged { "unchanged" } else { "written" };
            self.printer.status(
                "Source",
                format!("pipeline source s3://{}/{} {what}, object version {version}", report.bucket, source.key),
            );
        }
    }
}
