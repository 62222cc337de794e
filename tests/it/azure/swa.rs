//! Azure Static Web Apps in the Azure emulator, following the `Microsoft.Web/staticSites`
//! REST reference (api-version 2024-04-01) for exactly the calls gantry makes:
//!
//! - "Static Sites - Get Static Site": `GET .../staticSites/{name}`: `sku {name, tier}`,
//!   `tags`, `properties.defaultHostname` (lower-case `n`, unlike a web app's
//!   `defaultHostName`), `customDomains`.
//! - "Static Sites - Create Zip Deployment For Static Site": `POST .../staticSites/{name}/zipdeploy`
//!   with `{"properties": {"appZipUrl", "apiZipUrl", "deploymentTitle", "provider",
//!   "functionLanguage"}}`; answered `202 Accepted` with `Location` (ARM's asynchronous
//!   operation pattern). Azure downloads `appZipUrl` itself, so the emulator fetches it with
//!   curl when the operation ends: a URL it cannot read makes the deployment `Failed`.
//! - "Static Sites - Get Static Site Build": `GET .../staticSites/{name}/builds/default`:
//!   `properties.status` (`WaitingForDeployment`, `Uploading`, `Deploying`, `Ready`,
//!   `Failed`, ...), `hostname`, `lastUpdatedOn`.
//! - "Tags - Update At Scope" on the site.
//!
//! The site's content answers on its own loopback server (its `defaultHostname`): each path
//! is the file of that name in the deployed zip (`/` is `index.html`), 404 otherwise; before
//! any deployment, the default "Congratulations" page at `/` only.
//!
//! Not emulated: `apiZipUrl` (managed Functions), named preview environments, custom
//! domain validation, the deployment token (`listSecrets`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::model::{Action, Model, Operation};
use super::{Azure, arm_error};
use crate::stand_in::{self, Request, Response};

pub struct StaticSite {
    pub resource_group: String,
    /// `Free` or `Standard`.
    pub sku: String,
    /// `127.0.0.1:PORT` of the server that answers as the site.
    pub host: String,
    pub tags: BTreeMap<String, String>,
    /// The zip production serves.
    pub content: Option<Vec<u8>>,
    /// The production environment's build status.
    pub status: String,
    /// The next deployment ends `Failed` even when its zip could be fetched.
    pub fail_next: bool,
    /// `appZipUrl` of every zip deployment, in order.
    pub zip_urls: Vec<String>,
}

impl Azure {
    /// Adds Static Web App `name` on `sku` (`Free`, `Standard`) with nothing deployed.
    pub fn add_static_site(&self, resource_group: &str, name: &str, sku: &str) {
        let (m, site) = (self.model.clone(), name.to_owned());
        let server = stand_in::serve(Arc::new(move |req| serve_content(&m, &site, req)));
        let mut m = self.model.lock().unwrap();
        m.static_sites.insert(
            name.into(),
            StaticSite {
                resource_group: resource_group.into(),
                sku: sku.into(),
                host: format!("127.0.0.1:{}", server.port),
                tags: BTreeMap::new(),
                content: None,
                status: "WaitingForDeployment".into(),
                fail_next: false,
                zip_urls: Vec::new(),
            },
        );
        drop(m);
        self.hosts.lock().unwrap().push(server);
    }

    /// A file of the zip the site serves.
    pub fn site_file(&self, name: &str, file: &str) -> Option<String> {
        let m = self.model.lock().unwrap();
        m.static_sites[name].content.as_deref().and_then(|zip| super::model::zip_file(zip, file))
    }

    pub fn site_tags(&self, name: &str) -> BTreeMap<String, String> {
        self.model.lock().unwrap().static_sites[name].tags.clone()
    }

    pub fn zip_urls(&self, name: &str) -> Vec<String> {
        self.model.lock().unwrap().static_sites[name].zip_urls.clone()
    }

    pub fn fail_next_site_deploy(&self, name: &str) {
        self.model.lock().unwrap().static_sites.get_mut(name).unwrap().fail_next = true;
    }
}

/// Whether `rg` holds a static site.
pub fn knows_group(model: &Model, rg: &str) -> bool {
    model.static_sites.values().any(|s| s.resource_group == rg)
}

/// `.../providers/Microsoft.Web/staticSites/{name}/REST...`
pub fn route(model: &mut Model, base: &str, req: &Request, sub: &str, rg: &str, name: &str, rest: &[&str]) -> Response {
    if model.static_sites.get(name).is_none_or(|s| s.resource_group != rg) {
        return arm_error(
            404,
            "ResourceNotFound",
            &format!(
                "The Resource 'Microsoft.Web/staticSites/{name}' under resource group '{rg}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
            ),
        );
    }
    let path = format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Web/staticSites/{name}");
    match (req.method.as_str(), rest) {
        ("GET", []) => {
            let s = &model.static_sites[name];
            Response::json(
                200,
                &json!({
                    "id": path, "name": name, "type": "Microsoft.Web/staticSites", "location": "West Europe",
                    "tags": s.tags,
                    "sku": { "name": s.sku, "tier": s.sku },
                    "properties": {
                        "defaultHostname": s.host,
                        "customDomains": [],
                        "repositoryUrl": null,
                        "provider": "None",
                        "stagingEnvironmentPolicy": "Enabled",
                        "allowConfigFileUpdates": true,
                        "contentDistributionEndpoint": format!("https://content-am2.infrastructure.azurestaticapps.net/{name}"),
                    }
                }),
            )
        }
        ("POST", ["zipdeploy"]) => {
            let body = req.json();
            let Some(url) = body["properties"]["appZipUrl"].as_str().map(str::to_owned) else {
                return arm_error(400, "BadRequest", "The parameter appZipUrl is required.");
            };
            let running = model
                .operations
                .values()
                .any(|o| matches!(&o.action, Action::ZipDeploySite { site, .. } if site == name));
            if running {
                return arm_error(409, "Conflict", "A deployment is already in progress for this static site.");
            }
            let site = model.static_sites.get_mut(name).unwrap();
            site.zip_urls.push(url.clone());
            site.status = "Uploading".into();
            let id = model.id();
            model
                .operations
                .insert(id, Operation { polls_left: 2, action: Action::ZipDeploySite { site: name.into(), url } });
            let location = format!(
                "{base}/subscriptions/{sub}/providers/Microsoft.Web/locations/westeurope/operationResults/{id}?api-version=2024-04-01"
            );
            Response::text(202, "").with_header("Location", &location).with_header("Retry-After", "1")
        }
        ("GET", ["builds", "default"]) => {
            let s = &model.static_sites[name];
            Response::json(
                200,
                &json!({
                    "id": format!("{path}/builds/default"), "name": "default", "type": "Microsoft.Web/staticSites/builds",
                    "properties": { "buildId": "default", "hostname": s.host, "status": s.status,
                                    "createdTimeUtc": "2026-01-01T00:00:00Z", "lastUpdatedOn": "2026-01-01T00:00:00Z" }
                }),
            )
        }
        ("PATCH", ["providers", "Microsoft.Resources", "tags", "default"]) => {
            let body = req.json();
            let tags = &mut model.static_sites.get_mut(name).unwrap().tags;
            match super::apply_tags(tags, &body) {
                Ok(()) => Response::json(
                    200,
                    &json!({ "id": format!("{path}/providers/Microsoft.Resources/tags/default"), "name": "default", "properties": { "tags": tags } }),
                ),
                Err(response) => response,
            }
        }
        _ => arm_error(404, "NotFound", &format!("No route for {} {}", req.method, req.route())),
    }
}

/// Polled while a zip deployment runs: the status moves on.
pub fn progress(model: &mut Model, site: &str) {
    if let Some(s) = model.static_sites.get_mut(site) {
        s.status = "Deploying".into();
    }
}

/// The operation ended: Azure has fetched `url` (or failed to) and deployed it.
pub fn complete(model: &mut Model, site: &str, url: &str) {
    let fetched = std::process::Command::new("curl").args(["-sSf", "--max-time", "10", url]).output();
    let s = model.static_sites.get_mut(site).expect("a known static site");
    match fetched {
        Ok(out) if out.status.success() && !std::mem::take(&mut s.fail_next) => {
            s.content = Some(out.stdout);
            s.status = "Ready".into();
        }
        _ => s.status = "Failed".into(),
    }
}

/// The site's own host: files of the deployed zip.
fn serve_content(m: &Arc<Mutex<Model>>, site: &str, req: &Request) -> Response {
    let m = m.lock().unwrap();
    let Some(zip) = m.static_sites[site].content.as_deref() else {
        return if req.route() == "/" {
            Response::text(200, "Congratulations on your new site!")
        } else {
            Response::text(404, "The page you're looking for can't be found.")
        };
    };
    let file = match req.route().trim_start_matches('/') {
        "" => "index.html",
        path => path,
    };
    match super::model::zip_file(zip, file) {
        Some(text) => Response::text(200, &text),
        None => Response::text(404, "The page you're looking for can't be found."),
    }
}
