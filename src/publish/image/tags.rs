//! Tags: the version tag for `--version`, and whether a tag may move in a repository
//! (ECR's `imageTagMutability`, with its wildcard exclusion filters).

use semver::Version;

/// The tag for a release version: tags cannot hold `+`, so build metadata is joined with `_`
/// (`1.2.0+build.5` becomes `1.2.0_build.5`).
pub fn version_tag(version: &Version) -> String {
    version.to_string().replace('+', "_")
}

/// Whether tags can be moved once pushed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagPolicy {
    /// The repository's default: `IMMUTABLE*` settings.
    pub immutable: bool,
    /// Wildcard filters (`*` matches any run of characters) for tags that take the
    /// opposite of the default.
    pub exceptions: Vec<String>,
}

impl TagPolicy {
    /// From ECR's `imageTagMutability` and exclusion filters.
    pub fn from_ecr(mutability: Option<&str>, filters: Vec<String>) -> Self {
        match mutability {
            Some("IMMUTABLE") => Self { immutable: true, exceptions: Vec::new() },
            Some("IMMUTABLE_WITH_EXCLUSION") => Self { immutable: true, exceptions: filters },
            Some("MUTABLE_WITH_EXCLUSION") => Self { immutable: false, exceptions: filters },
            _ => Self::default(),
        }
    }

    pub fn is_immutable(&self, tag: &str) -> bool {
        self.immutable != self.exceptions.iter().any(|f| wildcard(f.as_bytes(), tag.as_bytes()))
    }
}

fn wildcard(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| wildcard(rest, &text[i..])),
        Some((c, rest)) => text.split_first().is_some_and(|(t, tail)| t == c && wildcard(rest, tail)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_tags_replace_plus() {
        assert_eq!(version_tag(&Version::parse("1.2.0").unwrap()), "1.2.0");
        assert_eq!(version_tag(&Version::parse("1.2.0-rc.1+build.5").unwrap()), "1.2.0-rc.1_build.5");
    }

    #[test]
    fn mutability_follows_ecr() {
        assert!(!TagPolicy::from_ecr(Some("MUTABLE"), vec![]).is_immutable("1.0.0"));
        assert!(!TagPolicy::from_ecr(None, vec![]).is_immutable("1.0.0"));
        assert!(TagPolicy::from_ecr(Some("IMMUTABLE"), vec![]).is_immutable("latest"));
        let except_latest =
            TagPolicy::from_ecr(Some("IMMUTABLE_WITH_EXCLUSION"), vec!["latest".into(), "dev-*".into()]);
        assert!(!except_latest.is_immutable("latest"));
        assert!(!except_latest.is_immutable("dev-42"));
        assert!(except_latest.is_immutable("1.0.0"));
        let only_releases = TagPolicy::from_ecr(Some("MUTABLE_WITH_EXCLUSION"), vec!["*.*.*".into()]);
        assert!(only_releases.is_immutable("1.2.3"));
        assert!(!only_releases.is_immutable("inputs-0123"));
    }

    #[test]
    fn wildcards_match_runs() {
        assert!(wildcard(b"a*c", b"abbbc"));
        assert!(wildcard(b"*", b""));
        assert!(!wildcard(b"a*c", b"abd"));
    }
}
