//! Microsoft Entra ID (Azure AD) tokens for Azure Resource Manager, by the OAuth 2.0 client
//! credentials grant of the Microsoft identity platform:
//! `POST {AZURE_AUTHORITY_HOST}/{AZURE_TENANT_ID}/oauth2/v2.0/token` with
//! `grant_type=client_credentials`, `client_id`, `scope=https://management.azure.com/.default`
//! and one proof of the client's identity:
//! - `client_secret` (`AZURE_CLIENT_SECRET`), or
//! - a federated credential: `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`
//!   and `client_assertion` = a JWT the app registration trusts. In GitHub Actions that is the
//!   job's OIDC token for audience `api://AzureADTokenExchange` (`crate::github::oidc`), new
//!   at each exchange; elsewhere the file `AZURE_FEDERATED_TOKEN_FILE` names (AKS workload
//!   identity), read again at each exchange.
//!
//! The answer is `{"token_type":"Bearer","expires_in":3599,"access_token":"..."}`; an error is
//! `{"error":"invalid_client","error_description":"AADSTS7000215: ...","error_codes":[7000215]}`.
//! The token is kept until 5 minutes (or a quarter of its life) before it expires.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{AzureError, var};
use crate::github::oidc::{Secret, TokenRequest};

/// The scope of Azure Resource Manager tokens.
pub const ARM_SCOPE: &str = "https://management.azure.com/.default";
/// The audience Azure AD expects in a federated (GitHub OIDC) token.
pub const FEDERATED_AUDIENCE: &str = "api://AzureADTokenExchange";
/// Tokens are renewed this long before they expire (or at a quarter of their life).
pub const REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How the app registration proves who it is.
#[derive(Debug, Clone)]
pub enum Credential {
    /// `AZURE_CLIENT_SECRET`.
    Secret(Secret),
    /// GitHub Actions' OIDC token, exchanged as a client assertion.
    GithubOidc(TokenRequest),
    /// A JWT in a file (`AZURE_FEDERATED_TOKEN_FILE`), exchanged as a client assertion.
    AssertionFile(PathBuf),
}

impl Credential {
    fn describe(&self) -> &'static str {
        match self {
            Self::Secret(_) => "client secret (AZURE_CLIENT_SECRET)",
            Self::GithubOidc(_) => "federated credential (GitHub OIDC token)",
            Self::AssertionFile(_) => "federated credential (AZURE_FEDERATED_TOKEN_FILE)",
        }
    }
}

/// Who gantry is to Azure AD.
#[derive(Debug, Clone)]
pub struct Identity {
    pub authority: String,
    pub tenant: String,
    pub client_id: String,
    pub credential: Credential,
}

impl Identity {
    /// From `AZURE_TENANT_ID`, `AZURE_CLIENT_ID` and one of `AZURE_CLIENT_SECRET`,
    /// `AZURE_FEDERATED_TOKEN_FILE` or (in GitHub Actions) the job's OIDC token service.
    pub fn from_env() -> Result<Self, AzureError> {
        let authority = var("AZURE_AUTHORITY_HOST").unwrap_or_else(|| "https://login.microsoftonline.com".into());
        let (Some(tenant), Some(client_id)) = (var("AZURE_TENANT_ID"), var("AZURE_CLIENT_ID")) else {
            return Err(AzureError::new("no Azure credentials: AZURE_TENANT_ID and AZURE_CLIENT_ID are not set").with_hint(
                "set AZURE_TENANT_ID and AZURE_CLIENT_ID (the app registration), and AZURE_CLIENT_SECRET, or in GitHub Actions give the job `permissions: id-token: write` and a federated credential on the app registration",
            ));
        };
        let credential = if let Some(secret) = var("AZURE_CLIENT_SECRET") {
            Credential::Secret(Secret::new(secret))
        } else if let Some(file) = var("AZURE_FEDERATED_TOKEN_FILE") {
            Credential::AssertionFile(PathBuf::from(file))
        } else if let Some(request) = TokenRequest::from_env() {
            Credential::GithubOidc(request)
        } else {
            return Err(AzureError::new(format!(
                "no credential for Azure app registration {client_id}: neither AZURE_CLIENT_SECRET nor AZURE_FEDERATED_TOKEN_FILE is set, and no GitHub OIDC token service (ACTIONS_ID_TOKEN_REQUEST_URL) is available"
            ))
            .with_hint("set AZURE_CLIENT_SECRET, or in GitHub Actions give the job `permissions: id-token: write`"));
        };
        Ok(Self { authority: authority.trim_end_matches('/').to_owned(), tenant, client_id, credential })
    }
}

/// Where `Tokens` reads the time (tests move it to make tokens expire).
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Access tokens for one scope, cached. Cheap to share behind an `Arc`.
pub struct Tokens {
    identity: Identity,
    scope: String,
    http: reqwest::Client,
    clock: Clock,
    cached: tokio::sync::Mutex<Option<(Secret, SystemTime)>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("client_id", &self.identity.client_id).field("scope", &self.scope).finish()
    }
}

impl Tokens {
    pub fn new(identity: Identity, scope: &str, http: reqwest::Client) -> Self {
        Self::with_clock(identity, scope, http, Arc::new(SystemTime::now))
    }

    /// With the time from `clock` (tests move it to make tokens expire).
    pub fn with_clock(identity: Identity, scope: &str, http: reqwest::Client, clock: Clock) -> Self {
        Self { identity, scope: scope.to_owned(), http, clock, cached: tokio::sync::Mutex::new(None) }
    }

    /// A token valid for at least the refresh margin: the cached one, or a new one.
    pub async fn token(&self) -> Result<Secret, AzureError> {
        let mut cached = self.cached.lock().await;
        let now = (self.clock)();
        if let Some((token, refresh_at)) = cached.as_ref()
            && now < *refresh_at
        {
            return Ok(token.clone());
        }
        let (token, lifetime) = self.request().await?;
        let refresh_at = now + lifetime - REFRESH_BEFORE.min(lifetime / 4);
        tracing::debug!(client_id = %self.identity.client_id, lifetime = ?lifetime, "got an Azure AD token");
        *cached = Some((token.clone(), refresh_at));
        Ok(token)
    }

    /// Forgets the cached token (after ARM refused it).
    pub async fn forget(&self) {
        *self.cached.lock().await = None;
    }

    async fn request(&self) -> Result<(Secret, Duration), AzureError> {
        let id = &self.identity;
        let url = format!("{}/{}/oauth2/v2.0/token", id.authority, id.tenant);
        let mut form = reqwest::Url::parse("http://form.invalid/").expect("a URL");
        {
            let mut pairs = form.query_pairs_mut();
            pairs
                .append_pair("grant_type", "client_credentials")
                .append_pair("client_id", &id.client_id)
                .append_pair("scope", &self.scope);
            match &id.credential {
                Credential::Secret(secret) => {
                    pairs.append_pair("client_secret", secret.expose());
                }
                Credential::GithubOidc(request) => {
                    let jwt = request.id_token(&self.http, FEDERATED_AUDIENCE).await.map_err(|e| {
                        AzureError::new(format!("cannot get a GitHub OIDC token for Azure: {e}"))
                            .with_hint("give the job `permissions: id-token: write`")
                    })?;
                    pairs
                        .append_pair("client_assertion_type", JWT_BEARER)
                        .append_pair("client_assertion", jwt.expose());
                }
                Credential::AssertionFile(path) => {
                    let jwt = std::fs::read_to_string(path).map_err(|e| {
                        AzureError::new(format!("cannot read AZURE_FEDERATED_TOKEN_FILE {}: {e}", path.display()))
                    })?;
                    pairs.append_pair("client_assertion_type", JWT_BEARER).append_pair("client_assertion", jwt.trim());
                }
            }
        }
        let body = Secret::new(form.query().unwrap_or_default());
        let mut last = String::new();
        for attempt in 0..3u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
            }
            let response = self
                .http
                .post(&url)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .header("Accept", "application/json")
                .body(body.expose().to_owned())
                .timeout(Duration::from_secs(30))
                .send()
                .await;
            let response = match response {
                Ok(r) => r,
                Err(e) => {
                    last = e.without_url().to_string();
                    continue;
                }
            };
            let status = response.status();
            let json: serde_json::Value = response.json().await.unwrap_or(serde_json::Value::Null);
            if status.is_success() {
                let token = json["access_token"].as_str().ok_or_else(|| {
                    AzureError::new(format!("Azure AD ({}) answered without an access token", id.authority))
                })?;
                let expires_in = json["expires_in"]
                    .as_u64()
                    .or_else(|| json["expires_in"].as_str().and_then(|s| s.parse().ok()))
                    .unwrap_or(3600);
                return Ok((Secret::new(token), Duration::from_secs(expires_in)));
            }
            if status.is_server_error() || status.as_u16() == 429 {
                last = format!("HTTP {status}");
                continue;
            }
            return Err(self.refused(status.as_u16(), &json));
        }
        Err(AzureError::new(format!("cannot reach Azure AD at {}: {last}", id.authority))
            .with_hint("check AZURE_AUTHORITY_HOST and the network"))
    }

    /// The identity platform's error answer, as an error with a hint for the usual causes.
    fn refused(&self, status: u16, json: &serde_json::Value) -> AzureError {
        let id = &self.identity;
        let code = json["error"].as_str().unwrap_or("unknown_error").to_owned();
        let description = json["error_description"].as_str().unwrap_or_default();
        // The first line says it; the rest are trace and correlation ids.
        let description = description.lines().next().unwrap_or_default().trim();
        let codes: Vec<u64> = json["error_codes"].as_array().into_iter().flatten().filter_map(|c| c.as_u64()).collect();
        let has = |c: u64| codes.contains(&c) || description.contains(&format!("AADSTS{c}"));
        let hint = if has(7_000_215) || has(7_000_222) {
            format!(
                "AZURE_CLIENT_SECRET is not a valid (or is an expired) secret of app registration {}: create a new client secret",
                id.client_id
            )
        } else if has(700_016) {
            format!(
                "no app registration {} in tenant {}: check AZURE_CLIENT_ID and AZURE_TENANT_ID",
                id.client_id, id.tenant
            )
        } else if has(90_002) || has(900_023) {
            format!("tenant `{}` does not exist: check AZURE_TENANT_ID", id.tenant)
        } else if has(70_021) || has(700_211) || has(700_213) || has(700_212) {
            format!(
                "add a federated credential to app registration {} whose issuer is https://token.actions.githubusercontent.com, whose subject matches this job (e.g. repo:OWNER/REPO:environment:NAME) and whose audience is {FEDERATED_AUDIENCE}",
                id.client_id
            )
        } else {
            "check AZURE_TENANT_ID, AZURE_CLIENT_ID and the app registration's credentials".to_owned()
        };
        AzureError {
            message: format!(
                "Azure AD refused a token for app registration {} in tenant {} ({}): {code}: {description}",
                id.client_id,
                id.tenant,
                id.credential.describe()
            ),
            code: Some(code),
            status: Some(status),
            hint: Some(hint),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_never_print_their_secrets() {
        let id = Identity {
            authority: "https://login.microsoftonline.com".into(),
            tenant: "t".into(),
            client_id: "c".into(),
            credential: Credential::Secret(Secret::new("very-secret")),
        };
        assert!(!format!("{id:?}").contains("very-secret"));
        let tokens = Tokens::new(id, ARM_SCOPE, reqwest::Client::new());
        assert!(!format!("{tokens:?}").contains("very-secret"));
    }
}
