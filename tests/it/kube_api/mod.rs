//! A Kubernetes API server emulator for the `kubernetes` target's tests, on
//! `stand_in::serve`, and the tests against it (`tests.rs`).
//!
//! It answers exactly the calls gantry (kube-rs) makes, as the API reference
//! (kubernetes.io/docs/reference/kubernetes-api/) describes them:
//! - apps/v1 Deployment ("Deployment v1 apps", workload-resources/deployment-v1/): `GET`,
//!   `PUT` (replace), `PATCH` (strategic merge `application/strategic-merge-patch+json`
//!   and JSON merge `application/merge-patch+json`), `DELETE` of
//!   `/apis/apps/v1/namespaces/{ns}/deployments/{name}`; `GET` (list) and `POST` (create)
//!   of `/apis/apps/v1/namespaces/{ns}/deployments`;
//! - apps/v1 ReplicaSet: `GET` (list, with `labelSelector`) of
//!   `/apis/apps/v1/namespaces/{ns}/replicasets`, and `GET` of one;
//! - core/v1 Service ("Service v1", service-resources/service-v1/): `GET` and `PATCH` of
//!   `/api/v1/namespaces/{ns}/services/{name}`.
//!
//! Writes follow the API conventions (api-concepts, "Resource versions" and "Conflicts"): a
//! `PUT` whose `metadata.resourceVersion` is not the stored one is `409 Conflict`, and every
//! error is a `metav1.Status` body (`kind: Status`, `status: Failure`, `reason` NotFound,
//! AlreadyExists, Conflict, Invalid, `code`, `details`). The Deployment controller is
//! simulated in `model.rs`.
//!
//! Users reach pods through `Ingress`: a stand_in server that, per request, reads the
//! Service's selector (or, for `/preview/{colour}/...`, that colour's pods), picks a ready
//! pod round-robin and forwards the request to that pod's image's app, a stand_in server
//! the test controls (`App`: answers its version, healthy or 500).
//!
//! Not emulated: watches, server-side apply, JSON patch beyond add/replace/remove of object
//! members, field selectors, aggregated discovery, `dryRun`,
//! finalizers and foreground deletion, scale subresources, pod objects over the API.

mod model;
mod tests;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};

use model::{ApiError, merge_patch, resource, strategic_merge_patch};
pub use model::{ImageBehaviour, State};

use crate::stand_in::{self, Request, Response, Server};

/// A running API server; dropping it stops the controller.
pub struct Cluster {
    state: Arc<Mutex<State>>,
    server: Server,
    stop: Arc<AtomicBool>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Cluster {
    pub fn start() -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let handler_state = Arc::clone(&state);
        let server = stand_in::serve(Arc::new(move |req: &Request| {
            let mut state = handler_state.lock().unwrap();
            let line = match req.header("content-type") {
                Some(ct) if req.method == "PATCH" => format!("{} {} {ct}", req.method, req.path),
                _ => format!("{} {}", req.method, req.path),
            };
            state.log.push(line);
            match handle(&mut state, req) {
                Ok((code, body)) => Response::json(code, &body),
                Err(e) => Response::json(e.code, &status_body(&e, req)),
            }
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (ticker, stopped) = (Arc::clone(&state), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stopped.load(Ordering::SeqCst) {
                ticker.lock().unwrap().tick();
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Self { state, server, stop }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Writes a kubeconfig whose context `emulator` (the current one) points at this server
    /// over plain HTTP, as a user's kubeconfig points at a cluster.
    pub fn kubeconfig(&self, path: &std::path::Path) {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: emulator\n  cluster:\n    server: {}\n\
             contexts:\n- name: emulator\n  context:\n    cluster: emulator\n    user: tester\n    namespace: default\n\
             current-context: emulator\nusers:\n- name: tester\n  user:\n    token: not-a-real-token\n",
            self.url()
        );
        std::fs::write(path, text).unwrap();
    }

    /// Stores an object directly (test setup, as `kubectl apply` would leave it).
    pub fn apply(&self, kind: &str, ns: &str, obj: Value) -> Value {
        self.state().create(kind, ns, obj).unwrap_or_else(|e| panic!("{kind}: {}", e.message))
    }

    pub fn get(&self, kind: &str, ns: &str, name: &str) -> Option<Value> {
        self.state().get(kind, ns, name).cloned()
    }

    /// Waits (at most 20 s) until `check` holds for the state.
    pub fn wait_until(&self, what: &str, check: impl Fn(&State) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !check(&self.state()) {
            assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The requests gantry made, `METHOD PATH [content type]`.
    pub fn log(&self) -> Vec<String> {
        self.state().log.clone()
    }
}

fn handle(state: &mut State, req: &Request) -> Result<(u16, Value), ApiError> {
    if let Some(found) = discovery(req.route()) {
        return Ok((200, found));
    }
    let parts: Vec<&str> = req.route().trim_matches('/').split('/').collect();
    // Every namespace exists (kubectl reads one after a NotFound, to tell which is missing).
    if let ["api", "v1", "namespaces", ns] = parts.as_slice() {
        let namespace = json!({ "kind": "Namespace", "apiVersion": "v1", "metadata": { "name": ns }, "status": { "phase": "Active" } });
        return Ok((200, namespace));
    }
    let (kind, ns, name) = match parts.as_slice() {
        ["apis", "apps", "v1", "namespaces", ns, kind, rest @ ..] if matches!(*kind, "deployments" | "replicasets") => {
            (*kind, *ns, rest.first().copied())
        }
        ["api", "v1", "namespaces", ns, "services", rest @ ..] => ("services", *ns, rest.first().copied()),
        _ => {
            return Err(ApiError {
                code: 404,
                reason: "NotFound",
                message: "the server could not find the requested resource".into(),
            });
        }
    };
    let typed = |mut v: Value| {
        let (api_version, k) = match kind {
            "deployments" => ("apps/v1", "Deployment"),
            "replicasets" => ("apps/v1", "ReplicaSet"),
            _ => ("v1", "Service"),
        };
        v["apiVersion"] = json!(api_version);
        v["kind"] = json!(k);
        v
    };
    let writable = kind != "replicasets";
    match (req.method.as_str(), name) {
        ("GET", None) => {
            let selector = req.query("labelSelector").map(decode).unwrap_or_default();
            let wanted: Vec<(String, String)> = selector
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.trim_end_matches('=').to_owned(), v.to_owned()))
                .collect();
            let items: Vec<Value> = state
                .list(kind, ns)
                .into_iter()
                .filter(|o| wanted.iter().all(|(k, v)| o["metadata"]["labels"][k] == v.as_str()))
                .map(typed)
                .collect();
            let list_kind = match kind {
                "deployments" => "DeploymentList",
                "replicasets" => "ReplicaSetList",
                _ => "ServiceList",
            };
            Ok((
                200,
                json!({
                    "apiVersion": if kind == "services" { "v1" } else { "apps/v1" },
                    "kind": list_kind,
                    "metadata": { "resourceVersion": "1" },
                    "items": items,
                }),
            ))
        }
        ("GET", Some(name)) => state
            .get(kind, ns, name)
            .cloned()
            .map(|o| (200, typed(o)))
            .ok_or_else(|| ApiError::not_found(resource(kind), name)),
        ("POST", None) if writable => {
            let obj = req.json();
            if obj["metadata"]["namespace"].as_str().is_some_and(|n| n != ns) {
                return Err(ApiError {
                    code: 400,
                    reason: "BadRequest",
                    message: "the namespace of the provided object does not match the namespace sent on the request"
                        .into(),
                });
            }
            state.create(kind, ns, obj).map(|o| (201, typed(o)))
        }
        ("PUT", Some(name)) if writable => {
            let obj = req.json();
            if obj["metadata"]["name"] != name {
                return Err(ApiError {
                    code: 400,
                    reason: "BadRequest",
                    message: "the name of the object does not match the name on the URL".into(),
                });
            }
            state.update(kind, ns, name, obj).map(|o| (200, typed(o)))
        }
        ("PATCH", Some(name)) if writable => {
            let mut obj =
                state.get(kind, ns, name).cloned().ok_or_else(|| ApiError::not_found(resource(kind), name))?;
            let patch = req.json();
            match req.header("content-type").unwrap_or_default() {
                "application/strategic-merge-patch+json" => strategic_merge_patch(&mut obj, &patch),
                "application/merge-patch+json" => merge_patch(&mut obj, &patch),
                "application/json-patch+json" => {
                    json_patch(&mut obj, &patch).map_err(|m| ApiError { code: 422, reason: "Invalid", message: m })?
                }
                other => {
                    return Err(ApiError {
                        code: 415,
                        reason: "UnsupportedMediaType",
                        message: format!(
                            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other})"
                        ),
                    });
                }
            }
            // A patch carries no precondition unless it names a resourceVersion itself.
            if patch["metadata"]["resourceVersion"].is_null() {
                obj["metadata"].as_object_mut().map(|m| m.remove("resourceVersion"));
            }
            state.update(kind, ns, name, obj).map(|o| (200, typed(o)))
        }
        ("DELETE", Some(name)) if writable => {
            let gone = state.delete(kind, ns, name)?;
            Ok((
                200,
                json!({
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                    "details": { "name": name, "group": if kind == "services" { "" } else { "apps" }, "kind": kind, "uid": gone["metadata"]["uid"] },
                }),
            ))
        }
        _ => Err(ApiError {
            code: 405,
            reason: "MethodNotAllowed",
            message: format!(
                "the server does not allow this method on the requested resource ({} {})",
                req.method,
                req.route()
            ),
        }),
    }
}

/// Legacy discovery (API concepts, "Discovery API"): the groups, versions and resources
/// kubectl asks for before it names a resource's path. gantry (kube-rs with typed
/// resources) never asks.
fn discovery(route: &str) -> Option<Value> {
    let resource = |name: &str, kind: &str, short: &[&str]| {
        json!({
            "name": name, "singularName": kind.to_ascii_lowercase(), "namespaced": true, "kind": kind,
            "verbs": ["create", "delete", "get", "list", "patch", "update"], "shortNames": short,
        })
    };
    Some(match route.trim_end_matches('/') {
        "/api" => json!({ "kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [] }),
        "/apis" => json!({
            "kind": "APIGroupList", "apiVersion": "v1",
            "groups": [{
                "name": "apps", "versions": [{ "groupVersion": "apps/v1", "version": "v1" }],
                "preferredVersion": { "groupVersion": "apps/v1", "version": "v1" },
            }],
        }),
        "/api/v1" => json!({
            "kind": "APIResourceList", "groupVersion": "v1",
            "resources": [resource("services", "Service", &["svc"])],
        }),
        "/apis/apps/v1" => json!({
            "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "apps/v1",
            "resources": [resource("deployments", "Deployment", &["deploy"]), resource("replicasets", "ReplicaSet", &["rs"])],
        }),
        "/version" => {
            json!({ "major": "1", "minor": "33", "gitVersion": "v1.33.0-gantry-emulator", "platform": "linux/amd64" })
        }
        _ => return None,
    })
}

/// RFC 6902 JSON patch, the `add`, `replace` and `remove` operations on object members
/// (what `kubectl rollout undo` sends).
fn json_patch(obj: &mut Value, ops: &Value) -> Result<(), String> {
    for op in ops.as_array().ok_or("a JSON patch is an array of operations")? {
        let path = op["path"].as_str().ok_or("an operation needs a path")?;
        let mut keys: Vec<String> = path.split('/').skip(1).map(|k| k.replace("~1", "/").replace("~0", "~")).collect();
        let last = keys.pop().ok_or("the root cannot be patched")?;
        let mut parent = &mut *obj;
        for k in &keys {
            parent = parent.get_mut(k.as_str()).ok_or_else(|| format!("path {path} does not exist"))?;
        }
        let parent = parent.as_object_mut().ok_or_else(|| format!("path {path} is not in an object"))?;
        match op["op"].as_str() {
            Some("add" | "replace") => {
                parent.insert(last, op["value"].clone());
            }
            Some("remove") => {
                parent.remove(&last).ok_or_else(|| format!("path {path} does not exist"))?;
            }
            other => return Err(format!("unsupported JSON patch operation {other:?}")),
        }
    }
    Ok(())
}

/// metav1.Status for an error (API conventions, "Response Status Kind").
fn status_body(e: &ApiError, req: &Request) -> Value {
    let parts: Vec<&str> = req.route().trim_matches('/').split('/').collect();
    let (group, kind, name) = match parts.as_slice() {
        ["apis", "apps", "v1", "namespaces", _, kind, name, ..] => ("apps", *kind, *name),
        ["api", "v1", "namespaces", _, kind, name, ..] => ("", *kind, *name),
        _ => ("", "", ""),
    };
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": e.message, "reason": e.reason,
        "details": { "name": name, "group": group, "kind": kind },
        "code": e.code,
    })
}

/// Percent-decoding for query values (`labelSelector=app%3Dapi`).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An image's app: what every pod of that image answers. `/health` is 200 with
/// `{"version": ...}` while healthy, 500 otherwise.
pub struct App {
    pub server: Server,
    healthy: Arc<AtomicBool>,
}

impl App {
    pub fn start(version: &str) -> Self {
        let healthy = Arc::new(AtomicBool::new(true));
        let (flag, version) = (Arc::clone(&healthy), version.to_owned());
        let server = stand_in::serve(Arc::new(move |req: &Request| {
            if !flag.load(Ordering::SeqCst) {
                return Response::json(500, &json!({ "status": "failing", "version": version }));
            }
            match req.route() {
                "/health" => Response::json(200, &json!({ "status": "ok", "version": version })),
                _ => Response::text(200, format!("hello from {version}")),
            }
        }));
        Self { server, healthy }
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::SeqCst);
    }
}

/// The way in for users: `/live/...` goes to a ready pod the Service `service` selects,
/// `/preview/{colour}/...` to a ready pod of that colour among them; each forwarded to the
/// pod's image's app. 503 when no pod is ready.
pub struct Ingress {
    pub server: Server,
    /// Image → the URL of the app its pods run.
    pub apps: Arc<Mutex<BTreeMap<String, String>>>,
}

impl Ingress {
    pub fn start(cluster: &Cluster, ns: &str, service: &str, apps: BTreeMap<String, String>) -> Self {
        let state = Arc::clone(&cluster.state);
        let (ns, service) = (ns.to_owned(), service.to_owned());
        let next = Arc::new(AtomicUsize::new(0));
        let apps = Arc::new(Mutex::new(apps));
        let known = Arc::clone(&apps);
        let server = stand_in::serve(Arc::new(move |req: &Request| {
            let path = req.route();
            let (mut selector, rest) = {
                let state = state.lock().unwrap();
                let Some(svc) = state.get("services", &ns, &service) else {
                    return Response::text(503, "no such service");
                };
                let selector: BTreeMap<String, String> =
                    serde_json::from_value(svc["spec"]["selector"].clone()).unwrap_or_default();
                (selector, path.to_owned())
            };
            let rest = if let Some(r) = rest.strip_prefix("/live") {
                r.to_owned()
            } else if let Some(r) = rest.strip_prefix("/preview/") {
                let (colour, r) = r.split_once('/').unwrap_or((r, ""));
                selector.insert("gantry.dev/colour".into(), colour.to_owned());
                format!("/{r}")
            } else {
                return Response::text(404, "use /live/... or /preview/COLOUR/...");
            };
            let pods = state.lock().unwrap().ready_pods(&ns, &selector);
            if pods.is_empty() {
                return Response::text(503, "no ready endpoints");
            }
            let pod = &pods[next.fetch_add(1, Ordering::SeqCst) % pods.len()];
            let Some(app) = known.lock().unwrap().get(&pod.image).cloned() else {
                return Response::text(
                    502,
                    format!("pod {} runs an image no test app serves: {}", pod.name, pod.image),
                );
            };
            let (status, body) = stand_in::get(&format!("{app}{rest}"));
            Response::new(status, "application/json", body.into_bytes()).with_header("X-Pod", &pod.name)
        }));
        Self { server, apps }
    }
}
