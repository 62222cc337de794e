//! The `staticwebapp` target through the real binary: releases published to the release
//! bucket (moto), deployed to a Static Web App in the Azure emulator by ARM zip deploy from a
//! presigned URL the emulator really fetches, health-gated on the site's own files; a broken
//! release and a failed deployment are replaced by the previous release, read back from the
//! bucket; plan snapshots; the emulator's wire format read by curl.

use std::path::Path;
use std::process::Command;

use super::{Azure, SUBSCRIPTION};
use crate::services::{aws_env, services, unique};
use crate::support::{gantry, output, stderr, write_tree};

const SITE: &str = "swa-impactpulse";
const RG: &str = "rg-catalyzeup";

struct Project {
    dir: tempfile::TempDir,
    azure: Azure,
    bucket: String,
}

fn aws(args: &[&str]) -> String {
    let s = services();
    let out = Command::new(&s.aws_cli).args(args).envs(aws_env(s)).output().unwrap();
    assert!(out.status.success(), "aws {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Project {
    fn new(strategy: &str) -> Self {
        let azure = Azure::start();
        azure.add_static_site(RG, SITE, "Free");
        let bucket = unique("swa");
        aws(&["s3api", "create-bucket", "--bucket", &bucket]);
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "[project]\nname = \"pulse\"\n\n[artifacts.web]\nroot = \"web\"\n\n\
             [environments.prd]\nregion = \"us-east-1\"\nrelease_bucket = \"{bucket}\"\ntargets = [\"web\"]\n\n\
             [targets.web]\nkind = \"staticwebapp\"\nstrategy = {strategy}\n\
             staticwebapp = {{ subscription = \"{SUBSCRIPTION}\", resource_group = \"{RG}\", app = \"{SITE}\", artifact = \"web\" }}\n\n\
             [[targets.web.health]]\nurl = \"{{url}}/health.txt\"\nbody_contains = \"healthy\"\ninterval = \"300ms\"\ntimeout = \"300ms\"\n\
             healthy_threshold = 2\nunhealthy_threshold = 2\n"
        );
        write_tree(dir.path(), &[("gantry.toml", &config)]);
        Self { dir, azure, bucket }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn gantry(&self, args: &[&str]) -> assert_cmd::Command {
        let mut cmd = self.azure.gantry(self.path(), args);
        cmd.envs(aws_env(services()));
        cmd
    }

    /// Packages `version` of the built site, whose `health.txt` says `health`.
    fn package(&self, version: &str, health: &str) {
        let _ = std::fs::remove_dir_all(self.path().join("web"));
        write_tree(
            self.path(),
            &[
                ("web/index.html", &format!("<!doctype html><title>Impact Pulse {version}</title>")),
                ("web/health.txt", health),
                ("web/version.txt", version),
            ],
        );
        gantry(self.path()).args(["package", "-q", "--version", version]).assert().success();
    }

    /// Packages and publishes `version`.
    fn release(&self, version: &str, health: &str) {
        self.package(version, health);
        self.gantry(&["publish", "-q"]).assert().success();
    }

    fn deploy(&self, version: &str) -> assert_cmd::assert::Assert {
        self.gantry(&["deploy", "--version", version]).assert()
    }

    fn live(&self) -> Option<String> {
        self.azure.site_file(SITE, "version.txt")
    }

    fn zipdeploys(&self) -> usize {
        self.azure.requests().iter().filter(|r| r.ends_with("/zipdeploy")).count()
    }
}

#[test]
fn the_published_zip_goes_live_and_a_broken_release_is_replaced_by_the_previous_one_from_the_bucket() {
    let p = Project::new("{ type = \"all-at-once\" }");
    p.release("1.0.0", "healthy");
    p.deploy("1.0.0").success();
    assert_eq!(p.live().as_deref(), Some("1.0.0"));
    let tags = p.azure.site_tags(SITE);
    assert!(tags["gantry-release"].starts_with("1.0.0 sha256:"), "{tags:?}");
    assert_eq!(tags.len(), 1, "{tags:?}");
    // Azure was handed a presigned URL of the published artifact, valid for an hour.
    let urls = p.azure.zip_urls(SITE);
    assert_eq!(urls.len(), 1);
    assert!(urls[0].contains(&format!("/{}/releases/pulse/1.0.0/", p.bucket)), "{}", urls[0]);
    assert!(urls[0].contains("X-Amz-Signature=") && urls[0].contains("X-Amz-Expires=3600"), "{}", urls[0]);

    // The rollback reads 1.0.0 from the bucket, not from this machine's release store.
    for entry in std::fs::read_dir(p.path().join(".gantry/releases")).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with("1.0.0") {
            std::fs::remove_dir_all(entry.path()).unwrap();
        }
    }
    p.release("2.0.0", "failing");
    let err = stderr(&p.deploy("2.0.0").code(3));
    assert!(err.contains("health check failed"), "{err}");
    assert!(err.contains("redeploying 1.0.0"), "{err}");
    assert_eq!(p.live().as_deref(), Some("1.0.0"));
    let urls = p.azure.zip_urls(SITE);
    assert_eq!(urls.len(), 3, "1.0.0, 2.0.0, then 1.0.0 again");
    assert!(urls[2].contains("/releases/pulse/1.0.0/"), "{}", urls[2]);
    let tags = p.azure.site_tags(SITE);
    assert!(tags["gantry-release"].starts_with("1.0.0 sha256:"), "{tags:?}");
    assert_eq!(tags.len(), 1, "{tags:?}");

    // A deployment Azure reports Failed is rolled back the same way.
    p.release("2.0.1", "healthy");
    p.azure.fail_next_site_deploy(SITE);
    let err = stderr(&p.deploy("2.0.1").code(3));
    assert!(err.contains("ended Failed"), "{err}");
    assert!(err.contains("Static Web App `swa-impactpulse`"), "{err}");
    assert_eq!(p.live().as_deref(), Some("1.0.0"));

    // And a good one goes live.
    p.deploy("2.0.1").success();
    assert_eq!(p.live().as_deref(), Some("2.0.1"));
    let status = p.gantry(&["status"]).assert().success();
    assert!(output(&status).contains("2.0.1"), "{}", output(&status));
}

#[test]
fn a_failed_first_deploy_cannot_be_rolled_back_and_says_so() {
    let p = Project::new("{ type = \"all-at-once\" }");
    p.release("1.0.0", "failing");
    let err = stderr(&p.deploy("1.0.0").code(4));
    assert!(err.contains("no release gantry deployed ran before it"), "{err}");
}

#[test]
fn an_unpublished_or_altered_release_is_refused_before_anything_changes() {
    let p = Project::new("{ type = \"all-at-once\" }");
    p.package("1.0.0", "healthy");
    let err = stderr(&p.deploy("1.0.0").code(1));
    assert!(err.contains("release 1.0.0 is not published") && err.contains("/releases/pulse/1.0.0/"), "{err}");
    assert!(err.contains("hint: publish it first: `gantry publish --env prd --version 1.0.0`"), "{err}");
    assert_eq!(p.zipdeploys(), 0);
    assert!(p.azure.site_tags(SITE).is_empty());

    // Published, then packaged again with other content under the same version (and the
    // stored copy of the published one gone, so the deploy takes the new package).
    p.gantry(&["publish", "-q"]).assert().success();
    std::fs::remove_dir_all(p.path().join(".gantry/releases")).unwrap();
    p.package("1.0.0", "healthy, but different");
    let err = stderr(&p.deploy("1.0.0").code(1));
    assert!(err.contains("does not hold release 1.0.0"), "{err}");
    assert_eq!(p.zipdeploys(), 0);
    assert!(p.azure.site_tags(SITE).is_empty());
}

#[test]
fn plan_says_how_the_site_is_deployed_and_other_strategies_are_refused() {
    let p = Project::new("{ type = \"all-at-once\" }");
    p.release("1.0.0", "healthy");
    let out = p.gantry(&["plan"]).assert().success();
    let text = output(&out).replace(&p.bucket, "[BUCKET]");
    let text = super::appservice::normalize(&text, p.path());
    insta::assert_snapshot!("staticwebapp_plan_direct", text);
    assert_eq!(p.zipdeploys(), 0, "plan changes nothing");

    let canary = Project::new("{ type = \"canary\", steps = [10, 100] }");
    let err = stderr(&canary.gantry(&["plan"]).assert().code(2));
    assert!(err.contains("a Static Web App cannot take a `canary` strategy"), "{err}");
}

#[test]
fn curl_reads_the_static_site_calls_as_documented() {
    let azure = Azure::start();
    azure.add_static_site(RG, SITE, "Standard");
    let curl = |args: &[&str]| {
        let out = Command::new("curl").args(["-sS", "--max-time", "10", "-i"]).args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let body = |response: &str| -> serde_json::Value {
        serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap_or_default()).unwrap()
    };
    let token = body(&curl(&[
        "-X",
        "POST",
        &format!("{}/{}/oauth2/v2.0/token", azure.url(), super::TENANT),
        "--data-urlencode",
        &format!("client_id={}", super::CLIENT_ID),
        "--data-urlencode",
        "scope=https://management.azure.com/.default",
        "--data-urlencode",
        &format!("client_secret={}", super::CLIENT_SECRET),
        "--data-urlencode",
        "grant_type=client_credentials",
    ]));
    let auth = format!("Authorization: Bearer {}", token["access_token"].as_str().unwrap());
    let site_url = format!(
        "{}/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/Microsoft.Web/staticSites/{SITE}",
        azure.url()
    );
    // "Get Static Site".
    let site = body(&curl(&["-H", &auth, &format!("{site_url}?api-version=2024-04-01")]));
    assert_eq!(
        (site["type"].as_str(), site["sku"]["name"].as_str()),
        (Some("Microsoft.Web/staticSites"), Some("Standard"))
    );
    let host = site["properties"]["defaultHostname"].as_str().unwrap().to_owned();

    // A zip of the site, served by moto, deployed by URL.
    let s = services();
    let bucket = unique("swa-wire");
    aws(&["s3api", "create-bucket", "--bucket", &bucket]);
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("site.zip");
    {
        let mut w = zip::ZipWriter::new(std::fs::File::create(&zip).unwrap());
        w.start_file("index.html", zip::write::SimpleFileOptions::default()).unwrap();
        std::io::Write::write_all(&mut w, b"<h1>hello</h1>").unwrap();
        w.finish().unwrap();
    }
    aws(&["s3", "cp", zip.to_str().unwrap(), &format!("s3://{bucket}/site.zip")]);
    let _ = s;
    let url = aws(&["s3", "presign", &format!("s3://{bucket}/site.zip"), "--expires-in", "600"]).trim().to_owned();
    let accepted = curl(&[
        "-X",
        "POST",
        "-H",
        &auth,
        "-H",
        "Content-Type: application/json",
        "--data",
        &serde_json::json!({ "properties": { "appZipUrl": url, "deploymentTitle": "wire", "provider": "curl" } })
            .to_string(),
        &format!("{site_url}/zipdeploy?api-version=2024-04-01"),
    ]);
    assert!(accepted.starts_with("HTTP/1.1 202"), "{accepted}");
    let location = accepted
        .lines()
        .find_map(|l| l.strip_prefix("location: ").or_else(|| l.strip_prefix("Location: ")))
        .unwrap()
        .trim()
        .to_owned();
    // The operation answers 202 while it runs, then 200.
    let mut polls = 0;
    while curl(&["-H", &auth, &location]).starts_with("HTTP/1.1 202") {
        polls += 1;
        assert!(polls < 10, "the operation never ended");
    }
    let build = body(&curl(&["-H", &auth, &format!("{site_url}/builds/default?api-version=2024-04-01")]));
    assert_eq!(build["properties"]["status"], "Ready");
    let page = curl(&[&format!("http://{host}/")]);
    assert!(page.starts_with("HTTP/1.1 200") && page.ends_with("<h1>hello</h1>"), "{page}");

    // No appZipUrl: ARM's error body.
    let bad = curl(&[
        "-X",
        "POST",
        "-H",
        &auth,
        "--data",
        "{\"properties\":{}}",
        &format!("{site_url}/zipdeploy?api-version=2024-04-01"),
    ]);
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    assert_eq!(body(&bad)["error"]["code"], "BadRequest");
}

/// A stand-in for the Azure Static Web Apps CLI: `swa deploy DIR --env production` with the
/// token in `SWA_CLI_DEPLOYMENT_TOKEN` copies DIR to the site's folder; a wrong token, or
/// the file `fail` beside it (once), fails the way the CLI does (a message, exit 1), echoing the
/// token it was given so that the test can see gantry hide it. Every call is logged.
const FAKE_SWA: &str = r#"#!/usr/bin/env python3
import json, os, shutil, sys
here = os.path.dirname(os.path.abspath(__file__))
token = os.environ.get("SWA_CLI_DEPLOYMENT_TOKEN", "")
with open(os.path.join(here, "calls.jsonl"), "a") as log:
    log.write(json.dumps({"argv": sys.argv[1:], "token": token == open(os.path.join(here, "token")).read()}) + "\n")
if sys.argv[1:2] != ["deploy"] or sys.argv[3:] != ["--env", "production"]:
    print("error: unknown arguments", sys.argv[1:], file=sys.stderr)
    sys.exit(2)
fail = os.path.join(here, "fail")
if token != open(os.path.join(here, "token")).read() or os.path.exists(fail):
    if os.path.exists(fail):
        os.remove(fail)
    print("Deploying project to Azure Static Web Apps...")
    print(f"✖ The deployment token {token} is invalid or has expired.", file=sys.stderr)
    sys.exit(1)
site = os.path.join(here, "site")
shutil.rmtree(site, ignore_errors=True)
shutil.copytree(sys.argv[2], site)
print("✔ Project deployed to https://example.azurestaticapps.net 🚀")
"#;

const TOKEN: &str = "swa-deployment-token-0123456789abcdef-never-printed";

struct TokenProject {
    dir: tempfile::TempDir,
    bin: tempfile::TempDir,
    _site: crate::stand_in::Server,
}

impl TokenProject {
    fn new(url: bool) -> Self {
        let bin = tempfile::tempdir().unwrap();
        let swa = bin.path().join("swa");
        std::fs::write(&swa, FAKE_SWA).unwrap();
        std::fs::set_permissions(&swa, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        std::fs::write(bin.path().join("token"), TOKEN).unwrap();
        let folder = bin.path().join("site");
        let site = crate::stand_in::serve(std::sync::Arc::new(move |req| {
            let file = match req.route().trim_start_matches('/') {
                "" => "index.html".to_owned(),
                path => path.to_owned(),
            };
            match std::fs::read_to_string(folder.join(file)) {
                Ok(text) => crate::stand_in::Response::text(200, text),
                Err(_) => crate::stand_in::Response::text(404, "The page you're looking for can't be found."),
            }
        }));
        let dir = tempfile::tempdir().unwrap();
        let url = if url { format!(", url = \"{}\"", site.url()) } else { String::new() };
        let config = format!(
            "[project]\nname = \"pulse\"\n\n[artifacts.web]\nroot = \"web\"\n\n\
             [environments.prd]\ntargets = [\"web\"]\n\n\
             [targets.web]\nkind = \"staticwebapp\"\n\
             staticwebapp = {{ app = \"{SITE}\", artifact = \"web\", token_env = \"SWA_TOKEN\"{url} }}\n\n\
             [[targets.web.health]]\nurl = \"{{url}}/health.txt\"\nbody_contains = \"healthy\"\ninterval = \"300ms\"\ntimeout = \"300ms\"\n\
             healthy_threshold = 2\nunhealthy_threshold = 2\n"
        );
        write_tree(dir.path(), &[("gantry.toml", &config)]);
        Self { dir, bin, _site: site }
    }

    fn gantry(&self, args: &[&str]) -> assert_cmd::Command {
        let mut cmd = gantry(self.dir.path());
        let path = format!("{}:{}", self.bin.path().display(), std::env::var("PATH").unwrap_or_default());
        cmd.args(["--env", "prd"]).args(args).env("PATH", path).env("SWA_TOKEN", TOKEN);
        cmd
    }

    fn release(&self, version: &str, health: &str) {
        let _ = std::fs::remove_dir_all(self.dir.path().join("web"));
        write_tree(
            self.dir.path(),
            &[("web/index.html", "<!doctype html>"), ("web/health.txt", health), ("web/version.txt", version)],
        );
        gantry(self.dir.path()).args(["package", "-q", "--version", version]).assert().success();
    }

    fn live(&self) -> Option<String> {
        std::fs::read_to_string(self.bin.path().join("site/version.txt")).ok()
    }

    fn calls(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.bin.path().join("calls.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

#[test]
fn with_a_deployment_token_the_swa_cli_deploys_and_a_failure_puts_the_previous_release_back() {
    let p = TokenProject::new(true);
    p.release("1.0.0", "healthy");
    p.gantry(&["deploy", "--version", "1.0.0"]).assert().success();
    assert_eq!(p.live().as_deref(), Some("1.0.0"));
    let calls = p.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["token"], true, "the token came in SWA_CLI_DEPLOYMENT_TOKEN");
    let argv: Vec<&str> = calls[0]["argv"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!((argv[0], &argv[2..]), ("deploy", &["--env", "production"][..]), "{argv:?}");
    assert!(!argv.iter().any(|a| a.contains(TOKEN)), "never on the command line");

    // Failing health: 1.0.0 goes back, from the release store, as the ledger names it.
    p.release("2.0.0", "failing");
    let out = p.gantry(&["deploy", "--version", "2.0.0"]).assert().code(3);
    let err = stderr(&out);
    assert!(err.contains("health check failed") && err.contains("redeploying 1.0.0"), "{err}");
    assert_eq!(p.live().as_deref(), Some("1.0.0"));
    assert_eq!(p.calls().len(), 3);

    // The CLI fails once (and prints the token): the error shows its output with the token
    // hidden, and 1.0.0 is deployed again.
    p.release("2.0.1", "healthy");
    std::fs::write(p.bin.path().join("fail"), "").unwrap();
    let out = p.gantry(&["-vv", "deploy", "--version", "2.0.1"]).assert().code(3);
    let text = output(&out);
    assert!(!text.contains(TOKEN), "{text}");
    assert!(text.contains("`swa deploy` of 2.0.1 to Static Web App `swa-impactpulse` failed"), "{text}");
    assert!(text.contains("The deployment token *** is invalid"), "{text}");
    assert!(text.contains("redeploying 1.0.0"), "{text}");
    assert_eq!(p.live().as_deref(), Some("1.0.0"));

    p.gantry(&["deploy", "--version", "2.0.1"]).assert().success();
    assert_eq!(p.live().as_deref(), Some("2.0.1"));
    let status = p.gantry(&["status"]).assert().success();
    assert!(output(&status).contains("2.0.1"), "{}", output(&status));
    let plan = output(&p.gantry(&["plan"]).assert().success());
    assert!(plan.contains("`swa deploy`") && plan.contains("rollback target: 2.0.1"), "{plan}");
}

#[test]
fn with_a_deployment_token_a_missing_url_token_or_cli_is_named_before_anything_runs() {
    let p = TokenProject::new(false);
    let err = stderr(&p.gantry(&["plan"]).assert().code(2));
    assert!(err.contains("targets.web.staticwebapp.url"), "{err}");
    assert!(err.contains("needs `url`"), "{err}");

    let p = TokenProject::new(true);
    p.release("1.0.0", "healthy");
    let err = stderr(&p.gantry(&["deploy", "--version", "1.0.0"]).env_remove("SWA_TOKEN").assert().code(1));
    assert!(err.contains("the deployment token variable SWA_TOKEN is not set"), "{err}");
    assert!(err.contains("az staticwebapp secrets list"), "{err}");
    assert!(p.calls().is_empty());

    let err =
        stderr(&p.gantry(&["deploy", "--version", "1.0.0"]).env("GANTRY_SWA_CLI", "/nonexistent/swa").assert().code(1));
    assert!(
        err.contains("cannot find `/nonexistent/swa`") && err.contains("npm install -g @azure/static-web-apps-cli"),
        "{err}"
    );
    assert!(p.calls().is_empty(), "nothing ran");
}
