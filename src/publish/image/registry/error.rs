//! Registry failures, each naming the registry and the operation, with the registry's
//! own error codes and messages (the OCI `{"errors": [...]}` body) when it sent them.

use serde::Deserialize;

use crate::publish::image::digest::Digest;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(
        "`{registry}` is not a registry address (expected host[:port], e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com)"
    )]
    BadAddress { registry: String },
    #[error("refusing plain HTTP to {registry}: it is only allowed for loopback registries")]
    Insecure { registry: String },
    #[error("cannot {operation} ({registry})")]
    Transport {
        registry: String,
        operation: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("registry {registry} rejected the credentials{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Unauthorized { registry: String, detail: Option<String> },
    #[error("cannot get registry credentials: {message}")]
    Credentials { message: String },
    #[error("cannot {operation} ({registry}): HTTP {status}{}", if detail.is_empty() { String::new() } else { format!(": {detail}") })]
    Status { registry: String, operation: String, status: u16, detail: String },
    #[error("registry {registry} answered {operation} with something gantry cannot use: {detail}")]
    Protocol { registry: String, operation: String, detail: String },
    #[error("blob content hashes to {actual}, not to its digest {expected}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("interrupted")]
    Interrupted,
    #[error("cannot read {what}")]
    Local {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl RegistryError {
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Unauthorized { .. } => Some(
                "gantry logs in with the token from ECR GetAuthorizationToken: check that the AWS credentials belong \
                 to the registry's account and that `registry` (GANTRY_ENVIRONMENTS__<ENV>__REGISTRY) names it"
                    .into(),
            ),
            Self::Transport { .. } => Some("is the registry address right and reachable from here?".into()),
            Self::Insecure { .. } => Some("use the registry's HTTPS address".into()),
            Self::Status { status: 403, .. } => {
                Some("the credentials may lack push permission (ecr:InitiateLayerUpload, ecr:PutImage, ...)".into())
            }
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct Errors {
    errors: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// The readable part of an error body: `CODE: message` for each OCI error, or the
/// body's first line.
pub fn detail(body: &str) -> String {
    if let Ok(errors) = serde_json::from_str::<Errors>(body) {
        return errors
            .errors
            .iter()
            .map(|e| if e.message.is_empty() { e.code.clone() } else { format!("{}: {}", e.code, e.message) })
            .collect::<Vec<_>>()
            .join("; ");
    }
    let line = body.lines().next().unwrap_or_default().trim();
    line.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_error_bodies_are_summarised() {
        let body = r#"{"errors":[{"code":"MANIFEST_INVALID","message":"manifest invalid","detail":{}}]}"#;
        assert_eq!(detail(body), "MANIFEST_INVALID: manifest invalid");
        assert_eq!(detail("oops\nmore"), "oops");
    }
}
