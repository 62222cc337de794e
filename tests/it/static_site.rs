//! The `static` target through the real binary, against moto's S3 and CloudFront, with
//! health gates on a stand-in for CloudFront's edge: moto keeps distributions but serves
//! no content, so the stand-in serves `/site/PATH` from the bucket under the distribution's
//! current origin path (read from moto on every request, as an edge follows its
//! configuration) and `/preview/PREFIX/PATH` straight from the bucket.
//!
//! A release whose `health.json` holds `BREAK-LIVE` answers 503 once it is what the
//! distribution serves (a site that only breaks behind the CDN), so failures after the
//! switch are real; one whose health says `broken` is never healthy anywhere.

use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::proxy::{Faults, Proxy};
use crate::services::{aws_env, services, unique};
use crate::stand_in::{self, Response, Server, aws, get, moto_get};
use crate::support::{gantry, stderr, write_tree};

struct Site {
    dir: tempfile::TempDir,
    bucket: String,
    distribution: String,
    cdn: Server,
    /// gantry's S3 traffic goes through it: its request log shows the order of writes.
    s3: Proxy,
}

impl Site {
    /// A project deploying the `web` artifact to a new bucket and distribution.
    fn new(strategy: &str, static_extra: &str) -> Self {
        let s = services();
        let bucket = unique("site");
        aws(&["s3api", "create-bucket", "--bucket", &bucket]);
        let distribution = aws(&[
            "cloudfront",
            "create-distribution",
            "--origin-domain-name",
            &format!("{bucket}.s3.amazonaws.com"),
            "--default-root-object",
            "index.html",
        ])["Distribution"]["Id"]
            .as_str()
            .unwrap()
            .to_owned();
        let cdn = edge(s.moto.clone(), bucket.clone(), distribution.clone());
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "[project]\nname = \"site\"\n\n[artifacts.web]\nroot = \"web\"\n\n\
             [environments.dev]\nregion = \"us-east-1\"\ntargets = [\"www\"]\n\n\
             [targets.www]\nkind = \"static\"\nstrategy = {strategy}\n\
             static = {{ bucket = \"{bucket}\", artifact = \"web\", distribution = \"{distribution}\", \
             url = \"{cdn}/site\", preview_url = \"{cdn}/preview/{{prefix}}\"{static_extra} }}\n\n\
             [[targets.www.health]]\nurl = \"{{url}}/health.json\"\ninterval = \"300ms\"\ntimeout = \"300ms\"\n\
             healthy_threshold = 2\nunhealthy_threshold = 2\njson = {{ pointer = \"/status\", equals = \"ok\" }}\n",
            cdn = cdn.url()
        );
        write_tree(dir.path(), &[("gantry.toml", &config)]);
        let s3 = Proxy::start(s.moto.trim_start_matches("http://"));
        Self { dir, bucket, distribution, cdn, s3 }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn gantry(&self, args: &[&str]) -> assert_cmd::Command {
        let mut cmd = gantry(self.path());
        cmd.args(["--env", "dev"])
            .args(args)
            .envs(aws_env(services()))
            .env("AWS_ENDPOINT_URL_S3", self.s3.url())
            .env("GANTRY_AWS_MAX_ATTEMPTS", "2");
        cmd
    }

    /// Packages `version` of the site; `health` is its health.json status. Returns the
    /// release's folder id (`VERSION-DIGEST12`) and its script's hashed path.
    fn release(&self, version: &str, health: &str) -> (String, String) {
        let script = format!("console.log('{version}');\n");
        let hash = hex(&Sha256::digest(script.as_bytes()))[..8].to_owned();
        let asset = format!("assets/app.{hash}.js");
        let index = format!("<!doctype html><script src=\"/{asset}\"></script><p>{version}</p>\n");
        let _ = std::fs::remove_dir_all(self.path().join("web"));
        write_tree(
            self.path(),
            &[
                ("web/index.html", &index),
                (&format!("web/{asset}"), &script),
                ("web/favicon.ico", "the same icon in every release"),
                ("web/health.json", &format!("{{\"status\":\"{health}\",\"version\":\"{version}\"}}")),
            ],
        );
        gantry(self.path()).args(["package", "-q", "--version", version]).assert().success();
        let digest = hex(&Sha256::digest(std::fs::read(self.path().join("dist/release.json")).unwrap()));
        (format!("{version}-{}", &digest[..12]), asset)
    }

    fn deploy(&self, version: &str) -> assert_cmd::assert::Assert {
        self.gantry(&["deploy", "--version", version]).assert()
    }

    fn head(&self, key: &str) -> Option<serde_json::Value> {
        let s = services();
        let out = std::process::Command::new(&s.aws_cli)
            .args(["s3api", "head-object", "--bucket", &self.bucket, "--key", key])
            .envs(aws_env(s))
            .output()
            .unwrap();
        out.status.success().then(|| serde_json::from_slice(&out.stdout).unwrap())
    }

    fn object(&self, key: &str) -> String {
        let (status, body) = moto_get(&services().moto, "s3", &format!("/{}/{key}", self.bucket));
        assert_eq!(status, 200, "s3://{}/{key}", self.bucket);
        String::from_utf8(body).unwrap()
    }

    /// What users get for `path` through the distribution.
    fn served(&self, path: &str) -> (u16, String) {
        get(&format!("{}/site/{path}", self.cdn.url()))
    }

    fn origin_path(&self) -> String {
        origin_path(&services().moto, &self.distribution)
    }

    fn keys(&self, prefix: &str) -> Vec<String> {
        let listed = aws(&["s3api", "list-objects-v2", "--bucket", &self.bucket, "--prefix", prefix]);
        listed["Contents"]
            .as_array()
            .map_or_else(Vec::new, |c| c.iter().map(|o| o["Key"].as_str().unwrap().to_owned()).collect())
    }

    fn invalidated_paths(&self) -> Vec<String> {
        let list = aws(&["cloudfront", "list-invalidations", "--distribution-id", &self.distribution]);
        let mut paths = Vec::new();
        for item in list["InvalidationList"]["Items"].as_array().cloned().unwrap_or_default() {
            let id = item["Id"].as_str().unwrap();
            assert!(item["Status"].as_str().unwrap().eq_ignore_ascii_case("completed"), "{item}");
            let one = aws(&["cloudfront", "get-invalidation", "--distribution-id", &self.distribution, "--id", id]);
            for p in one["Invalidation"]["InvalidationBatch"]["Paths"]["Items"].as_array().unwrap() {
                paths.push(p.as_str().unwrap().to_owned());
            }
        }
        paths
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn origin_path(moto: &str, distribution: &str) -> String {
    let (_, xml) = moto_get(moto, "cloudfront", &format!("/2020-05-31/distribution/{distribution}/config"));
    let xml = String::from_utf8_lossy(&xml);
    let start = xml.find("<OriginPath>").map(|i| i + "<OriginPath>".len());
    start.and_then(|s| xml[s..].find("</OriginPath>").map(|e| xml[s..s + e].to_owned())).unwrap_or_default()
}

/// CloudFront's edge for one distribution in front of `bucket`.
fn edge(moto: String, bucket: String, distribution: String) -> Server {
    stand_in::serve(Arc::new(move |req| {
        let origin = origin_path(&moto, &distribution);
        let (key, live) = if let Some(path) = req.path.strip_prefix("/site/") {
            let path =
                if path.is_empty() || path.ends_with('/') { format!("{path}index.html") } else { path.to_owned() };
            let origin = origin.trim_start_matches('/');
            (if origin.is_empty() { path } else { format!("{origin}/{path}") }, true)
        } else if let Some(rest) = req.path.strip_prefix("/preview/") {
            // The prefix the preview names is live when the origin path is on it.
            let live = !origin.is_empty() && rest.starts_with(&format!("{}/", origin.trim_start_matches('/')));
            (rest.to_owned(), live)
        } else {
            return Response::text(404, "no such route");
        };
        let (status, body) = moto_get(&moto, "s3", &format!("/{bucket}/{key}"));
        if status != 200 {
            return Response::text(
                if status == 404 { 404 } else { 502 },
                format!("origin answered {status} for {key}"),
            );
        }
        if live && String::from_utf8_lossy(&body).contains("BREAK-LIVE") {
            return Response::text(503, "broken behind the CDN");
        }
        Response::new(200, "application/octet-stream", body)
    }))
}

#[test]
fn in_place_uploads_assets_first_keeps_releases_and_rolls_back_entry_points() {
    let site = Site::new("{ type = \"all-at-once\" }", ", keep_releases = 2");
    let (r1, asset1) = site.release("1.0.0", "ok");
    site.deploy("1.0.0").success();
    // Writes: every hashed asset before any entry point, in the release's copy and at the root.
    let writes: Vec<String> = site.s3.requests().into_iter().filter(|r| r.starts_with("PUT ")).collect();
    let at = |key: &str| {
        writes.iter().position(|r| r.split_whitespace().nth(1).is_some_and(|p| p.split('?').next() == Some(key)))
    };
    for prefix in [format!("releases/{r1}/"), String::new()] {
        let asset = at(&format!("/{}/{prefix}{asset1}", site.bucket)).expect("the asset was written");
        for entry in ["index.html", "health.json", "favicon.ico"] {
            let entry = at(&format!("/{}/{prefix}{entry}", site.bucket)).expect("the entry point was written");
            assert!(asset < entry, "{prefix}{asset1} is written before {prefix}{entry}: {writes:#?}");
        }
    }
    assert!(site.served("").1.contains("<p>1.0.0</p>"));
    let index = site.head("index.html").expect("index.html at the root");
    assert_eq!(index["CacheControl"], "no-cache");
    assert_eq!(index["ContentType"], "text/html; charset=utf-8");
    let script = site.head(&asset1).expect("the hashed script at the root");
    assert_eq!(script["CacheControl"], "public, max-age=31536000, immutable");
    assert_eq!(script["ContentType"], "text/javascript; charset=utf-8");
    assert_eq!(site.head(&format!("releases/{r1}/{asset1}")).unwrap()["CacheControl"], script["CacheControl"]);
    let paths = site.invalidated_paths();
    for p in ["/index.html", "/", "/health.json", "/favicon.ico"] {
        assert!(paths.contains(&p.to_owned()), "{p} invalidated: {paths:?}");
    }
    assert!(!paths.iter().any(|p| p.contains("/assets/")), "hashed assets are never invalidated: {paths:?}");
    let icon = site.head("favicon.ico").unwrap()["LastModified"].clone();

    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (_, asset2) = site.release("2.0.0", "ok");
    site.deploy("2.0.0").success();
    assert!(site.served("").1.contains("<p>2.0.0</p>"));
    assert!(site.head(&asset1).is_some(), "the previous release's assets stay for pages already open");
    assert_eq!(site.head("favicon.ico").unwrap()["LastModified"], icon, "an unchanged file is not copied again");

    // Healthy on its preview, broken once users get it: the entry points go back.
    site.release("3.0.0", "ok\",\"note\":\"BREAK-LIVE");
    let failed = site.deploy("3.0.0").code(3);
    assert!(stderr(&failed).contains("broken behind the CDN"), "{}", stderr(&failed));
    assert!(site.object("index.html").contains("<p>2.0.0</p>"));
    assert!(site.object("health.json").contains("\"2.0.0\""));

    // Never healthy: nothing reaches the root at all.
    let (_, asset4) = site.release("4.0.0", "broken");
    site.deploy("4.0.0").code(3);
    assert!(site.head(&asset4).is_none(), "an unhealthy release copies nothing to the root");
    assert!(site.served("").1.contains("<p>2.0.0</p>"));

    // keep_releases = 2: after 5.0.0, 1.0.0's files go (and the failed releases' copies).
    let (_, asset5) = site.release("5.0.0", "ok");
    site.deploy("5.0.0").success();
    assert!(site.served("").1.contains("<p>5.0.0</p>"));
    assert!(site.head(&asset1).is_none(), "1.0.0's script is pruned");
    assert!(site.head(&asset2).is_some() && site.head(&asset5).is_some());
    assert!(site.keys(&format!("releases/{r1}/")).is_empty(), "1.0.0's copy is pruned");
    let copies: std::collections::BTreeSet<String> = site
        .keys("releases/")
        .iter()
        .map(|k| k.split('/').nth(1).unwrap().split('-').next().unwrap().to_owned())
        .collect();
    assert_eq!(copies.into_iter().collect::<Vec<_>>(), ["2.0.0", "5.0.0"]);

    // And back to 2.0.0, whose files are still there.
    site.gantry(&["rollback"]).assert().success();
    assert!(site.served("").1.contains("<p>2.0.0</p>"));
    assert_eq!(site.head("index.html").unwrap()["CacheControl"], "no-cache");
}

#[test]
fn blue_green_switches_the_origin_path_and_back() {
    let site = Site::new("{ type = \"blue-green\", bake = \"1s\" }", ", prefix = \"www\"");
    let before = site.origin_path();
    let (r1, _) = site.release("1.0.0", "ok");
    site.deploy("1.0.0").success();
    assert_eq!(site.origin_path(), format!("/www/releases/{r1}"));
    assert!(site.served("").1.contains("<p>1.0.0</p>"));
    assert!(site.head("www/index.html").is_none(), "blue-green writes releases under their prefixes only");
    let (r2, _) = site.release("2.0.0", "ok");
    site.deploy("2.0.0").success();
    assert_eq!(site.origin_path(), format!("/www/releases/{r2}"));

    // Fails after the switch (while baking): the origin path goes back at once.
    site.release("3.0.0", "ok\",\"note\":\"BREAK-LIVE");
    let failed = site.deploy("3.0.0").code(3);
    let err = stderr(&failed);
    assert!(err.contains("broken behind the CDN") && err.contains("hint: live now: 2.0.0"), "{err}");
    assert_eq!(site.origin_path(), format!("/www/releases/{r2}"));
    assert!(site.served("health.json").1.contains("\"2.0.0\""));

    site.gantry(&["rollback"]).assert().success();
    assert_eq!(site.origin_path(), format!("/www/releases/{r1}"));
    assert!(site.served("").1.contains("<p>1.0.0</p>"));
    assert_ne!(before, site.origin_path());
}

#[test]
fn plan_shows_the_blue_green_steps() {
    let site = Site::new("{ type = \"blue-green\", bake = \"30s\", keep_previous = \"5m\" }", "");
    let out = site.gantry(&["--output", "json", "plan"]).assert().success();
    let plan: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let target = &plan["targets"][0];
    assert_eq!(target["live"]["stable"], serde_json::Value::Null);
    insta::assert_json_snapshot!(
        "static_plan_blue_green",
        serde_json::json!({
            "kind": target["kind"],
            "strategy": target["strategy"],
            "steps": target["steps"],
        })
    );
}

#[test]
fn a_missing_bucket_or_distribution_is_named_and_nothing_changes() {
    let site = Site::new("{ type = \"blue-green\" }", "");
    let toml = std::fs::read_to_string(site.path().join("gantry.toml")).unwrap();
    let with = |from: &str, to: &str| write_tree(site.path(), &[("gantry.toml", &toml.replace(from, to))]);
    with(&format!("distribution = \"{}\"", site.distribution), "distribution = \"ENOSUCHDIST\"");
    let err = stderr(&site.gantry(&["plan"]).assert().code(1));
    assert!(err.contains("CloudFront distribution `ENOSUCHDIST` does not exist"), "{err}");
    assert!(err.contains("hint: check `distribution`"), "{err}");
    site.release("1.0.0", "ok");
    let err = stderr(&site.gantry(&["deploy", "--version", "1.0.0"]).assert().code(1));
    assert!(err.contains("ENOSUCHDIST"), "{err}");
    assert!(site.keys("").is_empty(), "nothing was uploaded: {:?}", site.keys(""));

    // Credentials S3 refuses.
    write_tree(site.path(), &[("gantry.toml", &toml)]);
    site.s3.set_faults(Faults { deny: true, ..Faults::default() });
    let err = stderr(&site.gantry(&["plan"]).assert().code(1));
    assert!(err.contains(&format!("access denied: s3:ListBucket on S3 bucket `{}`", site.bucket)), "{err}");
    assert!(err.contains("hint: the credentials need `s3:ListBucket`"), "{err}");
    site.s3.set_faults(Faults::default());

    with(&format!("bucket = \"{}\"", site.bucket), "bucket = \"no-such-bucket-here\"");
    let err = stderr(&site.gantry(&["plan"]).assert().code(1));
    assert!(err.contains("S3 bucket `no-such-bucket-here` does not exist"), "{err}");
}
