//! The `staticwebapp` target through the real binary: releases published to the release
//! bucket (moto), deployed to a Static Web App in the Azure emulator by ARM zip deploy from a
//! presigned URL the emulator really fetches, health-gated on the site's own files; a broken
//! release and a failed deployment are replaced by the previous release, read back from the
//! bucket; plan snapshots; the emulator's wire format read by curl.

use std::path::Path;
use std::process::Command;

use super::{Azure, SUBSCRIPTION};
use crate::services::{aws_env, services, unique};
use crate::support::{gantry, write_tree};

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
        let mut cmd = gantry(self.path());
        cmd.args(["--env", "prd"]).args(args).envs(self.azure.env()).envs(aws_env(services()));
        for var in ["ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN", "AZURE_FEDERATED_TOKEN_FILE"] {
            cmd.env_remove(var);
        }
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

fn stderr(out: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&out.get_output().stderr).into_owned()
}

fn output(out: &assert_cmd::assert::Assert) -> String {
    let o = out.get_output();
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
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
