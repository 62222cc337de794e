//! The OCI image format's JSON documents (manifest, index, descriptor) and media types,
//! with the Docker schema 2 equivalents gantry reads and maps onto them.
//!
//! Manifests read from a source or a registry are pushed as the exact bytes they came
//! in (their digest is of those bytes); only manifests gantry builds are serialized here,
//! and serde writes the fields in declaration order, so the same image gives the same bytes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::digest::Digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// Every manifest type gantry understands, for `Accept` headers.
pub const MANIFEST_TYPES: [&str; 4] = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

/// A reference to a blob or manifest by digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Self {
        Self { media_type: media_type.to_owned(), digest, size, platform: None, annotations: BTreeMap::new() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image manifest (OCI or Docker schema 2: the same shape).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Manifest {
    /// An OCI manifest of `config` and `layers`.
    pub fn oci(config: Descriptor, layers: Vec<Descriptor>) -> Self {
        Self {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.to_owned()),
            config,
            layers,
            annotations: BTreeMap::new(),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a manifest serializes")
    }
}

/// An image index (OCI) or manifest list (Docker): one manifest per platform.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub manifests: Vec<Descriptor>,
}

/// Just the `mediaType` of a manifest, to tell an index from an image manifest.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Option<serde_json::Value>,
}

impl Probe {
    /// The media type a manifest declares, or the one its shape implies.
    pub fn kind(bytes: &[u8]) -> Result<String, serde_json::Error> {
        let probe: Self = serde_json::from_slice(bytes)?;
        Ok(match probe.media_type {
            Some(t) => t,
            None if probe.manifests.is_some() => OCI_INDEX.to_owned(),
            None => OCI_MANIFEST.to_owned(),
        })
    }
}

pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

/// The OCI media type for a layer of any of the types gantry reads.
pub fn oci_layer_type(media_type: &str) -> &str {
    match media_type {
        DOCKER_LAYER_GZIP => OCI_LAYER_GZIP,
        DOCKER_LAYER_TAR => OCI_LAYER_TAR,
        other => other,
    }
}

/// The descriptor in an index for linux/amd64 (or the only one there is).
pub fn pick_platform<'i>(index: &'i Index, os: &str, architecture: &str) -> Option<&'i Descriptor> {
    if let [only] = index.manifests.as_slice() {
        return Some(only);
    }
    index.manifests.iter().find(|d| d.platform.as_ref().is_some_and(|p| p.os == os && p.architecture == architecture))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_serialize_in_a_fixed_order() {
        let config = Descriptor::new(OCI_CONFIG, Digest::of(b"{}"), 2);
        let layer = Descriptor::new(OCI_LAYER_GZIP, Digest::of(b"x"), 1);
        let text = String::from_utf8(Manifest::oci(config, vec![layer]).to_bytes()).unwrap();
        assert!(
            text.starts_with(
                r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType""#
            ),
            "{text}"
        );
        assert!(!text.contains("annotations") && !text.contains("platform"), "{text}");
    }

    #[test]
    fn kinds_come_from_media_type_or_shape() {
        assert_eq!(Probe::kind(br#"{"mediaType":"x"}"#).unwrap(), "x");
        assert_eq!(Probe::kind(br#"{"manifests":[]}"#).unwrap(), OCI_INDEX);
        assert_eq!(Probe::kind(br#"{"layers":[]}"#).unwrap(), OCI_MANIFEST);
    }
}
