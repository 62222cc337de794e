//! An Azure emulator for the `appservice` tests: Microsoft Entra ID's token endpoint, the
//! Azure Resource Manager calls gantry makes, and each app's hosts (the app itself and its
//! Kudu SCM site), on `stand_in` servers in the test process. No emulator of these APIs
//! exists to install, so this follows Microsoft's REST reference for exactly the calls used:
//!
//! - Microsoft identity platform, "OAuth 2.0 client credentials flow":
//!   `POST /{tenant}/oauth2/v2.0/token`, form `grant_type=client_credentials`, `client_id`,
//!   `scope=https://management.azure.com/.default`, and `client_secret`, or
//!   `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer` with
//!   `client_assertion` (federated credentials). Answers `{"token_type":"Bearer",
//!   "expires_in":3599,"access_token":...}`; errors `{"error":"invalid_client",
//!   "error_description":"AADSTS7000215: ...","error_codes":[7000215]}` (400/401).
//! - ARM ("Azure REST API reference", "Common error responses"): every call needs
//!   `api-version` (else 400 `MissingApiVersionParameter`) and a bearer token (else 401
//!   `InvalidAuthenticationToken`); errors are `{"error":{"code","message"}}`:
//!   `ResourceGroupNotFound`, `ResourceNotFound` (404), `AuthorizationFailed` (403).
//!   - "Web Apps - Get" / "Web Apps - Get Slot": `GET .../Microsoft.Web/sites/{app}[/slots/{slot}]`
//!     with `properties.serverFarmId`, `defaultHostName`, `enabledHostNames` and
//!     `hostNameSslStates` (`hostType` `Standard` or `Repository`, the SCM site).
//!   - "App Service Plans - Get": `GET .../Microsoft.Web/serverfarms/{plan}`, `sku {name, tier}`.
//!   - "Web Apps - List Application Settings (Slot)" (`POST .../config/appsettings/list`) and
//!     "Update Application Settings (Slot)" (`PUT .../config/appsettings`, the whole set).
//!   - "Web Apps - Swap Slot": `POST .../slots/{slot}/slotsswap` with `targetSlot`; answered
//!     `202 Accepted` with `Location` and `Retry-After`, the long-running-operation pattern of
//!     ARM's "Track asynchronous Azure operations": the Location answers 202 while running and
//!     200 when done. Content and non-sticky settings change places; host names stay.
//!   - "Tags - Update At Scope": `PATCH {scope}/providers/Microsoft.Resources/tags/default`,
//!     `{"operation":"Merge"|"Replace"|"Delete","properties":{"tags":{...}}}`.
//! - Kudu's OneDeploy (the `projectkudu/kudu` wiki, "Deploying from a zip file", and App
//!   Service's "Deploy files to App Service"): `POST /api/publish?type=zip&async=true` on the
//!   SCM host with a bearer token, answered 202 with `Location: /api/deployments/{id}`; that
//!   status has `status` (0 Pending, 1 Building, 2 Deploying, 3 Failed, 4 Success),
//!   `complete`, `status_text` and `log_url`. A deploy while another runs gets 409.
//!
//! Each app and slot answers on its own loopback server, which is its `defaultHostName`:
//! `GET /api/v1/health` reads the deployed zip's `health.txt` (`ok`; `broken`: 503
//! everywhere; `broken-in-production`: 503 only once swapped or deployed into production)
//! and `version.txt`, so health gates fail for real.
//!
//! Not emulated: slot settings (`slotConfigNames`), swap with preview, ARM paging, the Kudu
//! basic-auth publishing credentials, `Azure-AsyncOperation` for swaps (App Service answers
//! with `Location`), throttling.

pub mod apps;
pub mod model;
pub mod swa;

mod appservice;
mod containerapps;
mod staticwebapp;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use model::{Action, Deployment, Model, Operation, PRODUCTION, Plan, Site, Slot, zip_file};
use serde_json::json;

use crate::stand_in::{self, Request, Response, Server};

pub const TENANT: &str = "72f988bf-0000-4000-8000-000000000001";
pub const CLIENT_ID: &str = "04b07795-0000-4000-8000-00000000beef";
pub const CLIENT_SECRET: &str = "s3cr3t-CLIENT-value-never-printed";
pub const SUBSCRIPTION: &str = "11111111-2222-3333-4444-555555555555";

pub struct Azure {
    pub server: Server,
    pub model: Arc<Mutex<Model>>,
    hosts: Mutex<Vec<Server>>,
}

impl Azure {
    pub fn start() -> Self {
        let model = Arc::new(Mutex::new(Model {
            tenant: TENANT.into(),
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            ..Model::default()
        }));
        let (m, base) = (model.clone(), Arc::new(Mutex::new(String::new())));
        let b = base.clone();
        let server = stand_in::serve(Arc::new(move |req| {
            let base = b.lock().unwrap().clone();
            route(&m, &base, req)
        }));
        *base.lock().unwrap() = server.url();
        Self { server, model, hosts: Mutex::new(Vec::new()) }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// `gantry --env prd ARGS` in `dir`, pointed at this emulator with a client secret and
    /// no federated credential (none from GitHub Actions or a token file).
    pub fn gantry(&self, dir: &std::path::Path, args: &[&str]) -> assert_cmd::Command {
        let mut cmd = crate::support::gantry(dir);
        cmd.args(["--env", "prd"]).args(args).envs(self.env());
        for var in ["ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN", "AZURE_FEDERATED_TOKEN_FILE"] {
            cmd.env_remove(var);
        }
        cmd
    }

    /// The variables that point gantry at this emulator with a client secret.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AZURE_AUTHORITY_HOST", self.url()),
            ("GANTRY_AZURE_ARM_ENDPOINT", self.url()),
            ("AZURE_TENANT_ID", TENANT.into()),
            ("AZURE_CLIENT_ID", CLIENT_ID.into()),
            ("AZURE_CLIENT_SECRET", CLIENT_SECRET.into()),
        ]
    }

    /// Adds plan `plan` (`B1`/`Basic`, `S1`/`Standard`, ...) and app `app` on it, with
    /// `slots` besides production.
    pub fn add_app(&self, resource_group: &str, plan: &str, sku: &str, tier: &str, app: &str, slots: &[&str]) {
        let mut m = self.model.lock().unwrap();
        m.plans.insert(
            plan.into(),
            Plan {
                subscription: SUBSCRIPTION.into(),
                resource_group: resource_group.into(),
                sku: sku.into(),
                tier: tier.into(),
            },
        );
        let mut site = Site {
            subscription: SUBSCRIPTION.into(),
            resource_group: resource_group.into(),
            plan: plan.into(),
            tags: BTreeMap::new(),
            slots: BTreeMap::new(),
        };
        for slot in std::iter::once(PRODUCTION).chain(slots.iter().copied()) {
            let app_server = self.app_host(app, slot);
            let scm_server = self.scm_host(app, slot);
            site.slots.insert(
                slot.into(),
                Slot {
                    host: format!("127.0.0.1:{}", app_server.port),
                    scm_host: format!("127.0.0.1:{}", scm_server.port),
                    content: None,
                    settings: BTreeMap::from([("WEBSITE_RUN_FROM_PACKAGE".into(), "0".into())]),
                    deployments: BTreeMap::new(),
                    fail_next: None,
                    deploys: 0,
                },
            );
            self.hosts.lock().unwrap().extend([app_server, scm_server]);
        }
        m.sites.insert(app.into(), site);
    }

    /// The app server of one slot: its health endpoint answers from the deployed zip.
    fn app_host(&self, app: &str, slot: &str) -> Server {
        let (m, app, slot) = (self.model.clone(), app.to_owned(), slot.to_owned());
        stand_in::serve(Arc::new(move |req| {
            if req.route() != "/api/v1/health" {
                return Response::text(404, "not found");
            }
            let mut m = m.lock().unwrap();
            let Some(content) = m.slot(&app, &slot).content.clone() else {
                return Response::text(503, "no app deployed: the default page");
            };
            let health = zip_file(&content, "health.txt").unwrap_or_default();
            let version = zip_file(&content, "version.txt").unwrap_or_default();
            let ok = health == "ok" || (health == "broken-in-production" && slot != PRODUCTION);
            Response::json(
                if ok { 200 } else { 503 },
                &json!({ "status": if ok { "ok" } else { "failing" }, "version": version }),
            )
        }))
    }

    /// The Kudu (SCM) server of one slot.
    fn scm_host(&self, app: &str, slot: &str) -> Server {
        let (m, app, slot) = (self.model.clone(), app.to_owned(), slot.to_owned());
        stand_in::serve(Arc::new(move |req| kudu(&m, &app, &slot, req)))
    }

    /// What `slot` of `app` runs: its `version.txt`.
    pub fn version(&self, app: &str, slot: &str) -> Option<String> {
        let mut m = self.model.lock().unwrap();
        m.slot(app, slot).content.clone().and_then(|c| zip_file(&c, "version.txt"))
    }

    pub fn settings(&self, app: &str, slot: &str) -> BTreeMap<String, String> {
        self.model.lock().unwrap().slot(app, slot).settings.clone()
    }

    pub fn tags(&self, app: &str) -> BTreeMap<String, String> {
        self.model.lock().unwrap().sites[app].tags.clone()
    }

    pub fn deploys(&self, app: &str, slot: &str) -> u32 {
        self.model.lock().unwrap().slot(app, slot).deploys
    }

    pub fn fail_next_deploy(&self, app: &str, slot: &str, log: &str) {
        self.model.lock().unwrap().slot(app, slot).fail_next = Some(log.into());
    }

    /// Adds a container app (see `apps::add`).
    pub fn add_container_app(&self, resource_group: &str, app: &str, mode: &str, image: &str) {
        apps::add(&self.model, resource_group, app, mode, image);
    }

    pub fn deny(&self, method: &str, fragment: &str) {
        self.model.lock().unwrap().denied.insert((method.into(), fragment.into()));
    }

    pub fn requests(&self) -> Vec<String> {
        self.model.lock().unwrap().requests.clone()
    }

    pub fn issued(&self) -> Vec<String> {
        self.model.lock().unwrap().issued.clone()
    }

    pub fn token_requests(&self) -> Vec<BTreeMap<String, String>> {
        self.model.lock().unwrap().token_requests.clone()
    }
}

fn arm_error(status: u16, code: &str, message: &str) -> Response {
    Response::json(status, &json!({ "error": { "code": code, "message": message } }))
}

/// Form fields (`application/x-www-form-urlencoded`), decoded.
fn form(body: &[u8]) -> BTreeMap<String, String> {
    let decode = |s: &str| {
        let bytes = s.replace('+', " ").into_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let escaped = (bytes[i] == b'%' && i + 2 < bytes.len())
                .then(|| u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16).ok())
                .flatten();
            if let Some(b) = escaped {
                out.push(b);
                i += 3;
                continue;
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn route(m: &Arc<Mutex<Model>>, base: &str, req: &Request) -> Response {
    if req.route().ends_with("/oauth2/v2.0/token") {
        return token(m, req);
    }
    let mut model = m.lock().unwrap();
    model.requests.push(format!("{} {}", req.method, req.route()));
    let bearer = req.header("authorization").and_then(|a| a.strip_prefix("Bearer ")).unwrap_or_default();
    if !model.issued.iter().any(|t| t == bearer) {
        return arm_error(401, "InvalidAuthenticationToken", "The access token is invalid.");
    }
    if req.query("api-version").is_none() {
        return arm_error(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        );
    }
    if model.throttle > 0 {
        model.throttle -= 1;
        return arm_error(429, "TooManyRequests", "The request is being throttled.").with_header("Retry-After", "0");
    }
    if let Some((method, fragment)) =
        model.denied.iter().find(|(method, fragment)| *method == req.method && req.route().contains(fragment.as_str()))
    {
        let _ = method;
        return arm_error(
            403,
            "AuthorizationFailed",
            &format!(
                "The client '{CLIENT_ID}' with object id '{CLIENT_ID}' does not have authorization to perform action '{fragment}' over scope '{}' or the scope is invalid.",
                req.route()
            ),
        );
    }
    let parts: Vec<&str> = req.route().trim_start_matches('/').split('/').collect();
    // /subscriptions/{sub}/providers/Microsoft.Web/locations/{loc}/operationResults/{id}
    if let ["subscriptions", _, "providers", "Microsoft.Web", "locations", _, "operationResults", id] = parts.as_slice()
    {
        let id: u64 = id.parse().unwrap_or(0);
        let Some(op) = model.operations.get_mut(&id) else {
            return arm_error(404, "NotFound", "no such operation");
        };
        if op.polls_left > 0 {
            op.polls_left -= 1;
            if let Action::ZipDeploySite { site, .. } = &op.action {
                let site = site.clone();
                swa::progress(&mut model, &site);
            }
            return Response::text(202, "")
                .with_header("Retry-After", "1")
                .with_header("Location", &format!("{base}{}", req.path));
        }
        let op = model.operations.remove(&id).unwrap();
        model.complete(&op.action);
        return Response::text(200, "");
    }
    if let ["subscriptions", _, "providers", "Microsoft.App", "locations", _, "containerappOperationStatuses", id] =
        parts.as_slice()
    {
        let id: u64 = id.parse().unwrap_or(0);
        let Some(op) = model.operations.get_mut(&id) else {
            return arm_error(404, "NotFound", "no such operation");
        };
        if op.polls_left > 0 {
            op.polls_left -= 1;
            return Response::json(200, &json!({ "id": req.route(), "status": "InProgress" }))
                .with_header("Retry-After", "1");
        }
        let op = model.operations.remove(&id).unwrap();
        if let Action::PatchApp { app, body } = &op.action {
            apps::complete(m, &mut model, app, body);
        }
        return Response::json(200, &json!({ "id": req.route(), "status": "Succeeded" }));
    }
    if let ["subscriptions", sub, "resourceGroups", rg, "providers", "Microsoft.App", "containerApps", app, rest @ ..] =
        parts.as_slice()
    {
        if *sub != SUBSCRIPTION {
            return arm_error(404, "SubscriptionNotFound", &format!("The subscription '{sub}' could not be found."));
        }
        if !model.container_apps.values().any(|a| a.resource_group == *rg) {
            return arm_error(404, "ResourceGroupNotFound", &format!("Resource group '{rg}' could not be found."));
        }
        let (sub, app) = ((*sub).to_owned(), (*app).to_owned());
        let rest = rest.to_vec();
        return apps::route(m, &mut model, base, req, &sub, &app, &rest);
    }
    let ["subscriptions", sub, "resourceGroups", rg, "providers", "Microsoft.Web", kind, name, rest @ ..] =
        parts.as_slice()
    else {
        return arm_error(404, "NotFound", &format!("No route for {}", req.route()));
    };
    if *sub != SUBSCRIPTION {
        return arm_error(404, "SubscriptionNotFound", &format!("The subscription '{sub}' could not be found."));
    }
    let known_rg = model.sites.values().any(|s| s.resource_group == *rg)
        || model.plans.values().any(|p| p.resource_group == *rg)
        || swa::knows_group(&model, rg);
    if !known_rg {
        return arm_error(404, "ResourceGroupNotFound", &format!("Resource group '{rg}' could not be found."));
    }
    if *kind == "staticSites" {
        let (sub, rg, name) = ((*sub).to_owned(), (*rg).to_owned(), (*name).to_owned());
        let rest = rest.to_vec();
        return swa::route(&mut model, base, req, &sub, &rg, &name, &rest);
    }
    let not_found = |what: &str| {
        arm_error(
            404,
            "ResourceNotFound",
            &format!(
                "The Resource '{what}' under resource group '{rg}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
            ),
        )
    };
    if *kind == "serverfarms" {
        let Some(plan) = model.plans.get(*name).filter(|p| p.resource_group == *rg) else {
            return not_found(&format!("Microsoft.Web/serverfarms/{name}"));
        };
        return Response::json(
            200,
            &json!({ "id": req.route(), "name": name, "type": "Microsoft.Web/serverfarms", "location": "East US",
                     "sku": { "name": plan.sku, "tier": plan.tier, "capacity": 1 },
                     "properties": { "status": "Ready", "numberOfSites": 1, "subscription": plan.subscription } }),
        );
    }
    if *kind != "sites" || model.sites.get(*name).is_none_or(|s| s.resource_group != *rg) {
        return not_found(&format!("Microsoft.Web/{kind}/{name}"));
    }
    let app = (*name).to_owned();
    let site_path = format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Web/sites/{app}");
    let (slot, rest) = match rest {
        ["slots", slot, rest @ ..] => {
            if !model.sites[&app].slots.contains_key(*slot) || *slot == PRODUCTION {
                return not_found(&format!("Microsoft.Web/sites/{app}/slots/{slot}"));
            }
            ((*slot).to_owned(), rest)
        }
        _ => (PRODUCTION.to_owned(), rest),
    };
    match (req.method.as_str(), rest) {
        ("GET", []) => {
            let site = &model.sites[&app];
            let s = &site.slots[&slot];
            let (id, name) = if slot == PRODUCTION {
                (site_path.clone(), app.clone())
            } else {
                (format!("{site_path}/slots/{slot}"), format!("{app}/{slot}"))
            };
            Response::json(
                200,
                &json!({
                    "id": id, "name": name,
                    "type": if slot == PRODUCTION { "Microsoft.Web/sites" } else { "Microsoft.Web/sites/slots" },
                    "kind": "app,linux", "location": "East US",
                    "tags": if slot == PRODUCTION { json!(site.tags) } else { json!({}) },
                    "properties": {
                        "state": "Running",
                        "serverFarmId": format!("/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Web/serverfarms/{}", site.subscription, model.plans[&site.plan].resource_group, site.plan),
                        "defaultHostName": s.host,
                        "enabledHostNames": [s.host, s.scm_host],
                        "hostNameSslStates": [
                            { "name": s.host, "sslState": "Disabled", "hostType": "Standard" },
                            { "name": s.scm_host, "sslState": "Disabled", "hostType": "Repository" }
                        ]
                    }
                }),
            )
        }
        ("POST", ["config", "appsettings", "list"]) => {
            let settings = model.slot(&app, &slot).settings.clone();
            Response::json(
                200,
                &json!({ "id": format!("{}/config/appsettings", req.route().trim_end_matches("/config/appsettings/list")), "name": "appsettings", "type": "Microsoft.Web/sites/config", "properties": settings }),
            )
        }
        ("PUT", ["config", "appsettings"]) => {
            let body = req.json();
            let Some(props) = body["properties"].as_object() else {
                return arm_error(400, "BadRequest", "properties is required");
            };
            let settings: BTreeMap<String, String> =
                props.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect();
            model.slot(&app, &slot).settings = settings.clone();
            Response::json(200, &json!({ "name": "appsettings", "properties": settings }))
        }
        ("POST", ["slotsswap"]) if slot != PRODUCTION => {
            let body = req.json();
            if body["targetSlot"].as_str() != Some(PRODUCTION) {
                return arm_error(400, "BadRequest", "targetSlot must name the slot to swap with");
            }
            let id = model.id();
            model.operations.insert(id, Operation { polls_left: 2, action: Action::Swap { site: app, slot } });
            let location = format!(
                "{base}/subscriptions/{sub}/providers/Microsoft.Web/locations/eastus/operationResults/{id}?api-version=2024-04-01"
            );
            Response::text(202, "").with_header("Location", &location).with_header("Retry-After", "1")
        }
        ("PATCH", ["providers", "Microsoft.Resources", "tags", "default"]) if slot == PRODUCTION => {
            let body = req.json();
            let tags = &mut model.sites.get_mut(&app).unwrap().tags;
            if let Err(response) = apply_tags(tags, &body) {
                return response;
            }
            Response::json(
                200,
                &json!({ "id": format!("{site_path}/providers/Microsoft.Resources/tags/default"), "name": "default", "properties": { "tags": tags } }),
            )
        }
        _ => arm_error(404, "NotFound", &format!("No route for {} {}", req.method, req.route())),
    }
}

/// "Tags - Update At Scope": `Merge` adds or replaces, `Replace` sets, `Delete` removes the
/// tags named (with the value given, when one is).
fn apply_tags(tags: &mut BTreeMap<String, String>, body: &serde_json::Value) -> Result<(), Response> {
    let given: BTreeMap<String, String> = body["properties"]["tags"]
        .as_object()
        .map(|t| t.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
        .unwrap_or_default();
    match body["operation"].as_str() {
        Some("Merge") => tags.extend(given),
        Some("Replace") => *tags = given,
        Some("Delete") => tags.retain(|k, v| given.get(k).is_none_or(|g| !g.is_empty() && g != v)),
        _ => return Err(arm_error(400, "InvalidTagOperation", "operation must be Merge, Replace or Delete")),
    }
    Ok(())
}

/// The token endpoint: client credentials with a secret or a client assertion.
fn token(m: &Arc<Mutex<Model>>, req: &Request) -> Response {
    let mut model = m.lock().unwrap();
    let f = form(&req.body);
    let mut seen = f.clone();
    for secret in ["client_secret", "client_assertion"] {
        if let Some(v) = seen.get_mut(secret) {
            *v = "<redacted>".into();
        }
    }
    model.token_requests.push(seen);
    let error = |status: u16, error: &str, code: u64, description: &str| {
        Response::json(
            status,
            &json!({ "error": error, "error_description": format!("AADSTS{code}: {description}\r\nTrace ID: 0000\r\nCorrelation ID: 0000\r\nTimestamp: 2026-01-01 00:00:00Z"), "error_codes": [code] }),
        )
    };
    let tenant = req.route().trim_start_matches('/').split('/').next().unwrap_or_default();
    if tenant != model.tenant {
        return error(400, "invalid_request", 90002, &format!("Tenant '{tenant}' not found."));
    }
    if f.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return error(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.");
    }
    if f.get("client_id") != Some(&model.client_id) {
        return error(
            400,
            "unauthorized_client",
            700016,
            "Application with identifier was not found in the directory.",
        );
    }
    if f.get("scope").map(String::as_str) != Some("https://management.azure.com/.default") {
        return error(400, "invalid_scope", 70011, "The provided request must include a 'scope' input parameter.");
    }
    let ok = match (f.get("client_secret"), f.get("client_assertion_type"), f.get("client_assertion")) {
        (Some(secret), None, None) => {
            if *secret != model.client_secret {
                return error(
                    401,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
                );
            }
            true
        }
        (None, Some(kind), Some(assertion)) if kind == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" => {
            if !model.federated_prefix.as_ref().is_some_and(|p| assertion.starts_with(p.as_str())) {
                return error(
                    400,
                    "invalid_client",
                    70021,
                    "No matching federated identity record found for presented assertion.",
                );
            }
            true
        }
        _ => false,
    };
    if !ok {
        return error(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        );
    }
    let n = model.issued.len() + 1;
    let access = format!("eyJ0eXAiOiJKV1Qi.arm-access-token-{n}.sig");
    model.issued.push(access.clone());
    Response::json(
        200,
        &json!({ "token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": access }),
    )
}

/// Kudu on one slot's SCM host.
fn kudu(m: &Arc<Mutex<Model>>, app: &str, slot: &str, req: &Request) -> Response {
    let mut model = m.lock().unwrap();
    model.requests.push(format!("{} scm:{slot}{}", req.method, req.route()));
    let bearer = req.header("authorization").and_then(|a| a.strip_prefix("Bearer ")).unwrap_or_default();
    if !model.issued.iter().any(|t| t == bearer) {
        return Response::text(401, "Unauthorized");
    }
    let scm = format!("http://{}", model.slot(app, slot).scm_host);
    let parts: Vec<&str> = req.route().trim_start_matches('/').split('/').collect();
    match (req.method.as_str(), parts.as_slice()) {
        ("POST", ["api", "publish"]) => {
            if req.query("type") != Some("zip") {
                return Response::text(400, "type is required");
            }
            let running = model.slot(app, slot).deployments.values().any(|d| d.status < 3);
            if running {
                return Response::text(
                    409,
                    "There is a deployment currently in progress. Please try again when it completes.",
                );
            }
            let id = model.id();
            let s = model.slot(app, slot);
            let failure = s.fail_next.take();
            s.deploys += 1;
            s.deployments.insert(id, Deployment { polls_left: 2, zip: req.body.clone(), failure, status: 0 });
            Response::text(202, "").with_header("Location", &format!("{scm}/api/deployments/{id}"))
        }
        ("GET", ["api", "deployments", id]) => {
            let id: u64 = id.parse().unwrap_or(0);
            let s = model.slot(app, slot);
            let Some(d) = s.deployments.get_mut(&id) else {
                return Response::text(404, "Deployment not found");
            };
            if d.status < 3 {
                if d.polls_left > 0 {
                    d.polls_left -= 1;
                    d.status = if d.polls_left > 0 { 1 } else { 2 };
                } else if d.failure.is_some() {
                    d.status = 3;
                } else {
                    d.status = 4;
                    let zip = d.zip.clone();
                    s.content = Some(zip);
                }
            }
            let d = &s.deployments[&id];
            Response::json(
                200,
                &json!({ "id": id.to_string(), "status": d.status, "status_text": if d.status == 3 { "Deployment failed." } else { "" },
                         "complete": d.status >= 3, "active": d.status == 4, "deployer": "OneDeploy", "message": "OneDeploy",
                         "log_url": format!("{scm}/api/deployments/{id}/log"), "site_name": app }),
            )
        }
        ("GET", ["api", "deployments", id, "log"]) => {
            let id: u64 = id.parse().unwrap_or(0);
            let s = model.slot(app, slot);
            let message = s
                .deployments
                .get(&id)
                .and_then(|d| d.failure.clone())
                .unwrap_or_else(|| "Deployment successful.".into());
            Response::json(
                200,
                &json!([{ "log_time": "2026-01-01T00:00:00Z", "id": "1", "message": "Fetching changes.", "type": 0 },
                                        { "log_time": "2026-01-01T00:00:01Z", "id": "2", "message": message, "type": 2 }]),
            )
        }
        _ => Response::text(404, "not found"),
    }
}
