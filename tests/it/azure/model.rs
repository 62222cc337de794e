//! The emulated Azure state: an Entra ID tenant with one app registration, App Service plans,
//! apps with deployment slots (each slot's deployed zip and application settings), Kudu
//! deployments, and long-running ARM operations. Handlers in `mod.rs` read and change it;
//! tests change it directly (a failing next deployment, a denied operation).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

/// The slot name of an app's production slot.
pub const PRODUCTION: &str = "production";

#[derive(Default)]
pub struct Model {
    pub tenant: String,
    pub client_id: String,
    pub client_secret: String,
    /// Client assertions are accepted when they start with this (the ID tokens the test's
    /// GitHub OIDC token service issues).
    pub federated_prefix: Option<String>,
    /// Access tokens issued, in order.
    pub issued: Vec<String>,
    /// Each token request's form, without its secret values (grant, assertion type, scope).
    pub token_requests: Vec<BTreeMap<String, String>>,
    pub plans: BTreeMap<String, Plan>,
    pub sites: BTreeMap<String, Site>,
    pub operations: BTreeMap<u64, Operation>,
    /// `(METHOD, path fragment)`: calls answered 403 AuthorizationFailed.
    pub denied: BTreeSet<(String, String)>,
    /// The next this many ARM calls are answered 429 `TooManyRequests` with `Retry-After: 0`.
    pub throttle: u32,
    /// Every ARM and Kudu call: `METHOD /path` (no query).
    pub requests: Vec<String>,
    pub next_id: u64,
    pub container_apps: BTreeMap<String, crate::azure::apps::ContainerApp>,
    /// How revisions running an image answer health checks: `ok` (default), `broken`,
    /// `broken-under-traffic` (503 once the revision has weight), `fail-provision`.
    pub image_health: BTreeMap<String, String>,
    pub static_sites: BTreeMap<String, crate::azure::swa::StaticSite>,
    /// Servers started while answering (one per new revision), kept alive with the model.
    pub servers: Vec<crate::stand_in::Server>,
}

pub struct Plan {
    pub subscription: String,
    pub resource_group: String,
    pub sku: String,
    pub tier: String,
}

pub struct Site {
    pub subscription: String,
    pub resource_group: String,
    pub plan: String,
    pub tags: BTreeMap<String, String>,
    /// `production` and each deployment slot.
    pub slots: BTreeMap<String, Slot>,
}

pub struct Slot {
    /// The app's own host (`127.0.0.1:PORT` of the server that answers as the app).
    pub host: String,
    /// The SCM (Kudu) host.
    pub scm_host: String,
    /// The zip deployed there.
    pub content: Option<Vec<u8>>,
    pub settings: BTreeMap<String, String>,
    pub deployments: BTreeMap<u64, Deployment>,
    /// The next deployment fails with this log message.
    pub fail_next: Option<String>,
    /// Deployments this slot received.
    pub deploys: u32,
}

pub struct Deployment {
    /// Status polls left before it ends.
    pub polls_left: u32,
    pub zip: Vec<u8>,
    pub failure: Option<String>,
    /// Kudu's DeployStatus: 0 Pending, 1 Building, 2 Deploying, 3 Failed, 4 Success.
    pub status: u8,
}

/// A long-running ARM operation: done after `polls_left` polls.
pub struct Operation {
    pub polls_left: u32,
    pub action: Action,
}

pub enum Action {
    Swap {
        site: String,
        slot: String,
    },
    /// A Static Web Apps zip deployment of the zip at `url`.
    ZipDeploySite {
        site: String,
        url: String,
    },
    /// A Container Apps update: the merge patch's body.
    PatchApp {
        app: String,
        body: serde_json::Value,
    },
}

impl Model {
    pub fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// The slot (or production) of `site`.
    pub fn slot(&mut self, site: &str, slot: &str) -> &mut Slot {
        self.sites.get_mut(site).and_then(|s| s.slots.get_mut(slot)).expect("a known slot")
    }

    /// Ends an operation: a swap exchanges content and (non-sticky) settings between the
    /// slot and production; host names stay (the "Swap Slot" operation).
    pub fn complete(&mut self, action: &Action) {
        match action {
            Action::PatchApp { .. } => unreachable!("completed by apps::complete"),
            Action::ZipDeploySite { site, url } => crate::azure::swa::complete(self, site, url),
            Action::Swap { site, slot } => {
                let site = self.sites.get_mut(site).expect("a known site");
                let mut staged = site.slots.remove(slot).expect("a known slot");
                let production = site.slots.get_mut(PRODUCTION).expect("production");
                std::mem::swap(&mut staged.content, &mut production.content);
                std::mem::swap(&mut staged.settings, &mut production.settings);
                site.slots.insert(slot.clone(), staged);
            }
        }
    }
}

/// A file's text inside a zip.
pub fn zip_file(zip: &[u8], name: &str) -> Option<String> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).ok()?;
    let mut file = archive.by_name(name).ok()?;
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    Some(text.trim().to_owned())
}
