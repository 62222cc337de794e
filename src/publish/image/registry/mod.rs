//! An OCI distribution client over reqwest: just what pushing needs, spoken directly.
//!
//! One `Registry` per registry host, shared by every upload: it logs in once (the `/v2/`
//! probe tells Basic from Bearer), adds the credentials to each request, retries transient
//! failures (`retry.rs`), and re-authenticates once on a 401 (an ECR token that expired,
//! a Bearer token for a new scope). Blobs (`blob.rs`, `upload.rs`) and manifests
//! (`manifest.rs`) build on `send`.
//!
//! Plain HTTP is used only for loopback registries (127.0.0.0/8, localhost, [::1]);
//! every other registry is HTTPS.

mod auth;
mod blob;
mod error;
mod manifest;
mod retry;
mod upload;
#[cfg(test)]
mod wire_tests;

use std::net::IpAddr;
use std::time::Duration;

use reqwest::header::AUTHORIZATION;
use reqwest::{RequestBuilder, Response, StatusCode, Url};

pub use auth::Credentials;
pub use error::RegistryError;
pub use upload::{BlobSource, Progress};

/// A logged-in connection to one registry.
pub struct Registry {
    http: reqwest::Client,
    base: Url,
    host: String,
    credentials: Credentials,
    auth: tokio::sync::Mutex<auth::AuthState>,
}

/// Scopes of a request, for Bearer tokens (`repository:NAME:pull,push`).
pub type Scope = Vec<String>;

pub fn push_scope(repository: &str) -> Scope {
    vec![format!("repository:{repository}:pull,push")]
}

pub fn pull_scope(repository: &str) -> Scope {
    vec![format!("repository:{repository}:pull")]
}

impl Registry {
    /// A client for `registry` (`host[:port]`, or with an explicit `http://`/`https://`).
    pub fn new(registry: &str, credentials: Credentials) -> Result<Self, RegistryError> {
        let base = endpoint(registry)?;
        let host = base.as_str()[url_host_range(&base)].to_owned();
        let http = reqwest::Client::builder()
            .user_agent(concat!("gantry/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(120))
            .pool_max_idle_per_host(16)
            .build()
            .map_err(|source| RegistryError::Transport {
                registry: host.clone(),
                operation: "set up".into(),
                source,
            })?;
        Ok(Self { http, base, host, credentials, auth: tokio::sync::Mutex::new(auth::AuthState::default()) })
    }

    /// `host[:port]` as users write it.
    pub fn host(&self) -> &str {
        &self.host
    }

    fn url(&self, path: &str) -> Url {
        self.base.join(path).expect("registry paths are valid URLs")
    }

    /// Sends the request `make` builds, with credentials, retrying transient failures and
    /// re-authenticating once on a 401. Other statuses are the caller's to judge.
    async fn send(
        &self,
        operation: &str,
        scope: &Scope,
        make: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let mut attempt = 1;
        let mut reauthenticated = false;
        loop {
            let mut request = make(&self.http);
            if let Some(header) = self.authorization(scope).await? {
                request = request.header(AUTHORIZATION, header);
            }
            match request.send().await {
                Ok(response) if response.status() == StatusCode::UNAUTHORIZED => {
                    if reauthenticated {
                        return Err(self.unauthorized(response).await);
                    }
                    reauthenticated = true;
                    self.reauthenticate(&response, scope).await?;
                }
                Ok(response) if retry::transient_status(response.status()) && attempt < retry::MAX_ATTEMPTS => {
                    tracing::debug!(operation, status = %response.status(), attempt, "retrying");
                    tokio::time::sleep(retry::backoff(attempt, retry::retry_after(&response))).await;
                    attempt += 1;
                }
                Ok(response) => return Ok(response),
                Err(e) if retry::transient_error(&e) && attempt < retry::MAX_ATTEMPTS => {
                    tracing::debug!(operation, error = %e, attempt, "retrying");
                    tokio::time::sleep(retry::backoff(attempt, None)).await;
                    attempt += 1;
                }
                Err(source) => {
                    return Err(RegistryError::Transport {
                        registry: self.host.clone(),
                        operation: operation.to_owned(),
                        source,
                    });
                }
            }
        }
    }

    /// Turns an unexpected response into an error carrying the registry's own message.
    async fn unexpected(&self, operation: &str, response: Response) -> RegistryError {
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        RegistryError::Status {
            registry: self.host.clone(),
            operation: operation.to_owned(),
            status,
            detail: error::detail(&body),
        }
    }
}

/// The base URL for `registry`: HTTPS, or HTTP for a loopback host.
pub fn endpoint(registry: &str) -> Result<Url, RegistryError> {
    let (explicit, rest) = match registry.split_once("://") {
        Some((scheme @ ("http" | "https"), rest)) => (Some(scheme), rest),
        Some(_) => return Err(RegistryError::BadAddress { registry: registry.to_owned() }),
        None => (None, registry),
    };
    let rest = rest.trim_end_matches('/');
    let bad = || RegistryError::BadAddress { registry: registry.to_owned() };
    if rest.is_empty() || rest.contains('/') {
        return Err(bad());
    }
    let probe = Url::parse(&format!("http://{rest}/")).map_err(|_| bad())?;
    let loopback = probe.host_str().is_some_and(is_loopback);
    let scheme = match explicit {
        Some("http") if !loopback => return Err(RegistryError::Insecure { registry: registry.to_owned() }),
        Some(scheme) => scheme,
        None if loopback => "http",
        None => "https",
    };
    Url::parse(&format!("{scheme}://{rest}/")).map_err(|_| bad())
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost") || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The `host[:port]` part of a URL.
fn url_host_range(url: &Url) -> std::ops::Range<usize> {
    let start = url.as_str().find("://").map_or(0, |i| i + 3);
    let end = url.as_str()[start..].find('/').map_or(url.as_str().len(), |i| start + i);
    start..end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_for_loopback() {
        assert_eq!(endpoint("127.0.0.1:5000").unwrap().as_str(), "http://127.0.0.1:5000/");
        assert_eq!(endpoint("127.8.9.1").unwrap().scheme(), "http");
        assert_eq!(endpoint("localhost:5000").unwrap().scheme(), "http");
        assert_eq!(endpoint("[::1]:5000").unwrap().as_str(), "http://[::1]:5000/");
        assert_eq!(endpoint("https://127.0.0.1:5000").unwrap().scheme(), "https");
        let ecr = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
        assert_eq!(endpoint(ecr).unwrap().as_str(), format!("https://{ecr}/"));
        assert_eq!(endpoint("10.0.0.5:5000").unwrap().scheme(), "https");
        assert!(matches!(endpoint("http://10.0.0.5:5000"), Err(RegistryError::Insecure { .. })));
        assert!(matches!(endpoint("ftp://x"), Err(RegistryError::BadAddress { .. })));
        assert!(matches!(endpoint("host/path"), Err(RegistryError::BadAddress { .. })));
    }

    #[test]
    fn host_is_shown_as_written() {
        let r = Registry::new("127.0.0.1:45101", Credentials::Anonymous).unwrap();
        assert_eq!(r.host(), "127.0.0.1:45101");
        let r = Registry::new("https://example.com/", Credentials::Anonymous).unwrap();
        assert_eq!(r.host(), "example.com");
    }
}
