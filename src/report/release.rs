//! `gantry release` output: the version, the changelog and the steps on stderr (human
//! output), and progress of the GitHub assets. The JSON summary goes through `Printer::json`.

use super::{Printer, Verbosity};
use crate::cli::OutputFormat;
use crate::github::releases::{AssetAction, AssetReport};

pub struct ReleaseReporter<'p> {
    printer: &'p Printer,
}

impl<'p> ReleaseReporter<'p> {
    pub fn new(printer: &'p Printer) -> Self {
        Self { printer }
    }

    fn human(&self) -> bool {
        self.printer.format == OutputFormat::Human && self.printer.verbosity != Verbosity::Quiet
    }

    /// The changelog, indented, then the steps numbered (`dry_run`: "would").
    pub fn plan(&self, changelog: &str, steps: &[String], dry_run: bool) {
        if !self.human() {
            return;
        }
        let mut out = String::from("\n");
        for line in changelog.lines() {
            out.push_str(&format!("    {line}\n"));
        }
        out.push_str(if dry_run { "\nDry run: nothing was changed. gantry release would:\n" } else { "\nSteps:\n" });
        for (i, step) in steps.iter().enumerate() {
            out.push_str(&format!("  {}. {step}\n", i + 1));
        }
        eprint!("{out}");
    }

    pub fn asset(&self, report: &AssetReport) {
        let verb = match report.action {
            AssetAction::Kept => "Kept",
            AssetAction::Uploaded => "Uploaded",
            AssetAction::Replaced => "Replaced",
        };
        self.printer.status(verb, format!("{} ({})", report.name, super::human_bytes(report.size)));
    }

    /// What to do next: the approve command and the pipeline's console link.
    pub fn next(&self, approve: &str, console: &str) {
        if !self.human() {
            return;
        }
        eprintln!("\nThe pipeline waits for approval. To approve:\n    {approve}\nPipeline: {console}");
    }
}
