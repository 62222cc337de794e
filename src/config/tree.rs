//! The spanned TOML tree gantry.toml is parsed into, before it becomes typed: key
//! paths into it, finding the span of a path, deep-merging one table over another,
//! and moving the spans of a value parsed from somewhere else (an environment
//! variable) into the shared span space. Every span travels with its value, so a
//! merged value still points at the line it was written on.

use std::fmt;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// Where a value sits in gantry.toml, e.g. `targets.api.health[0].interval`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(Vec<Seg>);

impl KeyPath {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn key(&self, key: impl Into<String>) -> Self {
        self.with(Seg::Key(key.into()))
    }

    pub fn index(&self, index: usize) -> Self {
        self.with(Seg::Index(index))
    }

    /// `self` followed by every step of `rest`.
    pub fn join(&self, rest: &KeyPath) -> Self {
        Self(self.0.iter().chain(&rest.0).cloned().collect())
    }

    /// The path without its last step, and that step.
    pub fn split_last(&self) -> Option<(KeyPath, &Seg)> {
        let (last, parent) = self.0.split_last()?;
        Some((Self(parent.to_vec()), last))
    }

    pub fn segs(&self) -> &[Seg] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn with(&self, seg: Seg) -> Self {
        let mut segs = self.0.clone();
        segs.push(seg);
        Self(segs)
    }
}

impl From<&serde_path_to_error::Path> for KeyPath {
    fn from(path: &serde_path_to_error::Path) -> Self {
        use serde_path_to_error::Segment;
        Self(
            path.iter()
                .filter_map(|seg| match seg {
                    Segment::Seq { index } => Some(Seg::Index(*index)),
                    Segment::Map { key } => Some(Seg::Key(key.clone())),
                    Segment::Enum { variant } => Some(Seg::Key(variant.clone())),
                    Segment::Unknown => None,
                })
                .collect(),
        )
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Index(index) => write!(f, "[{index}]")?,
                Seg::Key(key) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let bare =
                        !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                    if bare {
                        f.write_str(key)?;
                    } else {
                        write!(f, "{key:?}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The values along `path` inside `table`, outermost first, as far as the path exists.
pub fn trail<'t, 'i>(table: &'t DeTable<'i>, path: &KeyPath) -> Vec<&'t Spanned<DeValue<'i>>> {
    let mut found = Vec::new();
    let mut segs = path.segs().iter();
    let Some(Seg::Key(first)) = segs.next() else {
        return found;
    };
    let Some(mut node) = table.get(first.as_str()) else {
        return found;
    };
    found.push(node);
    for seg in segs {
        let next = match (seg, node.get_ref()) {
            (Seg::Key(key), DeValue::Table(t)) => t.get(key.as_str()),
            (Seg::Index(i), DeValue::Array(a)) => a.get(*i),
            _ => None,
        };
        let Some(next) = next else { break };
        node = next;
        found.push(node);
    }
    found
}

/// The value at exactly `path`, if it is there.
pub fn get<'t, 'i>(table: &'t DeTable<'i>, path: &KeyPath) -> Option<&'t Spanned<DeValue<'i>>> {
    let found = trail(table, path);
    (found.len() == path.segs().len()).then(|| found.last().copied()).flatten()
}

/// The span of the deepest value along `path` that exists, or `fallback`.
pub fn locate(table: &DeTable<'_>, path: &KeyPath, fallback: Range<usize>) -> Range<usize> {
    trail(table, path).last().map_or(fallback, |v| v.span())
}

/// Merges `over` into `base`: tables merge key by key, recursively; anything else
/// (arrays included) replaces what was there, key span and all.
pub fn merge<'i>(base: &mut Spanned<DeValue<'i>>, over: Spanned<DeValue<'i>>) {
    let DeValue::Table(base_table) = base.get_mut() else {
        *base = over;
        return;
    };
    let DeValue::Table(over_table) = over.get_ref() else {
        *base = over;
        return;
    };
    for (key, value) in over_table.clone() {
        let both_tables = value.get_ref().is_table()
            && base_table.get(key.get_ref().as_ref()).is_some_and(|old| old.get_ref().is_table());
        if both_tables {
            let old = base_table.get_mut(key.get_ref().as_ref()).expect("checked above");
            merge(old, value);
        } else {
            base_table.remove(key.get_ref().as_ref());
            base_table.insert(key, value);
        }
    }
}

/// `value` with every span inside it moved `by` bytes later.
pub fn shift(value: Spanned<DeValue<'_>>, by: usize) -> Spanned<DeValue<'_>> {
    let span = value.span();
    let inner = match value.into_inner() {
        DeValue::Table(table) => DeValue::Table(
            table
                .into_iter()
                .map(|(key, v)| {
                    let key_span = key.span();
                    let key = Spanned::new(moved(key_span, by), key.into_inner());
                    (key, shift(v, by))
                })
                .collect(),
        ),
        DeValue::Array(array) => {
            let mut out = DeArray::new();
            for item in array.iter() {
                out.push(shift(item.clone(), by));
            }
            DeValue::Array(out)
        }
        other => other,
    };
    Spanned::new(moved(span, by), inner)
}

fn moved(span: Range<usize>, by: usize) -> Range<usize> {
    span.start + by..span.end + by
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Spanned<DeValue<'_>> {
        let table = DeTable::parse(text).unwrap();
        Spanned::new(table.span(), DeValue::Table(table.into_inner()))
    }

    fn table<'a, 'i>(value: &'a Spanned<DeValue<'i>>) -> &'a DeTable<'i> {
        value.get_ref().as_table().unwrap()
    }

    #[test]
    fn paths_display_like_toml() {
        let path = KeyPath::new().key("targets").key("api").key("health").index(0).key("interval");
        assert_eq!(path.to_string(), "targets.api.health[0].interval");
        assert_eq!(KeyPath::new().key("env").key("A.B").to_string(), "env.\"A.B\"");
    }

    #[test]
    fn locate_finds_the_deepest_existing_value() {
        let text = "[a]\nb = { c = 1 }\nlist = [{ x = 1 }, { x = 22 }]\n";
        let tree = parse(text);
        let path = KeyPath::new().key("a").key("b").key("c");
        assert_eq!(&text[locate(table(&tree), &path, 0..0)], "1");
        let missing = KeyPath::new().key("a").key("b").key("zzz");
        assert_eq!(&text[locate(table(&tree), &missing, 0..0)], "{ c = 1 }");
        assert!(get(table(&tree), &missing).is_none());
        let item = KeyPath::new().key("a").key("list").index(1).key("x");
        assert_eq!(&text[locate(table(&tree), &item, 0..0)], "22");
    }

    #[test]
    fn merge_is_deep_for_tables_and_replaces_the_rest() {
        let text = "[base]\nkind = 'ecs'\nlist = [1, 2]\necs = { cluster = 'a', service = 's' }\n\
                    [over]\nlist = [3]\necs = { cluster = 'b' }\n";
        let tree = parse(text);
        let mut base = table(&tree)["base"].clone();
        merge(&mut base, table(&tree)["over"].clone());
        let merged = base.get_ref().as_table().unwrap();
        assert_eq!(merged["kind"].get_ref().as_str(), Some("ecs"));
        assert_eq!(merged["list"].get_ref().as_array().unwrap().len(), 1);
        let ecs = merged["ecs"].get_ref().as_table().unwrap();
        assert_eq!(&text[ecs["cluster"].span()], "'b'");
        assert_eq!(&text[ecs["service"].span()], "'s'");
    }

    #[test]
    fn shift_moves_every_span() {
        let value = DeValue::parse("{ a = [1, 2] }").unwrap();
        let moved = shift(value, 100);
        assert_eq!(moved.span(), 100..114);
        let (key, list) = moved.get_ref().as_table().unwrap().iter().next().unwrap();
        assert_eq!(key.span(), 102..103);
        assert_eq!(list.get_ref().as_array().unwrap()[1].span(), 110..111);
    }
}
