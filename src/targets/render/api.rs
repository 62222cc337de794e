//! The Render REST API calls the `render` target makes, as documented at
//! <https://api-docs.render.com/reference> (base `https://api.render.com/v1`, bearer API key):
//! Retrieve service (`GET /services/{id}`), List deploys (`GET /services/{id}/deploys`,
//! newest first, `[{deploy, cursor}]`), Retrieve deploy (`GET .../deploys/{deployId}`),
//! Trigger deploy (`POST .../deploys` with `imageUrl` or `commitId`), Cancel deploy
//! (`POST .../deploys/{deployId}/cancel`) and Roll back deploy (`POST /services/{id}/rollback`
//! with `deployId`). Errors are `{"id", "message"}`; each becomes a `TargetError` naming the
//! call and the service, with a hint for 401/403/404.

use serde::Deserialize;

use super::super::TargetError;
use super::super::rest::{self, Retry, Secret};

/// Where the API is: `GANTRY_RENDER_API_URL` (tests, proxies), else Render's own.
pub const API_URL_ENV: &str = "GANTRY_RENDER_API_URL";
const DEFAULT_API_URL: &str = "https://api.render.com/v1";

pub struct Api {
    http: reqwest::Client,
    base: String,
    key: Secret,
    /// The variable the key came from (for messages).
    key_env: String,
    service: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    pub id: String,
    #[serde(default)]
    pub name: String,
    /// `web_service`, `private_service`, `background_worker`, `static_site`, `cron_job`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Image-backed services: the image they run, e.g. `docker.io/acme/api:latest`.
    #[serde(default)]
    pub image_path: Option<String>,
    /// Git-backed services: the repository and branch.
    #[serde(default)]
    pub repo: Option<String>,
    #[serde(default)]
    pub branch: Option<String>,
    /// `suspended` or `not_suspended`.
    #[serde(default)]
    pub suspended: String,
    #[serde(default)]
    pub service_details: Details,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Details {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub health_check_path: Option<String>,
    #[serde(default)]
    pub num_instances: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deploy {
    pub id: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub commit: Option<Commit>,
    #[serde(default)]
    pub image: Option<Image>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Commit {
    pub id: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Image {
    /// The reference the deploy was created with, e.g. `docker.io/acme/api:1.2.0`.
    #[serde(rename = "ref", default)]
    pub reference: Option<String>,
    /// The digest Render resolved it to.
    #[serde(default)]
    pub sha: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DeployWithCursor {
    deploy: Deploy,
}

#[derive(Debug, Deserialize)]
struct RenderError {
    #[serde(default)]
    message: Option<String>,
}

impl Deploy {
    /// Statuses a deploy does not leave.
    pub fn finished(&self) -> bool {
        matches!(
            self.status.as_str(),
            "live" | "deactivated" | "build_failed" | "update_failed" | "canceled" | "pre_deploy_failed"
        )
    }

    pub fn failed(&self) -> bool {
        matches!(self.status.as_str(), "build_failed" | "update_failed" | "canceled" | "pre_deploy_failed")
    }

    /// What it runs: the image reference, else the commit.
    pub fn source(&self) -> String {
        match (&self.image, &self.commit) {
            (Some(Image { reference: Some(r), sha }), _) => match sha {
                Some(sha) => format!("{r} ({sha})"),
                None => r.clone(),
            },
            (_, Some(c)) => format!("commit {}", &c.id[..c.id.len().min(12)]),
            _ => "an unknown source".into(),
        }
    }
}

impl Api {
    /// For service `service`, with the key in the variable `key_env`.
    pub fn new(service: &str, key_env: &str) -> Result<Self, TargetError> {
        let key = std::env::var(key_env).ok().filter(|k| !k.trim().is_empty()).ok_or_else(|| {
            TargetError::new(format!("`{key_env}` is not set: gantry needs a Render API key to deploy `{service}`"))
                .with_hint(format!(
                    "create a key in the Render Dashboard (Account Settings → API Keys) and export it as {key_env}, \
                     or name another variable with `api_key_env`"
                ))
        })?;
        let base = std::env::var(API_URL_ENV)
            .ok()
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_API_URL.to_owned())
            .trim_end_matches('/')
            .to_owned();
        Ok(Self {
            http: rest::client(),
            base,
            key: Secret::new(key.trim()),
            key_env: key_env.to_owned(),
            service: service.to_owned(),
        })
    }

    pub async fn service(&self, progress: &dyn Fn(String)) -> Result<Service, TargetError> {
        let path = format!("/services/{}", self.service);
        self.read(&path, "Retrieve service", progress).await
    }

    /// The newest `limit` deploys, newest first.
    pub async fn deploys(&self, limit: u32, progress: &dyn Fn(String)) -> Result<Vec<Deploy>, TargetError> {
        let path = format!("/services/{}/deploys?limit={limit}", self.service);
        let list: Vec<DeployWithCursor> = self.read(&path, "List deploys", progress).await?;
        Ok(list.into_iter().map(|d| d.deploy).collect())
    }

    pub async fn deploy(&self, id: &str, progress: &dyn Fn(String)) -> Result<Deploy, TargetError> {
        let path = format!("/services/{}/deploys/{id}", self.service);
        self.read(&path, "Retrieve deploy", progress).await
    }

    /// Trigger deploy with `body` (`imageUrl` or `commitId`).
    pub async fn trigger(&self, body: serde_json::Value, progress: &dyn Fn(String)) -> Result<Deploy, TargetError> {
        let path = format!("/services/{}/deploys", self.service);
        self.write(&path, Some(body), "Trigger deploy", progress).await
    }

    pub async fn cancel(&self, id: &str, progress: &dyn Fn(String)) -> Result<Deploy, TargetError> {
        let path = format!("/services/{}/deploys/{id}/cancel", self.service);
        self.write(&path, None, "Cancel deploy", progress).await
    }

    /// Roll back deploy: a new deploy of `to`'s build.
    pub async fn rollback(&self, to: &str, progress: &dyn Fn(String)) -> Result<Deploy, TargetError> {
        let path = format!("/services/{}/rollback", self.service);
        self.write(&path, Some(serde_json::json!({ "deployId": to })), "Roll back deploy", progress).await
    }

    async fn read<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        call: &str,
        progress: &dyn Fn(String),
    ) -> Result<T, TargetError> {
        let url = format!("{}{path}", self.base);
        let build = || self.http.get(&url).bearer_auth(self.key.expose()).header("accept", "application/json");
        let answer = rest::send(build, Retry::Idempotent, progress).await.map_err(|e| self.transport(call, e))?;
        self.parse(call, &answer)
    }

    async fn write<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: Option<serde_json::Value>,
        call: &str,
        progress: &dyn Fn(String),
    ) -> Result<T, TargetError> {
        let url = format!("{}{path}", self.base);
        let build = || {
            let request = self.http.post(&url).bearer_auth(self.key.expose()).header("accept", "application/json");
            match &body {
                Some(b) => request.json(b),
                None => request,
            }
        };
        let answer = rest::send(build, Retry::NotProcessed, progress).await.map_err(|e| self.transport(call, e))?;
        self.parse(call, &answer)
    }

    fn transport(&self, call: &str, e: reqwest::Error) -> TargetError {
        TargetError::new(format!("Render API {call} for service `{}` failed", self.service))
            .with_source(e)
            .with_hint(format!("check the network; the API is {} ({API_URL_ENV} changes it)", self.base))
    }

    fn parse<T: serde::de::DeserializeOwned>(&self, call: &str, answer: &rest::Answer) -> Result<T, TargetError> {
        if answer.ok() {
            return answer.json().map_err(|e| {
                TargetError::new(format!(
                    "Render API {call} for service `{}` answered something unexpected",
                    self.service
                ))
                .with_source(e)
            });
        }
        let message = answer.json::<RenderError>().ok().and_then(|e| e.message).unwrap_or_else(|| answer.text());
        let service = &self.service;
        let error = TargetError::new(format!(
            "Render API {call} for service `{service}` answered {}: {message}",
            answer.status
        ));
        Err(match answer.status {
            401 => error.with_hint(format!(
                "Render refused the API key in {}: it is wrong, expired or revoked; create a new one (Account Settings → API Keys)",
                self.key_env
            )),
            403 => error.with_hint(format!(
                "the key in {} belongs to a user without access to `{service}`; use a key of its workspace",
                self.key_env
            )),
            404 => error.with_hint(format!(
                "check `service` in gantry.toml: `{service}` must be the id of a service the key's workspace has (srv-...)"
            )),
            429 => error.with_hint(match answer.retry_after {
                Some(w) => format!("Render's rate limit; it asked to wait {}s: try again later", w.as_secs()),
                None => "Render's rate limit: try again later".into(),
            }),
            _ => error,
        })
    }
}
