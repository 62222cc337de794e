//! GitHub Actions' OIDC token service: the ID token (a JWT) a job with `permissions:
//! id-token: write` can ask for, for any audience. Cloud providers trust it through a
//! federation set up on their side: AWS exchanges it with STS `AssumeRoleWithWebIdentity`
//! (`crate::aws::oidc`, audience `sts.amazonaws.com`), Azure AD takes it as a client
//! assertion (`crate::azure::auth`, audience `api://AzureADTokenExchange`).
//!
//! `GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=AUD` with
//! `Authorization: Bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN` answers `{"value": "<JWT>"}`
//! (GitHub's "Configuring OpenID Connect in cloud providers"). The runner sets both
//! variables only when the job has the permission. ID tokens live minutes, the request
//! token as long as the job, so callers ask for a new ID token at every exchange.
//!
//! Tokens are [`Secret`]s (Debug prints `***`) and HTTP errors lose their URL, so no token
//! reaches a log or an error.

use std::time::Duration;

/// A token, key or secret: `Debug` and `Display` print `***`, so it never reaches a log or an
/// error. Every provider's credentials use it (AWS and Azure OIDC, ARM, Render).
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Where to ask for ID tokens: the runner's token service and the job's request token.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub url: String,
    pub token: Secret,
}

impl TokenRequest {
    /// From `ACTIONS_ID_TOKEN_REQUEST_URL` and `ACTIONS_ID_TOKEN_REQUEST_TOKEN`; `None` when
    /// either is unset (not in Actions, or the job lacks `permissions: id-token: write`).
    pub fn from_env() -> Option<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Some(Self {
            url: var("ACTIONS_ID_TOKEN_REQUEST_URL")?,
            token: Secret::new(var("ACTIONS_ID_TOKEN_REQUEST_TOKEN")?),
        })
    }

    /// A new ID token for `audience`, retried on 429, 5xx and dropped connections (3 tries).
    /// The error says what failed, never with a token or URL in it.
    pub async fn id_token(&self, http: &reqwest::Client, audience: &str) -> Result<Secret, String> {
        let mut url =
            reqwest::Url::parse(&self.url).map_err(|e| format!("ACTIONS_ID_TOKEN_REQUEST_URL is not a URL: {e}"))?;
        url.query_pairs_mut().append_pair("audience", audience);
        let mut last = String::new();
        for attempt in 0..3u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
            }
            let response = http
                .get(url.clone())
                .bearer_auth(self.token.expose())
                .header("Accept", "application/json")
                .timeout(Duration::from_secs(30))
                .send()
                .await;
            match response {
                Ok(r) if r.status().is_success() => {
                    #[derive(serde::Deserialize)]
                    struct Answer {
                        value: String,
                    }
                    let answer: Answer = r.json().await.map_err(|e| {
                        format!("the GitHub OIDC token service answered without a token: {}", e.without_url())
                    })?;
                    return Ok(Secret::new(answer.value));
                }
                Ok(r) if r.status().is_server_error() || r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS => {
                    last = format!("HTTP {}", r.status());
                }
                Ok(r) => return Err(format!("the GitHub OIDC token service refused the request: HTTP {}", r.status())),
                Err(e) => last = e.without_url().to_string(),
            }
        }
        Err(format!("cannot reach the GitHub OIDC token service: {last}"))
    }
}
