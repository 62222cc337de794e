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
    /// The zip's CRC64NVME as S3 reports a full-object checksum (base64 of the 8 big-endian
    /// bytes): what `aws s3api head-object --checksum-mode ENABLED` shows for the object
    /// `publish` uploads in parts. Absent from manifests written before gantry recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc64nvme: Option<String>,
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

/// A CRC64NVME as S3 writes it: base64 of its 8 big-endian bytes.
pub fn crc64nvme_b64(crc: u64) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes())
}

/// The CRC64NVME in S3's form (`crc64nvme_b64`), or `None` when it is not one.
pub fn parse_crc64nvme(b64: &str) -> Option<u64> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
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
            crc64nvme: None,
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

    #[test]
    fn crc64nvme_is_written_as_s3_writes_it_and_read_back() {
        // The CRC-64/NVME check value (the CRC of "123456789", from the NVMe spec and the
        // CRC catalogue) and S3's form of it: base64 of the 8 big-endian bytes.
        let crc = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Nvme, b"123456789");
        assert_eq!(crc, 0xAE8B_1486_0A79_9888);
        assert_eq!(crc64nvme_b64(crc), "rosUhgp5mIg=");
        assert_eq!(parse_crc64nvme("rosUhgp5mIg="), Some(crc));
        assert_eq!(parse_crc64nvme("rosUhgp5"), None, "six bytes");
        assert_eq!(parse_crc64nvme("not base64!"), None);
    }

    #[test]
    fn a_manifest_without_crc64nvme_still_reads() {
        let old = r#"{"name":"api","file":"api-1.0.0.zip","size":3,"sha256":"aa","entries":1}"#;
        let artifact: ManifestArtifact = serde_json::from_str(old).unwrap();
        assert_eq!(artifact.crc64nvme, None);
        assert!(!serde_json::to_string(&artifact).unwrap().contains("crc64nvme"), "nothing invented on write");
    }
}
