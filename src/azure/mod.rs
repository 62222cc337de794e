//! Azure: the one place Azure settings are read. `auth` gets Microsoft Entra ID (Azure AD)
//! tokens for Azure Resource Manager, from a client secret or a federated credential
//! (GitHub's OIDC token as a client assertion), cached until shortly before they expire.
//! `arm` is the ARM client the Azure targets call: an `api-version` per call, ARM's error
//! bodies turned into errors that name the resource (with hints), retries on throttling
//! and 5xx, and long-running operations followed to the end.
//!
//! Endpoints, as Azure's own SDKs and CLI name them:
//! - `AZURE_AUTHORITY_HOST`: the identity platform, default `https://login.microsoftonline.com`
//!   (sovereign clouds: `https://login.microsoftonline.us`, `https://login.chinacloudapi.cn`).
//! - `GANTRY_AZURE_ARM_ENDPOINT`: Resource Manager, default `https://management.azure.com`.
//!
//! Hosts that ARM itself reports (an app's default host name, its SCM site) are reached with
//! `https://`, unless the ARM endpoint is a plain `http://` one (a local emulator), when they
//! are reached with `http://` too.
//!
//! No token or secret is printed, logged or put in an error: they are `Secret`s, and HTTP
//! errors lose their URL.

pub mod arm;
pub mod auth;

pub use arm::Arm;

/// A failure talking to Azure: what failed (naming the resource), ARM's or Entra ID's error
/// code when there was one, and what to do about it.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct AzureError {
    pub message: String,
    /// `AuthorizationFailed`, `ResourceNotFound`, `invalid_client`, ...
    pub code: Option<String>,
    /// The HTTP status, when the service answered.
    pub status: Option<u16>,
    pub hint: Option<String>,
}

impl AzureError {
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), code: None, status: None, hint: None }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Whether ARM said the resource is not there.
    pub fn is_not_found(&self) -> bool {
        self.status == Some(404)
    }
}

impl AzureError {
    /// As a target's error. (Not a `From`: a second conversion into `TargetError` would
    /// make `?` ambiguous in closures elsewhere.)
    pub fn into_target(self) -> crate::targets::TargetError {
        let mut t = crate::targets::TargetError::new(self.message);
        t.hint = self.hint;
        t
    }
}

/// The HTTP client every Azure call goes through: connect timeout, no redirects (a redirect
/// would carry the bearer token elsewhere); each request sets its own overall timeout.
pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("the HTTP client builds")
}

/// `NAME` from the environment, when set and not empty.
fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}
