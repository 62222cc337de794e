//! The `lambda` target through the real binary: `gantry package`, `publish` and `deploy`
//! against moto's Lambda and S3, with health gates on a stand-in for API Gateway.
//!
//! moto runs no code without Docker, so the stand-in plays API Gateway in front of the
//! function: `/live/...` invokes the `live` alias and `/preview/...` the `preview` alias,
//! each read from moto on every request (an alias with `AdditionalVersionWeights` sends
//! that share of requests to the other version, as Lambda does). What a version answers
//! is up to the test, keyed by its `CodeSha256` (the release zip's): healthy, broken,
//! failing once it takes a given share of traffic, or firing a CloudWatch alarm then.
//! Alarms live in the CloudWatch stand-in (`cloudwatch.rs`: moto does not speak the
//! protocol the SDK uses).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::cloudwatch::{self, Alarms};
use crate::services::{aws_env, services, unique};
use crate::stand_in::{self, Response, Server, aws, moto_get};
use crate::support::{gantry, stderr, write_tree};

/// What a version answers.
#[derive(Debug, Clone)]
enum Behaviour {
    Healthy,
    Broken,
    /// 503 once the version takes this share of the live alias's traffic or more.
    FailsFrom(u8),
    /// Healthy, but sets this CloudWatch alarm to ALARM once it takes this share or more.
    AlarmFrom(u8, String),
}

struct Fixture {
    dir: tempfile::TempDir,
    function: String,
    behaviours: Arc<Mutex<HashMap<String, Behaviour>>>,
    api: Server,
    cloudwatch: Server,
    alarms: Alarms,
}

impl Fixture {
    /// A project with a function `fn` whose `live` alias is on version 1 (deployed by hand),
    /// deployed with `strategy`; `lambda_extra` goes into the `lambda` table.
    fn new(strategy: &str, lambda_extra: &str) -> Self {
        let s = services();
        let function = unique("fn");
        let bucket = unique("fn-releases");
        aws(&["s3api", "create-bucket", "--bucket", &bucket]);
        let dir = tempfile::tempdir().unwrap();
        function_by_hand(&[], &function, "by hand", None, dir.path());

        let behaviours = Arc::new(Mutex::new(HashMap::new()));
        let alarms = Alarms::default();
        let api = api_gateway(s.moto.clone(), function.clone(), behaviours.clone(), alarms.clone());
        let cloudwatch = cloudwatch::start(alarms.clone());
        let config = format!(
            "[project]\nname = \"fn\"\n\n[artifacts.app]\nroot = \"app\"\n\n\
             [environments.dev]\nregion = \"us-east-1\"\nrelease_bucket = \"{bucket}\"\ntargets = [\"api\"]\n\n\
             [targets.api]\nkind = \"lambda\"\n{strategy}\
             lambda = {{ function = \"{function}\", artifact = \"app\", url = \"{api}/live\", preview_url = \"{api}/preview\"{lambda_extra} }}\n\n\
             [[targets.api.health]]\nurl = \"{{url}}/health\"\ninterval = \"300ms\"\ntimeout = \"300ms\"\n\
             healthy_threshold = 2\nunhealthy_threshold = 2\n",
            api = api.url()
        );
        write_tree(dir.path(), &[("gantry.toml", &config)]);
        Self { dir, function, behaviours, api, cloudwatch, alarms }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn gantry(&self, args: &[&str]) -> assert_cmd::Command {
        let mut cmd = gantry(self.path());
        cmd.args(["--env", "dev"])
            .args(args)
            .envs(aws_env(services()))
            .env("AWS_ENDPOINT_URL_CLOUDWATCH", self.cloudwatch.url())
            .env("GANTRY_AWS_MAX_ATTEMPTS", "2");
        cmd
    }

    /// Packages and publishes `version` of the function, answering as `behaviour`.
    fn release(&self, version: &str, behaviour: Behaviour) {
        write_tree(
            self.path(),
            &[("app/handler.py", &format!("def handler(event, context):\n    return '{version}'\n"))],
        );
        gantry(self.path()).args(["package", "-q", "--version", version]).assert().success();
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.path().join("dist/release.json")).unwrap()).unwrap();
        let code_sha = crate::support::sha256_b64(manifest["artifacts"][0]["sha256"].as_str().unwrap());
        self.behaviours.lock().unwrap().insert(code_sha, behaviour);
        self.gantry(&["publish", "-q"]).assert().success();
    }

    fn deploy(&self, version: &str) -> assert_cmd::assert::Assert {
        self.gantry(&["--output", "json", "deploy", "--version", version]).assert()
    }

    fn alias(&self, name: &str) -> serde_json::Value {
        aws(&["lambda", "get-alias", "--function-name", &self.function, "--name", name])
    }

    /// The gantry release a published version belongs to, from its description.
    fn release_of(&self, version: &str) -> String {
        let config =
            aws(&["lambda", "get-function-configuration", "--function-name", &self.function, "--qualifier", version]);
        config["Description"].as_str().unwrap().split_whitespace().nth(1).unwrap_or("none").to_owned()
    }

    /// The live alias: the release it serves, with no weights left behind.
    fn assert_live(&self, release: &str) {
        let live = self.alias("live");
        let weights = &live["RoutingConfig"]["AdditionalVersionWeights"];
        assert!(weights.as_object().is_none_or(|w| w.is_empty()), "no traffic split is left: {live}");
        assert_eq!(self.release_of(live["FunctionVersion"].as_str().unwrap()), release, "{live}");
        let preview = self.alias("preview");
        assert_eq!(preview["FunctionVersion"], live["FunctionVersion"], "preview is back on the live version");
    }

    fn versions(&self) -> usize {
        aws(&["lambda", "list-versions-by-function", "--function-name", &self.function])["Versions"]
            .as_array()
            .unwrap()
            .len()
    }
}

/// A function made by hand, its calls prefixed with `region` (`["--region", "us-west-2"]`,
/// or nothing for the default): a role, `handler.py` returning `says`, version 1 (with
/// `description` when given) and alias `live` on it.
fn function_by_hand(region: &[&str], function: &str, says: &str, description: Option<&str>, dir: &Path) {
    let run = |rest: &[&str]| aws(&region.iter().chain(rest).copied().collect::<Vec<_>>());
    let role = unique("role");
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    let role_arn = aws(&["iam", "create-role", "--role-name", &role, "--assume-role-policy-document", trust]);
    let first = dir.join("first.zip");
    zip_one(&first, "handler.py", &format!("def handler(event, context):\n    return '{says}'\n"));
    run(&[
        "lambda",
        "create-function",
        "--function-name",
        function,
        "--runtime",
        "python3.12",
        "--handler",
        "handler.handler",
        "--role",
        role_arn["Role"]["Arn"].as_str().unwrap(),
        "--zip-file",
        &format!("fileb://{}", first.display()),
    ]);
    let mut publish = vec!["lambda", "publish-version", "--function-name", function];
    if let Some(d) = description {
        publish.extend(["--description", d]);
    }
    run(&publish);
    run(&["lambda", "create-alias", "--function-name", function, "--name", "live", "--function-version", "1"]);
}

fn zip_one(path: &Path, name: &str, contents: &str) {
    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    zip.start_file(name, zip::write::SimpleFileOptions::default()).unwrap();
    std::io::Write::write_all(&mut zip, contents.as_bytes()).unwrap();
    zip.finish().unwrap();
}

/// API Gateway in front of the function's aliases, reading them from moto on each request.
fn api_gateway(
    moto: String,
    function: String,
    behaviours: Arc<Mutex<HashMap<String, Behaviour>>>,
    alarms: Alarms,
) -> Server {
    let counter = Arc::new(AtomicU64::new(0));
    stand_in::serve(Arc::new(move |req| {
        let alias = if req.path.starts_with("/live/") {
            "live"
        } else if req.path.starts_with("/preview/") {
            "preview"
        } else {
            return Response::text(404, "no such route");
        };
        let read = |path: String| -> Option<serde_json::Value> {
            let (status, body) = moto_get(&moto, "lambda", &path);
            // moto answers GetAlias with 201 for an alias made by CreateAlias.
            (200..300).contains(&status).then(|| serde_json::from_slice(&body).ok()).flatten()
        };
        let Some(target) = read(format!("/2015-03-31/functions/{function}/aliases/{alias}")) else {
            return Response::text(502, format!("alias {alias} does not exist"));
        };
        let live = if alias == "live" {
            target.clone()
        } else {
            read(format!("/2015-03-31/functions/{function}/aliases/live")).unwrap_or_default()
        };
        let primary = |a: &serde_json::Value| a["FunctionVersion"].as_str().unwrap_or_default().to_owned();
        let extra = |a: &serde_json::Value| {
            a["RoutingConfig"]["AdditionalVersionWeights"]
                .as_object()
                .and_then(|w| w.iter().next().map(|(v, w)| (v.clone(), w.as_f64().unwrap_or(0.0))))
        };
        // The version this request reaches: weighted requests go to the additional version.
        let n = counter.fetch_add(1, Ordering::Relaxed);
        let version = match extra(&target) {
            Some((v, w)) if (n % 100) < (w * 100.0).round() as u64 => v,
            _ => primary(&target),
        };
        // Its share of the live alias's traffic.
        let share = match extra(&live) {
            Some((v, w)) if v == version => (w * 100.0).round() as u8,
            Some((_, w)) if primary(&live) == version => 100 - (w * 100.0).round() as u8,
            None if primary(&live) == version => 100,
            _ => 0,
        };
        let Some(config) = read(format!("/2015-03-31/functions/{function}/configuration?Qualifier={version}")) else {
            return Response::text(502, format!("version {version} does not exist"));
        };
        let sha = config["CodeSha256"].as_str().unwrap_or_default().to_owned();
        let behaviour = behaviours.lock().unwrap().get(&sha).cloned().unwrap_or(Behaviour::Healthy);
        let ok = Response::new(200, "application/json", format!("{{\"version\":\"{version}\",\"share\":{share}}}"));
        match behaviour {
            Behaviour::Healthy => ok,
            Behaviour::Broken => Response::text(503, "broken release"),
            Behaviour::FailsFrom(p) if share >= p => Response::text(503, format!("overloaded at {share}% of traffic")),
            Behaviour::FailsFrom(_) => ok,
            Behaviour::AlarmFrom(p, name) => {
                if share >= p {
                    alarms.set(&name, "ALARM", &format!("Threshold Crossed: Errors > 0 with {share}% of traffic"));
                }
                ok
            }
        }
    }))
}

/// Traffic weights a deploy announced, from its JSON events.
fn weights(out: &assert_cmd::assert::Assert) -> Vec<u64> {
    String::from_utf8_lossy(&out.get_output().stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "traffic")
        .map(|e| e["new_weight"].as_u64().unwrap())
        .collect()
}

#[test]
fn canary_moves_the_alias_by_weights_and_rolls_back_what_fails() {
    let f = Fixture::new("strategy = { type = \"canary\", steps = [10, 50, 100], bake = \"1s\" }\n", "");
    f.release("1.0.0", Behaviour::Healthy);
    let first = f.deploy("1.0.0").success();
    assert_eq!(weights(&first), [10, 50, 100]);
    f.assert_live("1.0.0");
    f.release("2.0.0", Behaviour::Healthy);
    f.deploy("2.0.0").success();
    f.assert_live("2.0.0");
    let v2 = f.alias("live")["FunctionVersion"].as_str().unwrap().to_owned();

    // Never healthy on its own endpoint: it never takes user traffic.
    f.release("3.0.0", Behaviour::Broken);
    let broken = f.deploy("3.0.0").code(3);
    assert_eq!(weights(&broken), Vec::<u64>::new(), "no traffic moved");
    assert!(stderr(&broken).contains("gate-new") || stderr(&broken).contains("status 503"), "{}", stderr(&broken));
    f.assert_live("2.0.0");
    assert_eq!(f.alias("live")["FunctionVersion"], v2.as_str());

    // Healthy at 10%, failing once it takes half the traffic: rolled back at step 2.
    f.release("4.0.0", Behaviour::FailsFrom(50));
    let canary = f.deploy("4.0.0").code(3);
    let err = stderr(&canary);
    assert_eq!(weights(&canary), [10, 50], "{err}");
    assert!(err.contains("overloaded at 50% of traffic"), "the failing answer is named: {err}");
    assert!(err.contains("hint: live now: 2.0.0"), "{err}");
    f.assert_live("2.0.0");

    // Back to 1.0.0: its published version is used again, nothing new is published.
    let before = f.versions();
    f.gantry(&["rollback"]).assert().success();
    f.assert_live("1.0.0");
    assert_eq!(f.versions(), before);
    let history: serde_json::Value =
        serde_json::from_slice(&f.gantry(&["--output", "json", "history"]).assert().success().get_output().stdout)
            .unwrap();
    let states: Vec<&str> = history.as_array().unwrap().iter().map(|d| d["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["succeeded", "rolled-back", "rolled-back", "succeeded", "succeeded"]);
}

#[test]
fn a_firing_cloudwatch_alarm_fails_the_deploy_and_the_alias_goes_back() {
    let f =
        Fixture::new("strategy = { type = \"linear\", increment = 50, bake = \"1s\" }\n", ", alarms = [\"fn-errors\"]");
    f.alarms.set("fn-errors", "OK", "Threshold Crossed: no datapoints were received");
    f.release("1.0.0", Behaviour::Healthy);
    f.deploy("1.0.0").success();
    f.assert_live("1.0.0");
    f.release("2.0.0", Behaviour::AlarmFrom(50, "fn-errors".into()));
    let failed = f.deploy("2.0.0").code(3);
    let err = stderr(&failed);
    assert!(err.contains("alarm firing: `fn-errors` is in ALARM"), "{err}");
    assert_eq!(weights(&failed), [50], "{err}");
    f.assert_live("1.0.0");
}

#[test]
fn plan_shows_a_codedeploy_preset_as_steps() {
    let f = Fixture::new("", ", preset = \"Canary10Percent5Minutes\"");
    let out = f.gantry(&["--output", "json", "plan"]).assert().success();
    let plan: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let target = &plan["targets"][0];
    assert_eq!(target["live"]["stable"], serde_json::Value::Null, "version 1 was not deployed by gantry");
    insta::assert_json_snapshot!(
        "lambda_plan_canary_preset",
        serde_json::json!({
            "kind": target["kind"],
            "strategy": target["strategy"],
            "steps": target["steps"],
            "health": target["health"].as_array().unwrap().iter().map(|h| h.as_str().unwrap().replace(&f.api.url(), "API")).collect::<Vec<_>>(),
        })
    );
    let text = f.gantry(&["plan"]).assert().success();
    let steps: Vec<String> = String::from_utf8_lossy(&text.get_output().stdout)
        .lines()
        .chain(String::from_utf8_lossy(&text.get_output().stderr).lines())
        .filter(|l| l.trim_start().chars().next().is_some_and(|c| c.is_ascii_digit()))
        .map(|l| l.trim().to_owned())
        .collect();
    insta::assert_snapshot!("lambda_plan_canary_preset_text", steps.join("\n"));
}

#[test]
fn a_missing_function_alias_alarm_or_release_is_named_and_nothing_changes() {
    let f = Fixture::new("", "");
    // An unpublished release: found before anything moves.
    write_tree(f.path(), &[("app/handler.py", "def handler(e, c):\n    return 1\n")]);
    gantry(f.path()).args(["package", "-q", "--version", "1.0.0"]).assert().success();
    let out = f.gantry(&["deploy", "--version", "1.0.0"]).assert().code(1);
    let err = stderr(&out);
    assert!(err.contains("release 1.0.0 is not published") && err.contains("/fn/1.0.0/"), "{err}");
    assert!(err.contains("hint: publish it first: `gantry publish --env dev --version 1.0.0`"), "{err}");
    assert_eq!(f.alias("live")["FunctionVersion"], "1");
    assert!(f.alias("live")["RoutingConfig"].is_null(), "nothing was changed");
    assert_eq!(f.versions(), 2, "$LATEST and version 1: nothing published");

    // Credentials Lambda refuses (a proxy answering 403 to everything).
    let denied = crate::proxy::Proxy::start(services().moto.trim_start_matches("http://"));
    denied.set_faults(crate::proxy::Faults { deny: true, ..crate::proxy::Faults::default() });
    let err = stderr(&f.gantry(&["plan"]).env("AWS_ENDPOINT_URL_LAMBDA", denied.url()).assert().code(1));
    assert!(
        err.contains(&format!("access denied: lambda:GetFunctionConfiguration on Lambda function `{}`", f.function)),
        "{err}"
    );
    assert!(err.contains("hint: the credentials need `lambda:GetFunctionConfiguration`"), "{err}");

    let toml = std::fs::read_to_string(f.path().join("gantry.toml")).unwrap();
    let with = |from: &str, to: &str| write_tree(f.path(), &[("gantry.toml", &toml.replace(from, to))]);
    with(&format!("function = \"{}\"", f.function), "function = \"no-such-function\"");
    let err = stderr(&f.gantry(&["plan"]).assert().code(1));
    assert!(err.contains("Lambda function `no-such-function` does not exist"), "{err}");
    assert!(err.contains("hint: check `function` in [targets.api]"), "{err}");

    with("artifact = \"app\",", "artifact = \"app\", alias = \"prod\",");
    let err = stderr(&f.gantry(&["plan"]).assert().code(1));
    assert!(err.contains("alias `prod` of Lambda function") && err.contains("does not exist"), "{err}");
    assert!(err.contains("aws lambda create-alias"), "{err}");

    with("artifact = \"app\",", "artifact = \"app\", alarms = [\"no-such-alarm\"],");
    let err = stderr(&f.gantry(&["plan"]).assert().code(1));
    assert!(err.contains("CloudWatch alarm `no-such-alarm` does not exist"), "{err}");
}

/// A container-image function (`image`): the code is the image `gantry image push --version V`
/// tagged in ECR, pinned by digest, and Lambda's `CodeSha256` for it is the digest's hex.
/// moto checks `ImageUri` against its ECR only with `MOTO_LAMBDA_STUB_ECR=false`, which
/// scripts/test-services sets; the images are put straight into moto's ECR.
#[test]
fn container_image_functions_deploy_by_digest_and_roll_back() {
    let s = services();
    let function = unique("fnimg");
    let repository = unique("fnimg-repo");
    let created = aws(&["ecr", "create-repository", "--repository-name", &repository]);
    let uri = created["repository"]["repositoryUri"].as_str().unwrap().to_owned();
    let mut digests = HashMap::new();
    for version in ["1.0.0", "2.0.0", "3.0.0"] {
        let hex = |prefix: &str| {
            format!("{prefix}{}{}", version.replace('.', ""), "0".repeat(64)).chars().take(64).collect::<String>()
        };
        // moto derives imageDigest from the layers: one layer per version.
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 5, "digest": format!("sha256:{}", hex("c"))},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": 1, "digest": format!("sha256:{}", hex("f"))}],
        });
        let put = aws(&[
            "ecr",
            "put-image",
            "--repository-name",
            &repository,
            "--image-tag",
            version,
            "--image-manifest",
            &manifest.to_string(),
        ]);
        digests.insert(version, put["image"]["imageId"]["imageDigest"].as_str().unwrap().to_owned());
    }
    let role = unique("role");
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    let role_arn = aws(&["iam", "create-role", "--role-name", &role, "--assume-role-policy-document", trust]);
    aws(&[
        "lambda",
        "create-function",
        "--function-name",
        &function,
        "--package-type",
        "Image",
        "--role",
        role_arn["Role"]["Arn"].as_str().unwrap(),
        "--code",
        &format!("ImageUri={uri}@{}", digests["1.0.0"]),
    ]);
    aws(&["lambda", "publish-version", "--function-name", &function]);
    aws(&["lambda", "create-alias", "--function-name", &function, "--name", "live", "--function-version", "1"]);

    let behaviours = Arc::new(Mutex::new(HashMap::new()));
    let api = api_gateway(s.moto.clone(), function.clone(), behaviours.clone(), Alarms::default());
    behaviours.lock().unwrap().insert(digests["3.0.0"].trim_start_matches("sha256:").to_owned(), Behaviour::Broken);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[project]\nname = \"fnimg\"\n\n[artifacts.app]\nroot = \"app\"\n\n\
         [images.app]\nrepository = \"{repository}\"\ninputs = [\"app/**\"]\noci_layout = \"oci\"\n\n\
         [environments.dev]\nregion = \"us-east-1\"\ntargets = [\"api\"]\n\n\
         [targets.api]\nkind = \"lambda\"\n\
         lambda = {{ function = \"{function}\", image = \"app\", url = \"{api}/live\", preview_url = \"{api}/preview\" }}\n\n\
         [[targets.api.health]]\nurl = \"{{url}}/health\"\ninterval = \"300ms\"\ntimeout = \"300ms\"\n\
         healthy_threshold = 2\nunhealthy_threshold = 2\n",
        api = api.url()
    );
    write_tree(dir.path(), &[("gantry.toml", &config), ("app/main.py", "print('hi')\n")]);
    let run = |args: &[&str]| {
        let mut cmd = gantry(dir.path());
        cmd.args(["--env", "dev"]).args(args).envs(aws_env(services())).env("GANTRY_AWS_MAX_ATTEMPTS", "2");
        cmd.assert()
    };
    let live_image = || {
        let live = aws(&["lambda", "get-alias", "--function-name", &function, "--name", "live"]);
        let version = live["FunctionVersion"].as_str().unwrap().to_owned();
        let code = aws(&["lambda", "get-function", "--function-name", &function, "--qualifier", &version]);
        code["Code"]["ImageUri"].as_str().unwrap().to_owned()
    };
    let package = |version: &str| gantry(dir.path()).args(["package", "-q", "--version", version]).assert().success();

    package("2.0.0");
    let good = run(&["deploy", "--version", "2.0.0"]);
    assert_eq!(good.get_output().status.code(), Some(0), "{}", stderr(&good));
    assert_eq!(live_image(), format!("{uri}@{}", digests["2.0.0"]), "the image is pinned by digest");
    let live = aws(&["lambda", "get-alias", "--function-name", &function, "--name", "live"]);
    let config = aws(&[
        "lambda",
        "get-function-configuration",
        "--function-name",
        &function,
        "--qualifier",
        live["FunctionVersion"].as_str().unwrap(),
    ]);
    assert_eq!(config["CodeSha256"], digests["2.0.0"].trim_start_matches("sha256:"));
    let v2 = live["FunctionVersion"].as_str().unwrap().to_owned();
    // moto shares one `Code` between a function's versions, so after another update the
    // version is what tells which image is live (its CodeSha256 and description are its own).
    let live_version = || {
        let live = aws(&["lambda", "get-alias", "--function-name", &function, "--name", "live"]);
        let weights = &live["RoutingConfig"]["AdditionalVersionWeights"];
        assert!(weights.as_object().is_none_or(|w| w.is_empty()), "no traffic split is left: {live}");
        live["FunctionVersion"].as_str().unwrap().to_owned()
    };

    package("3.0.0");
    let broken = run(&["deploy", "--version", "3.0.0"]);
    assert_eq!(broken.get_output().status.code(), Some(3), "{}", stderr(&broken));
    assert_eq!(live_version(), v2, "rolled back to 2.0.0's version");

    // 4.0.0 was never pushed: named, with the push command, before anything changes.
    let versions_before = aws(&["lambda", "list-versions-by-function", "--function-name", &function]);
    package("4.0.0");
    let missing = run(&["deploy", "--version", "4.0.0"]);
    assert_eq!(missing.get_output().status.code(), Some(1), "{}", stderr(&missing));
    let err = stderr(&missing);
    assert!(err.contains(&format!("tag `4.0.0` is not in ECR repository `{repository}`")), "{err}");
    assert!(err.contains("gantry image push"), "{err}");
    assert_eq!(aws(&["lambda", "list-versions-by-function", "--function-name", &function]), versions_before);
    assert_eq!(live_version(), v2);
}

/// A target's own `region` is where gantry calls Lambda: a function that exists only in
/// us-west-2 (moto keeps each region apart) is read there while the environment is in
/// us-east-1, and is not found without the target's `region`. A deploy to it is refused
/// before anything moves, since Lambda takes code only from its own region and the release
/// is published in the environment's.
#[test]
fn a_targets_own_region_is_where_lambda_is_called() {
    let function = unique("fn-west");
    let bucket = unique("fn-west-releases");
    aws(&["s3api", "create-bucket", "--bucket", &bucket]);
    let dir = tempfile::tempdir().unwrap();
    let digest = "ab".repeat(32);
    let description = format!("gantry 0.9.0 sha256:{digest}");
    function_by_hand(&["--region", "us-west-2"], &function, "west", Some(&description), dir.path());
    let config = |region: &str| {
        format!(
            "[project]\nname = \"fn\"\n\n[artifacts.app]\nroot = \"app\"\n\n\
             [environments.dev]\nregion = \"us-east-1\"\nrelease_bucket = \"{bucket}\"\ntargets = [\"api\"]\n\n\
             [targets.api]\nkind = \"lambda\"\n{region}\
             lambda = {{ function = \"{function}\", artifact = \"app\", url = \"http://127.0.0.1:9/live\", preview_url = \"http://127.0.0.1:9/preview\" }}\n"
        )
    };
    write_tree(dir.path(), &[("gantry.toml", &config("region = \"us-west-2\"\n")), ("app/handler.py", "x = 1\n")]);
    let run_gantry = |args: &[&str]| {
        let mut cmd = gantry(dir.path());
        cmd.args(["--env", "dev"]).args(args).envs(aws_env(services())).env("GANTRY_AWS_MAX_ATTEMPTS", "2");
        cmd
    };
    let plan = run_gantry(&["--output", "json", "plan"]).assert().success();
    let doc: serde_json::Value = serde_json::from_slice(&plan.get_output().stdout).unwrap();
    assert_eq!(doc["targets"][0]["live"]["stable"]["version"], "0.9.0", "{doc}");
    assert_eq!(doc["targets"][0]["live"]["stable"]["digest"], digest);

    gantry(dir.path()).args(["package", "-q", "--version", "1.0.0"]).assert().success();
    let refused = run_gantry(&["deploy", "--version", "1.0.0"]).assert().code(1);
    let err = String::from_utf8_lossy(&refused.get_output().stderr).into_owned();
    assert!(
        err.contains(&format!(
            "Lambda function `{function}` is in us-west-2, but environment `dev` publishes releases in us-east-1"
        )),
        "{err}"
    );
    let alias = aws(&["--region", "us-west-2", "lambda", "get-alias", "--function-name", &function, "--name", "live"]);
    assert_eq!(alias["FunctionVersion"], "1", "nothing moved");

    // Without its own region the target is looked for in the environment's, where it is not.
    write_tree(dir.path(), &[("gantry.toml", &config(""))]);
    let missing = run_gantry(&["plan"]).assert().code(1);
    let err = String::from_utf8_lossy(&missing.get_output().stderr).into_owned();
    assert!(err.contains(&format!("Lambda function `{function}`")) && err.contains("us-east-1"), "{err}");
}
