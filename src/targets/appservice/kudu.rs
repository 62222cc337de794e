//! Kudu's OneDeploy, on an app's (or slot's) SCM site: the release zip goes up with
//! `POST https://SCM_HOST/api/publish?type=zip&async=true` (bearer: an ARM token, which the
//! SCM site accepts), answered `202 Accepted` with a `Location` that is the deployment's
//! status (`/api/deployments/ID`). That status is polled until `complete`: Kudu's
//! `DeployStatus` is 0 Pending, 1 Building, 2 Deploying, 3 Failed, 4 Success; a failed
//! deployment's `log_url` lists its log entries, the last of which says why.
//! A `409 Conflict` means another deployment of the app is running.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::azure::{Arm, AzureError};
use crate::targets::Progress;

/// Longest wait for one deployment (the engine's phase deadline usually ends it first).
const DEPLOY_DEADLINE: Duration = Duration::from_secs(30 * 60);
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Deploys `zip` through the SCM site at `scm` (`https://HOST`); `what` names the app or
/// slot in messages. Returns when Kudu reports the deployment a success.
pub async fn deploy(
    arm: &Arm,
    scm: &str,
    zip: &Path,
    what: &str,
    progress: Option<&Progress>,
) -> Result<(), AzureError> {
    let bytes =
        tokio::fs::read(zip).await.map_err(|e| AzureError::new(format!("cannot read {}: {e}", zip.display())))?;
    let token = arm.token().await?;
    let url = format!("{scm}/api/publish?type=zip&async=true");
    let response = arm
        .http()
        .post(&url)
        .bearer_auth(token.expose())
        .header("Content-Type", "application/zip")
        .body(bytes)
        .timeout(UPLOAD_TIMEOUT)
        .send()
        .await
        .map_err(|e| {
            AzureError::new(format!("cannot upload the release to the SCM site of {what} ({scm}): {}", e.without_url()))
        })?;
    let status = response.status().as_u16();
    let location = response.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = response.text().await.unwrap_or_default();
    match status {
        200 => return Ok(()),
        202 => {}
        409 => {
            return Err(AzureError::new(format!("another deployment of {what} is running (OneDeploy answered 409)"))
                .with_hint("wait for it to finish (see Deployment Center in the portal), then deploy again"));
        }
        401 | 403 => {
            return Err(AzureError::new(format!("the SCM site of {what} refused the deployment: HTTP {status}"))
                .with_hint(
                    "the app registration needs a role that may publish (e.g. `Website Contributor`) on the app",
                ));
        }
        _ => {
            return Err(AzureError::new(format!(
                "OneDeploy to {what} failed: HTTP {status}: {}",
                body.chars().take(300).collect::<String>()
            )));
        }
    }
    let Some(location) = location else {
        return Err(AzureError::new(format!("OneDeploy to {what} answered 202 without a Location to follow")));
    };
    tokio::time::timeout(DEPLOY_DEADLINE, follow(arm, scm, &location, what, progress)).await.unwrap_or_else(|_| {
        Err(AzureError::new(format!(
            "the deployment to {what} did not finish within {}",
            humantime::format_duration(DEPLOY_DEADLINE)
        ))
        .with_hint("see Deployment Center in the portal"))
    })
}

/// Polls the deployment's status until it is complete.
async fn follow(
    arm: &Arm,
    scm: &str,
    location: &str,
    what: &str,
    progress: Option<&Progress>,
) -> Result<(), AzureError> {
    let mut last_status = None;
    let mut delay = Duration::from_millis(500);
    loop {
        let status = get(arm, scm, location, what).await?;
        let code = status["status"].as_i64().unwrap_or(0);
        if last_status != Some(code) {
            if let Some(p) = progress {
                let _ = p.send(format!("OneDeploy to {what}: {}", status_name(code)));
            }
            last_status = Some(code);
        }
        let complete = status["complete"].as_bool().unwrap_or(false);
        match code {
            4 if complete => return Ok(()),
            3 => {
                let why = failure_reason(arm, scm, &status, what).await;
                return Err(AzureError::new(format!("the deployment to {what} failed: {why}"))
                    .with_hint("see the deployment's log in Deployment Center; fix the package and deploy again"));
            }
            _ => {}
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

async fn get(arm: &Arm, scm: &str, url: &str, what: &str) -> Result<Value, AzureError> {
    if !url.starts_with(&format!("{scm}/")) {
        return Err(AzureError::new(format!(
            "the SCM site of {what} named a status URL outside {scm}; not sending the token there"
        )));
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        let token = arm.token().await?;
        let response = arm.http().get(url).bearer_auth(token.expose()).timeout(Duration::from_secs(30)).send().await;
        match response {
            Ok(r) if r.status().is_success() => return Ok(r.json().await.unwrap_or(Value::Null)),
            Ok(r) if (r.status().is_server_error() || r.status().as_u16() == 429) && attempt < 5 => {}
            Ok(r) => {
                return Err(AzureError::new(format!(
                    "reading the deployment status of {what} failed: HTTP {}",
                    r.status().as_u16()
                )));
            }
            Err(_) if attempt < 5 => {}
            Err(e) => {
                return Err(AzureError::new(format!(
                    "cannot read the deployment status of {what}: {}",
                    e.without_url()
                )));
            }
        }
        tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
    }
}

/// The status's own text, and the last entry of its log when it has one.
async fn failure_reason(arm: &Arm, scm: &str, status: &Value, what: &str) -> String {
    let mut why = ["status_text", "message"]
        .iter()
        .filter_map(|k| status[*k].as_str())
        .find(|s| !s.trim().is_empty())
        .unwrap_or("Kudu reported status 3 (Failed)")
        .to_owned();
    if let Some(log) = status["log_url"].as_str()
        && let Ok(entries) = get(arm, scm, log, what).await
        && let Some(last) = entries.as_array().and_then(|e| e.last()).and_then(|e| e["message"].as_str())
    {
        why = format!("{why} ({last})");
    }
    why
}

fn status_name(code: i64) -> &'static str {
    match code {
        0 => "pending",
        1 => "building",
        2 => "deploying",
        3 => "failed",
        4 => "succeeded",
        _ => "in progress",
    }
}
