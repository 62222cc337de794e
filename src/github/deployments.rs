//! GitHub Deployments (REST "Deployments" and "Deployment statuses"), so the repository
//! shows what is live in each environment. `Tracker::from_env` is active only inside GitHub
//! Actions (`GITHUB_ACTIONS=true`) with a token and a repository; every call is best effort:
//! a failure is returned as a warning for the caller to print, never as a deploy failure.

use http::Method;

use super::{Body, GitHub, Repo};

/// The end state of a deploy, as a deployment status `state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Live: `success` (GitHub marks earlier deployments of the environment `inactive`).
    Success,
    /// Failed and rolled back, or interrupted: `failure`; what was live before stays live.
    Failure,
    /// The rollback failed too: `error`, the environment needs a hand.
    Error,
}

impl Outcome {
    fn state(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Error => "error",
        }
    }
}

/// One GitHub Deployment for one `gantry deploy` (or rollback) of an environment.
pub struct Tracker {
    github: GitHub,
    environment: String,
    production: bool,
    log_url: Option<String>,
    id: Option<u64>,
}

impl Tracker {
    /// A tracker when running in Actions with a token and a repository (`GITHUB_REPOSITORY`
    /// or `repository`), else `None`.
    pub fn from_env(environment: &str, production: bool, repository: Option<&str>) -> Option<Self> {
        if std::env::var("GITHUB_ACTIONS").ok().as_deref() != Some("true") {
            return None;
        }
        let token = super::token_from_env()?;
        let repo = repository
            .and_then(Repo::parse)
            .or_else(|| std::env::var("GITHUB_REPOSITORY").ok().as_deref().and_then(Repo::parse))?;
        let github = GitHub::new(&token, &super::api_url(), repo).ok()?;
        let log_url = match (std::env::var("GITHUB_RUN_ID"), std::env::var("GITHUB_REPOSITORY")) {
            (Ok(run), Ok(repo)) if !run.is_empty() => {
                Some(format!("{}/{repo}/actions/runs/{run}", super::server_url()))
            }
            _ => None,
        };
        Some(Self { github, environment: environment.to_owned(), production, log_url, id: None })
    }

    /// The deployment's id once created.
    pub fn id(&self) -> Option<u64> {
        self.id
    }

    /// Creates the deployment of `version` at `git_ref` (`GITHUB_SHA` when unset) and posts
    /// `in_progress`. Returns a warning to print on failure.
    pub async fn start(&mut self, version: &str, git_ref: Option<&str>) -> Result<(), String> {
        let git_ref = git_ref
            .map(str::to_owned)
            .or_else(|| std::env::var("GITHUB_SHA").ok().filter(|s| !s.is_empty()))
            .ok_or("no commit to name (GITHUB_SHA is unset)")?;
        let path = self.github.path("/deployments");
        let body = serde_json::json!({
            "ref": git_ref,
            "task": "deploy",
            "auto_merge": false,
            "required_contexts": [],
            "environment": self.environment,
            "description": format!("gantry deploy {version}"),
            "production_environment": self.production,
            "payload": { "version": version },
        });
        let reply = self.github.call(Method::POST, &path, Body::Json(&body)).await.map_err(|e| e.to_string())?;
        let created: serde_json::Value = reply.json(&Method::POST, &path).map_err(|e| e.to_string())?;
        let id = created["id"].as_u64().ok_or("GitHub returned a deployment without an id")?;
        self.id = Some(id);
        self.status("in_progress", &format!("deploying {version}"), None).await
    }

    /// Posts the final status. `url` is the environment's address when known.
    pub async fn finish(&self, outcome: Outcome, description: &str, url: Option<&str>) -> Result<(), String> {
        if self.id.is_none() {
            return Ok(());
        }
        self.status(outcome.state(), description, url).await
    }

    async fn status(&self, state: &str, description: &str, url: Option<&str>) -> Result<(), String> {
        let Some(id) = self.id else { return Ok(()) };
        let path = self.github.path(&format!("/deployments/{id}/statuses"));
        // GitHub caps the description at 140 characters.
        let description: String = description.chars().take(140).collect();
        let mut body = serde_json::json!({
            "state": state,
            "description": description,
            "environment": self.environment,
            "auto_inactive": true,
        });
        if let Some(log) = &self.log_url {
            body["log_url"] = log.clone().into();
        }
        if let Some(url) = url {
            body["environment_url"] = url.into();
        }
        self.github.call(Method::POST, &path, Body::Json(&body)).await.map(|_| ()).map_err(|e| e.to_string())
    }
}
