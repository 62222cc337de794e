//! GitHub Actions OIDC credentials: the workflow's ID token, exchanged with STS
//! `AssumeRoleWithWebIdentity` for the environment's role, refreshed before it expires.
//!
//! The ID token comes from the runner's token service: `GET $ACTIONS_ID_TOKEN_REQUEST_URL`
//! with `&audience=sts.amazonaws.com` and `Authorization: Bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN`,
//! answered with `{"value": "<JWT>"}` (GitHub's "Configuring OpenID Connect in cloud
//! providers"). The runner sets both variables only when the job has `permissions:
//! id-token: write`. A new ID token is asked for at every refresh: ID tokens live minutes,
//! the request token lives as long as the job.
//!
//! The provider keeps the last credentials and hands them out until `REFRESH_BEFORE` their
//! expiry, then assumes the role again, so a deploy longer than the session (1 h by
//! default) never signs a request with expired keys. The SDK's own identity cache sits in
//! front of it and asks again when it sees the expiry near.
//!
//! No token, key or session token is ever logged or put in an error: `Secret` prints as
//! `***`, and HTTP errors are stripped of their URL. The ID token request itself is
//! `crate::github::oidc`, shared with Azure's federated credentials.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{self, ProvideCredentials};

/// The audience AWS expects in the ID token.
pub const AUDIENCE: &str = "sts.amazonaws.com";
/// Credentials are renewed this long before they expire (or at a quarter of their
/// lifetime, when that is shorter).
pub const REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);

pub use crate::github::oidc::Secret;

/// What the provider needs; `from_env` reads it in Actions.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    pub request_url: String,
    pub request_token: Secret,
    pub role_arn: String,
    pub session_name: String,
    /// `DurationSeconds`; `None` leaves it to the role (1 h by default).
    pub duration: Option<Duration>,
}

impl OidcSettings {
    /// In GitHub Actions, the runner's token service and a session name from the run.
    /// `Err` names what is missing (the workflow lacks `permissions: id-token: write`).
    pub fn from_env(role_arn: &str) -> Result<Self, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let Some(request) = crate::github::oidc::TokenRequest::from_env() else {
            return Err(format!(
                "cannot assume {role_arn} with GitHub OIDC: ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN are not set; give the job `permissions: id-token: write`"
            ));
        };
        let run = var("GITHUB_RUN_ID").unwrap_or_else(|| "local".into());
        let attempt = var("GITHUB_RUN_ATTEMPT").unwrap_or_else(|| "1".into());
        let session_name: String = format!("gantry-{run}-{attempt}")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || "+=,.@-_".contains(*c))
            .take(64)
            .collect();
        let duration = var("GANTRY_AWS_SESSION_DURATION").and_then(|d| humantime::parse_duration(&d).ok());
        Ok(Self {
            request_url: request.url,
            request_token: request.token,
            role_arn: role_arn.to_owned(),
            session_name,
            duration,
        })
    }
}

type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The credentials provider. Cheap to clone; clones share the cached credentials.
#[derive(Clone)]
pub struct OidcCredentials {
    inner: Arc<Inner>,
}

struct Inner {
    settings: OidcSettings,
    http: reqwest::Client,
    sts: aws_sdk_sts::Client,
    clock: Clock,
    /// The last credentials and when to replace them.
    cached: tokio::sync::Mutex<Option<(Credentials, SystemTime)>>,
}

impl std::fmt::Debug for OidcCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcCredentials").field("role_arn", &self.inner.settings.role_arn).finish_non_exhaustive()
    }
}

impl OidcCredentials {
    /// `sts` must be a client without credentials: `AssumeRoleWithWebIdentity` is unsigned.
    pub fn new(settings: OidcSettings, sts: aws_sdk_sts::Client) -> Self {
        Self::with_clock(settings, sts, Arc::new(SystemTime::now))
    }

    /// With the time taken from `clock` (tests move it to make credentials expire).
    pub fn with_clock(settings: OidcSettings, sts: aws_sdk_sts::Client, clock: Clock) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .expect("the HTTP client builds");
        Self { inner: Arc::new(Inner { settings, http, sts, clock, cached: tokio::sync::Mutex::new(None) }) }
    }

    /// Credentials valid for at least the refresh margin: the cached ones, or new ones.
    pub async fn credentials(&self) -> Result<Credentials, CredentialsError> {
        let mut cached = self.inner.cached.lock().await;
        let now = (self.inner.clock)();
        if let Some((creds, refresh_at)) = cached.as_ref()
            && now < *refresh_at
        {
            return Ok(creds.clone());
        }
        let fresh = self.assume().await?;
        let refresh_at =
            fresh.expiry().map_or(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::MAX / 4), |e| refresh_time(now, e));
        tracing::debug!(role = %self.inner.settings.role_arn, expiry = ?fresh.expiry(), "assumed the role with GitHub OIDC");
        *cached = Some((fresh.clone(), refresh_at));
        Ok(fresh)
    }

    async fn assume(&self) -> Result<Credentials, CredentialsError> {
        let s = &self.inner.settings;
        let token = self.id_token().await?;
        let mut call = self
            .inner
            .sts
            .assume_role_with_web_identity()
            .role_arn(&s.role_arn)
            .role_session_name(&s.session_name)
            .web_identity_token(token.expose());
        if let Some(d) = s.duration {
            call = call.duration_seconds(i32::try_from(d.as_secs()).unwrap_or(i32::MAX));
        }
        let out = call.send().await.map_err(|e| {
            CredentialsError::provider_error(format!(
                "STS AssumeRoleWithWebIdentity for {} failed: {}",
                s.role_arn,
                aws_sdk_sts::error::DisplayErrorContext(&e)
            ))
        })?;
        let c = out.credentials.ok_or_else(|| {
            CredentialsError::provider_error(format!("STS returned no credentials for {}", s.role_arn))
        })?;
        let expiry = SystemTime::try_from(c.expiration).map_err(|_| {
            CredentialsError::provider_error(format!("STS returned an unreadable expiry for {}", s.role_arn))
        })?;
        Ok(Credentials::new(c.access_key_id, c.secret_access_key, Some(c.session_token), Some(expiry), "GitHubOidc"))
    }

    /// A new ID token from the runner's token service (`github::oidc`).
    async fn id_token(&self) -> Result<Secret, CredentialsError> {
        let s = &self.inner.settings;
        let request = crate::github::oidc::TokenRequest { url: s.request_url.clone(), token: s.request_token.clone() };
        request.id_token(&self.inner.http, AUDIENCE).await.map_err(CredentialsError::provider_error)
    }
}

/// When credentials fetched at `now` and expiring at `expiry` are replaced: `REFRESH_BEFORE`
/// their expiry, or a quarter of their lifetime before it when that is shorter (so a short
/// session is not replaced at every call).
fn refresh_time(now: SystemTime, expiry: SystemTime) -> SystemTime {
    let life = expiry.duration_since(now).unwrap_or_default();
    expiry - REFRESH_BEFORE.min(life / 4)
}

impl ProvideCredentials for OidcCredentials {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider::future::ProvideCredentials::new(self.credentials())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = OidcSettings {
            request_url: "http://x".into(),
            request_token: Secret::new("very-secret"),
            role_arn: "arn:aws:iam::123456789012:role/r".into(),
            session_name: "s".into(),
            duration: None,
        };
        assert!(!format!("{s:?}").contains("very-secret"));
    }

    #[test]
    fn refresh_comes_before_expiry() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let secs = Duration::from_secs;
        // An hour-long session is replaced 5 minutes before it ends.
        assert_eq!(refresh_time(t0, t0 + secs(3600)), t0 + secs(3300));
        // A 20 s one at 15 s; an expired one at once.
        assert_eq!(refresh_time(t0, t0 + secs(20)), t0 + secs(15));
        assert_eq!(refresh_time(t0, t0 - secs(1)), t0 - secs(1));
    }
}
