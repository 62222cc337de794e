//! The `appservice` target through the real binary, against the Azure emulator: a direct
//! deploy on a Basic (B1) plan, as the Impact Pulse seed runs, and blue-green by slot swap on
//! a Standard plan; failures at each phase with real health endpoints; plan snapshots; auth
//! failures and redaction.

use std::path::Path;

use super::{Azure, CLIENT_SECRET, SUBSCRIPTION};
use crate::support::{gantry, output, stderr, write_tree};

const APP: &str = "app-impactpulse-api";
const RG: &str = "rg-catalyzeup";

struct Project {
    dir: tempfile::TempDir,
    azure: Azure,
}

impl Project {
    /// An app on plan `sku`/`tier` with a `staging` slot when `slots`; the target names
    /// `slot = "staging"` and takes `strategy`.
    fn new(sku: &str, tier: &str, slots: bool, strategy: &str) -> Self {
        let azure = Azure::start();
        azure.add_app(RG, "asp-catalyzeup", sku, tier, APP, if slots { &["staging"] } else { &[] });
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "[project]\nname = \"pulse\"\n\n[artifacts.api]\nroot = \"api\"\n\n\
             [environments.prd]\ntargets = [\"api\"]\n\n\
             [targets.api]\nkind = \"appservice\"\nstrategy = {strategy}\n\
             appservice = {{ subscription = \"{SUBSCRIPTION}\", resource_group = \"{RG}\", app = \"{APP}\", artifact = \"api\", slot = \"staging\" }}\n\n\
             [[targets.api.health]]\nurl = \"{{url}}/api/v1/health\"\ninterval = \"300ms\"\ntimeout = \"300ms\"\n\
             healthy_threshold = 2\nunhealthy_threshold = 2\n"
        );
        write_tree(dir.path(), &[("gantry.toml", &config)]);
        Self { dir, azure }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn gantry(&self, args: &[&str]) -> assert_cmd::Command {
        self.azure.gantry(self.path(), args)
    }

    /// Packages `version`, whose health endpoint answers as `health` says.
    fn release(&self, version: &str, health: &str) {
        let _ = std::fs::remove_dir_all(self.path().join("api"));
        write_tree(
            self.path(),
            &[("api/health.txt", health), ("api/version.txt", version), ("api/main.py", "app = 'fastapi'\n")],
        );
        gantry(self.path()).args(["package", "-q", "--version", version]).assert().success();
    }

    fn deploy(&self, version: &str) -> assert_cmd::assert::Assert {
        self.gantry(&["deploy", "--version", version]).assert()
    }

    fn production(&self) -> Option<String> {
        self.azure.version(APP, "production")
    }
}

/// Loopback ports and temp paths out of plan text, for snapshots.
pub(super) fn normalize(text: &str, dir: &Path) -> String {
    let text = text.replace(&dir.display().to_string(), "[DIR]");
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("127.0.0.1:") {
        out.push_str(&rest[..i]);
        out.push_str("HOST");
        rest = rest[i + "127.0.0.1:".len()..].trim_start_matches(|c: char| c.is_ascii_digit());
    }
    out.push_str(rest);
    out
}

#[test]
fn direct_deploy_on_a_basic_plan_goes_live_and_a_broken_release_is_replaced_by_the_previous_one() {
    let p = Project::new("B1", "Basic", false, "{ type = \"all-at-once\" }");
    p.release("1.0.0", "ok");
    p.deploy("1.0.0").success();
    assert_eq!(p.production().as_deref(), Some("1.0.0"));
    let tags = p.azure.tags(APP);
    assert!(tags["gantry-release"].starts_with("1.0.0 sha256:"), "{tags:?}");
    assert!(!tags.contains_key("gantry-deploying") && !tags.contains_key("gantry-previous"), "{tags:?}");

    // 2.0.0 fails its health gate on production: 1.0.0 is deployed again from the store.
    p.release("2.0.0", "broken");
    let failed = p.deploy("2.0.0").code(3);
    let err = stderr(&failed);
    assert!(err.contains("health check failed"), "{err}");
    assert!(err.contains("redeploying 1.0.0"), "{err}");
    assert_eq!(p.production().as_deref(), Some("1.0.0"));
    assert_eq!(p.azure.deploys(APP, "production"), 3, "1.0.0, 2.0.0, then 1.0.0 again");
    let tags = p.azure.tags(APP);
    assert!(tags["gantry-release"].starts_with("1.0.0 sha256:"), "{tags:?}");
    assert_eq!(tags.len(), 1, "{tags:?}");
    // No ARM call touched a slot: B1 has none, whatever gantry.toml says.
    assert!(!p.azure.requests().iter().any(|r| r.contains("/slots/") || r.contains("scm:staging")));

    // A Kudu deployment that fails is rolled back the same way.
    p.release("2.0.1", "ok");
    p.azure.fail_next_deploy(
        APP,
        "production",
        "Oryx build failed: requirements.txt: no matching distribution for fastapi==9.9",
    );
    let err = stderr(&p.deploy("2.0.1").code(3));
    assert!(err.contains("the deployment to App Service app `app-impactpulse-api`"), "{err}");
    assert!(err.contains("Oryx build failed"), "{err}");
    assert_eq!(p.production().as_deref(), Some("1.0.0"));

    // And a good one goes live.
    p.deploy("2.0.1").success();
    assert_eq!(p.production().as_deref(), Some("2.0.1"));
    let status = p.gantry(&["status"]).assert().success();
    assert!(output(&status).contains("2.0.1"), "{}", output(&status));
}

#[test]
fn a_failed_first_direct_deploy_cannot_be_rolled_back_and_says_so() {
    let p = Project::new("B1", "Basic", false, "{ type = \"all-at-once\" }");
    p.release("1.0.0", "broken");
    let err = stderr(&p.deploy("1.0.0").code(4));
    assert!(err.contains("no release gantry deployed ran before it"), "{err}");
}

#[test]
fn slot_swap_gates_the_slot_then_swaps_and_swaps_back_when_the_bake_fails() {
    let p = Project::new("S1", "Standard", true, "{ type = \"blue-green\", bake = \"1s\" }");
    p.release("1.0.0", "ok");
    p.deploy("1.0.0").success();
    assert_eq!(p.production().as_deref(), Some("1.0.0"));
    assert_eq!(p.azure.deploys(APP, "production"), 0, "only the slot is ever deployed to");
    assert!(p.azure.settings(APP, "production")["GANTRY_RELEASE"].starts_with("1.0.0 sha256:"));
    assert!(p.azure.tags(APP).is_empty(), "{:?}", p.azure.tags(APP));

    p.release("2.0.0", "ok");
    p.deploy("2.0.0").success();
    assert_eq!(p.production().as_deref(), Some("2.0.0"));
    assert_eq!(p.azure.version(APP, "staging").as_deref(), Some("1.0.0"), "the old version stays warm in the slot");

    // Healthy in the slot, broken in production: the bake after the swap fails, and the
    // swap is undone.
    p.release("3.0.0", "broken-in-production");
    let failed = p.deploy("3.0.0").code(3);
    let err = stderr(&failed);
    assert!(err.contains("swapping slot `staging` back"), "{err}");
    assert_eq!(p.production().as_deref(), Some("2.0.0"));
    assert_eq!(p.azure.version(APP, "staging").as_deref(), Some("3.0.0"));
    assert!(p.azure.settings(APP, "production")["GANTRY_RELEASE"].starts_with("2.0.0 sha256:"));
    assert!(p.azure.tags(APP).is_empty(), "{:?}", p.azure.tags(APP));
    let swaps = p.azure.requests().iter().filter(|r| r.ends_with("/slotsswap")).count();
    assert_eq!(swaps, 4, "1.0.0, 2.0.0, 3.0.0 and 3.0.0's swap back");
}

#[test]
fn a_release_unhealthy_in_the_slot_or_failing_to_deploy_never_reaches_production() {
    let p = Project::new("P1v3", "PremiumV3", true, "{ type = \"blue-green\" }");
    p.release("1.0.0", "ok");
    p.deploy("1.0.0").success();
    let swaps = |p: &Project| p.azure.requests().iter().filter(|r| r.ends_with("/slotsswap")).count();
    assert_eq!(swaps(&p), 1);

    p.release("2.0.0", "broken");
    let err = stderr(&p.deploy("2.0.0").code(3));
    assert!(err.contains("gate-new") || err.contains("health check failed"), "{err}");
    assert_eq!(swaps(&p), 1, "never swapped");
    assert_eq!(p.production().as_deref(), Some("1.0.0"));

    p.release("2.0.1", "ok");
    p.azure.fail_next_deploy(APP, "staging", "Container didn't respond to HTTP pings on port: 8000");
    let err = stderr(&p.deploy("2.0.1").code(3));
    assert!(err.contains("slot `staging` of App Service app"), "{err}");
    assert!(err.contains("Container didn't respond"), "{err}");
    assert_eq!(swaps(&p), 1, "never swapped");
    assert_eq!(p.production().as_deref(), Some("1.0.0"));
    assert!(p.azure.tags(APP).is_empty(), "{:?}", p.azure.tags(APP));
}

#[test]
fn plan_says_whether_the_plan_has_slots() {
    for (sku, tier, slots, name) in [
        ("B1", "Basic", false, "appservice_plan_basic_direct"),
        ("S1", "Standard", true, "appservice_plan_standard_slot"),
    ] {
        let p = Project::new(sku, tier, slots, "{ type = \"blue-green\", bake = \"5m\" }");
        p.release("1.0.0", "ok");
        let out = p.gantry(&["plan"]).assert().success();
        insta::assert_snapshot!(name, normalize(&output(&out), p.path()));
    }
}

#[test]
fn a_missing_slot_and_a_missing_app_are_named_with_hints() {
    let p = Project::new("S1", "Standard", false, "{ type = \"blue-green\" }");
    p.release("1.0.0", "ok");
    let err = stderr(&p.gantry(&["plan"]).assert().code(1));
    assert!(
        err.contains("slot `staging` of App Service app `app-impactpulse-api` in resource group `rg-catalyzeup`"),
        "{err}"
    );
    assert!(
        err.contains(
            "az webapp deployment slot create --name app-impactpulse-api --resource-group rg-catalyzeup --slot staging"
        ),
        "{err}"
    );

    let other = Project::new("B1", "Basic", false, "{ type = \"all-at-once\" }");
    other.azure.add_app(RG, "asp-other", "B1", "Basic", "some-other-app", &[]);
    other.azure.model.lock().unwrap().sites.remove(APP);
    other.release("1.0.0", "ok");
    let err = stderr(&other.deploy("1.0.0").code(1));
    assert!(err.contains("ResourceNotFound"), "{err}");
    assert!(err.contains("check `subscription`, `resource_group` and `app` in [targets.api.appservice]"), "{err}");
}

#[test]
fn auth_failures_name_the_cause_and_no_secret_or_token_is_printed() {
    let p = Project::new("S1", "Standard", true, "{ type = \"blue-green\" }");
    p.release("1.0.0", "ok");
    // A wrong secret.
    let out = p.gantry(&["-vv", "plan"]).env("AZURE_CLIENT_SECRET", "wrong-secret-value").assert().code(1);
    let all = output(&out);
    assert!(all.contains("AADSTS7000215"), "{all}");
    assert!(all.contains("is not a valid (or is an expired) secret of app registration"), "{all}");
    assert!(!all.contains("wrong-secret-value"), "{all}");
    // No credentials at all.
    let out = p.gantry(&["plan"]).env_remove("AZURE_CLIENT_SECRET").env_remove("AZURE_CLIENT_ID").assert().code(1);
    assert!(stderr(&out).contains("AZURE_TENANT_ID and AZURE_CLIENT_ID are not set"), "{}", stderr(&out));
    // A role that may not swap.
    p.azure.deny("POST", "/slotsswap");
    let out = p.gantry(&["-vv", "deploy", "--version", "1.0.0"]).assert().code(3);
    let all = output(&out);
    assert!(all.contains("AuthorizationFailed"), "{all}");
    assert!(all.contains("slot `staging` of App Service app `app-impactpulse-api`"), "{all}");
    assert!(p.production().is_none(), "nothing reached production");
    // Every token issued and the secret stay out of every output, even at -vv.
    let issued = p.azure.issued();
    assert!(!issued.is_empty());
    for secret in issued.iter().map(String::as_str).chain([CLIENT_SECRET]) {
        assert!(!all.contains(secret), "{secret} printed:\n{all}");
    }
    let ledger = std::fs::read_dir(p.path().join(".gantry/state/prd")).unwrap();
    for entry in ledger.flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for secret in issued.iter().map(String::as_str).chain([CLIENT_SECRET]) {
            assert!(!text.contains(secret), "{secret} in {}", entry.path().display());
        }
    }
}

#[test]
fn federated_github_oidc_token_is_exchanged_as_a_client_assertion() {
    let p = Project::new("B1", "Basic", false, "{ type = \"all-at-once\" }");
    let service = crate::oidc::TokenService::start("request-token-xyz", "gh-oidc-jwt");
    p.azure.model.lock().unwrap().federated_prefix = Some("gh-oidc-jwt".into());
    p.release("1.0.0", "ok");
    let out = p
        .gantry(&["-vv", "deploy", "--version", "1.0.0"])
        .env_remove("AZURE_CLIENT_SECRET")
        .env("ACTIONS_ID_TOKEN_REQUEST_URL", &service.url)
        .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "request-token-xyz")
        .assert()
        .success();
    assert_eq!(p.production().as_deref(), Some("1.0.0"));
    let seen = service.seen();
    assert!(!seen.is_empty() && seen.iter().all(|s| s.authorized), "{seen:?}");
    assert!(seen.iter().all(|s| s.audience.as_deref() == Some("api%3A%2F%2FAzureADTokenExchange")), "{seen:?}");
    let requests = p.azure.token_requests();
    assert_eq!(requests.len(), 1, "one token, cached for the whole deploy: {requests:?}");
    assert_eq!(requests[0]["client_assertion_type"], "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
    assert!(!requests[0].contains_key("client_secret"));
    let all = output(&out);
    for secret in ["request-token-xyz", "gh-oidc-jwt"]
        .into_iter()
        .chain(p.azure.issued().iter().map(|s| s.as_str().split('.').nth(1).unwrap()))
    {
        assert!(!all.contains(secret), "{secret} printed:\n{all}");
    }

    // An app registration without a matching federated credential.
    p.azure.model.lock().unwrap().federated_prefix = Some("another-subject".into());
    let err = stderr(
        &p.gantry(&["plan"])
            .env_remove("AZURE_CLIENT_SECRET")
            .env("ACTIONS_ID_TOKEN_REQUEST_URL", &service.url)
            .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "request-token-xyz")
            .assert()
            .code(1),
    );
    assert!(err.contains("AADSTS70021"), "{err}");
    assert!(err.contains("add a federated credential to app registration"), "{err}");
}

#[test]
fn curl_reads_the_emulator_with_the_documented_requests() {
    let azure = Azure::start();
    azure.add_app(RG, "asp-catalyzeup", "B1", "Basic", APP, &[]);
    let curl = |args: &[&str]| {
        let out = std::process::Command::new("curl").args(["-sS", "--max-time", "10"]).args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    // The client credentials request as the identity platform documents it.
    let token = curl(&[
        "-X",
        "POST",
        &format!("{}/{}/oauth2/v2.0/token", azure.url(), super::TENANT),
        "-H",
        "Content-Type: application/x-www-form-urlencoded",
        "--data-urlencode",
        &format!("client_id={}", super::CLIENT_ID),
        "--data-urlencode",
        "scope=https://management.azure.com/.default",
        "--data-urlencode",
        &format!("client_secret={CLIENT_SECRET}"),
        "--data-urlencode",
        "grant_type=client_credentials",
    ]);
    assert_eq!(token["token_type"], "Bearer");
    let access = token["access_token"].as_str().unwrap();
    // "Web Apps - Get", then "App Service Plans - Get" through the serverFarmId it names.
    let site = curl(&[
        "-H",
        &format!("Authorization: Bearer {access}"),
        &format!(
            "{}/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/Microsoft.Web/sites/{APP}?api-version=2024-04-01",
            azure.url()
        ),
    ]);
    assert_eq!(site["name"], APP);
    let farm = site["properties"]["serverFarmId"].as_str().unwrap();
    let plan = curl(&[
        "-H",
        &format!("Authorization: Bearer {access}"),
        &format!("{}{farm}?api-version=2024-04-01", azure.url()),
    ]);
    assert_eq!((plan["sku"]["name"].as_str(), plan["sku"]["tier"].as_str()), (Some("B1"), Some("Basic")));
    // Without a token: ARM's error body.
    let denied = curl(&[&format!(
        "{}/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/Microsoft.Web/sites/{APP}?api-version=2024-04-01",
        azure.url()
    )]);
    assert_eq!(denied["error"]["code"], "InvalidAuthenticationToken");
}

#[test]
fn throttled_arm_calls_are_retried_and_other_strategies_are_refused() {
    let p = Project::new("S1", "Standard", true, "{ type = \"blue-green\" }");
    p.release("1.0.0", "ok");
    p.azure.model.lock().unwrap().throttle = 2;
    p.gantry(&["plan"]).assert().success();
    assert_eq!(p.azure.model.lock().unwrap().throttle, 0, "both 429s were seen and retried");

    let canary = Project::new("S1", "Standard", true, "{ type = \"canary\", steps = [10, 100] }");
    let err = stderr(&canary.gantry(&["plan"]).assert().code(2));
    assert!(err.contains("an App Service app cannot take a `canary` strategy"), "{err}");
}

/// The token is asked for once and reused until shortly before it expires (3599 s here,
/// so renewed 5 minutes early), then asked for again.
#[tokio::test]
async fn tokens_are_cached_until_near_expiry() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, SystemTime};

    use gantry::azure::auth::{ARM_SCOPE, Credential, Identity, Tokens};
    use gantry::github::oidc::Secret;

    let azure = Azure::start();
    let identity = Identity {
        authority: azure.url(),
        tenant: super::TENANT.into(),
        client_id: super::CLIENT_ID.into(),
        credential: Credential::Secret(Secret::new(CLIENT_SECRET)),
    };
    let offset = Arc::new(AtomicU64::new(0));
    let now = offset.clone();
    let clock = Arc::new(move || SystemTime::now() + Duration::from_secs(now.load(Ordering::SeqCst)));
    let tokens = Tokens::with_clock(identity, ARM_SCOPE, reqwest::Client::new(), clock);
    let first = tokens.token().await.unwrap();
    assert_eq!(tokens.token().await.unwrap().expose(), first.expose());
    offset.store(3599 - 301, Ordering::SeqCst);
    assert_eq!(tokens.token().await.unwrap().expose(), first.expose(), "still more than 5 minutes left");
    offset.store(3599 - 299, Ordering::SeqCst);
    let second = tokens.token().await.unwrap();
    assert_ne!(second.expose(), first.expose());
    assert_eq!(azure.issued().len(), 2);
    assert!(!format!("{second:?}").contains("arm-access-token"));
}
