//! The emulated Render state: services and their deploys, moving through the statuses the
//! API reference lists for a deploy (`deployStatus`: created, build_in_progress,
//! update_in_progress, live, deactivated, build_failed, update_failed, canceled), by the
//! clock: a new deploy builds for 200 ms and updates for 200 ms; a rollback deploy reuses
//! the earlier build and only updates. At the end of its update Render checks the new
//! instance's health check path itself (zero-downtime deploys: "Render sends an HTTP
//! request to the health check path ... the deploy fails if it does not return 2xx/3xx"),
//! and only then makes it `live` and the one before it `deactivated`.
//!
//! Every deploy gets an instance: a stand-in server answering as its release's
//! `Behaviour` says (set by the test, per image tag or commit). The service URL is a
//! stand-in that forwards each request to the live deploy's instance, as Render's proxy does.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::stand_in::{self, Response, Server};

/// What a release's instance answers on the health check path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// 200 `{"apiStatus":"OK","dgraphStatus":"OK"}`.
    Healthy,
    /// The build fails (`build_failed`).
    BuildFails,
    /// 500: Render's own health check fails it (`update_failed`).
    Unhealthy,
    /// 200 with `"dgraphStatus":"ERROR"`: Render's check (status only) passes, gantry's
    /// check of the body does not.
    DgraphDown,
    /// Healthy for this many health requests to its instance, then 500.
    BreaksAfter(u32),
    /// The update never finishes.
    NeverLive,
}

pub struct Deploy {
    pub id: String,
    pub status: String,
    pub trigger: String,
    pub image_ref: Option<String>,
    pub commit: Option<String>,
    /// The image tag or commit whose behaviour the instance has.
    pub key: String,
    pub created: Instant,
    pub created_at: String,
    /// Rollback deploys skip the build.
    pub rebuild: bool,
    pub instance: Server,
    pub hits: Arc<AtomicU32>,
}

pub struct Service {
    pub id: String,
    pub name: String,
    pub image_path: Option<String>,
    pub repo: Option<String>,
    pub health_path: String,
    pub suspended: bool,
    /// Newest first.
    pub deploys: Vec<Deploy>,
    pub router: Option<Server>,
}

#[derive(Default)]
pub struct State {
    pub services: BTreeMap<String, Service>,
    /// Per image tag or commit; its own lock, as instances read it while `State` is held.
    pub behaviours: Behaviours,
    /// The next this many API requests are answered 429.
    pub throttle: u32,
    /// Every API request: `METHOD PATH`, with its body.
    pub requests: Vec<(String, String)>,
    /// Every `Authorization` header value received.
    pub auth_seen: Vec<String>,
    pub next: u32,
}

pub type Shared = Arc<Mutex<State>>;
pub type Behaviours = Arc<Mutex<BTreeMap<String, Behaviour>>>;

const BUILD: Duration = Duration::from_millis(200);
const UPDATE: Duration = Duration::from_millis(200);

impl State {
    pub fn id(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}-{:020}", self.next)
    }

    /// Moves every unfinished deploy of `service` on by the clock.
    pub fn advance(&mut self, service: &str) {
        let behaviours = self.behaviours.lock().unwrap().clone();
        let Some(svc) = self.services.get_mut(service) else { return };
        let health_path = svc.health_path.clone();
        let mut went_live = None;
        // Oldest first, so a newer deploy going live deactivates an older one.
        for i in (0..svc.deploys.len()).rev() {
            let d = &mut svc.deploys[i];
            if matches!(d.status.as_str(), "live" | "deactivated" | "build_failed" | "update_failed" | "canceled") {
                continue;
            }
            let behaviour = behaviours.get(&d.key).cloned();
            let elapsed = d.created.elapsed();
            let build = if d.rebuild { BUILD } else { Duration::ZERO };
            if elapsed < Duration::from_millis(50) {
                d.status = "created".into();
            } else if elapsed < build {
                d.status = "build_in_progress".into();
            } else if d.rebuild && (behaviour.is_none() || behaviour == Some(Behaviour::BuildFails)) {
                // An unknown image tag cannot be pulled; a broken build fails.
                d.status = "build_failed".into();
            } else if elapsed < build + UPDATE || behaviour == Some(Behaviour::NeverLive) {
                d.status = "update_in_progress".into();
            } else {
                // Render's own health check on the new instance before it takes traffic.
                let (status, _) = stand_in::get(&format!("{}{health_path}", d.instance.url()));
                d.hits.store(0, Ordering::SeqCst);
                if (200..400).contains(&status) {
                    d.status = "live".into();
                    went_live = Some(d.id.clone());
                } else {
                    d.status = "update_failed".into();
                }
            }
        }
        if let Some(live) = went_live {
            for d in svc.deploys.iter_mut().filter(|d| d.status == "live" && d.id != live) {
                d.status = "deactivated".into();
            }
        }
    }
}

/// A deploy's instance: answers per its key's behaviour, read on every request.
pub fn instance(behaviours: Behaviours, key: String, health_path: String, hits: Arc<AtomicU32>) -> Server {
    stand_in::serve(Arc::new(move |req| {
        let behaviour = behaviours.lock().unwrap().get(&key).cloned().unwrap_or(Behaviour::Healthy);
        if req.route() != health_path {
            return Response::text(200, format!("hello from {key}"));
        }
        let n = hits.fetch_add(1, Ordering::SeqCst);
        let body = |dgraph: &str| serde_json::json!({ "apiStatus": "OK", "dgraphStatus": dgraph, "release": key, "timestamp": "2026-11-23T00:00:00Z" });
        match behaviour {
            Behaviour::Unhealthy => Response::text(500, "internal error"),
            Behaviour::BreaksAfter(k) if n >= k => Response::text(500, "broke after a while"),
            Behaviour::DgraphDown => Response::json(200, &body("ERROR")),
            _ => Response::json(200, &body("OK")),
        }
    }))
}

/// The service's public URL: forwards to the live deploy's instance.
pub fn router(shared: Shared, service: String) -> Server {
    stand_in::serve(Arc::new(move |req| {
        let target = {
            let mut state = shared.lock().unwrap();
            state.advance(&service);
            state.services[&service].deploys.iter().find(|d| d.status == "live").map(|d| d.instance.url())
        };
        let Some(target) = target else { return Response::text(404, "Not Found: no live deploy") };
        let (status, body) = stand_in::get(&format!("{target}{}", req.path));
        Response::new(status, "application/json", body.into_bytes())
    }))
}

/// `sha256:…` for an image tag, as a registry would resolve it.
pub fn digest_of(reference: &str) -> String {
    let hash = Sha256::digest(reference.as_bytes());
    format!("sha256:{}", hash.iter().map(|b| format!("{b:02x}")).collect::<String>())
}
