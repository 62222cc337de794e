//! Multi-region deploy waves, on two `local` targets labelled with different regions (waves
//! are kind-agnostic): `east` inherits the environment's `us-east-1`, `west` says
//! `us-west-2`, so the default grouping makes two waves. Failures are real HTTP answers
//! from the example app: `west` can demand a version on `/version` (so a new release fails
//! there and the old one passes), and the test turns `east`'s live replica unhealthy with
//! the app's `POST /fail` during the bake; what each target serves afterwards is read over
//! HTTP from its nginx.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::{free_port, gantry};

struct Project {
    dir: tempfile::TempDir,
    ports: HashMap<&'static str, u16>,
}

impl Project {
    /// `env_extra` goes under `[environments.dev]` (e.g. `wave_bake`); `west_version`, when
    /// set, is the only version `west`'s health accepts.
    fn new(env_extra: &str, west_version: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let app = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello/app");
        copy_dir(&app, &dir.path().join("app"));
        let mut ports = HashMap::new();
        let mut targets = String::new();
        for (name, region) in [("east", None), ("west", Some("us-west-2"))] {
            let (port, preview) = (free_port(), free_port());
            ports.insert(name, port);
            let region = region.map(|r| format!("region = \"{r}\"\n")).unwrap_or_default();
            targets.push_str(&format!(
                "[targets.{name}]\nkind = \"local\"\n{region}strategy = {{ type = \"blue-green\" }}\n\
                 local = {{ artifact = \"app\", command = \"python3 server.py\", replicas = 1, listen = \"127.0.0.1:{port}\", \
                 preview = \"127.0.0.1:{preview}\", drain = \"100ms\" }}\n\n\
                 [[targets.{name}.health]]\nurl = \"{{url}}/healthz\"\ninterval = \"200ms\"\ntimeout = \"150ms\"\n\
                 healthy_threshold = 2\nunhealthy_threshold = 2\n\n\
                 {}",
                match (name, west_version) {
                    ("west", Some(v)) => format!(
                        "[[targets.west.health]]\nurl = \"{{url}}/version\"\ninterval = \"200ms\"\ntimeout = \"150ms\"\n\
                         healthy_threshold = 2\nunhealthy_threshold = 2\njson = {{ pointer = \"/version\", equals = \"{v}\" }}\n\n"
                    ),
                    _ => String::new(),
                }
            ));
        }
        let config = format!(
            "[project]\nname = \"hello\"\n\n[artifacts.app]\nroot = \"app\"\nexclude = [\"__pycache__/\", \"*.pyc\"]\n\
             build = \"python3 app/build.py\"\n\n{targets}[environments.dev]\nregion = \"us-east-1\"\n\
             targets = [\"east\", \"west\"]\n{env_extra}\n"
        );
        std::fs::write(dir.path().join("gantry.toml"), config).unwrap();
        Self { dir, ports }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn package(&self, version: &str) {
        gantry(self.path()).args(["package", "-q", "--version", version]).assert().success();
    }

    fn deploy(&self, version: &str) -> assert_cmd::assert::Assert {
        gantry(self.path()).args(["--env", "dev", "deploy", "--version", version]).assert()
    }

    /// The JSON events of a deploy, and the process's exit code.
    fn deploy_json(&self, version: &str) -> (Vec<serde_json::Value>, Option<i32>, String) {
        let out =
            gantry(self.path()).args(["--env", "dev", "--output", "json", "deploy", "--version", version]).output();
        let out = out.unwrap();
        (events(&out.stdout), out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// What target `name` serves users (its nginx), asked 5 times.
    fn assert_serves(&self, name: &str, version: &str) {
        let port = self.ports[name];
        let seen: Vec<String> = (0..5).map(|_| get_version(port)).collect();
        assert!(seen.iter().all(|v| v == version), "`{name}` serves {seen:?}, expected only {version}");
    }

    fn history(&self) -> Vec<serde_json::Value> {
        let out = gantry(self.path()).args(["--env", "dev", "--output", "json", "history"]).assert().success();
        serde_json::from_slice::<serde_json::Value>(&out.get_output().stdout).unwrap().as_array().unwrap().clone()
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        for (name, port) in &self.ports {
            let toml = format!("artifact = \"app\"\ncommand = \"true\"\nlisten = \"127.0.0.1:{port}\"\n");
            let cfg: gantry::config::LocalTarget = toml::from_str(&toml).unwrap();
            let dir = self.path().join(".gantry/local/dev").join(name);
            if let Ok(mut t) = gantry::targets::local::LocalTarget::new(name, &cfg, dir) {
                let _ = t.down();
            }
        }
    }
}

fn events(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// `kind:detail` for the events that tell waves and targets apart, in order.
fn outline(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            Some(match e["event"].as_str()? {
                "wave-started" => format!("wave-started:{}:{}", e["wave"], s("region")),
                "wave-finished" => format!("wave-finished:{}:{}", e["wave"], e["ok"]),
                "wave-bake-started" => format!("wave-bake-started:{}:{}", e["wave"], e["targets"]),
                "wave-bake-finished" => format!("wave-bake-finished:{}:{}", e["wave"], e["ok"]),
                "waves-rolling-back" => format!("waves-rolling-back:{}:{}", e["failed_wave"], e["targets"]),
                "started" => format!("started:{}:{}", s("target"), s("version")),
                "finished" => format!("finished:{}:{}", s("target"), s("result")),
                "done" => "done".into(),
                _ => return None,
            })
        })
        .collect()
}

#[test]
fn two_waves_go_region_by_region_with_a_bake_between() {
    let p = Project::new("wave_bake = \"1s\"", None);
    p.package("1.0.0");
    let (events, code, stderr) = p.deploy_json("1.0.0");
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        outline(&events),
        [
            "wave-started:1:us-east-1",
            "started:east:1.0.0",
            "finished:east:succeeded",
            "wave-finished:1:true",
            "wave-bake-started:1:[\"east\"]",
            "wave-bake-finished:1:true",
            "wave-started:2:us-west-2",
            "started:west:1.0.0",
            "finished:west:succeeded",
            "wave-finished:2:true",
            "done",
        ]
    );
    let started = events.iter().find(|e| e["event"] == "wave-started").unwrap();
    assert_eq!(started["waves"], 2);
    assert_eq!(started["targets"], serde_json::json!(["east"]));
    // The bake watched the finished wave's target with its own checks, for the whole second.
    let baked: Vec<&serde_json::Value> =
        events.iter().filter(|e| e["event"] == "health" && e["phase"] == "wave-bake").collect();
    assert!(baked.len() >= 4 && baked.iter().all(|e| e["target"] == "east"), "{baked:?}");
    let bake = events.iter().find(|e| e["event"] == "wave-bake-finished").unwrap();
    assert!(bake["elapsed_ms"].as_u64().unwrap() >= 1000, "{bake}");
    p.assert_serves("east", "1.0.0");
    p.assert_serves("west", "1.0.0");
    // Each ledger record names its wave.
    let waves: Vec<(String, u64)> =
        p.history().iter().map(|d| (d["target"].as_str().unwrap().to_owned(), d["wave"].as_u64().unwrap())).collect();
    assert_eq!(waves, [("west".to_owned(), 2), ("east".to_owned(), 1)]);

    // Human (CI-plain) output says the same.
    p.package("1.1.0");
    let out = p.deploy("1.1.0").success();
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    for line in [
        "Wave 1 of 2 (us-east-1): east",
        "Baking after wave 1 of 2: watching east for 1.0s",
        "Wave 2 of 2 (us-west-2): west",
    ] {
        assert!(err.contains(line), "missing `{line}` in:\n{err}");
    }
}

#[test]
fn when_the_second_wave_fails_the_first_goes_back() {
    let p = Project::new("", Some("1.0.0"));
    p.package("1.0.0");
    p.deploy("1.0.0").success();
    p.package("2.0.0");
    let out = p.deploy("2.0.0").code(3);
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        err.contains("deploy of 2.0.0 to `dev` failed and was rolled back: wave 2 of 2 (us-west-2), target `west`: "),
        "{err}"
    );
    assert!(err.contains("/version is \"2.0.0\""), "the failing check is named: {err}");
    assert!(err.contains("rolled back `east` (wave 1): back on 1.0.0"), "{err}");
    assert!(err.contains("Rolling back finished waves, since wave 2 failed"), "{err}");
    p.assert_serves("east", "1.0.0");
    p.assert_serves("west", "1.0.0");
    let rows: Vec<String> = p
        .history()
        .iter()
        .take(3)
        .map(|d| format!("{} {} {} {}", d["target"], d["kind"], d["release"]["version"], d["state"]))
        .collect();
    assert_eq!(
        rows,
        [
            r#""east" "rollback" "1.0.0" "succeeded""#,
            r#""west" "deploy" "2.0.0" "rolled-back""#,
            r#""east" "deploy" "2.0.0" "succeeded""#,
        ]
    );
}

#[test]
fn a_failure_during_the_bake_between_waves_rolls_back_the_finished_wave() {
    let p = Project::new("wave_bake = \"30s\"", None);
    p.package("1.0.0");
    p.deploy("1.0.0").success();
    p.package("2.0.0");
    let bin = assert_cmd::cargo::cargo_bin("gantry");
    let mut child = Command::new(bin)
        .args(["--env", "dev", "--output", "json", "deploy", "--version", "2.0.0"])
        .current_dir(p.path())
        .env_remove("GITHUB_ACTIONS")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let event: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        let baking = event["event"] == "wave-bake-started";
        seen.push(event);
        if baking {
            break;
        }
    }
    assert!(seen.iter().any(|e| e["event"] == "finished" && e["target"] == "east"), "{seen:?}");
    // The first wave is live on 2.0.0 and baking: its region turns unhealthy.
    p.assert_serves("east", "2.0.0");
    let started = std::time::Instant::now();
    fail_health(p.ports["east"]);
    seen.extend(lines.map(|l| serde_json::from_str::<serde_json::Value>(&l.unwrap()).unwrap()));
    let out = child.wait_with_output().unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "the bake stopped at the failure, not its end");
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("failed and was rolled back: the bake after wave 1 of 2 (us-east-1) failed: target `east`: health check failed:"),
        "{err}"
    );
    assert!(err.contains("rolled back `east` (wave 1): back on 1.0.0"), "{err}");
    let tail: Vec<String> = outline(&seen).into_iter().skip_while(|e| !e.starts_with("wave-bake-started")).collect();
    assert_eq!(
        tail,
        [
            "wave-bake-started:1:[\"east\"]",
            "wave-bake-finished:1:false",
            "waves-rolling-back:1:[\"east\"]",
            "started:east:1.0.0",
            "finished:east:succeeded",
        ]
    );
    assert!(!seen.iter().any(|e| e["event"] == "started" && e["target"] == "west"), "wave 2 never started");
    p.assert_serves("east", "1.0.0");
    p.assert_serves("west", "1.0.0");
}

#[test]
fn plan_shows_the_waves_and_the_bake() {
    let p = Project::new("waves = [[\"west\"], [\"east\"]]\nwave_bake = \"5m\"", None);
    let out = gantry(p.path()).args(["--env", "dev", "plan"]).assert().success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned()
        + &String::from_utf8_lossy(&out.get_output().stderr);
    let waves: Vec<&str> =
        text.lines().skip_while(|l| !l.trim_start().starts_with("waves:")).take_while(|l| !l.is_empty()).collect();
    insta::assert_snapshot!("waves_plan_text", waves.join("\n"));
    // Targets are listed in deploy order: wave by wave.
    let west = text.find("target `west`").unwrap();
    let east = text.find("target `east`").unwrap();
    assert!(west < east, "{text}");
    let json = gantry(p.path()).args(["--env", "dev", "--output", "json", "plan"]).assert().success();
    let doc: serde_json::Value = serde_json::from_slice(&json.get_output().stdout).unwrap();
    assert_eq!(
        doc["waves"],
        serde_json::json!([
            { "number": 1, "region": "us-west-2", "targets": ["west"] },
            { "number": 2, "region": "us-east-1", "targets": ["east"] },
        ])
    );
    assert_eq!(doc["wave_bake_ms"], 300_000);
}

#[test]
fn the_step_summary_has_a_table_of_waves() {
    let p = Project::new("", None);
    p.package("1.0.0");
    let summary = p.path().join("summary.md");
    let outputs = p.path().join("outputs.txt");
    gantry(p.path())
        .args(["--env", "dev", "deploy", "--version", "1.0.0"])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env("GITHUB_OUTPUT", &outputs)
        .env_remove("GITHUB_TOKEN")
        .env_remove("GH_TOKEN")
        .assert()
        .success();
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(md.contains("| wave | region | targets | result | time | bake after it |"), "{md}");
    assert!(md.contains("| 1 | us-east-1 | `east` | ok |"), "{md}");
    assert!(md.contains("| 2 | us-west-2 | `west` | ok |"), "{md}");
}

/// The app's `POST /fail` through nginx: the replica serving users fails `/healthz` from now on.
fn fail_health(port: u16) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(b"POST /fail HTTP/1.0\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

fn get_version(port: u16) -> String {
    let (status, body) = crate::stand_in::get(&format!("http://127.0.0.1:{port}/version"));
    serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["version"].as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("status {status}: {body}"))
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
