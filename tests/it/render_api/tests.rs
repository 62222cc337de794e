//! The `render` target through the real binary against the Render API emulator. Each
//! release's instance answers the health check path as the test says (per image tag or
//! commit), so every failure below is a real one: Render's own check, gantry's gate on the
//! live service URL, or a bake that sees the service break.

#![cfg(test)]

use std::path::Path;

use super::Render;
use super::model::Behaviour;
use crate::support::{gantry, git, stderr, write_tree};

const KEY: &str = "rnd_emulatedSecretKey0123456789";
const IMAGE: &str = "docker.io/acme/mims-graph-api";

struct Fixture {
    dir: tempfile::TempDir,
    render: Render,
    service: String,
    url: String,
}

impl Fixture {
    /// A project deploying `api` to a Render web service (image-backed unless `git`), whose
    /// live deploy (made by hand) runs tag `0.9.0` or commit `0000000…`.
    fn new(strategy: &str, render_extra: &str, git_backed: bool) -> Self {
        let render = Render::start(KEY);
        let latest = format!("{IMAGE}:latest");
        let (service, url) = render.service("mims-graph-api", (!git_backed).then_some(latest.as_str()));
        if git_backed {
            render.live_by_hand(&service, None, Some("0000000000000000000000000000000000000000"));
        } else {
            render.set("0.9.0", Behaviour::Healthy);
            render.live_by_hand(&service, Some(&format!("{IMAGE}:0.9.0")), None);
        }
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "[project]\nname = \"mims\"\n\n[artifacts.api]\nroot = \"api\"\n\n\
             [environments.prd]\ntargets = [\"api\"]\n\n\
             [targets.api]\nkind = \"render\"\nstrategy = {strategy}\n\
             render = {{ service = \"{service}\", poll_interval = \"100ms\"{render_extra} }}\n\n\
             [[targets.api.health]]\nurl = \"{{url}}/api/health\"\ninterval = \"200ms\"\ntimeout = \"200ms\"\n\
             healthy_threshold = 2\nunhealthy_threshold = 2\njson = {{ pointer = \"/dgraphStatus\", equals = \"OK\" }}\n"
        );
        write_tree(dir.path(), &[("gantry.toml", &config), ("api/server.js", "// v0\n")]);
        Self { dir, render, service, url }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn gantry(&self, args: &[&str]) -> assert_cmd::Command {
        let mut cmd = gantry(self.path());
        cmd.args(["--env", "prd"])
            .args(args)
            .env("RENDER_API_KEY", KEY)
            .env("GANTRY_RENDER_API_URL", self.render.api_url());
        cmd
    }

    /// Packages `version` and says what its image (or commit) does.
    fn release(&self, version: &str, behaviour: Behaviour) {
        write_tree(self.path(), &[("api/server.js", &format!("// {version}\n"))]);
        gantry(self.path()).args(["package", "-q", "--version", version]).assert().success();
        self.render.set(version, behaviour);
    }

    fn deploy(&self, version: &str) -> assert_cmd::assert::Assert {
        self.gantry(&["deploy", "--version", version]).assert()
    }

    fn live(&self) -> String {
        self.render.live(&self.service).unwrap_or_default()
    }

    /// What the service URL's health path answers now.
    fn served(&self) -> serde_json::Value {
        let (status, body) = crate::stand_in::get(&format!("{}/api/health", self.url));
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }
}

fn image(tag: &str) -> String {
    format!("{IMAGE}:{tag}")
}

#[test]
fn render_deploys_go_live_and_failed_builds_never_replace_the_live_deploy() {
    let f = Fixture::new("{ type = \"all-at-once\" }", "", false);
    f.release("1.0.0", Behaviour::Healthy);
    let out = f.deploy("1.0.0").success();
    let err = stderr(&out);
    assert_eq!(f.live(), image("1.0.0"), "{err}");
    assert_eq!(f.served()["release"], "1.0.0");
    let trigger = f.render.requests().into_iter().find(|(r, _)| r.starts_with("POST ") && r.ends_with("/deploys"));
    let (_, body) = trigger.expect("a Trigger deploy call");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["imageUrl"], image("1.0.0"));
    // The old deploy was deactivated by Render, not removed.
    let deploys = f.render.deploys(&f.service);
    assert_eq!(deploys.iter().filter(|d| d.1 == "deactivated").count(), 1, "{deploys:?}");

    // Build fails: the phase fails at once, nothing to roll back, 1.0.0 stays live.
    f.release("2.0.0", Behaviour::BuildFails);
    let err = stderr(&f.deploy("2.0.0").code(3));
    assert!(err.contains("ended `build_failed`: the build failed"), "{err}");
    assert_eq!(f.live(), image("1.0.0"));

    // Render's own health check fails the update: the new deploy never takes traffic.
    f.release("3.0.0", Behaviour::Unhealthy);
    let err = stderr(&f.deploy("3.0.0").code(3));
    assert!(err.contains("ended `update_failed`"), "{err}");
    assert_eq!(f.live(), image("1.0.0"));
    assert!(
        !f.render.requests().iter().any(|(r, _)| r.ends_with("/rollback")),
        "the live deploy never changed, so nothing is rolled back"
    );

    // Deploying the live release again changes nothing.
    let err = stderr(&f.deploy("1.0.0").success());
    assert!(err.contains("already runs 1.0.0"), "{err}");
}

#[test]
fn render_gate_and_bake_failures_roll_back_to_the_previous_deploy() {
    let f = Fixture::new("{ type = \"all-at-once\", bake = \"1s\" }", "", false);
    f.release("1.0.0", Behaviour::Healthy);
    f.deploy("1.0.0").success();
    let first = f.render.deploys(&f.service)[0].0.clone();

    // Live, passes Render's check (200), fails gantry's (dgraphStatus ERROR): rolled back.
    f.release("2.0.0", Behaviour::DgraphDown);
    let err = stderr(&f.deploy("2.0.0").code(3));
    assert!(err.contains("health check failed"), "{err}");
    let rollback = f.render.requests().into_iter().find(|(r, _)| r.ends_with("/rollback")).expect("Roll back deploy");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&rollback.1).unwrap()["deployId"], first.as_str());
    let deploys = f.render.deploys(&f.service);
    assert_eq!((deploys[0].1.as_str(), deploys[0].2.as_str()), ("live", "rollback"), "{deploys:?}");
    assert_eq!(f.live(), image("1.0.0"));
    assert_eq!(f.served()["release"], "1.0.0");

    // Healthy through the gates, breaks during the bake: rolled back too.
    f.release("3.0.0", Behaviour::BreaksAfter(3));
    let err = stderr(&f.deploy("3.0.0").code(3));
    assert!(err.contains("bake") && err.contains("health check failed"), "{err}");
    assert_eq!(f.live(), image("1.0.0"));
    assert_eq!(f.served()["dgraphStatus"], "OK");

    // gantry rollback after a good 4.0.0 goes back to 1.0.0's deploy through Roll back deploy.
    f.release("4.0.0", Behaviour::Healthy);
    f.deploy("4.0.0").success();
    assert_eq!(f.live(), image("4.0.0"));
    let rollbacks = |f: &Fixture| f.render.requests().iter().filter(|(r, _)| r.ends_with("/rollback")).count();
    let before = rollbacks(&f);
    f.gantry(&["rollback"]).assert().success();
    assert_eq!(f.live(), image("1.0.0"));
    assert_eq!(rollbacks(&f), before + 1, "Render reused 1.0.0's build");
}

#[test]
fn render_deploy_that_never_goes_live_is_canceled_at_the_deadline() {
    let f = Fixture::new("{ type = \"all-at-once\", phase_deadline = \"2s\" }", "", false);
    f.release("1.0.0", Behaviour::Healthy);
    f.deploy("1.0.0").success();
    f.release("2.0.0", Behaviour::NeverLive);
    let started = std::time::Instant::now();
    let err = stderr(&f.deploy("2.0.0").code(3));
    assert!(err.contains("did not finish within the phase deadline (2s)"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    let deploys = f.render.deploys(&f.service);
    assert_eq!((deploys[0].1.as_str(), deploys[0].3.as_str()), ("canceled", image("2.0.0").as_str()), "{deploys:?}");
    assert_eq!(f.live(), image("1.0.0"));
}

#[test]
fn render_waits_out_rate_limits_and_never_shows_the_key() {
    let f = Fixture::new("{ type = \"all-at-once\" }", "", false);
    f.release("1.0.0", Behaviour::Healthy);
    f.render.throttle(3);
    let out = f.gantry(&["-vv", "deploy", "--version", "1.0.0"]).assert().success();
    let err = stderr(&out);
    assert!(err.contains("the API answered 429; trying again"), "the waits are reported: {err}");
    assert_eq!(f.live(), image("1.0.0"));
    assert!(f.render.state.lock().unwrap().auth_seen.iter().all(|a| a == &format!("Bearer {KEY}")));
    // Nothing gantry printed or wrote holds the key.
    let mut outputs = vec![err, String::from_utf8_lossy(&out.get_output().stdout).into_owned()];
    let plan = f.gantry(&["-vv", "--output", "json", "plan"]).assert().success();
    outputs.push(String::from_utf8_lossy(&plan.get_output().stdout).into_owned());
    outputs.push(stderr(&plan));
    for entry in walkdir(f.path()) {
        if let Ok(text) = std::fs::read_to_string(&entry) {
            outputs.push(text);
        }
    }
    for text in &outputs {
        assert!(!text.contains(KEY) && !text.contains("emulatedSecret"), "the key leaked: {text}");
    }

    // A wrong key: Render's 401, named with a hint, and the wrong key is not printed either.
    let out = f.gantry(&["deploy", "--version", "1.0.0"]).env("RENDER_API_KEY", "rnd_wrongWrongWrong").assert().code(1);
    let err = stderr(&out);
    assert!(err.contains(&format!("Render API Retrieve service for service `{}` answered 401", f.service)), "{err}");
    assert!(err.contains("hint: Render refused the API key in RENDER_API_KEY"), "{err}");
    assert!(!err.contains("rnd_wrong"), "{err}");
    // No key at all.
    let err = stderr(&f.gantry(&["plan"]).env_remove("RENDER_API_KEY").assert().code(1));
    assert!(err.contains("`RENDER_API_KEY` is not set") && err.contains("API Keys"), "{err}");
}

fn walkdir(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walkdir(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn render_plan_shows_one_cutover_and_what_a_deploy_sends() {
    let f = Fixture::new("{ type = \"all-at-once\", bake = \"30s\" }", "", false);
    f.release("1.0.0", Behaviour::Healthy);
    let out = f.gantry(&["--output", "json", "plan"]).assert().success();
    let plan: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let target = &plan["targets"][0];
    let notes: Vec<String> = target["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().replace(&f.url, "URL").replace(&f.service, "SERVICE"))
        .map(|n| regex_dep(&n))
        .collect();
    insta::assert_json_snapshot!(
        "render_plan",
        serde_json::json!({ "kind": target["kind"], "strategy": target["strategy"], "steps": target["steps"], "notes": notes })
    );
    let text = f.gantry(&["plan"]).assert().success();
    let steps: Vec<String> = String::from_utf8_lossy(&text.get_output().stdout)
        .lines()
        .chain(String::from_utf8_lossy(&text.get_output().stderr).lines())
        .filter(|l| l.trim_start().chars().next().is_some_and(|c| c.is_ascii_digit()))
        .map(|l| l.trim().to_owned())
        .collect();
    insta::assert_snapshot!("render_plan_text", steps.join("\n"));
    // Strategies Render cannot carry out are refused with the reason.
    let toml = std::fs::read_to_string(f.path().join("gantry.toml")).unwrap();
    write_tree(
        f.path(),
        &[("gantry.toml", &toml.replace("{ type = \"all-at-once\", bake = \"30s\" }", "{ type = \"blue-green\" }"))],
    );
    let err = stderr(&f.gantry(&["plan"]).assert().code(2));
    assert!(err.contains("a Render service cannot take a `blue-green` strategy"), "{err}");
    assert!(err.contains("use `type = \"all-at-once\"`"), "{err}");
}

/// `dep-000…12` → `dep-N`: deploy ids differ from run to run.
fn regex_dep(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("dep-") {
        out.push_str(&rest[..i + 4]);
        rest = rest[i + 4..].trim_start_matches(|c: char| c.is_ascii_digit());
        out.push('N');
    }
    out.push_str(rest);
    out
}

#[test]
fn render_git_backed_services_deploy_the_release_commit() {
    let f = Fixture::new("{ type = \"all-at-once\" }", "", true);
    git(f.path(), &["init", "-q", "-b", "main"]);
    git(f.path(), &["add", "."]);
    git(f.path(), &["commit", "-q", "-m", "one"]);
    let commit = |f: &Fixture| {
        let out =
            std::process::Command::new("git").arg("-C").arg(f.path()).args(["rev-parse", "HEAD"]).output().unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let one = commit(&f);
    gantry(f.path()).args(["package", "-q", "--version", "1.0.0"]).assert().success();
    f.render.set(&one, Behaviour::Healthy);
    f.deploy("1.0.0").success();
    assert_eq!(f.live(), one);

    write_tree(f.path(), &[("api/server.js", "// two\n")]);
    git(f.path(), &["commit", "-q", "-am", "two"]);
    let two = commit(&f);
    gantry(f.path()).args(["package", "-q", "--version", "2.0.0"]).assert().success();
    f.render.set(&two, Behaviour::DgraphDown);
    let err = stderr(&f.deploy("2.0.0").code(3));
    assert!(err.contains("health check failed"), "{err}");
    assert_eq!(f.live(), one, "rolled back to the first commit's deploy");
    let status = f.gantry(&["--output", "json", "plan"]).assert().success();
    let plan: serde_json::Value = serde_json::from_slice(&status.get_output().stdout).unwrap();
    assert_eq!(plan["targets"][0]["live"]["stable"]["version"], "1.0.0", "{plan}");
}

/// The emulator's wire format read by curl, with the requests the reference documents.
#[test]
fn render_emulator_speaks_the_documented_wire_format() {
    let render = Render::start(KEY);
    let (service, _) = render.service("api", Some(&image("latest")));
    render.set("5.0.0", Behaviour::Healthy);
    let curl = |args: &[&str]| {
        let out = std::process::Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}", "-H", "Accept: application/json"])
            .args(args)
            .output()
            .expect("curl runs");
        let text = String::from_utf8(out.stdout).unwrap();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (code.parse::<u16>().unwrap(), serde_json::from_str::<serde_json::Value>(body).unwrap())
    };
    let base = render.api_url();
    let auth = format!("Authorization: Bearer {KEY}");
    let (code, created) = curl(&[
        "-X",
        "POST",
        "-H",
        &auth,
        "-H",
        "Content-Type: application/json",
        "-d",
        &format!("{{\"imageUrl\":\"{}\",\"clearCache\":\"do_not_clear\"}}", image("5.0.0")),
        &format!("{base}/services/{service}/deploys"),
    ]);
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["trigger"], "api");
    assert_eq!(created["image"]["ref"], image("5.0.0"));
    assert!(created["image"]["sha"].as_str().unwrap().starts_with("sha256:"));
    let id = created["id"].as_str().unwrap().to_owned();
    let (code, list) = curl(&["-H", &auth, &format!("{base}/services/{service}/deploys?limit=5")]);
    assert_eq!(code, 200);
    assert_eq!(list[0]["deploy"]["id"], id.as_str());
    assert_eq!(list[0]["cursor"], id.as_str());
    std::thread::sleep(std::time::Duration::from_millis(600));
    let (_, one) = curl(&["-H", &auth, &format!("{base}/services/{service}/deploys/{id}")]);
    assert_eq!(one["status"], "live");
    let (code, svc) = curl(&["-H", &auth, &format!("{base}/services/{service}")]);
    assert_eq!((code, svc["serviceDetails"]["healthCheckPath"].as_str()), (200, Some("/api/health")));
    // A foreign repository, a missing key: the reference's error bodies.
    let (code, bad) = curl(&[
        "-X",
        "POST",
        "-H",
        &auth,
        "-d",
        "{\"imageUrl\":\"docker.io/other/thing:1\"}",
        &format!("{base}/services/{service}/deploys"),
    ]);
    assert_eq!(code, 400);
    assert!(bad["id"].is_string() && bad["message"].as_str().unwrap().contains("must match"), "{bad}");
    let (code, denied) = curl(&[&format!("{base}/services/{service}")]);
    assert_eq!((code, denied["message"].as_str()), (401, Some("unauthorized")));
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-D", "-", "-H", &auth, &format!("{base}/services/{service}")])
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(head.contains("ratelimit-remaining:") && head.contains("ratelimit-reset:"), "{head}");
}

/// Runs `gantry deploy` in the background until `phase` starts and Render has a deploy of
/// the release, then kills it (kill -9).
fn kill_during(f: &Fixture, version: &str, phase: &str) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("gantry"))
        .args(["--env", "prd", "--output", "json", "deploy", "--version", version])
        .current_dir(f.path())
        .env("RENDER_API_KEY", KEY)
        .env("GANTRY_RENDER_API_URL", f.render.api_url())
        .env("GANTRY_LOCK_LEASE", "2s")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = lines.next().expect("deploy ended before the phase").unwrap();
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        if event["event"] == "phase-started" && event["phase"] == phase {
            break;
        }
    }
    let started = std::time::Instant::now();
    while !f.render.deploys(&f.service).iter().any(|d| d.3 == image(version)) {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "no deploy of {version}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A new process knows only the ledger: it finds gantry's deploy by the release's image tag
/// and rolls back to the deploy of the ledger's previous release.
#[test]
fn render_after_a_kill_9_the_next_command_rolls_back_by_the_ledger() {
    let f = Fixture::new("{ type = \"all-at-once\", bake = \"3s\" }", "", false);
    f.release("1.0.0", Behaviour::Healthy);
    f.deploy("1.0.0").success();
    // Killed while baking: Render serves 2.0.0, which gantry has not verified.
    f.release("2.0.0", Behaviour::Healthy);
    kill_during(&f, "2.0.0", "bake");
    assert_eq!(f.live(), image("2.0.0"));
    let err = stderr(&f.gantry(&["status"]).assert().success());
    assert!(err.contains("roll back"), "{err}");
    assert_eq!(f.live(), image("1.0.0"));
    assert_eq!(f.render.deploys(&f.service)[0].2, "rollback");

    // Killed while Render still builds: the deploy is canceled and nothing else moves.
    f.release("3.0.0", Behaviour::NeverLive);
    kill_during(&f, "3.0.0", "start-new");
    std::thread::sleep(std::time::Duration::from_millis(500));
    f.gantry(&["status"]).assert().success();
    let deploys = f.render.deploys(&f.service);
    assert_eq!((deploys[0].1.as_str(), deploys[0].3.as_str()), ("canceled", image("3.0.0").as_str()), "{deploys:?}");
    assert_eq!(f.live(), image("1.0.0"));
    f.deploy("2.0.0").success();
    assert_eq!(f.live(), image("2.0.0"));
}
