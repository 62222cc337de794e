//! The App Service resources the target reads and changes through ARM (`Microsoft.Web`,
//! api-version 2024-04-01), each call as its REST reference names it:
//! - "Web Apps - Get" / "Web Apps - Get Slot": `GET .../sites/{app}[/slots/{slot}]`: the
//!   plan (`properties.serverFarmId`), `defaultHostName`, and `hostNameSslStates`, whose
//!   entry of `hostType: "Repository"` is the SCM (Kudu) host;
//! - "App Service Plans - Get": `GET {serverFarmId}`: `sku.name`/`sku.tier`, which decide
//!   whether the plan has deployment slots (Free, Shared and Basic have none);
//! - "Web Apps - List Application Settings (Slot)": `POST .../config/appsettings/list`, and
//!   "Update Application Settings (Slot)": `PUT .../config/appsettings`;
//! - "Web Apps - Swap Slot": `POST .../slots/{slot}/slotsswap` with
//!   `{"targetSlot":"production","preserveVnet":true}`, a long-running operation;
//! - "Tags - Update At Scope" (`Arm::update_tags`) for the site's tags, which restart nothing.

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::{Value, json};

use crate::azure::{Arm, AzureError};
use crate::targets::direct::Tagged;

pub const WEB_API: &str = "2024-04-01";

/// Where one app or slot answers.
#[derive(Debug, Clone)]
pub struct Hosts {
    /// `https://DEFAULT_HOST_NAME`.
    pub url: String,
    /// `https://SCM_HOST`.
    pub scm: String,
}

/// The app's plan.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    /// `B1`, `S1`, `P1v3`, ...
    pub sku: String,
    /// `Basic`, `Standard`, `PremiumV3`, ...
    pub tier: String,
}

impl Plan {
    /// Whether the plan's tier has deployment slots (Standard and up).
    pub fn has_slots(&self) -> bool {
        !matches!(self.tier.to_ascii_lowercase().as_str(), "free" | "shared" | "basic")
    }
}

/// One app (and its resource group and subscription), as ARM paths.
#[derive(Debug, Clone)]
pub struct Site {
    pub arm: Arm,
    pub path: String,
    /// `App Service app `NAME` in resource group `RG` (subscription `SUB`)`.
    pub what: String,
}

impl Site {
    pub fn new(arm: Arm, subscription: &str, resource_group: &str, app: &str) -> Self {
        Self {
            arm,
            path: format!(
                "/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/Microsoft.Web/sites/{app}"
            ),
            what: format!(
                "App Service app `{app}` in resource group `{resource_group}` (subscription `{subscription}`)"
            ),
        }
    }

    fn slot_path(&self, slot: Option<&str>) -> String {
        match slot {
            Some(s) => format!("{}/slots/{s}", self.path),
            None => self.path.clone(),
        }
    }

    pub fn slot_what(&self, slot: Option<&str>) -> String {
        match slot {
            Some(s) => format!("slot `{s}` of {}", self.what),
            None => self.what.clone(),
        }
    }

    /// The site (or slot) resource.
    pub async fn get(&self, slot: Option<&str>) -> Result<Value, AzureError> {
        self.arm.get(&self.slot_path(slot), WEB_API, &self.slot_what(slot)).await
    }

    /// The app's plan, from its `serverFarmId`.
    pub async fn plan(&self, site: &Value) -> Result<Plan, AzureError> {
        let id = site["properties"]["serverFarmId"]
            .as_str()
            .ok_or_else(|| AzureError::new(format!("ARM reports no App Service plan for {}", self.what)))?;
        let plan = self.arm.get(id, WEB_API, &format!("the App Service plan of {}", self.what)).await?;
        let name = plan["name"].as_str().unwrap_or_else(|| id.rsplit('/').next().unwrap_or(id)).to_owned();
        Ok(Plan {
            name,
            sku: plan["sku"]["name"].as_str().unwrap_or("unknown").to_owned(),
            tier: plan["sku"]["tier"].as_str().unwrap_or("unknown").to_owned(),
        })
    }

    /// The default and SCM hosts of a site or slot resource.
    pub fn hosts(&self, resource: &Value, slot: Option<&str>) -> Result<Hosts, AzureError> {
        let props = &resource["properties"];
        let default = props["defaultHostName"]
            .as_str()
            .ok_or_else(|| AzureError::new(format!("ARM reports no default host name for {}", self.slot_what(slot))))?;
        let scm = props["hostNameSslStates"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|h| h["hostType"].as_str() == Some("Repository"))
            .and_then(|h| h["name"].as_str())
            .or_else(|| {
                props["enabledHostNames"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .find(|h| h.contains(".scm."))
            })
            .ok_or_else(|| {
                AzureError::new(format!("ARM reports no SCM (Kudu) host for {}", self.slot_what(slot)))
                    .with_hint("OneDeploy needs the app's SCM site: check that it is not disabled")
            })?;
        Ok(Hosts { url: self.arm.host_url(default), scm: self.arm.host_url(scm) })
    }

    /// The app's (or slot's) application settings.
    pub async fn settings(&self, slot: Option<&str>) -> Result<BTreeMap<String, String>, AzureError> {
        let path = format!("{}/config/appsettings/list", self.slot_path(slot));
        let what = format!("the application settings of {}", self.slot_what(slot));
        let out = self.arm.send(Method::POST, &path, WEB_API, None, &what).await?;
        Ok(out["properties"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
            .unwrap_or_default())
    }

    /// Sets one application setting, keeping the others (a read, then the whole set back).
    pub async fn set_setting(&self, slot: Option<&str>, name: &str, value: &str) -> Result<(), AzureError> {
        let mut settings = self.settings(slot).await?;
        if settings.get(name).map(String::as_str) == Some(value) {
            return Ok(());
        }
        settings.insert(name.to_owned(), value.to_owned());
        let path = format!("{}/config/appsettings", self.slot_path(slot));
        let what = format!("the application settings of {}", self.slot_what(slot));
        self.arm.send(Method::PUT, &path, WEB_API, Some(&json!({ "properties": settings })), &what).await?;
        Ok(())
    }

    /// The site's tags, as a direct deploy records them.
    pub fn tagged(&self) -> Tagged {
        Tagged { arm: self.arm.clone(), path: self.path.clone(), api_version: WEB_API, what: self.what.clone() }
    }

    /// The site's tags.
    pub async fn tags(&self) -> Result<BTreeMap<String, String>, AzureError> {
        self.tagged().tags().await
    }

    /// Adds or replaces tags.
    pub async fn merge_tags(&self, tags: &[(&str, &str)]) -> Result<(), AzureError> {
        self.tagged().merge(tags).await
    }

    /// Removes the tags named, whatever their values.
    pub async fn delete_tags(&self, names: &[&str]) -> Result<(), AzureError> {
        self.tagged().delete(names).await
    }

    /// Swaps `slot` with production and waits for the swap to finish.
    pub async fn swap(&self, slot: &str) -> Result<(), AzureError> {
        let path = format!("{}/slotsswap", self.slot_path(Some(slot)));
        let body = json!({ "targetSlot": "production", "preserveVnet": true });
        let what = format!("{} (swap with production)", self.slot_what(Some(slot)));
        self.arm.send(Method::POST, &path, WEB_API, Some(&body), &what).await?;
        Ok(())
    }
}
