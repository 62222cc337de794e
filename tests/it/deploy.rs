//! `gantry deploy`, `rollback`, `status`, `history` and `plan` as a user runs them, on the
//! example app (examples/hello) as `local` replicas behind real nginx: good releases, a
//! broken one rolled back by itself, ten deploys racing for the lock, kill -9 and Ctrl-C
//! in the middle of a deploy.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::{free_port, gantry};

/// A copy of the example project on its own ports; stops its nginx and replicas on drop.
pub(crate) struct Project {
    dir: tempfile::TempDir,
    port: u16,
}

impl Project {
    fn new(strategy: &str) -> Self {
        Self::with(strategy, "", "")
    }

    /// `extra` is appended to gantry.toml; `env_extra` goes under [environments.dev].
    pub(crate) fn with(strategy: &str, extra: &str, env_extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let app = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello/app");
        copy_dir(&app, &dir.path().join("app"));
        let port = free_port();
        let preview = free_port();
        let config = format!(
            "[project]\nname = \"hello\"\n\n[artifacts.app]\nroot = \"app\"\nexclude = [\"__pycache__/\", \"*.pyc\"]\n\
             build = \"python3 app/build.py\"\n\n[targets.web]\nkind = \"local\"\nstrategy = {strategy}\n\
             local = {{ artifact = \"app\", command = \"python3 server.py\", replicas = 2, listen = \"127.0.0.1:{port}\", \
             preview = \"127.0.0.1:{preview}\", drain = \"200ms\" }}\n\n[[targets.web.health]]\nurl = \"{{url}}/healthz\"\n\
             interval = \"250ms\"\ntimeout = \"200ms\"\nhealthy_threshold = 2\nunhealthy_threshold = 2\n\n\
             {extra}\n[environments.dev]\ntargets = [\"web\"{}]\n{env_extra}\n",
            if extra.is_empty() { "" } else { ", \"api\"" }
        );
        std::fs::write(dir.path().join("gantry.toml"), config).unwrap();
        Self { dir, port }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn package(&self, version: &str, env: &[(&str, &str)]) {
        gantry(self.path()).args(["package", "-q", "--version", version]).envs(env.iter().copied()).assert().success();
    }

    fn deploy(&self, version: &str) -> assert_cmd::assert::Assert {
        gantry(self.path()).args(["--env", "dev", "deploy", "--version", version]).assert()
    }

    /// The version users get, asked `n` times (one plain HTTP/1.0 request each).
    fn versions(&self, n: usize) -> Vec<String> {
        (0..n).map(|_| get_version(self.port)).collect()
    }

    pub(crate) fn assert_live(&self, version: &str) {
        let seen = self.versions(10);
        assert!(seen.iter().all(|v| v == version), "users get {seen:?}, expected only {version}");
    }

    pub(crate) fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = gantry(self.path()).args(["--env", "dev", "--output", "json"]).args(args).assert().success();
        serde_json::from_slice(&out.get_output().stdout).unwrap()
    }

    fn state_dir(&self) -> PathBuf {
        self.path().join(".gantry/local/dev/web")
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let toml = format!("artifact = \"app\"\ncommand = \"true\"\nlisten = \"127.0.0.1:{}\"\n", self.port);
        let cfg: gantry::config::LocalTarget = toml::from_str(&toml).unwrap();
        if let Ok(mut t) = gantry::targets::local::LocalTarget::new("web", &cfg, self.state_dir()) {
            let _ = t.down();
        }
    }
}

fn get_version(port: u16) -> String {
    use std::io::{Read, Write};
    let attempt = || -> std::io::Result<String> {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
        stream.write_all(b"GET /version HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response)
    };
    match attempt() {
        Ok(response) => {
            let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
            serde_json::from_str::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v["version"].as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("bad answer: {response}"))
        }
        Err(e) => format!("no answer: {e}"),
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

fn stderr(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

#[test]
fn deploy_roll_back_by_itself_rollback_status_and_history() {
    let p = Project::new("{ type = \"blue-green\", bake = \"1s\" }");
    let plan = p.json(&["plan"]);
    assert_eq!(plan["targets"][0]["steps"][0]["step"], "start-new");
    assert_eq!(plan["targets"][0]["steps"].as_array().unwrap().len(), 6);

    p.package("1.0.0", &[]);
    p.deploy("1.0.0").success();
    p.assert_live("1.0.0");
    p.package("2.0.0", &[]);
    p.deploy("2.0.0").success();
    p.assert_live("2.0.0");

    // A release whose health check fails never gets users, and is rolled back by itself.
    p.package("3.0.0", &[("DEMO_BROKEN", "1")]);
    let failed = p.deploy("3.0.0").code(3);
    let err = stderr(&failed);
    assert!(err.contains("failed and was rolled back"), "{err}");
    assert!(err.contains("status 503"), "the failing check and its answer are named: {err}");
    assert!(err.contains("hint: live now: 2.0.0"), "{err}");
    p.assert_live("2.0.0");

    // Deploying what is live again changes nothing.
    let again = p.deploy("2.0.0").success();
    assert!(stderr(&again).contains("already runs 2.0.0"), "{}", stderr(&again));

    // Back to the good release before 2.0.0 (3.0.0 never went live).
    gantry(p.path()).args(["--env", "dev", "rollback"]).assert().success();
    p.assert_live("1.0.0");

    let history = p.json(&["history"]);
    let rows: Vec<(String, String, String)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap().into(),
                d["release"]["version"].as_str().unwrap().into(),
                d["state"].as_str().unwrap().into(),
            )
        })
        .collect();
    let expect = [
        ("rollback", "1.0.0", "succeeded"),
        ("deploy", "3.0.0", "rolled-back"),
        ("deploy", "2.0.0", "succeeded"),
        ("deploy", "1.0.0", "succeeded"),
    ];
    assert_eq!(rows, expect.map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned())));
    let broken = &history[1];
    assert_eq!(broken["restored"]["version"], "2.0.0");
    assert!(broken["phases"].as_array().unwrap().iter().any(|ph| ph["name"] == "rollback" && ph["ok"] == true));

    let status = p.json(&["status"]);
    assert_eq!(status["targets"][0]["live"]["version"], "1.0.0");
    assert!(status["lock"].is_null());
}

#[test]
fn of_ten_concurrent_deploys_exactly_one_proceeds_and_the_others_exit_6() {
    let p = Project::new("{ type = \"blue-green\", bake = \"1s\" }");
    p.package("1.0.0", &[]);
    let bin = assert_cmd::cargo::cargo_bin("gantry");
    let children: Vec<_> = (0..10)
        .map(|_| {
            Command::new(&bin)
                .args(["--env", "dev", "deploy", "--version", "1.0.0"])
                .current_dir(p.path())
                .env_remove("GANTRY_ENV")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<_> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    let codes: Vec<i32> = outs.iter().map(|o| o.status.code().unwrap()).collect();
    assert_eq!(codes.iter().filter(|&&c| c == 0).count(), 1, "{codes:?}");
    assert_eq!(codes.iter().filter(|&&c| c == 6).count(), 9, "{codes:?}");
    for o in outs.iter().filter(|o| o.status.code() == Some(6)) {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("locked by") && err.contains("deploy 1.0.0") && err.contains("--wait-lock"), "{err}");
    }
    p.assert_live("1.0.0");
}

/// Starts a deploy of `version` with JSON events and returns it once `phase` has started.
fn deploy_until(p: &Project, version: &str, phase: &str) -> std::process::Child {
    let bin = assert_cmd::cargo::cargo_bin("gantry");
    let mut child = Command::new(bin)
        .args(["--env", "dev", "--output", "json", "deploy", "--version", version])
        .current_dir(p.path())
        .env("GANTRY_TARGETS__WEB__STRATEGY__BAKE", "60s")
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
    std::thread::spawn(move || lines.for_each(drop));
    child
}

#[test]
fn after_a_kill_9_mid_deploy_the_next_command_rolls_it_back() {
    let p = Project::new("{ type = \"blue-green\", bake = \"1s\" }");
    p.package("1.0.0", &[]);
    p.deploy("1.0.0").success();
    p.package("2.0.0", &[]);
    // Killed while baking: users are on 2.0.0, which has not been verified yet.
    let mut child = deploy_until(&p, "2.0.0", "bake");
    child.kill().unwrap();
    child.wait().unwrap();

    let status = gantry(p.path()).args(["--env", "dev", "status"]).assert().success();
    let err = stderr(&status);
    assert!(err.contains("left unfinished at phase `bake`: roll back"), "{err}");
    p.assert_live("1.0.0");
    let history = p.json(&["history"]);
    assert_eq!(history[0]["state"], "rolled-back");
    assert!(history[0]["reason"].as_str().unwrap().contains("stopped during phase `bake`"), "{history}");
    // And the environment deploys again normally.
    p.deploy("2.0.0").success();
    p.assert_live("2.0.0");
}

#[test]
fn ctrl_c_rolls_back_the_phase_in_progress_and_exits_130() {
    let p = Project::new("{ type = \"canary\", steps = [50, 100], bake = \"1s\" }");
    p.package("1.0.0", &[]);
    p.deploy("1.0.0").success();
    p.package("2.0.0", &[]);
    let child = deploy_until(&p, "2.0.0", "bake");
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    p.assert_live("1.0.0");
    let history = p.json(&["history"]);
    assert_eq!(history[0]["state"], "rolled-back");
    assert_eq!(history[0]["reason"], "interrupted during phase `bake`");
    assert!(p.json(&["status"])["lock"].is_null(), "the lock is released");
}

/// A second target on its own ports whose health demands version 1.0.0: any other release
/// fails there after the first target has already moved.
fn api_target() -> (String, u16) {
    let (port, preview) = (free_port(), free_port());
    let toml = format!(
        "[targets.api]\nkind = \"local\"\nstrategy = {{ type = \"blue-green\" }}\n\
         local = {{ artifact = \"app\", command = \"python3 server.py\", replicas = 1, listen = \"127.0.0.1:{port}\", \
         preview = \"127.0.0.1:{preview}\", drain = \"200ms\" }}\n\n[[targets.api.health]]\nurl = \"{{url}}/version\"\n\
         interval = \"250ms\"\ntimeout = \"200ms\"\nhealthy_threshold = 2\nunhealthy_threshold = 2\n\
         json = {{ pointer = \"/version\", equals = \"1.0.0\" }}\n"
    );
    (toml, port)
}

#[test]
fn when_a_later_target_fails_the_targets_already_moved_go_back_too() {
    let (api, api_port) = api_target();
    let p = Project::with("{ type = \"blue-green\" }", &api, "");
    let api_guard = ApiDown { dir: p.path().to_path_buf(), port: api_port };
    p.package("1.0.0", &[]);
    p.deploy("1.0.0").success();
    p.assert_live("1.0.0");
    p.package("2.0.0", &[]);
    let failed = p.deploy("2.0.0").code(3);
    let err = stderr(&failed);
    assert!(err.contains("target `api`") && err.contains("/version is \"2.0.0\""), "{err}");
    p.assert_live("1.0.0");
    let history = p.json(&["history"]);
    let rows: Vec<(String, String, String, String)> = history
        .as_array()
        .unwrap()
        .iter()
        .take(3)
        .map(|d| {
            let s = |k: &str| d[k].as_str().unwrap_or_default().to_owned();
            (s("target"), s("kind"), d["release"]["version"].as_str().unwrap().to_owned(), s("state"))
        })
        .collect();
    let expect = [
        ("web", "rollback", "1.0.0", "succeeded"),
        ("api", "deploy", "2.0.0", "rolled-back"),
        ("web", "deploy", "2.0.0", "succeeded"),
    ];
    assert_eq!(rows, expect.map(|(a, b, c, d)| (a.to_owned(), b.to_owned(), c.to_owned(), d.to_owned())));
    drop(api_guard);
}

struct ApiDown {
    dir: PathBuf,
    port: u16,
}

impl Drop for ApiDown {
    fn drop(&mut self) {
        let toml = format!("artifact = \"app\"\ncommand = \"true\"\nlisten = \"127.0.0.1:{}\"\n", self.port);
        let cfg: gantry::config::LocalTarget = toml::from_str(&toml).unwrap();
        if let Ok(mut t) = gantry::targets::local::LocalTarget::new("api", &cfg, self.dir.join(".gantry/local/dev/api"))
        {
            let _ = t.down();
        }
    }
}

#[test]
fn the_ledger_can_live_in_s3_in_the_same_format() {
    let s = crate::services::services();
    let bucket = crate::services::unique("ledger");
    let aws = |args: &[&str]| {
        let out = Command::new(&s.aws_cli).args(args).envs(crate::services::aws_env(s)).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    aws(&["s3api", "create-bucket", "--bucket", &bucket]);
    let p = Project::with("{ type = \"all-at-once\" }", "", &format!("state = \"s3://{bucket}/gantry/dev\""));
    p.package("1.0.0", &[]);
    gantry(p.path())
        .args(["--env", "dev", "deploy", "--version", "1.0.0"])
        .envs(crate::services::aws_env(s))
        .assert()
        .success();
    p.assert_live("1.0.0");
    let listed = aws(&["s3api", "list-objects-v2", "--bucket", &bucket, "--prefix", "gantry/dev/"]);
    let listing: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let keys: Vec<&str> = listing["Contents"].as_array().unwrap().iter().map(|o| o["Key"].as_str().unwrap()).collect();
    assert_eq!(keys.len(), 1, "one record and no lock left behind: {keys:?}");
    assert!(keys[0].starts_with("gantry/dev/deployments/") && keys[0].ends_with(".json"), "{keys:?}");
    let out = gantry(p.path())
        .args(["--env", "dev", "--output", "json", "history"])
        .envs(crate::services::aws_env(s))
        .assert()
        .success();
    let history: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(history[0]["state"], "succeeded");
    assert_eq!(history[0]["strategy"], "all-at-once");
}
