//! The GitHub REST API state and its operations, after GitHub's REST reference
//! (https://docs.github.com/en/rest, API version 2022-11-28). Each handler names the
//! reference section it follows.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::server::Host;

pub struct Request {
    pub host: Host,
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct Release {
    pub id: u64,
    pub tag_name: String,
    pub target_commitish: String,
    pub name: String,
    pub body: String,
    pub draft: bool,
    pub prerelease: bool,
    pub make_latest: Option<String>,
    pub assets: Vec<Asset>,
}

#[derive(Debug, Clone)]
pub struct Asset {
    pub id: u64,
    pub name: String,
    /// `uploaded`, or `starter` for an upload that never completed.
    pub state: String,
    pub content_type: String,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct Deployment {
    pub id: u64,
    pub git_ref: String,
    pub environment: String,
    pub production: bool,
    pub payload: Value,
    /// Statuses in the order they were posted: (state, description, log_url).
    pub statuses: Vec<(String, String, Option<String>)>,
}

/// Faults a test injects.
#[derive(Debug, Default)]
pub struct Faults {
    /// Asset name → how many of its uploads to cut off part way (see `server.rs`).
    pub cut_uploads: BTreeMap<String, u32>,
    /// Answer the next N API requests with this status (403 or 429) and `retry-after: 1`,
    /// as GitHub's secondary rate limit does.
    pub rate_limit: Option<(u16, u32)>,
    /// Leave `digest` out of asset objects (older API versions), so clients must hash.
    pub hide_digest: bool,
}

pub struct State {
    pub owner: String,
    pub repo: String,
    pub token: String,
    pub uploads_url: String,
    pub releases: Vec<Release>,
    /// Tag name → commit.
    pub tags: BTreeMap<String, String>,
    /// The commits GitHub has (pushed), when a test says; `None` accepts any.
    pub commits: Option<Vec<String>>,
    pub deployments: Vec<Deployment>,
    pub faults: Faults,
    /// `METHOD PATH` of every request, in order (query strings left out).
    pub requests: Vec<String>,
    /// Requests answered with a rate-limit error.
    pub rate_limited: u32,
    next_id: u64,
    remaining: u64,
}

impl State {
    pub fn new(owner: &str, repo: &str, token: &str) -> Self {
        Self {
            owner: owner.into(),
            repo: repo.into(),
            token: token.into(),
            uploads_url: String::new(),
            releases: Vec::new(),
            tags: BTreeMap::new(),
            commits: None,
            deployments: Vec::new(),
            faults: Faults::default(),
            requests: Vec::new(),
            rate_limited: 0,
            next_id: 1000,
            remaining: 5000,
        }
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Adds a published release (for pagination tests), newest last.
    pub fn seed_release(&mut self, tag: &str, draft: bool) -> u64 {
        let id = self.id();
        self.releases.push(Release {
            id,
            tag_name: tag.into(),
            target_commitish: "main".into(),
            name: tag.into(),
            body: String::new(),
            draft,
            prerelease: false,
            make_latest: None,
            assets: Vec::new(),
        });
        id
    }

    pub fn release(&self, tag: &str) -> Vec<&Release> {
        self.releases.iter().filter(|r| r.tag_name == tag).collect()
    }

    /// An upload cut off part way leaves an asset in state `starter` under its name (GitHub
    /// then refuses that name with 422 `already_exists` until the asset is deleted).
    pub fn broken_upload(&mut self, path: &str, name: &str) {
        let id = path.split('/').nth(5).and_then(|s| s.parse::<u64>().ok());
        let asset_id = self.id();
        // A name already taken is refused before the body is read; the broken asset is the first one.
        if let Some(release) = self.releases.iter_mut().find(|r| Some(r.id) == id)
            && !release.assets.iter().any(|a| a.name == name)
        {
            release.assets.push(Asset {
                id: asset_id,
                name: name.into(),
                state: "starter".into(),
                content_type: "application/octet-stream".into(),
                data: Vec::new(),
            });
        }
    }

    pub fn handle(&mut self, req: &Request) -> Reply {
        self.requests.push(format!("{} {}", req.method, req.path));
        // "Authenticating to the REST API": a bad or missing token is 401 Bad credentials.
        if req.headers.get("authorization").map(String::as_str) != Some(&format!("Bearer {}", self.token)) {
            return self.error(401, "Bad credentials", None);
        }
        // "Rate limits for the REST API": exceeding a (secondary) rate limit answers 403 or
        // 429 with `retry-after` (seconds) and `x-ratelimit-remaining: 0`.
        if let Some((status, n)) = self.faults.rate_limit
            && n > 0
        {
            self.faults.rate_limit = if n > 1 { Some((status, n - 1)) } else { None };
            self.rate_limited += 1;
            let mut reply = self.error(status, "You have exceeded a secondary rate limit.", None);
            reply.headers.retain(|(k, _)| k != "x-ratelimit-remaining");
            reply.headers.push(("x-ratelimit-remaining".into(), "0".into()));
            reply.headers.push(("retry-after".into(), "1".into()));
            return reply;
        }
        self.remaining = self.remaining.saturating_sub(1);
        let prefix = format!("/repos/{}/{}", self.owner, self.repo);
        let Some(rest) = req.path.strip_prefix(&prefix) else {
            return self.error(404, "Not Found", None);
        };
        let rest: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        match (req.host, req.method.as_str(), rest.as_slice()) {
            (Host::Uploads, "POST", ["releases", id, "assets"]) => self.upload(req, id),
            (Host::Uploads, _, _) => self.error(404, "Not Found", None),
            (_, "GET", ["releases", "tags", tag]) => self.get_by_tag(&decode(tag)),
            (_, "GET", ["releases"]) => {
                let all: Vec<Value> = self.releases.iter().rev().map(|r| self.release_json(r)).collect();
                self.page(req, all)
            }
            (_, "POST", ["releases"]) => self.create_release(&body),
            (_, "PATCH", ["releases", id]) => self.update_release(id, &body),
            (_, "GET", ["releases", id, "assets"]) => match self.find(id) {
                Some(r) => {
                    let all: Vec<Value> = r.assets.iter().map(|a| self.asset_json(a)).collect();
                    self.page(req, all)
                }
                None => self.error(404, "Not Found", None),
            },
            (_, "GET", ["releases", "assets", id]) => self.get_asset(req, id),
            (_, "DELETE", ["releases", "assets", id]) => self.delete_asset(id),
            (_, "GET", ["git", "ref", "tags", tag]) => self.get_ref(&decode(tag)),
            (_, "POST", ["git", "refs"]) => self.create_ref(&body),
            (_, "POST", ["deployments"]) => self.create_deployment(&body),
            (_, "POST", ["deployments", id, "statuses"]) => self.create_status(id, &body),
            _ => self.error(404, "Not Found", None),
        }
    }

    fn find(&self, id: &str) -> Option<&Release> {
        let id: u64 = id.parse().ok()?;
        self.releases.iter().find(|r| r.id == id)
    }

    /// "Get a release by tag name": published releases only (drafts are not found).
    fn get_by_tag(&self, tag: &str) -> Reply {
        match self.releases.iter().find(|r| r.tag_name == tag && !r.draft) {
            Some(r) => self.json(200, &self.release_json(r)),
            None => self.error(404, "Not Found", None),
        }
    }

    /// "Create a release": 201; 422 `already_exists` on `tag_name` when a release has it.
    fn create_release(&mut self, body: &Value) -> Reply {
        let Some(tag) = body["tag_name"].as_str() else {
            return self.error(
                422,
                "Validation Failed",
                Some(json!({"resource": "Release", "code": "missing_field", "field": "tag_name"})),
            );
        };
        if self.releases.iter().any(|r| r.tag_name == tag) {
            return self.error(
                422,
                "Validation Failed",
                Some(json!({"resource": "Release", "code": "already_exists", "field": "tag_name"})),
            );
        }
        let id = self.id();
        let release = Release {
            id,
            tag_name: tag.into(),
            target_commitish: body["target_commitish"].as_str().unwrap_or("main").into(),
            name: body["name"].as_str().unwrap_or(tag).into(),
            body: body["body"].as_str().unwrap_or("").into(),
            draft: body["draft"].as_bool().unwrap_or(false),
            prerelease: body["prerelease"].as_bool().unwrap_or(false),
            make_latest: None,
            assets: Vec::new(),
        };
        if !release.draft {
            self.tags.entry(release.tag_name.clone()).or_insert_with(|| release.target_commitish.clone());
        }
        let value = self.release_json(&release);
        self.releases.push(release);
        self.json(201, &value)
    }

    /// "Update a release": publishing a draft creates its tag at `target_commitish` when
    /// the tag does not exist yet.
    fn update_release(&mut self, id: &str, body: &Value) -> Reply {
        let Some(index) = id.parse::<u64>().ok().and_then(|id| self.releases.iter().position(|r| r.id == id)) else {
            return self.error(404, "Not Found", None);
        };
        let release = &mut self.releases[index];
        if let Some(draft) = body["draft"].as_bool() {
            release.draft = draft;
        }
        if let Some(pre) = body["prerelease"].as_bool() {
            release.prerelease = pre;
        }
        if let Some(latest) = body["make_latest"].as_str() {
            release.make_latest = Some(latest.into());
        }
        if let Some(text) = body["body"].as_str() {
            release.body = text.into();
        }
        let release = release.clone();
        if !release.draft {
            self.tags.entry(release.tag_name.clone()).or_insert_with(|| release.target_commitish.clone());
        }
        self.json(200, &self.release_json(&release))
    }

    /// "Upload a release asset" (uploads host): raw body, `name` query; 422
    /// `already_exists` when the release has an asset of that name.
    fn upload(&mut self, req: &Request, id: &str) -> Reply {
        let Some(name) = req.query.get("name").cloned() else {
            return self.error(
                422,
                "Validation Failed",
                Some(json!({"resource": "ReleaseAsset", "code": "missing_field", "field": "name"})),
            );
        };
        let Some(index) = id.parse::<u64>().ok().and_then(|id| self.releases.iter().position(|r| r.id == id)) else {
            return self.error(404, "Not Found", None);
        };
        if self.releases[index].assets.iter().any(|a| a.name == name) {
            return self.error(
                422,
                "Validation Failed",
                Some(json!({"resource": "ReleaseAsset", "code": "already_exists", "field": "name"})),
            );
        }
        let asset_id = self.id();
        let asset = Asset {
            id: asset_id,
            name,
            state: "uploaded".into(),
            content_type: req.headers.get("content-type").cloned().unwrap_or_default(),
            data: req.body.clone(),
        };
        let value = self.asset_json(&asset);
        self.releases[index].assets.push(asset);
        self.json(201, &value)
    }

    /// "Get a release asset": JSON, or the bytes with `Accept: application/octet-stream`.
    fn get_asset(&self, req: &Request, id: &str) -> Reply {
        let id: u64 = id.parse().unwrap_or(0);
        let Some(asset) = self.releases.iter().flat_map(|r| &r.assets).find(|a| a.id == id) else {
            return self.error(404, "Not Found", None);
        };
        if req.headers.get("accept").is_some_and(|a| a.contains("application/octet-stream")) {
            let mut reply = self.reply(200, asset.data.clone());
            reply.headers.push(("Content-Type".into(), "application/octet-stream".into()));
            return reply;
        }
        self.json(200, &self.asset_json(asset))
    }

    /// "Delete a release asset": 204.
    fn delete_asset(&mut self, id: &str) -> Reply {
        let id: u64 = id.parse().unwrap_or(0);
        let mut found = false;
        for release in &mut self.releases {
            let before = release.assets.len();
            release.assets.retain(|a| a.id != id);
            found |= release.assets.len() != before;
        }
        if found { self.reply(204, Vec::new()) } else { self.error(404, "Not Found", None) }
    }

    /// "Get a reference" (`GET /repos/{owner}/{repo}/git/ref/{ref}`).
    fn get_ref(&self, tag: &str) -> Reply {
        match self.tags.get(tag) {
            Some(sha) => {
                self.json(200, &json!({"ref": format!("refs/tags/{tag}"), "object": {"type": "commit", "sha": sha}}))
            }
            None => self.error(404, "Not Found", None),
        }
    }

    /// "Create a reference": 201; 422 "Reference already exists", or "Object does not exist"
    /// for a commit GitHub does not have.
    fn create_ref(&mut self, body: &Value) -> Reply {
        let (Some(r), Some(sha)) = (body["ref"].as_str(), body["sha"].as_str()) else {
            return self.error(422, "Invalid request.", None);
        };
        let Some(tag) = r.strip_prefix("refs/tags/") else {
            return self.error(422, "Reference name must be a tag here", None);
        };
        if self.tags.contains_key(tag) {
            return self.error(422, "Reference already exists", None);
        }
        if self.commits.as_ref().is_some_and(|known| !known.iter().any(|c| c == sha)) {
            return self.error(422, "Object does not exist", None);
        }
        self.tags.insert(tag.into(), sha.into());
        self.json(201, &json!({"ref": r, "object": {"type": "commit", "sha": sha}}))
    }

    /// "Create a deployment": 201 with the deployment.
    fn create_deployment(&mut self, body: &Value) -> Reply {
        let Some(git_ref) = body["ref"].as_str() else {
            return self.error(
                422,
                "Validation Failed",
                Some(json!({"resource": "Deployment", "code": "missing_field", "field": "ref"})),
            );
        };
        let id = self.id();
        let d = Deployment {
            id,
            git_ref: git_ref.into(),
            environment: body["environment"].as_str().unwrap_or("production").into(),
            production: body["production_environment"].as_bool().unwrap_or(false),
            payload: body["payload"].clone(),
            statuses: Vec::new(),
        };
        let value = json!({"id": id, "ref": d.git_ref, "environment": d.environment, "payload": d.payload,
            "production_environment": d.production, "task": body["task"]});
        self.deployments.push(d);
        self.json(201, &value)
    }

    /// "Create a deployment status": 201. With `auto_inactive` (default true), a `success`
    /// marks the environment's earlier non-transient deployments `inactive`.
    fn create_status(&mut self, id: &str, body: &Value) -> Reply {
        let id: u64 = id.parse().unwrap_or(0);
        let state = body["state"].as_str().unwrap_or("").to_owned();
        let valid = ["error", "failure", "inactive", "in_progress", "queued", "pending", "success"];
        if !valid.contains(&state.as_str()) {
            return self.error(
                422,
                "Validation Failed",
                Some(json!({"resource": "DeploymentStatus", "code": "invalid", "field": "state"})),
            );
        }
        let Some(index) = self.deployments.iter().position(|d| d.id == id) else {
            return self.error(404, "Not Found", None);
        };
        let env = self.deployments[index].environment.clone();
        self.deployments[index].statuses.push((
            state.clone(),
            body["description"].as_str().unwrap_or("").into(),
            body["log_url"].as_str().map(str::to_owned),
        ));
        if state == "success" && body["auto_inactive"].as_bool().unwrap_or(true) {
            for d in self.deployments.iter_mut().filter(|d| d.id != id && d.environment == env) {
                if d.statuses.last().is_some_and(|s| s.0 == "success") {
                    d.statuses.push(("inactive".into(), "superseded".into(), None));
                }
            }
        }
        let status_id = self.id();
        self.json(201, &json!({"id": status_id, "state": state, "environment": env}))
    }

    /// "Using pagination in the REST API": `per_page` (default 30, at most 100) and `page`,
    /// with a `Link` header naming the `next` and `last` pages.
    fn page(&self, req: &Request, all: Vec<Value>) -> Reply {
        let per_page = req.query.get("per_page").and_then(|p| p.parse::<usize>().ok()).unwrap_or(30).clamp(1, 100);
        let page = req.query.get("page").and_then(|p| p.parse::<usize>().ok()).unwrap_or(1).max(1);
        let last = all.len().div_ceil(per_page).max(1);
        let items: Vec<Value> = all.into_iter().skip((page - 1) * per_page).take(per_page).collect();
        let mut reply = self.json(200, &Value::Array(items));
        if page < last {
            let base =
                format!("{}{}", req.headers.get("host").map(|h| format!("http://{h}")).unwrap_or_default(), req.path);
            reply.headers.push((
                "Link".into(),
                format!(
                    "<{base}?per_page={per_page}&page={}>; rel=\"next\", <{base}?per_page={per_page}&page={last}>; rel=\"last\"",
                    page + 1
                ),
            ));
        }
        reply
    }

    fn release_json(&self, r: &Release) -> Value {
        let api = format!("/repos/{}/{}", self.owner, self.repo);
        json!({
            "id": r.id,
            "tag_name": r.tag_name,
            "target_commitish": r.target_commitish,
            "name": r.name,
            "body": r.body,
            "draft": r.draft,
            "prerelease": r.prerelease,
            "url": format!("{api}/releases/{}", r.id),
            "html_url": format!("https://github.com/{}/{}/releases/tag/{}", self.owner, self.repo, r.tag_name),
            "upload_url": format!("{}{api}/releases/{}/assets{{?name,label}}", self.uploads_url, r.id),
            "assets": r.assets.iter().map(|a| self.asset_json(a)).collect::<Vec<_>>(),
        })
    }

    fn asset_json(&self, a: &Asset) -> Value {
        let mut v = json!({
            "id": a.id,
            "name": a.name,
            "label": null,
            "state": a.state,
            "content_type": a.content_type,
            "size": a.data.len(),
            "browser_download_url": format!("https://github.com/{}/{}/releases/download/{}", self.owner, self.repo, a.name),
        });
        if !self.faults.hide_digest && a.state == "uploaded" {
            v["digest"] = format!("sha256:{}", hex(&Sha256::digest(&a.data))).into();
        }
        v
    }

    fn json(&self, status: u16, value: &Value) -> Reply {
        let mut reply = self.reply(status, value.to_string().into_bytes());
        reply.headers.push(("Content-Type".into(), "application/json; charset=utf-8".into()));
        reply
    }

    fn error(&self, status: u16, message: &str, error: Option<Value>) -> Reply {
        let mut body = json!({"message": message, "documentation_url": "https://docs.github.com/rest", "status": status.to_string()});
        if let Some(e) = error {
            body["errors"] = json!([e]);
        }
        self.json(status, &body)
    }

    /// Every answer carries the rate-limit headers ("Rate limits for the REST API").
    fn reply(&self, status: u16, body: Vec<u8>) -> Reply {
        let reset = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
        Reply {
            status,
            headers: vec![
                ("x-ratelimit-limit".into(), "5000".into()),
                ("x-ratelimit-remaining".into(), self.remaining.to_string()),
                ("x-ratelimit-used".into(), (5000 - self.remaining).to_string()),
                ("x-ratelimit-reset".into(), reset.to_string()),
                ("x-ratelimit-resource".into(), "core".into()),
                ("x-github-api-version-selected".into(), "2022-11-28".into()),
            ],
            body,
        }
    }
}

fn decode(text: &str) -> String {
    text.replace("%2B", "+").replace("%2b", "+")
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
