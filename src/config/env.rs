//! `GANTRY_*` environment overrides of gantry.toml keys.
//!
//! `GANTRY_A__B__C=value` sets key `a.b.c` (segments lower-cased; `_` also matches an
//! existing key spelt with `-`). The value is read as a TOML value when it parses
//! (`3`, `true`, `[10, 50, 100]`, `"quoted"`), else taken as a string. Variables
//! without `__` (`GANTRY_ENV`, `GANTRY_CONFIG`, ...) are command-line settings and
//! are left alone here.
//!
//! Each override is given its own stretch of the span space after the file's text,
//! laid out as `NAME=value`, so an error in an overridden value can name the variable.

use std::borrow::Cow;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::tree::{self, KeyPath};

const PREFIX: &str = "GANTRY_";
const SEPARATOR: &str = "__";

/// One `GANTRY_A__B=value` variable that overrides a key of the file.
#[derive(Debug, Clone)]
pub struct EnvOverride<'a> {
    pub name: &'a str,
    pub value: &'a str,
    keys: Vec<String>,
    /// Where `NAME=value` starts in the span space shared with the file.
    pub offset: usize,
}

impl EnvOverride<'_> {
    /// The span of the variable's name.
    pub fn name_span(&self) -> Range<usize> {
        self.offset..self.offset + self.name.len()
    }

    /// The span of the variable's value.
    pub fn value_span(&self) -> Range<usize> {
        let start = self.offset + self.name.len() + 1;
        start..start + self.value.len()
    }

    /// The key the variable sets, e.g. `environments.prd.region`.
    pub fn path(&self) -> KeyPath {
        self.keys.iter().fold(KeyPath::new(), |p, k| p.key(k))
    }
}

/// The variables of `vars` that override file keys, sorted by name so the result does
/// not depend on the order of the environment, with spans from `first_offset` on.
pub fn collect(vars: &[(String, String)], first_offset: usize) -> Vec<EnvOverride<'_>> {
    let mut picked: Vec<&(String, String)> = vars
        .iter()
        .filter(|(name, _)| name.strip_prefix(PREFIX).is_some_and(|rest| rest.contains(SEPARATOR)))
        .collect();
    picked.sort();
    let mut offset = first_offset;
    picked
        .into_iter()
        .map(|(name, value)| {
            let keys = name[PREFIX.len()..].split(SEPARATOR).map(str::to_ascii_lowercase).collect();
            let o = EnvOverride { name, value, keys, offset };
            offset += name.len() + value.len() + 2;
            o
        })
        .collect()
}

/// Sets the key `over` names in `root`, creating tables on the way. The error says
/// why the variable cannot be applied.
pub fn apply<'a>(root: &mut DeTable<'a>, over: &EnvOverride<'a>) -> Result<(), String> {
    if over.keys.iter().any(String::is_empty) {
        return Err(format!("`{}` does not name a key: it has an empty part between `__` separators", over.name));
    }
    let (last, parents) = over.keys.split_last().expect("a name with `__` has two parts");
    let mut table = root;
    let mut walked = KeyPath::new();
    for key in parents {
        let key = existing_key(table, key);
        walked = walked.key(&key);
        let node = table
            .entry(Spanned::new(over.name_span(), Cow::Owned(key)))
            .or_insert_with(|| Spanned::new(over.value_span(), DeValue::Table(DeTable::new())));
        table = match node.get_mut() {
            DeValue::Table(t) => t,
            other => {
                return Err(format!(
                    "cannot set `{}`: `{walked}` is {} {}, not a table",
                    over.path(),
                    article(other.type_str()),
                    other.type_str()
                ));
            }
        };
    }
    let key = existing_key(table, last);
    table.remove(key.as_str());
    table.insert(Spanned::new(over.name_span(), Cow::Owned(key)), parse_value(over.value, over.value_span().start));
    Ok(())
}

/// `value` as a TOML value if it parses as one, else as a string, spanned from `offset`.
fn parse_value(value: &str, offset: usize) -> Spanned<DeValue<'_>> {
    match DeValue::parse(value) {
        Ok(parsed) => tree::shift(parsed, offset),
        Err(_) => Spanned::new(offset..offset + value.len(), DeValue::String(Cow::Borrowed(value))),
    }
}

/// The key of `table` that `key` means: itself, or an existing key that is spelt
/// with `-` where the variable (which cannot hold `-`) has `_`.
fn existing_key(table: &DeTable<'_>, key: &str) -> String {
    if table.contains_key(key) {
        return key.to_owned();
    }
    table.keys().map(|k| k.get_ref().as_ref()).find(|k| k.replace('-', "_") == key).unwrap_or(key).to_owned()
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn only_variables_with_a_separator_override_keys() {
        let env =
            vars(&[("GANTRY_ENV", "prd"), ("GANTRY_LOG", "debug"), ("PATH", "/bin"), ("GANTRY_PROJECT__NAME", "demo")]);
        let found = collect(&env, 10);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path().to_string(), "project.name");
        assert_eq!(found[0].name_span(), 10..30);
        assert_eq!(found[0].value_span(), 31..35);
    }

    #[test]
    fn values_are_toml_when_they_parse() {
        let text = "[environments.prd]\nregion = 'us-east-1'\n[targets.my-api]\nkind = 'ecs'\n";
        let env = vars(&[
            ("GANTRY_ENVIRONMENTS__PRD__REGION", "eu-west-1"),
            ("GANTRY_TARGETS__MY_API__STRATEGY__STEPS", "[10, 100]"),
            ("GANTRY_ENVIRONMENTS__DEV__TARGETS", "[\"web\"]"),
        ]);
        let mut root = DeTable::parse(text).unwrap().into_inner();
        for o in collect(&env, text.len() + 1) {
            apply(&mut root, &o).unwrap();
        }
        let at = |p: &str| {
            let path = p.split('.').fold(KeyPath::new(), |k, s| k.key(s));
            tree::get(&root, &path).map(|v| v.get_ref().clone())
        };
        assert_eq!(at("environments.prd.region").unwrap().as_str(), Some("eu-west-1"));
        let steps = at("targets.my-api.strategy.steps").unwrap();
        assert_eq!(steps.as_array().unwrap().len(), 2);
        assert!(at("targets.my_api").is_none());
        assert!(at("environments.dev.targets").unwrap().is_array());
    }

    #[test]
    fn a_value_in_the_way_is_an_error_naming_the_variable() {
        let text = "[targets.api]\nkind = 'ecs'\n";
        let env = vars(&[("GANTRY_TARGETS__API__KIND__X", "1")]);
        let mut root = DeTable::parse(text).unwrap().into_inner();
        let err = apply(&mut root, &collect(&env, 0)[0]).unwrap_err();
        assert_eq!(err, "cannot set `targets.api.kind.x`: `targets.api.kind` is a string, not a table");
        let empty = vars(&[("GANTRY_TARGETS____KIND", "1")]);
        assert!(apply(&mut root, &collect(&empty, 0)[0]).is_err());
    }
}
