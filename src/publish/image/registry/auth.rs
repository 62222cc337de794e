//! Logging in to a registry. The `/v2/` probe answers 200 (no auth) or 401 with a
//! `WWW-Authenticate` challenge: `Basic` (ECR, htpasswd registries) sends the credentials
//! on every request; `Bearer` trades them at the challenge's `realm` for a token per
//! scope (`repository:NAME:pull,push`), cached until it expires. A 401 later on (an
//! expired ECR token, a token for another scope) refreshes once and retries.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::header::WWW_AUTHENTICATE;
use reqwest::{Response, StatusCode, Url};
use serde::Deserialize;

use super::{Registry, RegistryError, Scope, error, is_loopback};
use crate::publish::image::ecr::EcrToken;

/// Who gantry is to the registry.
#[derive(Clone)]
pub enum Credentials {
    Anonymous,
    /// Fixed credentials. Only the tests construct them so far (ECR tokens are `Ecr`).
    #[cfg_attr(not(test), allow(dead_code))]
    Basic {
        username: String,
        password: String,
    },
    /// An ECR authorization token, refreshed before it expires.
    Ecr(Arc<EcrToken>),
}

impl Credentials {
    /// The user name and password, fetching a new ECR token when `fresh` or when due.
    async fn basic(&self, fresh: bool) -> Result<Option<(String, String)>, RegistryError> {
        match self {
            Self::Anonymous => Ok(None),
            Self::Basic { username, password } => Ok(Some((username.clone(), password.clone()))),
            Self::Ecr(token) => {
                token.basic(fresh).await.map(Some).map_err(|message| RegistryError::Credentials { message })
            }
        }
    }
}

#[derive(Default)]
pub(super) struct AuthState {
    scheme: Scheme,
    tokens: HashMap<String, (String, Instant)>,
}

#[derive(Default, Clone)]
enum Scheme {
    /// Not probed yet: requests go without credentials until a 401 says what to use.
    #[default]
    Unknown,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl Registry {
    /// Probes `/v2/` and checks the credentials, so bad ones fail before any work.
    pub async fn login(&self) -> Result<(), RegistryError> {
        let url = self.url("/v2/");
        let response = self.send("log in", &Vec::new(), |c| c.get(url.clone())).await?;
        if response.status().is_success() { Ok(()) } else { Err(self.unexpected("log in", response).await) }
    }

    /// The `Authorization` header for a request in `scope`, if any.
    pub(super) async fn authorization(&self, scope: &Scope) -> Result<Option<String>, RegistryError> {
        let mut state = self.auth.lock().await;
        match state.scheme.clone() {
            Scheme::Unknown => Ok(None),
            Scheme::Basic => Ok(self.credentials.basic(false).await?.map(|(u, p)| basic_header(&u, &p))),
            Scheme::Bearer { realm, service } => {
                let key = scope.join(" ");
                if let Some((token, until)) = state.tokens.get(&key)
                    && Instant::now() < *until
                {
                    return Ok(Some(format!("Bearer {token}")));
                }
                let (token, until) = self.fetch_token(&realm, service.as_deref(), scope).await?;
                state.tokens.insert(key, (token.clone(), until));
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    /// After a 401: learn the scheme from the challenge and get fresh credentials.
    pub(super) async fn reauthenticate(&self, response: &Response, scope: &Scope) -> Result<(), RegistryError> {
        let header = response.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let Some((scheme, params)) = parse_challenge(header) else {
            return Err(RegistryError::Unauthorized { registry: self.host.clone(), detail: None });
        };
        let mut state = self.auth.lock().await;
        match scheme.as_str() {
            "basic" => {
                let was_basic = matches!(state.scheme, Scheme::Basic);
                if self.credentials.basic(was_basic).await?.is_none() {
                    let detail = Some("it needs credentials and gantry has none for it".to_owned());
                    return Err(RegistryError::Unauthorized { registry: self.host.clone(), detail });
                }
                state.scheme = Scheme::Basic;
            }
            "bearer" => {
                let realm = params.get("realm").cloned().unwrap_or_default();
                state.scheme = Scheme::Bearer { realm, service: params.get("service").cloned() };
                state.tokens.remove(&scope.join(" "));
            }
            _ => return Err(RegistryError::Unauthorized { registry: self.host.clone(), detail: None }),
        }
        Ok(())
    }

    pub(super) async fn unauthorized(&self, response: Response) -> RegistryError {
        let body = response.text().await.unwrap_or_default();
        let detail = Some(error::detail(&body)).filter(|d| !d.is_empty());
        RegistryError::Unauthorized { registry: self.host.clone(), detail }
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &Scope,
    ) -> Result<(String, Instant), RegistryError> {
        let protocol = |detail: String| RegistryError::Protocol {
            registry: self.host.clone(),
            operation: "log in".into(),
            detail,
        };
        let mut url = Url::parse(realm).map_err(|_| protocol(format!("token realm `{realm}` is not a URL")))?;
        if url.scheme() != "https" && !url.host_str().is_some_and(is_loopback) {
            return Err(RegistryError::Insecure { registry: realm.to_owned() });
        }
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            for s in scope {
                query.append_pair("scope", s);
            }
        }
        let mut request = self.http.get(url);
        if let Some((user, password)) = self.credentials.basic(false).await? {
            request = request.basic_auth(user, Some(password));
        }
        let response = request.send().await.map_err(|source| RegistryError::Transport {
            registry: self.host.clone(),
            operation: "get a registry token".into(),
            source,
        })?;
        match response.status() {
            s if s.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => return Err(self.unauthorized(response).await),
            _ => return Err(self.unexpected("get a registry token", response).await),
        }
        let body: TokenResponse = response.json().await.map_err(|e| protocol(format!("token response: {e}")))?;
        let token = body.token.or(body.access_token).ok_or_else(|| protocol("token response has no token".into()))?;
        // Tokens live at least 60 s (the spec's default); renew 10 s early.
        let life = Duration::from_secs(body.expires_in.unwrap_or(60).max(20) - 10);
        Ok((token, Instant::now() + life))
    }
}

fn basic_header(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// `Bearer realm="https://auth",service="reg"` to `("bearer", {realm, service})`.
fn parse_challenge(header: &str) -> Option<(String, HashMap<String, String>)> {
    let header = header.trim();
    let (scheme, mut rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.is_empty() {
        return None;
    }
    let mut params = HashMap::new();
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        let Some((key, after)) = rest.split_once('=') else { break };
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next().map(|(_, c)| c)),
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        params.insert(key.trim().to_ascii_lowercase(), value);
        rest = next;
    }
    Some((scheme.to_ascii_lowercase(), params))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        let (scheme, p) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(scheme, "bearer");
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:a/b:pull,push");
        let (scheme, p) = parse_challenge(r#"Basic realm="gantry \"test\"""#).unwrap();
        assert_eq!((scheme.as_str(), p["realm"].as_str()), ("basic", r#"gantry "test""#));
        let (_, p) = parse_challenge("Bearer realm=http://x/t, service=s").unwrap();
        assert_eq!((p["realm"].as_str(), p["service"].as_str()), ("http://x/t", "s"));
        assert!(parse_challenge("").is_none());
    }

    #[test]
    fn basic_header_is_base64_of_user_and_password() {
        assert_eq!(basic_header("AWS", "pw"), "Basic QVdTOnB3");
    }
}
