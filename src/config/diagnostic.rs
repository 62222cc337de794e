//! Errors in gantry.toml as a user reads them: where (file, line, column, or the
//! `GANTRY_*` variable that set the value), which key, what is wrong, and a hint.
//!
//! Rendered rustc-style, without colour (the printer adds it):
//!
//! ```text
//! gantry.toml:12:1: unknown field `helth` in `targets.api`
//!    |
//! 12 | helth = []
//!    | ^^^^^
//! ```

use std::fmt;
use std::ops::Range;

use super::env::EnvOverride;
use super::tree::KeyPath;

/// One error in the configuration, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// What is wrong, naming the key (`unknown field `helth` in `targets.api``).
    pub message: String,
    /// The key, e.g. `targets.api.health[0].interval`; empty for TOML syntax errors.
    pub field: String,
    pub location: Location,
    /// What to do about it, e.g. ``did you mean `health`?``.
    pub hint: Option<String>,
}

/// Where the value in error was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// In the file. `line` and `column` are 1-based; `column` and `width` count characters.
    File { file: String, line: usize, column: usize, source_line: String, width: usize },
    /// In a `GANTRY_*` variable; `column` and `width` are within `NAME=value`.
    Env { name: String, value: String, column: usize, width: usize },
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Location::File { file, line, column, source_line, width } => {
                writeln!(f, "{file}:{line}:{column}: {}", self.message)?;
                let number = line.to_string();
                let pad = " ".repeat(number.len());
                writeln!(f, "{pad} |")?;
                writeln!(f, "{number} | {source_line}")?;
                write!(f, "{pad} | {}{}", " ".repeat(column - 1), "^".repeat(*width))
            }
            Location::Env { name, value, column, width } => {
                writeln!(f, "{}", self.message)?;
                writeln!(f, "  in {name} (environment variable)")?;
                writeln!(f, "  |")?;
                writeln!(f, "  | {name}={value}")?;
                write!(f, "  | {}{}", " ".repeat(column - 1), "^".repeat(*width))
            }
        }
    }
}

/// The texts spans point into: the file, then each overriding variable as `NAME=value`.
pub struct Sources {
    file: String,
    text: String,
    vars: Vec<(String, String, usize)>,
}

impl Sources {
    /// `file` is the name shown in messages; `overrides` were laid out after `text`.
    pub fn new(file: String, text: &str, overrides: &[EnvOverride<'_>]) -> Self {
        let vars = overrides.iter().map(|o| (o.name.to_owned(), o.value.to_owned(), o.offset)).collect();
        Self { file, text: text.to_owned(), vars }
    }

    /// A diagnostic at `span` about `field`.
    pub fn at(&self, span: Range<usize>, field: &KeyPath, message: String, hint: Option<String>) -> Diagnostic {
        Diagnostic { message, field: field.to_string(), location: self.locate(span), hint }
    }

    /// A TOML syntax error (bad string, duplicate key, ...).
    pub fn syntax(&self, error: &toml::de::Error) -> Diagnostic {
        let span = error.span().unwrap_or(0..0);
        let mut message = format!("invalid TOML: {}", error.message());
        let mut hint = None;
        if error.message() == "duplicate key" {
            let key = self.text.get(span.clone()).unwrap_or_default();
            message = format!("invalid TOML: duplicate key `{key}`");
            hint = Some("a key or table may be written only once; remove one of them".into());
        }
        self.at(span, &KeyPath::new(), message, hint)
    }

    /// An error from turning the tree into typed values, at `path` (from serde) and `span`.
    pub fn deserialize(&self, path: &KeyPath, span: Range<usize>, error: &toml::de::Error) -> Diagnostic {
        let (message, mut hint) = describe(path, error.message());
        let location = self.locate(span);
        if let Location::Env { name, value, .. } = &location
            && error.message().starts_with("invalid type")
            && !value.starts_with(['"', '\''])
        {
            hint = Some(format!(
                "the value of {name} is read as TOML when it parses as TOML; \
                 to pass it as text, quote it: {name}='\"{value}\"'"
            ));
        }
        Diagnostic { message, field: path.to_string(), location, hint }
    }

    fn locate(&self, span: Range<usize>) -> Location {
        if span.start > self.text.len() {
            let var = self.vars.iter().rev().find(|(_, _, offset)| *offset <= span.start);
            if let Some((name, value, offset)) = var {
                let shown = format!("{name}={value}");
                let (column, width) = columns(&shown, span.start - offset, span.end - offset);
                return Location::Env { name: name.clone(), value: value.clone(), column, width };
            }
        }
        let text = &self.text;
        let start = floor_char_boundary(text, span.start.min(text.len()));
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        let source_line = text[line_start..line_end].trim_end_matches('\r');
        let (column, width) = columns(source_line, start - line_start, span.end - line_start);
        Location::File {
            file: self.file.clone(),
            line: text[..start].matches('\n').count() + 1,
            column,
            source_line: source_line.replace('\t', " "),
            width,
        }
    }
}

/// 1-based character column of byte `start` in `line`, and the characters from
/// there to byte `end` (at least 1, at most to the end of the line).
fn columns(line: &str, start: usize, end: usize) -> (usize, usize) {
    let start = floor_char_boundary(line, start.min(line.len()));
    let end = floor_char_boundary(line, end.clamp(start, line.len()));
    let column = line[..start].chars().count() + 1;
    (column, line[start..end].chars().count().max(1))
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A serde message turned into one a user reads, with a hint where one helps.
fn describe(path: &KeyPath, message: &str) -> (String, Option<String>) {
    let (head, expected) = match message.split_once(", expected ") {
        Some((head, rest)) => (head, quoted(rest)),
        None => (message, Vec::new()),
    };
    let within = |parent: &KeyPath| {
        if parent.is_empty() { "at the top level".to_owned() } else { format!("in `{parent}`") }
    };
    if let Some(name) = head.strip_prefix("unknown field ").and_then(first_quoted) {
        let parent = path.split_last().map_or_else(KeyPath::new, |(p, _)| p);
        let message = format!("unknown field `{name}` {}", within(&parent));
        return (message, suggest(name, &expected, "valid keys here"));
    }
    if let Some(name) = head.strip_prefix("unknown variant ").and_then(first_quoted) {
        let message = format!("`{path}`: unknown value `{name}`");
        return (message, suggest(name, &expected, "expected one of"));
    }
    if let Some(name) = head.strip_prefix("missing field ").and_then(first_quoted) {
        let hint = (path.is_empty() && name == "project").then(|| {
            "start the file with `[project]` and `name = \"my-app\"`; `gantry init` writes a starter file".into()
        });
        return (format!("missing field `{name}` {}", within(path)), hint);
    }
    (format!("`{path}`: {}", plain_types(message)), None)
}

/// ``did you mean `x`?`` when `word` is close to one of `valid`, else the list of them.
fn suggest(word: &str, valid: &[&str], list_label: &str) -> Option<String> {
    if let Some(best) = did_you_mean(word, valid.iter().copied()) {
        return Some(format!("did you mean `{best}`?"));
    }
    (!valid.is_empty()).then(|| {
        let list: Vec<String> = valid.iter().map(|v| format!("`{v}`")).collect();
        format!("{list_label}: {}", list.join(", "))
    })
}

/// The candidate closest to `word`, if it is close enough to be a likely typo.
pub fn did_you_mean<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

/// The words between backticks in `s`.
fn quoted(s: &str) -> Vec<&str> {
    s.split('`').skip(1).step_by(2).collect()
}

fn first_quoted(s: &str) -> Option<&str> {
    quoted(s).into_iter().next()
}

/// Serde's Rust type names in words: `expected u32` -> `expected a whole number`.
fn plain_types(message: &str) -> String {
    const NAMES: &[(&str, &str)] = &[
        ("expected u8", "expected a whole number"),
        ("expected u16", "expected a whole number"),
        ("expected u32", "expected a whole number"),
        ("expected u64", "expected a whole number"),
        ("expected i64", "expected a whole number"),
        ("expected a sequence", "expected an array"),
        ("expected a map", "expected a table"),
        ("expected a borrowed string", "expected a string"),
    ];
    if let Some(at) = message.find("expected struct ") {
        return format!("{}expected a table", &message[..at]);
    }
    NAMES.iter().find(|(rust, _)| message.ends_with(rust)).map_or_else(
        || message.to_owned(),
        |(rust, words)| format!("{}{words}", &message[..message.len() - rust.len()]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> KeyPath {
        p.split('.').fold(KeyPath::new(), |k, s| k.key(s))
    }

    #[test]
    fn unknown_fields_name_their_table_and_suggest_a_key() {
        let (message, hint) =
            describe(&path("targets.api.helth"), "unknown field `helth`, expected one of `kind`, `strategy`, `health`");
        assert_eq!(message, "unknown field `helth` in `targets.api`");
        assert_eq!(hint.as_deref(), Some("did you mean `health`?"));
        let (message, hint) = describe(&path("zzz"), "unknown field `zzz`, expected `a` or `b`");
        assert_eq!(message, "unknown field `zzz` at the top level");
        assert_eq!(hint.as_deref(), Some("valid keys here: `a`, `b`"));
        let (message, hint) = describe(&KeyPath::new(), "missing field `project`");
        assert_eq!(message, "missing field `project` at the top level");
        assert!(hint.unwrap().contains("gantry init"));
    }

    #[test]
    fn types_are_named_in_words() {
        assert_eq!(
            plain_types("invalid type: string \"3\", expected u32"),
            "invalid type: string \"3\", expected a whole number"
        );
        assert_eq!(
            plain_types("invalid type: integer `1`, expected struct HealthCheck"),
            "invalid type: integer `1`, expected a table"
        );
    }

    #[test]
    fn suggestions_only_when_close() {
        assert_eq!(did_you_mean("ecss", ["local", "ecs"]), Some("ecs"));
        assert_eq!(did_you_mean("kubernetis", ["kubernetes"]), Some("kubernetes"));
        assert_eq!(did_you_mean("banana", ["ecs", "lambda"]), None);
    }

    #[test]
    fn columns_count_characters() {
        assert_eq!(columns("name = \"día\" # x", 7, 13), (8, 5));
        assert_eq!(columns("abc", 3, 3), (4, 1));
    }

    #[test]
    fn renders_file_and_env_locations() {
        let text = "[project]\nhelth = []\n";
        let sources = Sources::new("gantry.toml".into(), text, &[]);
        let d = sources.at(10..15, &path("project.helth"), "bad".into(), None);
        assert_eq!(d.to_string(), "gantry.toml:2:1: bad\n  |\n2 | helth = []\n  | ^^^^^");
        let env = [("GANTRY_A__B".to_owned(), "x".to_owned())];
        let overrides = super::super::env::collect(&env, text.len() + 1);
        let sources = Sources::new("gantry.toml".into(), text, &overrides);
        let d = sources.at(overrides[0].value_span(), &path("a.b"), "bad".into(), None);
        assert_eq!(
            d.to_string(),
            "bad\n  in GANTRY_A__B (environment variable)\n  |\n  | GANTRY_A__B=x\n  |             ^"
        );
    }
}
