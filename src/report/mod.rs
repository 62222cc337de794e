//! Output. The only module that prints: human text and progress go to stderr,
//! data (`--output json`) goes to stdout. Domain modules emit typed events; the
//! reporters here consume them.

mod deploy;
pub mod github;
#[cfg(feature = "cloud")]
mod image;
mod package;
#[cfg(feature = "cloud")]
mod pipeline;
#[cfg(feature = "cloud")]
mod publish;
#[cfg(feature = "cloud")]
mod release;

use std::io::{IsTerminal, Write};

use crate::cli::{GlobalArgs, OutputFormat};

pub use deploy::DeployReporter;
#[cfg(feature = "cloud")]
pub use image::ImageReporter;
pub use package::PackageReporter;
#[cfg(feature = "cloud")]
pub use pipeline::PipelineReporter;
#[cfg(feature = "cloud")]
pub use publish::PublishReporter;
#[cfg(feature = "cloud")]
pub use release::ReleaseReporter;

/// How much the user asked to hear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

/// Decides what is printed where, once, from the global flags and the terminal.
#[derive(Debug, Clone)]
pub struct Printer {
    pub format: OutputFormat,
    pub verbosity: Verbosity,
    /// Colour on stderr: a terminal, and `NO_COLOR` unset or empty.
    pub color: bool,
    /// stderr is a terminal, so progress bars may be drawn.
    pub interactive: bool,
    /// Running inside GitHub Actions (`GITHUB_ACTIONS=true`).
    pub github_actions: bool,
    /// In Actions: the step's output and summary files (`report::github`).
    pub actions: Option<github::Actions>,
}

impl Printer {
    pub fn from_args(args: &GlobalArgs) -> Self {
        let tty = std::io::stderr().is_terminal();
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let verbosity = if args.quiet {
            Verbosity::Quiet
        } else if args.verbose > 0 {
            Verbosity::Verbose
        } else {
            Verbosity::Normal
        };
        Self {
            format: args.output,
            verbosity,
            color: tty && !no_color,
            interactive: tty && std::env::var_os("CI").is_none(),
            github_actions: std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true"),
            actions: github::Actions::from_env(),
        }
    }

    /// Sets a step output in GitHub Actions (`$GITHUB_OUTPUT`); nothing elsewhere.
    pub fn output(&self, key: &str, value: &str) {
        if let Some(actions) = &self.actions {
            actions.set_output(key, value);
        }
    }

    /// Appends Markdown to the GitHub Actions step summary; nothing elsewhere.
    pub fn summary(&self, markdown: &str) {
        if let Some(actions) = &self.actions {
            actions.summary(markdown);
        }
    }

    /// Opens a folding log section in GitHub Actions (`::group::`); nothing elsewhere.
    pub fn group(&self, title: &str) {
        if self.actions.is_some() {
            github::group(title);
        }
    }

    pub fn endgroup(&self) {
        if self.actions.is_some() {
            github::endgroup();
        }
    }

    /// Whether progress bars should be drawn: a terminal, human output, not quiet or verbose
    /// (verbose logs would tear the bar).
    pub fn progress(&self) -> bool {
        self.interactive && self.format == OutputFormat::Human && self.verbosity == Verbosity::Normal
    }

    /// A status line on stderr: `   Packaged app-1.2.3.zip (1.2 MB)`; a right-aligned
    /// verb as cargo does, green and bold on a colour terminal.
    pub fn status(&self, verb: &str, message: impl std::fmt::Display) {
        if self.verbosity == Verbosity::Quiet || self.format == OutputFormat::Json {
            return;
        }
        let verb = self.paint(&format!("{verb:>12}"), "1;32");
        eprintln!("{verb} {message}");
    }

    /// A warning on stderr (also in JSON mode: stderr is never data).
    pub fn warn(&self, message: impl std::fmt::Display) {
        if self.verbosity == Verbosity::Quiet {
            return;
        }
        let label = self.paint("warning", "1;33");
        eprintln!("{label}: {message}");
    }

    /// Prints an error once: the message, each cause, and a hint. In GitHub Actions it is
    /// also written as an `::error::` annotation so it shows on the run's page.
    pub fn error(&self, error: &crate::Error) {
        let out = self.error_text(error);
        let mut stderr = std::io::stderr().lock();
        let _ = stderr.write_all(out.as_bytes());
        if self.github_actions {
            let _ = writeln!(stderr, "{}", annotation(error));
        }
    }

    /// The text `error` prints.
    fn error_text(&self, error: &crate::Error) -> String {
        let mut out = String::new();
        out.push_str(&format!("{}: {error}\n", self.paint("error", "1;31")));
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            // Errors that put their cause in their own message (`target `web`: ...`) would
            // otherwise print it twice.
            let text = cause.to_string();
            if !out.contains(&text) {
                out.push_str(&format!("  {} {text}\n", self.paint("caused by:", "1")));
            }
            source = cause.source();
        }
        if let Some(hint) = error.hint() {
            out.push_str(&format!("{}: {hint}\n", self.paint("hint", "1;36")));
        }
        out
    }

    /// Writes one JSON document to stdout (only with `--output json`).
    pub fn json(&self, value: &serde_json::Value) {
        if self.format != OutputFormat::Json {
            return;
        }
        let mut stdout = std::io::stdout().lock();
        let _ = serde_json::to_writer_pretty(&mut stdout, value);
        let _ = writeln!(stdout);
    }

    /// A command's human-readable result (`status`, `history`, `plan`): data, so stdout.
    pub fn text(&self, text: &str) {
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(text.as_bytes());
        let _ = stdout.flush();
    }

    /// Writes one JSON object on one line to stdout (JSON lines, for streaming commands).
    pub fn json_line(&self, value: &serde_json::Value) {
        if self.format != OutputFormat::Json {
            return;
        }
        let mut stdout = std::io::stdout().lock();
        let _ = serde_json::to_writer(&mut stdout, value);
        let _ = writeln!(stdout);
        let _ = stdout.flush();
    }

    fn paint(&self, text: &str, sgr: &str) -> String {
        if self.color { format!("\x1b[{sgr}m{text}\x1b[0m") } else { text.to_owned() }
    }
}

/// The `::error` annotation for a failed command: at the file, line and column of a
/// config error (so GitHub marks the line in gantry.toml), else titled `gantry`.
fn annotation(error: &crate::Error) -> String {
    use crate::config::{ConfigError, Location};
    if let crate::Error::Config(ConfigError::Invalid(d)) = error {
        let mut props = Vec::new();
        match &d.location {
            Location::File { file, line, column, .. } => {
                props.push(("file", workspace_relative(file)));
                props.push(("line", line.to_string()));
                props.push(("col", column.to_string()));
                props.push(("title", "gantry.toml".to_owned()));
            }
            Location::Env { name, .. } => props.push(("title", format!("gantry: {name}"))),
        }
        let mut message = d.message.clone();
        if let Some(hint) = &d.hint {
            message.push_str(&format!("\nhint: {hint}"));
        }
        return github::error_command(&props, &message);
    }
    let mut message = error.to_string().lines().next().unwrap_or_default().to_owned();
    if let Some(hint) = error.hint() {
        message.push_str(&format!("\nhint: {hint}"));
    }
    github::error_command(&[("title", "gantry".to_owned())], &message)
}

/// GitHub places annotations by a path relative to the repository (`GITHUB_WORKSPACE`).
fn workspace_relative(file: &str) -> String {
    let Some(workspace) = std::env::var_os("GITHUB_WORKSPACE").map(std::path::PathBuf::from) else {
        return file.to_owned();
    };
    let absolute = std::env::current_dir().map(|cwd| cwd.join(file)).unwrap_or_else(|_| file.into());
    absolute.strip_prefix(&workspace).map_or_else(|_| file.to_owned(), |p| p.display().to_string())
}

/// `1.2 MB`-style sizes for humans (decimal units, as `ls -lh --si` and cargo do).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_234_567), "1.2 MB");
        assert_eq!(human_bytes(5_000_000_000), "5.0 GB");
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_printed_again() {
        let printer = Printer {
            format: OutputFormat::Human,
            verbosity: Verbosity::Normal,
            color: false,
            interactive: false,
            github_actions: false,
            actions: None,
        };
        let inner = crate::targets::TargetError::new("no `release_bucket`")
            .with_source(std::io::Error::other("connection refused"));
        let e = crate::Error::Deploy(crate::app::deploy::DeployError::Target { target: "web".into(), source: inner });
        assert_eq!(
            printer.error_text(&e),
            "error: target `web`: no `release_bucket`\n  caused by: connection refused\n"
        );
    }

    #[test]
    fn errors_become_annotations() {
        let e = crate::Error::Usage { message: "50% done\nnext".into(), hint: Some("try: this".into()) };
        assert_eq!(annotation(&e), "::error title=gantry::50%25 done%0Ahint: try: this");
    }
}
