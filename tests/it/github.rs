//! gantry in GitHub Actions: OIDC credentials from a local token service (`oidc.rs`) and
//! moto's STS, refreshed before they expire; the step outputs, step summary, log groups
//! and annotations gantry writes; and no secret in any output.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use gantry::aws::oidc::{OidcCredentials, OidcSettings, Secret};

use crate::oidc::TokenService;
use crate::services::{aws_env, services, unique};
use crate::support::{gantry, write_tree};

const ROLE: &str = "arn:aws:iam::123456789012:role/gantry-deploy";

/// An STS client without credentials, on moto, as `aws::load_env` builds it.
fn sts() -> aws_sdk_sts::Client {
    use aws_sdk_sts::config::{BehaviorVersion, Region};
    let conf = aws_sdk_sts::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&services().moto)
        .build();
    aws_sdk_sts::Client::from_conf(conf)
}

fn settings(service: &TokenService, request_token: &str, duration: Option<Duration>) -> OidcSettings {
    OidcSettings {
        request_url: service.url.clone(),
        request_token: Secret::new(request_token),
        role_arn: ROLE.into(),
        session_name: "gantry-test".into(),
        duration,
    }
}

#[tokio::test]
async fn oidc_credentials_are_kept_until_near_expiry_then_renewed_with_a_new_token() {
    let service = TokenService::start("req-token", "jwt");
    let now = Arc::new(Mutex::new(SystemTime::now()));
    let clock = {
        let now = Arc::clone(&now);
        Arc::new(move || *now.lock().unwrap())
    };
    // A 15-minute session (STS's shortest); moto sets the expiry from DurationSeconds.
    let provider =
        OidcCredentials::with_clock(settings(&service, "req-token", Some(Duration::from_secs(900))), sts(), clock);

    let first = provider.credentials().await.expect("assumes the role");
    assert_eq!(service.issued(), 1);
    let seen = service.seen();
    assert!(seen[0].authorized, "the request token is sent as a bearer token");
    assert_eq!(seen[0].audience.as_deref(), Some("sts.amazonaws.com"));
    assert!(first.session_token().is_some());
    let expiry = first.expiry().expect("STS credentials expire");
    let life = expiry.duration_since(*now.lock().unwrap()).unwrap();
    assert!(life > Duration::from_secs(880) && life < Duration::from_secs(920), "life {life:?}");

    // Ten minutes in: still good, nothing asked.
    *now.lock().unwrap() += Duration::from_secs(600);
    let again = provider.credentials().await.unwrap();
    assert_eq!(again.access_key_id(), first.access_key_id());
    assert_eq!(service.issued(), 1);

    // Within the refresh margin (a quarter of 15 minutes before expiry): a new ID token and
    // new credentials, before the old ones expire.
    *now.lock().unwrap() = expiry - Duration::from_secs(200);
    let renewed = provider.credentials().await.unwrap();
    assert_eq!(service.issued(), 2, "a fresh ID token for every renewal");
    assert_ne!(renewed.access_key_id(), first.access_key_id());
    assert!(renewed.expiry().unwrap() > expiry);
}

#[tokio::test]
async fn a_refused_token_request_is_a_clear_error_without_the_token() {
    let service = TokenService::start("the-right-token", "jwt");
    let provider = OidcCredentials::new(settings(&service, "a-wrong-token", None), sts());
    let err = provider.credentials().await.expect_err("the token service refuses");
    let text =
        format!("{err} {err:?} {}", std::error::Error::source(&err).map(ToString::to_string).unwrap_or_default());
    assert!(text.contains("401"), "{text}");
    assert!(!text.contains("a-wrong-token") && !text.contains("the-right-token"), "{text}");
    assert_eq!(service.issued(), 0);
}

/// `$GITHUB_OUTPUT` read as the runner reads it: `key=value` lines and `key<<DELIM` heredocs.
fn read_outputs(path: &Path) -> HashMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = HashMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some((key, delimiter)) = line.split_once("<<") {
            let mut value = Vec::new();
            for l in lines.by_ref() {
                if l == delimiter {
                    break;
                }
                value.push(l);
            }
            out.insert(key.to_owned(), value.join("\n"));
        } else if let Some((k, v)) = line.split_once('=') {
            out.insert(k.to_owned(), v.to_owned());
        }
    }
    out
}

/// The files and variables of one Actions step, in `dir/.github-step`.
struct Step {
    output: std::path::PathBuf,
    summary: std::path::PathBuf,
}

impl Step {
    fn new(dir: &Path) -> Self {
        let step = dir.join(".github-step");
        std::fs::create_dir_all(&step).unwrap();
        Self { output: step.join("output"), summary: step.join("summary.md") }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("GITHUB_ACTIONS", "true".into()),
            ("CI", "true".into()),
            ("GITHUB_OUTPUT", self.output.display().to_string()),
            ("GITHUB_STEP_SUMMARY", self.summary.display().to_string()),
        ]
    }

    fn outputs(&self) -> HashMap<String, String> {
        read_outputs(&self.output)
    }

    fn summary(&self) -> String {
        std::fs::read_to_string(&self.summary).unwrap_or_default()
    }
}

#[test]
fn package_in_actions_sets_outputs_groups_the_build_and_writes_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(
        dir.path(),
        &[
            (
                "gantry.toml",
                "[project]\nname = \"shop\"\n\n[artifacts.api]\nroot = \"api\"\nbuild = \"echo building\"\n\n[artifacts.web]\nroot = \"web\"\n",
            ),
            ("api/main.py", "print(1)\n"),
            ("web/index.html", "<p>hi</p>\n"),
        ],
    );
    let step = Step::new(dir.path());
    let out = gantry(dir.path()).args(["package", "--version", "1.4.0"]).envs(step.env()).assert().success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    let group = stderr.find("::group::Build api: echo building").expect(&stderr);
    let end = stderr.find("::endgroup::").expect(&stderr);
    assert!(group < stderr.find("building\n").unwrap() && stderr.find("building\n").unwrap() < end, "{stderr}");

    let outputs = step.outputs();
    assert_eq!(outputs["version"], "1.4.0");
    assert_eq!(outputs["result"], "ok");
    // Two artifacts: the SHA256SUMS lines, multi-line through the heredoc form.
    let sums = std::fs::read_to_string(dir.path().join("dist/SHA256SUMS")).unwrap();
    assert_eq!(outputs["artifact-sha256"], sums.trim_end());
    assert_eq!(outputs["artifact-sha256"].lines().count(), 2);
    let summary = step.summary();
    assert!(summary.contains("## gantry package: shop 1.4.0"), "{summary}");
    for line in sums.lines() {
        let (sha, file) = line.split_once("  ").unwrap();
        assert!(summary.contains(&format!("`{file}`")) && summary.contains(&format!("`{sha}`")), "{summary}");
    }
}

#[test]
fn config_errors_are_annotated_at_their_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(
        dir.path(),
        &[("conf/gantry.toml", "[project]\nname = \"shop\"\n\n[environments.dev]\nrole_arn = \"gantry-deploy\"\n")],
    );
    let step = Step::new(dir.path());
    let out = gantry(dir.path())
        .args(["--config", "conf/gantry.toml", "--env", "dev", "plan"])
        .envs(step.env())
        .env("GITHUB_WORKSPACE", dir.path())
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    let annotation = stderr.lines().find(|l| l.starts_with("::error ")).expect(&stderr);
    assert!(
        annotation.starts_with(
            "::error file=conf/gantry.toml,line=5,col=12,title=gantry.toml::`environments.dev.role_arn`: invalid IAM role ARN `gantry-deploy`"
        ),
        "{annotation}"
    );
    assert_eq!(step.outputs()["result"], "usage");
}

#[test]
fn in_actions_publish_assumes_the_role_with_oidc_and_without_it_fails_clearly() {
    let s = services();
    let dir = tempfile::tempdir().unwrap();
    let bucket = unique("oidc");
    write_tree(
        dir.path(),
        &[
            (
                "gantry.toml",
                &format!(
                    "[project]\nname = \"shop\"\n\n[artifacts.api]\nroot = \"api\"\n\n[environments.dev]\nregion = \"us-east-1\"\nrelease_bucket = \"{bucket}\"\nrole_arn = \"{ROLE}\"\n"
                ),
            ),
            ("api/main.py", "print(1)\n"),
        ],
    );
    create_bucket(&bucket);
    gantry(dir.path()).args(["package", "-q", "--version", "2.0.0"]).assert().success();
    let service = TokenService::start("req-token", "jwt");
    let step = Step::new(dir.path());
    // No AWS keys at all: publish can only succeed with the credentials OIDC gave it.
    let no_keys = || {
        let mut cmd = gantry(dir.path());
        cmd.env("AWS_ENDPOINT_URL", &s.moto)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/nonexistent")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE")
            .envs(step.env());
        cmd
    };
    no_keys()
        .args(["--env", "dev", "publish"])
        .env("ACTIONS_ID_TOKEN_REQUEST_URL", &service.url)
        .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "req-token")
        .assert()
        .success();
    assert!(service.issued() >= 1);
    assert!(service.seen().iter().all(|s| s.authorized && s.audience.as_deref() == Some("sts.amazonaws.com")));
    assert_eq!(step.outputs()["version"], "2.0.0");

    // Outside Actions the same environment uses the standard chain: the keys, no token.
    let before = service.seen().len();
    gantry(dir.path())
        .args(["--env", "dev", "publish", "--force"])
        .envs(aws_env(s))
        .env("ACTIONS_ID_TOKEN_REQUEST_URL", &service.url)
        .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "req-token")
        .assert()
        .success();
    assert_eq!(service.seen().len(), before, "no token asked for outside Actions");

    // Without `permissions: id-token: write` the runner sets no token variables.
    let out = no_keys().args(["--env", "dev", "publish", "--force"]).assert().failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("id-token: write"), "{stderr}");
}

fn create_bucket(bucket: &str) {
    let s = services();
    let out = std::process::Command::new(&s.aws_cli)
        .args(["s3api", "create-bucket", "--bucket", bucket])
        .envs(aws_env(s))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Secret values seeded into every command's environment, none of which may appear in any
/// output: the OIDC request token, the ID tokens the service issues, AWS keys and a GitHub token.
const SECRETS: [&str; 5] = [
    "req-SECRET-7f3a9c",
    "jwt-SECRET-b81d2e",
    "aws-secret-SECRET-4c6e1f",
    "aws-session-SECRET-9a0b3d",
    "ghp_SECRET5e2f8a0c1d",
];

#[test]
fn a_deploy_in_actions_writes_its_summary_and_outputs_and_no_secret_reaches_any_output() {
    let s = services();
    let bucket = unique("scan");
    create_bucket(&bucket);
    let service = TokenService::start(SECRETS[0], SECRETS[1]);
    let p = crate::deploy::Project::with(
        "{ type = \"blue-green\" }",
        "",
        &format!("region = \"us-east-1\"\nrelease_bucket = \"{bucket}\"\nrole_arn = \"{ROLE}\"\n"),
    );
    let step = Step::new(p.path());
    let mut outputs = String::new();
    let mut run = |args: &[&str], env: &[(&str, &str)], code: i32| {
        let out = gantry(p.path())
            .arg("-vv")
            .args(args)
            .envs(step.env())
            .env("ACTIONS_ID_TOKEN_REQUEST_URL", &service.url)
            .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", SECRETS[0])
            .env("AWS_ACCESS_KEY_ID", "AKIAEXAMPLESEEDED")
            .env("AWS_SECRET_ACCESS_KEY", SECRETS[2])
            .env("AWS_SESSION_TOKEN", SECRETS[3])
            .env("GITHUB_TOKEN", SECRETS[4])
            .env("AWS_ENDPOINT_URL", &s.moto)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .envs(env.iter().copied())
            .assert()
            .code(code);
        let o = out.get_output();
        outputs.push_str(&String::from_utf8_lossy(&o.stdout));
        outputs.push_str(&String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    run(&["package", "--version", "1.0.0"], &[], 0);
    run(&["--env", "dev", "publish"], &[], 0);
    assert!(service.issued() >= 1, "publish assumed the role");
    run(&["--env", "dev", "deploy", "--version", "1.0.0"], &[], 0);
    std::fs::remove_file(&step.summary).unwrap();
    std::fs::remove_file(&step.output).unwrap();
    run(&["package", "--version", "2.0.0"], &[("DEMO_BROKEN", "1")], 0);
    std::fs::remove_file(&step.summary).unwrap();
    let stderr = run(&["--env", "dev", "deploy", "--version", "2.0.0"], &[], 3);
    run(&["--env", "dev", "--output", "json", "status"], &[], 0);
    run(&["--env", "dev", "history"], &[], 0);
    run(&["--env", "dev", "--output", "json", "publish"], &[], 0);

    // The broken deploy: its log folds under a group, and the summary shows every phase,
    // the failed gate, the rollback and a gantt.
    assert!(stderr.contains("::group::Deploy 2.0.0 to dev/web"), "{stderr}");
    assert!(stderr.contains("::endgroup::"), "{stderr}");
    let summary = step.summary();
    assert!(summary.contains("## gantry deploy: 2.0.0 to `dev`"), "{summary}");
    assert!(summary.contains("| `web` | blue-green | 1.0.0 | rolled-back |"), "{summary}");
    assert!(summary.contains("| 1 | start-new |"), "{summary}");
    assert!(summary.contains("| gate-new |") && summary.contains("failed"), "{summary}");
    assert!(summary.contains("rolled back: 1.0.0 is live"), "{summary}");
    assert!(summary.contains("```mermaid\ngantt\n") && summary.contains(":crit, "), "{summary}");
    let out = step.outputs();
    assert_eq!(out["result"], "ok", "the last command (publish) succeeded");
    let mut ids = Vec::new();
    for entry in walk(p.path().join(".gantry/state/dev")) {
        let text = std::fs::read_to_string(&entry).unwrap_or_default();
        if let Ok(doc) = serde_json::from_str::<serde_json::Value>(&text)
            && doc["release"]["version"] == "2.0.0"
        {
            ids.push(doc["id"].as_str().unwrap_or_default().to_owned());
        }
    }
    assert!(ids.contains(&out["deployment-id"]), "deployment-id {} is the ledger's {ids:?}", out["deployment-id"]);

    // Every output of every command: stdout, stderr, step summary, GITHUB_OUTPUT, the ledger.
    let mut everything = outputs;
    everything.push_str(&step.summary());
    everything.push_str(&std::fs::read_to_string(&step.output).unwrap());
    for file in walk(p.path().join(".gantry")) {
        everything.push_str(&String::from_utf8_lossy(&std::fs::read(file).unwrap()));
    }
    for secret in SECRETS {
        assert!(!everything.contains(secret), "`{secret}` leaked into the output");
    }
    assert!(everything.contains("assumed the role with GitHub OIDC"), "-vv logs ran");
}

/// Every file under `dir`.
fn walk(dir: std::path::PathBuf) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() { stack.push(path) } else { files.push(path) }
        }
    }
    files
}

#[test]
fn init_github_writes_the_workflows_with_the_released_action_and_never_overwrites_by_accident() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), &[("gantry.toml", "[project]\nname = \"shop\"\n"), ("app/main.py", "")]);
    let workflows = dir.path().join(".github/workflows");
    // From a subfolder: the workflows go to the repository holding gantry.toml.
    gantry(&dir.path().join("app")).args(["init", "--github", "--action", "acme/gantry@v9.1.0"]).assert().success();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows");
    for name in ["ci.yml", "deploy.yml", "release.yml"] {
        let written = std::fs::read_to_string(workflows.join(name)).unwrap();
        let source = std::fs::read_to_string(root.join(name)).unwrap();
        assert!(source.contains("uses: ./\n"));
        assert_eq!(written, source.replace("uses: ./\n", "uses: acme/gantry@v9.1.0\n"), "{name}");
    }
    let deploy = std::fs::read_to_string(workflows.join("deploy.yml")).unwrap();
    assert!(deploy.contains("id-token: write") && !deploy.contains("AWS_SECRET_ACCESS_KEY"));
    // What it wrote passes actionlint.
    let out = std::process::Command::new(crate::install::lint_workflows())
        .args(["ci.yml", "deploy.yml", "release.yml"])
        .current_dir(&workflows)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));

    // A second run refuses and writes nothing, even to the files that are missing.
    std::fs::write(workflows.join("deploy.yml"), "# mine\n").unwrap();
    std::fs::remove_file(workflows.join("ci.yml")).unwrap();
    let again = gantry(dir.path()).args(["init", "--github"]).assert().code(2);
    let stderr = String::from_utf8_lossy(&again.get_output().stderr).into_owned();
    assert!(
        stderr.contains("deploy.yml") && stderr.contains("already exist") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(workflows.join("deploy.yml")).unwrap(), "# mine\n");
    assert!(!workflows.join("ci.yml").exists());

    // --force overwrites, with this gantry's own action by default.
    gantry(dir.path()).args(["init", "--github", "--force"]).assert().success();
    let deploy = std::fs::read_to_string(workflows.join("deploy.yml")).unwrap();
    assert!(deploy.contains(&format!("/gantry@v{}\n", env!("CARGO_PKG_VERSION"))), "{deploy}");
    assert!(workflows.join("ci.yml").exists());
}

#[test]
fn a_deploy_longer_than_its_session_renews_the_credentials_as_it_goes() {
    let s = services();
    let bucket = unique("renew");
    create_bucket(&bucket);
    let service = TokenService::start("req-token", "jwt");
    // The ledger and lock in S3, so the deploy calls AWS from start to end (the lock's
    // heartbeat every few seconds), with 4-second sessions (moto takes any DurationSeconds).
    let p = crate::deploy::Project::with(
        "{ type = \"blue-green\", bake = \"6s\" }",
        "",
        &format!("region = \"us-east-1\"\nstate = \"s3://{bucket}/state\"\nrole_arn = \"{ROLE}\"\n"),
    );
    p.package("1.0.0", &[]);
    let step = Step::new(p.path());
    let started = std::time::Instant::now();
    gantry(p.path())
        .args(["--env", "dev", "deploy", "--version", "1.0.0"])
        .envs(step.env())
        .env("ACTIONS_ID_TOKEN_REQUEST_URL", &service.url)
        .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "req-token")
        .env("GANTRY_AWS_SESSION_DURATION", "4s")
        .env("GANTRY_LOCK_LEASE", "3s")
        .env("AWS_ENDPOINT_URL", &s.moto)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .assert()
        .success();
    let took = started.elapsed().as_secs_f64();
    // Each session is renewed a quarter of its life (1 s) before it ends: one per 3 s at least.
    let issued = service.issued();
    assert!(took > 6.0, "the deploy took {took:.1}s");
    assert!(issued as f64 >= (took / 3.0).floor(), "{issued} sessions in {took:.1}s");
    p.assert_live("1.0.0");
}
