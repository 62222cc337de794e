//! `gantry release` against the GitHub emulator (`github/`), moto's S3 and the CodePipeline
//! emulator, on scripted git histories; GitHub Deployments from `gantry deploy` in Actions;
//! and the GitHub client's handling of pagination, rate limits, 422s and missing digests.

use std::path::Path;

use crate::codepipeline::{Emulator, PipelineSpec};
use crate::github_api::{self as github, GitHub};
use crate::services::{services, unique};
use crate::support::{gantry, git};

const SOURCE_KEY: &str = "releases/hello/pipeline-source.zip";

/// A project in a git repository whose `prd` environment publishes to a versioned moto
/// bucket watched by a pipeline with an approval, released to the GitHub emulator.
struct Repo {
    dir: tempfile::TempDir,
    gh: GitHub,
    emu: Emulator,
    pipeline: String,
    bucket: String,
}

impl Repo {
    fn new() -> Self {
        let s = services();
        let bucket = unique("rel");
        aws(&["s3api", "create-bucket", "--bucket", &bucket]);
        aws(&["s3api", "put-bucket-versioning", "--bucket", &bucket, "--versioning-configuration", "Status=Enabled"]);
        let emu = Emulator::start();
        let pipeline = unique("prd");
        emu.create_standard(&PipelineSpec {
            name: &pipeline,
            bucket: &bucket,
            key: SOURCE_KEY,
            approval: true,
            project: "deployer",
        });
        emu.connect_s3(&s.moto, true);
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "[project]\nname = \"hello\"\n\n[artifacts.app]\nroot = \"app\"\n\n\
             [environments.prd]\nregion = \"us-east-1\"\nrelease_bucket = \"{bucket}\"\npipeline = \"{pipeline}\"\n\
             approval = \"required\"\n"
        );
        crate::support::write_tree(
            dir.path(),
            &[("gantry.toml", &config), (".gitignore", "dist/\n.gantry/\n"), ("app/server.py", "print('hello')\n")],
        );
        git(dir.path(), &["init", "-q", "-b", "main"]);
        git(dir.path(), &["add", "."]);
        git(dir.path(), &["commit", "-q", "-m", "chore: start"]);
        git(dir.path(), &["tag", "v1.2.0"]);
        Self { dir, gh: GitHub::start("acme", "hello"), emu, pipeline, bucket }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn commit(&self, file: &str, message: &str) {
        std::fs::write(self.path().join("app").join(file), message).unwrap();
        git(self.path(), &["add", "."]);
        git(self.path(), &["commit", "-q", "-m", message]);
    }

    fn head(&self) -> String {
        let out = std::process::Command::new("git").args(["-C"]).arg(self.path()).args(["rev-parse", "HEAD"]).output();
        String::from_utf8(out.unwrap().stdout).unwrap().trim().to_owned()
    }

    fn release(&self, args: &[&str]) -> assert_cmd::assert::Assert {
        let mut env = crate::services::aws_env(services());
        env.push(("AWS_ENDPOINT_URL_CODEPIPELINE", self.emu.url.clone()));
        env.push(("GANTRY_PIPELINE_POLL", "10ms".into()));
        env.push(("GANTRY_AWS_MAX_ATTEMPTS", "1".into()));
        env.extend(self.gh.env());
        // In Actions the release writes its step outputs (version, pipeline execution id).
        std::fs::create_dir_all(self.path().join(".gantry")).unwrap();
        env.push(("GITHUB_ACTIONS", "true".into()));
        env.push(("GITHUB_OUTPUT", self.path().join(".gantry/github-output").display().to_string()));
        gantry(self.path()).arg("release").args(args).envs(env).env_remove("GH_TOKEN").assert()
    }
}

fn aws(args: &[&str]) {
    let s = services();
    let out = std::process::Command::new(&s.aws_cli).args(args).envs(crate::services::aws_env(s)).output().unwrap();
    assert!(out.status.success(), "aws {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn stderr(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

fn json(a: &assert_cmd::assert::Assert) -> serde_json::Value {
    serde_json::from_slice(&a.get_output().stdout).expect("stdout is JSON")
}

fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    github::hex(&sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

/// The whole release: GitHub rate-limits the first call (429, `retry-after: 1`) and many
/// other releases make the lookups follow `Link` pagination. The first run is cut off in
/// the middle of uploading SHA256SUMS (every attempt), leaving a draft with one good asset
/// and a broken one; the second run finishes the same release (the good asset kept, the
/// broken one replaced, nothing duplicated), publishes it, publishes 1.3.0 to prd and starts
/// its pipeline, which waits for approval. A third run has nothing to release.
#[test]
fn release_survives_a_cut_upload_and_a_rerun_completes_the_same_release() {
    let r = Repo::new();
    r.commit("a.py", "feat(api): add /health");
    r.commit("b.py", "fix: trailing slash\n\nCloses #4");
    {
        let mut s = r.gh.state();
        for i in 0..120 {
            s.seed_release(&format!("v0.{i}.0"), false);
        }
        s.faults.rate_limit = Some((429, 1));
        s.faults.cut_uploads.insert("SHA256SUMS".into(), 10);
    }

    let first = r.release(&[]).code(1);
    let err = stderr(&first);
    assert!(err.contains("Version 1.3.0 (minor since v1.2.0, 2 commits)"), "{err}");
    assert!(err.contains("Uploaded app-1.3.0.zip") && err.contains("SHA256SUMS"), "{err}");
    let head = r.head();
    let release_id = {
        let s = r.gh.state();
        assert_eq!(s.rate_limited, 1, "the 429 was answered once and retried");
        let found = s.release("v1.3.0");
        assert_eq!(found.len(), 1);
        let draft = found[0];
        assert!(draft.draft, "not published while an asset is missing");
        assert_eq!(draft.target_commitish, head);
        assert_eq!(s.tags.get("v1.3.0"), Some(&head), "the tag is on GitHub at HEAD");
        let states: Vec<(&str, &str)> = draft.assets.iter().map(|a| (a.name.as_str(), a.state.as_str())).collect();
        assert_eq!(states, [("app-1.3.0.zip", "uploaded"), ("SHA256SUMS", "starter")]);
        // No release for the tag yet: every page was listed (121 releases, 100 a page).
        assert_eq!(s.requests.iter().filter(|q| *q == "GET /repos/acme/hello/releases").count(), 2);
        draft.id
    };
    assert!(r.emu.state().pipelines[&r.pipeline].executions.is_empty(), "nothing started before the release");

    // 100 newer releases: the draft is now on the second page of "List releases".
    let listed_before = {
        let mut s = r.gh.state();
        s.faults.cut_uploads.clear();
        for i in 0..100 {
            s.seed_release(&format!("v0.0.{i}"), false);
        }
        s.requests.len()
    };
    let second = r.release(&["--output", "json"]).success();
    let lists =
        r.gh.state().requests[listed_before..].iter().filter(|q| *q == "GET /repos/acme/hello/releases").count();
    assert_eq!(lists, 2, "the draft was found by following the Link header to page 2");
    let summary = json(&second);
    assert_eq!(summary["version"], "1.3.0");
    assert_eq!(summary["resumed"], true, "{summary:#}");
    assert_eq!(summary["release"]["id"], release_id, "the same release");
    let actions: Vec<(String, String)> = summary["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["name"].as_str().unwrap().to_owned(), a["action"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        actions,
        [
            ("app-1.3.0.zip".to_owned(), "kept".to_owned()),
            ("SHA256SUMS".to_owned(), "replaced".to_owned()),
            ("release.json".to_owned(), "uploaded".to_owned()),
        ]
    );
    {
        let s = r.gh.state();
        let found = s.release("v1.3.0");
        assert_eq!(found.len(), 1, "one release for the tag");
        let release = found[0];
        assert!(!release.draft && !release.prerelease);
        assert_eq!(release.make_latest.as_deref(), Some("true"));
        let mut names: Vec<&str> = release.assets.iter().map(|a| a.name.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["SHA256SUMS", "app-1.3.0.zip", "release.json"], "no duplicates");
        for asset in &release.assets {
            assert_eq!(asset.state, "uploaded");
            let local = r.path().join("dist").join(&asset.name);
            assert_eq!(github::hex(&<sha2::Sha256 as sha2::Digest>::digest(&asset.data)), sha256_file(&local));
            let reported = summary["assets"].as_array().unwrap().iter().find(|a| a["name"] == asset.name.as_str());
            assert_eq!(reported.unwrap()["sha256"], sha256_file(&local).as_str());
        }
        let feat = &release.body;
        assert!(feat.contains("### Features") && feat.contains("### Fixes"), "{feat}");
        assert!(feat.contains("**api:** add /health ([") && feat.contains("by Test"), "{feat}");
        assert!(feat.contains("https://github.com/acme/hello/commit/"), "{feat}");
    }
    // Local tag on HEAD too.
    let out = std::process::Command::new("git").arg("-C").arg(r.path()).args(["rev-list", "-n1", "v1.3.0"]).output();
    assert_eq!(String::from_utf8(out.unwrap().stdout).unwrap().trim(), head);

    // Published to prd and its pipeline started for 1.3.0, waiting for approval.
    let id = summary["pipeline"]["execution_id"].as_str().expect("an execution id").to_owned();
    let revision = r.emu.state().execution(&r.pipeline, &id).expect("the execution exists").revision.clone();
    assert!(revision.is_some(), "it runs the published source revision");
    let name = r.pipeline.clone();
    r.emu.wait_until("the approval waits", |s| {
        s.execution(&name, &id).is_some_and(|e| e.actions[1].run.as_ref().is_some_and(|run| run.token.is_some()))
    });
    assert_eq!(summary["pipeline"]["approve"], format!("gantry approve --env prd --execution {id}"));
    let console = summary["pipeline"]["console_url"].as_str().unwrap();
    assert!(console.starts_with("https://us-east-1.console.aws.amazon.com/codesuite/codepipeline/pipelines/"));
    assert!(console.contains(&format!("/{}/executions/{id}/", r.pipeline)), "{console}");
    assert_eq!(r.emu.state().pipelines[&r.pipeline].executions.len(), 1);
    aws(&["s3api", "head-object", "--bucket", &r.bucket, "--key", "releases/hello/1.3.0/release.json"]);
    let outputs = std::fs::read_to_string(r.path().join(".gantry/github-output")).unwrap();
    let output = |key: &str| {
        let start = outputs.rfind(&format!("{key}<<")).unwrap_or_else(|| panic!("no `{key}` output: {outputs}"));
        outputs[start..].lines().nth(1).unwrap_or_default().to_owned()
    };
    assert_eq!(output("version"), "1.3.0");
    assert_eq!(output("pipeline-execution-id"), id);

    // Nothing new since: a clear refusal, exit 2, nothing changed.
    let before = r.gh.state().requests.len();
    let third = r.release(&[]).code(2);
    let err = stderr(&third);
    assert!(err.contains("nothing to release: HEAD is v1.3.0, already released"), "{err}");
    assert!(err.contains("hint:") && err.contains("gantry pipeline start --env ENV --version 1.3.0"), "{err}");
    let s = r.gh.state();
    assert!(s.requests[before..].iter().all(|q| q.starts_with("GET ")), "{:?}", &s.requests[before..]);
}

/// `--dry-run` prints the version, the changelog and every step, and sends nothing: no
/// request reaches GitHub, no tag, no dist/. It needs no token.
#[test]
fn dry_run_prints_the_plan_and_touches_nothing() {
    let r = Repo::new();
    r.commit("a.py", "feat!: new config format");
    r.commit("b.py", "perf: faster start");
    let out = gantry(r.path())
        .args(["release", "--dry-run", "--pre", "rc"])
        .env("GITHUB_REPOSITORY", "acme/hello")
        .env_remove("GITHUB_TOKEN")
        .env_remove("GH_TOKEN")
        .assert()
        .success();
    let err = stderr(&out);
    assert!(err.contains("Version 2.0.0-rc.1 (major since v1.2.0, 2 commits)"), "{err}");
    assert!(err.contains("### Breaking changes") && err.contains("new config format"), "{err}");
    assert!(err.contains("### Performance") && err.contains("faster start"), "{err}");
    for step in [
        "package 2.0.0-rc.1 (app)",
        "tag v2.0.0-rc.1 on",
        "create it as a draft",
        "app-2.0.0-rc.1.zip, SHA256SUMS, release.json",
        "publish the release as a pre-release",
        &format!("publish 2.0.0-rc.1 to environment `prd` (s3://{})", r.bucket),
        &format!("start pipeline `{}` for 2.0.0-rc.1", r.pipeline),
    ] {
        assert!(err.contains(step), "`{step}` in:\n{err}");
    }
    assert!(err.contains("Dry run: nothing was changed"), "{err}");
    assert!(r.gh.state().requests.is_empty());
    assert!(!r.path().join("dist").exists());
    let tags = std::process::Command::new("git").arg("-C").arg(r.path()).args(["tag"]).output().unwrap();
    assert_eq!(String::from_utf8(tags.stdout).unwrap().trim(), "v1.2.0");

    let out = gantry(r.path())
        .args(["release", "--dry-run", "--bump", "patch", "--output", "json"])
        .env("GITHUB_REPOSITORY", "acme/hello")
        .assert()
        .success();
    let plan = json(&out);
    assert_eq!((plan["version"].as_str(), plan["dry_run"].as_bool()), (Some("1.2.1"), Some(true)));
    assert_eq!(plan["steps"].as_array().map(Vec::len), Some(7));
}

/// Refusals, each with its message and exit code, before anything is changed: no token,
/// a dirty tree, a tag GitHub already has on another commit, a commit GitHub does not have,
/// no repository.
#[test]
fn release_refuses_clearly_before_changing_anything() {
    let r = Repo::new();
    r.commit("a.py", "fix: one");

    let out = gantry(r.path())
        .arg("release")
        .env("GITHUB_REPOSITORY", "acme/hello")
        .env_remove("GITHUB_TOKEN")
        .env_remove("GH_TOKEN")
        .assert()
        .code(2);
    let err = stderr(&out);
    assert!(err.contains("no GitHub token: set GITHUB_TOKEN (or GH_TOKEN)") && err.contains("hint:"), "{err}");

    std::fs::write(r.path().join("app/server.py"), "changed").unwrap();
    let err = stderr(&r.release(&[]).code(2));
    assert!(err.contains("cannot release from a dirty tree: app/server.py"), "{err}");
    git(r.path(), &["checkout", "--", "app/server.py"]);

    r.gh.state().tags.insert("v1.2.1".into(), "0123456789abcdef0123456789abcdef01234567".into());
    let err = stderr(&r.release(&[]).code(2));
    assert!(
        err.contains("tag v1.2.1 already exists on GitHub on commit 0123456789abcdef0123456789abcdef01234567"),
        "{err}"
    );
    assert!(r.gh.state().releases.is_empty());
    assert!(!r.path().join("dist").exists(), "nothing packaged");

    // A commit never pushed: GitHub cannot tag it (422 "Object does not exist"); the message
    // says to push, and no tag is left behind here either.
    {
        let mut s = r.gh.state();
        s.tags.clear();
        s.commits = Some(Vec::new());
    }
    let err = stderr(&r.release(&[]).code(1));
    assert!(err.contains("GitHub cannot create tag v1.2.1 on commit"), "{err}");
    assert!(err.contains("Object does not exist") && err.contains("git push origin HEAD"), "{err}");
    let tags = std::process::Command::new("git").arg("-C").arg(r.path()).arg("tag").output().unwrap();
    assert_eq!(String::from_utf8(tags.stdout).unwrap().trim(), "v1.2.0");
    assert!(r.gh.state().releases.is_empty());

    let out = gantry(r.path()).args(["release", "--dry-run"]).env_remove("GITHUB_REPOSITORY").assert().code(2);
    assert!(stderr(&out).contains("cannot tell the GitHub repository"), "{}", stderr(&out));
}

/// The client on its own: a 422 `already_exists` on create returns the existing draft;
/// a 403 with `retry-after` is waited out; assets without `digest` are downloaded and
/// hashed, and a matching one is kept, a different one replaced.
#[tokio::test(flavor = "multi_thread")]
async fn client_handles_422_rate_limits_and_assets_without_digest() {
    use gantry::github::releases::{AssetAction, LocalAsset};
    let gh = GitHub::start("acme", "tools");
    let repo = gantry::github::Repo::parse("acme/tools").unwrap();
    let client = gantry::github::GitHub::new(github::TOKEN, &gh.api, repo).unwrap();
    let draft = client.create_draft("v1.0.0", "abc", "notes", false).await.unwrap();
    assert!(draft.upload_url.starts_with(&gh.uploads), "{}", draft.upload_url);
    gh.state().faults.rate_limit = Some((403, 1));
    let again = client.create_draft("v1.0.0", "abc", "notes", false).await.unwrap();
    assert_eq!(again.id, draft.id, "422 already_exists: the existing draft");
    assert_eq!(gh.state().rate_limited, 1);
    assert!(gh.state().requests.iter().filter(|q| *q == "POST /repos/acme/tools/releases").count() >= 2);

    let dir = tempfile::tempdir().unwrap();
    let local = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        use sha2::Digest;
        LocalAsset {
            name: name.into(),
            path,
            size: text.len() as u64,
            sha256: github::hex(&sha2::Sha256::digest(text.as_bytes())),
        }
    };
    let files = [local("a.zip", "aaaa"), local("b.zip", "bbbb")];
    let done = client.sync_assets(&draft, &files, &|_| {}).await.unwrap();
    assert!(done.iter().all(|a| a.action == AssetAction::Uploaded));
    gh.state().faults.hide_digest = true;
    let files = [local("a.zip", "aaaa"), local("b.zip", "BBBB")];
    let done = client.sync_assets(&draft, &files, &|_| {}).await.unwrap();
    assert_eq!(done.iter().map(|a| a.action).collect::<Vec<_>>(), [AssetAction::Kept, AssetAction::Replaced]);
    {
        let s = gh.state();
        assert!(
            s.requests.iter().any(|q| q.starts_with("GET /repos/acme/tools/releases/assets/")),
            "downloaded to hash"
        );
        let assets = &s.releases[0].assets;
        assert_eq!(assets.len(), 2);
        assert_eq!(assets.iter().find(|a| a.name == "b.zip").unwrap().data, b"BBBB");
    }

    // A wrong token is GitHub's 401, named with its call.
    let bad = gantry::github::GitHub::new("nope", &gh.api, gantry::github::Repo::parse("acme/tools").unwrap()).unwrap();
    let err = bad.release_by_tag("v1.0.0").await.unwrap_err();
    assert!(err.to_string().contains("HTTP 401: Bad credentials"), "{err}");
}

/// `gantry deploy` in Actions records a GitHub Deployment per run with `in_progress` then
/// `success`; the next success marks the earlier one inactive; a rolled-back deploy ends
/// `failure`. A GitHub that cannot be
/// reached only warns: the deploy still succeeds.
#[test]
fn deploy_in_actions_records_github_deployments_and_survives_github_failing() {
    let p = crate::deploy::Project::with("{ type = \"all-at-once\" }", "", "");
    p.package("1.0.0", &[]);
    let gh = GitHub::start("acme", "hello");
    let deploy = |version: &str, api: &str| {
        gantry(p.path())
            .args(["--env", "dev", "deploy", "--version", version])
            .envs(gh.env())
            .env("GITHUB_API_URL", api)
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_SHA", "1111111111111111111111111111111111111111")
            .env("GITHUB_RUN_ID", "77")
            .assert()
    };
    deploy("1.0.0", &gh.api).success();
    p.package("1.0.1", &[]);
    deploy("1.0.1", &gh.api).success();
    {
        let s = gh.state();
        assert_eq!(s.deployments.len(), 2);
        let states = |i: usize| s.deployments[i].statuses.iter().map(|t| t.0.as_str()).collect::<Vec<_>>();
        assert_eq!(states(0), ["in_progress", "success", "inactive"]);
        assert_eq!(states(1), ["in_progress", "success"]);
        let d = &s.deployments[1];
        assert_eq!((d.environment.as_str(), d.git_ref.as_str()), ("dev", "1111111111111111111111111111111111111111"));
        assert_eq!(d.payload["version"], "1.0.1");
        assert!(!d.production);
        assert_eq!(d.statuses[1].2.as_deref(), Some("https://github.com/acme/hello/actions/runs/77"));
    }
    // A broken release is rolled back (exit 3): its deployment ends `failure`, and the
    // deployment of what stays live keeps its `success`.
    p.package("2.0.0", &[("DEMO_BROKEN", "1")]);
    deploy("2.0.0", &gh.api).code(3);
    {
        let s = gh.state();
        assert_eq!(s.deployments.len(), 3);
        let states: Vec<&str> = s.deployments[2].statuses.iter().map(|t| t.0.as_str()).collect();
        assert_eq!(states, ["in_progress", "failure"]);
        assert!(s.deployments[2].statuses[1].1.contains("2.0.0 failed"), "{:?}", s.deployments[2].statuses);
        assert_eq!(s.deployments[1].statuses.last().unwrap().0, "success");
    }
    p.assert_live("1.0.1");

    p.package("1.0.2", &[]);
    let out = deploy("1.0.2", "http://127.0.0.1:9").success();
    let err = stderr(&out);
    assert!(err.contains("warning: cannot record the GitHub deployment of `dev`"), "{err}");
    p.assert_live("1.0.2");
    assert!(!err.contains(github::TOKEN), "the token never shows");
}
