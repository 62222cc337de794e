//! Rules serde cannot express, checked on the typed config after it deserializes:
//! images have exactly one source, environments name targets that exist, overrides
//! are for targets the environment deploys, a required approval has a pipeline to
//! live in, and every target is consistent (see `validate/target.rs`).
//!
//! Each problem is an `Issue` with the key path it is about; the loader turns the
//! path into a line through the spanned tree.

mod target;

use super::diagnostic::did_you_mean;
use super::model::{Approval, Config, Environment, Image};
use super::tree::KeyPath;
use super::values::Name;

pub use target::target;

/// One broken rule, at `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub path: KeyPath,
    pub message: String,
    pub hint: Option<String>,
    /// The key at `path` should not be there at all (as opposed to having a bad value).
    pub unwanted: bool,
}

impl Issue {
    pub fn new(path: KeyPath, message: impl Into<String>) -> Self {
        Self { path, message: message.into(), hint: None, unwanted: false }
    }

    /// Marks the key at `path` as one that should not be there.
    pub fn unwanted(mut self) -> Self {
        self.unwanted = true;
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The issue at `prefix` + its path (for rules written against a part of the file).
    pub fn under(mut self, prefix: &KeyPath) -> Self {
        self.path = prefix.join(&self.path);
        self
    }
}

/// Checks everything but each environment's merged targets; the first problem found.
pub fn config(cfg: &Config) -> Result<(), Issue> {
    let root = KeyPath::new();
    for (name, image) in &cfg.images {
        check_image(image).map_err(|i| i.under(&root.key("images").key(name.as_str())))?;
    }
    for (name, t) in &cfg.targets {
        target(name, t, cfg).map_err(|i| i.under(&root.key("targets").key(name.as_str())))?;
    }
    for (env_name, env) in &cfg.environments {
        let at = root.key("environments").key(env_name.as_str());
        for (i, name) in env.targets.iter().enumerate() {
            if !cfg.targets.contains_key(name) {
                let known = cfg.targets.keys().map(Name::as_str);
                return Err(Issue::new(at.key("targets").index(i), format!("unknown target `{name}`"))
                    .hint(unknown_name_hint(name, known, "targets")));
            }
            if env.targets[..i].contains(name) {
                return Err(Issue::new(at.key("targets").index(i), format!("target `{name}` is listed twice")));
            }
        }
        for name in env.overrides.keys() {
            if !env.targets.contains(name) {
                let listed = env.targets.iter().map(Name::as_str);
                let hint = match did_you_mean(name.as_str(), listed) {
                    Some(close) => format!("did you mean `{close}`?"),
                    None => format!("add `{name}` to `environments.{env_name}.targets`, or remove this override"),
                };
                return Err(Issue::new(
                    at.key("overrides").key(name.as_str()),
                    format!("override for `{name}`, which environment `{env_name}` does not deploy (it is not in its `targets`)"),
                )
                .hint(hint));
            }
        }
        check_waves(env_name, env).map_err(|i| i.under(&at))?;
        if env.approval == Approval::Required && env.pipeline.is_none() {
            return Err(Issue::new(
                at.key("approval"),
                "`approval = \"required\"` needs `pipeline`: the approval is an action in the environment's pipeline",
            )
            .hint(format!(
                "add `pipeline = \"NAME\"` (the CodePipeline that deploys `{env_name}`) to `[environments.{env_name}]`"
            )));
        }
    }
    Ok(())
}

/// An explicit `waves` list: every wave non-empty, each of the environment's targets in
/// exactly one wave, and nothing else. Paths are relative to the environment.
fn check_waves(env_name: &Name, env: &Environment) -> Result<(), Issue> {
    let Some(waves) = &env.waves else { return Ok(()) };
    let at = KeyPath::new().key("waves");
    let listed = || env.targets.iter().map(Name::as_str);
    for (w, wave) in waves.iter().enumerate() {
        if wave.is_empty() {
            return Err(Issue::new(at.index(w), format!("wave {} has no targets", w + 1))
                .hint("remove the empty `[]`, or move targets into it"));
        }
        for (i, name) in wave.iter().enumerate() {
            let here = at.index(w).index(i);
            if !env.targets.contains(name) {
                let hint = match did_you_mean(name.as_str(), listed()) {
                    Some(close) => format!("did you mean `{close}`?"),
                    None => format!(
                        "a wave groups the environment's own targets: add `{name}` to `environments.{env_name}.targets`, or remove it from the wave"
                    ),
                };
                return Err(Issue::new(here, format!("wave {} names `{name}`, which environment `{env_name}` does not deploy (it is not in its `targets`)", w + 1)).hint(hint));
            }
            let earlier =
                waves[..w].iter().position(|o| o.contains(name)).or_else(|| wave[..i].contains(name).then_some(w));
            if let Some(first) = earlier {
                return Err(Issue::new(
                    here,
                    format!("target `{name}` is in wave {} and again in wave {}", first + 1, w + 1),
                )
                .hint("a target is deployed once per deploy: keep it in one wave"));
            }
        }
    }
    if let Some(missing) = env.targets.iter().find(|t| !waves.iter().any(|w| w.contains(t))) {
        return Err(Issue::new(at, format!("target `{missing}` of environment `{env_name}` is in no wave"))
            .hint(format!("add `\"{missing}\"` to one of the waves (or a new `[\"{missing}\"]` wave), or remove `waves` to deploy one wave per region")));
    }
    Ok(())
}

/// A hint for a name that is not among `known` (`[kind.NAME]` tables).
pub fn unknown_name_hint<'k>(name: &Name, known: impl Iterator<Item = &'k str> + Clone, kind: &str) -> String {
    if let Some(close) = did_you_mean(name.as_str(), known.clone()) {
        return format!("did you mean `{close}`?");
    }
    let known: Vec<String> = known.map(|k| format!("`{k}`")).collect();
    if known.is_empty() {
        format!("define it in a `[{kind}.{name}]` table")
    } else {
        format!("define it in a `[{kind}.{name}]` table; defined {kind}: {}", known.join(", "))
    }
}

const SOURCES: [&str; 4] = ["oci_layout", "oci_archive", "docker_archive", "base"];

fn check_image(image: &Image) -> Result<(), Issue> {
    let root = KeyPath::new();
    let present =
        [image.oci_layout.is_some(), image.oci_archive.is_some(), image.docker_archive.is_some(), image.base.is_some()];
    let set: Vec<&str> = SOURCES.iter().zip(present).filter_map(|(name, on)| on.then_some(*name)).collect();
    match set.as_slice() {
        [] => {
            return Err(Issue::new(root, "the image has no source")
                .hint("set one of `oci_layout`, `oci_archive`, `docker_archive` or `base`"));
        }
        [_] => {}
        [first, second, ..] => {
            return Err(Issue::new(
                root.key(*second),
                format!("`{first}` and `{second}` are both set: an image has exactly one source"),
            )
            .hint(format!("keep one of `{first}` and `{second}`")));
        }
    }
    if let Some(base) = &image.base
        && base != "scratch"
        && !base.contains("@sha256:")
    {
        return Err(Issue::new(root.key("base"), format!("base image `{base}` is not pinned by digest"))
            .hint("use `scratch` or a reference such as `public.ecr.aws/docker/library/alpine@sha256:...`, so the same release always builds the same image"));
    }
    if image.base.is_none() {
        let assembled_only = [
            ("layers", !image.layers.is_empty()),
            ("entrypoint", image.entrypoint.is_some()),
            ("cmd", image.cmd.is_some()),
            ("env", !image.env.is_empty()),
            ("labels", !image.labels.is_empty()),
            ("workdir", image.workdir.is_some()),
            ("user", image.user.is_some()),
        ];
        if let Some((key, _)) = assembled_only.iter().find(|(_, on)| *on) {
            return Err(Issue::new(
                root.key(*key),
                format!("`{key}` only applies to images gantry assembles from `base`"),
            )
            .hint(format!(
                "set `{key}` in the build that makes `{}`, or assemble the image with `base` and `layers`",
                set[0]
            )));
        }
    }
    for (i, layer) in image.layers.iter().enumerate() {
        if !layer.dest.starts_with('/') {
            return Err(Issue::new(
                root.key("layers").index(i).key("dest"),
                format!("layer destination `{}` is not an absolute path", layer.dest),
            )
            .hint(format!("write it from the image's root: `/{}`", layer.dest)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<(), Issue> {
        config(&toml::from_str(text).unwrap())
    }

    const PROJECT: &str = "[project]\nname = 'demo'\n";

    #[test]
    fn images_have_exactly_one_source() {
        let two = format!("{PROJECT}[images.x]\nrepository = 'r'\ninputs = []\noci_layout = 'a'\nbase = 'scratch'\n");
        let issue = check(&two).unwrap_err();
        assert_eq!(issue.path.to_string(), "images.x.base");
        let none = format!("{PROJECT}[images.x]\nrepository = 'r'\ninputs = []\n");
        assert_eq!(check(&none).unwrap_err().path.to_string(), "images.x");
        let cmd = format!("{PROJECT}[images.x]\nrepository = 'r'\ninputs = []\noci_layout = 'a'\ncmd = ['x']\n");
        assert_eq!(check(&cmd).unwrap_err().path.to_string(), "images.x.cmd");
        let dest = format!(
            "{PROJECT}[images.x]\nrepository = 'r'\ninputs = []\nbase = 'scratch'\nlayers = [{{ src = 'a', dest = 'app' }}]\n"
        );
        let issue = check(&dest).unwrap_err();
        assert_eq!(issue.path.to_string(), "images.x.layers[0].dest");
        assert_eq!(issue.hint.as_deref(), Some("write it from the image's root: `/app`"));
    }

    #[test]
    fn environments_refer_to_known_targets() {
        let target = "[targets.api]\nkind = 'local'\nlocal = { artifact = 'app', command = 'x', listen = 'l' }\n[artifacts.app]\nroot = 'app'\n";
        let missing = format!("{PROJECT}{target}[environments.dev]\ntargets = ['apj']\n");
        let issue = check(&missing).unwrap_err();
        assert_eq!(issue.path.to_string(), "environments.dev.targets[0]");
        assert_eq!(issue.hint.as_deref(), Some("did you mean `api`?"));
        let unlisted = format!(
            "{PROJECT}{target}[environments.dev]\ntargets = []\n[environments.dev.overrides.api]\nkind = 'ecs'\n"
        );
        let issue = check(&unlisted).unwrap_err();
        assert_eq!(issue.path.to_string(), "environments.dev.overrides.api");
        let approval = format!("{PROJECT}[environments.prd]\napproval = 'required'\n");
        assert_eq!(check(&approval).unwrap_err().path.to_string(), "environments.prd.approval");
        let good =
            format!("{PROJECT}{target}[environments.prd]\napproval = 'required'\npipeline = 'p'\ntargets = ['api']\n");
        assert_eq!(check(&good), Ok(()));
    }
}
