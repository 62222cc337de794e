//! GitHub's REST API: the one place gantry talks to GitHub. `GitHub` is a client bound to
//! one repository, built once from the token (`GITHUB_TOKEN`, else `GH_TOKEN`) and the API
//! URL (`GITHUB_API_URL`, as Actions sets it; default `https://api.github.com`).
//!
//! It runs on octocrab's transport (auth header only for GitHub's own hosts, redirects,
//! timeouts, and `RetryConfig::HandleRateLimits`: a 403/429 with `retry-after` or
//! `x-ratelimit-remaining: 0` waits and retries, 5xx and dropped connections retry at once),
//! with gantry's own shapes for the few calls it makes, so that the status codes GitHub
//! documents (404 absent, 422 `already_exists`) and headers (`Link`, `digest`) stay visible.
//! `releases.rs` holds releases and assets, `deployments.rs` deployments and their statuses.

pub mod deployments;
pub mod oidc;
pub mod releases;

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::BodyExt;
use octocrab::Octocrab;
use octocrab::service::middleware::retry::RetryConfig;

use crate::exit;

/// The media type of REST responses (octocrab sends `X-GitHub-Api-Version: 2022-11-28`).
const JSON_MEDIA: &str = "application/vnd.github+json";
/// Every call ends within this, its retries and rate-limit waits (`retry-after`) included:
/// long enough for a large asset upload, short enough that a long rate-limit reset fails
/// with a message instead of hanging.
const CALL_DEADLINE: Duration = Duration::from_secs(15 * 60);

/// `owner/name` of a GitHub repository.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Repo {
    pub owner: String,
    pub name: String,
}

impl Repo {
    /// `owner/name`, as `GITHUB_REPOSITORY` and gantry.toml's `project.repository` hold it.
    pub fn parse(text: &str) -> Option<Self> {
        let (owner, name) = text.trim().split_once('/')?;
        let name = name.strip_suffix(".git").unwrap_or(name);
        let ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        (ok(owner) && ok(name)).then(|| Self { owner: owner.to_owned(), name: name.to_owned() })
    }

    /// The repository of a remote URL: `git@github.com:o/r.git`, `https://github.com/o/r`,
    /// `ssh://git@github.com/o/r.git`.
    pub fn from_remote_url(url: &str) -> Option<Self> {
        let url = url.trim().trim_end_matches('/');
        let path = match url.split_once("://") {
            Some((_, rest)) => rest.split_once('/')?.1,
            None => url.split_once(':')?.1,
        };
        let mut parts = path.rsplitn(3, '/');
        let name = parts.next()?;
        let owner = parts.next()?;
        Self::parse(&format!("{owner}/{name}"))
    }

    /// The repository's web page (`GITHUB_SERVER_URL`, default `https://github.com`).
    pub fn web_url(&self) -> String {
        format!("{}/{}/{}", server_url(), self.owner, self.name)
    }
}

impl std::fmt::Display for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// The token from `GITHUB_TOKEN`, else `GH_TOKEN`.
pub fn token_from_env() -> Option<String> {
    ["GITHUB_TOKEN", "GH_TOKEN"].iter().find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
}

/// `GITHUB_API_URL`, else `https://api.github.com`.
pub fn api_url() -> String {
    std::env::var("GITHUB_API_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "https://api.github.com".into())
        .trim_end_matches('/')
        .to_owned()
}

/// `GITHUB_SERVER_URL`, else `https://github.com`.
pub fn server_url() -> String {
    std::env::var("GITHUB_SERVER_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "https://github.com".into())
        .trim_end_matches('/')
        .to_owned()
}

#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    #[error("no GitHub token: set GITHUB_TOKEN (or GH_TOKEN)")]
    NoToken,
    #[error("cannot tell the GitHub repository")]
    NoRepo,
    #[error("invalid GitHub API URL `{url}`")]
    BadUrl { url: String },
    #[error("cannot upload {path}: {message}")]
    Asset { path: String, message: String },
    #[error("cannot set up the GitHub client")]
    Client {
        #[source]
        source: Box<octocrab::Error>,
    },
    #[error("GitHub {method} {path} failed: HTTP {status}: {message}")]
    Api { method: String, path: String, status: u16, message: String, body: serde_json::Value },
    #[error("GitHub {method} {path} failed")]
    Transport {
        method: String,
        path: String,
        #[source]
        source: Box<octocrab::Error>,
    },
    #[error("GitHub {method} {path} answered with unreadable JSON")]
    Decode {
        method: String,
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

impl GithubError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::NoToken | Self::NoRepo | Self::BadUrl { .. } => exit::USAGE,
            _ => exit::FAILED,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            Self::NoToken => Some(
                "create a token with `contents: write` (in Actions: `permissions: contents: write` and GITHUB_TOKEN: ${{ github.token }})"
                    .into(),
            ),
            Self::NoRepo => Some(
                "set `repository = \"OWNER/NAME\"` under [project] in gantry.toml, or GITHUB_REPOSITORY, or add an `origin` remote on GitHub"
                    .into(),
            ),
            Self::Api { status: 401, .. } => Some("the token is invalid or expired".into()),
            Self::Api { status: 403 | 404, .. } => {
                Some("check the repository name and that the token may write to it (contents: write)".into())
            }
            Self::Api { status: 429, .. } => Some("GitHub's rate limit: wait and run again".into()),
            Self::Asset { .. } => Some("run gantry release again: it packages the release again first".into()),
            _ => None,
        }
    }

    /// Whether GitHub said 422 with an error whose `code` is `code` (e.g. `already_exists`).
    pub fn is_unprocessable(&self, code: &str) -> bool {
        match self {
            Self::Api { status: 422, body, .. } => {
                body["errors"].as_array().is_some_and(|errs| errs.iter().any(|e| e["code"] == code))
                    || body["message"].as_str().is_some_and(|m| m.to_ascii_lowercase().contains("already exists"))
            }
            _ => false,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A body to send: none, JSON, or raw bytes with a content type.
pub(crate) enum Body<'a> {
    None,
    Json(&'a serde_json::Value),
    Bytes {
        content_type: &'a str,
        data: Bytes,
    },
    /// No body; asks for the raw bytes (`Accept: application/octet-stream`).
    Download,
}

/// What GitHub answered.
pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json<T: serde::de::DeserializeOwned>(&self, method: &Method, path: &str) -> Result<T, GithubError> {
        serde_json::from_slice(&self.body).map_err(|source| GithubError::Decode {
            method: method.to_string(),
            path: path.to_owned(),
            source,
        })
    }

    /// The `rel="next"` URL of a `Link` header (REST "Using pagination in the REST API").
    pub fn next_page(&self) -> Option<String> {
        let link = self.headers.get(http::header::LINK)?.to_str().ok()?;
        link.split(',').find_map(|part| {
            let (url, params) = part.split_once(';')?;
            params
                .split(';')
                .any(|p| p.trim() == "rel=\"next\"")
                .then(|| url.trim().trim_start_matches('<').trim_end_matches('>').to_owned())
        })
    }
}

/// A client for one repository. Holds the token (never printed: no `Debug`).
pub struct GitHub {
    crab: Octocrab,
    token: String,
    api: String,
    pub repo: Repo,
}

impl GitHub {
    /// A client for `repo` at `api` (e.g. `https://api.github.com`).
    pub fn new(token: &str, api: &str, repo: Repo) -> Result<Self, GithubError> {
        let crab = build(token, api, None)?;
        Ok(Self { crab, token: token.to_owned(), api: api.trim_end_matches('/').to_owned(), repo })
    }

    /// `/repos/OWNER/NAME` followed by `tail`.
    pub(crate) fn path(&self, tail: &str) -> String {
        format!("/repos/{}/{}{tail}", self.repo.owner, self.repo.name)
    }

    /// Sends one request (`path` on the API host, or an absolute URL on the API host) and
    /// returns the reply, any status; transport failures are errors.
    pub(crate) async fn send(&self, method: Method, path: &str, body: Body<'_>) -> Result<Reply, GithubError> {
        send(&self.crab, method, path, body).await
    }

    /// Like `send`, but any status other than 2xx is an error naming the call.
    pub(crate) async fn call(&self, method: Method, path: &str, body: Body<'_>) -> Result<Reply, GithubError> {
        ok(method.clone(), path, self.send(method, path, body).await?)
    }

    /// A client for the uploads host of a release's `upload_url` (`uploads.github.com` on
    /// github.com; the same host under `/api/uploads` on GitHub Enterprise Server), so the
    /// token goes to that host and no other.
    pub(crate) fn uploads(&self, upload_url: &str) -> Result<Octocrab, GithubError> {
        let uri: http::Uri = upload_url.parse().map_err(|_| GithubError::BadUrl { url: upload_url.to_owned() })?;
        let origin = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or("https"),
            uri.authority().map(http::uri::Authority::as_str).unwrap_or_default()
        );
        build(&self.token, &self.api, Some(&origin))
    }
}

fn build(token: &str, api: &str, uploads: Option<&str>) -> Result<Octocrab, GithubError> {
    let bad = |url: &str| GithubError::BadUrl { url: url.to_owned() };
    let mut builder = Octocrab::builder()
        .personal_token(token.to_owned())
        .base_uri(api)
        .map_err(|_| bad(api))?
        .add_retry_config(RetryConfig::HandleRateLimits {
            metrics: std::sync::Arc::new(octocrab::service::middleware::retry::NoOpRateLimitMetrics),
            max_retries: 3,
            min_wait_seconds: 1,
            retry_on_forbidden: false,
        })
        .set_connect_timeout(Some(Duration::from_secs(10)))
        .set_read_timeout(Some(Duration::from_secs(120)));
    if let Some(uploads) = uploads {
        builder = builder.upload_uri(uploads).map_err(|_| bad(uploads))?;
    }
    builder.build().map_err(|e| GithubError::Client { source: Box::new(e) })
}

pub(crate) async fn send(crab: &Octocrab, method: Method, path: &str, body: Body<'_>) -> Result<Reply, GithubError> {
    let transport =
        |source| GithubError::Transport { method: method.to_string(), path: shown(path), source: Box::new(source) };
    let accept = if matches!(body, Body::Download) { "application/octet-stream" } else { JSON_MEDIA };
    let builder = http::Request::builder().method(method.clone()).uri(path).header(http::header::ACCEPT, accept);
    let request = match body {
        Body::None | Body::Download => crab.build_request(builder, None::<&()>).map_err(transport)?,
        Body::Json(value) => crab.build_request(builder, Some(value)).map_err(transport)?,
        Body::Bytes { content_type, data } => builder
            .header(http::header::CONTENT_TYPE, content_type)
            .header(http::header::CONTENT_LENGTH, data.len())
            .body(octocrab::OctoBody::from(data))
            .map_err(|_| GithubError::BadUrl { url: shown(path) })?,
    };
    let response = tokio::time::timeout(CALL_DEADLINE, crab.execute(request))
        .await
        .map_err(|_| GithubError::Api {
            method: method.to_string(),
            path: shown(path),
            status: 408,
            message: "no answer within 15 minutes (rate-limit waits and retries included)".into(),
            body: serde_json::Value::Null,
        })?
        .map_err(transport)?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(transport)?.to_bytes();
    let remaining = parts.headers.get("x-ratelimit-remaining").and_then(|v| v.to_str().ok()).unwrap_or("?");
    tracing::debug!(%method, path = %shown(path), status = parts.status.as_u16(), remaining, "github");
    Ok(Reply { status: parts.status, headers: parts.headers, body })
}

pub(crate) fn ok(method: Method, path: &str, reply: Reply) -> Result<Reply, GithubError> {
    if reply.status.is_success() {
        return Ok(reply);
    }
    let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or(serde_json::Value::Null);
    let mut message =
        body["message"].as_str().unwrap_or_else(|| reply.status.canonical_reason().unwrap_or("")).to_owned();
    if let Some(errors) = body["errors"].as_array() {
        let codes: Vec<String> = errors
            .iter()
            .map(|e| {
                let field = e["field"].as_str().map(|f| format!("{f} ")).unwrap_or_default();
                format!("{field}{}", e["code"].as_str().or(e["message"].as_str()).unwrap_or("invalid"))
            })
            .collect();
        if !codes.is_empty() {
            message = format!("{message} ({})", codes.join(", "));
        }
    }
    Err(GithubError::Api {
        method: method.to_string(),
        path: shown(path),
        status: reply.status.as_u16(),
        message,
        body,
    })
}

/// A path or URL as it appears in messages: no query string.
fn shown(path: &str) -> String {
    path.split('?').next().unwrap_or(path).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_from_remotes() {
        let want = Some(Repo { owner: "acme".into(), name: "hello".into() });
        for url in [
            "git@github.com:acme/hello.git",
            "https://github.com/acme/hello",
            "https://github.com/acme/hello.git/",
            "ssh://git@github.com/acme/hello.git",
            "https://x-access-token@github.example.com/acme/hello",
        ] {
            assert_eq!(Repo::from_remote_url(url), want, "{url}");
        }
        assert_eq!(Repo::parse("acme/hello"), want);
        assert_eq!(Repo::parse("acme"), None);
        assert_eq!(Repo::parse("acme/he llo"), None);
    }

    #[test]
    fn next_page_from_a_link_header() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::LINK,
            "<https://api.github.com/repositories/1/releases?page=2>; rel=\"next\", <https://api.github.com/repositories/1/releases?page=5>; rel=\"last\""
                .parse()
                .unwrap(),
        );
        let reply = Reply { status: StatusCode::OK, headers, body: Bytes::new() };
        assert_eq!(reply.next_page().as_deref(), Some("https://api.github.com/repositories/1/releases?page=2"));
        let reply = Reply { status: StatusCode::OK, headers: HeaderMap::new(), body: Bytes::new() };
        assert_eq!(reply.next_page(), None);
    }
}
