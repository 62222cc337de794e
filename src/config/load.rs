//! The loading pipeline, from text to checked, typed values: parse into a spanned
//! tree, apply `GANTRY_*` overrides to it, deserialize `Config` with key paths,
//! validate, then deep-merge each environment's overrides over its targets and
//! deserialize and validate those too. Every failure becomes a located `Diagnostic`.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Deserialize;
use serde::de::IntoDeserializer;
use toml::de::{DeTable, Deserializer};

use super::diagnostic::{Diagnostic, Sources};
use super::model::{Config, Target};
use super::tree::{self, KeyPath};
use super::values::Name;
use super::{env, validate};

/// Each environment's targets with its overrides merged in.
pub type EnvTargets = BTreeMap<Name, BTreeMap<Name, Target>>;

/// Loads gantry.toml from `text`; `file` is the name used in messages, `vars` the
/// process environment.
pub fn from_text(file: String, text: &str, vars: &[(String, String)]) -> Result<(Config, EnvTargets), Box<Diagnostic>> {
    let overrides = env::collect(vars, text.len() + 1);
    let sources = Sources::new(file, text, &overrides);
    let mut root = DeTable::parse(text).map_err(|e| Box::new(sources.syntax(&e)))?;
    for over in &overrides {
        env::apply(root.get_mut(), over)
            .map_err(|message| Box::new(sources.at(over.name_span(), &over.path(), message, None)))?;
    }
    let mut config: Config = typed(Deserializer::from(root.clone())).map_err(|(path, e)| {
        let span = error_span(root.get_ref(), &path, &e);
        Box::new(sources.deserialize(&path, span, &e))
    })?;
    validate::config(&config).map_err(|issue| {
        let span = tree::locate(root.get_ref(), &issue.path, root.span());
        let message = format!("`{}`: {}", issue.path, issue.message);
        Box::new(sources.at(span, &issue.path, message, issue.hint))
    })?;
    config.targets.values_mut().for_each(Target::resolve_preset);
    let mut env_targets = EnvTargets::new();
    for (env_name, environment) in &config.environments {
        let mut targets = BTreeMap::new();
        for name in &environment.targets {
            let target = env_target(&sources, root.get_ref(), &config, env_name, name)?;
            targets.insert(name.clone(), target);
        }
        env_targets.insert(env_name.clone(), targets);
    }
    Ok((config, env_targets))
}

/// Target `name` as environment `env` deploys it: `[environments.ENV.overrides.NAME]`
/// merged over `[targets.NAME]`, deserialized and checked. An error in a value the
/// override sets is reported at the override; one in a value it leaves alone is
/// reported at the target, noting the environment.
fn env_target(
    sources: &Sources,
    root: &DeTable<'_>,
    cfg: &Config,
    env: &Name,
    name: &Name,
) -> Result<Target, Box<Diagnostic>> {
    let base_path = KeyPath::new().key("targets").key(name.as_str());
    let over_path = KeyPath::new().key("environments").key(env.as_str()).key("overrides").key(name.as_str());
    let mut merged = tree::get(root, &base_path).expect("validated: an environment's targets exist").clone();
    let over = tree::get(root, &over_path);
    if let Some(over) = over {
        tree::merge(&mut merged, over.clone());
    }
    let over = over.and_then(|o| o.get_ref().as_table());
    // Where a key of the merged target was written: in the override if it sets it.
    let in_override = |rel: &KeyPath| over.is_some_and(|o| tree::get(o, rel).is_some());
    let place = |rel: &KeyPath| {
        if in_override(rel) { over_path.join(rel) } else { base_path.join(rel) }
    };
    let noted = |rel: &KeyPath, message: String| {
        if in_override(rel) { message } else { format!("{message} (in environment `{env}`, with its overrides)") }
    };
    let merged_table = merged.get_ref().as_table().expect("a target is a table");
    let target: Target = typed(merged.clone().into_deserializer()).map_err(|(rel, e)| {
        let span = error_span(merged_table, &rel, &e);
        let mut diagnostic = sources.deserialize(&place(&rel), span, &e);
        diagnostic.message = noted(&rel, diagnostic.message);
        Box::new(diagnostic)
    })?;
    let mut target = target;
    validate::target(name, &target, cfg).map_err(|issue| {
        let span = tree::locate(merged_table, &issue.path, merged.span());
        let path = place(&issue.path);
        let message = noted(&issue.path, format!("`{path}`: {}", issue.message));
        let hint = if issue.unwanted && !in_override(&issue.path) {
            Some(format!(
                "overrides are merged into `[targets.{name}]` and cannot remove `{}` from it: \
                 remove it there, or give `{env}` a target of its own",
                issue.path
            ))
        } else {
            issue.hint
        };
        Box::new(sources.at(span, &path, message, hint))
    })?;
    target.resolve_preset();
    Ok(target)
}

/// Where to point for a deserialization error at `path`: at the value there, when the
/// tree has it (toml gives an error raised after an array element was read the span of
/// the whole array), else where toml says. Unknown fields keep toml's span: their key.
fn error_span(table: &DeTable<'_>, path: &KeyPath, error: &toml::de::Error) -> Range<usize> {
    let span = error.span().unwrap_or(0..0);
    if error.message().starts_with("unknown field") {
        return span;
    }
    tree::get(table, path).map_or(span, |value| value.span())
}

/// `T` from `de`, or the key path of the error and the error.
fn typed<'de, T, D>(de: D) -> Result<T, (KeyPath, toml::de::Error)>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de, Error = toml::de::Error>,
{
    serde_path_to_error::deserialize(de).map_err(|e| (KeyPath::from(e.path()), e.into_inner()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Location;

    const BASE: &str = "[project]\nname = 'demo'\n\
        [images.img]\nrepository = 'r'\ninputs = []\noci_layout = 'x'\n\
        [targets.api]\nkind = 'ecs'\necs = { cluster = 'c', service = 's', container = 'c', image = 'img' }\n\
        [environments.prd]\ntargets = ['api']\n";

    fn load(text: &str, vars: &[(&str, &str)]) -> Result<(Config, EnvTargets), Box<Diagnostic>> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        from_text("gantry.toml".into(), text, &vars)
    }

    fn n(name: &str) -> Name {
        name.parse().unwrap()
    }

    fn line(d: &Diagnostic) -> usize {
        match d.location {
            Location::File { line, .. } => line,
            Location::Env { .. } => 0,
        }
    }

    #[test]
    fn spans_survive_the_path_tracking_wrapper() {
        let text = "[project]\nname = 'demo'\n[[targets.api.health]]\nurl = 'u'\ninterval = 'soon'\n";
        let d = load(text, &[]).unwrap_err();
        assert_eq!(d.field, "targets.api.health[0].interval");
        assert_eq!(
            d.location,
            Location::File {
                file: "gantry.toml".into(),
                line: 5,
                column: 12,
                source_line: "interval = 'soon'".into(),
                width: 6,
            }
        );
    }

    #[test]
    fn environment_targets_merge_their_overrides() {
        let text = format!("{BASE}[environments.prd.overrides.api]\necs = {{ cluster = 'prd' }}\n");
        let (_, env_targets) = load(&text, &[]).unwrap();
        let ecs = env_targets[&n("prd")][&n("api")].ecs.as_ref().unwrap();
        assert_eq!((ecs.cluster.as_str(), ecs.service.as_str()), ("prd", "s"));
    }

    #[test]
    fn an_error_in_an_override_points_at_the_override() {
        let text = format!(
            "{BASE}[environments.prd.overrides.api]\nstrategy = {{ type = 'canary', steps = [50, 20, 100] }}\n"
        );
        let d = load(&text, &[]).unwrap_err();
        assert_eq!(line(&d), 13);
        assert_eq!(d.field, "environments.prd.overrides.api.strategy.steps[1]");
        let kind = format!("{BASE}[environments.prd.overrides.api]\nkind = 'lambda'\n");
        let d = load(&kind, &[]).unwrap_err();
        assert_eq!(line(&d), 13);
        assert_eq!(d.field, "environments.prd.overrides.api.kind");
    }

    #[test]
    fn env_overrides_apply_and_their_errors_name_the_variable() {
        let over = [("GANTRY_TARGETS__API__ECS__CLUSTER", "from-env")];
        let (config, env_targets) = load(BASE, &over).unwrap();
        assert_eq!(config.targets[&n("api")].ecs.as_ref().unwrap().cluster, "from-env");
        assert_eq!(env_targets[&n("prd")][&n("api")].ecs.as_ref().unwrap().cluster, "from-env");
        let d = load(BASE, &[("GANTRY_ENVIRONMENTS__PRD__REGION", "useast1")]).unwrap_err();
        assert!(matches!(&d.location, Location::Env { name, .. } if name == "GANTRY_ENVIRONMENTS__PRD__REGION"));
        assert_eq!(d.field, "environments.prd.region");
    }
}
