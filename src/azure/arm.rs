//! The Azure Resource Manager client: `GET/PUT/PATCH/POST {endpoint}{path}?api-version=V`
//! with a bearer token from `auth`.
//!
//! - Errors: ARM answers `{"error":{"code":"AuthorizationFailed","message":"..."}}` (App
//!   Service sometimes `{"Code":"...","Message":"..."}`); each becomes an [`AzureError`] that
//!   names the resource and carries a hint for the usual codes (ARM's "Common error
//!   responses"; `AuthorizationFailed` → a role, `ResourceNotFound`/`ResourceGroupNotFound`/
//!   `SubscriptionNotFound` → the names in gantry.toml).
//! - Retries: 429 always (the request was not carried out) and 5xx or a dropped connection
//!   for idempotent verbs (GET, PUT, PATCH, DELETE), 4 attempts, waiting `Retry-After` (at
//!   most 30 s) or a growing backoff. A 401 gets one new token and one more try.
//! - Long-running operations (ARM's "Asynchronous operations" guide): a 201/202 with an
//!   `Azure-AsyncOperation` header is followed by polling that URL until its `status` is
//!   `Succeeded`, `Failed` or `Canceled`; otherwise a 202 with `Location` is followed by
//!   polling that URL until it answers 200 or 204. Each poll waits the `Retry-After` the
//!   last answer gave (1 s when none), and the whole operation has a deadline. The bearer
//!   token is only ever sent to the ARM endpoint's own origin.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use super::auth::{ARM_SCOPE, Identity, Tokens};
use super::{AzureError, var};
use crate::github::oidc::Secret;

/// Default longest wait for one long-running operation.
pub const LRO_DEADLINE: Duration = Duration::from_secs(20 * 60);
const ATTEMPTS: u32 = 4;
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// An ARM client bound to one endpoint and identity. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Arm {
    http: reqwest::Client,
    endpoint: String,
    tokens: Arc<Tokens>,
    client_id: String,
}

/// A token cache and its HTTP client, by identity.
type Shared = (String, reqwest::Client, Arc<Tokens>);

/// One answer: status, the headers gantry reads, and the JSON body (`Null` when empty).
#[derive(Debug)]
struct Answer {
    status: u16,
    async_operation: Option<String>,
    location: Option<String>,
    retry_after: Option<Duration>,
    json: Value,
}

impl Arm {
    /// From the environment: the identity (`auth::Identity::from_env`) and
    /// `GANTRY_AZURE_ARM_ENDPOINT` (default `https://management.azure.com`).
    pub fn from_env() -> Result<Self, AzureError> {
        let identity = Identity::from_env()?;
        let endpoint = var("GANTRY_AZURE_ARM_ENDPOINT").unwrap_or_else(|| "https://management.azure.com".into());
        let client_id = identity.client_id.clone();
        // One token cache per identity for the whole process: every target built for a
        // command (preflight, deploy, rollback) shares the token.
        static SHARED: std::sync::OnceLock<std::sync::Mutex<Vec<Shared>>> = std::sync::OnceLock::new();
        let key =
            format!("{}|{}|{}|{:?}", identity.authority, identity.tenant, identity.client_id, identity.credential);
        let mut shared = SHARED.get_or_init(Default::default).lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (http, tokens) = match shared.iter().find(|(k, _, _)| *k == key) {
            Some((_, http, tokens)) => (http.clone(), tokens.clone()),
            None => {
                let http = super::http();
                let tokens = Arc::new(Tokens::new(identity, ARM_SCOPE, http.clone()));
                shared.push((key, http.clone(), tokens.clone()));
                (http, tokens)
            }
        };
        Ok(Self { http, endpoint: endpoint.trim_end_matches('/').to_owned(), tokens, client_id })
    }

    /// The shared HTTP client (for calls to hosts ARM names, such as an app's SCM site).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// A bearer token for ARM (also accepted by App Service's SCM sites).
    pub async fn token(&self) -> Result<Secret, AzureError> {
        self.tokens.token().await
    }

    /// `https://HOST`, or `http://HOST` when the ARM endpoint itself is plain HTTP (a local
    /// emulator): for hosts that ARM reports, such as an app's default host name.
    pub fn host_url(&self, host: &str) -> String {
        let scheme = if self.endpoint.starts_with("http://") { "http" } else { "https" };
        format!("{scheme}://{}", host.trim_end_matches('/'))
    }

    /// `GET path`: the resource's JSON. `what` names it in errors.
    pub async fn get(&self, path: &str, api_version: &str, what: &str) -> Result<Value, AzureError> {
        self.send(Method::GET, path, api_version, None, what).await
    }

    /// Any call; a long-running operation is followed to its end (under [`LRO_DEADLINE`]).
    /// Returns the final JSON (`Null` when there is none).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        api_version: &str,
        body: Option<&Value>,
        what: &str,
    ) -> Result<Value, AzureError> {
        let url = format!("{}{path}?api-version={api_version}", self.endpoint);
        let answer = self.call(method.clone(), &url, body, what).await?;
        if !matches!(answer.status, 201 | 202) || (answer.async_operation.is_none() && answer.location.is_none()) {
            return Ok(answer.json);
        }
        let operation = format!("{} {what}", verb(&method));
        tokio::time::timeout(LRO_DEADLINE, self.follow(answer, &operation)).await.unwrap_or_else(|_| {
            Err(AzureError::new(format!(
                "{operation} did not finish within {}",
                humantime::format_duration(LRO_DEADLINE)
            ))
            .with_hint("see the resource's activity log in the Azure portal; the operation may still finish"))
        })
    }

    /// "Tags - Update At Scope": `PATCH {scope}/providers/Microsoft.Resources/tags/default`
    /// (api-version 2021-04-01) with `operation` `Merge` (add or replace) or `Delete`.
    /// Tags change no configuration, so they restart nothing.
    pub async fn update_tags(
        &self,
        scope: &str,
        operation: &str,
        tags: &[(&str, &str)],
        what: &str,
    ) -> Result<(), AzureError> {
        let tags: serde_json::Map<String, Value> =
            tags.iter().map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned()))).collect();
        let body = serde_json::json!({ "operation": operation, "properties": { "tags": tags } });
        let path = format!("{scope}/providers/Microsoft.Resources/tags/default");
        self.send(Method::PATCH, &path, "2021-04-01", Some(&body), &format!("the tags of {what}")).await?;
        Ok(())
    }

    /// Polls a long-running operation until it ends.
    async fn follow(&self, first: Answer, operation: &str) -> Result<Value, AzureError> {
        let initial = first.json.clone();
        let mut wait = first.retry_after.unwrap_or(Duration::from_secs(1));
        if let Some(status_url) = first.async_operation {
            loop {
                tokio::time::sleep(wait).await;
                let answer = self.call(Method::GET, &status_url, None, operation).await?;
                wait = answer.retry_after.unwrap_or(Duration::from_secs(1));
                match answer.json["status"].as_str().unwrap_or("InProgress") {
                    "Succeeded" => return Ok(initial),
                    s @ ("Failed" | "Canceled") => {
                        let (code, message) = error_parts(&answer.json);
                        return Err(AzureError {
                            message: format!("{operation} ended {s}: {code}: {message}"),
                            code: Some(code),
                            status: None,
                            hint: None,
                        });
                    }
                    _ => {}
                }
            }
        }
        let location = first.location.expect("checked by send");
        loop {
            tokio::time::sleep(wait).await;
            let answer = self.call(Method::GET, &location, None, operation).await?;
            wait = answer.retry_after.unwrap_or(Duration::from_secs(1));
            if answer.status != 202 {
                return Ok(answer.json);
            }
        }
    }

    /// One call with its retries; errors for every status that is not a success.
    async fn call(&self, method: Method, url: &str, body: Option<&Value>, what: &str) -> Result<Answer, AzureError> {
        if !url.starts_with(&format!("{}/", self.endpoint)) {
            return Err(AzureError::new(format!(
                "ARM named an operation URL outside its endpoint {} while {} {what}; not sending the token there",
                self.endpoint,
                verb(&method)
            )));
        }
        let idempotent = method != Method::POST;
        let mut refreshed = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let token = self.tokens.token().await?;
            let mut request = self
                .http
                .request(method.clone(), url)
                .bearer_auth(token.expose())
                .header("Accept", "application/json")
                .timeout(CALL_TIMEOUT);
            if let Some(body) = body {
                request = request.json(body);
            } else if method != Method::GET {
                request = request.header("Content-Length", "0");
            }
            let backoff = Duration::from_millis(500 * 2u64.pow(attempt - 1));
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) if idempotent && attempt < ATTEMPTS => {
                    tracing::debug!(error = %e.without_url(), "ARM call failed; retrying");
                    tokio::time::sleep(backoff).await;
                    continue;
                }
                Err(e) => {
                    return Err(AzureError::new(format!(
                        "cannot reach Azure Resource Manager ({} {what}): {}",
                        verb(&method),
                        e.without_url()
                    ))
                    .with_hint("check the network, and GANTRY_AZURE_ARM_ENDPOINT if set"));
                }
            };
            let status = response.status().as_u16();
            let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let retry_after = header("retry-after").and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs);
            let async_operation = header("azure-asyncoperation");
            let location = header("location");
            let text = response.text().await.unwrap_or_default();
            let json: Value =
                if text.trim().is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::Null) };
            if (200..300).contains(&status) {
                return Ok(Answer { status, async_operation, location, retry_after, json });
            }
            let retry = status == 429 || (status >= 500 && idempotent);
            if retry && attempt < ATTEMPTS {
                tokio::time::sleep(retry_after.unwrap_or(backoff).min(Duration::from_secs(30))).await;
                continue;
            }
            if status == 401 && !refreshed {
                refreshed = true;
                self.tokens.forget().await;
                continue;
            }
            return Err(self.refused(&method, status, &json, what));
        }
    }

    fn refused(&self, method: &Method, status: u16, json: &Value, what: &str) -> AzureError {
        let (code, message) = error_parts(json);
        let hint = match code.as_str() {
            "AuthorizationFailed" | "LinkedAuthorizationFailed" => Some(format!(
                "the app registration {} has no role that allows this on {what}: assign it one (e.g. `Website Contributor` for an App Service app, `Contributor` on the resource group) with `az role assignment create`",
                self.client_id
            )),
            "ResourceNotFound" | "ResourceGroupNotFound" | "SubscriptionNotFound" | "NotFound" | "ParentResourceNotFound" => {
                Some("check the subscription, resource group and name in gantry.toml, and that the identity can see the subscription".into())
            }
            "InvalidAuthenticationToken" | "InvalidAuthenticationTokenTenant" | "ExpiredAuthenticationToken" => {
                Some("ARM refused the token: check that AZURE_TENANT_ID is the subscription's tenant".into())
            }
            "Conflict" | "AnotherOperationInProgress" => {
                Some("another operation on it is in progress: try again when it has finished".into())
            }
            _ if status == 404 => Some("check the subscription, resource group and name in gantry.toml".into()),
            _ => None,
        };
        AzureError {
            message: format!("{} {what} failed: HTTP {status} {code}: {message}", verb(method)),
            code: Some(code),
            status: Some(status),
            hint,
        }
    }
}

/// `(code, message)` from ARM's `{"error":{...}}`, App Service's `{"Code":...}`, or an
/// operation status's `error`.
fn error_parts(json: &Value) -> (String, String) {
    let e = if json["error"].is_object() { &json["error"] } else { json };
    let code = e["code"].as_str().or(e["Code"].as_str()).unwrap_or("Unknown").to_owned();
    let message = e["message"].as_str().or(e["Message"].as_str()).unwrap_or("no message").to_owned();
    (code, message)
}

fn verb(method: &Method) -> &'static str {
    match *method {
        Method::GET => "reading",
        Method::PUT => "writing",
        Method::PATCH => "updating",
        Method::DELETE => "deleting",
        _ => "acting on",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_of_both_shapes_are_read() {
        let arm = serde_json::json!({"error": {"code": "AuthorizationFailed", "message": "no"}});
        assert_eq!(error_parts(&arm), ("AuthorizationFailed".into(), "no".into()));
        let web = serde_json::json!({"Code": "NotFound", "Message": "gone"});
        assert_eq!(error_parts(&web), ("NotFound".into(), "gone".into()));
        assert_eq!(error_parts(&Value::Null).0, "Unknown");
    }
}
