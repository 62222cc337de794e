//! gantry.toml: finding it, parsing it with exact error locations, per-environment
//! overrides, `GANTRY_*` environment overrides, and validation.

mod diagnostic;
mod env;
mod load;
mod model;
mod tree;
mod validate;
mod values;
pub mod waves;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use diagnostic::{Diagnostic, Location, did_you_mean};
pub use model::*;
pub use values::*;

/// The file name gantry looks for.
pub const FILE_NAME: &str = "gantry.toml";

/// A loaded, validated gantry.toml.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The file it came from.
    pub path: PathBuf,
    /// Its folder: relative paths in the file are relative to this.
    pub dir: PathBuf,
    pub config: Config,
    /// Each environment's targets with its overrides merged in.
    pub env_targets: BTreeMap<Name, BTreeMap<Name, Target>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no {FILE_NAME} found in {} or any parent folder", start.display())]
    NotFound { start: PathBuf },
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file (or a `GANTRY_*` override of it) is not a valid gantry.toml.
    #[error("{0}")]
    Invalid(Box<Diagnostic>),
}

impl ConfigError {
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::NotFound { .. } => {
                Some("run `gantry init` to write a starter gantry.toml, or pass --config PATH".into())
            }
            Self::Invalid(diagnostic) => diagnostic.hint.clone(),
            Self::Read { .. } => None,
        }
    }
}

/// Finds gantry.toml in `start` or the nearest parent folder.
impl Loaded {
    /// Where `gantry package` writes and deploy and publish read: `[project].dist`, or `dist`.
    pub fn dist_dir(&self) -> PathBuf {
        self.dir.join(self.config.project.dist.as_ref().map_or("dist", |d| d.as_str()))
    }
}

pub fn discover(start: &Path) -> Result<PathBuf, ConfigError> {
    start
        .ancestors()
        .map(|dir| dir.join(FILE_NAME))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| ConfigError::NotFound { start: start.to_owned() })
}

/// Reads and validates the file at `path`, applying `GANTRY_*` overrides from the process environment.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    // Variables that are not valid UTF-8 cannot be TOML; they are not ours to override with.
    let vars: Vec<(String, String)> =
        std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect();
    let loaded = load_with_env(path, &vars)?;
    tracing::debug!(path = %path.display(), environments = loaded.env_targets.len(), "loaded configuration");
    Ok(loaded)
}

/// Reads and validates the file at `path`, applying the `GANTRY_A__B=value` overrides
/// among `vars` (name, value): everything `load` does, with the environment given.
pub fn load_with_env(path: &Path, vars: &[(String, String)]) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    let (config, env_targets) = load::from_text(display_name(path), &text, vars).map_err(ConfigError::Invalid)?;
    let dir = path.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    Ok(Loaded { path: path.to_owned(), dir, config, env_targets })
}

/// `path` as messages show it: relative to the current folder when it is below it.
fn display_name(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}

/// The JSON Schema of gantry.toml, generated from the types (committed as
/// `schema/gantry.schema.json`), pretty-printed with a trailing newline.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Config);
    let mut json = serde_json::to_string_pretty(&schema).expect("a JSON Schema serializes");
    json.push('\n');
    json
}

/// The commented starter file `gantry init` writes.
pub fn starter(project: &Name) -> String {
    include_str!("starter.toml").replace("{{name}}", project.as_str())
}

/// A valid project name derived from a folder name (`My App` -> `my-app`).
pub fn project_name_from_dir(dir: &Path) -> String {
    let raw = dir.file_name().and_then(|n| n.to_str()).unwrap_or("app").to_ascii_lowercase();
    let mut name: String = raw.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '-' }).collect();
    name = name.trim_matches('-').to_owned();
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        name.insert_str(0, "app-");
    }
    name.truncate(63);
    name
}
