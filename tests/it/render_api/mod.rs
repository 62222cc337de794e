//! An emulator of the Render REST API (<https://api-docs.render.com/reference>, base
//! `/v1`), for exactly the calls the `render` target makes, on `stand_in::serve`:
//!
//! - Retrieve service: `GET /v1/services/{serviceId}` → the `service` object (`id`, `name`,
//!   `type`, `imagePath` for image-backed services or `repo`/`branch`, `suspended`,
//!   `serviceDetails` with `url`, `healthCheckPath`, `numInstances`).
//! - List deploys: `GET /v1/services/{serviceId}/deploys?limit=N` → `[{"deploy", "cursor"}]`,
//!   newest first.
//! - Trigger deploy: `POST /v1/services/{serviceId}/deploys` with `imageUrl` ("the host,
//!   repository, and image name all must match the currently configured image for the
//!   service") or `commitId`, and `clearCache` → 201 with the `deploy` (`id`, `status`,
//!   `trigger: api`, `image: {ref, sha}` or `commit: {id}`, `createdAt`, ...).
//! - Retrieve deploy: `GET /v1/services/{serviceId}/deploys/{deployId}`.
//! - Cancel deploy: `POST /v1/services/{serviceId}/deploys/{deployId}/cancel`.
//! - Roll back deploy: `POST /v1/services/{serviceId}/rollback` with `deployId` → 201 with
//!   the new deploy (`trigger: rollback`), which reuses that deploy's build.
//!
//! Every request needs `Authorization: Bearer KEY` (else 401). Errors are the reference's
//! `error` schema, `{"id", "message"}`. Every answer carries the rate-limit headers the
//! "Rate Limiting" page shows (`Ratelimit-Limit`, `Ratelimit-Remaining`, `Ratelimit-Reset`
//! in UTC epoch seconds); a test can have the next requests answered 429.
//!
//! Not emulated: pagination cursors (one page), filters, `deployMode`, `clearCache`'s effect,
//! queueing behind a running deploy, other service types' details, webhooks.

pub mod model;
mod tests;

use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use self::model::{Behaviour, Deploy, Service, Shared, State};
use crate::stand_in::{self, Request, Response, Server};

pub struct Render {
    pub state: Shared,
    pub server: Server,
}

impl Render {
    pub fn start(key: &str) -> Self {
        let state: Shared = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let wanted = format!("Bearer {key}");
        let server = stand_in::serve(Arc::new(move |req| handle(&shared, &wanted, req)));
        Self { state, server }
    }

    /// `GANTRY_RENDER_API_URL` for gantry.
    pub fn api_url(&self) -> String {
        format!("{}/v1", self.server.url())
    }

    /// A web service: image-backed when `image_path` is given, else Git-backed. Returns its id
    /// and public URL.
    pub fn service(&self, name: &str, image_path: Option<&str>) -> (String, String) {
        let mut state = self.state.lock().unwrap();
        let id = state.id("srv");
        let router = model::router(self.state.clone(), id.clone());
        let url = router.url();
        state.services.insert(
            id.clone(),
            Service {
                id: id.clone(),
                name: name.to_owned(),
                image_path: image_path.map(str::to_owned),
                repo: image_path.is_none().then(|| "https://github.com/acme/mims-graph".to_owned()),
                health_path: "/api/health".into(),
                suspended: false,
                deploys: Vec::new(),
                router: Some(router),
            },
        );
        (id, url)
    }

    /// What the release with image tag or commit `key` does.
    pub fn set(&self, key: &str, behaviour: Behaviour) {
        let behaviours = self.state.lock().unwrap().behaviours.clone();
        behaviours.lock().unwrap().insert(key.to_owned(), behaviour);
    }

    /// A deploy made outside gantry (by hand, or an autodeploy), live at once.
    pub fn live_by_hand(&self, service: &str, image_ref: Option<&str>, commit: Option<&str>) -> String {
        let mut state = self.state.lock().unwrap();
        let id = state.id("dep");
        let key = image_ref.map(tag_of).or(commit.map(str::to_owned)).unwrap_or_default();
        let behaviours = state.behaviours.clone();
        let svc = state.services.get_mut(service).unwrap();
        for d in svc.deploys.iter_mut().filter(|d| d.status == "live") {
            d.status = "deactivated".into();
        }
        let hits = Arc::new(AtomicU32::new(0));
        let instance = model::instance(behaviours, key.clone(), svc.health_path.clone(), hits.clone());
        svc.deploys.insert(
            0,
            Deploy {
                id: id.clone(),
                status: "live".into(),
                trigger: "manual".into(),
                image_ref: image_ref.map(str::to_owned),
                commit: commit.map(str::to_owned),
                key,
                created: Instant::now(),
                created_at: now(),
                rebuild: true,
                instance,
                hits,
            },
        );
        id
    }

    /// The newest deploys of `service`: (id, status, trigger, image ref or commit).
    pub fn deploys(&self, service: &str) -> Vec<(String, String, String, String)> {
        let mut state = self.state.lock().unwrap();
        state.advance(service);
        state.services[service]
            .deploys
            .iter()
            .map(|d| {
                (
                    d.id.clone(),
                    d.status.clone(),
                    d.trigger.clone(),
                    d.image_ref.clone().or(d.commit.clone()).unwrap_or_default(),
                )
            })
            .collect()
    }

    /// The image ref or commit of the live deploy.
    pub fn live(&self, service: &str) -> Option<String> {
        self.deploys(service).into_iter().find(|d| d.1 == "live").map(|d| d.3)
    }

    pub fn throttle(&self, requests: u32) {
        self.state.lock().unwrap().throttle = requests;
    }

    pub fn requests(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap().requests.clone()
    }
}

fn tag_of(reference: &str) -> String {
    reference.rsplit_once(':').map(|(_, t)| t.to_owned()).unwrap_or_default()
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

/// `{"id", "message"}`, the reference's `error` schema.
fn error(state: &mut State, status: u16, message: &str) -> Response {
    let id = state.id("req");
    Response::json(status, &serde_json::json!({ "id": id, "message": message }))
}

fn handle(shared: &Shared, wanted: &str, req: &Request) -> Response {
    let mut state = shared.lock().unwrap();
    state.requests.push((format!("{} {}", req.method, req.path), String::from_utf8_lossy(&req.body).into_owned()));
    let reset = (jiff::Timestamp::now().as_second() + 1).to_string();
    let limit = |r: Response, remaining: &str| {
        r.with_header("Ratelimit-Limit", "400")
            .with_header("Ratelimit-Remaining", remaining)
            .with_header("Ratelimit-Reset", &reset)
    };
    if let Some(auth) = req.header("authorization") {
        state.auth_seen.push(auth.to_owned());
    }
    if req.header("authorization") != Some(wanted) {
        return limit(error(&mut state, 401, "unauthorized"), "399");
    }
    if state.throttle > 0 {
        state.throttle -= 1;
        return limit(error(&mut state, 429, "rate limit exceeded"), "0");
    }
    let response = route(&mut state, req);
    limit(response, "399")
}

fn route(state: &mut State, req: &Request) -> Response {
    let parts: Vec<&str> = req.route().trim_start_matches('/').split('/').collect();
    match (req.method.as_str(), parts.as_slice()) {
        ("GET", ["v1", "services", id]) => match state.services.get(*id) {
            Some(s) => Response::json(200, &service_json(s)),
            None => error(state, 404, "service not found"),
        },
        ("GET", ["v1", "services", id, "deploys"]) => {
            if !state.services.contains_key(*id) {
                return error(state, 404, "service not found");
            }
            state.advance(id);
            let limit: usize = req.query("limit").and_then(|l| l.parse().ok()).unwrap_or(20).clamp(1, 100);
            let list: Vec<serde_json::Value> = state.services[*id]
                .deploys
                .iter()
                .take(limit)
                .map(|d| serde_json::json!({ "deploy": deploy_json(d), "cursor": d.id }))
                .collect();
            Response::json(200, &serde_json::Value::Array(list))
        }
        ("GET", ["v1", "services", id, "deploys", deploy]) => {
            state.advance(id);
            match state.services.get(*id).and_then(|s| s.deploys.iter().find(|d| d.id == *deploy)) {
                Some(d) => Response::json(200, &deploy_json(d)),
                None => error(state, 404, "deploy not found"),
            }
        }
        ("POST", ["v1", "services", id, "deploys"]) => trigger(state, id, &req.json()),
        ("POST", ["v1", "services", id, "deploys", deploy, "cancel"]) => {
            state.advance(id);
            let Some(d) = state.services.get_mut(*id).and_then(|s| s.deploys.iter_mut().find(|d| d.id == *deploy))
            else {
                return error(state, 404, "deploy not found");
            };
            if matches!(d.status.as_str(), "live" | "deactivated" | "build_failed" | "update_failed" | "canceled") {
                let message = format!("deploy is {} and cannot be canceled", d.status);
                return error(state, 400, &message);
            }
            d.status = "canceled".into();
            let body = deploy_json(d);
            Response::json(200, &body)
        }
        ("POST", ["v1", "services", id, "rollback"]) => {
            let to = req.json()["deployId"].as_str().unwrap_or_default().to_owned();
            state.advance(id);
            let Some(svc) = state.services.get(*id) else { return error(state, 404, "service not found") };
            let Some(earlier) = svc.deploys.iter().find(|d| d.id == to) else {
                return error(state, 404, "deploy not found");
            };
            if !matches!(earlier.status.as_str(), "live" | "deactivated") {
                let message = format!("cannot roll back to a deploy that is {}", earlier.status);
                return error(state, 400, &message);
            }
            let (image_ref, commit, key) = (earlier.image_ref.clone(), earlier.commit.clone(), earlier.key.clone());
            let d = new_deploy(state, id, "rollback", image_ref, commit, key, false);
            Response::json(201, &d)
        }
        _ => error(state, 404, "not found"),
    }
}

fn trigger(state: &mut State, id: &str, body: &serde_json::Value) -> Response {
    let Some(svc) = state.services.get(id) else { return error(state, 404, "service not found") };
    if body.get("deployMode").is_some() && (body.get("imageUrl").is_some() || body.get("commitId").is_some()) {
        return error(state, 400, "deployMode cannot be combined with commitId or imageUrl or clearCache");
    }
    let image_path = svc.image_path.clone();
    match (body["imageUrl"].as_str(), body["commitId"].as_str(), image_path) {
        (Some(url), None, Some(path)) => {
            let repository =
                |r: &str| r.rsplit_once(':').filter(|(_, t)| !t.contains('/')).map_or(r, |(p, _)| p).to_owned();
            if repository(url) != repository(&path) {
                return error(
                    state,
                    400,
                    "the host, repository, and image name must match the currently configured image for the service",
                );
            }
            let d = new_deploy(state, id, "api", Some(url.to_owned()), None, tag_of(url), true);
            Response::json(201, &d)
        }
        (None, Some(commit), None) => {
            let d = new_deploy(state, id, "api", None, Some(commit.to_owned()), commit.to_owned(), true);
            Response::json(201, &d)
        }
        (Some(_), _, None) => error(state, 400, "imageUrl is only supported for image-backed services"),
        (_, Some(_), Some(_)) => error(state, 400, "commitId is not supported for image-backed services"),
        _ => error(state, 400, "one of imageUrl or commitId is required here"),
    }
}

fn new_deploy(
    state: &mut State,
    service: &str,
    trigger: &str,
    image_ref: Option<String>,
    commit: Option<String>,
    key: String,
    rebuild: bool,
) -> serde_json::Value {
    let id = state.id("dep");
    let behaviours = state.behaviours.clone();
    let svc = state.services.get_mut(service).unwrap();
    let hits = Arc::new(AtomicU32::new(0));
    let instance = model::instance(behaviours, key.clone(), svc.health_path.clone(), hits.clone());
    let d = Deploy {
        id,
        status: "created".into(),
        trigger: trigger.into(),
        image_ref,
        commit,
        key,
        created: Instant::now(),
        created_at: now(),
        rebuild,
        instance,
        hits,
    };
    let json = deploy_json(&d);
    svc.deploys.insert(0, d);
    json
}

fn service_json(s: &Service) -> serde_json::Value {
    let mut v = serde_json::json!({
        "id": s.id,
        "name": s.name,
        "ownerId": "tea-emulated",
        "type": "web_service",
        "autoDeploy": "no",
        "slug": s.name,
        "rootDir": "",
        "suspended": if s.suspended { "suspended" } else { "not_suspended" },
        "suspenders": [],
        "dashboardUrl": format!("https://dashboard.render.com/web/{}", s.id),
        "serviceDetails": {
            "env": if s.image_path.is_some() { "image" } else { "node" },
            "runtime": if s.image_path.is_some() { "image" } else { "node" },
            "healthCheckPath": s.health_path,
            "numInstances": 1,
            "plan": "starter",
            "region": "oregon",
            "url": s.router.as_ref().map(Server::url).unwrap_or_default(),
        },
    });
    match &s.image_path {
        Some(path) => v["imagePath"] = path.clone().into(),
        None => {
            v["repo"] = s.repo.clone().into();
            v["branch"] = "main".into();
        }
    }
    v
}

fn deploy_json(d: &Deploy) -> serde_json::Value {
    let mut v = serde_json::json!({
        "id": d.id,
        "status": d.status,
        "trigger": d.trigger,
        "createdAt": d.created_at,
        "updatedAt": now(),
    });
    if let Some(r) = &d.image_ref {
        v["image"] = serde_json::json!({ "ref": r, "sha": model::digest_of(r) });
    }
    if let Some(c) = &d.commit {
        v["commit"] = serde_json::json!({ "id": c, "message": "from the emulator", "createdAt": d.created_at });
    }
    v
}
