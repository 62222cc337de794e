//! `release.json` (the release manifest) and `SHA256SUMS`: what a release is made of,
//! written after every archive is complete, so their presence means the release is whole.

use serde::{Deserialize, Serialize};

/// The release manifest. Reproducible: `created` is the source date, not the clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version of this file.
    pub schema: u32,
    pub project: String,
    pub version: semver::Version,
    /// Full git commit hash, when packaged from a git checkout.
    pub commit: Option<String>,
    /// RFC 3339 UTC time of the source (SOURCE_DATE_EPOCH or the commit time).
    pub created: String,
    pub source_date_epoch: i64,
    pub artifacts: Vec<ManifestArtifact>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestArtifact {
    pub name: String,
    /// File name of the zip, beside release.json.
    pub file: String,
    pub size: u64,
    pub sha256: String,
    /// Number of entries in the zip.
    pub entries: usize,
}

pub const MANIFEST_FILE: &str = "release.json";
pub const SUMS_FILE: &str = "SHA256SUMS";
pub const SCHEMA: u32 = 1;

impl Manifest {
    /// `sha256sum -c` format: `HEX  FILE` lines, sorted by file name.
    pub fn sha256sums(&self) -> String {
        let mut lines: Vec<String> = self.artifacts.iter().map(|a| format!("{}  {}\n", a.sha256, a.file)).collect();
        lines.sort();
        lines.concat()
    }

    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("manifest serializes");
        s.push('\n');
        s
    }
}

/// The zip file name for an artifact: `NAME-VERSION.zip`, with semver build metadata's
/// `+` written as `_` (a `+` in an S3 key or URL is read as a space by some clients).
pub fn archive_file_name(artifact: &str, version: &semver::Version) -> String {
    format!("{artifact}-{}.zip", version.to_string().replace('+', "_"))
}

/// RFC 3339 UTC for a unix time.
pub fn rfc3339(epoch: i64) -> String {
    jiff::Timestamp::from_second(epoch)
        .map_or_else(|_| epoch.to_string(), |t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_avoid_plus() {
        let v = semver::Version::parse("1.2.4-dev.5+gabc1234").unwrap();
        assert_eq!(archive_file_name("app", &v), "app-1.2.4-dev.5_gabc1234.zip");
    }

    #[test]
    fn sums_are_sorted_and_in_sha256sum_format() {
        let a = |name: &str, sha: &str| ManifestArtifact {
            name: name.into(),
            file: format!("{name}.zip"),
            size: 1,
            sha256: sha.into(),
            entries: 1,
        };
        let m = Manifest {
            schema: SCHEMA,
            project: "p".into(),
            version: semver::Version::new(1, 0, 0),
            commit: None,
            created: rfc3339(0),
            source_date_epoch: 0,
            artifacts: vec![a("web", "bb"), a("api", "aa")],
        };
        assert_eq!(m.sha256sums(), "aa  api.zip\nbb  web.zip\n");
        assert_eq!(m.created, "1970-01-01T00:00:00Z");
    }
}
