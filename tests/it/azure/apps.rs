//! Container Apps in the Azure emulator (`Microsoft.App`, api-version 2024-03-01), after the
//! REST reference: "Container Apps - Get" and "- Update" (a JSON merge patch answered 202 with
//! `Azure-AsyncOperation` and `Location`; a new `template` makes a revision
//! `{app}--{revisionSuffix}`, a suffix already used with another template is refused 400
//! `ContainerAppRevisionSuffixConflict`; `ingress.traffic` replaces the weights, which must
//! sum to 100), "Container Apps Revisions - Get" (`provisioningState` Provisioning →
//! Provisioned or Failed, `runningState`, `healthState`, `fqdn`, `template`, `active`) and
//! "- Deactivate". Each revision answers on its own loopback server (its FQDN); the app's
//! ingress FQDN sends each request to a revision by the traffic weights.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::model::{Action, Model, Operation};
use crate::stand_in::{self, Request, Response};

pub struct ContainerApp {
    pub resource_group: String,
    pub mode: String,
    pub tags: BTreeMap<String, String>,
    /// `(revisionName, latestRevision, weight)`.
    pub traffic: Vec<(Option<String>, bool, u8)>,
    pub template: Value,
    pub latest: String,
    pub revisions: BTreeMap<String, Revision>,
    pub ingress_host: String,
    /// Requests the ingress has routed (its round robin).
    pub routed: u64,
}

pub struct Revision {
    pub template: Value,
    pub active: bool,
    pub host: String,
    /// Reads left while it is still provisioning.
    pub polls_left: u32,
}

/// Adds container app `app` in `mode` with one revision `{app}--initial` running `image`
/// (with no `GANTRY_RELEASE`: deployed before gantry) taking all traffic via `latestRevision`.
pub fn add(m: &Arc<Mutex<Model>>, resource_group: &str, app: &str, mode: &str, image: &str) {
    let ingress = serve_ingress(m, app);
    let mut model = m.lock().unwrap();
    let template = json!({ "containers": [{ "name": "api", "image": image, "env": [{ "name": "ASPNETCORE_URLS", "value": "http://+:8080" }],
                                             "resources": { "cpu": 0.5, "memory": "1Gi" } }],
                           "scale": { "minReplicas": 1, "maxReplicas": 3 } });
    let name = format!("{app}--initial");
    let host = serve_revision(m, app, &name);
    let mut revisions = BTreeMap::new();
    revisions.insert(
        name.clone(),
        Revision { template: template.clone(), active: true, host: format!("127.0.0.1:{}", host.port), polls_left: 0 },
    );
    model.servers.push(host);
    model.container_apps.insert(
        app.into(),
        ContainerApp {
            resource_group: resource_group.into(),
            mode: mode.into(),
            tags: BTreeMap::new(),
            traffic: vec![(None, true, 100)],
            template,
            latest: name,
            revisions,
            ingress_host: format!("127.0.0.1:{}", ingress.port),
            routed: 0,
        },
    );
    model.servers.push(ingress);
}

/// Weights by revision name.
pub fn weights(app: &ContainerApp) -> BTreeMap<String, u8> {
    let mut out = BTreeMap::new();
    for (name, latest, w) in &app.traffic {
        let name = if *latest { app.latest.clone() } else { name.clone().unwrap_or_default() };
        *out.entry(name).or_insert(0) += w;
    }
    out
}

fn image_of(template: &Value) -> String {
    template["containers"][0]["image"].as_str().unwrap_or_default().to_owned()
}

/// How one revision answers `/health` now.
fn answer(model: &Model, app: &str, revision: &str) -> Response {
    let a = &model.container_apps[app];
    let r = &a.revisions[revision];
    if !r.active {
        return Response::text(404, "revision is inactive");
    }
    let image = image_of(&r.template);
    let behaviour = model.image_health.get(&image).map_or("ok", String::as_str);
    let weight = weights(a).get(revision).copied().unwrap_or(0);
    let ok = behaviour == "ok" || (behaviour == "broken-under-traffic" && weight == 0);
    Response::json(
        if ok { 200 } else { 503 },
        &json!({ "status": if ok { "Healthy" } else { "Unhealthy" }, "revision": revision, "image": image }),
    )
}

fn serve_revision(m: &Arc<Mutex<Model>>, app: &str, revision: &str) -> stand_in::Server {
    let (m, app, revision) = (m.clone(), app.to_owned(), revision.to_owned());
    stand_in::serve(Arc::new(move |_req| answer(&m.lock().unwrap(), &app, &revision)))
}

fn serve_ingress(m: &Arc<Mutex<Model>>, app: &str) -> stand_in::Server {
    let (m, app) = (m.clone(), app.to_owned());
    stand_in::serve(Arc::new(move |_req| {
        let mut model = m.lock().unwrap();
        let a = model.container_apps.get_mut(&app).unwrap();
        a.routed += 1;
        let n = a.routed % 100;
        let mut acc = 0u64;
        let mut chosen = None;
        for (name, w) in weights(a) {
            acc += u64::from(w);
            if n < acc {
                chosen = Some(name);
                break;
            }
        }
        let Some(chosen) = chosen else { return Response::text(503, "no revision takes traffic") };
        answer(&model, &app, &chosen)
    }))
}

fn error(status: u16, code: &str, message: &str) -> Response {
    Response::json(status, &json!({ "error": { "code": code, "message": message } }))
}

/// `.../providers/Microsoft.App/containerApps/{app}/REST`.
pub fn route(
    m: &Arc<Mutex<Model>>,
    model: &mut Model,
    base: &str,
    req: &Request,
    sub: &str,
    app: &str,
    rest: &[&str],
) -> Response {
    let Some(a) = model.container_apps.get(app) else {
        return error(
            404,
            "ResourceNotFound",
            &format!("The Resource 'Microsoft.App/containerApps/{app}' was not found."),
        );
    };
    let path = req.route().split("/revisions").next().unwrap_or_default().to_owned();
    match (req.method.as_str(), rest) {
        ("GET", []) => {
            let traffic: Vec<Value> = a
                .traffic
                .iter()
                .map(|(n, latest, w)| {
                    if *latest {
                        json!({ "latestRevision": true, "weight": w })
                    } else {
                        json!({ "revisionName": n, "weight": w })
                    }
                })
                .collect();
            Response::json(
                200,
                &json!({
                    "id": path, "name": app, "type": "Microsoft.App/containerApps", "location": "East US", "tags": a.tags,
                    "properties": {
                        "provisioningState": "Succeeded",
                        "latestRevisionName": a.latest,
                        "latestReadyRevisionName": a.latest,
                        "latestRevisionFqdn": a.revisions[&a.latest].host,
                        "configuration": { "activeRevisionsMode": a.mode,
                            "ingress": { "external": true, "targetPort": 8080, "fqdn": a.ingress_host, "traffic": traffic } },
                        "template": a.template
                    }
                }),
            )
        }
        ("PATCH", []) => {
            let body = req.json();
            if let Some(traffic) = body["properties"]["configuration"]["ingress"]["traffic"].as_array() {
                let sum: u64 = traffic.iter().map(|t| t["weight"].as_u64().unwrap_or(0)).sum();
                if sum != 100 {
                    return error(
                        400,
                        "ContainerAppInvalidTrafficWeight",
                        &format!("The sum of traffic weights must be 100, not {sum}."),
                    );
                }
                for t in traffic {
                    if let Some(n) = t["revisionName"].as_str()
                        && !a.revisions.contains_key(n)
                    {
                        return error(400, "ContainerAppRevisionNotFound", &format!("Revision '{n}' does not exist."));
                    }
                }
            }
            if let Some(suffix) = body["properties"]["template"]["revisionSuffix"].as_str() {
                let name = format!("{app}--{suffix}");
                if a.revisions.get(&name).is_some_and(|r| r.template != body["properties"]["template"]) {
                    return error(
                        400,
                        "ContainerAppRevisionSuffixConflict",
                        &format!("Revision with suffix {suffix} already exists."),
                    );
                }
            }
            let id = model.id();
            model
                .operations
                .insert(id, Operation { polls_left: 1, action: Action::PatchApp { app: app.into(), body } });
            let status = format!(
                "{base}/subscriptions/{sub}/providers/Microsoft.App/locations/eastus/containerappOperationStatuses/{id}?api-version=2024-03-01"
            );
            let _ = m;
            Response::json(202, &json!({}))
                .with_header("Azure-AsyncOperation", &status)
                .with_header("Location", &status)
                .with_header("Retry-After", "1")
        }
        ("GET", ["revisions", name]) => {
            let a = model.container_apps.get_mut(app).unwrap();
            let w = weights(a).get(*name).copied().unwrap_or(0);
            let Some(r) = a.revisions.get_mut(*name) else {
                return error(
                    404,
                    "ResourceNotFound",
                    &format!("The Resource 'Microsoft.App/containerApps/{app}/revisions/{name}' was not found."),
                );
            };
            let image = image_of(&r.template);
            let failing = model.image_health.get(&image).is_some_and(|h| h == "fail-provision");
            let (prov, running) = if r.polls_left > 0 {
                r.polls_left -= 1;
                ("Provisioning", "Processing")
            } else if failing {
                ("Failed", "Failed")
            } else {
                ("Provisioned", "Running")
            };
            Response::json(
                200,
                &json!({
                    "id": req.route(), "name": name, "type": "Microsoft.App/containerApps/revisions",
                    "properties": { "fqdn": r.host, "active": r.active, "trafficWeight": w, "replicas": 1,
                        "provisioningState": prov, "runningState": running, "healthState": if running == "Running" { "Healthy" } else { "None" },
                        "provisioningError": if failing { "Container 'api' was terminated with exit code '1'" } else { "" },
                        "template": r.template }
                }),
            )
        }
        ("POST", ["revisions", name, "deactivate"]) => {
            let a = model.container_apps.get_mut(app).unwrap();
            if weights(a).get(*name).copied().unwrap_or(0) > 0 {
                return error(400, "ContainerAppRevisionHasTraffic", "A revision with traffic cannot be deactivated.");
            }
            match a.revisions.get_mut(*name) {
                Some(r) => {
                    r.active = false;
                    Response::text(200, "")
                }
                None => error(404, "ResourceNotFound", "no such revision"),
            }
        }
        ("PATCH", ["providers", "Microsoft.Resources", "tags", "default"]) => {
            let body = req.json();
            let given: BTreeMap<String, String> = body["properties"]["tags"]
                .as_object()
                .map(|t| t.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
                .unwrap_or_default();
            let tags = &mut model.container_apps.get_mut(app).unwrap().tags;
            match body["operation"].as_str() {
                Some("Merge") => tags.extend(given),
                Some("Delete") => tags.retain(|k, v| given.get(k).is_none_or(|g| g != v)),
                _ => return error(400, "InvalidTagOperation", "operation must be Merge, Replace or Delete"),
            }
            Response::json(200, &json!({ "name": "default", "properties": { "tags": tags } }))
        }
        _ => error(404, "NotFound", &format!("No route for {} {}", req.method, req.route())),
    }
}

/// Applies a finished update.
pub fn complete(m: &Arc<Mutex<Model>>, model: &mut Model, app: &str, body: &Value) {
    if let Some(template) = body["properties"]["template"].as_object() {
        let template = Value::Object(template.clone());
        let suffix = template["revisionSuffix"].as_str().unwrap_or("auto").to_owned();
        let name = format!("{app}--{suffix}");
        if !model.container_apps[app].revisions.contains_key(&name) {
            let server = serve_revision(m, app, &name);
            let host = format!("127.0.0.1:{}", server.port);
            model.servers.push(server);
            let a = model.container_apps.get_mut(app).unwrap();
            a.revisions
                .insert(name.clone(), Revision { template: template.clone(), active: true, host, polls_left: 2 });
        }
        let a = model.container_apps.get_mut(app).unwrap();
        a.template = template;
        a.latest = name;
    }
    if let Some(traffic) = body["properties"]["configuration"]["ingress"]["traffic"].as_array() {
        let a = model.container_apps.get_mut(app).unwrap();
        a.traffic = traffic
            .iter()
            .map(|t| {
                (
                    t["revisionName"].as_str().map(str::to_owned),
                    t["latestRevision"].as_bool() == Some(true),
                    t["weight"].as_u64().unwrap_or(0) as u8,
                )
            })
            .collect();
    }
}
