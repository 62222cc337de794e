//! Newtypes for configuration values that have rules. Each parses from its TOML
//! form and says what is wrong in words a user can act on; the loader adds the
//! file, line and column.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// Declares a string newtype that parses with `$parse` and has a schema with `$pattern`.
macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident, $pattern:expr, $parse:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                let check: fn(&str) -> Result<(), String> = $parse;
                check(s).map(|()| Self(s.to_owned()))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(de::Error::custom)
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({ "type": "string", "pattern": $pattern })
            }
        }
    };
}

string_newtype!(
    /// A name of an artifact, image, environment or target: lower-case letters,
    /// digits, `-` and `_`, starting with a letter, at most 63 characters.
    Name,
    "^[a-z][a-z0-9_-]{0,62}$",
    |s| {
        let ok = s.len() <= 63
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if ok {
            Ok(())
        } else {
            Err(format!(
                "invalid name `{s}`: use lower-case letters, digits, `-` and `_`, starting with a letter (at most 63)"
            ))
        }
    }
);

string_newtype!(
    /// An AWS region such as `us-east-1`.
    Region,
    "^[a-z]{2}(-[a-z]+)+-[0-9]+$",
    |s| {
        let parts: Vec<&str> = s.split('-').collect();
        let ok = parts.len() >= 3
            && parts[0].len() == 2
            && parts[..parts.len() - 1].iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
            && parts[parts.len() - 1].parse::<u8>().is_ok();
        if ok { Ok(()) } else { Err(format!("invalid AWS region `{s}`: expected something like `us-east-1`")) }
    }
);

string_newtype!(
    /// A target's region: an AWS region (`us-east-1`) or another provider's region name
    /// (`eastus`, `westeurope`): lower-case letters, digits and `-`, at most 40 characters.
    /// The AWS kinds also require the AWS form (`validate/target.rs`).
    RegionName,
    "^[a-z][a-z0-9-]{1,39}$",
    |s| {
        let ok = (2..=40).contains(&s.len())
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if ok {
            Ok(())
        } else {
            Err(format!(
                "invalid region `{s}`: expected a region name such as `us-east-1` or `eastus` (lower-case letters, digits and `-`)"
            ))
        }
    }
);

string_newtype!(
    /// A 12-digit AWS account id.
    AccountId,
    "^[0-9]{12}$",
    |s| {
        if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(())
        } else {
            Err(format!("invalid AWS account id `{s}`: expected 12 digits, quoted, e.g. \"123456789012\""))
        }
    }
);

string_newtype!(
    /// An IAM role ARN, `arn:PARTITION:iam::ACCOUNT:role/PATH/NAME`: the role gantry assumes
    /// for an environment (with the workflow's OIDC token in GitHub Actions).
    RoleArn,
    "^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$",
    |s| {
        let rest = s.strip_prefix("arn:").and_then(|r| r.split_once(":iam::"));
        let ok = rest.is_some_and(|(partition, tail)| {
            partition.starts_with("aws")
                && partition.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
                && tail.split_once(":role/").is_some_and(|(account, name)| {
                    account.len() == 12
                        && account.bytes().all(|b| b.is_ascii_digit())
                        && !name.is_empty()
                        && name.len() <= 512
                        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"+=,.@_/-".contains(&b))
                })
        });
        if ok {
            Ok(())
        } else {
            Err(format!(
                "invalid IAM role ARN `{s}`: expected arn:aws:iam::ACCOUNT:role/NAME, e.g. \"arn:aws:iam::123456789012:role/gantry-deploy\""
            ))
        }
    }
);

string_newtype!(
    /// An S3 bucket name (3 to 63 characters: lower-case letters, digits, `.` and `-`).
    BucketName,
    "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
    |s| {
        let ok = (3..=63).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            && !s.starts_with(['.', '-'])
            && !s.ends_with(['.', '-'])
            && !s.contains("..");
        if ok {
            Ok(())
        } else {
            Err(format!(
                "invalid S3 bucket name `{s}`: 3 to 63 lower-case letters, digits, `.` and `-`, starting and ending with a letter or digit"
            ))
        }
    }
);

string_newtype!(
    /// A path relative to gantry.toml that stays inside the project (no `..` above it, not absolute).
    RelPath,
    "^[^/].*$",
    |s| {
        let path = std::path::Path::new(s);
        if s.is_empty() {
            return Err("empty path: use `.` for the folder of gantry.toml".into());
        }
        if path.is_absolute() {
            return Err(format!("`{s}` is absolute: paths in gantry.toml are relative to its folder"));
        }
        let mut depth: i32 = 0;
        for part in path.components() {
            match part {
                std::path::Component::ParentDir => depth -= 1,
                std::path::Component::Normal(_) => depth += 1,
                _ => {}
            }
            if depth < 0 {
                return Err(format!("`{s}` leaves the project folder: paths must stay below gantry.toml"));
            }
        }
        Ok(())
    }
);

string_newtype!(
    /// A gitignore-style glob such as `**/*.js` or `!keep.me`.
    Glob,
    "^.+$",
    |s| {
        let pattern = s.strip_prefix('!').unwrap_or(s);
        globset::GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .map(|_| ())
            .map_err(|e| format!("invalid glob `{s}`: {}", e.kind()))
    }
);

impl Glob {
    /// The glob that matches every file.
    pub fn any() -> Self {
        Self("**".to_owned())
    }
}

string_newtype!(
    /// Where deployment state lives: `s3://bucket/prefix`, `file:///abs/path`, or a
    /// folder relative to gantry.toml.
    StateUrl,
    "^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?|file://.+|[^:]+)$",
    |s| {
        if let Some(rest) = s.strip_prefix("s3://") {
            let bucket = rest.split('/').next().unwrap_or_default();
            return bucket.parse::<BucketName>().map(|_| ()).map_err(|e| format!("in state `{s}`: {e}"));
        }
        if s.strip_prefix("file://").is_some_and(|p| !p.is_empty()) {
            return Ok(());
        }
        if s.is_empty() || s.contains("://") {
            return Err(format!(
                "invalid state location `{s}`: use `s3://bucket/prefix`, `file:///abs/path` or a folder"
            ));
        }
        Ok(())
    }
);

/// A duration written as `30s`, `5m`, `1h 30m` (humantime).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(std::time::Duration);

impl Duration {
    pub const fn from_secs(secs: u64) -> Self {
        Self(std::time::Duration::from_secs(secs))
    }

    pub fn get(self) -> std::time::Duration {
        self.0
    }
}

impl FromStr for Duration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        humantime::parse_duration(s)
            .map(Self)
            .map_err(|e| format!("invalid duration `{s}`: {e}; write e.g. `30s`, `5m` or `1h 30m`"))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        humantime::format_duration(self.0).fmt(f)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A duration such as `30s`, `5m` or `1h 30m`.",
            "pattern": "^([0-9]+ *[a-zµ]+ *)+$"
        })
    }
}

/// A whole percentage from 1 to 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Percent(u8);

impl Percent {
    pub fn new(value: u64) -> Result<Self, String> {
        match u8::try_from(value) {
            Ok(v @ 1..=100) => Ok(Self(v)),
            _ => Err(format!("invalid percentage {value}: expected a whole number from 1 to 100")),
        }
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = i64::deserialize(d)?;
        u64::try_from(v)
            .map_err(|_| format!("invalid percentage {v}: expected a whole number from 1 to 100"))
            .and_then(Self::new)
            .map_err(de::Error::custom)
    }
}

impl JsonSchema for Percent {
    fn schema_name() -> Cow<'static, str> {
        "Percent".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "integer", "minimum": 1, "maximum": 100 })
    }
}

/// A rolling batch: a number of replicas (`2`) or a share of them (`"25%"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchSize {
    Count(u32),
    Percent(Percent),
}

impl Serialize for BatchSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Count(n) => s.serialize_u32(*n),
            Self::Percent(p) => s.collect_str(&format_args!("{}%", p.get())),
        }
    }
}

impl<'de> Deserialize<'de> for BatchSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = BatchSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a replica count such as 2 or a share such as \"25%\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<BatchSize, E> {
                match u32::try_from(v) {
                    Ok(n) if n > 0 => Ok(BatchSize::Count(n)),
                    _ => Err(E::custom(format!("invalid batch size {v}: expected at least 1"))),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<BatchSize, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(-1))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<BatchSize, E> {
                let invalid = || {
                    E::custom(format!(
                        "invalid batch size `{v}`: expected a count such as 2 or a share such as \"25%\""
                    ))
                };
                let digits = v.strip_suffix('%').ok_or_else(invalid)?;
                let n: u64 = digits.trim().parse().map_err(|_| invalid())?;
                Percent::new(n).map(BatchSize::Percent).map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl JsonSchema for BatchSize {
    fn schema_name() -> Cow<'static, str> {
        "BatchSize".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "oneOf": [
                { "type": "integer", "minimum": 1 },
                { "type": "string", "pattern": "^[0-9]{1,3}%$" }
            ]
        })
    }
}

/// Expected HTTP status: `200`, `200-299` or `2xx`. Default `200-299`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRange {
    pub low: u16,
    pub high: u16,
}

impl StatusRange {
    pub fn contains(self, status: u16) -> bool {
        (self.low..=self.high).contains(&status)
    }
}

impl Default for StatusRange {
    fn default() -> Self {
        Self { low: 200, high: 299 }
    }
}

impl FromStr for StatusRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let invalid = || format!("invalid status `{s}`: expected `200`, `200-299` or `2xx`");
        let code = |t: &str| t.trim().parse::<u16>().ok().filter(|c| (100..=599).contains(c));
        let range = if let Some(class) = s.strip_suffix("xx") {
            let c = class.parse::<u16>().ok().filter(|c| (1..=5).contains(c)).ok_or_else(invalid)?;
            Self { low: c * 100, high: c * 100 + 99 }
        } else if let Some((a, b)) = s.split_once('-') {
            Self { low: code(a).ok_or_else(invalid)?, high: code(b).ok_or_else(invalid)? }
        } else {
            let c = code(s).ok_or_else(invalid)?;
            Self { low: c, high: c }
        };
        if range.low > range.high {
            return Err(format!("invalid status range `{s}`: the first code is above the second"));
        }
        Ok(range)
    }
}

impl fmt::Display for StatusRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.low == self.high { write!(f, "{}", self.low) } else { write!(f, "{}-{}", self.low, self.high) }
    }
}

impl Serialize for StatusRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for StatusRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = StatusRange;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a status such as 200, \"200-299\" or \"2xx\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<StatusRange, E> {
                v.to_string().parse().map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<StatusRange, E> {
                v.to_string().parse().map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StatusRange, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl JsonSchema for StatusRange {
    fn schema_name() -> Cow<'static, str> {
        "StatusRange".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "oneOf": [
                { "type": "integer", "minimum": 100, "maximum": 599 },
                { "type": "string", "pattern": "^([1-5]xx|[1-5][0-9]{2}(-[1-5][0-9]{2})?)$" }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rules() {
        assert!("api".parse::<Name>().is_ok());
        assert!("web-2_x".parse::<Name>().is_ok());
        assert!("Api".parse::<Name>().is_err());
        assert!("2api".parse::<Name>().is_err());
        assert!("a".repeat(64).parse::<Name>().is_err());
    }

    #[test]
    fn relative_paths_stay_inside() {
        assert!("app/dist".parse::<RelPath>().is_ok());
        assert!("a/../b".parse::<RelPath>().is_ok());
        assert!("../outside".parse::<RelPath>().is_err());
        assert!("a/../../x".parse::<RelPath>().is_err());
        assert!("/etc".parse::<RelPath>().is_err());
    }

    #[test]
    fn status_ranges_parse() {
        assert_eq!("2xx".parse::<StatusRange>(), Ok(StatusRange { low: 200, high: 299 }));
        assert_eq!("204".parse::<StatusRange>(), Ok(StatusRange { low: 204, high: 204 }));
        assert_eq!("200-399".parse::<StatusRange>(), Ok(StatusRange { low: 200, high: 399 }));
        assert!("299-200".parse::<StatusRange>().is_err());
        assert!("6xx".parse::<StatusRange>().is_err());
        assert!("abc".parse::<StatusRange>().is_err());
    }

    #[test]
    fn durations_and_percentages() {
        assert_eq!("5m".parse::<Duration>().unwrap().get().as_secs(), 300);
        assert!("five minutes".parse::<Duration>().is_err());
        assert!(Percent::new(0).is_err());
        assert!(Percent::new(101).is_err());
        assert_eq!(Percent::new(100).unwrap().get(), 100);
    }

    #[test]
    fn other_values() {
        assert!("us-east-1".parse::<Region>().is_ok());
        assert!("us-gov-west-1".parse::<Region>().is_ok());
        assert!("useast1".parse::<Region>().is_err());
        assert!("123456789012".parse::<AccountId>().is_ok());
        assert!("12345".parse::<AccountId>().is_err());
        assert!("arn:aws:iam::123456789012:role/gantry-deploy".parse::<RoleArn>().is_ok());
        assert!("arn:aws-us-gov:iam::123456789012:role/ci/gantry".parse::<RoleArn>().is_ok());
        assert!("arn:aws:iam::1234:role/x".parse::<RoleArn>().is_err());
        assert!("arn:aws:iam::123456789012:user/x".parse::<RoleArn>().is_err());
        assert!("gantry-deploy".parse::<RoleArn>().is_err());
        assert!("acme-releases".parse::<BucketName>().is_ok());
        assert!("Acme".parse::<BucketName>().is_err());
        assert!("ab".parse::<BucketName>().is_err());
        assert!("s3://acme-state/prd".parse::<StateUrl>().is_ok());
        assert!(".gantry/state/dev".parse::<StateUrl>().is_ok());
        assert!("http://x".parse::<StateUrl>().is_err());
        assert!("**/*.js".parse::<Glob>().is_ok());
        assert!("a[".parse::<Glob>().is_err());
    }
}
